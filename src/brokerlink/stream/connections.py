"""The open ``/v1/stream`` sockets of this process, and what reaches them.

:class:`StreamHub` keeps every open :class:`StreamConnection` by principal, by access token and by
consent, so a revocation (:meth:`StreamHub.revoked`, a
:class:`~brokerlink.security.oauth.resource.RevocationFollower` listener) finds the sockets to close
in one lookup. It also reads the bus topic ``account`` once per process (a consumer group of its
own, starting at the latest message) and hands each event to the connections subscribed to its
account, filtered by the scope the event's kind needs (:data:`EVENT_SCOPES`).

A connection never blocks the hub: it has a bounded queue and loses its oldest message when the
socket cannot keep up; closing is a flag the socket's own task acts on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from typing import Final

import msgspec

from brokerlink.bus.base import EventBus
from brokerlink.engine.links.ingest import ACCOUNT_TOPIC
from brokerlink.kit.errors import Unavailable
from brokerlink.kit.ids import new_ulid
from brokerlink.logs import get_logger
from brokerlink.security.oauth.revocation import TokensRevoked
from brokerlink.security.principal import Principal

_log = get_logger("brokerlink.stream")

STATE_KEY = "public_stream"
"""Where the app's state keeps the process's :class:`StreamHub`."""
WS_POLICY_VIOLATION: Final = 1008
QUEUE_SIZE = 256
MAX_SUBSCRIPTIONS = 100
"""Channels one connection may follow at once."""

READ_SCOPES: Final = frozenset({"accounts:read", "balances:read", "positions:read", "orders:read"})
"""An app needs at least one of these to follow an account at all."""
EVENT_SCOPES: Final[dict[str, str]] = {
    "order_accepted": "orders:read",
    "order_rejected": "orders:read",
    "order_updated": "orders:read",
    "order_cancel_requested": "orders:read",
    "order_cancel_rejected": "orders:read",
    "order_canceled": "orders:read",
    "order_expired": "orders:read",
    "order_triggered": "orders:read",
    "order_filled": "orders:read",
    "position_updated": "positions:read",
    "account_updated": "balances:read",
    "connection_changed": "accounts:read",
}
"""The scope an app needs to receive each kind of account event (any other kind: ``accounts:read``)."""
DEFAULT_EVENT_SCOPE = "accounts:read"


def principal_key(principal: Principal) -> str:
    """The registry key of a principal: a user, or an app acting for one user."""
    if principal.kind == "client":
        return f"client:{principal.client_id}:{principal.user_id}"
    return "user:" + principal.user_id


class _EventHead(msgspec.Struct):
    type: str
    account_id: str


class StreamConnection:
    """One open socket: who it is, what it follows, what waits to be sent, and whether it must close."""

    def __init__(
        self,
        principal: Principal,
        *,
        token_id: str | None = None,
        expires_at: datetime | None = None,
    ) -> None:
        self.id = new_ulid()
        self.principal = principal
        self.token_id = token_id
        self.consent_id = principal.consent_id
        self.expires_at = expires_at
        self.accounts: set[str] = set()
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self.closing = asyncio.Event()
        self.close_code = WS_POLICY_VIOLATION
        self.close_reason = ""
        self.dropped = 0

    def may_receive(self, event_type: str) -> bool:
        """Whether the principal's scopes cover this kind of event."""
        return self.principal.has_scope(EVENT_SCOPES.get(event_type, DEFAULT_EVENT_SCOPE))

    def push(self, text: str) -> None:
        """Queue a message; a full queue loses its oldest message first."""
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(text)

    def close(self, reason: str, code: int = WS_POLICY_VIOLATION) -> None:
        """Ask the socket's task to close with ``code`` (policy violation by default)."""
        if not self.closing.is_set():
            self.close_code = code
            self.close_reason = reason
            self.closing.set()


class StreamHub:
    """The process's registry of stream connections and its reader of account events (module docstring)."""

    def __init__(self, bus: EventBus, *, node: str | None = None, retry_s: float = 1.0) -> None:
        self.bus = bus
        self.group = f"public-stream-{node or new_ulid().lower()}"
        self.retry_s = retry_s
        self.ready = asyncio.Event()
        """Set once the hub's group exists: events published after it reach the sockets."""
        self._connections: dict[str, StreamConnection] = {}
        self._by_principal: defaultdict[str, set[str]] = defaultdict(set)
        self._by_token: defaultdict[str, set[str]] = defaultdict(set)
        self._by_consent: defaultdict[str, set[str]] = defaultdict(set)
        self._by_account: defaultdict[str, set[str]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None

    # --- the registry ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._connections)

    @contextlib.contextmanager
    def connected(self, connection: StreamConnection) -> Iterator[StreamConnection]:
        """Register ``connection`` for as long as the ``with`` lasts."""
        self._connections[connection.id] = connection
        self._by_principal[principal_key(connection.principal)].add(connection.id)
        if connection.token_id is not None:
            self._by_token[connection.token_id].add(connection.id)
        if connection.consent_id is not None:
            self._by_consent[connection.consent_id].add(connection.id)
        try:
            yield connection
        finally:
            for account_id in list(connection.accounts):
                self.unsubscribe(connection, account_id)
            self._connections.pop(connection.id, None)
            _discard(self._by_principal, principal_key(connection.principal), connection.id)
            if connection.token_id is not None:
                _discard(self._by_token, connection.token_id, connection.id)
            if connection.consent_id is not None:
                _discard(self._by_consent, connection.consent_id, connection.id)

    def of_principal(self, principal: Principal) -> list[StreamConnection]:
        """The open connections of ``principal``."""
        return [self._connections[c] for c in self._by_principal.get(principal_key(principal), ())]

    def subscribe(self, connection: StreamConnection, account_id: str) -> bool:
        """Follow an account's events (the caller checked access); False when at the cap."""
        if account_id not in connection.accounts and len(connection.accounts) >= MAX_SUBSCRIPTIONS:
            return False
        connection.accounts.add(account_id)
        self._by_account[account_id].add(connection.id)
        return True

    def unsubscribe(self, connection: StreamConnection, account_id: str) -> None:
        """Stop following an account (nothing happens when it was not followed)."""
        connection.accounts.discard(account_id)
        _discard(self._by_account, account_id, connection.id)

    def revoked(self, message: TokensRevoked) -> int:
        """Close the sockets opened with revoked tokens or under a revoked consent; returns how many."""
        ids: set[str] = set()
        for token_id in message.token_ids:
            ids |= self._by_token.get(token_id, set())
        if message.consent_id is not None:
            ids |= self._by_consent.get(message.consent_id, set())
        for connection_id in ids:
            self._connections[connection_id].close("access revoked")
        if ids:
            _log.info("stream_connections_revoked", count=len(ids), reason=message.reason)
        return len(ids)

    # --- account events -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start reading account events; returns once the group exists."""
        self._task = asyncio.create_task(self._follow(), name="public-stream-hub")
        ready = asyncio.create_task(self.ready.wait())
        await asyncio.wait({self._task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()

    async def stop(self) -> None:
        """Stop reading and close every socket (going away)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for connection in list(self._connections.values()):
            connection.close("server shutting down", code=1001)

    async def _follow(self) -> None:
        consumer = self.bus.consumer(ACCOUNT_TOPIC, self.group, "stream", start="latest")
        block_ms = 0
        while True:
            try:
                messages = await consumer.read(max_count=100, block_ms=block_ms)
            except Unavailable as exc:
                _log.warning("public_stream_bus_unavailable", error=str(exc))
                await asyncio.sleep(self.retry_s)
                continue
            except Exception:  # noqa: BLE001 - the stream must outlive a bad read; logged with its cause
                _log.exception("public_stream_read_failed")
                await asyncio.sleep(self.retry_s)
                continue
            self.ready.set()
            block_ms = 1000
            for message in messages:
                self.deliver(message.payload)
            if messages:
                await consumer.ack(*messages)

    def deliver(self, payload: bytes) -> int:
        """Hand one account event to its account's followers whose scopes cover it; returns how many."""
        try:
            head = msgspec.json.decode(payload, type=_EventHead)
        except msgspec.DecodeError:
            _log.error("public_stream_event_malformed")
            return 0
        followers = self._by_account.get(head.account_id)
        if not followers:
            return 0
        channel = msgspec.json.encode("account:" + head.account_id).decode()
        text = f'{{"op":"event","channel":{channel},"event":{payload.decode()}}}'
        sent = 0
        for connection_id in followers:
            connection = self._connections[connection_id]
            if connection.may_receive(head.type):
                connection.push(text)
                sent += 1
        return sent


def _discard(index: defaultdict[str, set[str]], key: str, connection_id: str) -> None:
    members = index.get(key)
    if members is None:
        return
    members.discard(connection_id)
    if not members:
        del index[key]
