"""The copy engine end to end: a provider and followers at a real sim venue on loopback.

The provider trades through the normal order path; the engine consumes its fills from the store
and places the followers' copies through their own links. Bounded polling; no wall-clock asserts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import TypeVar

import msgspec
import pytest

from brokerlink.bus.memory import MemoryEventBus
from brokerlink.domain.copy import (
    CopyEventKind,
    IntentAction,
    IntentStatus,
    Strategy,
    StrategyVisibility,
    SubscriptionStatus,
)
from brokerlink.domain.enums import Side
from brokerlink.domain.models import Account
from brokerlink.engine.copy.manage import create_strategy, set_status, subscribe
from brokerlink.engine.copy.service import CopyEngine
from brokerlink.engine.copy.settings import CopySettings, Direction, OnSubscribe, SizingMode
from brokerlink.engine.links import service as links_service
from brokerlink.engine.links.orders import OrderTicket, place_order
from brokerlink.engine.links.service import BrokerLinks
from brokerlink.kit.clock import SystemClock
from brokerlink.store.db import Database
from brokerlink.store.repositories.copy_events import CopyEventRepository
from brokerlink.store.repositories.copy_intents import CopyIntentRepository
from brokerlink.store.repositories.fills import FillRepository
from brokerlink.store.repositories.positions import PositionRepository
from brokerlink.store.repositories.strategies import StrategyRepository
from brokerlink.store.repositories.users import UserRepository
from tests.contract.harness import SimHarness, sim_venue
from tests.links_fixtures import LinksFactory, new_link

T = TypeVar("T")
EURUSD = "EUR/USD"


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str, *, attempts: int = 200) -> T:
    """Poll ``probe`` until it answers something other than None or False, and return that.

    A number is refused: Decimal(0), "no position yet", is neither None nor False and would end the
    wait at once (it did, and a test then raced the store it meant to wait for)."""
    for _ in range(attempts):  # 200 x 50 ms at most
        result = await probe()
        if isinstance(result, int | Decimal) and not isinstance(result, bool):
            raise TypeError(f"waiting for {what}: the probe answered the number {result!r}; answer a bool or None")
        if result is not None and result is not False:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def venue() -> AsyncIterator[SimHarness]:
    async with sim_venue(extra_accounts=3) as harness:
        yield harness


async def _user(database: Database, email: str) -> str:
    async with database.session() as session:
        row = await UserRepository(session).create(
            email=email, display_name=email, password_hash="x", now=SystemClock().now()
        )
        await session.commit()
        return row.id


async def _link(links: BrokerLinks, database: Database, venue: SimHarness, email: str, n: int) -> Account:
    user = await _user(database, email)
    credentials = {"api_key": f"conf-key-{n}"} if n else {"api_key": "conf-key"}
    return await links.link(user, new_link(venue, credentials=credentials, label=f"sim {n}"))


async def _position(database: Database, account_id: str) -> Decimal:
    async with database.session() as session:
        position = await PositionRepository(session).get(account_id, EURUSD)
    return Decimal(0) if position is None else position.qty


class World(msgspec.Struct, frozen=True, kw_only=True):
    links: BrokerLinks
    engine: CopyEngine
    provider: Account
    followers: list[Account]
    subscriptions: list[str]


async def _world(
    make_links: LinksFactory, database: Database, bus: MemoryEventBus, venue: SimHarness, *settings: CopySettings
) -> World:
    links = make_links()
    provider = await _link(links, database, venue, "provider@example.com", 0)
    engine = CopyEngine(database, bus, links, SystemClock(), retry_every_s=0.1)
    followers, subscriptions = [], []
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
    for n, setting in enumerate(settings, start=1):
        follower = await _link(links, database, venue, f"follower{n}@example.com", n)
        async with database.session() as session:
            sub = await subscribe(
                session, follower_user_id=follower.user_id, strategy_id=strategy.id, account_id=follower.id,
                settings=setting, now=SystemClock().now(),
            )  # fmt: skip
            await session.commit()
        followers.append(follower)
        subscriptions.append(sub.id)
    await engine.start()
    return World(links=links, engine=engine, provider=provider, followers=followers, subscriptions=subscriptions)


async def _only_strategy(database: Database) -> Strategy:
    async with database.session() as session:
        return (await StrategyRepository(session).list_active())[0]


async def _trade(world: World, side: Side, qty: str) -> None:
    ticket = OrderTicket(symbol=EURUSD, side=side, qty=Decimal(qty))
    await place_order(world.links, world.provider.id, ticket)


async def _positions_become(database: Database, world: World, expected: list[str]) -> None:
    async def reached() -> bool:
        held = [await _position(database, f.id) for f in world.followers]
        return held == [Decimal(e) for e in expected]

    try:
        await eventually(reached, f"follower positions {expected}")
    except AssertionError:
        held = [await _position(database, f.id) for f in world.followers]
        raise AssertionError(f"followers hold {held}, expected {expected}") from None


async def test_open_partial_close_and_close_are_mirrored_per_follower_settings(
    make_links: LinksFactory, database: Database, bus: MemoryEventBus, venue: SimHarness
) -> None:
    world = await _world(
        make_links, database, bus, venue,
        CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=Decimal(2)),
        CopySettings(sizing=SizingMode.FIXED_QTY, fixed_qty=Decimal("0.05")),
        CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=Decimal(1), direction=Direction.REVERSED),
    )  # fmt: skip
    try:
        await _trade(world, Side.BUY, "0.40")
        await _positions_become(database, world, ["0.80", "0.05", "-0.40"])
        await _trade(world, Side.SELL, "0.10")  # a quarter of the provider's position
        # Each keeps round_down(held x 3/4) and closes the rest: 0.60, 0.03 (0.0375 rounded down), -0.30.
        await _positions_become(database, world, ["0.60", "0.03", "-0.30"])
        await _trade(world, Side.SELL, "0.30")  # flat: every copy closes completely
        await _positions_become(database, world, ["0", "0", "0"])
        async with database.session() as session:
            intents = CopyIntentRepository(session)
            for sub in world.subscriptions:
                page = await intents.list_for_subscription(sub, limit=50)
                assert [i.status for i in page.items] == [IntentStatus.FILLED] * 3, page.items
                assert all(i.engine_us is not None and i.broker_us is not None for i in page.items)
    finally:
        await world.engine.stop()


async def test_a_fill_seen_twice_is_copied_once_and_skips_are_recorded(
    make_links: LinksFactory, database: Database, bus: MemoryEventBus, venue: SimHarness
) -> None:
    world = await _world(
        make_links, database, bus, venue,
        CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=Decimal(1)),
        CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=Decimal("0.01")),  # 0.004: below the 0.01 minimum
    )  # fmt: skip
    try:
        await _trade(world, Side.BUY, "0.40")
        await _positions_become(database, world, ["0.40", "0"])
        # Rescanning from the start (as after a crash before the cursor moved) copies nothing again.
        async with database.session() as session:
            from brokerlink.store.repositories.strategies import StrategyRepository

            strategy = (await StrategyRepository(session).list_active())[0]
        assert await world.engine._scan_strategy(strategy.id) == []
        from brokerlink.domain.copy import Strategy

        rewound = msgspec.structs.replace(strategy, fill_cursor=None)
        assert isinstance(rewound, Strategy)
        async with database.session() as session:
            from brokerlink.store.repositories.fills import FillRepository

            fills = await FillRepository(session).list_since(world.provider.id, None)
        for fill_id, fill in fills:
            assert await world.engine.consume(rewound, fill_id, fill) == []
        await _positions_become(database, world, ["0.40", "0"])
        async with database.session() as session:
            events = (await CopyEventRepository(session).list_for_subscription(world.subscriptions[1])).items
        skipped = [e for e in events if e.kind is CopyEventKind.SKIPPED]
        assert [e.reason for e in skipped] == ["zero_after_rounding"] or [e.reason for e in skipped] == [
            "below_min_qty"
        ], skipped
    finally:
        await world.engine.stop()


async def test_stop_with_close_closes_the_copies_and_paused_copies_no_opens(
    make_links: LinksFactory, database: Database, bus: MemoryEventBus, venue: SimHarness
) -> None:
    world = await _world(
        make_links, database, bus, venue,
        CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=Decimal(1)),
        CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=Decimal(1)),
    )  # fmt: skip
    try:
        await _trade(world, Side.BUY, "0.20")
        await _positions_become(database, world, ["0.20", "0.20"])
        now = SystemClock().now()
        async with database.session() as session:
            first = world.followers[0]
            _, intents = await set_status(
                session, user_id=first.user_id, subscription_id=world.subscriptions[0],
                status=SubscriptionStatus.STOPPED, close_copies=True, now=now,
            )  # fmt: skip
            second = world.followers[1]
            await set_status(
                session, user_id=second.user_id, subscription_id=world.subscriptions[1],
                status=SubscriptionStatus.PAUSED, now=now,
            )  # fmt: skip
            await session.commit()
        assert len(intents) == 1
        await world.engine.dispatch_pending()
        await _positions_become(database, world, ["0", "0.20"])
        await _trade(world, Side.BUY, "0.10")  # the stopped one ignores it, the paused one skips the open
        await _trade(world, Side.SELL, "0.30")  # the paused one still closes
        await _positions_become(database, world, ["0", "0"])
        async with database.session() as session:
            reasons = await CopyEventRepository(session).count_by_reason(world.subscriptions[1])
        assert reasons.get("paused") == 1, reasons
    finally:
        await world.engine.stop()


async def test_positions_open_before_the_subscription_follow_the_on_subscribe_policy(
    make_links: LinksFactory, database: Database, bus: MemoryEventBus, venue: SimHarness
) -> None:
    world = await _world(make_links, database, bus, venue)  # no followers yet
    try:
        await _trade(world, Side.BUY, "0.30")
        strategy = await _only_strategy(database)

        # The provider's entry price comes from its stored position, refreshed just after the fill.
        # Whether the engine consumed the fill before the subscriptions or only when joining, the
        # outcome is the same: the on_subscribe policy decides.
        async def provider_open() -> bool:
            return await _position(database, world.provider.id) != 0

        await eventually(provider_open, "the provider's position to be stored")
        followers = []
        for n, policy in ((1, OnSubscribe.MARKET), (2, OnSubscribe.SKIP)):
            follower = await _link(world.links, database, venue, f"late{n}@example.com", n)
            async with database.session() as session:
                sub = await subscribe(
                    session, follower_user_id=follower.user_id, strategy_id=strategy.id, account_id=follower.id,
                    settings=CopySettings(sizing=SizingMode.MULTIPLIER, on_subscribe=policy), now=SystemClock().now(),
                )  # fmt: skip
                await session.commit()
            followers.append((follower, sub.id))
        for _, sub_id in followers:
            await world.engine.copy_open_positions(sub_id)
            await world.engine.copy_open_positions(sub_id)  # twice: still one copy

        async def copied() -> bool:
            return await _position(database, followers[0][0].id) == Decimal("0.30")

        try:
            await eventually(copied, "the market follower to copy the open position")
        except AssertionError as exc:  # say why: it timed out once in a full run (copy events, intents)
            async with database.session() as session:
                market_sub = followers[0][1]
                events = (await CopyEventRepository(session).list_for_subscription(market_sub, limit=10)).items
                intents = (await CopyIntentRepository(session).list_for_subscription(market_sub, limit=10)).items
                provider = await PositionRepository(session).list_for_account(world.provider.id)
            raise AssertionError(
                f"{exc}: events {[(e.reason, e.detail) for e in events]}, "
                f"intents {[(i.status, i.last_error) for i in intents]}, "
                f"provider positions {[(p.symbol, p.qty, p.avg_price) for p in provider]}, "
                f"follower quote {world.engine.quote_for(followers[0][0].id)(EURUSD)}"
            ) from None
        assert await _position(database, followers[1][0].id) == 0
        async with database.session() as session:
            skipped = await CopyEventRepository(session).count_by_reason(followers[1][1])
        assert skipped == {"on_subscribe_skip": 1}
        await _trade(world, Side.SELL, "0.30")  # the provider closes: the copied position closes too

        async def closed() -> bool:
            return await _position(database, followers[0][0].id) == 0

        await eventually(closed, "the copied position to close with the provider's")
    finally:
        await world.engine.stop()


async def test_a_subscription_right_after_a_fill_joins_at_the_entry_the_fill_made(
    make_links: LinksFactory,
    database: Database,
    bus: MemoryEventBus,
    venue: SimHarness,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A follower subscribes (``market``, and no quote to size with) the moment the provider's order
    has filled: the position's re-read from the venue, which stores its entry price, is still
    pending. The join waits for it instead of finding no entry and skipping for want of a price."""
    # The re-read waits half a second after the fill here (50 ms in production), so the join below
    # surely comes before it, however slow the machine.
    monkeypatch.setattr(links_service, "HOLDINGS_COALESCE_S", 0.5)
    world = await _world(make_links, database, bus, venue)  # no followers yet
    try:
        follower = await _link(world.links, database, venue, "quick@example.com", 1)  # linked before the fill
        strategy = await _only_strategy(database)
        await _trade(world, Side.BUY, "0.30")
        assert await _position(database, world.provider.id) == 0  # the re-read after the fill has not run yet
        async with database.session() as session:
            sub = await subscribe(
                session, follower_user_id=follower.user_id, strategy_id=strategy.id, account_id=follower.id,
                settings=CopySettings(sizing=SizingMode.MULTIPLIER, on_subscribe=OnSubscribe.MARKET),
                now=SystemClock().now(),
            )  # fmt: skip
            await session.commit()
        intents = await world.engine.copy_open_positions(sub.id)
        async with database.session() as session:
            skipped = await CopyEventRepository(session).count_by_reason(sub.id)
        assert skipped == {}
        assert [(i.action, i.qty) for i in intents] == [(IntentAction.OPEN, Decimal("0.30"))]

        async def copied() -> bool:
            return await _position(database, follower.id) == Decimal("0.30")

        await eventually(copied, "the joined copy to fill")
    finally:
        await world.engine.stop()


async def test_a_fill_from_before_a_subscription_consumed_after_it_is_left_to_on_subscribe(
    make_links: LinksFactory, database: Database, bus: MemoryEventBus, venue: SimHarness
) -> None:
    """The engine is down while the provider trades; a follower subscribes (skip policy) before it
    consumes the fill: the fill is part of the position at subscription time, not a new signal."""
    world = await _world(make_links, database, bus, venue)
    await world.engine.stop()  # nothing consumes the provider's fills now
    await _trade(world, Side.BUY, "0.30")
    strategy = await _only_strategy(database)

    async def stored() -> bool:
        async with database.session() as session:
            return bool(await FillRepository(session).list_since(world.provider.id, None))

    await eventually(stored, "the provider's fill to be stored")
    follower = await _link(world.links, database, venue, "late@example.com", 1)
    async with database.session() as session:
        sub = await subscribe(
            session, follower_user_id=follower.user_id, strategy_id=strategy.id, account_id=follower.id,
            settings=CopySettings(sizing=SizingMode.MULTIPLIER, on_subscribe=OnSubscribe.SKIP), now=SystemClock().now(),
        )  # fmt: skip
        await session.commit()
    assert await world.engine.scan_account(world.provider.id) == []  # consumed now, and nothing planned for it
    assert await world.engine.copy_open_positions(sub.id) == []
    async with database.session() as session:
        assert await CopyEventRepository(session).count_by_reason(sub.id) == {"on_subscribe_skip": 1}
        assert (await CopyIntentRepository(session).list_for_subscription(sub.id, limit=10)).items == []
