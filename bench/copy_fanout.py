"""Copy fan-out: one provider fill to every follower's order, on SQLite, against a bare loop building the orders.

**Engine segment** (10, 100 and 1,000 followers, each size a strategy of its own). The real engine
(:class:`~brokerlink.engine.copy.service.CopyEngine`, built and started as the app does it: bus
follower and retry loop running), the real links service and a migrated SQLite file (WAL) in a temp
dir. Every account, provider and follower, is linked through ``BrokerLinks.link`` to an in-memory
fake broker (``bench/_fake_adapter.py``) that accepts and fills each order and reports both on its
event stream, as a venue does. The provider trades outside brokerlink (``FakeAdapter.trade``), so
its fill takes the production path: stored and published by the links service, read from the bus
by the engine, consumed (``CopyEngine.consume``: signal, every follower planned, outbox intents,
copy events, links and each live follower's order row, one transaction, ADR 0029), dispatched (a task
per intent handing its stored order to ``adapter.submit``, nothing written first).

- ``engine_p50_ms_N`` / ``engine_p99_ms_N``: from the call of ``consume`` for the fill to the
  moment the fake adapter's ``submit`` was entered for the LAST of the fill's intents (by then
  every intent is committed in the outbox and every order stored and handed to its adapter).
  Per size also: ``consume`` (the transaction alone), ``from_event`` (from the fill leaving the
  provider's adapter: adds storing it, the bus and the scan), and the process CPU time over the
  engine segment (all threads: the event loop and aiosqlite's).
- Fills cycle open (the provider buys 0.20), reduce (sells 0.10: every follower closes the same
  fraction of its copy) and close (sells 0.10: flat, every copy closed). Follower settings rotate
  over multiplier x1, fixed 0.06 lots and equity ratio; each gives every follower an order on every
  fill (no skips), so a fill fans out to exactly N orders.
- After each fill the run waits until every intent is filled and settled, the engine's bus follower
  has handled every event published so far and the follow-up work (holdings refresh) is done, so
  each fill starts from a quiet engine. What runs while a fill fans out (the acknowledgements and
  fills of the followers already served, their settlement, the holdings refresh) is the engine's
  own work and counts.
- Fills per size: ``--quick`` 4 / 3 / 1, full 30 / 15 / 6, after one warm-up fill to 10 followers.
  The sizes' fills are spread over the run, interleaved with each other and with the baseline;
  ``--quick`` runs its one 1,000-follower fill last and does not wait for it to settle (~20 s).
  p99 is the nearest-rank percentile: with fewer than 100 fills it is the slowest one.

**Baseline**, measured in the same run, interleaved with the engine's fills: a bare loop building
the same number of order objects, ``OrderRequest`` structs with the engine's deterministic client
order ids (``copy_client_order_id`` over the real subscription ids), nothing else. ``ratio_p50_N`` /
``ratio_p99_N`` = engine / baseline.

**Breakdown** (``breakdown`` in the JSON, per size, averaged per fill): every fill runs with
perf_counter sections. Each SQL statement is timed through SQLAlchemy's cursor events, and each call
of the fan-out store (``store <method>``: its statements run on the driver, ADR 0029); the lazy
``BEGIN IMMEDIATE`` that brokerlink issues on the DBAPI cursor before a transaction's first write is
timed there (its time is the wait for SQLite's write lock); commits, the planner and the building
of intents too. Each is attributed to the phase (``consume``, ``dispatch``: from consume's return to
the last submit) and to the task that ran it (dispatch, link event ingest, bus follower, holdings
refresh, retry loop). Times of concurrent tasks overlap, so sums can exceed the wall time.
``--profile`` adds one more 1,000-follower fill under cProfile (not counted; the event loop's
thread only) and prints the own time per package.

**End to end** (100 followers): the sim venue as a child process (``brokerlink sim serve``, the app
the demo runs) on a free 127.0.0.1 port with 101 funded accounts, each linked with the real sim
adapter (REST + WebSocket). The provider places a market order through brokerlink; the venue fills
it; the fill reaches the engine on the provider's stream; the copies go out over REST; the venue
acknowledges each on its follower's stream. ``e2e_p50_ms_100`` / ``e2e_p99_ms_100``: from the
provider fill's venue timestamp (the venue's clock: this machine's wall clock, millisecond
resolution) to the moment brokerlink had applied the LAST follower's acknowledgement (accepted or
filled, whichever came first; ``time.time_ns`` after ``BrokerLinks.apply`` returned).
``e2e_from_applied`` starts instead when brokerlink had applied the provider's fill;
``e2e_venue_side`` ends at the venue's own timestamp of the last follower's acknowledgement. Fills:
``--quick`` 2, full 30 after one warm-up. A follower whose connection is down when its copy would
be acknowledged (a stream reconnecting, a link task killed by ``database is locked``) is counted in
``lost_copies`` and not waited for.

Goal: engine_p99_ms_100 < 2 and engine_p99_ms_1000 < 15 (issue 4). Run:
``.venv/bin/python bench/copy_fanout.py [--quick] [--profile] [--no-e2e]``. The last line of output is
one JSON object; a run the engine cannot finish (a timeout, a task killed by ``database is locked``)
still prints it, with the errors and ``"met": false``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import itertools
import json
import logging
import math
import os
import pstats
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import msgspec
from sqlalchemy import event, text
from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_cursor
from sqlalchemy.ext.asyncio import AsyncSession

from _fake_adapter import KIND, FakeAdapter, FakeBroker
from brokerlink.brokers.base import AdapterConfig, BrokerAdapter, OrderRequest, register_adapter
from brokerlink.brokers.sim.venue import VenueConfig
from brokerlink.brokers.sim.venue.config import AccountConfig
from brokerlink.bus.memory import MemoryEventBus
from brokerlink.domain.copy import CopyIntent, IntentStatus, StrategyVisibility
from brokerlink.domain.enums import OrderType, Side
from brokerlink.domain.events import DomainEvent, OrderAccepted, OrderEvent, OrderFilled
from brokerlink.domain.models import Account, Fill
from brokerlink.engine.copy import service as copy_service
from brokerlink.engine.copy.ids import copy_client_order_id
from brokerlink.engine.copy.manage import create_strategy, subscribe
from brokerlink.engine.copy.service import CopyEngine
from brokerlink.engine.copy.settings import CopySettings, SizingMode
from brokerlink.engine.links.ingest import ACCOUNT_TOPIC, Outcome
from brokerlink.engine.links.live import LiveAccount
from brokerlink.engine.links.orders import OrderTicket, place_order
from brokerlink.engine.links.service import BrokerLinks, NewLink
from brokerlink.kit.clock import SystemClock
from brokerlink.logs import configure_logging
from brokerlink.security.vault import LocalKeyFile, Vault
from brokerlink.store.db import Database
from brokerlink.store.migrate import upgrade
from brokerlink.store.repositories.copy_fanout import FanoutStore
from brokerlink.store.repositories.users import UserRepository

GOAL = "engine_p99_ms_100 < 2 and engine_p99_ms_1000 < 15"
SIZES = (10, 100, 1000)
FILLS = {"quick": {10: 4, 100: 3, 1000: 1}, "full": {10: 30, 100: 15, 1000: 6}}
"""Measured fills per size (after one warm-up fill to 10 followers)."""
E2E_FILLS = {"quick": 2, "full": 30}
E2E_WARM_UP = {"quick": 0, "full": 1}  # quick: no fill to spare (the first ones measured no slower)
E2E_FOLLOWERS = 100
E2E_SPARE_ACCOUNTS = 10  # venue accounts to link instead of one whose link dies (see link_all)
SYMBOL = "EUR/USD"
CYCLE = (  # the provider's trades: side, quantity, what each follower does
    (Side.BUY, Decimal("0.20"), "open"),
    (Side.SELL, Decimal("0.10"), "reduce"),
    (Side.SELL, Decimal("0.10"), "close"),
)
SETTINGS = (
    CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=Decimal(1)),
    CopySettings(sizing=SizingMode.FIXED_QTY, fixed_qty=Decimal("0.06")),
    CopySettings(sizing=SizingMode.EQUITY_RATIO),
)
BASELINE_BUILDS = 5  # baseline builds after each engine fill
WAIT_S = 60.0  # the longest any one wait may take
STALL_S = 5.0  # settling that makes no progress for this long has failed
SHUTDOWN_S = 20.0  # the longest each shutdown step may take
FILLED = IntentStatus.FILLED.value
UNUSABLE_HASH = "-"  # the users' password hash: nobody signs in


class BenchFailure(Exception):
    """The engine did not get a fill through (a timeout, a task that died): reported, not raised."""


def log(message: str) -> None:
    """Progress, on stderr (stdout's last line is the JSON)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile: with fewer than 1 / (1 - q) values it is the largest."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[max(0, math.ceil(q * len(ordered) - 1e-9) - 1)]


def ms(ns: float) -> float:
    return round(ns / 1e6, 3)


class ErrorCounter(logging.Filter):
    """Counts the error records (a task killed by ``database is locked``...); lets the first few through."""

    def __init__(self, show: int = 3) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()
        self.show = show

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            message += f" {record.exc_info[1]!r}"
        key = "database is locked" if "database is locked" in message else message.splitlines()[0][:100]
        self.counts[key] += 1
        return sum(self.counts.values()) <= self.show


# --- watching the engine -----------------------------------------------------------------------------


@dataclass
class Consumed:
    called_ns: int
    called_cpu_ns: int
    returned_ns: int
    fill: Fill
    intents: list[CopyIntent]


class ConsumeProbe:
    """Wraps ``engine.consume`` (an instance attribute shadows the method the engine calls)."""

    def __init__(self, engine: CopyEngine) -> None:
        self.by_trade: dict[str, Consumed] = {}
        self.changed = asyncio.Event()
        self.on_enter: Callable[[], None] | None = None
        self.on_return: Callable[[], None] | None = None
        original = engine.consume

        async def consume(strategy: Any, fill_id: str, fill: Fill) -> list[CopyIntent]:
            if self.on_enter is not None:
                self.on_enter()
            cpu = time.process_time_ns()
            called = time.perf_counter_ns()
            intents = await original(strategy, fill_id, fill)
            returned = time.perf_counter_ns()
            if self.on_return is not None:
                self.on_return()
            if intents:
                self.by_trade[fill.trade_id] = Consumed(called, cpu, returned, fill, intents)
                self.changed.set()
            return intents

        engine.consume = consume  # type: ignore[method-assign]

    async def wait(self, match: Callable[[Fill], bool], what: str) -> Consumed:
        deadline = time.monotonic() + WAIT_S
        while True:
            for call in self.by_trade.values():
                if match(call.fill):
                    return call
            if time.monotonic() > deadline:
                raise BenchFailure(f"the engine did not consume {what} within {WAIT_S} s")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.5)


class BusWatch:
    """Counts what the links publish on the account topic and what the engine's bus follower has acknowledged
    (it acknowledges a batch once it has handled it), so a run can wait for the follower's backlog to drain."""

    def __init__(self, bus: MemoryEventBus) -> None:
        self.published = 0
        self.acked = 0
        publish, make_consumer = bus.publish, bus.consumer

        async def counted_publish(topic: str, key: str, payload: bytes) -> str:
            message_id = await publish(topic, key, payload)
            if topic == ACCOUNT_TOPIC:
                self.published += 1
            return message_id

        def consumer(topic: str, group: str, name: str, **options: Any) -> Any:
            made = make_consumer(topic, group, name, **options)
            if topic == ACCOUNT_TOPIC and group == "copy":  # the engine's follower
                ack, read = made.ack, made.read
                first_read = True

                async def counted_read(**kwargs: Any) -> Any:
                    nonlocal first_read
                    if first_read:  # "latest" is fixed by the group's first read (before any await in it)
                        first_read = False
                        self.published = self.acked = 0
                    return await read(**kwargs)

                made.read = counted_read  # type: ignore[method-assign]

                async def counted_ack(*messages: Any) -> int:
                    done = await ack(*messages)
                    self.acked += len(messages)
                    return done

                made.ack = counted_ack  # type: ignore[method-assign]
            return made

        bus.publish = counted_publish  # type: ignore[method-assign]
        bus.consumer = consumer  # type: ignore[method-assign]

    def drained(self) -> bool:
        return self.acked >= self.published


def _running_names() -> set[str]:
    return {t.get_name() for t in asyncio.all_tasks() if not t.done()}


def _busy() -> bool:
    """Whether a copy dispatch or a holdings refresh is still running (the engine and links name their tasks)."""
    return any(name.startswith(("copy-cpi", "holdings-")) for name in _running_names())


async def quiesce(database: Database, links: BrokerLinks, bus: BusWatch, intents: list[CopyIntent]) -> None:
    """Until these intents are filled and settled, the follow-up work (holdings refresh) is done and the
    engine's bus follower has handled every event published so far.

    An intent whose follower's link has died meanwhile (``database is locked`` in its event pump) can
    never settle: it is not waited for. No progress for ``STALL_S`` is a failure.
    """
    stmt = text("SELECT client_order_id FROM copy_intents WHERE signal_id = :s AND status = :f")
    signal_ids = {i.signal_id for i in intents}
    progress_at, last, acked = time.monotonic(), -1, -1
    while True:
        if _busy() or bus.acked != acked:  # work is going on
            progress_at, acked = time.monotonic(), bus.acked
        if not _busy() and bus.drained():
            async with database.session() as session:
                filled = {
                    cid
                    for sid in signal_ids
                    for cid in (await session.execute(stmt, {"s": sid, "f": FILLED})).scalars()
                }
            waiting = [i for i in intents if i.client_order_id not in filled and links.is_live(i.follower_account_id)]
            if not waiting:
                break
            if len(waiting) != last:
                last, progress_at = len(waiting), time.monotonic()
        if time.monotonic() - progress_at > STALL_S:
            raise BenchFailure(
                f"{max(last, 0)} of {len(intents)} copies never settled, bus events {bus.acked} handled of "
                f"{bus.published} (no progress in {STALL_S} s)"
            )
        await asyncio.sleep(0.05)


# --- perf_counter sections ------------------------------------------------------------------------------


class Sections:
    """SQL statements, commits and the planner, timed and attributed to a phase and to the task that ran them."""

    TASKS = (("copy-cpi", "dispatch"), ("link-", "ingest"), ("copy-bus", "bus"), ("holdings-", "holdings"),
             ("copy-retry", "retry"))  # fmt: skip

    def __init__(self, database: Database) -> None:
        self.database = database
        self.phase = "idle"
        self.ns: defaultdict[str, int] = defaultdict(int)
        self.count: Counter[str] = Counter()

    def reset(self) -> None:
        self.ns.clear()
        self.count.clear()

    def add(self, what: str, ns: int) -> None:
        if self.phase in {"consume", "dispatch"}:
            key = f"{self.phase}/{self._task_kind()}/{what}"
            self.ns[key] += ns
            self.count[key] += 1

    def _task_kind(self) -> str:
        task = asyncio.current_task()
        name = task.get_name() if task is not None else "?"
        return next((kind for prefix, kind in self.TASKS if name.startswith(prefix)), "other")

    def snapshot(self) -> dict[str, tuple[int, int]]:
        return {key: (self.ns[key], self.count[key]) for key in self.ns}

    @contextlib.contextmanager
    def installed(self, engine: CopyEngine) -> Iterator[None]:  # noqa: PLR0915 - one hook after another
        undo: list[Callable[[], None]] = []
        sync_engine = self.database.engine.sync_engine
        started: dict[int, int] = {}
        sections = self

        def before(_conn: Any, cursor: Any, *_: Any) -> None:
            started[id(cursor)] = time.perf_counter_ns()

        def after(_conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            t0 = started.pop(id(cursor), time.perf_counter_ns())
            self.add(f"sql {statement.lstrip().split(None, 1)[0].upper()}", time.perf_counter_ns() - t0)

        # Never removed: SQLAlchemy iterates over the listeners across an await (brokerlink's own hook issues the
        # lazy BEGIN IMMEDIATE from one), so removing one while a statement is in flight breaks that statement.
        # Outside a phase they record nothing, and the engine is disposed after the run.
        event.listen(sync_engine, "before_cursor_execute", before)
        event.listen(sync_engine, "after_cursor_execute", after)

        # brokerlink.store.db issues BEGIN IMMEDIATE on the DBAPI cursor itself, before the first write of a
        # transaction; SQLAlchemy's events do not see it. Its time is the wait for SQLite's write lock.
        original_execute = AsyncAdapt_aiosqlite_cursor.execute

        def execute(cursor: Any, operation: Any, parameters: Any = None) -> Any:
            if operation != "BEGIN IMMEDIATE":
                return original_execute(cursor, operation, parameters)
            t0 = time.perf_counter_ns()
            try:
                return original_execute(cursor, operation, parameters)
            finally:
                sections.add("sql BEGIN IMMEDIATE (waits for the write lock)", time.perf_counter_ns() - t0)

        AsyncAdapt_aiosqlite_cursor.execute = execute  # type: ignore[method-assign]
        undo.append(lambda: setattr(AsyncAdapt_aiosqlite_cursor, "execute", original_execute))

        original_commit = AsyncSession.commit

        async def commit(session: AsyncSession) -> None:
            t0 = time.perf_counter_ns()
            try:
                await original_commit(session)
            finally:
                sections.add("commit", time.perf_counter_ns() - t0)

        AsyncSession.commit = commit  # type: ignore[method-assign]
        undo.append(lambda: setattr(AsyncSession, "commit", original_commit))

        def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                t0 = time.perf_counter_ns()
                try:
                    return fn(*args, **kwargs)
                finally:
                    sections.add(name, time.perf_counter_ns() - t0)

            return wrapper

        # The fan-out's own statements run on the driver (ADR 0029): SQLAlchemy's cursor events do not see them.
        def timed_async(name: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                t0 = time.perf_counter_ns()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    sections.add(name, time.perf_counter_ns() - t0)

            return wrapper

        for method in ("claim", "strategy_position", "set_strategy_position", "add_signal", "roster", "subscriptions",
                       "equity", "paused_symbols", "add_intents", "add_orders", "add_links", "add_events",
                       "move_links"):  # fmt: skip
            original_method = getattr(FanoutStore, method)
            setattr(FanoutStore, method, timed_async(f"store {method}", original_method))
            undo.append(lambda m=method, o=original_method: setattr(FanoutStore, m, o))

        original_plan = copy_service.plan_follower
        copy_service.plan_follower = timed("plan_follower (pure)", original_plan)  # type: ignore[assignment]
        undo.append(lambda: setattr(copy_service, "plan_follower", original_plan))
        if hasattr(engine, "build_intents"):  # the intent objects and their client order ids
            engine.build_intents = timed("build_intents (pure)", engine.build_intents)  # type: ignore[method-assign]
            undo.append(lambda: delattr(engine, "build_intents"))
        try:
            yield
        finally:
            for step in reversed(undo):
                step()


# --- the engine segment: fake brokers, SQLite ------------------------------------------------------------


@dataclass
class EngineWorld:
    database: Database
    links: BrokerLinks
    bus: BusWatch
    engine: CopyEngine
    broker: FakeBroker
    probe: ConsumeProbe
    sections: Sections
    providers: dict[int, FakeAdapter]
    subscriptions: dict[int, list[str]]
    step: dict[int, int] = field(default_factory=dict)


async def _users(database: Database, emails: list[str]) -> list[str]:
    now = SystemClock().now()
    async with database.session() as session:
        users = UserRepository(session)
        ids = [(await users.create(email=e, display_name=e, password_hash=UNUSABLE_HASH, now=now)).id for e in emails]
        await session.commit()
    return ids


async def publish_strategy(database: Database, provider: Account, followers: list[Account], name: str) -> list[str]:
    """A public strategy on the provider's account, every follower subscribed (settings rotating); subscription ids."""
    now = SystemClock().now()
    async with database.session() as session:
        strategy = await create_strategy(
            session, provider_user_id=provider.user_id, account_id=provider.id, name=name,
            visibility=StrategyVisibility.PUBLIC, now=now,
        )  # fmt: skip
        subscriptions = []
        for i, account in enumerate(followers):
            settings = SETTINGS[i % len(SETTINGS)]
            sub = await subscribe(
                session, follower_user_id=account.user_id, strategy_id=strategy.id, account_id=account.id,
                settings=settings, now=now,
            )  # fmt: skip
            subscriptions.append(sub.id)
        await session.commit()
    return subscriptions


def _fake_link(label: str, venue_account_id: str) -> NewLink:
    return NewLink(broker=KIND, label=label, base_url="http://127.0.0.1:9", credentials={"api_key": "unused"},
                   venue_account_id=venue_account_id)  # fmt: skip


async def link_all(
    links: BrokerLinks,
    database: Database,
    requests: Iterator[NewLink],
    count: int,
    *,
    errors: list[str],
    concurrency: int = 1,
) -> list[Account]:
    """``count`` linked accounts whose adapters are live, one user each.

    Few links at a time: concurrent links make SQLite's busy handler starve writers past the 5 s
    busy timeout (``database is locked``). Even so a link can fail, or lose its connection task
    when its first status write starves (the account is then not live); such accounts are left
    out, noted in ``errors``, and replaced.
    """
    accounts: list[Account] = []
    gate = asyncio.Semaphore(concurrency)

    async def link(user: str, request: NewLink) -> Account | None:
        async with gate:
            try:
                return await links.link(user, request)
            except Exception as exc:  # noqa: BLE001 - a starved write: noted, replaced
                errors.append(f"link: {exc!r:.160}")
                return None

    while len(accounts) < count:
        users = await _users(database, [f"u{len(accounts)}-{i}-{time.time_ns()}@bench.example"
                                        for i in range(count - len(accounts))])  # fmt: skip
        wanted = [(user, next(requests, None)) for user in users]
        if any(request is None for _, request in wanted):
            raise BenchFailure(f"ran out of accounts to link: {errors[-3:]}")
        made = await asyncio.gather(*(link(user, request) for user, request in wanted if request is not None))
        batch = [a for a in made if a is not None]
        await asyncio.sleep(0.5)  # the links' first status writes
        live = [a for a in batch if links.is_live(a.id)]
        errors += [f"link {a.id} not live after linking" for a in batch if not links.is_live(a.id)]
        accounts += live
        if len(errors) > 20:
            raise BenchFailure(f"could not link {count} accounts: {errors[-1]}")
    return accounts


@contextlib.asynccontextmanager
async def engine_world(tmp: Path, sizes: tuple[int, ...], setup_errors: list[str]) -> AsyncIterator[EngineWorld]:
    url = f"sqlite+aiosqlite:///{tmp / 'engine.db'}"
    await upgrade(url)
    database = Database(url)
    broker = FakeBroker()

    def by_registry(config: AdapterConfig) -> BrokerAdapter:
        return broker.factory(KIND, config)

    register_adapter(KIND, by_registry)  # BrokerLinks.link checks the kind against the registry
    async with MemoryEventBus() as bus:
        vault = Vault(LocalKeyFile(tmp / "vault.json"))
        links = BrokerLinks(database, bus, vault, SystemClock(), adapter_factory=broker.factory)
        engine: CopyEngine | None = None
        try:
            (provider_user,) = await _users(database, ["provider@bench.example"])
            providers = {n: await links.link(provider_user, _fake_link(f"provider {n}", f"P-{n}")) for n in sizes}
            requests = (_fake_link("fake", f"F-{i}") for i in itertools.count())
            accounts = await link_all(links, database, requests, max(sizes), errors=setup_errors)
            if not all(links.is_live(p.id) for p in providers.values()):
                raise BenchFailure("a provider's link died during setup")
            subscriptions = {n: await publish_strategy(database, providers[n], accounts[:n], f"S{n}") for n in sizes}
            await asyncio.sleep(0.5)  # the links' first status writes
            watch = BusWatch(bus)
            engine = CopyEngine(database, bus, links, SystemClock())  # as the app builds it
            probe = ConsumeProbe(engine)
            await engine.start()
            yield EngineWorld(
                database=database, links=links, bus=watch, engine=engine, broker=broker, probe=probe,
                sections=Sections(database), providers={n: broker.adapters[providers[n].id] for n in sizes},
                subscriptions=subscriptions, step=dict.fromkeys(sizes, 0),
            )  # fmt: skip
        finally:
            await _shut_down(engine, links, database)


async def _shut_down(engine: CopyEngine | None, links: BrokerLinks, database: Database) -> None:
    """Stop everything, each step bounded. A link task that died (``database is locked``) re-raises from
    ``links.stop()``; that, and a step that hangs, is noted and the run goes on."""
    steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("links.stop()", links.stop),
        ("dispose()", database.dispose),
    ]
    if engine is not None:
        steps.insert(0, ("engine.stop()", engine.stop))
    for name, step in steps:
        try:
            async with asyncio.timeout(SHUTDOWN_S):
                await step()
        except Exception as exc:  # noqa: BLE001 - reported, and the run goes on
            log(f"{name} raised {exc!r:.200}")
            logging.getLogger("bench").error("%s raised %r", name, exc)  # noqa: TRY400 - counted by ErrorCounter


@dataclass
class Sample:
    n: int
    action: str
    orders: int
    missing: int  # intents whose order never reached the adapter
    engine_ns: int  # consume called -> last submit entered
    consume_ns: int  # consume called -> returned (the transaction)
    first_submit_ns: int  # consume returned -> first submit entered
    from_event_ns: int  # the provider's fill emitted by its adapter -> last submit
    cpu_ns: int  # process CPU (all threads) from consume called to the last submit
    sections: dict[str, tuple[int, int]]


async def _wait_submits(world: EngineWorld, intents: list[CopyIntent]) -> None:
    """Until every intent's order reached its adapter, or its dispatch ended without sending it."""
    broker = world.broker
    all_in = broker.expect([i.client_order_id for i in intents])
    deadline = time.monotonic() + WAIT_S
    while not all_in.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_in.wait(), 0.2)
        if all_in.is_set():
            return
        names = _running_names()
        if not any(f"copy-{i.id}" in names for i in intents if i.client_order_id not in broker.submitted):
            return  # the rest ended without a submit (their follower is not connected, or the dispatch crashed)
        if time.monotonic() > deadline:
            raise BenchFailure(f"the fill's orders did not all reach their adapters within {WAIT_S} s")


async def engine_fill(world: EngineWorld, n: int, *, settle: bool = True) -> Sample:
    side, qty, action = CYCLE[world.step[n] % len(CYCLE)]
    world.step[n] += 1
    if not world.links.is_live(world.providers[n].account_id):
        raise BenchFailure(f"the provider's link ({n} followers) died")
    world.sections.reset()
    emitted = time.perf_counter_ns()
    trade_id = world.providers[n].trade(side, qty)
    call = await world.probe.wait(lambda f: f.trade_id == trade_id, f"fill {trade_id}")
    await _wait_submits(world, call.intents)
    submitted = world.broker.submitted
    submits = [submitted[i.client_order_id] for i in call.intents if i.client_order_id in submitted]
    if not submits:
        raise BenchFailure(f"no order of fill {trade_id} reached its adapter")
    last = max(submits)
    sample = Sample(
        n=n, action=action, orders=len(call.intents), missing=len(call.intents) - len(submits),
        engine_ns=last - call.called_ns, consume_ns=call.returned_ns - call.called_ns,
        first_submit_ns=min(submits) - call.returned_ns, from_event_ns=last - emitted,
        cpu_ns=world.broker.last_submit_cpu_ns - call.called_cpu_ns, sections=world.sections.snapshot(),
    )  # fmt: skip
    lost = f", {sample.missing} never sent" if sample.missing else ""
    log(f"{n:>4} followers, {action:<6}: engine {ms(sample.engine_ns):>9.1f} ms (consume {ms(sample.consume_ns):.1f}"
        f" ms, cpu {ms(sample.cpu_ns):.0f} ms){lost}")  # fmt: skip
    if settle:
        started = time.perf_counter_ns()
        done = [i for i in call.intents if i.client_order_id in submitted]
        await quiesce(world.database, world.links, world.bus, done)
        log(f"      settled in {ms(time.perf_counter_ns() - started):.0f} ms")
    return sample


def baseline_build(subscription_ids: list[str], trade_id: str) -> int:
    """The bare loop: one order object per follower, with the engine's deterministic client order id."""
    qty = Decimal("0.20")
    started = time.perf_counter_ns()
    orders = [
        OrderRequest(
            client_order_id=copy_client_order_id(sub, trade_id, "open"),
            symbol=SYMBOL,
            side=Side.BUY,
            qty=qty,
            type=OrderType.MARKET,
        )
        for sub in subscription_ids
    ]
    elapsed = time.perf_counter_ns() - started
    assert len(orders) == len(subscription_ids)
    return elapsed


def schedule(fills: dict[int, int], *, largest_last: bool) -> list[int]:
    """Each size's fills spread evenly over the run (so drift hits every size alike), interleaved."""
    slots = sorted(((i + 0.5) / k, n) for n, k in fills.items() for i in range(k))
    order = [n for _, n in slots]
    if largest_last:  # quick: its single fill last, so its long settlement need not be waited for
        biggest = max(fills)
        order = [n for n in order if n != biggest] + [biggest] * fills[biggest]
    return order


async def profiled_fill(world: EngineWorld, n: int) -> None:
    """One more fill under cProfile, from the provider's fill to the last submit (not counted)."""
    profiler = cProfile.Profile()
    world.broker.on_all_in = profiler.disable
    profiler.enable()
    try:
        await engine_fill(world, n, settle=False)
    finally:
        profiler.disable()
        world.broker.on_all_in = None
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer)
    stats.sort_stats("tottime").print_stats(30)
    if os.environ.get("BENCH_PROFILE_DUMP"):
        stats.dump_stats(os.environ["BENCH_PROFILE_DUMP"])
    print(buffer.getvalue())
    # Per package: cumulative times mean little for coroutines (each resumption is a call), own time does.
    own: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for (path, _, name), (_, count, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        package = _package(path, name)
        own[package] += tottime
        calls[package] += count
    total = sum(own.values())
    print(f"own time by package, {total:.2f} s in all ({sum(calls.values())} calls):")
    for package, seconds in own.most_common(15):
        print(f"  {package:<45} {seconds:7.2f} s  {seconds / total:6.1%}  {calls[package]:>9} calls")


def _package(path: str, name: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/brokerlink/" in path:
        return "brokerlink." + path.split("/brokerlink/", 1)[1].split("/", 1)[0]
    if path == "~":
        return f"builtin {name}" if "poll" in name or "put_nowait" in name else "builtins (other)"
    if "/lib/python3" in path:
        module = path.rsplit("/", 1)[1]
        return f"stdlib {'asyncio' if '/asyncio/' in path else module}"
    return path.rsplit("/", 1)[-1]


async def run_engine(tmp: Path, *, mode: str, profile: bool, sizes: tuple[int, ...]) -> dict[str, Any]:
    started = time.perf_counter()
    fills = {n: k for n, k in FILLS[mode].items() if n in sizes}
    out: dict[str, Any] = {"samples": [], "baseline": {n: [] for n in sizes}, "failure": None, "setup_errors": []}
    try:
        async with engine_world(tmp, sizes, out["setup_errors"]) as world:
            out["setup_s"] = round(time.perf_counter() - started, 1)
            log(f"engine world ready: {max(sizes)} followers linked in {out['setup_s']} s")
            await measure_engine(world, out, order=schedule(fills, largest_last=mode == "quick"), profile=profile)
    except BenchFailure as exc:
        out["failure"] = str(exc)
        log(f"engine segment stopped: {exc}")
    return out


async def measure_engine(world: EngineWorld, out: dict[str, Any], *, order: list[int], profile: bool) -> None:
    samples: list[Sample] = out["samples"]
    with world.sections.installed(world.engine):

        def entering() -> None:
            world.sections.phase = "consume"

        def returned() -> None:
            world.sections.phase = "dispatch"

        def all_in() -> None:
            world.sections.phase = "idle"

        world.probe.on_enter, world.probe.on_return = entering, returned
        world.broker.on_all_in = all_in
        try:
            await engine_fill(world, min(world.subscriptions))  # warm-up, not counted
            for i, n in enumerate(order):
                last = i == len(order) - 1 and not profile
                samples.append(await engine_fill(world, n, settle=not last))
                builds = [baseline_build(world.subscriptions[n], f"bench-{i}") for _ in range(BASELINE_BUILDS)]
                out["baseline"][n] += builds
        finally:
            world.probe.on_enter = world.probe.on_return = None
            world.broker.on_all_in = None
    if profile:
        await profiled_fill(world, max(world.subscriptions))


# --- end to end through the sim venue ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def sim_venue_process(tmp: Path, accounts: int) -> Iterator[tuple[str, list[AccountConfig]]]:
    """``brokerlink sim serve`` as a child process on a free loopback port, with funded accounts."""
    configs = [
        AccountConfig(account_id=f"BENCH-{i}", api_key=f"bench-key-{i}", api_secret=f"bench-secret-{i}")
        for i in range(accounts)
    ]
    path = tmp / "venue.json"
    path.write_bytes(msgspec.json.encode(VenueConfig(instrument_set="fx", seed=11, accounts=tuple(configs))))
    port = _free_port()
    command = [sys.executable, "-m", "brokerlink.cli.main", "sim", "serve", "--config", str(path),
               "--port", str(port), "--log-level", "warning"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKERLINK_")}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)  # noqa: S603 - our own command
    base_url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):  # bounded: 30 s
            if proc.poll() is not None:
                raise BenchFailure(f"the sim venue exited with {proc.returncode}")
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"{base_url}/api/v1/instruments", timeout=2)
                break
            time.sleep(0.25)
        else:
            raise BenchFailure("the sim venue did not start")
        yield base_url, configs
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Acks:
    """When brokerlink had applied each follower's acknowledgement, and the provider's fills."""

    wall_ns: dict[str, int] = field(default_factory=dict)  # copy client order id -> time.time_ns()
    venue_s: dict[str, float] = field(default_factory=dict)  # copy client order id -> venue ts (epoch s)
    provider_applied_ns: dict[str, int] = field(default_factory=dict)  # trade id -> time.time_ns()


def _watch_applies(links: BrokerLinks, provider_id: str) -> Acks:
    acks = Acks()
    original = links.apply

    async def apply(live: LiveAccount, ev: DomainEvent) -> Outcome:
        outcome = await original(live, ev)
        now = time.time_ns()
        if isinstance(ev, OrderEvent) and ev.client_order_id.startswith(copy_service.COPY_PREFIX):
            if isinstance(ev, OrderAccepted | OrderFilled) and ev.client_order_id not in acks.wall_ns:
                acks.wall_ns[ev.client_order_id] = now
                acks.venue_s[ev.client_order_id] = (ev.venue_ts or ev.ts).timestamp()
        elif isinstance(ev, OrderFilled) and live.id == provider_id:
            acks.provider_applied_ns.setdefault(ev.trade_id, now)
        return outcome

    links.apply = apply  # type: ignore[method-assign]
    return acks


@dataclass
class E2EWorld:
    database: Database
    links: BrokerLinks
    bus: BusWatch
    provider: Account
    probe: ConsumeProbe
    acks: Acks


@contextlib.asynccontextmanager
async def e2e_world(tmp: Path, errors: list[str]) -> AsyncIterator[E2EWorld]:
    """The sim venue, 101 accounts linked with the sim adapter, a strategy with 100 followers, the engine."""
    with sim_venue_process(tmp, E2E_FOLLOWERS + 1 + E2E_SPARE_ACCOUNTS) as (base_url, venue_accounts):
        url = f"sqlite+aiosqlite:///{tmp / 'e2e.db'}"
        await upgrade(url)
        database = Database(url)
        async with MemoryEventBus() as bus:
            links = BrokerLinks(database, bus, Vault(LocalKeyFile(tmp / "vault-e2e.json")), SystemClock())
            engine: CopyEngine | None = None
            try:
                requests = (
                    NewLink(
                        broker="sim",
                        label="Sim FX",
                        base_url=base_url,
                        credentials={"api_key": a.api_key},
                        venue_account_id=a.account_id,
                    )
                    for a in venue_accounts
                )
                provider, *followers = await link_all(
                    links, database, requests, E2E_FOLLOWERS + 1, errors=errors, concurrency=4
                )
                await publish_strategy(database, provider, followers, "E2E")
                acks = _watch_applies(links, provider.id)
                watch = BusWatch(bus)
                engine = CopyEngine(database, bus, links, SystemClock())
                probe = ConsumeProbe(engine)
                await engine.start()
                yield E2EWorld(database=database, links=links, bus=watch, provider=provider, probe=probe, acks=acks)
            finally:
                await _shut_down(engine, links, database)


async def e2e_fill(world: E2EWorld, step: int) -> dict[str, Any]:
    """The provider trades at the venue; until every follower's copy is acknowledged, then settled."""
    side, qty, action = CYCLE[step % len(CYCLE)]
    if not world.links.is_live(world.provider.id):
        raise BenchFailure("the provider's link died")
    ticket = OrderTicket(symbol=SYMBOL, side=side, qty=qty)
    order, _ = await place_order(world.links, world.provider.id, ticket)
    call = await world.probe.wait(lambda f: f.client_order_id == order.client_order_id, "the provider's fill")
    acks, links = world.acks, world.links
    progress_at, last = time.monotonic(), -1
    while True:  # until every copy is acknowledged (but for followers whose link has died meanwhile)
        waiting = [
            i for i in call.intents if i.client_order_id not in acks.wall_ns and links.is_live(i.follower_account_id)
        ]
        if not waiting:
            break
        if len(waiting) != last:
            last, progress_at = len(waiting), time.monotonic()
        elif time.monotonic() - progress_at > STALL_S:
            raise BenchFailure(f"{len(waiting)} copies never acknowledged (no progress in {STALL_S} s)")
        await asyncio.sleep(0.002)
    acked = [i for i in call.intents if i.client_order_id in acks.wall_ns]
    if not acked:
        raise BenchFailure("no copy was acknowledged")
    await quiesce(world.database, links, world.bus, acked)
    venue_fill_ns = int(call.fill.ts.timestamp() * 1e9)
    last_ack = max(acks.wall_ns[i.client_order_id] for i in acked)
    cids = [i.client_order_id for i in acked]
    return {
        "action": action,
        "orders": len(call.intents),
        "lost": len(call.intents) - len(acked),
        "e2e_ms": ms(last_ack - venue_fill_ns),
        "from_applied_ms": ms(last_ack - acks.provider_applied_ns[call.fill.trade_id]),
        "venue_side_ms": round(max(acks.venue_s[c] for c in cids) * 1e3 - venue_fill_ns / 1e6, 3),
    }


async def run_e2e(tmp: Path, *, fills: int, warm_up: int) -> dict[str, Any]:
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    out: dict[str, Any] = {"followers": E2E_FOLLOWERS}
    errors: list[str] = []
    try:
        async with e2e_world(tmp, errors) as world:
            out["setup_s"] = round(time.perf_counter() - started, 1)
            log(f"e2e world ready: sim venue + {E2E_FOLLOWERS + 1} linked accounts in {out['setup_s']} s")
            for i in range(warm_up + fills):
                row = await e2e_fill(world, i)
                note = " (warm-up)" if i < warm_up else ""
                lost = f", {row['lost']} copies lost (their link died)" if row["lost"] else ""
                log(f"e2e {row['action']:<6}: {row['e2e_ms']:.1f} ms to the last acknowledgement{note}{lost}")
                if i >= warm_up:
                    rows.append(row)
    except BenchFailure as exc:
        out["failure"] = str(exc)
        log(f"e2e stopped: {exc}")
    out["fills"] = len(rows)
    if errors:
        out["setup_errors"] = errors
    if rows:
        e2e = [r["e2e_ms"] for r in rows]
        applied = [r["from_applied_ms"] for r in rows]
        out |= {
            "e2e_p50_ms_100": round(statistics.median(e2e), 2),
            "e2e_p99_ms_100": round(pct(e2e, 0.99), 2),
            "e2e_from_applied_p50_ms_100": round(statistics.median(applied), 2),
            "e2e_from_applied_p99_ms_100": round(pct(applied, 0.99), 2),
            "e2e_venue_side_p50_ms_100": round(statistics.median(r["venue_side_ms"] for r in rows), 2),
            "runs_ms": e2e,
            "lost_copies": sum(r["lost"] for r in rows),
        }
    return out


# --- the report --------------------------------------------------------------------------------------------


def _breakdown(samples: list[Sample]) -> dict[str, Any]:
    """Sections per fill, averaged over the fills of one size: where the engine segment's time went."""
    total: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s in samples:
        for key, (ns, count) in s.sections.items():
            total[key][0] += ns
            total[key][1] += count
    k = len(samples)
    rows = {
        key: {"ms": ms(ns / k), "calls": round(count / k, 1)}
        for key, (ns, count) in sorted(total.items(), key=lambda kv: -kv[1][0])
    }
    return {
        "fills": k,
        "engine_ms": ms(statistics.mean(s.engine_ns for s in samples)),
        "consume_ms": ms(statistics.mean(s.consume_ns for s in samples)),
        "consume_return_to_first_submit_ms": ms(statistics.mean(s.first_submit_ns for s in samples)),
        "cpu_ms": ms(statistics.mean(s.cpu_ns for s in samples)),
        "per_fill": rows,
    }


def summarize(engine: dict[str, Any], e2e: dict[str, Any] | None, *, mode: str, errors: Counter[str]) -> dict[str, Any]:
    samples: list[Sample] = engine["samples"]
    out: dict[str, Any] = {"bench": "copy_fanout", "mode": mode}
    per_size: dict[str, Any] = {}
    breakdown: dict[str, Any] = {}
    for n, builds in engine["baseline"].items():
        mine = [s for s in samples if s.n == n]
        if not mine or not builds:
            continue
        eng = [s.engine_ns / 1e6 for s in mine]
        base = [b / 1e6 for b in builds]
        e50, e99, b50, b99 = statistics.median(eng), pct(eng, 0.99), statistics.median(base), pct(base, 0.99)
        out |= {
            f"engine_p50_ms_{n}": round(e50, 3),
            f"engine_p99_ms_{n}": round(e99, 3),
            f"baseline_p50_ms_{n}": round(b50, 4),
            f"baseline_p99_ms_{n}": round(b99, 4),
            f"ratio_p50_{n}": round(e50 / b50, 1),
            f"ratio_p99_{n}": round(e99 / b99, 1),
        }
        per_size[str(n)] = {
            "fills": len(mine),
            "orders_per_fill": sorted({s.orders for s in mine}),
            "never_sent": sum(s.missing for s in mine),
            "engine_runs_ms": [round(x, 1) for x in eng],
            "consume_p50_ms": round(statistics.median(s.consume_ns / 1e6 for s in mine), 3),
            "from_event_p50_ms": round(statistics.median(s.from_event_ns / 1e6 for s in mine), 3),
            "cpu_p50_ms": round(statistics.median(s.cpu_ns / 1e6 for s in mine), 1),
            "engine_p50_ms_per_order": round(e50 / n, 3),
            "engine_p50_ms_by_action": {
                a: round(statistics.median(s.engine_ns / 1e6 for s in mine if s.action == a), 1)
                for a in ("open", "reduce", "close")
                if any(s.action == a for s in mine)
            },
            "baseline_builds": len(base),
        }
        breakdown[str(n)] = _breakdown(mine)
    for n in SIZES:  # the headline names are always there: null when a segment could not measure them
        for name in ("engine_p50_ms", "engine_p99_ms", "baseline_p50_ms", "baseline_p99_ms"):
            out.setdefault(f"{name}_{n}", None)
    out["per_size"] = per_size
    out |= {"e2e_p50_ms_100": None, "e2e_p99_ms_100": None}
    if e2e is not None:
        out |= {k: v for k, v in e2e.items() if k.startswith("e2e_")}
        out["e2e"] = e2e
    out["breakdown"] = breakdown
    out["setup_s"] = engine.get("setup_s")
    out["errors"] = dict(errors)
    if engine["setup_errors"]:
        out["setup_errors"] = engine["setup_errors"]
    if engine["failure"] is not None:
        out["engine_failure"] = engine["failure"]
    out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    out["cpus"] = os.cpu_count()
    out["measured"] = (
        "engine: consume() called -> last follower adapter.submit entered (intents committed in the outbox, "
        "orders stored and handed over); in-memory fake brokers; SQLite WAL. e2e: provider fill venue ts -> "
        "last follower acknowledgement applied by brokerlink; sim venue child process on 127.0.0.1"
    )
    out["goal"] = GOAL
    out["ratio"] = out.get("ratio_p99_1000")
    p99_100, p99_1000 = out.get("engine_p99_ms_100"), out.get("engine_p99_ms_1000")
    out["met"] = p99_100 is not None and p99_1000 is not None and p99_100 < 2 and p99_1000 < 15
    return out


async def main_async(args: argparse.Namespace, errors: ErrorCounter) -> dict[str, Any]:
    mode = "quick" if args.quick else "full"
    sizes = tuple(int(x) for x in args.sizes.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-copy-") as tmp_name:
        tmp = Path(tmp_name)
        engine = await run_engine(tmp, mode=mode, profile=args.profile, sizes=sizes)
        gc.collect()
        e2e = None
        if not args.no_e2e:
            try:
                e2e = await run_e2e(tmp, fills=E2E_FILLS[mode], warm_up=E2E_WARM_UP[mode])
            except BenchFailure as exc:
                e2e = {"failure": str(exc)}
    return summarize(engine, e2e, mode=mode, errors=errors.counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer fills (about a minute)")
    parser.add_argument("--profile", action="store_true", help="one more 1,000-follower fill under cProfile")
    parser.add_argument("--no-e2e", action="store_true", help="skip the end-to-end run through the sim venue")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="follower counts (default: 10,100,1000)")
    args = parser.parse_args()
    configure_logging("warning")
    errors = ErrorCounter()
    for handler in logging.getLogger().handlers:
        handler.addFilter(errors)
    started = time.perf_counter()
    summary = asyncio.run(main_async(args, errors))
    summary["wall_s"] = round(time.perf_counter() - started, 1)
    # aiosqlite's worker threads are not daemons: one whose connection was abandoned by a task cancelled at
    # shutdown (dispatches still in flight) keeps the interpreter from exiting. Noted, then the exit is forced.
    left = [t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if left:
        summary["threads_left_at_exit"] = len(left)
    for n in (int(x) for x in args.sizes.split(",")):
        if f"engine_p50_ms_{n}" in summary:
            print(
                f"engine {n:>5} followers: p50 {summary[f'engine_p50_ms_{n}']:>10.1f} ms  p99 "
                f"{summary[f'engine_p99_ms_{n}']:>10.1f} ms   baseline p50 {summary[f'baseline_p50_ms_{n}']:.3f} ms"
                f"  p99 {summary[f'baseline_p99_ms_{n}']:.3f} ms   ratio p99 {summary[f'ratio_p99_{n}']}"
            )
    if "e2e_p50_ms_100" in summary:
        print(f"e2e      100 followers: p50 {summary['e2e_p50_ms_100']} ms  p99 {summary['e2e_p99_ms_100']} ms")
    if summary["errors"]:
        print(f"errors: {summary['errors']}")
    print(json.dumps(summary), flush=True)
    if left:
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
