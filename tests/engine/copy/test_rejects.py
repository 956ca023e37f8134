"""A rejected order does not loop: consecutive refusals in a follower symbol pause it, with one alert.

The store and outcome tests run on SQLite and PostgreSQL (the storage contract fixtures); the last
tests run the engine against a real sim venue whose ``reject_next`` fault refuses the copies.
Bounded polling; no wall-clock asserts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from brokerlink.bus.memory import MemoryEventBus
from brokerlink.domain.copy import CopyEvent, CopyEventKind, CopyIntent, IntentAction, IntentStatus
from brokerlink.domain.enums import OrderStatus, OrderType, Side
from brokerlink.engine.copy import outcomes, rejects
from brokerlink.engine.copy.settings import CopySettings, SizingMode, decode_settings, encode_settings
from brokerlink.kit.clock import ManualClock
from brokerlink.kit.errors import InvalidInput, NotFound
from brokerlink.store.db import Database
from brokerlink.store.repositories.copy_events import CopyEventRepository
from brokerlink.store.repositories.copy_intents import CopyIntentRepository
from brokerlink.store.repositories.copy_symbol_pauses import CopySymbolPauseRepository
from brokerlink.store.repositories.fills import FillRepository
from brokerlink.store.repositories.orders import OrderRepository
from tests.contract.harness import SimHarness, sim_venue
from tests.engine.copy.test_engine import World, _position, _trade, _world, eventually
from tests.links_fixtures import LinksFactory
from tests.store.conftest import (  # noqa: F401 - the storage contract fixtures, on both backends
    _drop_databases_at_exit,
    database_url,
    engine,
    server_url,
    session,
    sessions,
)
from tests.store.copy_factories import Copying, intent, make_copying
from tests.store.factories import NOW, make_order

D = Decimal
SYMBOL = "EURUSD.m"
MULTIPLIER_1 = CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=D(1))


def _settings(**fields: object) -> str:
    return encode_settings(CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=D(1), **fields)).decode()  # type: ignore[arg-type]


@pytest.fixture
async def venue() -> AsyncIterator[SimHarness]:
    async with sim_venue(extra_accounts=1) as harness:
        yield harness


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:  # noqa: F811 - the imported fixture
    database = Database(database_url)
    yield database
    await database.dispose()


async def _copying(db: Database, **settings: object) -> Copying:
    async with db.session() as s:
        copying = await make_copying(s, settings=_settings(**settings))
        await s.commit()
    return copying


async def _intent(db: Database, copying: Copying, *, symbol: str = SYMBOL, sent: bool = False) -> CopyIntent:
    made = intent(copying.subscription, None, symbol=symbol)
    async with db.session() as s:
        await CopyIntentRepository(s).add(made)
        if sent:
            await CopyIntentRepository(s).mark_sent(made.id, now=NOW, order_id=None)
        await s.commit()
    return made


async def _refuse(db: Database, clock: ManualClock, copying: Copying, reason: str = "market closed") -> None:
    """One copy order refused before it reached the venue (the dispatch's path)."""
    clock.advance(timedelta(seconds=1))
    await outcomes.end(db, clock, await _intent(db, copying), IntentStatus.REJECTED, reason)


async def _settle_order(
    db: Database, clock: ManualClock, copying: Copying, status: OrderStatus, **order: object
) -> None:
    """One copy order that reached the venue and ended in ``status`` (the settle path)."""
    clock.advance(timedelta(seconds=1))
    made = await _intent(db, copying, sent=True)
    async with db.session() as s:
        await OrderRepository(s).add(
            make_order(
                copying.follower.id, made.client_order_id, symbol=SYMBOL, qty=made.qty, type=OrderType.MARKET,
                limit_price=None, status=status, **order,
            )
        )  # fmt: skip
        await s.commit()
    await outcomes.settle(db, clock, copying.follower.id, made.client_order_id)


async def _events(db: Database, subscription_id: str) -> list[CopyEvent]:
    async with db.session() as s:
        page = await CopyEventRepository(s).list_for_subscription(subscription_id, limit=100, descending=False)
    return list(page.items)


async def _paused(db: Database, subscription_id: str) -> frozenset[str]:
    async with db.session() as s:
        return (await rejects.paused_symbols(s, [subscription_id])).get(subscription_id, frozenset())


# --- the store ---------------------------------------------------------------------------------------


async def test_runs_count_atomically_pause_once_and_end_with_a_fill_or_a_resume(session: AsyncSession) -> None:  # noqa: F811
    copying = await make_copying(session)
    sub = copying.subscription.id
    repo = CopySymbolPauseRepository(session)
    assert (await repo.count_reject(sub, SYMBOL, reason="no margin", now=NOW)).rejects == 1
    run = await repo.count_reject(sub, SYMBOL, reason="market closed", now=NOW)
    assert (run.rejects, run.reason, run.paused) == (2, "market closed", False)
    assert await repo.end_run(sub, SYMBOL)  # a fill: the run is over
    assert await repo.get(sub, SYMBOL) is None
    await repo.count_reject(sub, SYMBOL, reason="no margin", now=NOW)
    assert await repo.pause(sub, SYMBOL, now=NOW)
    assert not await repo.pause(sub, SYMBOL, now=NOW)  # paused already: no second alert
    assert not await repo.end_run(sub, SYMBOL)  # a fill (a close) does not lift a pause
    assert (await repo.count_reject(sub, SYMBOL, reason="again", now=NOW)).paused
    assert await repo.paused_symbols([sub, "sub_none"]) == {sub: frozenset({SYMBOL})}
    assert [p.symbol for p in await repo.list_paused(sub)] == [SYMBOL]
    assert await repo.resume(sub, SYMBOL)
    assert not await repo.resume(sub, SYMBOL)
    assert await repo.get(sub, SYMBOL) is None  # the count starts over
    assert await repo.paused_symbols([sub]) == {}
    assert await repo.paused_symbols([]) == {}


async def test_concurrent_refusals_all_count(sessions: async_sessionmaker[AsyncSession]) -> None:  # noqa: F811
    async with sessions() as s:
        copying = await make_copying(s)
        await s.commit()
    for _ in range(3):  # one transaction each, as three settles would
        async with sessions() as s:
            await CopySymbolPauseRepository(s).count_reject(copying.subscription.id, SYMBOL, reason="x", now=NOW)
            await s.commit()
    async with sessions() as s:
        run = await CopySymbolPauseRepository(s).get(copying.subscription.id, SYMBOL)
    assert run is not None
    assert run.rejects == 3


# --- outcomes ----------------------------------------------------------------------------------------


async def test_the_third_refusal_in_a_row_pauses_the_symbol_with_one_alert(db: Database) -> None:
    clock = ManualClock(NOW)
    copying = await _copying(db)
    sub = copying.subscription.id
    await _refuse(db, clock, copying)
    await _settle_order(db, clock, copying, OrderStatus.REJECTED, reject_reason="insufficient margin")
    assert await _paused(db, sub) == frozenset()
    await _refuse(db, clock, copying, "symbol not enabled")
    assert await _paused(db, sub) == frozenset({SYMBOL})
    await _refuse(db, clock, copying)  # refused while paused (e.g. a close): counted, no second alert
    tripped = [e for e in await _events(db, sub) if e.kind is CopyEventKind.GUARD_TRIPPED]
    assert [e.reason for e in tripped] == ["symbol_paused"]
    assert SYMBOL in tripped[0].detail
    assert "symbol not enabled" in tripped[0].detail
    assert tripped[0].intent_id is not None
    rejected = [e for e in await _events(db, sub) if e.kind is CopyEventKind.REJECTED]
    assert len(rejected) == 4
    async with db.session() as s:
        run = await CopySymbolPauseRepository(s).get(sub, SYMBOL)
    assert run is not None
    assert (run.rejects, run.paused_at) == (4, NOW + timedelta(seconds=3))


async def test_a_fill_between_refusals_starts_the_count_over(db: Database) -> None:
    clock = ManualClock(NOW)
    copying = await _copying(db)
    sub = copying.subscription.id
    await _refuse(db, clock, copying)
    await _refuse(db, clock, copying)
    await _settle_order(
        db, clock, copying, OrderStatus.FILLED, filled_qty=D("0.15"), avg_fill_price=D("1.08512")
    )  # fmt: skip
    await _refuse(db, clock, copying)
    await _refuse(db, clock, copying)
    assert await _paused(db, sub) == frozenset()
    await _refuse(db, clock, copying)
    assert await _paused(db, sub) == frozenset({SYMBOL})


async def test_refusals_count_per_symbol_and_a_cancel_or_failure_does_not_count(db: Database) -> None:
    clock = ManualClock(NOW)
    copying = await _copying(db, pause_symbol_after_rejects=2)
    sub = copying.subscription.id
    await _refuse(db, clock, copying)
    await outcomes.end(db, clock, await _intent(db, copying, symbol="GBPUSD.m"), IntentStatus.REJECTED, "no")
    await outcomes.end(db, clock, await _intent(db, copying), IntentStatus.FAILED, "gave up")
    await _settle_order(db, clock, copying, OrderStatus.CANCELED)
    assert await _paused(db, sub) == frozenset()
    await _refuse(db, clock, copying)
    assert await _paused(db, sub) == frozenset({SYMBOL})


async def test_zero_never_pauses(db: Database) -> None:
    clock = ManualClock(NOW)
    copying = await _copying(db, pause_symbol_after_rejects=0)
    for _ in range(5):
        await _refuse(db, clock, copying)
    assert await _paused(db, copying.subscription.id) == frozenset()
    async with db.session() as s:
        assert await CopySymbolPauseRepository(s).get(copying.subscription.id, SYMBOL) is None


async def test_a_refusal_settled_twice_counts_once(db: Database) -> None:
    clock = ManualClock(NOW)
    copying = await _copying(db, pause_symbol_after_rejects=2)
    made = await _intent(db, copying, sent=True)
    async with db.session() as s:
        await OrderRepository(s).add(
            make_order(
                copying.follower.id, made.client_order_id, symbol=SYMBOL, status=OrderStatus.REJECTED,
                reject_reason="no",
            )
        )  # fmt: skip
        await s.commit()
    for _ in range(2):  # the bus message and the sweep
        await outcomes.settle(db, clock, copying.follower.id, made.client_order_id)
    async with db.session() as s:
        run = await CopySymbolPauseRepository(s).get(copying.subscription.id, SYMBOL)
    assert run is not None
    assert (run.rejects, run.paused) == (1, False)


async def test_resuming_a_symbol_accepts_any_spelling_and_records_an_event(db: Database) -> None:
    clock = ManualClock(NOW)
    copying = await _copying(db, pause_symbol_after_rejects=1)
    sub = copying.subscription.id
    await _refuse(db, clock, copying)
    async with db.session() as s:
        with pytest.raises(NotFound):
            await rejects.resume_symbol(s, sub, "GBPUSD.m", now=clock.now())
        resumed = await rejects.resume_symbol(s, sub, "eurusd_m", now=clock.now())
        await s.commit()
    assert resumed.symbol == SYMBOL
    assert await _paused(db, sub) == frozenset()
    last = (await _events(db, sub))[-1]
    assert (last.kind, last.reason) == (CopyEventKind.RESUMED, "symbol_resumed")


# --- against a real sim venue ----------------------------------------------------------------------


async def _intents(world: World) -> list[CopyIntent]:
    async with world.engine.database.session() as s:
        page = await CopyIntentRepository(s).list_for_subscription(world.subscriptions[0], limit=100)
    return sorted(page.items, key=lambda i: i.id)


async def _provider_fills(world: World) -> int:
    async with world.engine.database.session() as s:
        return len(await FillRepository(s).list_since(world.provider.id, None))


async def _refused_copies(world: World, venue: SimHarness, count: int) -> None:
    """The provider adds 0.10 ``count`` times and the venue refuses each copy (an increase).

    The engine is stopped meanwhile and scans by hand, so the fault is set between the provider's
    fill and its copy: ``reject_next`` refuses whichever new order comes next, the provider's too.
    """
    await world.engine.stop()
    for n in range(1, count + 1):
        fills = await _provider_fills(world)
        await _trade(world, Side.BUY, "0.10")

        async def filled(fills: int = fills) -> bool:
            return await _provider_fills(world) > fills

        await eventually(filled, "the provider's fill")
        await venue.set_faults(reject_next=1)
        await world.engine.scan_all()

        async def refused(n: int = n) -> bool:
            return len([i for i in await _intents(world) if i.status is IntentStatus.REJECTED]) == n

        await eventually(refused, f"{n} refused copies")


async def test_three_refused_copies_pause_the_symbol_at_a_real_venue(
    make_links: LinksFactory, database: Database, bus: MemoryEventBus, venue: SimHarness
) -> None:
    world = await _world(make_links, database, bus, venue, MULTIPLIER_1)
    try:
        await _trade(world, Side.BUY, "0.10")
        await eventually(lambda: _holds(database, world, "0.10"), "the first copy")
        await _refused_copies(world, venue, 3)
        sub = world.subscriptions[0]

        async def alerted() -> list[CopyEvent] | None:
            tripped = [e for e in await _events(database, sub) if e.kind is CopyEventKind.GUARD_TRIPPED]
            return tripped or None

        tripped = await eventually(alerted, "the symbol_paused alert")
        assert [e.reason for e in tripped] == ["symbol_paused"]
        assert await _paused(database, sub) == frozenset({"EUR/USD"})
        assert await _position(database, world.followers[0].id) == D("0.10")  # the refused adds left it as it was
    finally:
        await world.engine.stop()


async def _holds(database: Database, world: World, qty: str) -> bool:
    return await _position(database, world.followers[0].id) == D(qty)


async def test_a_paused_symbol_copies_no_more_adds_but_still_closes(
    make_links: LinksFactory, database: Database, bus: MemoryEventBus, venue: SimHarness
) -> None:
    world = await _world(make_links, database, bus, venue, MULTIPLIER_1)
    try:
        await _trade(world, Side.BUY, "0.10")
        await eventually(lambda: _holds(database, world, "0.10"), "the first copy")
        await _refused_copies(world, venue, 3)
        await world.engine.start()
        before = len(await _intents(world))
        await _trade(world, Side.BUY, "0.10")  # no fault: without the pause this add would be copied

        async def skipped() -> bool:
            events = await _events(database, world.subscriptions[0])
            return any(e.kind is CopyEventKind.SKIPPED and e.reason == "symbol_paused" for e in events)

        await eventually(skipped, "the add skipped with symbol_paused")
        assert len(await _intents(world)) == before
        await _trade(world, Side.SELL, "0.50")  # the provider (0.10 + 3 x 0.10 + 0.10) goes flat: the copy closes
        await eventually(lambda: _holds(database, world, "0"), "the copy closed")
        last = (await _intents(world))[-1]
        assert (last.action, last.status) == (IntentAction.CLOSE, IntentStatus.FILLED)
    finally:
        await world.engine.stop()


# --- the setting ---------------------------------------------------------------------------------


def test_pause_symbol_after_rejects_defaults_to_three_and_is_checked() -> None:
    assert CopySettings().pause_symbol_after_rejects == 3
    assert decode_settings(b'{"pause_symbol_after_rejects": 0}').pause_symbol_after_rejects == 0
    for bad in (b"-1", b"1001", b'"3"', b"true", b"2.5"):
        with pytest.raises(InvalidInput) as refused:
            decode_settings(b'{"pause_symbol_after_rejects": ' + bad + b"}")
        assert refused.value.extra["field"] == "pause_symbol_after_rejects", bad
    with pytest.raises(InvalidInput):
        CopySettings(pause_symbol_after_rejects=True)
