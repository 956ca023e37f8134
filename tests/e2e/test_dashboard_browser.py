"""The dashboard in a real browser: Debian's Chromium driven by Playwright.

Two setups: ``brokerlink demo`` as a user runs it, and a real sim venue plus a real brokerlink
server on loopback, both served by uvicorn in the test's event loop, with an account linked
through ``POST /v1/connections``. Every wait is bounded (Playwright's ``expect`` polls until its
timeout); none is a fixed sleep.

The ``chromium_path`` fixture (tests/conftest.py) skips locally when Chromium is absent; CI installs
Debian's ``chromium`` and sets BROKERLINK_REQUIRE_SERVICES=1, which turns the skip into a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import uvicorn
from pydantic import SecretStr

from brokerlink.app.factory import create_app
from brokerlink.config import Settings
from brokerlink.security.totp import code_at, time_step
from tests.contract.harness import SimHarness, sim_venue
from tests.e2e.test_demo import BIN, free_port, wait_healthy

if TYPE_CHECKING:
    from playwright.async_api import APIRequestContext, ConsoleMessage, Locator

pytestmark = pytest.mark.e2e

CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-background-networking",  # the machine has no network; keep Chromium from trying
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# What Chromium logs for a fetch answered 503: expected while a broker is down, unlike any other error.
BROKER_DOWN = re.compile(r"^Failed to load resource: the server responded with a status of 503\b")
PRICE = re.compile(r"^\d+\.\d+$")
PASSWORD = "correct horse battery staple"
VENUE_API_KEY = "conf-key"  # the harness venue's account SIM-CONF (tests/contract/harness.py)
WAIT_MS = 15_000


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
    from playwright.sync_api import expect, sync_playwright

    url, email, password = demo_server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            console_errors: list[str] = []
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: console_errors.append(str(e)))
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
            assert "Alice Trader" in page.locator("header.bar").inner_text()
            # The page lists what the API lists for this user (the browser's session asks), each with
            # live quotes once its link is up; or it says how to link one.
            accounts = page.request.get(url + "/v1/accounts").json()["data"]
            if accounts:
                names = page.locator("#accounts tbody tr td:first-child")
                assert names.all_inner_texts() == [a["name"] for a in accounts]
                for account in accounts:
                    quotes = page.locator(f"#acc-{account['id']} [data-role=quotes]")
                    expect(quotes.locator("[data-role=quote-status]")).to_contain_text("Live", timeout=WAIT_MS)
                    expect(quotes.locator("td.bid").first).to_have_text(PRICE)
            else:
                assert page.locator("#no-accounts h2").inner_text() == "No broker accounts linked yet"
            page.click("text=Sign out")
            page.wait_for_url(url + "/login")
            page.goto(url + "/")
            assert page.url.startswith(url + "/login")  # the session really ended
            # CSP violations, script errors and missing assets show up here. A 503 is not one of them:
            # the demo's links reconnect in the background, and the quotes panel says so until they are up.
            assert [e for e in console_errors if not BROKER_DOWN.match(e)] == []
        finally:
            browser.close()


# --- a live account: a real sim venue and a real server ---------------------------------------


class Venue:
    """The harness's sim venue, stoppable in the middle of a test (to see the dashboard say so)."""

    def __init__(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        self.harness: SimHarness | None = None

    async def start(self) -> SimHarness:
        self.harness = await self._stack.enter_async_context(sim_venue())
        return self.harness

    async def stop(self) -> None:
        await self._stack.aclose()  # a second call does nothing


@pytest.fixture
async def venue() -> AsyncIterator[Venue]:
    run = Venue()
    await run.start()
    try:
        yield run
    finally:
        await run.stop()


@pytest.fixture
async def server(tmp_path: Path, venue: Venue) -> AsyncIterator[str]:
    """brokerlink under uvicorn on a loopback port; stopped before the venue (it depends on it)."""
    settings = Settings(
        data_dir=tmp_path / "var",
        environment="test",
        secret_key=SecretStr("e2e-secret-key-that-is-long-enough-0123456789"),
        cookie_secure=False,  # plain HTTP on loopback, as the demo
        log_level="warning",
        log_format="console",
    )
    port = free_port()
    config = uvicorn.Config(
        create_app(settings, configure_logs=False),
        host="127.0.0.1",
        port=port,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    uvicorn_server = uvicorn.Server(config)
    task = asyncio.create_task(uvicorn_server.serve())
    for _ in range(200):  # bounded: 10 s
        if uvicorn_server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("brokerlink did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uvicorn_server.should_exit = True
        await asyncio.wait_for(task, timeout=15)


async def cells(row: Locator) -> list[str]:
    return [t.strip() for t in await row.locator("td").all_inner_texts()]


async def sign_up_and_link(api: APIRequestContext, server: str, venue: SimHarness) -> tuple[str, dict[str, str]]:
    """Register a user and link the venue's account through the API, in the browser's own session;
    returns the account id and its balance as the API reports it."""

    async def call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        token = (await (await api.get(server + "/v1/auth/csrf")).json())["csrf_token"]
        response = await api.fetch(server + path, method=method, data=body, headers={"x-csrf-token": token})
        assert response.ok, await response.text()
        return await response.json()

    await call("POST", "/v1/auth/register", {"email": "t@example.com", "password": PASSWORD, "display_name": "T"})
    # Linking needs MFA verified recently: enrolling an authenticator counts as the check.
    secret = (await call("POST", "/v1/me/mfa/totp"))["secret"]
    await call("POST", "/v1/me/mfa/totp/confirm", {"code": code_at(secret, time_step(datetime.now(UTC)))})
    link = {
        "broker": "sim",
        "label": "Sim FX",
        "base_url": venue.base_url,
        "credentials": {"api_key": VENUE_API_KEY},
        "account_name": "Swing <b>FX</b>",  # shown as text, never as markup
    }
    account_id: str = (await call("POST", "/v1/connections", link))["account"]["id"]
    balance: dict[str, str] = (await call("GET", f"/v1/accounts/{account_id}/balances"))["data"][0]
    return account_id, balance


async def check_quotes_move(quotes: Locator) -> None:
    """The account's first six instruments (the API lists them by symbol) get prices, and then the prices change."""
    from playwright.async_api import expect

    await expect(quotes.locator("[data-role=quote-status]")).to_contain_text("Live", timeout=WAIT_MS)
    await expect(quotes.locator("tbody th")).to_have_text(
        ["AUD/USD", "EUR/GBP", "EUR/JPY", "EUR/USD", "GBP/USD", "USD/CAD"]
    )
    prices = quotes.locator("td.bid, td.ask")
    for i in range(12):
        await expect(prices.nth(i)).to_have_text(PRICE)
    first = await prices.all_inner_texts()
    # The prices then change (a tick colour seen at once may be from a change before `first`).
    for _ in range(WAIT_MS // 100):  # bounded: 15 s
        if await prices.all_inner_texts() != first:
            break
        await asyncio.sleep(0.1)
    assert await prices.all_inner_texts() != first
    # A tick colour appears only when a price differs from the one before it.
    await expect(quotes.locator("td.up, td.down").first).to_be_attached(timeout=WAIT_MS)
    await expect(quotes.locator("tbody tr").first.locator("time")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d\.\d{3}$"))


async def check_order_ticket(section: Locator) -> None:
    """A market order fills and shows up as a marked position; a far limit order rests until canceled."""
    from playwright.async_api import expect

    ticket = section.locator("form[data-role=ticket]")
    await expect(ticket).to_be_visible()
    await ticket.locator("select[name=symbol]").select_option("EUR/USD")
    await ticket.locator("input[name=qty]").fill("0.10")
    await ticket.get_by_role("button", name="Place order").click()
    await expect(ticket.locator("[data-role=ticket-status]")).to_contain_text("buy 0.10 EUR/USD")
    orders = section.locator("[data-role=orders] tbody tr")
    await expect(orders.first.locator("td").nth(6)).to_have_text("filled", timeout=WAIT_MS)
    await expect(orders.first.locator("td").nth(8)).to_have_text(PRICE)
    position = section.locator("[data-role=positions] tbody tr").first
    await expect(position.locator("td").first).to_have_text("EUR/USD", timeout=WAIT_MS)
    await expect(position.locator("td").nth(3)).to_have_text(PRICE, timeout=WAIT_MS)  # marked to the bid

    await ticket.locator("select[name=type]").select_option("limit")
    await ticket.locator("input[name=limit_price]").fill("1.00000")
    await ticket.get_by_role("button", name="Place order").click()
    await expect(orders.first.locator("td").nth(6)).to_have_text("new", timeout=WAIT_MS)
    await orders.first.get_by_role("button", name="Cancel buy 0.10 EUR/USD").click()
    await expect(orders.first.locator("td").nth(6)).to_have_text("canceled", timeout=WAIT_MS)
    await expect(orders.first.get_by_role("button")).to_have_count(0)


async def test_live_dashboard_of_a_linked_sim_account(chromium_path: str, venue: Venue, server: str) -> None:
    from playwright.async_api import async_playwright, expect

    assert venue.harness is not None
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context()
            # context.request shares the browser's cookies: the page below is in this session.
            account_id, balance = await sign_up_and_link(context.request, server, venue.harness)
            page = await context.new_page()
            errors: list[str] = []

            def on_console(message: ConsoleMessage) -> None:
                if message.type == "error":
                    errors.append(message.text)

            page.on("console", on_console)
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(server + "/")

            # The account and its balance, as the server rendered them from the store.
            row = page.locator(f'#accounts tr[data-account-id="{account_id}"]')
            assert await cells(row) == ["Swing <b>FX</b>", "sim", "SIM-CONF", "USD", "netting", "connected"]
            section = page.locator(f"#acc-{account_id}")
            balances = section.locator("[data-role=balances] tbody tr")
            assert (await cells(balances))[:5] == [
                balance["currency"], balance["cash"], balance["equity"], balance["buying_power"],
                balance["margin_used"],
            ]  # fmt: skip

            quotes = section.locator("[data-role=quotes]")
            await check_quotes_move(quotes)
            await check_order_ticket(section)
            assert errors == []  # no CSP violation, no script error, no failed request

            # The venue goes away: the panel says the connection is down, and the state follows.
            await venue.stop()
            await expect(quotes.locator("[data-role=quote-status]")).to_have_text(
                "Connection down — retrying…", timeout=WAIT_MS
            )
            await expect(quotes).to_have_class(re.compile(r"\bstale\b"))
            await expect(row.locator("[data-role=connection]")).not_to_have_text("connected", timeout=WAIT_MS)
            assert [e for e in errors if not BROKER_DOWN.match(e)] == []
        finally:
            await browser.close()
