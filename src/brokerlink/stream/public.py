"""``/v1/stream``: the WebSocket of live data, for the user's browser and for third-party apps.

The wire protocol is :mod:`brokerlink.stream.protocol` (its docstring is the contract; ADR 0030 the
design). Authentication happens at the handshake, as for any request
(:mod:`brokerlink.api.auth.middleware`): the session cookie, with the browser's ``Origin`` required to
be this server (cross-site WebSocket hijacking), or a DPoP-bound access token in ``Authorization``
with a ``DPoP`` proof on the upgrade request (its ``htu`` the http(s) form of the socket's URL, RFC
9449 section 4.3).

The server sends :class:`~brokerlink.stream.protocol.Welcome` first, then answers each client
message: ``subscribe`` (with ``after`` and ``epoch`` to resume), ``unsubscribe`` and ``ping``.
Subscriptions are authorized per object and per consent scope (:mod:`brokerlink.stream.access`).

Each socket has one task, this module's reader, which answers the client; the session's own task
waits for the socket to close. Messages reach the socket from whoever publishes them
(:class:`~brokerlink.stream.connections.StreamConnection` writes to an idle socket at once and holds
what comes while a send is under way: ADR 0035). The socket is closed with 1008 when its token or consent
is revoked (within a second: the hub follows the revocation topic), when its token expires, when the
client sends messages faster than ``rate_limit_ws_messages``, and (by the rate-limit middleware)
when its principal already has ``rate_limit_ws_connections`` open; with 1013 when its buffer of
account, copy or alert events overflows; with 1001 after three silent heartbeat intervals or when
the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast
from urllib.parse import urlsplit

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from brokerlink import observe
from brokerlink.api.auth.middleware import request_token_expiry, request_token_id
from brokerlink.api.ratelimit import MessageRate, RateLimiter
from brokerlink.api.scopes import PER_MESSAGE, needs
from brokerlink.kit.clock import Clock
from brokerlink.kit.errors import NotFound
from brokerlink.security.principal import Principal
from brokerlink.stream.access import Access, Refused
from brokerlink.stream.access import Snapshot as LoadSnapshot
from brokerlink.stream.channels import ChannelLog, parse_channel
from brokerlink.stream.connections import (
    SERVER_SEND,
    STATE_KEY,
    WS_POLICY_VIOLATION,
    Send,
    StreamConnection,
    StreamHub,
)
from brokerlink.stream.protocol import (
    ClientMessage,
    Error,
    Ping,
    Pong,
    Snapshot,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    Welcome,
)

CHANNEL = "public"
"""The metrics label of this stream."""
_MAX_MESSAGE_CHARS = 1024
_SNAPSHOT_TRIES = 3
_decoder = msgspec.json.Decoder(ClientMessage)
_encoder = msgspec.json.Encoder()


def _same_origin(socket: WebSocket[Any, Any, Any]) -> bool:
    origin = socket.headers.get("origin")
    if origin is None:  # not a browser: cookies are not sent across sites by anything else
        return True
    return urlsplit(origin).netloc.lower() == socket.headers.get("host", "").lower()


def _text(message: msgspec.Struct) -> str:
    return _encoder.encode(message).decode()


def _error(status: int, code: str, detail: str, channel: str | None = None) -> str:
    return _text(Error(status=status, code=code, detail=detail, channel=channel))


class _Session:
    """One socket's conversation: reads client messages, answers them, and drains the connection's buffer."""

    def __init__(
        self, socket: WebSocket[Any, Any, Any], hub: StreamHub, connection: StreamConnection, clock: Clock
    ) -> None:
        self.socket = socket
        self.hub = hub
        self.connection = connection
        self.principal = connection.principal
        self.clock = clock
        limiter: RateLimiter | None = socket.app.state.get("rate_limiter")
        self.rate: MessageRate | None = limiter.message_rate() if limiter is not None and limiter.enabled else None
        self.access = Access(hub, socket.app.state.db)
        self.closed_by_reader = False

    async def read(self) -> None:
        """Handle the client's messages until it disconnects or floods."""
        try:
            with contextlib.suppress(WebSocketDisconnect):
                while not self.connection.closing:
                    text = await self.socket.receive_data(mode="text")
                    self.connection.last_in_ns = self.clock.monotonic_ns()
                    observe.ws_message(channel=CHANNEL, direction="in")
                    if self.rate is not None and not await self.rate.admit(self.socket):
                        self.closed_by_reader = True
                        return
                    reply = await self.answer(text)
                    if reply is not None:
                        self.connection.push(reply)
        finally:
            self.connection.wake.set()

    async def answer(self, text: str) -> str | None:
        """Act on one client message; the reply to push, if it is not pushed already."""
        if len(text) > _MAX_MESSAGE_CHARS:
            return _error(400, "invalid_message", "message too long")
        try:
            message = _decoder.decode(text)
        except msgspec.DecodeError as exc:
            return _error(400, "invalid_message", f"not a client message: {exc}")
        if isinstance(message, Ping):
            return _text(Pong(id=message.id))
        if isinstance(message, Unsubscribe):
            self.hub.unfollow(self.connection, message.channel)
            return _text(Unsubscribed(channel=message.channel))
        return await self.subscribe(message)

    async def subscribe(self, message: Subscribe) -> str | None:
        """Follow a channel: resume from the replay buffer, or snapshot, then live events."""
        channel = message.channel
        name = parse_channel(channel)
        if name is None:
            return _error(404, "not_found", "no such channel", channel)
        connection = self.connection
        if channel not in connection.subscriptions and len(connection.subscriptions) >= self.hub.max_subscriptions:
            return _error(409, "too_many_subscriptions", "unsubscribe from something first", channel)
        self.hub.unfollow(connection, channel)  # subscribing again starts over
        if name.market:
            return await self._market(channel)
        try:
            log, snapshot = await self.access.reliable(self.principal, name)
        except Refused as refused:
            return _error(refused.status, refused.code, refused.detail, channel)
        return await self._reliable(message, log, snapshot)

    async def _market(self, channel: str) -> str | None:
        try:
            log = await self.hub.market_log(channel)
        except NotFound as exc:
            return _error(404, "not_found", str(exc) or "no such channel", channel)
        if self.connection.closing:
            self.hub.release(log)
            return None
        self.hub.follow(self.connection, log)
        data = self.hub.market_snapshot(channel)
        self.connection.push(_text(Subscribed(channel=channel, seq=log.seq)))
        if data is not None:
            self.connection.push(_text(Snapshot(channel=channel, seq=log.seq, data=data)))
        return None

    async def _reliable(self, message: Subscribe, log: ChannelLog, snapshot: LoadSnapshot) -> str | None:
        hub, connection, channel = self.hub, self.connection, message.channel
        after = message.after
        if after is not None and message.epoch == hub.epoch and log.can_resume(after):
            hub.follow(connection, log)
            connection.push(_text(Subscribed(channel=channel, seq=after, resumed=True)))
            for text in log.since(after):
                connection.push(text)
            return None
        log.idle_since = None  # not swept while the snapshot loads
        try:
            for _ in range(_SNAPSHOT_TRIES):
                seq = log.seq
                data = await snapshot()
                if log.can_resume(seq):
                    break
            else:
                return _error(503, "unavailable", "the channel is too busy to snapshot; try again", channel)
        finally:
            if not log.followers:
                log.idle_since = hub.clock.monotonic_ns() / 1e9
        if connection.closing:
            return None
        # Events after `seq` may already show in the snapshot (it was read after they happened):
        # they are sent anyway, so nothing is lost; applying them again must be harmless (ADR 0030).
        hub.follow(connection, log)
        connection.push(_text(Subscribed(channel=channel, seq=seq)))
        connection.push(_text(Snapshot(channel=channel, seq=seq, data=data)))
        for text in log.since(seq):
            connection.push(text)
        return None

    async def write(self) -> None:
        """Let the connection write to the socket until it must close or the client left, then close it."""
        connection, socket, reading = self.connection, self.socket, self.reading
        # The server's own send when the outermost middleware left it (ADR 0035), else the wrapped one.
        connection.attach(cast("Send", socket.scope.get("state", {}).get(SERVER_SEND) or socket.send))
        while not connection.closing and not reading.done():
            connection.wake.clear()
            await connection.wake.wait()
        if not connection.closing:
            return
        while connection.sending:  # the close frame goes after the message under way
            connection.wake.clear()
            await connection.wake.wait()
        if not self.closed_by_reader and not connection.failed:
            with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
                await socket.close(code=connection.close_code, reason=connection.close_reason)

    async def run(self) -> None:
        """Read and write until the client leaves, the hub asks to close, or the token expires."""
        self.reading = asyncio.create_task(self.read(), name="public-stream-read")
        timer: asyncio.TimerHandle | None = None
        if self.connection.expires_at is not None:
            delay = max(0.0, (self.connection.expires_at - self.clock.now()).total_seconds())
            timer = asyncio.get_running_loop().call_later(delay, self.connection.close, "access token expired")
        try:
            await self.write()
        finally:
            if timer is not None:
                timer.cancel()
            self.reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                await self.reading


@websocket("/stream", name="public_stream", opt=needs(PER_MESSAGE))
async def public_stream(socket: WebSocket[Any, Any, Any]) -> None:
    """Live market, account, copy and alert events of the channels the client subscribes to (module docstring)."""
    principal = socket.scope.get("user")
    await socket.accept()  # authentication gave its database session back already (api/auth/middleware.py)
    if not isinstance(principal, Principal):
        await socket.close(code=WS_POLICY_VIOLATION, reason="not authenticated")
        return
    if principal.kind == "user" and not _same_origin(socket):
        await socket.close(code=WS_POLICY_VIOLATION, reason="cross-origin")
        return
    hub: StreamHub = socket.app.state[STATE_KEY]
    clock: Clock = socket.app.state.clock
    connection = hub.new_connection(
        principal, token_id=request_token_id(socket.scope), expires_at=request_token_expiry(socket.scope)
    )
    observe.ws_connection(channel=CHANNEL, opened=True)
    try:
        with hub.connected(connection):
            connection.push(
                _text(
                    Welcome(
                        connection_id=connection.id, epoch=hub.epoch, heartbeat_s=hub.heartbeat_s, replay=hub.replay
                    )
                )
            )
            await _Session(socket, hub, connection, clock).run()
    except WebSocketDisconnect:
        pass
    finally:
        observe.ws_connection(channel=CHANNEL, opened=False)
