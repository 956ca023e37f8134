"""The copy engine at run time: provider fills in, follower orders out, each exactly once.

**Signals.** The provider's fills are already in the store (the links service writes them,
deduplicated by trade id, before anything else sees them). The engine follows each strategy's
account through those fills from ``strategies.fill_cursor``; a bus message about a fill only
wakes it up. So a crash, a lost bus message or a restart loses no fill: the next scan starts at
the cursor. One fill is consumed in one transaction that records the signal (unique per strategy
and trade id: a fill seen twice is copied once), moves the provider's accounted position, plans
every follower (:mod:`~brokerlink.engine.copy.planner`), writes the orders as outbox intents with
deterministic client order ids, the skips as copy events, the link changes, and the cursor.

**Dispatch.** After the commit each intent is handed to its follower's adapter through the
normal order path, all followers concurrently; one slow broker delays only its own followers.
An intent whose order never reached the venue (a crash between storing and sending) is sent
again under the same client order id, which the venue deduplicates; an unknown outcome is
resolved by lookup in the order path. Intents still pending after ``stale_after_s`` (an outage)
are not sent late unless the follower opted in (``catch_up``).

**Outcomes.** Follower order events (on the bus) end each intent: filled (with slippage against
the provider's price), rejected or canceled, with a copy event the follower sees. An open that
filled less than planned shrinks its link by the difference, so later closes never overshoot.

**Latency.** Each intent records ``signal_us`` (venue fill time to the engine reading it),
``engine_us`` (reading it to handing the order to the adapter) and ``broker_us`` (handing it over
to the broker's acknowledgement).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink import observe
from brokerlink.brokers.base import BrokerError, OrderRefused
from brokerlink.bus.base import EventBus
from brokerlink.domain.copy import (
    CopyEvent,
    CopyEventKind,
    CopyIntent,
    CopyLink,
    CopyOrderType,
    CopySignal,
    IntentAction,
    IntentStatus,
    Strategy,
    Subscription,
)
from brokerlink.domain.enums import ConnectionState, OrderStatus, OrderType, Side, TimeInForce
from brokerlink.domain.events import OrderEvent, decode_event
from brokerlink.domain.models import Fill, Instrument, Order, Position, Quote
from brokerlink.engine.audit import COPY_ENGINE, Stamp
from brokerlink.engine.copy import joining, outcomes, protect, rejects
from brokerlink.engine.copy.guards import period_start
from brokerlink.engine.copy.ids import copy_client_order_id
from brokerlink.engine.copy.planner import Follower, Plan, PlannedOrder, QuoteOf, Signal, plan_follower
from brokerlink.engine.copy.reasons import Skip, SkipReason
from brokerlink.engine.copy.reconcile import Report, reconcile
from brokerlink.engine.copy.settings import CopySettings, SizingMode, decode_settings
from brokerlink.engine.copy.symbols import SymbolIndex
from brokerlink.engine.copy.watchdog import StallWatchdog
from brokerlink.engine.links.ingest import ACCOUNT_TOPIC
from brokerlink.engine.links.orders import OrderTicket, place_order, prepare_order, send_stored, submit_stored
from brokerlink.engine.links.service import BrokerLinks
from brokerlink.kit.clock import Clock
from brokerlink.kit.errors import BrokerlinkError, InvalidInput, Unavailable
from brokerlink.kit.ids import new_id, new_ids
from brokerlink.logs import get_logger
from brokerlink.security.audit import record
from brokerlink.store.db import Database
from brokerlink.store.models import BrokerConnectionRow
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.connections import ConnectionRepository
from brokerlink.store.repositories.copy_equity_peaks import CopyEquityPeakRepository, EquityPeak, next_peak
from brokerlink.store.repositories.copy_fanout import FanoutStore, RosterEntry
from brokerlink.store.repositories.copy_intents import CopyIntentRepository
from brokerlink.store.repositories.fills import FillRepository
from brokerlink.store.repositories.instruments import InstrumentRepository
from brokerlink.store.repositories.positions import BalanceRepository, PositionRepository
from brokerlink.store.repositories.strategies import StrategyRepository
from brokerlink.store.repositories.subscriptions import SubscriptionRepository

_log = get_logger("brokerlink.engine.copy")

COPY_PREFIX = "cp-"
"""Every copy order's client order id starts with it (:func:`~brokerlink.engine.copy.ids.copy_client_order_id`)."""
_SCAN_BATCH = 200


def is_copy_order(order: Order) -> bool:
    """Whether the copy engine placed this order (and replays it itself when it was never sent)."""
    return order.client_order_id.startswith(COPY_PREFIX)


class CopyEngine:
    """Mirrors every active strategy's fills into its followers' accounts."""

    def __init__(
        self,
        database: Database,
        bus: EventBus,
        links: BrokerLinks,
        clock: Clock,
        *,
        stale_after_s: float = 30.0,
        retry_every_s: float = 1.0,
        ack_wait_s: float = 2.0,
        connect_wait_s: float = 10.0,
        reconcile_every_s: float = 60.0,
        reconcile_repair: bool = False,
        stall_warn_after_s: float = 30.0,
        stall_act_after_s: float = 120.0,
        peak_every_s: float = 15.0,
        node: str = "engine-1",
    ) -> None:
        self.database = database
        self.bus = bus
        self.links = links
        self.clock = clock
        self.stale_after = timedelta(seconds=stale_after_s)
        self.retry_every_s = retry_every_s
        self.ack_wait_s = ack_wait_s
        self._protected_links: set[str] | None = None
        self.connect_wait_s = connect_wait_s
        self.reconcile_every_s = reconcile_every_s
        self.reconcile_repair = reconcile_repair
        self.peak_every_s = peak_every_s
        self.watchdog = StallWatchdog(
            database,
            links,
            clock,
            warn_after_s=stall_warn_after_s,
            act_after_s=stall_act_after_s,
            dispatch=self.dispatch,
        )
        """Watches each strategy's provider connection; warns, then applies ``on_provider_stall``."""
        self.node = node
        self._tasks: list[asyncio.Task[None]] = []
        self._dispatching: dict[str, asyncio.Task[None]] = {}  # by intent id
        self._strategy_locks: dict[str, asyncio.Lock] = {}
        self._settings: dict[tuple[str, int], CopySettings] = {}  # by (subscription id, version)
        self._subscription_cache: dict[str, Subscription] = {}  # by id, as of its version (see _subscriptions)
        self._indexes: dict[str, SymbolIndex] = {}  # by follower account id
        self._index_by_instruments: dict[tuple[Instrument, ...], SymbolIndex] = {}
        self._stored_indexes: set[str] = set()  # accounts whose index came from the store (offline)
        self._received: dict[str, float] = {}  # intent id -> perf_counter when its signal was read
        self._prepared: dict[str, Order] = {}  # intent id -> its order, stored with it, not sent yet
        self._sent_perf: dict[str, float] = {}  # client order id -> perf_counter when handed to the adapter
        self._answer_us: dict[str, int] = {}  # client order id -> microseconds to the broker's first answer
        self._sends: list[_Sent] = []  # handed over, the send not recorded yet
        self._send_flusher: asyncio.Task[None] | None = None
        self._links_awaited = asyncio.Event()
        self.joined: set[str] = set()  # subscriptions whose on_subscribe policy has been applied

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Follow the bus, replay the outbox, and catch up with fills consumed by nobody yet."""
        self.links.owned_elsewhere = is_copy_order
        self._tasks.append(asyncio.create_task(self._follow_bus(), name="copy-bus"))
        self._tasks.append(asyncio.create_task(self._retry_loop(), name="copy-retry"))
        self._tasks.append(asyncio.create_task(self._reconcile_loop(), name="copy-reconcile"))
        self._tasks.append(asyncio.create_task(self._watch_providers(), name="copy-watchdog"))
        self._tasks.append(asyncio.create_task(self._sample_peaks_loop(), name="copy-peaks"))

    async def stop(self) -> None:
        """Stop following and dispatching (intents in flight stay in the outbox for the next start)."""
        tasks = [*self._tasks, *self._dispatching.values()]
        if self._send_flusher is not None:
            tasks.append(self._send_flusher)
            self._send_flusher = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # noqa: BLE001 - a task that already died must not stop the shutdown
                _log.exception("copy_task_failed", task=task.get_name())
        self._tasks.clear()
        self._dispatching.clear()
        self._prepared.clear()  # stored pending_new: the next start's replay sends them
        self._sends.clear()  # sent, not recorded: the next start's replay resolves them by lookup
        self._sent_perf.clear()
        self._answer_us.clear()

    async def _follow_bus(self) -> None:
        consumer = self.bus.consumer(ACCOUNT_TOPIC, "copy", self.node, start="latest")
        await self._await_links()
        await self.protected_links()  # read now: the first close of a fan-out then sends without a read first
        self._links_awaited.set()
        await self.scan_all()
        await self.dispatch_pending()  # what a crash left in the outbox, before it grows stale
        while True:
            try:
                messages = await consumer.read(max_count=200, block_ms=1000)
            except Unavailable as exc:
                _log.warning("copy_bus_unavailable", error=str(exc))
                await asyncio.sleep(self.retry_every_s)
                continue
            accounts: set[str] = set()
            copies: dict[tuple[str, str], None] = {}  # in order, each once: a settle reads the order's latest state
            orders_moved = False
            for message in messages:
                try:
                    event = decode_event(message.payload)
                except InvalidInput:
                    continue
                if isinstance(event, OrderEvent):
                    orders_moved = True
                    if event.client_order_id.startswith(COPY_PREFIX):
                        self._answered(event.client_order_id)
                        copies[event.account_id, event.client_order_id] = None
                    if event.tag == "order_filled":
                        accounts.add(event.account_id)
            await self.settle_many(list(copies))
            if accounts:  # only accounts that back a strategy have fills to consume: one read, not one per account
                async with self.database.session() as session:
                    providers = {s.account_id for s in await StrategyRepository(session).list_active()}
                for account_id in sorted(accounts & providers):
                    await self.scan_account(account_id)
            if orders_moved:  # a provider's stop or limit, or a follower's protective order, may have moved
                try:
                    await self.sync_protection()
                except Exception:  # noqa: BLE001 - the bus must outlive a bug in mirroring; the retry round redoes it
                    _log.exception("copy_protection_sync_failed")
            if messages:
                await consumer.ack(*messages)

    async def _retry_loop(self) -> None:
        await self._links_awaited.wait()  # a scan before the followers are back would skip them
        while True:
            await asyncio.sleep(self.retry_every_s)
            try:
                await self.scan_all()
                await self.sync_protection()
                await self.dispatch_pending()
                await self.settle_open()
            except BrokerlinkError as exc:
                _log.warning("copy_retry_failed", error=str(exc))
            except Exception:  # noqa: BLE001 - the loop must outlive a bug in one round; it is logged
                _log.exception("copy_retry_crashed")

    async def _reconcile_loop(self) -> None:
        """Compare followers' broker positions with their links now and then (drift and orphans are
        logged and reported; repaired only when configured). A round never runs before the links are back."""
        await self._links_awaited.wait()
        while True:
            await asyncio.sleep(self.reconcile_every_s)
            try:
                await self.reconcile_once(repair=self.reconcile_repair)
            except BrokerlinkError as exc:
                _log.warning("copy_reconcile_failed", error=str(exc))
            except Exception:  # noqa: BLE001 - the loop must outlive a bug in one round; it is logged
                _log.exception("copy_reconcile_crashed")

    async def _sample_peaks_loop(self) -> None:
        await self._links_awaited.wait()
        while True:
            await asyncio.sleep(self.peak_every_s)
            try:
                await self.sample_peaks()
            except BrokerlinkError as exc:
                _log.warning("copy_peaks_failed", error=str(exc))
            except Exception:  # noqa: BLE001 - the loop must outlive a bug in one round; it is logged
                _log.exception("copy_peaks_crashed")

    async def _watch_providers(self) -> None:
        await self._links_awaited.wait()  # a provider still reconnecting at start is not a stall
        await self.watchdog.run(every_s=min(5.0, self.watchdog.warn_after.total_seconds() / 2))

    async def reconcile_once(self, *, subscription_id: str | None = None, repair: bool = False) -> Report:
        """One reconciliation (:mod:`~brokerlink.engine.copy.reconcile`); a repair's closes are dispatched."""
        report = await reconcile(
            self.database, self.clock, subscription_id=subscription_id, repair=repair, is_live=self.links.is_live
        )
        self.dispatch(report.intents)
        return report

    async def _await_links(self) -> None:
        """At start, give the accounts of live strategies and subscriptions time to reconnect
        (bounded): a fill consumed before a follower is back would be skipped for that follower."""
        async with self.database.session() as session:
            accounts = {s.account_id for s in await StrategyRepository(session).list_active()}
            for strategy in await StrategyRepository(session).list_active():
                subscriptions = await SubscriptionRepository(session).list_for_strategy(strategy.id)
                accounts |= {s.account_id for s in subscriptions}
                # The fan-out's cache, filled now rather than by the first fill (used while versions match).
                self._subscription_cache.update((s.id, s) for s in subscriptions)
        accounts = {a for a in accounts if not await self._revoked(a)}  # those never come back
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.connect_wait_s):
                # The links have no "connected" signal to wait on yet; polling is bounded by the timeout.
                while not all(self.links.is_live(a) for a in accounts):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)

    # --- consuming provider fills ----------------------------------------------------------------

    async def scan_all(self) -> None:
        """Consume every active strategy's unconsumed fills."""
        async with self.database.session() as session:
            strategies = await StrategyRepository(session).list_active()
        for account_id in {s.account_id for s in strategies}:
            await self.scan_account(account_id)

    async def protected_links(self) -> set[str]:
        """The links that have (or had) protective intents: loaded once, then grown by
        :func:`~brokerlink.engine.copy.protect.sync_strategy` before it commits a new one. A reduce or
        close of any other link needs no protective check, which keeps that read off the fan-out."""
        if self._protected_links is None:
            async with self.database.session() as session:
                self._protected_links = await CopyIntentRepository(session).links_with_protective()
        return self._protected_links

    async def sync_protection(self, strategy_id: str | None = None) -> list[CopyIntent]:
        """Mirror the providers' stop-losses and take-profits onto the followers' links (ADR 0027), under
        each strategy's lock (no fill is consumed meanwhile), then dispatch what it wrote."""
        async with self.database.session() as session:
            strategies = await StrategyRepository(session).list_active()
        intents: list[CopyIntent] = []
        for strategy in strategies:
            if strategy_id is not None and strategy.id != strategy_id:
                continue
            lock = self._strategy_locks.setdefault(strategy.id, asyncio.Lock())
            async with lock:
                intents += await protect.sync_strategy(self, strategy)
        self.dispatch(intents)
        return intents

    async def scan_account(self, account_id: str) -> list[CopyIntent]:
        """Consume the unconsumed fills of every active strategy backed by ``account_id``, then dispatch."""
        async with self.database.session() as session:
            strategies = await StrategyRepository(session).list_active_for_account(account_id)
        intents: list[CopyIntent] = []
        for strategy in strategies:
            lock = self._strategy_locks.setdefault(strategy.id, asyncio.Lock())
            async with lock:
                intents += await self._scan_strategy(strategy.id)
        self.dispatch(intents)
        if intents:
            # Let the dispatches just scheduled hand their orders over before the caller goes on (the bus
            # follower's next step reads and writes: the hand-off must not wait behind it).
            await asyncio.sleep(0)
        return intents

    async def _scan_strategy(self, strategy_id: str) -> list[CopyIntent]:
        intents: list[CopyIntent] = []
        while True:
            async with self.database.session() as session:
                strategy = await StrategyRepository(session).get_by_id(strategy_id)
                if strategy is None:
                    return intents
                fills = await FillRepository(session).list_since(
                    strategy.account_id, strategy.fill_cursor, limit=_SCAN_BATCH
                )
            for fill_id, fill in fills:
                intents += await self.consume(strategy, fill_id, fill)
            if len(fills) < _SCAN_BATCH:
                return intents

    async def consume(self, strategy: Strategy, fill_id: str, fill: Fill) -> list[CopyIntent]:
        """Record one provider fill as a signal and plan every follower, in one transaction; then hand
        the orders of live followers to their adapters (ADR 0029)."""
        received = time.perf_counter()
        now = self.clock.now()
        async with self.database.session() as session:
            store = FanoutStore(session)
            await store.claim(strategy.id, fill_id, now=now)  # first: on SQLite it takes the write lock
            if fill.ts < strategy.created_at:
                # History from before the strategy (read back at a reconnect): its baseline already holds it.
                await session.commit()
                return []
            before = await store.strategy_position(strategy.id, fill.symbol)
            signed = fill.qty if fill.side is Side.BUY else -fill.qty
            signal = CopySignal(
                id=new_id("sig"),
                strategy_id=strategy.id,
                provider_account_id=strategy.account_id,
                provider_trade_id=fill.trade_id,
                symbol=fill.symbol,
                side=fill.side,
                qty=fill.qty,
                price=fill.price,
                provider_position_before=before,
                provider_position_after=before + signed,
                venue_ts=fill.ts,
                received_at=now,
                created_at=now,
            )
            if not await store.add_signal(signal):
                await session.commit()  # seen before (stream and report): copied once already
                return []
            await store.set_strategy_position(strategy.id, fill.symbol, signal.provider_position_after, now=now)
            signal_us = int((now - fill.ts).total_seconds() * 1_000_000)
            intents, events, moves, new_links, peaks = await self._plan(
                session, store, strategy, signal, now=now, signal_us=signal_us
            )
            orders = self._prepare_orders(intents, now=now)
            # Moves first (a reversal closes a link, then opens the next one), new links before their intents.
            await store.move_links(moves, now=now)
            await store.add_links(new_links)
            await store.add_orders(list(orders.values()))
            await store.add_intents(intents)
            await store.add_events(events)
            if peaks:
                await CopyEquityPeakRepository(session).save_many(peaks, now=now)
            if orders:
                # One record for the fan-out (security item 33: one per state change, in its transaction);
                # it names the signal, whose intents name every order. Last: on PostgreSQL the trail's
                # head stays locked until the commit.
                await record(
                    session, actor=COPY_ENGINE, action="copy.fanout", target=signal.id, now=now,
                    details=_fanout_details(strategy, signal, len(orders)),
                )  # fmt: skip
            # Known before the commit: a replay that sees the intents first sends them the fast way too.
            self._prepared.update(orders)
            try:
                await session.commit()
            except BaseException:
                for intent_id in orders:
                    self._prepared.pop(intent_id, None)
                raise
        for intent in intents:
            self._received[intent.id] = received
        _log.info(
            "copy_signal", strategy_id=strategy.id, trade_id=fill.trade_id, intents=len(intents), skips=len(events),
            signal_us=signal_us,
        )  # fmt: skip
        observe.copy_latency(signal_us=signal_us, engine_us=None, broker_us=None)  # once per signal, not per copy
        return intents

    async def _plan(
        self,
        session: AsyncSession,
        store: FanoutStore,
        strategy: Strategy,
        signal: CopySignal,
        *,
        now: datetime,
        signal_us: int | None = None,
    ) -> tuple[list[CopyIntent], list[CopyEvent], list[tuple[str, Decimal, bool]], list[CopyLink], list[EquityPeak]]:
        """Every follower's plan for the signal: intents, skip events, link moves and new links, and the
        drawdown peaks that moved. Reads the roster once (subscriptions, their links in the symbol, equities)."""
        roster = await store.roster(strategy.id, signal.symbol)
        if not roster:
            return [], [], [], [], []
        subscriptions = await self._subscriptions(store, strategy.id, roster)
        equities: dict[str, Decimal | None] = {e.account_id: e.equity for e in roster}
        provider_equity = await store.equity(strategy.account_id)
        counted = [s.account_id for s in subscriptions if _counts_holdings(self.settings_of(s))]
        positions = await PositionRepository(session).list_for_accounts(counted) if counted else {}
        peaks, peak_updates = await self._peaks(session, subscriptions, equities)
        holdings = Holdings(
            equities=equities, positions=positions, paused=await store.paused_symbols(strategy.id), peaks=peaks,
            peak_updates=peak_updates,
        )  # fmt: skip
        stop_loss = None
        if any(self.settings_of(s).sizing is SizingMode.RISK_PERCENT for s in subscriptions):
            stop_loss = await protect.provider_stop_loss(
                session, strategy, signal.symbol, signal.provider_position_after, signal.price
            )
        planned = Signal(
            trade_id=signal.provider_trade_id,
            symbol=signal.symbol,
            side=signal.side,
            qty=signal.qty,
            price=signal.price,
            before=signal.provider_position_before,
            after=signal.provider_position_after,
            provider_equity=provider_equity,
            stop_loss=stop_loss,
        )
        balances = BalanceRepository(session)
        stale = now - signal.venue_ts > self.stale_after
        plans_made = _SharedPlans(now)
        plans: list[tuple[Subscription, Follower, Plan]] = []
        for subscription, entry in zip(subscriptions, roster, strict=True):
            link = entry.link
            if signal.venue_ts < subscription.created_at and link is None:
                # A provider trade from before the subscription (consumed late): it is part of the
                # provider's position at subscription time, which the on_subscribe policy decides on.
                continue
            follower = await self.follower_view(balances, subscription, link, holdings=holdings)
            plan = plans_made.plan(planned, subscription, follower, quote=self.quote_for(subscription.account_id))
            if stale and not follower.settings.catch_up:
                plan = _without_late_opens(plan)
            plans.append((subscription, follower, plan))
        orders_count = sum(len(plan.orders) for _, _, plan in plans)
        opens = sum(1 for _, _, plan in plans for o in plan.orders if o.action is IntentAction.OPEN)
        intent_ids, link_ids = iter(new_ids("cpi", orders_count)), iter(new_ids("lnk", opens))
        intents: list[CopyIntent] = []
        events: list[CopyEvent] = []
        new_links: list[CopyLink] = []
        moves: list[tuple[str, Decimal, bool]] = []
        for subscription, follower, plan in plans:
            made, link = self.build_intents(
                subscription,
                plan,
                signal_id=signal.id,
                trade_id=signal.provider_trade_id,
                symbol=signal.symbol,
                now=now,
                intent_ids=intent_ids,
                link_ids=link_ids,
                signal_us=signal_us,
            )
            intents += made
            if link is not None:
                new_links.append(link)
            if plan.skip is not None:
                events.append(
                    CopyEvent(
                        id=new_id("cpe"), subscription_id=subscription.id, kind=CopyEventKind.SKIPPED,
                        reason=plan.skip.reason.value, detail=plan.skip.detail, signal_id=signal.id, created_at=now,
                    )
                )  # fmt: skip
            move = _link_move(plan, follower)
            if move is not None:
                moves.append(move)
        return intents, events, moves, new_links, holdings.peak_updates

    async def _subscriptions(
        self, store: FanoutStore, strategy_id: str, roster: list[RosterEntry]
    ) -> list[Subscription]:
        """The roster's subscriptions, from the cache while their versions match the roster's (a version moves
        with every change of settings, status or start equity); read again, all at once, when any changed."""
        cache = self._subscription_cache
        found = [cache.get(e.subscription_id) for e in roster]
        if any(s is None or s.version != e.version for s, e in zip(found, roster, strict=True)):
            fresh = {s.id: s for s in await store.subscriptions(strategy_id)}
            cache.update(fresh)
            found = [fresh.get(e.subscription_id) for e in roster]
        missing = [e.subscription_id for e, s in zip(roster, found, strict=True) if s is None]
        if missing:  # pragma: no cover - the roster and the subscriptions were read in one transaction
            raise RuntimeError(f"subscriptions {missing} vanished from the fan-out's transaction")
        return [s for s in found if s is not None]

    async def _holdings(
        self, session: AsyncSession, accounts: Iterable[str], subscriptions: Iterable[Subscription]
    ) -> Holdings:
        """Equity of ``accounts`` and of every subscription's account, and the positions of those whose
        caps count holdings: two queries for a whole fan-out instead of some per follower."""
        subscriptions = list(subscriptions)
        counted = [s.account_id for s in subscriptions if _counts_holdings(self.settings_of(s))]
        first = await BalanceRepository(session).first_for_accounts([*accounts, *(s.account_id for s in subscriptions)])
        positions = await PositionRepository(session).list_for_accounts(counted) if counted else {}
        paused = await rejects.paused_symbols(session, [s.id for s in subscriptions])
        equities: dict[str, Decimal | None] = {a: b.equity for a, b in first.items()}
        peaks, updates = await self._peaks(session, subscriptions, equities)
        return Holdings(equities=equities, positions=positions, paused=paused, peaks=peaks, peak_updates=updates)

    async def _peaks(
        self, session: AsyncSession, subscriptions: list[Subscription], equities: dict[str, Decimal | None]
    ) -> tuple[dict[str, Decimal], list[EquityPeak]]:
        """The drawdown guard's peak per subscription that has one (this reading included), and the peaks
        that moved (a new high, or a new period), for the caller to store."""
        guarded = [s for s in subscriptions if self.settings_of(s).max_drawdown_pct is not None]
        if not guarded:
            return {}, []
        now = self.clock.now()
        stored = await CopyEquityPeakRepository(session).get_many(s.id for s in guarded)
        peaks: dict[str, Decimal] = {}
        updates: list[EquityPeak] = []
        for subscription in guarded:
            equity = equities.get(subscription.account_id)
            if equity is None:
                continue
            start = period_start(self.settings_of(subscription).drawdown_period, now)
            before = stored.get(subscription.id)
            peak = next_peak(before, subscription.id, start, equity)
            peaks[subscription.id] = peak.peak_equity
            if peak is not before:
                updates.append(peak)
        return peaks, updates

    async def sample_peaks(self) -> int:
        """Read every guarded follower's equity and store new drawdown peaks; returns how many moved.

        Between signals equity moves with the market: without sampling, a peak reached and lost
        between two signals would not count.
        """
        async with self.database.session() as session:
            subscriptions = [
                s
                for strategy in await StrategyRepository(session).list_active()
                for s in await SubscriptionRepository(session).list_for_strategy(strategy.id)
            ]
            holdings = await self._holdings(session, (), subscriptions)
            await CopyEquityPeakRepository(session).save_many(holdings.peak_updates, now=self.clock.now())
            await session.commit()
        return len(holdings.peak_updates)

    def _prepare_orders(self, intents: Iterable[CopyIntent], *, now: datetime) -> dict[str, Order]:
        """The order of each intent whose follower is live, checked against its broker's rules, by intent id:
        stored in the planning transaction, sent right after the commit with nothing written in between.
        An intent whose order does not pass goes the normal way (:func:`place_order` says why).

        :func:`prepare_order` is pure in the broker's capabilities, the instrument's rules, the quote a
        market order's notional is checked at and the ticket: followers that agree on all of them (shared
        plans at the same broker) are checked once, and the others get that order with their own ids."""
        orders: dict[str, Order] = {}
        checked: dict[tuple[object, ...], Order | None] = {}
        live_of = self.links.live
        is_live = self.links.is_live
        intents = [i for i in intents if is_live(i.follower_account_id)]
        order_ids = iter(new_ids("ord", len(intents)))
        for intent in intents:
            live = live_of(intent.follower_account_id)
            ticket = _ticket(intent)
            try:
                instrument = live.instruments.get(ticket.symbol)
                key: tuple[object, ...] | None = (
                    id(live.adapter.capabilities), instrument, ticket.symbol, ticket.side, ticket.qty, ticket.type,
                    ticket.tif, ticket.limit_price, ticket.stop_price, len(intent.client_order_id),
                    live.quote(ticket.symbol) if ticket.type is OrderType.MARKET else None,
                )  # fmt: skip
                hash(key)
            except TypeError:  # an unhashable rule or quote: checked on its own
                key = None
            if key is not None and key in checked:
                first = checked[key]
                if first is not None:
                    orders[intent.id] = msgspec.structs.replace(
                        first, id=next(order_ids), client_order_id=intent.client_order_id,
                        account_id=live.account.id, qty=ticket.qty, limit_price=ticket.limit_price,
                        stop_price=ticket.stop_price,
                    )  # fmt: skip
                continue
            try:
                order = prepare_order(live, ticket, now=now)
            except (InvalidInput, Unavailable):
                order = None
            if key is not None:
                checked[key] = order
            if order is not None:
                orders[intent.id] = order
        return orders

    def settings_of(self, subscription: Subscription) -> CopySettings:
        """The subscription's settings, decoded once per version."""
        key = (subscription.id, subscription.version)
        settings = self._settings.get(key)
        if settings is None:
            settings = self._settings[key] = decode_settings(subscription.settings)
        return settings

    async def follower_view(
        self,
        balances: BalanceRepository,
        subscription: Subscription,
        link: CopyLink | None,
        *,
        holdings: Holdings | None = None,
    ) -> Follower:
        """The planner's view of one subscription: settings (cached by version), instruments, equity.

        ``holdings``: the fan-out's equities and positions read up front (:meth:`_holdings`); without
        them they are read for this subscription alone.
        """
        settings = self.settings_of(subscription)
        connected = self.links.is_live(subscription.account_id)
        index = self._indexes.get(subscription.account_id)
        if connected and (index is None or subscription.account_id in self._stored_indexes):
            self._stored_indexes.discard(subscription.account_id)  # the broker's own list from now on
            live = self.links.live(subscription.account_id)
            index = self._indexes[subscription.account_id] = self._shared_index(live.instruments.values())
        elif index is None:
            index = await self._stored_index(balances.session, subscription.account_id)
        # A follower whose connection is down but whose broker's rules are known is planned as usual: its
        # orders wait in the outbox and go out once it is back (late ones only with catch_up).
        connected = index is not None
        open_positions, exposures = 0, {}
        if holdings is None:
            holdings = await self._holdings(balances.session, (), [subscription])
        if _counts_holdings(settings):
            positions = holdings.positions.get(subscription.account_id, [])
            open_positions = len(positions)
            # Notional at the average price (the caps' own currency conversion is the settings' concern).
            exposures = {p.symbol: abs(p.qty) * p.avg_price * self._contract_size(index, p.symbol) for p in positions}
        return Follower(
            subscription_id=subscription.id,
            status=subscription.status,
            settings=settings,
            link=link,
            instruments=index,
            connected=connected,
            equity=holdings.equities.get(subscription.account_id),
            paused_symbols=holdings.paused.get(subscription.id, frozenset()),
            period_peak_equity=holdings.peaks.get(subscription.id),
            start_equity=subscription.start_equity,
            open_positions=open_positions,
            exposures=exposures,
        )

    def _shared_index(self, instruments: Iterable[Instrument]) -> SymbolIndex:
        """One index per distinct instrument list: followers at the same broker share it (and so their plans
        can be shared, see :class:`_SharedPlans`)."""
        key = tuple(instruments)
        try:
            index = self._index_by_instruments.get(key)
        except TypeError:  # an unhashable instrument: an index of its own
            return SymbolIndex(key)
        if index is None:
            index = self._index_by_instruments[key] = SymbolIndex(key)
        return index

    async def _stored_index(self, session: AsyncSession, account_id: str) -> SymbolIndex | None:
        """The instruments stored for the account's broker (cached), when the account is still linked."""
        connection = await _live_connection(session, account_id)
        if connection is None:
            return None
        instruments = await InstrumentRepository(session).list_for_broker(connection.broker)
        if not instruments:
            return None
        index = self._indexes[account_id] = SymbolIndex(instruments)
        self._stored_indexes.add(account_id)
        return index

    @staticmethod
    def _contract_size(index: SymbolIndex | None, symbol: str) -> Decimal:
        found = () if index is None else index.candidates(symbol, drop_suffixes=False)
        return found[0].contract_size if len(found) == 1 else Decimal(1)

    def quote_for(self, account_id: str) -> QuoteOf:
        """A lookup of the follower account's live quotes (``None`` while it is not connected)."""
        links = self.links

        def quote(symbol: str) -> Quote | None:
            if not links.is_live(account_id):
                return None
            return links.live(account_id).quote(symbol)

        return quote

    def build_intents(
        self,
        subscription: Subscription,
        plan: Plan,
        *,
        signal_id: str | None,
        trade_id: str,
        symbol: str,
        now: datetime,
        intent_ids: Iterator[str] | None = None,
        link_ids: Iterator[str] | None = None,
        signal_us: int | None = None,
    ) -> tuple[list[CopyIntent], CopyLink | None]:
        """The outbox intents of a plan, with deterministic client order ids, and the link an open creates.
        ``intent_ids`` / ``link_ids``: ids made in advance for a whole fan-out (:func:`new_ids`);
        ``signal_us``: the signal's latency, recorded on each intent."""
        intents: list[CopyIntent] = []
        new_link: CopyLink | None = None
        for order in plan.orders:
            link_id = order.link_id
            if order.action is IntentAction.OPEN:
                new_link = CopyLink(
                    id=new_id("lnk") if link_ids is None else next(link_ids), subscription_id=subscription.id,
                    provider_symbol=symbol, follower_symbol=order.symbol, side=order.side, qty=order.qty,
                    opened_at=now, updated_at=now,
                )  # fmt: skip
                link_id = new_link.id
            limit = order.limit_price
            intents.append(
                CopyIntent(
                    id=new_id("cpi") if intent_ids is None else next(intent_ids),
                    subscription_id=subscription.id,
                    signal_id=signal_id,
                    link_id=link_id,
                    action=order.action,
                    follower_account_id=subscription.account_id,
                    client_order_id=copy_client_order_id(subscription.id, trade_id, _action_key(order)),
                    symbol=order.symbol,
                    side=order.side,
                    qty=order.qty,
                    order_type=CopyOrderType.LIMIT if limit is not None else CopyOrderType.MARKET,
                    limit_price=limit,
                    # A capped-price copy that cannot fill now must not linger as a resting order.
                    tif=TimeInForce.IOC if limit is not None else TimeInForce.GTC,
                    created_at=now,
                    updated_at=now,
                    signal_us=signal_us,
                )
            )
        return intents, new_link

    # --- the provider's positions at subscription time -----------------------------------------

    async def copy_open_positions(self, subscription_id: str) -> list[CopyIntent]:
        """Apply the subscription's ``on_subscribe`` policy (see :mod:`~brokerlink.engine.copy.joining`).

        Under the strategy's lock, the strategy's stored fills are consumed first: the provider's
        position the policy applies to then holds every fill recorded so far, and no fill is
        consumed between reading that position and linking the copies (which would copy it twice).
        Before the lock, a pending re-read of the provider's holdings is awaited: the entry price
        comes from the stored position, which a fill of the last few milliseconds has not moved yet.
        """
        async with self.database.session() as session:
            subscription = await SubscriptionRepository(session).get_by_id(subscription_id)
            strategy = (
                None if subscription is None else await StrategyRepository(session).get_by_id(subscription.strategy_id)
            )
        if subscription is None:
            return []
        if strategy is not None:
            await self.links.holdings_settled(strategy.account_id)
        lock = self._strategy_locks.setdefault(subscription.strategy_id, asyncio.Lock())
        async with lock:
            self.dispatch(await self._scan_strategy(subscription.strategy_id))
            return await joining.copy_open_positions(self, subscription_id)

    # --- dispatch --------------------------------------------------------------------------------

    def dispatch(self, intents: Iterable[CopyIntent]) -> None:
        """Hand committed intents to their followers' adapters, concurrently (each intent once at a time)."""
        for intent in intents:
            if intent.id not in self._dispatching:
                task = asyncio.create_task(self._dispatch(intent), name=f"copy-{intent.id}")
                self._dispatching[intent.id] = task
                task.add_done_callback(self._dispatched)

    def _dispatched(self, task: asyncio.Task[None]) -> None:
        intent_id = task.get_name().removeprefix("copy-")
        self._dispatching.pop(intent_id, None)
        if not task.cancelled() and task.exception() is not None:
            _log.error("copy_dispatch_crashed", intent_id=intent_id, error=repr(task.exception()))

    async def dispatch_pending(self) -> None:
        """Send what the outbox still holds (after a restart, or once a follower's connection is back)."""
        async with self.database.session() as session:
            pending = await CopyIntentRepository(session).list_pending(limit=500)
        self.dispatch(pending)

    async def settle_open(self) -> None:
        """Settle intents whose orders ended while nobody listened (the bus message was lost)."""
        async with self.database.session() as session:
            open_intents = await CopyIntentRepository(session).list_sent(limit=500)
        await self.settle_many([(i.follower_account_id, i.client_order_id) for i in open_intents])

    async def _dispatch(self, intent: CopyIntent) -> None:
        prepared = self._prepared.pop(intent.id, None)  # stored with the intent; sent as is
        now = self.clock.now()
        if intent.action.is_protective:
            await self._dispatch_protective(intent)
            return
        if now - intent.created_at > self.stale_after and not await self._catch_up(intent):
            await self._end(intent, IntentStatus.FAILED, "not sent in time (an outage): no catch-up trades")
            return
        if not self.links.is_live(intent.follower_account_id):
            if await self._revoked(intent.follower_account_id):
                await self._end(intent, IntentStatus.FAILED, "cancelled, not sent: the broker link was revoked")
            return  # stays pending: the retry loop sends it once the follower's connection is back
        guarded = await self._close_first(intent, prepared)
        if guarded is None:
            return
        intent, prepared = guarded
        received = self._received.pop(intent.id, None)
        engine_us = None if received is None else int((time.perf_counter() - received) * 1_000_000)
        sent = time.perf_counter()
        try:
            if prepared is not None:
                self._sent_perf[intent.client_order_id] = sent
                await submit_stored(self.links, prepared)
                order = prepared
            else:
                order, created = await place_order(
                    self.links,
                    intent.follower_account_id,
                    _ticket(intent),
                    ack_wait_s=self.ack_wait_s,
                    keep_unsent=True,
                    audit=_ENGINE_STAMP,
                )
                if not created and order.status is OrderStatus.PENDING_NEW:
                    order = await send_stored(self.links, order, ack_wait_s=self.ack_wait_s)  # a replay
        except (InvalidInput, OrderRefused) as exc:  # definitive: the rules or the broker said no
            await self._end(intent, IntentStatus.REJECTED, str(exc))
            return
        except (BrokerError, Unavailable) as exc:  # nothing reached the broker, or the order is not lost
            await self._requeue(intent, str(exc))
            return
        broker_us = int((time.perf_counter() - sent) * 1_000_000)
        # What follows a send (the metrics included) waits until every other dispatch of the fan-out, scheduled
        # with this one, has handed its order over; it reads and writes bounded, so that a fan-out to many
        # followers does not take every pooled connection (the links' ingest needs them too) while its orders
        # are out.
        await asyncio.sleep(0)
        answered = order.status is not OrderStatus.PENDING_NEW  # else the broker's answer is timed by settle()
        observe.copy_latency(signal_us=None, engine_us=engine_us, broker_us=broker_us if answered else None)
        await self._record_send(_Sent(intent, order, engine_us, broker_us))

    async def _record_send(self, sent: _Sent) -> None:
        """Record a send, then settle its intent: together with the other sends of the moment (a fan-out's),
        in one transaction (:meth:`_flush_sends`). Returns once this one is recorded and settled."""
        sent.done = asyncio.get_running_loop().create_future()
        self._sends.append(sent)
        if self._send_flusher is None or self._send_flusher.done():
            self._send_flusher = asyncio.create_task(self._flush_sends(), name="copy-sends")
        await sent.done

    async def _flush_sends(self) -> None:
        """Record the queued sends in batches: one statement marks a batch sent (acknowledged too when the
        broker answered already), then they are settled (:meth:`settle_many`)."""
        while self._sends:
            await asyncio.sleep(0)  # the rest of the fan-out's dispatches queue theirs meanwhile
            batch, self._sends = self._sends, []
            try:
                now = self.clock.now()
                async with self.database.session() as session:
                    intents = CopyIntentRepository(session)
                    await intents.mark_sent_many([(s.intent.id, s.order.id, s.engine_us) for s in batch], now=now)
                    for s in batch:
                        if s.order.status is not OrderStatus.PENDING_NEW:
                            await intents.mark_acknowledged(
                                s.intent.id, now=now, order_id=s.order.id, broker_us=s.broker_us
                            )
                    await session.commit()
                await self.settle_many([(s.intent.follower_account_id, s.intent.client_order_id) for s in batch])
            except Exception as exc:  # noqa: BLE001 - each waiting dispatch raises it (and logs it) on its own
                for s in batch:
                    if s.done is not None and not s.done.done():
                        s.done.set_exception(exc)
                continue
            except BaseException:  # cancelled (a stop): the waiting dispatches are cancelled with it
                for s in batch:
                    if s.done is not None and not s.done.done():
                        s.done.cancel()
                raise
            for s in batch:
                if s.done is not None and not s.done.done():
                    s.done.set_result(None)

    async def _close_first(self, intent: CopyIntent, prepared: Order | None) -> tuple[CopyIntent, Order | None] | None:
        """A reduce or close waits for its link's protective orders to be over, and never closes more
        than the follower still holds (:func:`~brokerlink.engine.copy.protect.guard_close`). None: not now."""
        if intent.action not in (IntentAction.REDUCE, IntentAction.CLOSE):
            return intent, prepared
        guarded = await protect.guard_close(self, intent, prepared)
        if guarded is None and prepared is not None:
            self._prepared[intent.id] = prepared  # held: the next round sends it the fast way
        return guarded

    async def _dispatch_protective(self, intent: CopyIntent) -> None:
        """Place a stop-loss or take-profit revision: only while it is still wanted, and only once the
        link's older revisions of it are over at the venue (ADR 0027). Never stale: it mirrors the
        current state, checked right here, so it is as good late as early."""
        if not self.links.is_live(intent.follower_account_id):
            return  # stays pending: sent once the follower is back
        why_not = await protect.still_wanted(self, intent)
        if why_not is not None:
            await self.end_canceled(intent, why_not)
            return
        if not await protect.cancel_protective(
            self, await protect.older_revisions(self, intent), wait_s=self.ack_wait_s
        ):
            return  # an older revision still works: the next round tries again
        try:
            order, created = await place_order(
                self.links,
                intent.follower_account_id,
                _ticket(intent),
                ack_wait_s=0,
                keep_unsent=True,
                audit=_ENGINE_STAMP,
            )
            if not created and order.status is OrderStatus.PENDING_NEW:
                order = await send_stored(self.links, order, ack_wait_s=0)  # a replay
        except (InvalidInput, OrderRefused) as exc:
            await self._end(intent, IntentStatus.REJECTED, str(exc))
            return
        except (BrokerError, Unavailable) as exc:
            await self._requeue(intent, str(exc))
            return
        async with self.database.session() as session:
            intents = CopyIntentRepository(session)
            await intents.mark_sent(intent.id, now=self.clock.now(), order_id=order.id)
            if order.status is not OrderStatus.PENDING_NEW:
                await intents.mark_acknowledged(intent.id, now=self.clock.now(), order_id=order.id)
            await session.commit()
        await self.settle(intent.follower_account_id, intent.client_order_id)

    async def end_canceled(self, intent: CopyIntent, reason: str) -> None:
        """End an intent that is not sent because it is no longer wanted (no event: nothing was refused)."""
        async with self.database.session() as session:
            await CopyIntentRepository(session).mark_canceled(intent.id, now=self.clock.now(), reason=reason)
            await session.commit()

    async def _revoked(self, account_id: str) -> bool:
        """Whether the account's broker link was revoked (or the account is gone): nothing more goes to it."""
        async with self.database.session() as session:
            return await _live_connection(session, account_id) is None

    async def _catch_up(self, intent: CopyIntent) -> bool:
        async with self.database.session() as session:
            subscription = await SubscriptionRepository(session).get_by_id(intent.subscription_id)
        return subscription is not None and decode_settings(subscription.settings).catch_up

    async def _requeue(self, intent: CopyIntent, error: str) -> None:
        async with self.database.session() as session:
            await CopyIntentRepository(session).requeue(intent.id, error=error, now=self.clock.now())
            await session.commit()

    async def settle(self, account_id: str, client_order_id: str) -> None:
        """Bring the intent behind a copy order in line with the order's state (idempotent)."""
        await self.settle_many([(account_id, client_order_id)])

    async def settle_many(self, orders: list[tuple[str, str]]) -> None:
        """:meth:`settle` for several copy orders ``(account id, client order id)``, in one transaction."""
        if not orders:
            return
        timed: list[tuple[str, str, int | None]] = []
        for account_id, client_order_id in orders:
            broker_us = self._answer_us.get(client_order_id)
            sent = self._sent_perf.get(client_order_id)
            if broker_us is None and sent is not None:  # answered before its bus message reached us: seen now
                broker_us = int((time.perf_counter() - sent) * 1_000_000)
            timed.append((account_id, client_order_id, broker_us))
        done = await outcomes.settle_many(self.database, self.clock, timed)
        for client_order_id, ended in done.items():
            if ended:
                self._sent_perf.pop(client_order_id, None)
                self._answer_us.pop(client_order_id, None)

    def _answered(self, client_order_id: str) -> None:
        """The broker's first answer to a copy order handed over in this process: the broker latency."""
        sent = self._sent_perf.get(client_order_id)
        if sent is not None and client_order_id not in self._answer_us:
            self._answer_us[client_order_id] = int((time.perf_counter() - sent) * 1_000_000)

    async def _end(self, intent: CopyIntent, status: IntentStatus, reason: str) -> None:
        await outcomes.end(self.database, self.clock, intent, status, reason)


class _Sent:
    """A copy order handed to its adapter, waiting for the send to be recorded (:meth:`CopyEngine._flush_sends`)."""

    __slots__ = ("broker_us", "done", "engine_us", "intent", "order")

    def __init__(self, intent: CopyIntent, order: Order, engine_us: int | None, broker_us: int | None) -> None:
        self.intent = intent
        self.order = order
        self.engine_us = engine_us
        self.broker_us = broker_us
        self.done: asyncio.Future[None] | None = None


class _SharedPlans:
    """:func:`plan_follower` once per distinct follower in a fan-out.

    The planner is pure: two followers that agree on everything it reads get the same plan but for their
    subscription and link ids. That is common (the same settings text, the same broker's instruments, no
    open link or links of the same size, the same equity for sizings and guards that read it), and planning
    is the biggest cost per follower left in a fan-out (ADR 0029). The key holds every input but those ids;
    the quotes the planner asked for are recorded with the plan and a follower shares it only if its own
    quotes for those symbols are the same.
    """

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._made: dict[tuple[object, ...], tuple[Plan, dict[str, Quote | None]]] = {}

    def plan(self, signal: Signal, subscription: Subscription, follower: Follower, *, quote: QuoteOf) -> Plan:
        """The follower's plan: shared with an earlier follower of this fan-out when every input agrees."""
        link = follower.link
        key = (
            subscription.settings, follower.status, follower.connected, id(follower.instruments), follower.equity,
            follower.start_equity, follower.period_peak_equity, follower.open_positions,
            tuple(sorted(follower.exposures.items())), follower.paused_symbols,
            None if link is None else (link.side, link.qty, link.follower_symbol, link.provider_symbol),
        )  # fmt: skip
        made = self._made.get(key)
        if made is not None and all(quote(symbol) == seen for symbol, seen in made[1].items()):
            return _rebind(made[0], follower)
        asked: dict[str, Quote | None] = {}

        def recorded(symbol: str) -> Quote | None:
            asked[symbol] = found = quote(symbol)
            return found

        plan = plan_follower(signal, follower, quote=recorded, now=self.now)
        self._made[key] = (plan, asked)
        return plan


def _rebind(plan: Plan, follower: Follower) -> Plan:
    """Another follower's plan with this follower's subscription and link ids."""
    link_id = None if follower.link is None else follower.link.id
    orders = tuple(
        o if o.link_id is None or o.link_id == link_id else msgspec.structs.replace(o, link_id=link_id)
        for o in plan.orders
    )
    return msgspec.structs.replace(plan, subscription_id=follower.subscription_id, orders=orders)


def _without_late_opens(plan: Plan) -> Plan:
    """A provider trade older than the stale window (missed during an outage): closes still go out
    (a follower can always get out), opens do not, unless the follower opted in to catch-up trades."""
    closes = tuple(o for o in plan.orders if o.action in (IntentAction.REDUCE, IntentAction.CLOSE))
    if len(closes) == len(plan.orders):
        return plan
    late = Skip(reason=SkipReason.NO_CATCH_UP, detail="a provider trade missed during an outage; catch_up is off")
    return msgspec.structs.replace(plan, orders=closes, skip=late)


class Holdings(msgspec.Struct, frozen=True, kw_only=True):
    """What a fan-out reads about the accounts involved, once: equity (first balance) and open positions."""

    equities: dict[str, Decimal | None]
    positions: dict[str, list[Position]]
    paused: dict[str, frozenset[str]]
    """Symbols paused after repeated rejects, by subscription id (:mod:`~brokerlink.engine.copy.rejects`)."""
    peaks: dict[str, Decimal]
    """The drawdown guard's peak equity in the current period, by subscription id (guarded ones only)."""
    peak_updates: list[EquityPeak]
    """Peaks that moved with this reading: the caller stores them in its transaction."""


async def _live_connection(session: AsyncSession, account_id: str) -> BrokerConnectionRow | None:
    """The account's broker connection, unless the account is gone or its link was revoked."""
    account = await AccountRepository(session).get_by_id(account_id)
    connection = None if account is None else await ConnectionRepository(session).get_by_id(account.connection_id)
    if connection is None or connection.status == ConnectionState.REVOKED.value:
        return None
    return connection


_ENGINE_STAMP = Stamp(actor=COPY_ENGINE)


def _fanout_details(strategy: Strategy, signal: CopySignal, orders: int) -> dict[str, str | int]:
    """The audit details of a fan-out: which provider trade, how many orders the transaction stored (each
    is found through the signal's intents)."""
    return {
        "strategy_id": strategy.id,
        "provider_account_id": strategy.account_id,
        "provider_trade_id": signal.provider_trade_id,
        "symbol": signal.symbol,
        "orders": orders,
    }


def _ticket(intent: CopyIntent) -> OrderTicket:
    return OrderTicket(
        symbol=intent.symbol,
        side=intent.side,
        qty=intent.qty,
        type=protect.ticket_type(intent),
        tif=intent.tif,
        limit_price=intent.limit_price if intent.order_type is CopyOrderType.LIMIT else None,
        stop_price=intent.limit_price if intent.order_type is CopyOrderType.STOP else None,
        client_order_id=intent.client_order_id,
    )


def _link_move(plan: Plan, follower: Follower) -> tuple[str, Decimal, bool] | None:
    """How the plan moves the follower's open link: ``(link id, new qty, closed)``, or None."""
    link = follower.link
    if link is None:
        return None
    mine = [o for o in plan.orders if o.link_id == link.id]
    if any(o.action is IntentAction.CLOSE for o in mine):
        return link.id, Decimal(0), True
    added = sum((o.qty for o in mine if o.action is IntentAction.INCREASE), Decimal(0))
    taken = sum((o.qty for o in mine if o.action is IntentAction.REDUCE), Decimal(0))
    if added or taken:
        return link.id, link.qty + added - taken, False
    return None


def _counts_holdings(settings: CopySettings) -> bool:
    """Whether any cap of ``settings`` depends on what the follower already holds."""
    return any(
        value is not None
        for value in (settings.max_open_positions, settings.max_exposure_per_symbol, settings.max_leverage)
    )


def _action_key(order: PlannedOrder) -> str:
    """What makes the client order id of each of a signal's orders for a subscription distinct."""
    return order.action.value if order.part == 0 else f"{order.action.value}#{order.part}"
