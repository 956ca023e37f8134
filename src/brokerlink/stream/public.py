"""``/v1/stream``: a WebSocket of live account events, for the user's browser and for third-party apps.

Authentication happens at the handshake, as for any request (:mod:`brokerlink.api.auth.middleware`):
the session cookie, with the browser's ``Origin`` required to be this server (cross-site WebSocket
hijacking), or a DPoP-bound access token in ``Authorization`` with a ``DPoP`` proof on the upgrade
request (its ``htu`` the http(s) form of the socket's URL, RFC 9449 section 4.3).

Messages are JSON. The client sends::

    {"op": "subscribe", "channel": "account:<account id>"}
    {"op": "unsubscribe", "channel": "account:<account id>"}

and receives ``{"op": "subscribed"|"unsubscribed", "channel": ...}``, the account's events as
``{"op": "event", "channel": ..., "event": {...}}`` (the bus's event, e.g. ``order_filled``), or
``{"op": "error", "status": 404, "code": "not_found", ...}``. An account that is not the user's,
or outside the consent's accounts, is refused exactly like a missing one (404, no data; SECURITY.md
19, 23); an app needs one of the account read scopes to subscribe, and receives only the events its
scopes cover (orders with ``orders:read``, positions with ``positions:read``...).

The socket is closed with 1008 (policy violation) when its token or consent is revoked (within a
second: :class:`~brokerlink.stream.connections.StreamHub` follows the revocation topic), when its
token expires, when the client sends messages faster than ``rate_limit_ws_messages``, and
(by the rate-limit middleware) when its principal already has ``rate_limit_ws_connections`` open.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from brokerlink import observe
from brokerlink.api.auth.middleware import request_token_expiry, request_token_id
from brokerlink.api.ratelimit import MessageRate, RateLimiter
from brokerlink.api.scopes import PER_MESSAGE, needs
from brokerlink.kit.clock import Clock
from brokerlink.security.principal import Principal
from brokerlink.store.db import Database
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.stream.connections import (
    READ_SCOPES,
    STATE_KEY,
    WS_POLICY_VIOLATION,
    StreamConnection,
    StreamHub,
)

CHANNEL = "public"
"""The metrics label of this stream."""
_ACCOUNT_PREFIX = "account:"
_MAX_MESSAGE_CHARS = 1024


class _Command(msgspec.Struct, forbid_unknown_fields=True):
    op: Literal["subscribe", "unsubscribe"]
    channel: str


def _same_origin(socket: WebSocket[Any, Any, Any]) -> bool:
    origin = socket.headers.get("origin")
    if origin is None:  # not a browser: cookies are not sent across sites by anything else
        return True
    return urlsplit(origin).netloc.lower() == socket.headers.get("host", "").lower()


def _error(status: int, code: str, detail: str, channel: str | None = None) -> str:
    body: dict[str, Any] = {"op": "error", "status": status, "code": code, "detail": detail}
    if channel is not None:
        body["channel"] = channel
    return msgspec.json.encode(body).decode()


def _reply(op: str, channel: str) -> str:
    return msgspec.json.encode({"op": op, "channel": channel}).decode()


class _Session:
    """One socket's conversation: reads commands, answers them, and relays the hub's events."""

    def __init__(self, socket: WebSocket[Any, Any, Any], hub: StreamHub, connection: StreamConnection) -> None:
        self.socket = socket
        self.hub = hub
        self.connection = connection
        self.principal = connection.principal
        limiter: RateLimiter | None = socket.app.state.get("rate_limiter")
        self.rate: MessageRate | None = limiter.message_rate() if limiter is not None and limiter.enabled else None
        self.database: Database = socket.app.state.db

    async def read(self) -> None:
        """Handle the client's messages until it disconnects or floods."""
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                text = await self.socket.receive_data(mode="text")
                observe.ws_message(channel=CHANNEL, direction="in")
                if self.rate is not None and not await self.rate.admit(self.socket):
                    return
                self.connection.push(await self.answer(text))

    async def answer(self, text: str) -> str:
        """The reply to one client message."""
        if len(text) > _MAX_MESSAGE_CHARS:
            return _error(400, "invalid_message", "message too long")
        try:
            command = msgspec.json.decode(text, type=_Command)
        except msgspec.DecodeError:
            return _error(400, "invalid_message", 'send {"op": "subscribe"|"unsubscribe", "channel": "account:<id>"}')
        if not command.channel.startswith(_ACCOUNT_PREFIX):
            return _error(404, "not_found", "no such channel", command.channel)
        account_id = command.channel.removeprefix(_ACCOUNT_PREFIX)
        if command.op == "unsubscribe":
            self.hub.unsubscribe(self.connection, account_id)
            return _reply("unsubscribed", command.channel)
        return await self._subscribe(command.channel, account_id)

    async def _subscribe(self, channel: str, account_id: str) -> str:
        if self.principal.kind == "client" and not (self.principal.scopes or frozenset()) & READ_SCOPES:
            return _error(403, "insufficient_scope", "following an account needs an account read scope", channel)
        if not await self._reaches(account_id):
            return _error(404, "not_found", "account not found", channel)
        if not self.hub.subscribe(self.connection, account_id):
            return _error(409, "too_many_subscriptions", "unsubscribe from something first", channel)
        return _reply("subscribed", channel)

    async def _reaches(self, account_id: str) -> bool:
        if len(account_id) > 40 or not self.principal.can_reach_account(account_id):
            return False
        async with self.database.session() as db:
            return await AccountRepository(db).get_for_user(self.principal.user_id, account_id) is not None

    async def run(self, expires_at: datetime | None, clock: Clock) -> None:
        """Send queued messages until the client leaves, the hub asks to close, or the token expires."""
        reading = asyncio.create_task(self.read(), name="public-stream-read")
        closing = asyncio.create_task(self.connection.closing.wait())
        try:
            while not reading.done():
                getting = asyncio.create_task(self.connection.queue.get())
                timeout = None if expires_at is None else max(0.0, (expires_at - clock.now()).total_seconds())
                done, _ = await asyncio.wait(
                    {getting, reading, closing}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if getting not in done:
                    getting.cancel()
                if closing in done or not done:
                    if not done:
                        self.connection.close("access token expired")
                    await self.socket.close(code=self.connection.close_code, reason=self.connection.close_reason)
                    return
                if getting in done:
                    await self.socket.send_text(getting.result())
                    observe.ws_message(channel=CHANNEL, direction="out")
        finally:
            for task in (reading, closing):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                    await task


@websocket("/stream", name="public_stream", opt=needs(PER_MESSAGE))
async def public_stream(socket: WebSocket[Any, Any, Any]) -> None:
    """Live events of the accounts the client subscribes to (module docstring)."""
    principal = socket.scope.get("user")
    await socket.accept()
    if not isinstance(principal, Principal):
        await socket.close(code=WS_POLICY_VIOLATION, reason="not authenticated")
        return
    if principal.kind == "user" and not _same_origin(socket):
        await socket.close(code=WS_POLICY_VIOLATION, reason="cross-origin")
        return
    hub: StreamHub = socket.app.state[STATE_KEY]
    clock: Clock = socket.app.state.clock
    connection = StreamConnection(
        principal, token_id=request_token_id(socket.scope), expires_at=request_token_expiry(socket.scope)
    )
    observe.ws_connection(channel=CHANNEL, opened=True)
    try:
        with hub.connected(connection):
            await _Session(socket, hub, connection).run(connection.expires_at, clock)
    except WebSocketDisconnect:
        pass
    finally:
        observe.ws_connection(channel=CHANNEL, opened=False)
