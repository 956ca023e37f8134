"""One slow broker never delays copies to another (issue 4, item 5).

Two sim venues on loopback, followers at both, the provider at the first. The second venue is made
slow, either by the venue itself (injected latency on every REST answer) or by its rate limiter
pausing (as after a 429 with Retry-After). The assertion is about order, not time: every copy at
the fast venue is filled while the copies at the slow one are still on their way; then those
arrive too. Bounded polling; no wall-clock asserts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import msgspec
import pytest

from brokerlink.brokers.limits import limiter_for
from brokerlink.brokers.sim.adapter import SimAdapter
from brokerlink.bus.memory import MemoryEventBus
from brokerlink.domain.copy import IntentStatus, StrategyVisibility
from brokerlink.domain.enums import Side
from brokerlink.domain.models import Account
from brokerlink.engine.copy.manage import create_strategy, subscribe
from brokerlink.engine.copy.service import CopyEngine
from brokerlink.engine.copy.settings import CopySettings, SizingMode
from brokerlink.engine.links.orders import OrderTicket, place_order
from brokerlink.engine.links.service import BrokerLinks
from brokerlink.kit.clock import SystemClock
from brokerlink.store.db import Database
from brokerlink.store.repositories.copy_intents import CopyIntentRepository
from brokerlink.store.repositories.positions import PositionRepository
from brokerlink.store.repositories.users import UserRepository
from tests.contract.harness import SimHarness, sim_venue
from tests.engine.copy.test_engine import eventually
from tests.links_fixtures import LinksFactory, new_link

pytestmark = pytest.mark.e2e

EURUSD = "EUR/USD"
SLOW_S = 5
"""How long the slow venue holds each request: long enough that the fast venue's copies, which
need a fraction of it, are all filled before any slow copy can be."""


@pytest.fixture
async def venues() -> AsyncIterator[tuple[SimHarness, SimHarness]]:
    async with sim_venue(extra_accounts=2) as fast, sim_venue(extra_accounts=2) as slow:
        yield fast, slow


class World(msgspec.Struct, frozen=True, kw_only=True):
    links: BrokerLinks
    engine: CopyEngine
    provider: Account
    fast: list[tuple[Account, str]]
    """Followers at the fast venue, with their subscription ids."""
    slow: list[tuple[Account, str]]


async def _link(links: BrokerLinks, database: Database, venue: SimHarness, email: str, key: str) -> Account:
    async with database.session() as session:
        user = await UserRepository(session).create(
            email=email, display_name=email, password_hash="x", now=SystemClock().now()
        )
        await session.commit()
    return await links.link(user.id, new_link(venue, credentials={"api_key": key}, label=email))


async def _world(
    make_links: LinksFactory, database: Database, bus: MemoryEventBus, fast: SimHarness, slow: SimHarness
) -> World:
    links = make_links()
    provider = await _link(links, database, fast, "provider@example.com", "conf-key")
    async with database.session() as session:
        strategy = await create_strategy(
            session,
            provider_user_id=provider.user_id,
            account_id=provider.id,
            name="Trend",
            visibility=StrategyVisibility.PUBLIC,
            now=SystemClock().now(),
        )
        await session.commit()
    groups: dict[str, list[tuple[Account, str]]] = {"fast": [], "slow": []}
    for name, venue in (("fast", fast), ("slow", slow)):
        for n in (1, 2):
            follower = await _link(links, database, venue, f"{name}{n}@example.com", f"conf-key-{n}")
            async with database.session() as session:
                sub = await subscribe(
                    session, follower_user_id=follower.user_id, strategy_id=strategy.id, account_id=follower.id,
                    settings=CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=Decimal(1)),
                    now=SystemClock().now(),
                )  # fmt: skip
                await session.commit()
            groups[name].append((follower, sub.id))
    engine = CopyEngine(database, bus, links, SystemClock(), retry_every_s=0.1)
    await engine.start()
    return World(links=links, engine=engine, provider=provider, fast=groups["fast"], slow=groups["slow"])


async def _position(database: Database, account_id: str) -> Decimal:
    async with database.session() as session:
        position = await PositionRepository(session).get(account_id, EURUSD)
    return Decimal(0) if position is None else position.qty


async def _statuses(database: Database, followers: list[tuple[Account, str]]) -> list[IntentStatus]:
    async with database.session() as session:
        intents = CopyIntentRepository(session)
        return [i.status for _, sub in followers for i in (await intents.list_for_subscription(sub)).items]


async def _filled(database: Database, followers: list[tuple[Account, str]]) -> bool:
    held = [await _position(database, account.id) for account, _ in followers]
    statuses = await _statuses(database, followers)
    return held == [Decimal("0.10")] * len(followers) and statuses == [IntentStatus.FILLED] * len(followers)


async def _slow_down(how: str, slow: SimHarness) -> None:
    if how == "venue_latency":
        await slow.set_faults(latency_ms=SLOW_S * 1000)
    else:  # the slow venue's limiter pauses, as after a 429 with Retry-After: every copy to it waits there
        limiter = limiter_for(SimAdapter.kind, slow.base_url)  # the one its followers' adapters share
        limiter.penalize(SLOW_S)


@pytest.mark.parametrize("how", ["venue_latency", "rate_limit_pause"])
async def test_copies_to_a_fast_broker_are_filled_while_a_slow_brokers_are_still_on_their_way(
    how: str, make_links: LinksFactory, database: Database, bus: MemoryEventBus, venues: tuple[SimHarness, SimHarness]
) -> None:
    fast, slow = venues
    world = await _world(make_links, database, bus, fast, slow)
    try:
        await _slow_down(how, slow)
        await place_order(
            world.links, world.provider.id, OrderTicket(symbol=EURUSD, side=Side.BUY, qty=Decimal("0.10"))
        )

        await eventually(lambda: _filled(database, world.fast), "the fast venue's copies to fill", attempts=300)
        # The order that matters: at this moment none of the slow venue's copies can have arrived.
        assert [await _position(database, account.id) for account, _ in world.slow] == [Decimal(0), Decimal(0)]
        in_flight = await _statuses(database, world.slow)
        assert len(in_flight) == 2
        assert all(s in (IntentStatus.PENDING, IntentStatus.SENT) for s in in_flight), in_flight

        await slow.clear_faults()
        await eventually(
            lambda: _filled(database, world.slow), "the slow venue's copies to fill in the end", attempts=300
        )
    finally:
        await world.engine.stop()
