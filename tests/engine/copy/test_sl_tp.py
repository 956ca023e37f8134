"""SL/TP mirroring end to end (ADR 0027): a provider and followers at a real sim venue on loopback.

The provider opens, protects its position with a stop and a limit, moves the stop, partially
closes and is stopped out; each follower's protective orders follow (same direction, reversed, and
mirroring off), and the stop-out leaves every follower flat, never reversed. A restart between
writing a protective intent and sending it sends it exactly once. Bounded polls; no wall-clock asserts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from brokerlink.brokers.sim.venue import VenueConfig
from brokerlink.brokers.sim.venue.config import AccountConfig
from brokerlink.brokers.sim.venue.state import Venue
from brokerlink.bus.memory import MemoryEventBus
from brokerlink.domain.copy import CopyIntent, IntentAction, IntentStatus, StrategyVisibility
from brokerlink.domain.enums import OrderType, Side
from brokerlink.domain.models import Account, Order
from brokerlink.engine.copy import protect
from brokerlink.engine.copy.manage import create_strategy, subscribe, update_settings
from brokerlink.engine.copy.service import CopyEngine
from brokerlink.engine.copy.settings import CopySettings, Direction, SizingMode
from brokerlink.engine.links.orders import OrderTicket, cancel_order, place_order
from brokerlink.engine.links.service import BrokerLinks
from brokerlink.kit.clock import SystemClock
from brokerlink.kit.money import round_to_tick
from brokerlink.store.db import Database
from brokerlink.store.repositories.copy_events import CopyEventRepository
from brokerlink.store.repositories.copy_intents import CopyIntentRepository
from brokerlink.store.repositories.positions import PositionRepository
from brokerlink.store.repositories.strategies import StrategyRepository
from brokerlink.store.repositories.users import UserRepository
from tests.contract.harness import SimHarness, free_port, start_venue, stop_venue
from tests.links_fixtures import LinksFactory, new_link

EURUSD = "EUR/USD"
D = Decimal
SAME = CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=D(2))
REVERSED = CopySettings(sizing=SizingMode.MULTIPLIER, direction=Direction.REVERSED)
OFF = CopySettings(sizing=SizingMode.MULTIPLIER, copy_sl_tp=False)
SPARE = 4  # the venue account that moves the market


class Sim(msgspec.Struct, frozen=True, kw_only=True):
    harness: SimHarness
    venue: Venue


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    accounts = (
        AccountConfig(account_id="SIM-CONF", api_key="conf-key", api_secret="conf-secret"),
        *(
            AccountConfig(account_id=f"SIM-CONF-{i}", api_key=f"conf-key-{i}", api_secret=f"conf-secret-{i}")
            for i in range(1, SPARE + 1)
        ),
    )
    config = VenueConfig(
        instrument_set="fx", seed=11, mode="test", tick_interval_s=0.05, heartbeat_interval_s=1.0, accounts=accounts
    )
    port = free_port()
    server, task = await start_venue(config, port)
    app: Any = server.config.app
    harness = SimHarness(f"http://127.0.0.1:{port}")
    try:
        yield Sim(harness=harness, venue=app.state.venue)
    finally:
        await harness.aclose()
        await stop_venue(server, task)


async def eventually(probe: Callable[[], Awaitable[bool]], what: str, *, attempts: int = 300) -> None:
    for _ in range(attempts):  # 300 x 50 ms at most
        if await probe():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def _link(links: BrokerLinks, database: Database, sim: Sim, n: int) -> Account:
    async with database.session() as session:
        user = await UserRepository(session).create(
            email=f"trader{n}@example.com", display_name=f"Trader {n}", password_hash="x", now=SystemClock().now()
        )
        await session.commit()
    key = f"conf-key-{n}" if n else "conf-key"
    return await links.link(user.id, new_link(sim.harness, credentials={"api_key": key}, label=f"sim {n}"))


class World(msgspec.Struct, frozen=True, kw_only=True):
    links: BrokerLinks
    provider: Account
    followers: list[Account]
    subscriptions: list[str]
    spare: Account


async def _world(links: BrokerLinks, database: Database, sim: Sim, *settings: CopySettings) -> World:
    provider = await _link(links, database, sim, 0)
    now = SystemClock().now()
    async with database.session() as session:
        strategy = await create_strategy(
            session, provider_user_id=provider.user_id, account_id=provider.id, name="Trend",
            visibility=StrategyVisibility.PUBLIC, now=now,
        )  # fmt: skip
        await session.commit()
    followers, subscriptions = [], []
    for n, setting in enumerate(settings, start=1):
        follower = await _link(links, database, sim, n)
        async with database.session() as session:
            sub = await subscribe(
                session, follower_user_id=follower.user_id, strategy_id=strategy.id, account_id=follower.id,
                settings=setting, now=now,
            )  # fmt: skip
            await session.commit()
        followers.append(follower)
        subscriptions.append(sub.id)
    spare = await _link(links, database, sim, SPARE)
    return World(links=links, provider=provider, followers=followers, subscriptions=subscriptions, spare=spare)


async def _held(database: Database, account_id: str) -> Decimal:
    async with database.session() as session:
        position = await PositionRepository(session).get(account_id, EURUSD)
    return D(0) if position is None else position.qty


async def _hold(database: Database, world: World, expected: tuple[str, ...]) -> None:
    async def reached() -> bool:
        return [await _held(database, f.id) for f in world.followers] == [D(e) for e in expected]

    try:
        await eventually(reached, f"followers holding {expected}")
    except AssertionError:
        held = [await _held(database, f.id) for f in world.followers]
        raise AssertionError(f"followers hold {held}, expected {expected}") from None


async def _working(world: World, account: Account) -> set[tuple[Side, OrderType, Decimal, Decimal | None]]:
    """The account's working orders at the venue: (side, type, qty, price) with the stop's trigger as price."""
    orders = await world.links.live(account.id).adapter.open_orders()
    return {(o.side, o.type, o.qty, o.stop_price if o.type is OrderType.STOP else o.limit_price) for o in orders}


async def _protected(world: World, expected: list[set[tuple[Side, OrderType, Decimal, Decimal | None]]]) -> None:
    seen: list[object] = []

    async def reached() -> bool:
        seen[:] = [await _working(world, f) for f in world.followers]
        return seen == expected

    try:
        await eventually(reached, "the followers' protective orders")
    except AssertionError:
        raise AssertionError(f"followers' working orders {seen}, expected {expected}") from None


async def _place(world: World, account: Account, ticket: OrderTicket) -> Order:
    order, _ = await place_order(world.links, account.id, ticket)
    return order


async def _stop(world: World, qty: str, price: Decimal) -> Order:
    """The provider's stop-loss: a sell stop under its long."""
    ticket = OrderTicket(symbol=EURUSD, side=Side.SELL, qty=D(qty), type=OrderType.STOP, stop_price=price)
    return await _place(world, world.provider, ticket)


def _mid(sim: Sim) -> Decimal:
    quote = sim.venue.quote("EURUSD")
    return (quote.bid + quote.ask) / 2


async def _intents(database: Database, subscription_id: str) -> list[CopyIntent]:
    async with database.session() as session:
        return list((await CopyIntentRepository(session).list_for_subscription(subscription_id, limit=200)).items)


async def test_protective_orders_follow_the_provider_through_a_move_a_partial_close_and_a_stop_out(
    make_links: LinksFactory, database: Database, bus: MemoryEventBus, sim: Sim
) -> None:
    links = make_links()
    world = await _world(links, database, sim, SAME, REVERSED, OFF)
    engine = CopyEngine(database, bus, links, SystemClock(), retry_every_s=0.1)
    await engine.start()
    try:
        mid = _mid(sim)
        sl, tp = round_to_tick(mid * D("0.98"), D("0.0001")), round_to_tick(mid * D("1.02"), D("0.0001"))
        await _place(world, world.provider, OrderTicket(symbol=EURUSD, side=Side.BUY, qty=D("0.40")))
        await _hold(database, world, ("0.80", "-0.40", "0.40"))
        stop = await _stop(world, "0.40", sl)
        await _place(
            world, world.provider,
            OrderTicket(symbol=EURUSD, side=Side.SELL, qty=D("0.40"), type=OrderType.LIMIT, limit_price=tp),
        )  # fmt: skip
        # Same direction: a sell stop at the stop-loss and a sell limit at the take-profit, for all it holds.
        # Reversed (short): a buy stop at the provider's take-profit, a buy limit at its stop-loss.
        # Mirroring off: nothing.
        await _protected(
            world,
            [
                {(Side.SELL, OrderType.STOP, D("0.80"), sl), (Side.SELL, OrderType.LIMIT, D("0.80"), tp)},
                {(Side.BUY, OrderType.STOP, D("0.40"), tp), (Side.BUY, OrderType.LIMIT, D("0.40"), sl)},
                set(),
            ],
        )

        # The provider moves its stop up (cancel and replace): the followers' follow, one at a time.
        sl2 = sl + D("0.0050")
        await cancel_order(world.links, world.provider.user_id, stop.id)
        stop = await _stop(world, "0.40", sl2)
        await _protected(
            world,
            [
                {(Side.SELL, OrderType.STOP, D("0.80"), sl2), (Side.SELL, OrderType.LIMIT, D("0.80"), tp)},
                {(Side.BUY, OrderType.STOP, D("0.40"), tp), (Side.BUY, OrderType.LIMIT, D("0.40"), sl2)},
                set(),
            ],
        )

        # A partial close by market: the links halve, and so do their protective orders (the provider's
        # 0.40 stop now covers more than its 0.20: only the position's worth counts).
        await _place(world, world.provider, OrderTicket(symbol=EURUSD, side=Side.SELL, qty=D("0.20")))
        await _hold(database, world, ("0.40", "-0.20", "0.20"))
        await cancel_order(world.links, world.provider.user_id, stop.id)  # a careful provider re-sizes its stop
        await _stop(world, "0.20", sl2)
        await _protected(
            world,
            [
                {(Side.SELL, OrderType.STOP, D("0.40"), sl2), (Side.SELL, OrderType.LIMIT, D("0.40"), tp)},
                {(Side.BUY, OrderType.STOP, D("0.20"), tp), (Side.BUY, OrderType.LIMIT, D("0.20"), sl2)},
                set(),
            ],
        )

        # The market falls through the stop: the provider is stopped out, and so are the followers,
        # by their own protective orders or the mirrored close, never both: flat, never reversed.
        sim.venue.set_mid("EURUSD", sl2 * D("0.99"))
        await _place(world, world.spare, OrderTicket(symbol=EURUSD, side=Side.SELL, qty=D("0.10")))

        async def provider_flat() -> bool:
            return await _held(database, world.provider.id) == 0

        await eventually(provider_flat, "the provider to be stopped out")
        await _hold(database, world, ("0", "0", "0"))
        await _protected(world, [set(), set(), set()])  # the take-profits went with the links
        await engine.sync_protection()
        for _ in range(5):  # nothing left to do: no order goes out any more
            await asyncio.sleep(0.1)
            assert [await _held(database, f.id) for f in world.followers] == [D(0), D(0), D(0)]
        venue_positions = [await world.links.live(f.id).adapter.positions() for f in world.followers]
        assert all(p.qty == 0 for positions in venue_positions for p in positions if p.symbol == EURUSD)
        off = await _intents(database, world.subscriptions[2])
        assert not any(i.action.is_protective for i in off), "copy_sl_tp off mirrors nothing"
        same = await _intents(database, world.subscriptions[0])
        stops = [i for i in same if i.action is IntentAction.STOP_LOSS]
        assert len({i.client_order_id for i in stops}) == len(stops) >= 3  # a revision per change, each its own id
        assert sum(1 for i in same if i.status in (IntentStatus.PENDING, IntentStatus.SENT)) == 0
        # Exactly one thing took the follower out, never both. Usually its own stop fires at the same
        # trade as the provider's, and the mirrored close finds nothing left to close (cut to nothing,
        # or never planned). When the engine sees the provider's stop fill first (a loaded machine),
        # it takes the follower's stop back and the mirrored close flattens the link instead.
        closes = [i for i in same if i.action in (IntentAction.REDUCE, IntentAction.CLOSE)]
        filled_closes = [i for i in closes if i.status is IntentStatus.FILLED]
        if stops[-1].status is IntentStatus.FILLED:
            assert [i.action for i in filled_closes] == [IntentAction.REDUCE], filled_closes  # the reduce only
        else:
            assert stops[-1].status is IntentStatus.CANCELED, stops[-1]
            assert len(filled_closes) == 2, filled_closes  # the reduce, then the one mirrored close
            assert filled_closes[0].action is IntentAction.REDUCE, filled_closes
    finally:
        await engine.stop()


async def test_switching_copy_sl_tp_off_cancels_the_mirrored_orders_and_a_restart_sends_each_once(
    make_links: LinksFactory, database: Database, bus: MemoryEventBus, sim: Sim
) -> None:
    links = make_links()
    world = await _world(links, database, sim, SAME)
    first = CopyEngine(database, bus, links, SystemClock(), retry_every_s=0.1)
    await first.start()
    mid = _mid(sim)
    sl = round_to_tick(mid * D("0.98"), D("0.0001"))
    await _place(world, world.provider, OrderTicket(symbol=EURUSD, side=Side.BUY, qty=D("0.40")))
    await _hold(database, world, ("0.80",))
    await first.stop()  # the engine is down while the provider protects its position
    await _stop(world, "0.40", sl)
    async with database.session() as session:
        strategy = (await StrategyRepository(session).list_active())[0]
    # The change is consumed (the stop-loss intent committed to the outbox) and the process dies before
    # sending it; a second round before the restart derives the same revision and writes nothing new.
    written = await protect.sync_strategy(first, strategy)
    assert [(i.action, i.qty, i.limit_price) for i in written] == [(IntentAction.STOP_LOSS, D("0.80"), sl)]
    assert await protect.sync_strategy(first, strategy) == []
    await links.stop()

    links = make_links()
    second = CopyEngine(database, bus, links, SystemClock(), retry_every_s=0.1)
    await links.start()
    await second.start()
    try:
        restarted = msgspec.structs.replace(world, links=links)

        async def live() -> bool:
            return all(links.is_live(a.id) for a in (*world.followers, world.provider))

        await eventually(live, "the links to reconnect")
        for _ in range(3):  # replays and rounds, even concurrent ones, send nothing new
            await asyncio.gather(second.dispatch_pending(), second.sync_protection(), second.dispatch_pending())
        await _protected(restarted, [{(Side.SELL, OrderType.STOP, D("0.80"), sl)}])
        orders = await links.live(world.followers[0].id).adapter.open_orders()
        assert [o.client_order_id for o in orders] == [written[0].client_order_id], "exactly one, under its own id"

        # Mirroring off: the mirrored stop is cancelled.
        async with database.session() as session:
            await update_settings(
                session, user_id=world.followers[0].user_id, subscription_id=world.subscriptions[0],
                settings=msgspec.structs.replace(SAME, copy_sl_tp=False), expected_version=None,
                now=SystemClock().now(),
            )  # fmt: skip
            await session.commit()
        await _protected(restarted, [set()])
    finally:
        await second.stop()


async def test_risk_sizing_reads_the_provider_s_stop_loss(
    make_links: LinksFactory, database: Database, bus: MemoryEventBus, sim: Sim
) -> None:
    """The stop placed with (before) the entry is the signal's stop-loss: risk sizing copies instead of
    skipping with ``no_stop_loss``."""
    links = make_links()
    risk = CopySettings(sizing=SizingMode.RISK_PERCENT, risk_percent=D("0.5"))
    world = await _world(links, database, sim, risk)
    engine = CopyEngine(database, bus, links, SystemClock(), retry_every_s=0.1)
    await engine.start()
    try:
        sl = round_to_tick(_mid(sim) * D("0.99"), D("0.0001"))
        await _stop(world, "0.40", sl)  # while flat it is an entry order to anyone else: ignored until the fill
        await _place(world, world.provider, OrderTicket(symbol=EURUSD, side=Side.BUY, qty=D("0.40")))

        async def copied() -> bool:
            return await _held(database, world.followers[0].id) > 0

        await eventually(copied, "the risk-sized copy")
        async with database.session() as session:
            skips = await CopyEventRepository(session).count_by_reason(world.subscriptions[0])
        assert "no_stop_loss" not in skips, skips
        await _protected(world, [{(Side.SELL, OrderType.STOP, await _held(database, world.followers[0].id), sl)}])
    finally:
        await engine.stop()
