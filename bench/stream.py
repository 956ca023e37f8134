"""``/v1/stream`` fan-out against plain ``websockets.broadcast()``: delivered messages/s and latency.

Three kinds of process, all on 127.0.0.1:

- **hub server** (``--role hub``): the real app (``create_app``, SQLite in a temp dir, one signed-in
  user) under uvicorn (the product's default server, ADR 0037; ``--server granian`` for the other), with a
  market source whose ``publish`` calls the hub's ``publish_market`` exactly as the market-data
  source does in production (numbering, per-connection buffers, conflation, litestar's WebSocket, the
  server's ASGI ``send``);
- **baseline server** (``--role baseline``): ``websockets.serve`` whose publisher calls
  ``websockets.broadcast()`` with the same message bytes to the same sockets;
- **receivers** (``--role receive``): one process per run opening N raw WebSocket connections
  (asyncio protocols, frames parsed by hand, no JSON decoding: the send time is read from the
  message's ``"t":`` field), counting messages and latencies (``time.monotonic_ns`` is system-wide).

All run on uvloop (what granian and uvicorn pick by default). Each server process reads commands on
its stdin (``publish <count> <rate>``, ``cpu``) and publishes
``{"type":"quote","symbol":"BTC/USD","n":i,"t":<monotonic ns>}`` on ``quotes:BTC/USD``. The driver
starts one server per kind (the baseline, then the hub under uvicorn, the product's default server,
and under granian) and runs against each: a latency run at a fixed rate (100 clients at 1,000 msg/s;
1,000 clients at 100 msg/s) and a throughput run (100 clients, one message per turn of the server's
event loop, as fast as it goes: every other task gets its turn between two messages, for every
server). A receiver stops when it has every message, or (once the server published the last one)
when none came for half a second; the delivered rate is counted from the first publish to the last
arrival (or the last publish, if later).
``cpu`` is the server process's CPU time (all its threads), so each run also reports CPU
microseconds per delivered message. ``--bare`` measures a bare ASGI app in place of the hub (what
the server alone costs). Last line: JSON, the figures of the first server, then the other's.
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
from typing import Any, cast

import uvloop

HERE = Path(__file__).resolve().parent
CHANNEL = "quotes:BTC/USD"
PAD = "x" * 64  # a quote's worth of bytes besides the fields we read
QUIET_S = 0.5
"""Once the server published everything, a receiver stops when nothing arrived for this long."""


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


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of the process (granian's too)
    return usage.ru_utime + usage.ru_stime


async def _publisher(publish: Any) -> None:
    """Read commands from stdin: ``publish <count> <rate>`` (``rate`` 0: one message per loop turn), ``cpu``."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    while line := await reader.readline():
        command, *args = line.decode().split()
        if command == "cpu":
            print("cpu", _cpu_s(), flush=True)
            continue
        count, rate = int(args[0]), float(args[1])
        started_ns = time.monotonic_ns()
        started = started_ns / 1e9
        for n in range(count):
            if rate:
                due = started + n / rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)
            publish(n)
        print("done", started_ns, time.monotonic_ns(), flush=True)


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


async def _hub_server(port: int, server_name: str) -> None:
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
        # As `brokerlink serve` runs (ADR 0038). Without it the hub's first full collection walked
        # everything start-up built, ~50 ms on the loop in the first run: hub_100's p99 41-52 ms.
        gc_freeze=True,
    )
    app = create_app(settings, configure_logs=False)
    task, stop = await _serve(app, port, server_name)
    while getattr(app.state, "public_stream", None) is None or not _listening(port):  # noqa: ASYNC110 - no event
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

    def publish(n: int) -> None:
        event = _message(n)
        event["t"] = time.monotonic_ns()
        hub.publish_market(CHANNEL, event)

    await _publisher(publish)
    stop()
    await task


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


# --- the bare ASGI app (the server's own cost) ------------------------------------------------------


class _BareSocket:
    """One socket of the bare app: sends at once when idle, else keeps only the newest (conflation)."""

    def __init__(self, send: Any) -> None:
        self.send = send
        self.busy = False
        self.pending: dict[str, Any] | None = None

    def write(self, message: dict[str, Any]) -> None:
        if self.busy:
            self.pending = message
            return
        self.busy = True
        step = self.send(message).__await__()
        try:
            waiting = next(step)
        except StopIteration:
            self.busy = False
            return
        waiting.add_done_callback(lambda _: self._done(step))

    def _done(self, step: Any) -> None:
        with contextlib.suppress(StopIteration):
            next(step)
        self.busy = False
        message, self.pending = self.pending, None
        if message is not None:
            self.write(message)


async def _serve(app: Any, port: int, server_name: str) -> tuple[asyncio.Task[None], Any]:
    """Serve ``app`` on ``port`` under granian or uvicorn in this loop; returns its task and a stop function."""
    if server_name == "uvicorn":
        import uvicorn

        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, log_level="error", backlog=4096)
        )

        def stop() -> None:
            server.should_exit = True

        return asyncio.create_task(server.serve()), stop
    import logging

    from granian.constants import Interfaces
    from granian.log import LogLevels
    from granian.server.embed import Server as Granian

    logging.getLogger("_granian").setLevel(logging.ERROR)
    granian = Granian(
        app, address="127.0.0.1", port=port, interface=Interfaces.ASGI, backlog=4096, log_level=LogLevels.error
    )
    return asyncio.create_task(granian.serve()), granian.stop


async def _bare_server(port: int, server_name: str) -> None:
    followers: dict[int, _BareSocket] = {}
    seq = 0

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await receive()
        await send({"type": "websocket.accept"})
        await receive()  # the subscribe message
        await send({"type": "websocket.send", "text": json.dumps({"op": "subscribed", "channel": CHANNEL, "seq": seq})})
        followers[id(scope)] = _BareSocket(send)
        try:
            while (await receive())["type"] != "websocket.disconnect":
                pass
        finally:
            del followers[id(scope)]

    def publish(n: int) -> None:
        nonlocal seq
        seq += 1
        message = {"type": "websocket.send", "text": _frame_text(seq, n)}
        for socket_ in list(followers.values()):
            socket_.write(message)

    task, stop = await _serve(app, port, server_name)
    while not _listening(port):  # noqa: ASYNC110 - the servers offer no event for it
        await asyncio.sleep(0.05)
    print("cookie -", flush=True)
    await _publisher(publish)
    stop()
    await task


def _frame_text(seq: int, n: int) -> str:
    event = _message(n)
    event["t"] = time.monotonic_ns()
    return (
        '{"op":"event","channel":"'
        + CHANNEL
        + f'","seq":{seq},"event":'
        + json.dumps(event, separators=(",", ":"))
        + "}"
    )


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
        broadcast(followers, _frame_text(seq, n))

    async with serve(handler, "127.0.0.1", port, backlog=4096, compression=None, max_queue=None):
        print("cookie -", flush=True)
        await _publisher(publish)


# --- receivers ------------------------------------------------------------------------------------


class _Receiver(asyncio.Protocol):
    """One raw WebSocket client: handshake, one subscribe, then frames counted and timed by hand."""

    def __init__(  # noqa: PLR0917 - one per shared piece of the receiver's state
        self, host: str, cookie: str, out: list[int], counts: list[int], stamps: list[int], ready: asyncio.Event
    ) -> None:
        self.host, self.cookie, self.out, self.counts, self.ready = host, cookie, out, counts, ready
        self.stamps = stamps  # [first arrival, last arrival] (ns)
        self.buf = bytearray()
        self.upgraded = False
        self.subscribed = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's TCPTransport is not a subclass
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
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

    def data_received(self, data: bytes) -> None:  # noqa: PLR0912 - a frame parser, kept in one piece for speed
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
                if not self.stamps[0]:
                    self.stamps[0] = now
                self.stamps[1] = now
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
    stamps = [0, 0]
    stop_ns = 0
    ready = asyncio.Event()
    name, port = host.split(":")
    transports = []
    for _ in range(clients):
        transport, _protocol = await loop.create_connection(
            lambda: _Receiver(host, cookie, out, counts, stamps, ready), name, int(port)
        )
        transports.append(transport)
    try:
        await asyncio.wait_for(ready.wait(), 60)
    except TimeoutError:
        raise SystemExit(f"only {counts[0]} of {clients} subscribed") from None
    stopped = asyncio.Event()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def wait_stop() -> None:
        await reader.readline()  # "stop": the server published everything
        stopped.set()

    stop_task = asyncio.create_task(wait_stop())
    print("subscribed", flush=True)
    deadline = time.monotonic() + seconds
    quiet_ns = int(QUIET_S * 1e9)
    while time.monotonic() < deadline and len(out) < expect:
        await asyncio.sleep(0.005)
        if stopped.is_set():
            now_ns = time.monotonic_ns()
            stop_ns = stop_ns or now_ns
            if now_ns - max(stamps[1], stop_ns) > quiet_ns:
                break
    stop_task.cancel()
    for transport in transports:
        transport.close()
    lat = sorted(out)
    result = {
        "received": len(out),
        "first_ns": stamps[0],
        "last_ns": stamps[1],
        "p50_ms": round(lat[len(lat) // 2] / 1e6, 3) if lat else None,
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1e6, 3) if lat else None,
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


def _run(
    server: subprocess.Popen[str], port: int, cookie: str, *, clients: int, count: int, rate: float
) -> dict[str, Any]:
    """One receiver of ``clients`` sockets against a running server while it publishes ``count`` messages."""
    timeout = count / rate + 10 if rate else 30
    receiver = _spawn(
        "--role",
        "receive",
        "--host",
        f"127.0.0.1:{port}",
        f"--cookie={cookie}",  # one argument: a session token may begin with "-", which argparse takes for an option
        "--clients",
        str(clients),
        "--expect",
        str(clients * count),
        "--timeout",
        str(timeout),
    )
    try:
        _line(receiver, "subscribed")
        time.sleep(0.2)
        assert server.stdin is not None
        server.stdin.write("cpu\n")
        server.stdin.flush()
        cpu_before = float(_line(server, "cpu"))
        server.stdin.write(f"publish {count} {rate}\n")
        server.stdin.flush()
        published_ns = [int(part) for part in _line(server, "done").split()]
        assert receiver.stdin is not None
        receiver.stdin.write("stop\n")
        receiver.stdin.flush()
        result: dict[str, Any] = json.loads(_line(receiver, "result"))
        server.stdin.write("cpu\n")
        server.stdin.flush()
        cpu = float(_line(server, "cpu")) - cpu_before
        receiver.wait(10)
    finally:
        if receiver.poll() is None:
            receiver.kill()
    result["clients"] = clients
    result["published"] = count
    # From the first publish to the last arrival, or to the last publish when the server fell silent
    # before it (a server that conflates must not look fast for delivering little, early).
    result["seconds"] = (max(result.pop("last_ns"), published_ns[1]) - published_ns[0]) / 1e9
    del result["first_ns"]
    result["delivered_per_s"] = result["received"] / result["seconds"] if result["seconds"] else 0.0
    result["cpu_us_per_delivered"] = round(cpu / result["received"] * 1e6, 2) if result["received"] else None
    return result


class _Server:
    """A server process, started at once; :meth:`runs` waits until it is ready and measures it."""

    def __init__(self, role: str, server_name: str) -> None:
        self.role = role
        self.port = _free_port()
        server_args = ("--server", server_name) if role != "baseline" else ()
        self.process = _spawn("--role", role, "--port", str(self.port), *server_args)

    def runs(self, quick: bool) -> dict[str, dict[str, Any]]:
        """The three runs against this server, which is stopped after them."""
        role, server, port, seconds = self.role, self.process, self.port, 1 if quick else 8
        try:
            cookie = _line(server, "cookie")
            _line(server, "ready")
            return {
                f"{role}_100": _run(server, port, cookie, clients=100, count=1000 * seconds, rate=1000),
                f"{role}_1000": _run(server, port, cookie, clients=1000, count=100 * seconds, rate=100),
                f"{role}_max": _run(server, port, cookie, clients=100, count=2000 if quick else 10_000, rate=0),
            }
        finally:
            self.stop()

    def stop(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (under a minute)")
    parser.add_argument("--role", choices=["driver", "hub", "baseline", "bare", "receive"], default="driver")
    parser.add_argument("--server", choices=["granian", "uvicorn"], default="uvicorn", help="(server roles)")
    parser.add_argument(
        "--servers",
        choices=["granian", "uvicorn", "both"],
        default="both",
        help="what serves the hub: uvicorn (the product's default; first in the JSON line), granian, or both",
    )
    parser.add_argument(
        "--bare",
        dest="role_under_test",
        action="store_const",
        const="bare",
        default="hub",
        help="measure a bare ASGI app instead of the hub (the server's own cost)",
    )
    parser.add_argument("--port", type=int)
    parser.add_argument("--host")
    parser.add_argument("--cookie")
    parser.add_argument("--clients", type=int)
    parser.add_argument("--expect", type=int)
    parser.add_argument("--timeout", type=float)
    args = parser.parse_args()
    if args.role in ("hub", "bare", "baseline"):
        _raise_fd_limit()
        if args.role == "baseline":
            uvloop.run(_baseline_server(args.port))
        else:
            uvloop.run((_hub_server if args.role == "hub" else _bare_server)(args.port, args.server))
        return
    if args.role == "receive":
        uvloop.run(_receive(args.host, args.cookie, args.clients, args.expect, args.timeout))
        return

    started = time.monotonic()
    servers = ["uvicorn", "granian"] if args.servers == "both" else [args.servers]
    # Every server starts at once (their imports overlap; an idle server costs the others nothing),
    # then each is measured in turn and stopped.
    baseline = _Server("baseline", "")
    under_test = {name: _Server(args.role_under_test, name) for name in servers}
    try:
        runs = baseline.runs(args.quick)
        for server_name, server in under_test.items():
            runs |= {f"{name}@{server_name}": r for name, r in server.runs(args.quick).items()}
    finally:
        for server in under_test.values():
            if server.process.poll() is None:
                server.stop()
    for name, r in runs.items():
        print(
            f"{name:20} received {r['received']:>7} of {r['published'] * r['clients']:>7}"
            f"  {r['delivered_per_s']:>7.0f} msg/s  p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms"
            f"  cpu {r['cpu_us_per_delivered']} us/msg",
            file=sys.stderr,
        )
    figures = {name: _figures(runs, args.role_under_test, name) for name in servers}
    summary = {
        "bench": "stream",
        "quick": args.quick,
        "server": servers[0],
        **figures[servers[0]],
        "baseline_delivered_per_s": round(runs["baseline_max"]["delivered_per_s"]),
        "baseline_p99_ms_100": runs["baseline_100"]["p99_ms"],
        "baseline_p99_ms_1000": runs["baseline_1000"]["p99_ms"],
        "baseline_cpu_us_per_delivered": runs["baseline_max"]["cpu_us_per_delivered"],
        **{name: figures[name] for name in servers[1:]},
        "seconds": round(time.monotonic() - started, 1),
        "goals": {"ratio_to_baseline": ">= 0.8", "p99_ms_100": "< 2", "p99_ms_1000": "< 15"},
    }
    print(json.dumps(summary))


def _figures(runs: dict[str, dict[str, Any]], role: str, server_name: str) -> dict[str, Any]:
    """The summary figures of ``role`` served by ``server_name``, against the baseline's."""
    hub = {kind: runs[f"{role}_{kind}@{server_name}"] for kind in ("100", "1000", "max")}
    base_max = runs["baseline_max"]["delivered_per_s"]
    return {
        "ratio_to_baseline": round(hub["max"]["delivered_per_s"] / base_max, 3) if base_max else None,
        "delivered_per_s": round(hub["max"]["delivered_per_s"]),
        "p50_ms_100": hub["100"]["p50_ms"],
        "p99_ms_100": hub["100"]["p99_ms"],
        "p50_ms_1000": hub["1000"]["p50_ms"],
        "p99_ms_1000": hub["1000"]["p99_ms"],
        "cpu_us_per_delivered": hub["max"]["cpu_us_per_delivered"],
        "lost_100": hub["100"]["published"] * 100 - hub["100"]["received"],
        "lost_1000": hub["1000"]["published"] * 1000 - hub["1000"]["received"],
        "lost_max": hub["max"]["published"] * 100 - hub["max"]["received"],
    }


if __name__ == "__main__":
    main()
