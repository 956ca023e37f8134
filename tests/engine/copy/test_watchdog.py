"""The stall watchdog against real sim venues: the provider's venue goes down, the followers' stays up.

The provider trades at a venue of its own, which the test stops (its adapter then reconnects in
vain) and starts again on the same port; the followers trade at another venue. The watchdog's
clock is a manual one, so the warning and action thresholds are crossed without waiting; the
venues, links and engine run on real time, waited for with bounded polling only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import msgspec
import pytest
import uvicorn

from brokerlink.brokers.sim.venue import VenueConfig
from brokerlink.brokers.sim.venue.config import AccountConfig
from brokerlink.bus.memory import MemoryEventBus
from brokerlink.domain.copy import CopyEvent, CopyEventKind, IntentAction, StrategyVisibility, SubscriptionStatus
from brokerlink.domain.enums import ConnectionState, Side
from brokerlink.domain.models import Account
from brokerlink.engine.copy.manage import create_strategy, subscribe
from brokerlink.engine.copy.service import CopyEngine
from brokerlink.engine.copy.settings import CopySettings, SizingMode, StallAction, decode_settings
from brokerlink.engine.copy.watchdog import StallWatchdog
from brokerlink.engine.links.orders import OrderTicket, place_order
from brokerlink.engine.links.service import BrokerLinks, NewLink
from brokerlink.kit.clock import ManualClock, SystemClock
from brokerlink.store.db import Database
from brokerlink.store.repositories.connections import ConnectionRepository
from brokerlink.store.repositories.copy_events import CopyEventRepository
from brokerlink.store.repositories.positions import PositionRepository
from brokerlink.store.repositories.subscriptions import SubscriptionRepository
from brokerlink.store.repositories.users import UserRepository
from tests.contract.harness import SimHarness, free_port, sim_venue, start_venue, stop_venue
from tests.engine.copy.test_engine import eventually
from tests.links_fixtures import LinksFactory

D = Decimal
EURUSD = "EUR/USD"
ACTIONS = (StallAction.WARN, StallAction.PAUSE, StallAction.CLOSE_ALL)


class ProviderVenue:
    """A sim venue on a fixed loopback port that can be stopped and started again (with a fresh book)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        config = VenueConfig(
            instrument_set="fx", seed=11, mode="test", tick_interval_s=0.05, heartbeat_interval_s=1.0,
            accounts=(AccountConfig(account_id="SIM-CONF", api_key="conf-key", api_secret="conf-secret"),),
        )  # fmt: skip
        self._server, self._task = await start_venue(config, self.port, graceful_s=1)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        await stop_venue(self._server, self._task)
        self._server = self._task = None


@pytest.fixture
async def provider_venue() -> AsyncIterator[ProviderVenue]:
    venue = ProviderVenue()
    await venue.start()
    try:
        yield venue
    finally:
        await venue.stop()


@pytest.fixture
async def venue() -> AsyncIterator[SimHarness]:
    """The followers' venue."""
    async with sim_venue(extra_accounts=len(ACTIONS)) as harness:
        yield harness


class World(msgspec.Struct, kw_only=True):
    links: BrokerLinks
    engine: CopyEngine
    provider: Account
    followers: list[Account]
    subscriptions: list[str]


async def _link(links: BrokerLinks, database: Database, base_url: str, n: int) -> Account:
    async with database.session() as session:
        user = await UserRepository(session).create(
            email=f"trader{n}@example.com", display_name=f"Trader {n}", password_hash="x", now=SystemClock().now()
        )
        await session.commit()
    key = f"conf-key-{n}" if n else "conf-key"
    request = NewLink(broker="sim", label=f"sim {n}", base_url=base_url, credentials={"api_key": key})
    return await links.link(user.id, request)


async def _world(
    links: BrokerLinks, database: Database, bus: MemoryEventBus, provider_venue: ProviderVenue, venue: SimHarness
) -> World:
    provider = await _link(links, database, provider_venue.base_url, 0)
    now = SystemClock().now()
    async with database.session() as session:
        strategy = await create_strategy(
            session, provider_user_id=provider.user_id, account_id=provider.id, name="Trend",
            visibility=StrategyVisibility.PUBLIC, now=now,
        )  # fmt: skip
        await session.commit()
    followers, subscriptions = [], []
    for n, action in enumerate(ACTIONS, start=1):
        follower = await _link(links, database, venue.base_url, n)
        settings = CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=D(1), on_provider_stall=action)
        async with database.session() as session:
            sub = await subscribe(
                session, follower_user_id=follower.user_id, strategy_id=strategy.id, account_id=follower.id,
                settings=settings, now=now,
            )  # fmt: skip
            await session.commit()
        followers.append(follower)
        subscriptions.append(sub.id)
    engine = CopyEngine(database, bus, links, SystemClock(), retry_every_s=0.1)
    await engine.start()
    return World(links=links, engine=engine, provider=provider, followers=followers, subscriptions=subscriptions)


async def _held(database: Database, account_id: str) -> Decimal:
    async with database.session() as session:
        position = await PositionRepository(session).get(account_id, EURUSD)
    return D(0) if position is None else position.qty


async def _followers_hold(database: Database, world: World, expected: list[str]) -> None:
    async def reached() -> bool:
        return [await _held(database, f.id) for f in world.followers] == [D(e) for e in expected]

    try:
        await eventually(reached, f"follower positions {expected}")
    except AssertionError:
        held = [await _held(database, f.id) for f in world.followers]
        raise AssertionError(f"followers hold {held}, expected {expected}") from None


async def _events(database: Database, subscription_id: str, kind: CopyEventKind) -> list[CopyEvent]:
    async with database.session() as session:
        page = await CopyEventRepository(session).list_for_subscription(subscription_id, limit=100, descending=False)
    return [e for e in page.items if e.kind is kind]


async def _statuses(database: Database, world: World) -> list[SubscriptionStatus]:
    async with database.session() as session:
        repo = SubscriptionRepository(session)
        found = [await repo.get_by_id(s) for s in world.subscriptions]
    return [s.status for s in found if s is not None]


async def _provider_down(world: World) -> bool:
    return not world.links.is_live(world.provider.id)


async def _provider_up(world: World) -> bool:
    return world.links.is_live(world.provider.id)


async def test_a_stalled_provider_warns_once_then_each_follower_gets_its_action_and_recovery_is_told(
    make_links: LinksFactory,
    database: Database,
    bus: MemoryEventBus,
    provider_venue: ProviderVenue,
    venue: SimHarness,
) -> None:
    world = await _world(make_links(), database, bus, provider_venue, venue)
    try:
        await place_order(world.links, world.provider.id, OrderTicket(symbol=EURUSD, side=Side.BUY, qty=D("0.10")))
        await _followers_hold(database, world, ["0.10", "0.10", "0.10"])

        await provider_venue.stop()
        await eventually(lambda: _provider_down(world), "the provider's link to go down")
        # The stall is dated from the stored connection status if that is earlier than the first check:
        # a moment before now, so the thresholds are checked with a few seconds to spare.
        clock = ManualClock(SystemClock().now())
        watchdog = StallWatchdog(database, world.links, clock, warn_after_s=30, act_after_s=120)

        assert await watchdog.check_once() == []
        assert len(watchdog.stalled()) == 1
        clock.advance(timedelta(seconds=25))
        assert await watchdog.check_once() == []
        for sub in world.subscriptions:
            assert await _events(database, sub, CopyEventKind.STALLED) == []

        clock.advance(timedelta(seconds=5))  # 30 s: the warning, once per subscription
        assert await watchdog.check_once() == []
        clock.advance(timedelta(seconds=10))
        assert await watchdog.check_once() == []  # not warned again
        for sub in world.subscriptions:
            stalled = await _events(database, sub, CopyEventKind.STALLED)
            assert [(e.reason, "has been down for 3" in e.detail) for e in stalled] == [("provider_stalled", True)]
        assert await _statuses(database, world) == [SubscriptionStatus.ACTIVE] * 3

        clock.advance(timedelta(seconds=80))  # 120 s: each follower's on_provider_stall
        intents = await watchdog.check_once()
        assert [(i.subscription_id, i.action, i.side, i.qty) for i in intents] == [
            (world.subscriptions[2], IntentAction.CLOSE, Side.SELL, D("0.10"))
        ]
        assert await _statuses(database, world) == [
            SubscriptionStatus.ACTIVE,  # warn: nothing more
            SubscriptionStatus.PAUSED,
            SubscriptionStatus.CLOSE_ONLY,  # close_all: its copies close, and nothing new opens
        ]
        tripped = [await _events(database, sub, CopyEventKind.GUARD_TRIPPED) for sub in world.subscriptions]
        assert [[e.reason for e in events] for events in tripped] == [[], ["provider_stalled"], ["provider_stalled"]]
        world.engine.dispatch(intents)
        await _followers_hold(database, world, ["0.10", "0.10", "0"])
        clock.advance(timedelta(seconds=300))
        assert await watchdog.check_once() == []  # acted once per stall

        await provider_venue.start()
        await eventually(lambda: _provider_up(world), "the provider's link to come back")
        clock.advance(timedelta(seconds=5))
        assert await watchdog.check_once() == []
        assert watchdog.stalled() == {}
        for sub in world.subscriptions:
            resumed = await _events(database, sub, CopyEventKind.RESUMED)
            assert [e.reason for e in resumed] == ["provider_recovered"]
        paused_note = (await _events(database, world.subscriptions[1], CopyEventKind.RESUMED))[0].detail
        assert "stays paused until you resume it" in paused_note
        # Never resumed by the watchdog: the follower who chose to pause decides when to copy again.
        assert await _statuses(database, world) == [
            SubscriptionStatus.ACTIVE,
            SubscriptionStatus.PAUSED,
            SubscriptionStatus.CLOSE_ONLY,
        ]
        clock.advance(timedelta(seconds=5))
        assert await watchdog.check_once() == []
        for sub in world.subscriptions:  # recovery told once
            assert len(await _events(database, sub, CopyEventKind.RESUMED)) == 1
    finally:
        await world.engine.stop()


async def test_a_short_outage_says_nothing(
    make_links: LinksFactory,
    database: Database,
    bus: MemoryEventBus,
    provider_venue: ProviderVenue,
    venue: SimHarness,
) -> None:
    world = await _world(make_links(), database, bus, provider_venue, venue)
    try:
        await provider_venue.stop()
        await eventually(lambda: _provider_down(world), "the provider's link to go down")
        clock = ManualClock(SystemClock().now())
        watchdog = StallWatchdog(database, world.links, clock, warn_after_s=30, act_after_s=120)
        assert await watchdog.check_once() == []
        clock.advance(timedelta(seconds=20))
        assert await watchdog.check_once() == []
        await provider_venue.start()
        await eventually(lambda: _provider_up(world), "the provider's link to come back")
        clock.advance(timedelta(seconds=20))
        assert await watchdog.check_once() == []
        clock.advance(timedelta(seconds=200))
        assert await watchdog.check_once() == []
        for sub in world.subscriptions:
            for kind in (CopyEventKind.STALLED, CopyEventKind.GUARD_TRIPPED, CopyEventKind.RESUMED):
                assert await _events(database, sub, kind) == []
        assert await _statuses(database, world) == [SubscriptionStatus.ACTIVE] * 3
    finally:
        await world.engine.stop()


async def test_after_a_restart_the_stored_connection_status_dates_the_stall(
    make_links: LinksFactory,
    database: Database,
    bus: MemoryEventBus,
    provider_venue: ProviderVenue,
    venue: SimHarness,
) -> None:
    links = make_links()
    world = await _world(links, database, bus, provider_venue, venue)
    await world.engine.stop()
    await links.stop()  # this process no longer runs the provider's link: the store is what remembers
    clock = ManualClock(SystemClock().now() + timedelta(seconds=1))
    async with database.session() as session:
        await ConnectionRepository(session).set_status(
            world.provider.connection_id, ConnectionState.DISCONNECTED, now=clock.now() - timedelta(seconds=100)
        )
        await session.commit()
    watchdog = StallWatchdog(database, links, clock, warn_after_s=30, act_after_s=120)
    assert await watchdog.check_once() == []  # down 100 s already: warned at once, not acted on yet
    assert [len(await _events(database, s, CopyEventKind.STALLED)) for s in world.subscriptions] == [1, 1, 1]
    assert await _statuses(database, world) == [SubscriptionStatus.ACTIVE] * 3
    clock.advance(timedelta(seconds=20))
    await watchdog.check_once()  # 120 s
    assert await _statuses(database, world) == [
        SubscriptionStatus.ACTIVE,
        SubscriptionStatus.PAUSED,
        SubscriptionStatus.CLOSE_ONLY,
    ]


def test_thresholds_must_be_in_order() -> None:
    with pytest.raises(ValueError, match="warn_after_s"):
        StallWatchdog(None, None, ManualClock(), warn_after_s=60, act_after_s=30)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="warn_after_s"):
        StallWatchdog(None, None, ManualClock(), warn_after_s=0)  # type: ignore[arg-type]


@pytest.mark.parametrize("action", list(StallAction))
def test_every_stall_action_is_accepted(action: StallAction) -> None:
    decoded = decode_settings(f'{{"on_provider_stall": "{action.value}"}}')
    assert decoded.on_provider_stall is action
