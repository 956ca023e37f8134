"""The dashboard in a real browser: Debian's Chromium driven by Playwright against ``brokerlink demo``.

The ``chromium_path`` fixture (tests/conftest.py) skips locally when Chromium is absent; CI installs
Debian's ``chromium`` and sets BROKERLINK_REQUIRE_SERVICES=1, which turns the skip into a failure.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_demo import BIN, free_port, wait_healthy

pytestmark = pytest.mark.e2e

CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-background-networking",  # the machine has no network; keep Chromium from trying
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """A running demo; yields (url, email, password) of its first demo user."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKERLINK_")}
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own console script, fixed arguments
            [str(BIN), "demo", "--port", str(port), "--data-dir", str(tmp_path / "var")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc)
        match = re.search(r"sign in as  (\S+@example\.com) / (\S+)", log.read_text())
        assert match, "the demo prints credentials"
        yield url, match.group(1), match.group(2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_sign_in_see_the_dashboard_and_sign_out(chromium_path: str, demo_server: tuple[str, str, str]) -> None:
    from playwright.sync_api import sync_playwright

    url, email, password = demo_server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            console_errors: list[str] = []
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.goto(url + "/")
            assert page.url == url + "/login?next=/"
            page.fill("input[name=email]", email)
            page.fill("input[name=password]", "not the password")
            page.click("button[type=submit]")
            assert page.locator("p.error").inner_text() == "email or password is incorrect"
            page.fill("input[name=password]", password)
            page.click("button[type=submit]")
            page.wait_for_url(url + "/")
            assert page.title() == "Dashboard · brokerlink"
            assert page.locator("#no-accounts h2").inner_text() == "No broker accounts linked yet"
            assert "Alice Trader" in page.locator("header").inner_text()
            page.click("text=Sign out")
            page.wait_for_url(url + "/login")
            page.goto(url + "/")
            assert page.url.startswith(url + "/login")  # the session really ended
            assert console_errors == []  # CSP violations and missing assets show up here
        finally:
            browser.close()
