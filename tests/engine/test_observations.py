"""The engine's observations from real causes at a real sim venue on loopback: broker connections
up and down, order outcomes by source, copy latency per segment, reconciliation drift.

The metrics registry belongs to the process: each test reads a metric before and after its cause.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import pytest

from brokerlink import observe
from brokerlink.bus.memory import MemoryEventBus
from brokerlink.domain.enums import OrderStatus, OrderType, Side
from brokerlink.engine.copy.reconcile import reconcile
from brokerlink.engine.copy.settings import CopySettings, SizingMode
from brokerlink.engine.links.orders import OrderTicket, cancel_order, place_order
from brokerlink.kit.clock import SystemClock
from brokerlink.observe import Observation
from brokerlink.store.db import Database
from brokerlink.store.repositories.fills import FillRepository
from brokerlink.store.repositories.orders import OrderRepository
from brokerlink.store.repositories.strategies import StrategyPositionRepository, StrategyRepository
from tests.contract.harness import SimHarness, sim_venue
from tests.engine.copy.test_engine import (
    EURUSD,
    _only_strategy,
    _position,
    _positions_become,
    _trade,
    _world,
    eventually,
)
from tests.links_fixtures import LinksFactory, new_link

QTY = Decimal("0.10")


def sample(name: str, **labels: str) -> float:
    return observe.REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def seen() -> Iterator[list[Observation]]:
    got: list[Observation] = []
    remove = observe.add_listener(got.append)
    yield got
    remove()


@pytest.fixture
async def venue() -> AsyncIterator[SimHarness]:
    async with sim_venue(extra_accounts=3) as harness:
        yield harness


async def _status(database: Database, order_id: str) -> OrderStatus:
    async with database.session() as session:
        order = await OrderRepository(session).get_by_id(order_id)
    assert order is not None
    return order.status


async def test_the_broker_gauge_follows_a_link_up_and_down_when_the_venue_stops(
    make_links: LinksFactory, user_id: str, seen: list[Observation]
) -> None:
    links = make_links()
    async with sim_venue() as venue:
        account = await links.link(user_id, new_link(venue))
        labels = {"broker": "sim", "connection_id": account.connection_id}

        async def up() -> bool:
            return sample("brokerlink_broker_connection_up", **labels) == 1

        await eventually(up, "the gauge to say the link is up")
    # The venue is gone: the stream drops and every reconnect fails.

    async def down() -> bool:
        return observe.REGISTRY.get_sample_value("brokerlink_broker_connection_up", labels) == 0

    await eventually(down, "the gauge to say the link is down")
    states = [o.labels["state"] for o in seen if o.labels.get("connection_id") == account.connection_id]
    assert states[0] == "connected"
    assert "disconnected" in states
    assert {o.labels["broker"] for o in seen if o.kind == "broker_connection"} == {"sim"}

    await links.unlink(user_id, account.connection_id)
    assert observe.REGISTRY.get_sample_value("brokerlink_broker_connection_up", labels) is None
    assert [o.labels["state"] for o in seen if o.kind == "broker_connection"][-1] == "revoked"


async def test_orders_are_counted_once_when_they_fill_or_are_canceled(
    make_links: LinksFactory, user_id: str, venue: SimHarness, database: Database, seen: list[Observation]
) -> None:
    links = make_links()
    account = await links.link(user_id, new_link(venue))
    filled = sample("brokerlink_order_outcomes_total", broker="sim", status="filled", source="user")
    canceled = sample("brokerlink_order_outcomes_total", broker="sim", status="canceled", source="user")

    order, _ = await place_order(links, account.id, OrderTicket(symbol=EURUSD, side=Side.BUY, qty=QTY))

    async def is_filled() -> bool:
        return await _status(database, order.id) is OrderStatus.FILLED

    await eventually(is_filled, "the market order to fill")
    resting = OrderTicket(symbol=EURUSD, side=Side.BUY, qty=QTY, type=OrderType.LIMIT, limit_price=Decimal("0.50000"))
    limit, _ = await place_order(links, account.id, resting)
    ended = await cancel_order(links, user_id, limit.id)
    assert ended.status is OrderStatus.CANCELED

    assert sample("brokerlink_order_outcomes_total", broker="sim", status="filled", source="user") == filled + 1
    assert sample("brokerlink_order_outcomes_total", broker="sim", status="canceled", source="user") == canceled + 1
    outcomes = [o.labels for o in seen if o.kind == "order_outcome"]
    assert outcomes == [
        {"broker": "sim", "status": "filled", "source": "user"},
        {"broker": "sim", "status": "canceled", "source": "user"},
    ]


async def test_a_copy_observes_its_latency_per_segment_and_counts_as_a_copy_order(
    make_links: LinksFactory, database: Database, bus: MemoryEventBus, venue: SimHarness, seen: list[Observation]
) -> None:
    segments = ("signal", "engine", "broker")
    before = {s: sample("brokerlink_copy_latency_seconds_count", segment=s) for s in segments}
    copies = sample("brokerlink_order_outcomes_total", broker="sim", status="filled", source="copy")
    world = await _world(
        make_links, database, bus, venue, CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=Decimal(1))
    )
    try:
        await _trade(world, Side.BUY, "0.20")
        await _positions_become(database, world, ["0.20"])

        async def observed() -> bool:
            return all(sample("brokerlink_copy_latency_seconds_count", segment=s) > before[s] for s in segments)

        await eventually(observed, "the copy's three latencies")

        async def counted() -> bool:
            return sample("brokerlink_order_outcomes_total", broker="sim", status="filled", source="copy") > copies

        await eventually(counted, "the copy order's outcome")
    finally:
        await world.engine.stop()
    latencies = [o for o in seen if o.kind == "copy_latency"]
    assert {o.labels["segment"] for o in latencies} == set(segments)
    assert all(o.value is not None and o.value >= 0 for o in latencies if o.labels["segment"] != "signal")
    # The provider's own order is the user's, not a copy.
    assert {"broker": "sim", "status": "filled", "source": "user"} in [
        o.labels for o in seen if o.kind == "order_outcome"
    ]


async def test_reconciliation_sets_each_subscriptions_drift(
    make_links: LinksFactory, database: Database, bus: MemoryEventBus, venue: SimHarness
) -> None:
    world = await _world(
        make_links, database, bus, venue, CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=Decimal(1))
    )
    [sub_id] = world.subscriptions
    try:
        await _trade(world, Side.BUY, "0.30")
        await _positions_become(database, world, ["0.30"])
        await reconcile(database, SystemClock(), is_live=world.links.is_live, settle_s=0)
        assert observe.REGISTRY.get_sample_value("brokerlink_copy_reconcile_drift", {"subscription_id": sub_id}) == 0

        # The engine is down while the provider closes, and the close is consumed without its copy:
        # the follower's link is now an orphan (tests/engine/copy/test_reconcile_e2e.py).
        await world.engine.stop()
        await _trade(world, Side.SELL, "0.30")
        strategy = await _only_strategy(database)

        async def provider_flat() -> bool:
            return await _position(database, world.provider.id) == 0

        await eventually(provider_flat, "the provider's close in the store")
        async with database.session() as session:
            last_fill = await FillRepository(session).latest_id(world.provider.id)
            assert last_fill is not None
            await StrategyRepository(session).set_fill_cursor(strategy.id, last_fill, now=SystemClock().now())
            await StrategyPositionRepository(session).set(strategy.id, EURUSD, Decimal(0), now=SystemClock().now())
            await session.commit()
        await reconcile(database, SystemClock(), is_live=world.links.is_live, settle_s=0)
        assert observe.REGISTRY.get_sample_value("brokerlink_copy_reconcile_drift", {"subscription_id": sub_id}) == 1
    finally:
        await world.engine.stop()
