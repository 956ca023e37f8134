"""``/v1/stream`` fan-out against plain ``websockets.broadcast()``: delivered messages/s and latency.

Three kinds of process, all on 127.0.0.1:

- **hub server** (``--role hub``): the real app (``create_app``, SQLite in a temp dir, one signed-in
  user) under uvicorn, with a market source whose ``publish`` calls the hub's ``publish_market``
  exactly as the market-data source does in production (numbering, per-connection buffers,
  conflation, the writer task per socket, litestar's WebSocket, uvicorn's protocol);
- **baseline server** (``--role baseline``): ``websockets.serve`` whose publisher calls
  ``websockets.broadcast()`` with the same message bytes to the same sockets;
- **receivers** (``--role receive``): one process per run opening N raw WebSocket connections
  (asyncio protocols, frames parsed by hand, no JSON decoding: the send time is read from the
  message's ``"t":`` field), counting messages and latencies (``time.monotonic_ns`` is system-wide).

Each server process reads commands on its stdin (``publish <count> <rate>``) and publishes
``{"type":"quote","symbol":"BTC/USD","n":i,"t":<monotonic ns>}`` on ``quotes:BTC/USD``. The driver runs,
per server: a latency run at a fixed rate (100 clients at 1,000 msg/s; 1,000 clients at 100 msg/s)
and a throughput run (100 clients, publishing as fast as the server's loop allows). Last line: JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CHANNEL = "quotes:BTC/USD"
PAD = "x" * 64  # a quote's worth of bytes besides the fields we read


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    del soft


def _message(n: int) -> dict[str, Any]:
    return {"type": "quote", "symbol": "BTC/USD", "bid": "100.50", "ask": "100.60", "n": n, "pad": PAD}


async def _publisher(publish: Any) -> None:
    """Read ``publish <count> <rate>`` lines from stdin and publish; ``rate`` 0: as fast as the loop allows."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    while line := await reader.readline():
        _, count_s, rate_s = line.decode().split()
        count, rate = int(count_s), float(rate_s)
        started = time.monotonic()
        for n in range(count):
            if rate:
                due = started + n / rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif n % 10 == 0:
                await asyncio.sleep(0)
            publish(n)
        print("done", flush=True)


# --- the hub server -------------------------------------------------------------------------------


class _BenchMarket:
    """A MarketSource that knows one channel; what it publishes goes through the hub's MarketSink side."""

    async def want(self, channel: str) -> None:
        if channel != CHANNEL:
            from brokerlink.kit.errors import NotFound

            raise NotFound("unknown symbol")

    def unwant(self, channel: str) -> None:
        pass

    def snapshot(self, channel: str) -> dict[str, Any] | None:  # noqa: ARG002 - the protocol's signature
        return None


async def _hub_server(port: int) -> None:
    import uvicorn
    from pydantic import SecretStr

    from brokerlink.app.factory import create_app
    from brokerlink.config import Settings
    from brokerlink.security.sessions import SessionService
    from brokerlink.store.repositories.users import UserRepository
    from brokerlink.stream.connections import StreamHub

    data = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    settings = Settings(
        data_dir=data,
        environment="test",
        secret_key=SecretStr("bench-secret-key-that-is-long-enough-0123456789"),
        log_level="error",
        cookie_secure=False,
        rate_limit_ws_connections=100_000,
        rate_limit_user="100000/second",
        rate_limit_ip="100000/second",
        resource_origin=f"http://127.0.0.1:{port}",
    )
    app = create_app(settings, configure_logs=False)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, log_level="error", backlog=4096)
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for it
        await asyncio.sleep(0.05)
    async with app.state.db.session() as s:
        user = await UserRepository(s).create(
            email="bench@example.com",
            display_name="bench",
            password_hash="-",  # noqa: S106 - no password: a session is started directly
            now=app.state.clock.now(),
        )
        issued = await SessionService(s, settings, app.state.clock).start(user, ip=None, user_agent=None)
        await s.commit()
    print("cookie", issued.token, flush=True)
    hub: StreamHub = app.state.public_stream
    hub.market = _BenchMarket()
    encode = json.dumps

    def publish(n: int) -> None:
        event = _message(n)
        event["t"] = time.monotonic_ns()
        hub.publish_market(CHANNEL, event)

    del encode
    await _publisher(publish)
    server.should_exit = True
    await task


# --- the baseline ---------------------------------------------------------------------------------


async def _baseline_server(port: int) -> None:
    import websockets
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    followers: set[ServerConnection] = set()
    seq = 0

    async def handler(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"op": "welcome"}))
        with contextlib.suppress(websockets.ConnectionClosed):
            async for _ in ws:  # the subscribe message
                followers.add(ws)
                await ws.send(json.dumps({"op": "subscribed", "channel": CHANNEL, "seq": seq}))
        followers.discard(ws)

    def publish(n: int) -> None:
        nonlocal seq
        seq += 1
        event = _message(n)
        event["t"] = time.monotonic_ns()
        text = (
            '{"op":"event","channel":"'
            + CHANNEL
            + f'","seq":{seq},"event":'
            + json.dumps(event, separators=(",", ":"))
            + "}"
        )
        broadcast(followers, text)

    async with serve(handler, "127.0.0.1", port, backlog=4096, compression=None, max_queue=None):
        print("cookie -", flush=True)
        await _publisher(publish)


# --- receivers ------------------------------------------------------------------------------------


class _Receiver(asyncio.Protocol):
    """One raw WebSocket client: handshake, one subscribe, then frames counted and timed by hand."""

    def __init__(self, host: str, cookie: str, out: list[int], counts: list[int], ready: asyncio.Event) -> None:
        self.host, self.cookie, self.out, self.counts, self.ready = host, cookie, out, counts, ready
        self.buf = bytearray()
        self.upgraded = False
        self.subscribed = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET /v1/stream HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Cookie: brokerlink_session={self.cookie}\r\n\r\n"
            ).encode()
        )

    def _send(self, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert self.transport is not None
        self.transport.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            del buf[: end + 4]
            self.upgraded = True
            self._send(json.dumps({"op": "subscribe", "channel": CHANNEL}).encode())
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if size - pos < head + length:
                break
            start = pos + head
            t = buf.find(b'"t":', start, start + length)
            if t >= 0:
                end = t + 4
                while buf[end] in b"0123456789":
                    end += 1
                self.out.append(now - int(buf[t + 4 : end]))
            elif not self.subscribed and buf.find(b'"subscribed"', start, start + length) >= 0:
                self.subscribed = True
                self.counts[0] += 1
                if self.counts[0] == self.counts[1]:
                    self.ready.set()
            pos = start + length
        del buf[:pos]


async def _receive(host: str, cookie: str, clients: int, expect: int, seconds: float) -> None:
    _raise_fd_limit()
    loop = asyncio.get_running_loop()
    out: list[int] = []
    counts = [0, clients]
    ready = asyncio.Event()
    name, port = host.split(":")
    transports = []
    for _ in range(clients):
        transport, _protocol = await loop.create_connection(
            lambda: _Receiver(host, cookie, out, counts, ready), name, int(port)
        )
        transports.append(transport)
    try:
        await asyncio.wait_for(ready.wait(), 60)
    except TimeoutError:
        raise SystemExit(f"only {counts[0]} of {clients} subscribed") from None
    print("subscribed", flush=True)
    started = time.monotonic()
    deadline = started + seconds
    first = last = None
    while time.monotonic() < deadline and len(out) < expect:
        if out and first is None:
            first = time.monotonic()
        await asyncio.sleep(0.005)
        if out:
            last = time.monotonic()
    elapsed = (last or time.monotonic()) - (first or started)
    for transport in transports:
        transport.close()
    lat = sorted(out)
    result = {
        "received": len(out),
        "seconds": elapsed,
        "p50_ms": lat[len(lat) // 2] / 1e6 if lat else None,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1e6 if lat else None,
    }
    print("result", json.dumps(result), flush=True)


# --- the driver -----------------------------------------------------------------------------------


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own script
        [sys.executable, str(Path(__file__).resolve()), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=HERE.parent,
    )


def _line(proc: subprocess.Popen[str], prefix: str) -> str:
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"process ended before {prefix!r}")
        if line.startswith(prefix):
            return line[len(prefix) :].strip()


def _run(role: str, clients: int, count: int, rate: float, timeout: float) -> dict[str, Any]:
    port = _free_port()
    server = _spawn("--role", role, "--port", str(port))
    try:
        cookie = _line(server, "cookie")
        _line(server, "ready")
        receiver = _spawn(
            "--role",
            "receive",
            "--host",
            f"127.0.0.1:{port}",
            "--cookie",
            cookie,
            "--clients",
            str(clients),
            "--expect",
            str(clients * count),
            "--timeout",
            str(timeout),
        )
        _line(receiver, "subscribed")
        time.sleep(0.3)
        assert server.stdin is not None
        server.stdin.write(f"publish {count} {rate}\n")
        server.stdin.flush()
        result: dict[str, Any] = json.loads(_line(receiver, "result"))
        receiver.wait(10)
        result["published"] = count
        result["delivered_per_s"] = result["received"] / result["seconds"] if result["seconds"] else 0.0
        return result
    finally:
        if server.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                server.stdin.close()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (under a minute)")
    parser.add_argument("--role", choices=["driver", "hub", "baseline", "receive"], default="driver")
    parser.add_argument("--port", type=int)
    parser.add_argument("--host")
    parser.add_argument("--cookie")
    parser.add_argument("--clients", type=int)
    parser.add_argument("--expect", type=int)
    parser.add_argument("--timeout", type=float)
    args = parser.parse_args()
    if args.role == "hub":
        _raise_fd_limit()
        asyncio.run(_hub_server(args.port))
        return
    if args.role == "baseline":
        _raise_fd_limit()
        asyncio.run(_baseline_server(args.port))
        return
    if args.role == "receive":
        asyncio.run(_receive(args.host, args.cookie, args.clients, args.expect, args.timeout))
        return

    seconds = 2 if args.quick else 8
    runs: dict[str, dict[str, Any]] = {}
    for role in ("baseline", "hub"):
        runs[f"{role}_100"] = _run(role, 100, 1000 * seconds, 1000, seconds + 5)
        runs[f"{role}_1000"] = _run(role, 1000, 100 * seconds, 100, seconds + 10)
        runs[f"{role}_max"] = _run(role, 100, 3000 if args.quick else 10_000, 0, 20)
    for name, r in runs.items():
        print(
            f"{name:14} received {r['received']:>8} of {r['published'] * (1000 if '1000' in name else 100):>8}"
            f"  {r['delivered_per_s']:>10.0f} msg/s  p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms",
            file=sys.stderr,
        )
    hub_max, base_max = runs["hub_max"]["delivered_per_s"], runs["baseline_max"]["delivered_per_s"]
    summary = {
        "bench": "stream",
        "quick": args.quick,
        "ratio_to_baseline": round(hub_max / base_max, 3) if base_max else None,
        "delivered_per_s": round(hub_max),
        "baseline_delivered_per_s": round(base_max),
        "p50_ms_100": runs["hub_100"]["p50_ms"],
        "p99_ms_100": runs["hub_100"]["p99_ms"],
        "p50_ms_1000": runs["hub_1000"]["p50_ms"],
        "p99_ms_1000": runs["hub_1000"]["p99_ms"],
        "baseline_p99_ms_100": runs["baseline_100"]["p99_ms"],
        "baseline_p99_ms_1000": runs["baseline_1000"]["p99_ms"],
        "lost_100": runs["hub_100"]["published"] * 100 - runs["hub_100"]["received"],
        "lost_1000": runs["hub_1000"]["published"] * 1000 - runs["hub_1000"]["received"],
        "goals": {"ratio_to_baseline": ">= 0.8", "p99_ms_100": "< 2", "p99_ms_1000": "< 15"},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
