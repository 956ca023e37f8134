"""Linked broker accounts at run time: link and unlink, keep each adapter connected, persist its events.

:class:`BrokerLinks` owns one adapter per linked account. Linking proves the credentials by
connecting before anything is stored; then the connection, its vault entry (the credentials,
sealed) and the account are written in one transaction. At startup every stored link is
reconnected in the background, and each account is brought back in line with its venue
(:mod:`brokerlink.engine.links.recovery`) before its live events are applied.

Every adapter event is applied to the store and appended to the event log in one transaction
(:func:`~brokerlink.engine.links.ingest.ingest`), then published on the bus. A crash between the
commit and the publish loses the bus message but not the event: the event log has it.

One process per database runs the links (``workers = 1``, the embedded default); spreading them
over several nodes with leases is the copy engine's work.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import msgspec
from sqlalchemy.exc import IntegrityError

from brokerlink import observe
from brokerlink.brokers.backoff import Backoff
from brokerlink.brokers.base import (
    AdapterConfig,
    BrokerAdapter,
    BrokerError,
    Credentials,
    OrderRefused,
    RefusalReason,
    VenueAccount,
    adapter_kinds,
    adapter_loaded,
    create_adapter,
    load_adapter,
)
from brokerlink.bus.base import EventBus
from brokerlink.domain.enums import AccountMode, ConnectionState
from brokerlink.domain.events import ConnectionChanged, DomainEvent, OrderEvent, OrderFilled, encode_event
from brokerlink.domain.models import Account, Balance, Instrument, Order, Position
from brokerlink.engine.audit import Stamp
from brokerlink.engine.links.group import AuditHook, GroupIngest
from brokerlink.engine.links.ingest import ACCOUNT_TOPIC, Outcome
from brokerlink.engine.links.live import LiveAccount
from brokerlink.engine.links.recovery import recover, sync_holdings
from brokerlink.kit.clock import Clock
from brokerlink.kit.errors import Conflict, InvalidInput, NotFound, Unavailable
from brokerlink.kit.ids import new_id
from brokerlink.logs import get_logger
from brokerlink.security.vault import Vault
from brokerlink.store.db import Database
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.connections import ConnectionRepository
from brokerlink.store.repositories.instruments import InstrumentRepository
from brokerlink.store.repositories.positions import BalanceRepository, PositionRepository

_log = get_logger("brokerlink.engine.links")

CREDENTIALS_PURPOSE = "broker_credentials"
HOLDINGS_COALESCE_S = 0.05
"""Fills within this window share one re-read of positions and balance."""
HOLDINGS_SETTLE_S = 2.0
"""How long :meth:`BrokerLinks.holdings_settled` waits for a pending re-read of an account's holdings."""
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
CREDENTIAL_CHECK_S = 5.0
"""How long the read-only credential check during a reconnect may take before it counts as an outage."""
_STATE_OF_STREAM = {
    ConnectionState.CONNECTED: ConnectionState.CONNECTED,
    ConnectionState.CONNECTING: ConnectionState.CONNECTING,
    ConnectionState.DEGRADED: ConnectionState.DEGRADED,
    ConnectionState.DISCONNECTED: ConnectionState.DEGRADED,  # the adapter is reconnecting by itself
    ConnectionState.REVOKED: ConnectionState.REVOKED,
}

AdapterFactory = Callable[[str, AdapterConfig], BrokerAdapter]


class StoredLink(msgspec.Struct, frozen=True, kw_only=True):
    """What the vault keeps for one connection: everything needed to reach the account again."""

    base_url: str
    venue_account_id: str
    credentials: dict[str, str]
    options: dict[str, str] = msgspec.field(default_factory=dict)

    def __repr__(self) -> str:
        return f"StoredLink(base_url={self.base_url!r}, credentials={sorted(self.credentials)})"


class NewLink(msgspec.Struct, frozen=True, kw_only=True):
    """A user's request to link an account (validated by the API's schema first)."""

    broker: str
    label: str
    base_url: str
    credentials: dict[str, str]
    venue_account_id: str | None = None
    account_name: str | None = None

    def __repr__(self) -> str:
        return f"NewLink(broker={self.broker!r}, label={self.label!r}, credentials={sorted(self.credentials)})"


class BrokerLinks:
    """Every linked account's adapter in this process, and the commands that go through them."""

    def __init__(
        self,
        database: Database,
        bus: EventBus,
        vault: Vault,
        clock: Clock,
        *,
        adapter_factory: AdapterFactory = create_adapter,
        allowed_hosts: frozenset[str] = LOOPBACK_HOSTS,
        retry_max_s: float = 30.0,
        fill_horizon_days: int = 0,
        revoke_after_refusals: int = 3,
        revoke_after_s: float = 30.0,
    ) -> None:
        """``fill_horizon_days``: after a reconnect, venue fills older than this are not caught up
        (0: all). Set to the order-history retention, so a purged fill is not stored again as new.

        ``revoke_after_refusals`` / ``revoke_after_s``: a link is revoked once the broker refused its
        credentials that many times in a row during reconnects, over at least that long: a refusal
        that passes (a signed request outside the receive window while a clock is off) is not a
        revocation."""
        self.fill_horizon_days = fill_horizon_days
        self.revoke_after_refusals = revoke_after_refusals
        self.revoke_after_s = revoke_after_s
        self._refused_since: dict[str, tuple[int, datetime]] = {}  # connection id -> (refusals in a row, first)
        self.database = database
        self.bus = bus
        self.vault = vault
        self.clock = clock
        self.adapter_factory = adapter_factory
        self.allowed_hosts = allowed_hosts
        self._backoff = Backoff(base_s=min(1.0, retry_max_s), cap_s=retry_max_s)
        self.owned_elsewhere: Callable[[Order], bool] = lambda _order: False
        """Set by the copy engine: unsent orders it replays itself (recovery leaves them pending)."""
        self._live: dict[str, LiveAccount] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}  # by connection id
        self._rng = random.Random()  # noqa: S311 - retry jitter, not secrecy
        self._stopping = False
        # On SQLite (one writer at a time) events queued behind a commit share the next transaction.
        self.ingest = GroupIngest(database, clock)
        """Stores every event :meth:`apply` is given."""

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Reconnect every stored link in the background (a broker that is down does not delay startup)."""
        async with self.database.session() as session:
            rows = await ConnectionRepository(session).list_by_status(
                ConnectionState.CONNECTED,
                ConnectionState.CONNECTING,
                ConnectionState.DEGRADED,
                ConnectionState.DISCONNECTED,
            )
        for broker in sorted({row.broker for row in rows if row.credentials_ref is not None}):
            # Now, before any link's task runs: an import (ccxt's takes seconds) holds the event loop,
            # and one that ran inside a task once held it while another task had SQLite's write lock.
            load_adapter(broker)
        for row in rows:
            if row.credentials_ref is not None:
                # What the store says is from before this process: until the adapter is up, it is not.
                await self._set_status(row.id, ConnectionState.CONNECTING)
                self._supervise(row.id)
        _log.info("links_starting", connections=len(self._tasks))

    async def stop(self) -> None:
        """Close every adapter and stop reconnecting."""
        self._stopping = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for live in list(self._live.values()):  # linked, then stopped before its task first ran
            await self._close_live(live)
        await self.ingest.stop()

    async def _close_live(self, live: LiveAccount) -> None:
        """Forget and close a live account whose task never ran: a task cancelled before its first
        step never runs its ``finally``, so :meth:`link`'s adapter would stay open (and "live")."""
        self._live.pop(live.id, None)
        await live.stop_refresh()
        await live.adapter.close()

    def live(self, account_id: str) -> LiveAccount:
        """The connected account; 503 when its adapter is not connected (or not yet)."""
        live = self._live.get(account_id)
        if live is None:
            raise Unavailable("the account's broker connection is not up; try again shortly")
        return live

    def is_live(self, account_id: str) -> bool:
        """Whether the account's adapter is connected in this process."""
        live = self._live.get(account_id)
        return live is not None and live.state is ConnectionState.CONNECTED

    async def holdings_settled(self, account_id: str, *, timeout_s: float = HOLDINGS_SETTLE_S) -> None:
        """Wait (at most ``timeout_s``) for a pending re-read of the account's positions and balance.

        Fills are stored as they arrive; the positions they move are stored by the re-read that follows
        each burst (:meth:`_refresh_holdings`), tens of milliseconds later. A reader that needs the
        position a fill made (its entry price) waits here first. Returns at once when no re-read is
        pending; a re-read that fails or outlasts the wait is the reader's to live with."""
        live = self._live.get(account_id)
        refresh = None if live is None else live.refresh
        if refresh is None or refresh.done():
            return
        # ``wait`` neither cancels the re-read at the timeout nor raises what the re-read raised.
        await asyncio.wait({refresh}, timeout=timeout_s)

    def live_accounts(self) -> list[LiveAccount]:
        """Every account with an adapter in this process, connected or reconnecting (the stream's market
        data picks its sources here)."""
        return list(self._live.values())

    # --- linking -----------------------------------------------------------------------------

    async def link(self, user_id: str, request: NewLink, *, audit: Stamp | None = None) -> Account:
        """Prove the credentials by connecting, then store the link; returns the new account.

        Nothing is stored when the broker refuses the credentials (422) or cannot be reached (503).
        ``audit`` records the link in the transaction that stores it.
        """
        if request.broker not in adapter_kinds():
            raise InvalidInput(f"broker: unknown broker {request.broker!r}", extra={"field": "broker"})
        self._check_endpoint(request.base_url)
        account_id = new_id("acc")
        config = AdapterConfig(
            account_id=account_id,
            venue_account_id=request.venue_account_id or "",
            base_url=request.base_url,
            credentials=Credentials(values=dict(request.credentials)),
        )
        await self._load_adapter(request.broker)
        adapter = self.adapter_factory(request.broker, config)
        try:
            await adapter.connect()
            balance = await adapter.balance()
            instruments = await adapter.instruments()
            positions = await adapter.positions()
        except BaseException:
            await adapter.close()
            raise
        venue_account_id = request.venue_account_id or adapter.venue_account_id
        account = Account(
            id=account_id,
            user_id=user_id,
            connection_id="",
            venue_account_id=venue_account_id,
            name=request.account_name or request.label,
            currency=balance.currency,
            mode=AccountMode.HEDGING if adapter.capabilities.hedging else AccountMode.NETTING,
        )
        stored = StoredLink(
            base_url=request.base_url, venue_account_id=venue_account_id, credentials=request.credentials
        )
        try:
            account = await self._store_link(
                user_id, request, account=account, stored=stored, balance=balance, instruments=instruments,
                positions=positions, audit=audit,
            )  # fmt: skip
        except BaseException:
            await adapter.close()
            raise
        _log.info(
            "broker_linked",
            user_id=user_id,
            broker=request.broker,
            connection_id=account.connection_id,
            account_id=account_id,
        )
        live = LiveAccount(account, broker=request.broker, adapter=adapter, instruments=instruments)
        self._supervise(account.connection_id, first=live)
        return account

    async def discover(self, probe: NewLink) -> list[VenueAccount]:
        """The accounts ``probe``'s credentials reach at the broker, by one read-only call; nothing
        is stored, no stream is opened. The user picks one and links it with :meth:`link`.

        Refusals as for :meth:`link`: unknown broker or endpoint (422), credentials refused (422),
        broker unreachable (503).
        """
        if probe.broker not in adapter_kinds():
            raise InvalidInput(f"broker: unknown broker {probe.broker!r}", extra={"field": "broker"})
        self._check_endpoint(probe.base_url)
        config = AdapterConfig(
            account_id=new_id("acc"),
            venue_account_id=probe.venue_account_id or "",
            base_url=probe.base_url,
            credentials=Credentials(values=dict(probe.credentials)),
        )
        await self._load_adapter(probe.broker)
        adapter = self.adapter_factory(probe.broker, config)
        try:
            return await adapter.venue_accounts()
        finally:
            await adapter.close()

    async def _store_link(
        self,
        user_id: str,
        request: NewLink,
        *,
        account: Account,
        stored: StoredLink,
        balance: Balance,
        instruments: list[Instrument],
        positions: list[Position],
        audit: Stamp | None,
    ) -> Account:
        now = self.clock.now()
        async with self.database.session() as session:
            if await AccountRepository(session).is_linked(user_id, request.broker, stored.venue_account_id):
                raise Conflict(f"{request.broker} account {stored.venue_account_id} is already linked")
            connections = ConnectionRepository(session)
            try:
                row = await connections.create(
                    user_id=user_id, broker=request.broker, label=request.label, now=now,
                    status=ConnectionState.CONNECTED,
                )  # fmt: skip
            except IntegrityError:
                raise Conflict(f"a connection labelled {request.label!r} exists", extra={"field": "label"}) from None
            sealed = msgspec.json.encode(stored)
            secret_id = await self.vault.put(
                session, owner_id=row.id, purpose=CREDENTIALS_PURPOSE, plaintext=sealed, now=now
            )
            await connections.set_credentials_ref(row.id, secret_id, now=now)
            account = msgspec.structs.replace(account, connection_id=row.id)
            await AccountRepository(session).add(account, now=now)
            await InstrumentRepository(session).upsert_many(request.broker, instruments, now=now)
            await BalanceRepository(session).upsert(balance)
            for position in positions:
                await PositionRepository(session).upsert(position, now=now)
            if audit is not None:
                await audit.record(
                    session, action="connection.link", target=row.id, now=now,
                    details={"broker": request.broker, "account_id": account.id, "secret_id": secret_id},
                )  # fmt: skip
            await session.commit()
        return account

    async def unlink(self, user_id: str, connection_id: str, *, audit: Stamp | None = None) -> None:
        """Disconnect and forget the credentials. Accounts without history go; others stay, revoked.
        ``audit`` records the unlink in the same transaction."""
        async with self.database.session() as session:
            connections = ConnectionRepository(session)
            row = await connections.get_for_user(user_id, connection_id)
            if row is None:
                raise NotFound("connection not found")
            task = self._tasks.pop(connection_id, None)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for live in [live for live in self._live.values() if live.account.connection_id == connection_id]:
                await self._close_live(live)  # linked, then unlinked before its task first ran
            now = self.clock.now()
            if row.credentials_ref is not None:
                await self.vault.delete(session, row.credentials_ref)
                await connections.set_credentials_ref(connection_id, None, now=now)
            kept = False
            try:
                async with session.begin_nested():
                    await connections.delete_for_user(user_id, connection_id)
            except IntegrityError:  # orders or fills refer to its accounts: keep the history
                await connections.set_status(connection_id, ConnectionState.REVOKED, now=now)
                kept = True
            if audit is not None:
                await audit.record(
                    session, action="connection.unlink", target=connection_id, now=now,
                    details={"broker": row.broker, "history_kept": kept},
                )  # fmt: skip
            observe.broker_connection(connection_id=connection_id, broker=row.broker, state="revoked")
            await session.commit()
        _log.info("broker_unlinked", user_id=user_id, connection_id=connection_id)

    def _check_endpoint(self, base_url: str) -> None:
        # The server connects wherever a user points it: without a list of allowed hosts, linking
        # would let any user make it call internal services (server-side request forgery).
        parts = urlsplit(base_url)
        host = parts.hostname or ""
        schemes = {"http", "https"} if host in LOOPBACK_HOSTS else {"https"}  # plain http only to a local venue
        if parts.scheme not in schemes or host not in self.allowed_hosts:
            raise InvalidInput(
                f"base_url: {host or base_url!r} is not an allowed broker endpoint", extra={"field": "base_url"}
            )

    # --- running each link ---------------------------------------------------------------------

    @staticmethod
    async def _load_adapter(broker: str) -> None:
        """Import the broker's adapter module in a thread if it is not loaded: on the event loop,
        ccxt's import stalled every task for seconds (writers holding SQLite's lock included)."""
        if not adapter_loaded(broker):
            await asyncio.to_thread(load_adapter, broker)

    def _supervise(self, connection_id: str, *, first: LiveAccount | None = None) -> None:
        if first is not None:  # usable from the moment link() returns
            self._live[first.id] = first
        task = asyncio.create_task(self._run(connection_id, first), name=f"link-{connection_id}")
        self._tasks[connection_id] = task

    async def _run(self, connection_id: str, live: LiveAccount | None) -> None:
        """Keep one connection's adapter up: open, recover, pump; on any failure, back off and start over.

        A failure while applying an event (the database busy, a bug) must not leave the account
        silently unfollowed: the adapter is closed and reopened, and recovery reads back from the
        venue whatever the failed event carried.
        """
        attempt = 0
        while not self._stopping:
            try:
                if live is None:
                    live = await self._open(connection_id)
                    if live is None:  # the connection or its account is gone
                        return
                    await self._recover(live)
                attempt = 0
                self._live[live.id] = live
                try:
                    await self._set_status(connection_id, ConnectionState.CONNECTED)
                    observe.broker_connection(connection_id=connection_id, broker=live.broker, state="connected")
                    await self._pump(connection_id, live)
                finally:
                    observe.broker_connection(connection_id=connection_id, broker=live.broker, state="disconnected")
                    self._live.pop(live.id, None)
                    await live.stop_refresh()
                    await live.adapter.close()
                live = None
            except OrderRefused as exc:
                if exc.reason is not RefusalReason.AUTH:
                    raise
                _log.warning("broker_credentials_refused", connection_id=connection_id)
                await self._set_status(connection_id, ConnectionState.REVOKED)
                await self._announce_revoked(connection_id, str(exc))
                observe.broker_connection(
                    connection_id=connection_id, broker=live.broker if live else "", state="revoked"
                )
                return
            except Exception as exc:  # noqa: BLE001 - every failure ends in a reconnect, logged with its cause
                if live is not None:
                    await live.adapter.close()
                    live = None
                delay = self._backoff.delay(attempt, self._rng)
                log = _log.warning if isinstance(exc, BrokerError | OSError) else _log.exception
                log("broker_link_failed", connection_id=connection_id, error=str(exc), retry_in_s=delay)
                with contextlib.suppress(Exception):
                    await self._set_status(connection_id, ConnectionState.DISCONNECTED)
                await asyncio.sleep(delay)
                attempt = min(attempt + 1, 16)

    async def _recover(self, live: LiveAccount) -> None:
        try:
            horizon = None
            if self.fill_horizon_days > 0:
                horizon = self.clock.now() - timedelta(days=self.fill_horizon_days)
            await recover(
                self.database, live, clock=self.clock, apply=self.apply, owned_elsewhere=self.owned_elsewhere,
                horizon=horizon,
            )  # fmt: skip
        except BaseException:
            await live.adapter.close()
            raise

    async def _open(self, connection_id: str) -> LiveAccount | None:
        async with self.database.session() as session:
            row = await ConnectionRepository(session).get_by_id(connection_id)
            if row is None or row.credentials_ref is None:
                return None
            accounts = await AccountRepository(session).list_for_connection(connection_id)
            if not accounts:
                return None
            stored = msgspec.json.decode(
                await self.vault.get(session, row.credentials_ref, owner_id=connection_id), type=StoredLink
            )
        account = accounts[0]
        await self._set_status(connection_id, ConnectionState.CONNECTING)
        observe.broker_connection(connection_id=connection_id, broker=row.broker, state="disconnected")  # not up yet
        config = AdapterConfig(
            account_id=account.id,
            venue_account_id=stored.venue_account_id,
            base_url=stored.base_url,
            credentials=Credentials(values=stored.credentials),
            options=stored.options,
        )
        await self._load_adapter(row.broker)
        adapter = self.adapter_factory(row.broker, config)
        try:
            await adapter.connect()
            instruments = await adapter.instruments()
        except BaseException:
            await adapter.close()
            raise
        async with self.database.session() as session:
            await InstrumentRepository(session).upsert_many(row.broker, instruments, now=self.clock.now())
            await session.commit()
        return LiveAccount(account, broker=row.broker, adapter=adapter, instruments=instruments)

    async def _pump(self, connection_id: str, live: LiveAccount) -> None:
        async for event in live.adapter.events():
            if isinstance(event, ConnectionChanged):
                live.state = _STATE_OF_STREAM[event.state]
                await self._set_status(connection_id, live.state)
                up = live.state is ConnectionState.CONNECTED  # degraded: the adapter is reconnecting, so not up
                observe.broker_connection(
                    connection_id=connection_id, broker=live.broker, state="connected" if up else "disconnected"
                )
                if up:
                    self._refused_since.pop(connection_id, None)
                else:
                    await self._check_credentials(connection_id, live)
                continue
            await self.apply(live, event)

    async def apply(self, live: LiveAccount, event: DomainEvent, *, audit: AuditHook | None = None) -> Outcome:
        """Persist one event of ``live``'s account, publish it, and wake whoever waits on its order.

        ``audit`` runs in the event's transaction before it commits (a user's cancel request is
        recorded with the state change it makes). On SQLite the transaction may be shared with other
        accounts' events (:mod:`brokerlink.engine.links.group`)."""
        async with live.lock:
            outcome = await self.ingest.apply(live.broker, event, audit)
        if outcome in (Outcome.APPLIED, Outcome.UNTRACKED):
            try:
                await self.bus.publish(ACCOUNT_TOPIC, event.account_id, encode_event(event))
            except Unavailable as exc:  # the event log has it; a bus outage must not stop the account
                _log.warning("bus_publish_failed", account_id=event.account_id, event_type=event.tag, error=str(exc))
        if isinstance(event, OrderEvent):
            live.notify(event.client_order_id)
        if isinstance(event, OrderFilled) and outcome is not Outcome.DUPLICATE:
            self._refresh_holdings(live)
        return outcome

    def _refresh_holdings(self, live: LiveAccount) -> None:
        """Re-read the balance and positions soon after fills. Brokers differ in whether (and how
        promptly) they push position and balance changes; reading them after each burst of fills
        keeps the stored ones current with every broker. A burst costs one read, not one per fill."""
        if live.refresh is not None and not live.refresh.done():
            live.refresh_again = True
            return
        live.refresh = asyncio.create_task(self._refresh_loop(live), name=f"holdings-{live.id}")

    async def _refresh_loop(self, live: LiveAccount) -> None:
        while True:
            live.refresh_again = False
            await asyncio.sleep(HOLDINGS_COALESCE_S)
            try:
                await sync_holdings(self.database, live, clock=self.clock, apply=self.apply)
            except (BrokerError, OSError) as exc:
                _log.warning("holdings_refresh_failed", account_id=live.id, error=str(exc))
            if not live.refresh_again:
                return

    async def _check_credentials(self, connection_id: str, live: LiveAccount) -> None:
        """While an adapter reconnects, ask the broker one read-only question. Refusals of the
        credentials (401/403, :class:`OrderRefused` ``auth``) that persist - ``revoke_after_refusals``
        in a row over at least ``revoke_after_s`` - mean the holder revoked them at the broker, which
        no reconnecting will fix: the refusal propagates, and the link is revoked. An answer clears
        the count; anything else (the broker down, slow or rate limiting) is the outage the adapter
        is already riding out."""
        try:
            async with asyncio.timeout(CREDENTIAL_CHECK_S):
                await live.adapter.balance()
        except OrderRefused as exc:
            if exc.reason is not RefusalReason.AUTH:
                return
            now = self.clock.now()
            count, first = self._refused_since.get(connection_id, (0, now))
            self._refused_since[connection_id] = (count + 1, first)
            persisted = (now - first).total_seconds() >= self.revoke_after_s
            if count + 1 >= self.revoke_after_refusals and persisted:
                self._refused_since.pop(connection_id, None)
                raise
        except (BrokerError, OSError, TimeoutError):
            return
        else:
            self._refused_since.pop(connection_id, None)

    async def _announce_revoked(self, connection_id: str, detail: str) -> None:
        """Tell the account holder (their stream, their webhooks) that the broker refused the credentials:
        the link is revoked, nothing more is sent to it, and re-linking is up to them."""
        async with self.database.session() as session:
            accounts = await AccountRepository(session).list_for_connection(connection_id)
        now = self.clock.now()
        for account in accounts:
            event = ConnectionChanged(
                account_id=account.id,
                ts=now,
                state=ConnectionState.REVOKED,
                reason=f"the broker refused the stored credentials ({detail}); link the account again",
            )
            try:
                await self.bus.publish(ACCOUNT_TOPIC, account.id, encode_event(event))
            except Exception as exc:  # noqa: BLE001 - the store already says revoked; the news is best effort
                _log.warning("revocation_not_announced", account_id=account.id, error=str(exc))

    async def _set_status(self, connection_id: str, status: ConnectionState) -> None:
        async with self.database.session() as session:
            await ConnectionRepository(session).set_status(connection_id, status, now=self.clock.now())
            await session.commit()
