"""``brokerlink demo`` as a user runs it: a real server process on loopback, stopped by SIGTERM.

Bounded: each wait polls a fixed number of times and the process is killed if it overstays.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent / "brokerlink"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[str], attempts: int = 240) -> httpx.Response:
    """Poll /healthz every 0.25 s, at most ``attempts`` times (60 s)."""
    for _ in range(attempts):
        if proc.poll() is not None:
            raise AssertionError(f"server exited early with {proc.returncode}")
        try:
            response = httpx.get(url + "/healthz", timeout=2)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise AssertionError("server did not become healthy within 60 s")


def wait_connected(client: httpx.Client, count: int, attempts: int = 120) -> list[dict[str, str]]:
    """Poll /v1/accounts (every 0.25 s, at most ``attempts`` times) until ``count`` accounts are connected."""
    accounts: list[dict[str, str]] = []
    for _ in range(attempts):
        accounts = client.get("/v1/accounts").json()["data"]
        if len(accounts) == count and all(a["connection_status"] == "connected" for a in accounts):
            return accounts
        time.sleep(0.25)
    raise AssertionError(f"accounts did not all connect: {accounts}")


# (server, how the port and data directory are given, the signal that stops it)
VARIANTS = [("granian", "env", signal.SIGINT), ("uvicorn", "flags", signal.SIGTERM)]


@pytest.fixture(params=VARIANTS, ids=lambda v: f"{v[0]}-{v[1]}-{v[2].name}")
def demo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str], Path, int]]:
    server, configured_by, stop_signal = request.param
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKERLINK_")}
    args = [str(BIN), "demo", "--server", server]
    if configured_by == "env":
        env |= {"BROKERLINK_PORT": str(port), "BROKERLINK_DATA_DIR": str(tmp_path / "var")}
    else:
        args += ["--port", str(port), "--data-dir", str(tmp_path / "var")]
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, text=True)  # noqa: S603
    try:
        yield f"http://127.0.0.1:{port}", proc, log, stop_signal
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_demo_serves_signs_in_and_stops_cleanly(demo: tuple[str, subprocess.Popen[str], Path, int]) -> None:
    url, proc, log, stop_signal = demo
    assert wait_healthy(url, proc).json()["status"] == "ok"
    assert httpx.get(url + "/readyz", timeout=5).status_code == 200

    printed = log.read_text()
    assert f"dashboard   {url}/" in printed
    creds = re.findall(r"sign in as  (\S+@example\.com) / (\S+)", printed)
    assert len(creds) == 6

    with httpx.Client(base_url=url, timeout=5) as client:
        token = client.get("/v1/auth/csrf").json()["csrf_token"]
        email, password = creds[0]
        r = client.post("/v1/auth/login", json={"email": email, "password": password}, headers={"x-csrf-token": token})
        assert r.status_code == 200, r.text
        assert client.get("/v1/me").json()["email"] == email
        accounts = wait_connected(client, count=2)
        assert sorted(a["name"] for a in accounts) == ["Sim Crypto", "Sim FX"]
        for account, symbol in zip(sorted(accounts, key=lambda a: a["name"]), ["BTC/USDT", "EUR/USD"], strict=True):
            quotes = client.get(f"/v1/accounts/{account['id']}/quotes", params={"symbols": symbol})
            assert quotes.status_code == 200, quotes.text
            quote = quotes.json()["data"][0]
            assert quote["symbol"] == symbol
            assert Decimal(quote["bid"]) <= Decimal(quote["ask"])
        page = client.get("/", headers={"accept": "text/html"})
        assert "Sim FX" in page.text
        assert "Sim Crypto" in page.text

    venues = json.loads((log.parent / "var" / "demo-venues.json").read_text())
    assert oct((log.parent / "var" / "demo-venues.json").stat().st_mode & 0o777) == "0o600"
    proc.send_signal(stop_signal)
    assert proc.wait(timeout=30) == 0, log.read_text()[-2000:]
    for venue in venues:  # the venues stopped with the demo: nothing is left listening
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{venue['port']}/api/v1/instruments", timeout=2)
    assert (log.parent / "var" / "brokerlink.db").exists()
    assert "stopped" in log.read_text()  # the app's shutdown ran (database and bus closed)


def test_demo_keeps_the_same_credentials_across_restarts(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKERLINK_")}
    first = tmp_path / "var" / "demo-credentials.json"
    printed: list[str] = []
    for _ in range(2):
        port = free_port()
        with (tmp_path / "out.log").open("w") as out:
            proc = subprocess.Popen(  # noqa: S603
                [str(BIN), "demo", "--port", str(port), "--data-dir", str(tmp_path / "var")],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                text=True,
            )
        try:
            try:
                wait_healthy(f"http://127.0.0.1:{port}", proc)
            except AssertionError as exc:  # say why: the demo's own output (it exited 3 once, under load)
                raise AssertionError(f"{exc}\n{(tmp_path / 'out.log').read_text()[-4000:]}") from None
            if not first.exists():
                raise AssertionError("credentials file missing")
            before = first.read_text()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # say why: a stop that hung once, under load
                proc.kill()
                proc.wait(timeout=30)
                output = (tmp_path / "out.log").read_text()[-6000:]
                raise AssertionError(f"no exit 30 s after SIGTERM\n{output}") from None
            printed.append((tmp_path / "out.log").read_text())
    assert first.read_text() == before
    # The first run links each trader's two sim accounts; the second reuses those links.
    assert "linked      10 sim accounts" in printed[0]
    assert "linked " not in printed[1]
    assert oct(first.stat().st_mode & 0o777) == "0o600"


@pytest.mark.skipif(sys.platform != "linux", reason="the venues follow a killed demo through Linux's PR_SET_PDEATHSIG")
def test_the_venues_stop_when_the_demo_is_killed(tmp_path: Path) -> None:
    """SIGKILL runs no cleanup of ours: the venue processes must still not outlive the demo.

    Under uvicorn the server is the demo process itself; granian's worker processes would outlive a
    SIGKILL of their master (granian's behaviour, not the venues'), so this test does not use it.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKERLINK_")}
    port = free_port()
    with (tmp_path / "out.log").open("w") as out:
        proc = subprocess.Popen(  # noqa: S603
            [str(BIN), "demo", "--server", "uvicorn", "--port", str(port), "--data-dir", str(tmp_path / "var")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        venues = json.loads((tmp_path / "var" / "demo-venues.json").read_text())
    finally:
        proc.kill()
        proc.wait(timeout=30)
    for venue in venues:
        for _ in range(100):  # bounded: 10 s
            try:
                httpx.get(f"http://127.0.0.1:{venue['port']}/api/v1/instruments", timeout=1)
            except httpx.TransportError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"the {venue['name']} venue outlived the killed demo")
