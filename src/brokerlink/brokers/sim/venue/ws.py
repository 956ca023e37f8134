"""The venue's WebSocket (``/ws``, ADR 0006): auth handshake, channels, heartbeats, lifetime.

A connection is a small state machine run by four tasks (reader, writer, heartbeat, lifetime) that
all end when any of them decides the connection is over. Venue events reach it through
:meth:`Connection.deliver`, which never blocks: messages go to a bounded queue, and a client too
slow to drain it is closed (``4008``) rather than allowed to stall the venue; it reconciles over REST.

Close codes: ``4000`` lifetime reached, ``4001`` authentication failed, ``4002`` heartbeat timeout
(no pong for three intervals), ``4008`` slow consumer, ``1012`` dropped by fault injection.
"""

from __future__ import annotations

import asyncio
import math
from contextlib import suppress
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from brokerlink.brokers.sim.gate import WireError
from brokerlink.brokers.sim.venue.hub import TRADE_UPDATES
from brokerlink.brokers.sim.wire import HEADER_API_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP

if TYPE_CHECKING:
    from brokerlink.brokers.sim.venue.state import Venue

CLOSE_LIFETIME = 4000
CLOSE_AUTH = 4001
CLOSE_HEARTBEAT = 4002
CLOSE_SLOW_CONSUMER = 4008
MISSED_PONGS = 3
MARKET_CHANNELS = ("quotes", "trades", "depth")


class AuthRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """First client message. In signed mode ``signature`` = HMAC of ``ts + "GET" + "/ws"`` (empty body)."""

    op: Literal["auth"]
    api_key: str
    ts: int | None = None
    signature: str | None = None


class ClientOp(msgspec.Struct, frozen=True, kw_only=True):
    """Any later client message: subscribe, unsubscribe, ping, pong."""

    op: str
    channels: list[str] = []


class AuthOk(msgspec.Struct, frozen=True, kw_only=True):
    """The server's answer to a good auth message; ``expires_in`` is the connection lifetime in seconds."""

    op: Literal["auth"] = "auth"
    status: Literal["ok"] = "ok"
    expires_in: int


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """A channel message: ``seq`` increases by one per channel and connection."""

    ch: str
    seq: int
    data: msgspec.Raw


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True):
    """``{"op": "ping" | "pong", "ts"}`` (ms since the epoch)."""

    op: Literal["ping", "pong"]
    ts: int


class OpReply(msgspec.Struct, frozen=True, kw_only=True):
    """Answer to subscribe/unsubscribe: the connection's channels now."""

    op: str
    status: Literal["ok"] = "ok"
    channels: list[str]


class OpError(msgspec.Struct, frozen=True, kw_only=True):
    """A client message the server could not act on (the connection stays open)."""

    op: Literal["error"] = "error"
    message: str


class Connection:
    """One authenticated WebSocket connection (a hub subscriber)."""

    def __init__(self, socket: WebSocket[Any, Any, Any], venue: Venue, account_id: str) -> None:
        self.socket = socket
        self.venue = venue
        self.account_id = account_id
        self.channels: set[str] = set()
        self.close_code: int | None = None
        self.close_reason = ""
        config = venue.config
        self._heartbeat_s = config.heartbeat_interval_s
        self._lifetime_s = config.connection_lifetime_s
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(config.ws_queue_size)
        self._seq: dict[str, int] = {}
        self._done = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._last_pong = self._loop.time()

    def deliver(self, channel: str, data: msgspec.Raw) -> None:
        """Queue a channel message with the channel's next seq (never blocks)."""
        seq = self._seq.get(channel, 0) + 1
        self._seq[channel] = seq
        self.send(Envelope(ch=channel, seq=seq, data=data))

    def send(self, message: msgspec.Struct) -> None:
        """Queue any message; a full queue closes the connection as a slow consumer."""
        if self._done.is_set():
            return
        try:
            self._queue.put_nowait(msgspec.json.encode(message))
        except asyncio.QueueFull:
            self.close(CLOSE_SLOW_CONSUMER, "slow consumer: send queue overflow, reconcile over REST")

    def close(self, code: int, reason: str) -> None:
        """End the connection with this code (the first reason wins)."""
        if not self._done.is_set():
            self.close_code, self.close_reason = code, reason
            self._done.set()

    async def serve(self) -> None:
        """Run until the client leaves or the server closes the connection."""
        tasks = [asyncio.create_task(job()) for job in (self._reader, self._writer, self._heartbeat, self._lifetime)]
        try:
            await self._done.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.close_code is not None:
            with suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.socket.close(code=self.close_code, reason=self.close_reason)

    async def _reader(self) -> None:
        try:
            while True:
                self._handle(await self.socket.receive_text())
        except WebSocketDisconnect:
            self._done.set()  # the client left: nothing to close

    def _handle(self, text: str) -> None:
        try:
            message = msgspec.json.decode(text, type=ClientOp)
        except msgspec.DecodeError as exc:
            self.send(OpError(message=f"malformed message: {exc}"))
            return
        if message.op == "pong":
            self._last_pong = self._loop.time()
        elif message.op == "ping":
            self.send(Heartbeat(op="pong", ts=self.venue.now_ms()))
        elif message.op in {"subscribe", "unsubscribe"}:
            unknown = [c for c in message.channels if not self._valid(c)]
            if unknown:
                self.send(OpError(message=f"unknown channels: {', '.join(unknown)}"))
            wanted = {c for c in message.channels if c not in unknown}
            if message.op == "subscribe":
                self.channels |= wanted
            else:
                self.channels -= wanted
                for channel in wanted:
                    self._seq.pop(channel, None)
            self.send(OpReply(op=message.op, channels=sorted(self.channels)))
        else:
            self.send(OpError(message=f"unknown op {message.op!r}"))

    def _valid(self, channel: str) -> bool:
        if channel == TRADE_UPDATES:
            return True
        kind, _, symbol = channel.partition(":")
        return kind in MARKET_CHANNELS and symbol in self.venue.symbols

    async def _writer(self) -> None:
        try:
            while True:
                data = await self._queue.get()
                await self.socket.send_text(data.decode())
        except (WebSocketDisconnect, RuntimeError, OSError):
            self._done.set()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            if self._loop.time() - self._last_pong > MISSED_PONGS * self._heartbeat_s:
                self.close(CLOSE_HEARTBEAT, "heartbeat timeout: no pong")
                return
            self.send(Heartbeat(op="ping", ts=self.venue.now_ms()))

    async def _lifetime(self) -> None:
        await asyncio.sleep(self._lifetime_s)
        self.close(CLOSE_LIFETIME, "lifetime reached")


async def _authenticate(socket: WebSocket[Any, Any, Any], venue: Venue) -> str | None:
    """The account of a good auth message, or None after closing the socket with 4001."""
    timeout = MISSED_PONGS * venue.config.heartbeat_interval_s
    try:
        text = await asyncio.wait_for(socket.receive_text(), timeout)
        auth = msgspec.json.decode(text, type=AuthRequest)
        headers = {HEADER_API_KEY: auth.api_key, HEADER_TIMESTAMP: str(auth.ts), HEADER_SIGNATURE: auth.signature or ""}
        return venue.gate.authenticate(headers, "GET", "/ws", b"").account_id
    except WebSocketDisconnect:
        return None
    except (TimeoutError, msgspec.DecodeError, WireError) as exc:
        reason = exc.message if isinstance(exc, WireError) else "auth message expected first"
        with suppress(WebSocketDisconnect, RuntimeError, OSError):
            await socket.close(code=CLOSE_AUTH, reason=reason)
        return None


@websocket("/ws")
async def ws_endpoint(socket: WebSocket[Any, Any, Any]) -> None:
    """Accept, authenticate, then serve channels until one side ends the connection."""
    venue: Venue = socket.app.state.venue
    await socket.accept()
    account_id = await _authenticate(socket, venue)
    if account_id is None:
        return
    connection = Connection(socket, venue, account_id)
    connection.send(AuthOk(expires_in=math.ceil(venue.config.connection_lifetime_s)))
    venue.hub.add(connection)
    try:
        await connection.serve()
    finally:
        venue.hub.remove(connection)
