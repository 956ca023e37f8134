"""A served app and WebSocket clients for the ``/v1/stream`` tests (uvicorn on loopback, real sockets)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import uvicorn
import websockets
from litestar import Litestar
from sqlalchemy import select

from brokerlink.app.factory import create_app
from brokerlink.bus.base import EventBus
from brokerlink.config import Settings
from brokerlink.engine.links.ingest import ACCOUNT_TOPIC
from brokerlink.kit.clock import ManualClock
from brokerlink.security.sessions import SessionService
from brokerlink.store.db import Database
from brokerlink.store.models import AccountRow
from brokerlink.store.repositories.users import UserRepository
from brokerlink.stream.connections import StreamHub
from tests.api.resource_support import Grant
from tests.api.support import link_account
from tests.contract.harness import free_port
from tests.stream.test_admin_stream import WAIT_S, _settings

READS = ["accounts:read", "balances:read", "positions:read", "orders:read"]


class World(msgspec.Struct):
    app: Litestar
    host: str
    clock: ManualClock
    cookie: str
    mine: str
    other_of_mine: str
    bobs: str
    bob_cookie: str

    @property
    def hub(self) -> StreamHub:
        hub: StreamHub = self.app.state.public_stream
        return hub


@contextlib.asynccontextmanager
async def serve(app: Litestar, port: int) -> AsyncIterator[str]:
    """The app under uvicorn on ``127.0.0.1:port`` (the port is chosen first: the origin names it)."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, lifespan="on", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):  # bounded: 10 s
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    assert server.started
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)


@contextlib.asynccontextmanager
async def serve_granian(app: Litestar, port: int) -> AsyncIterator[str]:
    """The app under granian (the product's default server), embedded in this loop."""
    from granian.constants import Interfaces
    from granian.server.embed import Server

    server = Server(app, address="127.0.0.1", port=port, interface=Interfaces.ASGI, log_enabled=False)
    task = asyncio.create_task(server.serve())
    for _ in range(200):  # bounded: 10 s
        if task.done():
            task.result()
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("granian did not start")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop()
        await asyncio.wait_for(task, timeout=15)


async def user(app: Litestar, settings: Settings, email: str) -> str:
    """A user and a signed-in session, straight in the store (no password hashing); the cookie value."""
    database: Database = app.state.db
    async with database.session() as s:
        created = await UserRepository(s).create(
            email=email, display_name=email, password_hash="-", now=app.state.clock.now()
        )
        issued = await SessionService(s, settings, app.state.clock).start(created, ip=None, user_agent=None)
        await s.commit()
    return issued.token


@contextlib.asynccontextmanager
async def world(
    tmp_path: Path, app_state: dict[str, Any] | None = None, *, server: str = "uvicorn", **changes: Any
) -> AsyncIterator[World]:
    """A served app (uvicorn, or ``server="granian"``); Alice (signed in) with two accounts, Bob
    (signed in) with one.

    ``app_state`` is put on the app's state before it starts (e.g. a ``market_source``)."""
    port = free_port()
    clock = ManualClock()
    settings = _settings(tmp_path, resource_origin=f"http://127.0.0.1:{port}", **changes)
    app = create_app(settings, clock=clock, configure_logs=False)
    for key, value in (app_state or {}).items():
        app.state[key] = value
    async with (serve_granian if server == "granian" else serve)(app, port) as host:
        cookie = await user(app, settings, "alice@example.com")
        bob_cookie = await user(app, settings, "bob@example.com")
        _, mine = await link_account(app, "alice@example.com", "Main")
        _, other = await link_account(app, "alice@example.com", "Other")
        _, bobs = await link_account(app, "bob@example.com", "Bob")
        yield World(
            app=app,
            host=host,
            clock=clock,
            cookie=cookie,
            mine=mine,
            other_of_mine=other,
            bobs=bobs,
            bob_cookie=bob_cookie,
        )


def with_cookie(w: World, cookie: str | None = None, **kwargs: Any) -> Any:
    headers = {"Cookie": f"brokerlink_session={cookie or w.cookie}"}
    return websockets.connect(f"ws://{w.host}/v1/stream", additional_headers=headers, **kwargs)


def with_token(w: World, g: Grant, **kwargs: Any) -> Any:
    # RFC 9449: the handshake is a GET, its htu the http form of the socket's URL.
    headers = g.key.headers("GET", f"http://{w.host}/v1/stream", g.token, w.clock.now())
    return websockets.connect(f"ws://{w.host}/v1/stream", additional_headers=headers, **kwargs)


async def recv(ws: Any) -> dict[str, Any]:
    """The next message that is not a heartbeat (bounded wait)."""
    while True:
        message: dict[str, Any] = msgspec.json.decode(await asyncio.wait_for(ws.recv(), WAIT_S))
        if message["op"] != "heartbeat":
            return message


async def welcome(ws: Any) -> dict[str, Any]:
    message = await recv(ws)
    assert message["op"] == "welcome", message
    return message


async def send(ws: Any, op: str, channel: str | None = None, **fields: Any) -> None:
    body = {"op": op} | ({} if channel is None else {"channel": channel}) | fields
    await ws.send(msgspec.json.encode(body).decode())


async def ask(ws: Any, op: str, channel: str, **fields: Any) -> dict[str, Any]:
    """Send a command; its first reply (``subscribed``, ``unsubscribed`` or ``error``)."""
    await send(ws, op, channel, **fields)
    return await recv(ws)


async def subscribe(ws: Any, channel: str, **fields: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Subscribe; the ``subscribed`` reply and the snapshot that follows it (None when resumed)."""
    reply = await ask(ws, "subscribe", channel, **fields)
    assert reply["op"] == "subscribed", reply
    if reply["resumed"]:
        return reply, None
    snapshot = await recv(ws)
    assert (snapshot["op"], snapshot["seq"]) == ("snapshot", reply["seq"]), snapshot
    return reply, snapshot


async def publish(w: World, account_id: str, kind: str, **fields: Any) -> None:
    bus: EventBus = w.app.state.bus
    event = {"type": kind, "account_id": account_id, "ts": "2026-11-21T12:00:00Z"} | fields
    await bus.publish(ACCOUNT_TOPIC, account_id, msgspec.json.encode(event))


async def closed(ws: Any) -> tuple[int | None, float]:
    """Wait (bounded) for the server's close; its code and how long it took from now."""
    started = time.monotonic()
    try:
        while True:
            await asyncio.wait_for(ws.recv(), WAIT_S)
    except websockets.ConnectionClosed:
        return ws.close_code, time.monotonic() - started


async def until(condition: Any, what: str) -> None:
    """Wait (bounded: 10 s) for ``condition()`` to hold."""
    for _ in range(400):
        if condition():
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"never happened: {what}")


async def account_owner(app: Litestar, account_id: str) -> str:
    database: Database = app.state.db
    async with database.session() as s:
        return (await s.execute(select(AccountRow.user_id).where(AccountRow.id == account_id))).scalar_one()


class RawClient:
    """A WebSocket client on a bare socket: it reads only when told to, so it can stop reading entirely
    (a slow consumer), and its receive buffer is small (loopback's may grow to tens of MB)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, cookie: str, *, rcvbuf: int = 8192) -> RawClient:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        name, port = host.split(":")
        await asyncio.get_running_loop().sock_connect(sock, (name, int(port)))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /v1/stream HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Cookie: brokerlink_session={cookie}\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send(self, body: dict[str, Any]) -> None:
        payload = msgspec.json.encode(body)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert len(payload) < 126
        self.writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    async def frame(self) -> tuple[int, bytes]:
        """The next frame's opcode and payload (bounded wait)."""
        first, second = await asyncio.wait_for(self.reader.readexactly(2), WAIT_S)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(await self.reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await self.reader.readexactly(8), "big")
        return first & 0x0F, await asyncio.wait_for(self.reader.readexactly(length), WAIT_S)

    async def close_code(self) -> tuple[int, list[dict[str, Any]]]:
        """Read every frame up to the server's close; its code and the messages before it."""
        messages = []
        while True:
            opcode, payload = await self.frame()
            if opcode == 0x8:
                self.writer.close()
                return int.from_bytes(payload[:2], "big"), messages
            if opcode == 0x1:
                messages.append(msgspec.json.decode(payload))
