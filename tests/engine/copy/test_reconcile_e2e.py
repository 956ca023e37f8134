"""Reconciliation end to end: a copy whose close was lost is found and closed at a real sim venue.

The provider opens, the follower copies. Then the engine is down while the provider closes, and the
provider's close is taken as consumed without the follower's close (the cursor and the provider's
position moved by hand, as when a crash or a bug loses the follower's part of a signal): the
follower's link stays open with nobody left to close it. Reconciliation reports the orphan and its
repair brings the follower flat through the outbox and the engine. Bounded polling.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from brokerlink.bus.memory import MemoryEventBus
from brokerlink.domain.copy import IntentStatus, LinkStatus
from brokerlink.domain.enums import Side
from brokerlink.engine.copy.reconcile import FindingKind, RepairAction, reconcile
from brokerlink.engine.copy.service import CopyEngine
from brokerlink.engine.copy.settings import CopySettings, SizingMode
from brokerlink.kit.clock import SystemClock
from brokerlink.store.db import Database
from brokerlink.store.repositories.copy_intents import CopyIntentRepository
from brokerlink.store.repositories.copy_links import CopyLinkRepository
from brokerlink.store.repositories.fills import FillRepository
from brokerlink.store.repositories.positions import PositionRepository
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
from tests.links_fixtures import LinksFactory


@pytest.fixture
async def venue() -> AsyncIterator[SimHarness]:
    async with sim_venue(extra_accounts=3) as harness:
        yield harness


async def test_a_lost_close_is_found_and_repaired_flat(
    make_links: LinksFactory, database: Database, bus: MemoryEventBus, venue: SimHarness
) -> None:
    world = await _world(
        make_links, database, bus, venue, CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=Decimal(1))
    )
    [follower] = world.followers
    [sub_id] = world.subscriptions
    try:
        await _trade(world, Side.BUY, "0.40")
        await _positions_become(database, world, ["0.40"])

        # The engine is down while the provider closes; the close is then "consumed" without the copy's.
        await world.engine.stop()
        await _trade(world, Side.SELL, "0.40")
        await eventually(lambda: _flat(database, world.provider.id), "the provider's close in the store", attempts=200)
        strategy = await _only_strategy(database)
        async with database.session() as session:
            last_fill = await FillRepository(session).latest_id(world.provider.id)
            assert last_fill is not None
            await StrategyRepository(session).set_fill_cursor(strategy.id, last_fill, now=SystemClock().now())
            await StrategyPositionRepository(session).set(strategy.id, EURUSD, Decimal(0), now=SystemClock().now())
            await session.commit()
        await world.engine.start()  # nothing left to consume: the follower stays long
        assert await _position(database, follower.id) == Decimal("0.40")

        # The open's copy settled a moment ago, and its position is confirmed above: no settle window.
        found = await reconcile(database, SystemClock(), is_live=world.links.is_live, settle_s=0)
        [orphan] = [f for f in found.findings if f.subscription_id == sub_id]
        assert (orphan.kind, orphan.held, orphan.provider_qty) == (FindingKind.ORPHAN_LINK, Decimal("0.40"), 0)
        assert not found.clean

        repaired = await reconcile(database, SystemClock(), repair=True, is_live=world.links.is_live, settle_s=0)
        [repair] = repaired.repairs
        assert (repair.action, repair.qty) == (RepairAction.CLOSE_ORDER, Decimal("0.40"))
        [intent] = repaired.intents
        world.engine.dispatch(repaired.intents)
        await _positions_become(database, world, ["0"])

        async def filled() -> bool:
            async with database.session() as session:
                stored = await CopyIntentRepository(session).get_by_id(intent.id)
            return stored is not None and stored.status is IntentStatus.FILLED

        await eventually(filled, "the repair's close to be filled")
        async with database.session() as session:
            link = await CopyLinkRepository(session).get_by_id(orphan.link_id or "")
        assert link is not None
        assert link.status is LinkStatus.CLOSED

        after = await reconcile(database, SystemClock(), repair=True, is_live=world.links.is_live)
        assert after.clean
        assert after.intents == ()
        assert not [f for f in after.findings if f.kind is not FindingKind.IN_FLIGHT]
    finally:
        await world.engine.stop()


async def _flat(database: Database, account_id: str) -> bool:
    async with database.session() as session:
        position = await PositionRepository(session).get(account_id, EURUSD)
    return position is not None and position.qty == 0


async def test_the_engine_repairs_a_lost_close_on_its_own_when_configured(
    make_links: LinksFactory, database: Database, bus: MemoryEventBus, venue: SimHarness
) -> None:
    """The periodic reconciliation (``reconcile_repair`` on) closes the orphan without anyone asking."""
    world = await _world(
        make_links, database, bus, venue, CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=Decimal(1))
    )
    repairing = CopyEngine(
        database, bus, world.links, SystemClock(), retry_every_s=0.1, reconcile_every_s=0.2, reconcile_repair=True
    )
    try:
        await _trade(world, Side.BUY, "0.40")
        await _positions_become(database, world, ["0.40"])
        await world.engine.stop()
        await _trade(world, Side.SELL, "0.40")
        await eventually(lambda: _flat(database, world.provider.id), "the provider's close in the store")
        strategy = await _only_strategy(database)
        async with database.session() as session:
            last_fill = await FillRepository(session).latest_id(world.provider.id)
            assert last_fill is not None
            await StrategyRepository(session).set_fill_cursor(strategy.id, last_fill, now=SystemClock().now())
            await StrategyPositionRepository(session).set(strategy.id, EURUSD, Decimal(0), now=SystemClock().now())
            await session.commit()
        await repairing.start()
        # Within the settle window (5 s after the open's copy) nothing is judged; then the loop repairs.
        await eventually(lambda: _flat(database, world.followers[0].id), "the loop to close the orphan", attempts=300)
    finally:
        await repairing.stop()
        await world.engine.stop()
