"""The open ``/v1/stream`` sockets of this process, the channel logs, and what reaches them (ADR 0030).

:class:`StreamHub` keeps every open :class:`StreamConnection` by principal, by access token and by
consent, so a revocation (:meth:`StreamHub.revoked`, a
:class:`~brokerlink.security.oauth.resource.RevocationFollower` listener) finds the sockets to close
in one lookup. It numbers every channel's events (:class:`~brokerlink.stream.channels.ChannelLog`,
per view, within the hub's ``epoch``) and feeds them from four sources, one reader of each per
process: the bus topic ``account`` (account events, and connection changes for ``alerts``), the
bus topic ``alerts`` (operational alerts for admins and auditors), the ``copy_events`` table
(:class:`~brokerlink.stream.feeds.CopyEventPoller`) and the market-data source
(:meth:`StreamHub.publish_market`, the :class:`~brokerlink.stream.protocol.MarketSink` seam).

The hub never awaits a socket (ADR 0035). A connection whose socket is idle gets each message
written at once, from the publisher's call: the ASGI ``send`` is started there and, when the server
finishes it without waiting (uvicorn with room in its transport buffer), that is all; when the send
has to wait (granian always, uvicorn once the socket's buffer is full), the connection is *behind*
until the server's future completes, and its next messages wait in its outgoing buffer: account,
copy and alert events are never dropped (past ``stream_buffer`` unsent ones the connection is closed
with 1013 and the client resumes from its sequence numbers); market data waits at most one message
per channel, replaced by the newest while the socket is behind (conflation). No task runs per
message: the server's future calls the connection back, which sends what waits in one go.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Generator, Iterator
from datetime import datetime
from functools import partial
from typing import Any, Final

import msgspec

from brokerlink import observe
from brokerlink.bus.base import EventBus
from brokerlink.domain.enums import Role
from brokerlink.engine.alerts.events import ALERTS_TOPIC
from brokerlink.engine.links.ingest import ACCOUNT_TOPIC
from brokerlink.kit.clock import Clock, SystemClock
from brokerlink.kit.errors import NotFound, Unavailable
from brokerlink.kit.ids import new_ulid
from brokerlink.logs import get_logger
from brokerlink.security.oauth.revocation import TokensRevoked
from brokerlink.security.principal import Principal
from brokerlink.stream.channels import ChannelLog
from brokerlink.stream.protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_SLOW_CONSUMER,
    Heartbeat,
    MarketSource,
)

_log = get_logger("brokerlink.stream")

STATE_KEY = "public_stream"
"""Where the app's state keeps the process's :class:`StreamHub`."""
WS_POLICY_VIOLATION: Final = CLOSE_POLICY
MAX_SUBSCRIPTIONS = 100
"""Channels one connection may follow at once (default of ``stream_max_subscriptions``)."""

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
ALERT_COPY_KINDS: Final = frozenset({"guard_tripped", "stalled", "failed", "rejected"})
"""Copy events that are also a follower's alerts."""
ALERT_CONNECTION_STATES: Final = frozenset({"disconnected", "revoked"})
"""Connection changes that are also the account owner's alerts."""
OPS_ROLES: Final = frozenset({Role.ADMIN, Role.AUDITOR})


def principal_key(principal: Principal) -> str:
    """The registry key of a principal: a user, or an app acting for one user."""
    if principal.kind == "client":
        return f"client:{principal.client_id}:{principal.user_id}"
    return "user:" + principal.user_id


class AccountView(msgspec.Struct, frozen=True):
    """Who reads an account view: the scopes that filter it (None: a session, unfiltered)."""

    scopes: frozenset[str] | None

    @property
    def key_suffix(self) -> str:
        return "*" if self.scopes is None else ",".join(sorted(self.scopes & READ_SCOPES))

    def covers(self, event_type: str) -> bool:
        return self.scopes is None or EVENT_SCOPES.get(event_type, DEFAULT_EVENT_SCOPE) in self.scopes


class AlertView(msgspec.Struct, frozen=True, kw_only=True):
    """Who reads an alerts view: a user (with operational alerts for admins and auditors), or an app
    limited to its consent's accounts and scopes."""

    user_id: str
    ops: bool
    accounts: frozenset[str] | None
    scopes: frozenset[str] | None
    consent_id: str | None = None

    @classmethod
    def of(cls, principal: Principal) -> AlertView:
        if principal.kind == "client":
            return cls(
                user_id=principal.user_id,
                ops=False,
                accounts=principal.account_ids,
                scopes=principal.scopes,
                consent_id=principal.consent_id,
            )
        return cls(user_id=principal.user_id, ops=principal.role in OPS_ROLES, accounts=None, scopes=None)

    @property
    def key(self) -> str:
        if self.consent_id is not None:
            return f"alerts|c:{self.consent_id}"
        return f"alerts|u:{self.user_id}" + (":ops" if self.ops else "")

    def covers(self, account_id: str, scope: str) -> bool:
        return (self.scopes is None or scope in self.scopes) and (self.accounts is None or account_id in self.accounts)


Send = Callable[[dict[str, Any]], Awaitable[None]]
"""An ASGI ``send``."""
SERVER_SEND: Final = "server_send"
"""Where the outermost middleware leaves a WebSocket's own ASGI ``send`` in ``scope["state"]``: the
stream writes its frames there, past middleware wrappers that only act on HTTP messages (ADR 0035)."""
OBSERVED_CHANNEL: Final = "public"
"""The metrics label of the messages this hub sends."""


class SentCounter:
    """Counts a hub's sent messages and reports them to the metrics once per loop turn, not once each."""

    __slots__ = ("count", "scheduled")

    def __init__(self) -> None:
        self.count = 0
        self.scheduled = False

    def add(self, count: int) -> None:
        self.count += count
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        count, self.count, self.scheduled = self.count, 0, False
        if count:
            observe.ws_message(channel=OBSERVED_CHANNEL, direction="out", count=count)


class _MarketSlot:
    """A place in a connection's buffer for the newest unsent update of one market channel."""

    __slots__ = ("channel",)

    def __init__(self, channel: str) -> None:
        self.channel = channel


class StreamConnection:
    """One open socket: who it is, what it follows, what waits to be sent, and whether it must close."""

    def __init__(
        self,
        principal: Principal,
        *,
        token_id: str | None = None,
        expires_at: datetime | None = None,
        buffer: int = 2000,
        now_ns: int = 0,
        counter: SentCounter | None = None,
    ) -> None:
        self.id = new_ulid()
        self.counter = counter or SentCounter()
        self.principal = principal
        self.token_id = token_id
        self.consent_id = principal.consent_id
        self.expires_at = expires_at
        self.subscriptions: dict[str, str] = {}
        """Public channel name -> the key of the view it follows."""
        self.out: deque[str | _MarketSlot] = deque()
        self.market: dict[str, str] = {}
        """Market channel -> its newest unsent message (conflation)."""
        self.buffer = buffer
        self.reliable = 0
        """Messages in ``out`` that are not market slots."""
        self.wake = asyncio.Event()
        """Set when the connection must close, or its last send finished while closing."""
        self.send: Send | None = None
        """The socket's ASGI ``send`` once :meth:`attach` ed; until then messages wait in ``out``."""
        self.sending = False
        """A send is under way (the socket is behind until it completes)."""
        self.idle = False
        """Attached, not closing, and no send under way: the next message goes out at once."""
        self.failed = False
        """A send raised: the socket is gone; nothing more is written to it."""
        self.closing = False
        self.close_code = WS_POLICY_VIOLATION
        self.close_reason = ""
        self.conflated = 0
        self.last_in_ns = now_ns
        """When the client last sent anything (the hub's clock)."""

    @property
    def accounts(self) -> set[str]:
        """The accounts whose channels this connection follows."""
        return {c.removeprefix("account:") for c in self.subscriptions if c.startswith("account:")}

    def may_receive(self, event_type: str) -> bool:
        """Whether the principal's scopes cover this kind of account event."""
        return self.principal.has_scope(EVENT_SCOPES.get(event_type, DEFAULT_EVENT_SCOPE))

    def push(self, text: str) -> None:
        """Send a message that must not be lost, or queue it while the socket is behind; past the
        buffer the connection closes (1013)."""
        if self.idle:
            self.counter.add(1)
            self.write({"type": "websocket.send", "text": text})
            return
        if self.closing:
            return
        if self.reliable >= self.buffer:
            self.close("slow consumer: resume from your sequence numbers", code=CLOSE_SLOW_CONSUMER)
            return
        self.reliable += 1
        self.out.append(text)

    def push_market(self, channel: str, text: str) -> None:
        """Send a market update, or hold it while the socket is behind: one still unsent for the same
        channel is replaced (conflated)."""
        if self.idle:
            self.counter.add(1)
            self.write({"type": "websocket.send", "text": text})
            return
        if self.closing:
            return
        if channel in self.market:
            self.conflated += 1
        else:
            self.out.append(_MarketSlot(channel))
        self.market[channel] = text

    # --- writing (module docstring; ADR 0035) ---------------------------------------------------

    def attach(self, send: Send) -> None:
        """Write to ``send`` from now on, starting with what waits."""
        self.send = send
        if not self.closing:
            self.sending = True
            self._drain()

    def write(self, message: dict[str, Any]) -> None:
        """Start sending ``message`` now; only when :attr:`idle` (the caller counts it as sent).

        The ASGI ``send`` is driven as a task would drive it: when it finishes without waiting the
        socket is idle again at once; when it waits, the server's future calls :meth:`_resume`."""
        self.idle = False
        self.sending = True
        if self._start(message):
            self.sending = False
            self.idle = not self.closing

    def _start(self, message: dict[str, Any]) -> bool:
        """Start the send of ``message``: True if it finished without waiting; False if it waits (the
        server's future resumes it) or failed (the connection is closing)."""
        try:
            step = self.send(message).__await__()  # type: ignore[misc]  # only called once attached
            waiting = next(step)
        except StopIteration:
            return True
        except Exception:  # noqa: BLE001 - a socket that cannot take a message is gone; its reader ends it
            self._fail()
            return False
        self._wait(step, waiting)
        return False

    def _wait(self, step: Generator[Any, None, None], waiting: Any) -> None:
        # What a send waits on: a future (asyncio's, or granian's future-like), or None (a bare yield).
        if waiting is None:
            asyncio.get_running_loop().call_soon(self._resume, step, None)
        else:
            waiting.add_done_callback(partial(self._resume, step))

    def _resume(self, step: Generator[Any, None, None], _done: object) -> None:
        try:
            waiting = next(step)
        except StopIteration:
            self._drain()
            return
        except Exception:  # noqa: BLE001 - the send failed: the socket is gone
            self._fail()
            return
        self._wait(step, waiting)

    def _drain(self) -> None:
        """A send finished (``sending`` still set): send what waits, until one has to wait or none does."""
        while True:
            if self.closing:
                self.sending = False
                self.wake.set()
                return
            text = self.next_message()
            if text is None:
                self.sending = False
                self.idle = True
                return
            self.counter.add(1)
            if not self._start({"type": "websocket.send", "text": text}):
                return

    def _fail(self) -> None:
        self.failed = True
        self.sending = False
        self.close("connection lost", code=CLOSE_GOING_AWAY)

    def next_message(self) -> str | None:
        """The next message to send, or None when nothing waits."""
        while self.out:
            item = self.out.popleft()
            if isinstance(item, str):
                self.reliable -= 1
                return item
            text = self.market.pop(item.channel, None)
            if text is not None:
                return text
        return None

    def drop_market(self, channel: str) -> None:
        """Forget the unsent update of a channel no longer followed."""
        self.market.pop(channel, None)

    def close(self, reason: str, code: int = WS_POLICY_VIOLATION) -> None:
        """Ask the socket's task to close with ``code`` (policy violation by default)."""
        if not self.closing:
            self.closing = True
            self.close_code = code
            self.close_reason = reason
            self.idle = False
            self.wake.set()


class StreamHub:
    """The process's registry of stream connections and its channel logs (module docstring)."""

    def __init__(
        self,
        bus: EventBus,
        *,
        node: str | None = None,
        retry_s: float = 1.0,
        clock: Clock | None = None,
        market: MarketSource | None = None,
        replay: int = 1000,
        replay_keep_s: float = 300.0,
        buffer: int = 2000,
        heartbeat_s: int = 15,
        max_subscriptions: int = MAX_SUBSCRIPTIONS,
    ) -> None:
        self.bus = bus
        node_id = node or new_ulid().lower()
        self.group = f"public-stream-{node_id}"
        self.alerts_group = f"public-stream-alerts-{node_id}"
        self.retry_s = retry_s
        self.clock: Clock = clock or SystemClock()
        self.market: MarketSource | None = market
        self.replay = replay
        self.replay_keep_s = replay_keep_s
        self.buffer = buffer
        self.heartbeat_s = heartbeat_s
        self.max_subscriptions = max_subscriptions
        self.epoch = new_ulid().lower()
        self.ready = asyncio.Event()
        """Set once the hub's bus groups exist: events published after it reach the sockets."""
        self._alerts_ready = asyncio.Event()
        self._connections: dict[str, StreamConnection] = {}
        self._by_principal: defaultdict[str, set[str]] = defaultdict(set)
        self._by_token: defaultdict[str, set[str]] = defaultdict(set)
        self._by_consent: defaultdict[str, set[str]] = defaultdict(set)
        self._logs: dict[str, ChannelLog] = {}
        self._last_seq: dict[str, int] = {}
        """The last sequence number of every view ever dropped: numbers never go back within an epoch."""
        self._account_views: dict[str, dict[str, AccountView]] = {}
        """Account id -> its live views (log key -> view)."""
        self._alert_views: dict[str, dict[str, AlertView]] = {}
        """User id -> their live alert views."""
        self._wanting: dict[str, asyncio.Future[None]] = {}
        self.sent = SentCounter()
        self._tasks: list[asyncio.Task[None]] = []
        self.owners: Callable[[str], Awaitable[str | None]] | None = None
        """``account id -> its owner's user id`` (set by the feeds; connection changes become alerts)."""

    # --- the registry ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._connections)

    def new_connection(
        self, principal: Principal, *, token_id: str | None = None, expires_at: datetime | None = None
    ) -> StreamConnection:
        """A connection with this hub's buffer size and clock."""
        return StreamConnection(
            principal,
            token_id=token_id,
            expires_at=expires_at,
            buffer=self.buffer,
            now_ns=self.clock.monotonic_ns(),
            counter=self.sent,
        )

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
            for channel in list(connection.subscriptions):
                self.unfollow(connection, channel)
            self._connections.pop(connection.id, None)
            _discard(self._by_principal, principal_key(connection.principal), connection.id)
            if connection.token_id is not None:
                _discard(self._by_token, connection.token_id, connection.id)
            if connection.consent_id is not None:
                _discard(self._by_consent, connection.consent_id, connection.id)

    def of_principal(self, principal: Principal) -> list[StreamConnection]:
        """The open connections of ``principal``."""
        return [self._connections[c] for c in self._by_principal.get(principal_key(principal), ())]

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

    # --- channel logs ---------------------------------------------------------------------------

    def log(self, key: str) -> ChannelLog | None:
        """The live log of a view, if any."""
        return self._logs.get(key)

    def _open_log(self, key: str, channel: str, *, replay: int) -> ChannelLog:
        log = self._logs.get(key)
        if log is None:
            # A view dropped earlier continues its numbers, one past the last: the events it did not
            # record in between are a gap no resume can cross (start = seq).
            last = self._last_seq.pop(key, None)
            log = ChannelLog(key, channel, seq=0 if last is None else last + 1, replay=replay)
            self._logs[key] = log
        return log

    def _drop_log(self, log: ChannelLog) -> None:
        self._logs.pop(log.key, None)
        self._last_seq[log.key] = log.seq
        for owner, accounts in list(self._account_views.items()):
            if accounts.pop(log.key, None) is not None and not accounts:
                del self._account_views[owner]
        for owner, alerts in list(self._alert_views.items()):
            if alerts.pop(log.key, None) is not None and not alerts:
                del self._alert_views[owner]

    def account_log(self, account_id: str, view: AccountView) -> ChannelLog:
        """The log of an account's view (opened if needed)."""
        key = f"account:{account_id}|{view.key_suffix}"
        log = self._open_log(key, "account:" + account_id, replay=self.replay)
        self._account_views.setdefault(account_id, {})[key] = view
        return log

    def copy_log(self, subscription_id: str) -> ChannelLog:
        """The log of a subscription's copy channel (opened if needed)."""
        key = "copy:" + subscription_id
        return self._open_log(key, key, replay=self.replay)

    def alerts_log(self, view: AlertView) -> ChannelLog:
        """The log of an alerts view (opened if needed)."""
        log = self._open_log(view.key, "alerts", replay=self.replay)
        self._alert_views.setdefault(view.user_id, {})[view.key] = view
        return log

    def follow(self, connection: StreamConnection, log: ChannelLog) -> bool:
        """Make ``connection`` receive ``log``'s events from now on; False when at the cap."""
        current = connection.subscriptions.get(log.channel)
        if current is None and len(connection.subscriptions) >= self.max_subscriptions:
            return False
        if current is not None and current != log.key:
            self.unfollow(connection, log.channel)
        connection.subscriptions[log.channel] = log.key
        log.followers.add(connection.id)
        log.idle_since = None
        return True

    def unfollow(self, connection: StreamConnection, channel: str) -> None:
        """Stop sending ``channel`` to ``connection`` (nothing happens when it was not followed)."""
        key = connection.subscriptions.pop(channel, None)
        connection.drop_market(channel)
        if key is None:
            return
        log = self._logs.get(key)
        if log is None:
            return
        log.followers.discard(connection.id)
        if log.followers:
            return
        if log.replay.maxlen:  # reliable: keep recording a while, for the client's resume
            log.idle_since = self._seconds()
        else:  # market: the source stops feeding this process
            self._drop_log(log)
            if self.market is not None:
                self.market.unwant(channel)

    def _seconds(self) -> float:
        return self.clock.monotonic_ns() / 1e9

    def sweep(self) -> int:
        """Drop the reliable logs nobody followed for ``replay_keep_s``; returns how many."""
        cutoff = self._seconds() - self.replay_keep_s
        stale = [log for log in self._logs.values() if log.idle_since is not None and log.idle_since <= cutoff]
        for log in stale:
            self._drop_log(log)
        return len(stale)

    def _publish(self, log: ChannelLog, payload: str) -> int:
        text = log.append(payload)
        message = {"type": "websocket.send", "text": text}  # one for every idle socket: servers only read it
        connections = self._connections
        sent = 0
        for connection_id in log.followers:
            connection = connections[connection_id]
            if connection.idle:
                sent += 1
                connection.write(message)
            else:
                connection.push(text)
        if sent:
            self.sent.add(sent)
        return len(log.followers)

    # --- sources --------------------------------------------------------------------------------

    def deliver(self, payload: bytes) -> int:
        """Publish one bus ``account`` event to its account's views that cover it; returns the sends."""
        try:
            head = msgspec.json.decode(payload, type=_EventHead)
        except msgspec.DecodeError:
            _log.error("public_stream_event_malformed")
            return 0
        views = self._account_views.get(head.account_id)
        if not views:
            return 0
        text = payload.decode()
        sent = 0
        for key, view in list(views.items()):
            log = self._logs.get(key)
            if log is not None and view.covers(head.type):
                sent += self._publish(log, text)
        return sent

    def publish_copy(self, subscription_id: str, payload: str) -> int:
        """Publish one copy event (JSON object text) to ``copy:{subscription_id}`` if it is live."""
        log = self._logs.get("copy:" + subscription_id)
        return 0 if log is None else self._publish(log, payload)

    def publish_alert(self, user_id: str, account_id: str, scope: str, payload: str) -> int:
        """Publish one of a user's alerts to their alert views that cover its account and scope."""
        sent = 0
        for key, view in list(self._alert_views.get(user_id, {}).items()):
            log = self._logs.get(key)
            if log is not None and view.covers(account_id, scope):
                sent += self._publish(log, payload)
        return sent

    def publish_ops_alert(self, payload: str) -> int:
        """Publish one operational alert (bus ``alerts``) to every admin's and auditor's alert view."""
        sent = 0
        for views in list(self._alert_views.values()):
            for key, view in list(views.items()):
                log = self._logs.get(key)
                if view.ops and log is not None:
                    sent += self._publish(log, payload)
        return sent

    @property
    def wants_alerts(self) -> bool:
        """Whether any alert view is live (else connection changes need no owner lookup)."""
        return bool(self._alert_views)

    # --- market data (the MarketSink side of the seam) ------------------------------------------

    def publish_market(self, channel: str, event: dict[str, Any]) -> None:
        """One update of a market channel: numbered and handed to its followers, conflated for the slow."""
        log = self._logs.get(channel)
        if log is None or not log.followers:
            return
        text = log.append(msgspec.json.encode(event).decode())
        message = {"type": "websocket.send", "text": text}  # as in _publish
        connections = self._connections
        sent = 0
        for connection_id in log.followers:
            connection = connections[connection_id]
            if connection.idle:
                sent += 1
                connection.write(message)
            else:
                connection.push_market(channel, text)
        if sent:
            self.sent.add(sent)

    async def market_log(self, channel: str) -> ChannelLog:
        """The log of a market channel, asking the source to feed it first (raises NotFound)."""
        if self.market is None:
            raise NotFound("no market data here")
        log = self._logs.get(channel)
        if log is not None:
            return log
        pending = self._wanting.get(channel)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._wanting[channel] = pending
            try:
                await self.market.want(channel)
            except BaseException as exc:
                pending.set_exception(exc)
                pending.exception()  # retrieved: the waiters re-raise it
                raise
            else:
                pending.set_result(None)
            finally:
                del self._wanting[channel]
        else:
            await asyncio.shield(pending)
        return self._open_log(channel, channel, replay=0)

    def release(self, log: ChannelLog) -> None:
        """Drop a market log that got no follower (its subscription was refused after the source was asked)."""
        if not log.followers and not log.replay.maxlen and self._logs.get(log.key) is log:
            self._drop_log(log)
            if self.market is not None:
                self.market.unwant(log.channel)

    def market_snapshot(self, channel: str) -> dict[str, Any] | None:
        """The market channel's current state, from the source."""
        return None if self.market is None else self.market.snapshot(channel)

    # --- heartbeats -----------------------------------------------------------------------------

    def tick(self) -> None:
        """Send every socket a heartbeat, close the silent ones (1001), drop idle logs."""
        now_ns = self.clock.monotonic_ns()
        limit_ns = 3 * self.heartbeat_s * 1_000_000_000
        text = msgspec.json.encode(Heartbeat(time=self.clock.now())).decode()
        for connection in list(self._connections.values()):
            if now_ns - connection.last_in_ns > limit_ns:
                connection.close("heartbeat timeout", code=CLOSE_GOING_AWAY)
            else:
                connection.push(text)
        self.sweep()

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start reading the bus; returns once its groups exist."""
        self._tasks = [
            asyncio.create_task(self._follow(ACCOUNT_TOPIC, self.group, self.ready), name="public-stream-hub"),
            asyncio.create_task(
                self._follow(ALERTS_TOPIC, self.alerts_group, self._alerts_ready), name="public-stream-alerts"
            ),
            asyncio.create_task(self._beat(), name="public-stream-heartbeat"),
        ]
        ready = asyncio.create_task(self.ready.wait())
        await asyncio.wait({self._tasks[0], ready}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._alerts_ready.wait(), timeout=5)

    async def stop(self) -> None:
        """Stop reading and close every socket (going away)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for connection in list(self._connections.values()):
            connection.close("server shutting down", code=CLOSE_GOING_AWAY)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - heartbeats must outlive one bad tick; logged
                _log.exception("public_stream_tick_failed")

    async def _follow(self, topic: str, group: str, ready: asyncio.Event) -> None:
        consumer = self.bus.consumer(topic, group, "stream", start="latest")
        block_ms = 0
        while True:
            try:
                messages = await consumer.read(max_count=100, block_ms=block_ms)
            except Unavailable as exc:
                _log.warning("public_stream_bus_unavailable", topic=topic, error=str(exc))
                await asyncio.sleep(self.retry_s)
                continue
            except Exception:  # noqa: BLE001 - the stream must outlive a bad read; logged with its cause
                _log.exception("public_stream_read_failed", topic=topic)
                await asyncio.sleep(self.retry_s)
                continue
            ready.set()
            block_ms = 1000
            for message in messages:
                if topic == ACCOUNT_TOPIC:
                    self.deliver(message.payload)
                    await self._connection_alert(message.payload)
                else:
                    self.publish_ops_alert(message.payload.decode())
            if messages:
                await consumer.ack(*messages)

    async def _connection_alert(self, payload: bytes) -> None:
        if not self._alert_views or self.owners is None or b'"connection_changed"' not in payload:
            return
        try:
            change = msgspec.json.decode(payload, type=_ConnectionHead)
        except msgspec.DecodeError:
            return
        if change.type != "connection_changed" or change.state not in ALERT_CONNECTION_STATES:
            return
        try:
            owner = await self.owners(change.account_id)
        except Exception:  # noqa: BLE001 - an alert lost to a database hiccup is logged, not fatal
            _log.exception("public_stream_owner_lookup_failed")
            return
        if owner is not None:
            self.publish_alert(owner, change.account_id, "accounts:read", payload.decode())


class _EventHead(msgspec.Struct):
    type: str
    account_id: str


class _ConnectionHead(msgspec.Struct):
    type: str
    account_id: str
    state: str = ""


def _discard(index: defaultdict[str, set[str]], key: str, connection_id: str) -> None:
    members = index.get(key)
    if members is None:
        return
    members.discard(connection_id)
    if not members:
        del index[key]
