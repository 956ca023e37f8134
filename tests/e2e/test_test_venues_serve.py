"""``brokerlink venue-alpaca|venue-oanda|venue-binance serve`` as real processes on loopback: each
answers in its vendor's wire format (an unauthenticated call is refused the vendor's way, Binance's
public time endpoint answers), mounts the fault-control API in test mode, and stops cleanly on SIGTERM.

Bounded: the wait polls a fixed number of times and a process that overstays is killed.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_sim_serve import BIN, free_port

pytestmark = pytest.mark.e2e

VENUES = {
    # command: (a request, the status it must get)
    "venue-alpaca": ("/v2/account", 401),  # no APCA-API-KEY-ID / APCA-API-SECRET-KEY headers
    "venue-oanda": ("/v3/accounts", 401),  # no bearer token
    "venue-binance": ("/api/v3/time", 200),  # public
}


def wait_ready(url: str, proc: subprocess.Popen[str], attempts: int = 160) -> None:
    """Poll the control API every 0.25 s, at most ``attempts`` times (40 s)."""
    for _ in range(attempts):
        if proc.poll() is not None:
            raise AssertionError(f"venue exited early with {proc.returncode}")
        try:
            if httpx.get(url + "/_control/faults", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise AssertionError("venue did not answer within 40 s")


@pytest.mark.parametrize("command", list(VENUES))
def test_a_test_venue_serves_its_wire_format_and_stops_cleanly(command: str, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "venue.log"
    with log.open("w") as out:
        proc = subprocess.Popen(  # noqa: S603
            [str(BIN), command, "serve", "--port", str(port), "--mode", "test"],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        wait_ready(url, proc)
        path, status = VENUES[command]
        answer = httpx.get(url + path, timeout=5)
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"].startswith("application/json")
        if command == "venue-binance":
            assert isinstance(answer.json()["serverTime"], int)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
