"""``brokerlink sim serve`` as a real process on loopback: place an order over HTTP, read it back, SIGTERM.

Bounded: the wait polls a fixed number of times and the process is killed if it overstays.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent / "brokerlink"
KEY = {"x-sim-api-key": "sim-key-1"}  # the default config's demo account


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[str], attempts: int = 160) -> None:
    """Poll the instruments route every 0.25 s, at most ``attempts`` times (40 s)."""
    for _ in range(attempts):
        if proc.poll() is not None:
            raise AssertionError(f"venue exited early with {proc.returncode}")
        try:
            if httpx.get(url + "/api/v1/instruments", headers=KEY, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise AssertionError("venue did not answer within 40 s")


def test_sim_serve_takes_an_order_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "sim.log"
    with log.open("w") as out:
        proc = subprocess.Popen(  # noqa: S603
            [str(BIN), "sim", "serve", "--port", str(port), "--set", "crypto", "--seed", "7", "--mode", "test"],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        wait_ready(url, proc)
        with httpx.Client(base_url=url, timeout=5, headers=KEY) as client:
            symbols = [i["symbol"] for i in client.get("/api/v1/instruments").json()]
            assert "BTCUSDT" in symbols
            body = {"client_order_id": "e2e-1", "symbol": "BTCUSDT", "side": "buy", "qty": "0.001", "type": "market"}
            placed = client.post("/api/v1/orders", json=body)
            assert placed.status_code == 201, placed.text
            assert "x-ratelimit-remaining" in placed.headers
            back = client.get("/api/v1/orders/by-client-id/e2e-1").json()
            assert back["order_id"] == placed.json()["order_id"]
            assert back["status"] == "filled"
            assert client.get("/api/v1/positions").json()[0]["qty"] == "0.00100"
            assert client.get("/_control/faults").status_code == 200  # test mode mounts the control API
        # The stream offers no compression on loopback (serve_on_loopback), though the client asks for it.
        with connect(f"ws://127.0.0.1:{port}/ws", compression="deflate", open_timeout=5) as ws:
            assert ws.response is not None
            assert "sec-websocket-extensions" not in ws.response.headers
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-2000:]
        assert "sim venue (crypto, seed 7, mode test)" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
