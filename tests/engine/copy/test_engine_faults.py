"""The copy engine end to end under the sim venue's faults, and across a restart.

A provider trades a short fixed sequence (open, add, partial close, close) while the venue injects
a fault: latency, 500s after accepting an order (outcome unknown), duplicated or reordered order
updates, dropped connections. Whatever the fault, each follower ends holding what its settings say
at every step (and flat at the end), every (subscription, provider execution, action) is exactly
one order at the venue, and no intent is left in the outbox. A copy the venue refuses leaves no
link behind to block the next one. A restart between consuming a fill and sending its copies (or
between storing and sending the order, or sending it and recording that) sends each copy exactly
once.

Bounded polling throughout; no wall-clock asserts.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from sqlalchemy import delete

from brokerlink.bus.memory import MemoryEventBus
from brokerlink.domain.copy import CopyIntent, IntentAction, IntentStatus, Strategy, StrategyVisibility
from brokerlink.domain.enums import OrderStatus, Side
from brokerlink.domain.models import Account, Fill
from brokerlink.engine.copy.manage import create_strategy, subscribe, update_settings
from brokerlink.engine.copy.service import CopyEngine
from brokerlink.engine.copy.settings import CopySettings, Direction, SizingMode
from brokerlink.engine.links.orders import OrderTicket, place_order, send_stored
from brokerlink.engine.links.service import BrokerLinks
from brokerlink.kit.clock import SystemClock
from brokerlink.store.db import Database
from brokerlink.store.models import OrderRow
from brokerlink.store.repositories.copy_intents import CopyIntentRepository
from brokerlink.store.repositories.copy_signals import CopySignalRepository
from brokerlink.store.repositories.fills import FillRepository
from brokerlink.store.repositories.orders import OrderRepository
from brokerlink.store.repositories.positions import PositionRepository
from brokerlink.store.repositories.users import UserRepository
from tests.contract.harness import SimHarness, sim_venue
from tests.links_fixtures import LinksFactory, new_link

EURUSD = "EUR/USD"
D = Decimal

FOLLOWERS = (
    CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=D(2)),
    CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=D("0.5"), direction=Direction.REVERSED),
)
SEQUENCE: tuple[tuple[Side, str, tuple[str, str]], ...] = (
    # The provider's trade, then what each follower holds: 2x, and 0.5x reversed.
    (Side.BUY, "0.40", ("0.80", "-0.20")),  # open
    (Side.BUY, "0.20", ("1.20", "-0.30")),  # add
    (Side.SELL, "0.30", ("0.60", "-0.15")),  # half closed: each keeps half of what it holds
    (Side.SELL, "0.30", ("0", "0")),  # flat
)
ACTIONS = [IntentAction.OPEN, IntentAction.INCREASE, IntentAction.REDUCE, IntentAction.CLOSE]


async def eventually(probe: Callable[[], Awaitable[bool]], what: str, *, attempts: int = 300) -> None:
    for _ in range(attempts):  # 300 x 50 ms at most
        if await probe():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def venue() -> AsyncIterator[SimHarness]:
    async with sim_venue(extra_accounts=len(FOLLOWERS)) as harness:
        yield harness


class Copying(msgspec.Struct, kw_only=True):
    """A provider with a strategy, and its followers, linked at one venue."""

    links: BrokerLinks
    strategy: Strategy
    provider: Account
    followers: list[Account]
    subscriptions: list[str]

    def accounts(self) -> list[Account]:
        return [self.provider, *self.followers]


async def _link(links: BrokerLinks, database: Database, venue: SimHarness, n: int) -> Account:
    async with database.session() as session:
        user = await UserRepository(session).create(
            email=f"trader{n}@example.com", display_name=f"Trader {n}", password_hash="x", now=SystemClock().now()
        )
        await session.commit()
    key = f"conf-key-{n}" if n else "conf-key"  # the venue's accounts (tests/contract/harness.py)
    return await links.link(user.id, new_link(venue, credentials={"api_key": key}, label=f"sim {n}"))


async def _copying(links: BrokerLinks, database: Database, venue: SimHarness) -> Copying:
    provider = await _link(links, database, venue, 0)
    now = SystemClock().now()
    async with database.session() as session:
        strategy = await create_strategy(
            session, provider_user_id=provider.user_id, account_id=provider.id, name="Trend",
            visibility=StrategyVisibility.PUBLIC, now=now,
        )  # fmt: skip
        await session.commit()
    followers, subscriptions = [], []
    for n, settings in enumerate(FOLLOWERS, start=1):
        follower = await _link(links, database, venue, n)
        async with database.session() as session:
            sub = await subscribe(
                session, follower_user_id=follower.user_id, strategy_id=strategy.id, account_id=follower.id,
                settings=settings, now=now,
            )  # fmt: skip
            await session.commit()
        followers.append(follower)
        subscriptions.append(sub.id)
    return Copying(links=links, strategy=strategy, provider=provider, followers=followers, subscriptions=subscriptions)


def _engine(database: Database, bus: MemoryEventBus, links: BrokerLinks) -> CopyEngine:
    return CopyEngine(database, bus, links, SystemClock(), retry_every_s=0.1)


async def _trade(copying: Copying, side: Side, qty: str) -> None:
    await place_order(copying.links, copying.provider.id, OrderTicket(symbol=EURUSD, side=side, qty=D(qty)))


async def _held(database: Database, account_id: str) -> Decimal:
    async with database.session() as session:
        position = await PositionRepository(session).get(account_id, EURUSD)
    return D(0) if position is None else position.qty


async def _followers_hold(
    database: Database, copying: Copying, expected: tuple[str, ...], *, attempts: int = 300
) -> None:
    async def reached() -> bool:
        return [await _held(database, f.id) for f in copying.followers] == [D(e) for e in expected]

    try:
        await eventually(reached, f"follower positions {expected}", attempts=attempts)
    except AssertionError:
        held = [await _held(database, f.id) for f in copying.followers]
        raise AssertionError(f"followers hold {held}, expected {list(expected)}") from None


async def _all_live(copying: Copying) -> None:
    async def live() -> bool:
        return all(copying.links.is_live(a.id) for a in copying.accounts())

    await eventually(live, "every account's connection to be up")


async def _intents(database: Database, subscription_id: str) -> list[CopyIntent]:
    async with database.session() as session:
        return list((await CopyIntentRepository(session).list_for_subscription(subscription_id, limit=100)).items)


async def _venue_fills(links: BrokerLinks, account_id: str) -> list[Fill]:
    adapter = links.live(account_id).adapter
    fills: list[Fill] = []
    cursor: str | None = None
    for _ in range(100):  # bounded paging
        page = await adapter.fills_since(cursor)
        fills += page.fills
        if not page.fills or page.next_cursor is None:
            return fills
        cursor = page.next_cursor
    raise AssertionError("the venue's fills did not end")


async def _check_exactly_once(database: Database, copying: Copying) -> None:
    """Each intent is one filled order at the venue, every follower fill belongs to one, and none is pending."""
    for follower, subscription_id in zip(copying.followers, copying.subscriptions, strict=True):
        intents = await _intents(database, subscription_id)
        assert [i.action for i in intents] == ACTIONS, intents
        assert [i.status for i in intents] == [IntentStatus.FILLED] * len(ACTIONS), intents
        by_id = {i.client_order_id: i for i in intents}
        assert len(by_id) == len(intents)  # one client order id per (subscription, execution, action)
        fills: defaultdict[str | None, list[Fill]] = defaultdict(list)
        for fill in await _venue_fills(copying.links, follower.id):
            fills[fill.client_order_id].append(fill)
        assert set(fills) == set(by_id), "every follower fill at the venue belongs to exactly one copy intent"
        for client_order_id, intent in by_id.items():
            venue_orders = {f.order_id for f in fills[client_order_id]}
            assert len(venue_orders) == 1, f"{intent.action}: {len(venue_orders)} orders at the venue"
            assert sum(f.qty for f in fills[client_order_id]) == intent.qty, f"{intent.action} filled more than once"
            assert {f.side for f in fills[client_order_id]} == {intent.side}
        async with database.session() as session:
            orders = (await OrderRepository(session).list_for_account(follower.id, limit=100)).items
        assert sorted(o.client_order_id for o in orders) == sorted(by_id)
        assert all(o.status is OrderStatus.FILLED for o in orders), orders
        venue_positions = await copying.links.live(follower.id).adapter.positions()
        assert all(p.qty == 0 for p in venue_positions if p.symbol == EURUSD), venue_positions


FAULTS: dict[str, dict[str, Any]] = {
    "latency": {"latency_ms": 100},
    # Every order request (the provider's and the copies) is executed, then answered 500.
    "fail_after_accept": {"fail_after_accept": 1_000},
    "duplicate_events": {"duplicate_events": 1.0},
    "reorder_events": {"reorder_events": 1.0},
    "drop_connections": {},  # dropped during each fan-out, below
    "all_at_once": {"latency_ms": 20, "fail_after_accept": 1_000, "duplicate_events": 0.5, "reorder_events": 0.5},
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_followers_end_as_expected_under_each_fault_with_one_order_per_copy(
    fault: str, make_links: LinksFactory, database: Database, bus: MemoryEventBus, venue: SimHarness
) -> None:
    copying = await _copying(make_links(), database, venue)
    engine = _engine(database, bus, copying.links)
    await engine.start()
    try:
        await venue.set_faults(**FAULTS[fault])
        drops = fault in ("drop_connections", "all_at_once")
        for step, (side, qty, expected) in enumerate(SEQUENCE, start=1):
            await _all_live(copying)
            await _trade(copying, side, qty)
            if drops:
                await _consumed(database, copying, step)
                await venue.set_faults(drop_connections=True)  # while the copies are in flight
            await _followers_hold(database, copying, expected)
        await venue.clear_faults()
        await _all_live(copying)
        await _settled(database, copying)
        await _check_exactly_once(database, copying)
    finally:
        await engine.stop()


async def _consumed(database: Database, copying: Copying, step: int) -> None:
    async def planned() -> bool:
        counts = [len(await _intents(database, s)) for s in copying.subscriptions]
        return min(counts) >= step

    await eventually(planned, f"the copies of the provider's fill {step} to be planned")


async def _settled(database: Database, copying: Copying) -> None:
    async def done() -> bool:
        for subscription_id in copying.subscriptions:
            if any(i.status is not IntentStatus.FILLED for i in await _intents(database, subscription_id)):
                return False
        return True

    await eventually(done, "every copy intent to be settled as filled")


async def test_a_refused_copy_leaves_no_link_behind_to_block_the_next_one(
    make_links: LinksFactory, database: Database, bus: MemoryEventBus, venue: SimHarness
) -> None:
    copying = await _copying(make_links(), database, venue)
    engine = _engine(database, bus, copying.links)  # started once the copies are refused
    await _trade(copying, Side.BUY, "0.40")
    await _provider_fill(database, copying)
    await venue.set_faults(reject_next=len(FOLLOWERS))  # the venue refuses both copies
    await engine.scan_all()

    async def refused() -> bool:
        intents = [i for s in copying.subscriptions for i in await _intents(database, s)]
        return [i.status for i in intents] == [IntentStatus.REJECTED] * len(FOLLOWERS)

    await eventually(refused, "both copies to be refused")
    await engine.start()
    try:
        # The provider closes (nothing to copy) and opens again: a link left open holding nothing would
        # make this open a second open link, which the store refuses for every follower at once.
        await _trade(copying, Side.SELL, "0.40")
        await _trade(copying, Side.BUY, "0.20")
        await _followers_hold(database, copying, ("0.40", "-0.10"))
        await _trade(copying, Side.SELL, "0.20")
        await _followers_hold(database, copying, ("0", "0"))
        for subscription_id in copying.subscriptions:
            done = await _intents(database, subscription_id)
            assert [(i.action, i.status) for i in done] == [
                (IntentAction.OPEN, IntentStatus.REJECTED),
                (IntentAction.OPEN, IntentStatus.FILLED),
                (IntentAction.CLOSE, IntentStatus.FILLED),
            ], done
    finally:
        await engine.stop()


# --- a restart between consuming a fill and sending its copies -----------------------------------


async def _provider_fill(database: Database, copying: Copying) -> tuple[str, Fill]:
    found: list[tuple[str, Fill]] = []

    async def stored() -> bool:
        async with database.session() as session:
            found[:] = await FillRepository(session).list_since(copying.provider.id, copying.strategy.fill_cursor)
        return bool(found)

    await eventually(stored, "the provider's fill to be stored")
    assert len(found) == 1, found
    return found[0]


def _ticket(intent: CopyIntent) -> OrderTicket:
    return OrderTicket(symbol=intent.symbol, side=intent.side, qty=intent.qty, client_order_id=intent.client_order_id)


async def _forget_order(database: Database, intent: CopyIntent) -> None:
    """Remove the order row consume stored with the intent: what the outbox holds for a follower that
    was not connected when the signal was planned (its order is stored and sent by the replay)."""
    async with database.session() as session:
        orders = OrderRepository(session)
        order = await orders.get_by_client_order_id(intent.follower_account_id, intent.client_order_id)
        assert order is not None
        assert order.status is OrderStatus.PENDING_NEW, order
        await session.execute(delete(OrderRow).where(OrderRow.id == order.id))
        await session.commit()


CRASH_POINTS = ["consumed", "intent_without_order", "sent_not_recorded"]


@pytest.mark.parametrize("crash", CRASH_POINTS)
async def test_a_restart_sends_the_outbox_exactly_once(
    crash: str, make_links: LinksFactory, database: Database, bus: MemoryEventBus, venue: SimHarness
) -> None:
    copying = await _copying(make_links(), database, venue)
    first = _engine(database, bus, copying.links)  # never started: nothing dispatches on its own
    await _trade(copying, Side.BUY, "0.40")
    fill_id, fill = await _provider_fill(database, copying)
    intents = await first.consume(copying.strategy, fill_id, fill)  # consumed and in the outbox, not sent
    assert [i.action for i in intents] == [IntentAction.OPEN, IntentAction.OPEN]
    # Consume stored each copy's order (pending_new) with its intent; the crash came before sending.
    if crash == "intent_without_order":
        for intent in intents:
            await _forget_order(database, intent)
    elif crash == "sent_not_recorded":
        for intent in intents:  # the order reached the venue; the engine died before marking the intent sent
            async with database.session() as session:
                stored = await OrderRepository(session).get_by_client_order_id(
                    intent.follower_account_id, intent.client_order_id
                )
            assert stored is not None
            await send_stored(copying.links, stored)
    await first.stop()
    await copying.links.stop()

    # A new process: new links and a new engine on the same database.
    links = make_links()
    second = _engine(database, bus, links)
    await links.start()
    await second.start()
    try:
        restarted = msgspec.structs.replace(copying, links=links)
        await _all_live(restarted)
        await _followers_hold(database, restarted, ("0.80", "-0.20"))
        for _ in range(3):  # replaying again, even concurrently, sends nothing new
            await asyncio.gather(second.dispatch_pending(), second.dispatch_pending(), second.scan_all())
        await _trade(restarted, Side.SELL, "0.40")
        await _followers_hold(database, restarted, ("0", "0"))
        async with database.session() as session:
            signals = CopySignalRepository(session)
            assert await signals.get_by_provider_trade_id(copying.strategy.id, fill.trade_id) is not None
        for follower, subscription_id in zip(restarted.followers, restarted.subscriptions, strict=True):
            done = await _intents(database, subscription_id)
            assert [(i.action, i.status) for i in done] == [
                (IntentAction.OPEN, IntentStatus.FILLED),
                (IntentAction.CLOSE, IntentStatus.FILLED),
            ], done
            per_order: defaultdict[str | None, Decimal] = defaultdict(Decimal)
            for venue_fill in await _venue_fills(links, follower.id):
                per_order[venue_fill.client_order_id] += venue_fill.qty
            assert per_order == {i.client_order_id: i.qty for i in done}, "each copy filled exactly once"
    finally:
        await second.stop()


# --- outages ----------------------------------------------------------------------------------


async def test_a_fill_consumed_before_the_followers_reconnect_is_still_copied(
    make_links: LinksFactory, database: Database, bus: MemoryEventBus, venue: SimHarness
) -> None:
    """The followers' broker rules are in the store: the copies are planned and wait in the outbox
    until the followers are back (well within the stale window), then go out."""
    copying = await _copying(make_links(), database, venue)
    await _trade(copying, Side.BUY, "0.40")
    fill_id, fill = await _provider_fill(database, copying)
    await copying.links.stop()
    links = make_links()  # a restart: the links reconnect in the background, the engine scans at once
    engine = _engine(database, bus, links)
    await engine.consume(copying.strategy, fill_id, fill)
    await links.start()
    await engine.start()
    try:
        restarted = msgspec.structs.replace(copying, links=links)
        await _all_live(restarted)
        await _followers_hold(database, restarted, ("0.80", "-0.20"), attempts=100)
    finally:
        await engine.stop()


async def test_the_exposure_cap_counts_what_the_follower_already_holds(
    make_links: LinksFactory, database: Database, bus: MemoryEventBus, venue: SimHarness
) -> None:
    copying = await _copying(make_links(), database, venue)
    capped = CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=D(1), max_exposure_per_symbol=D(60_000))
    async with database.session() as session:
        await update_settings(
            session, user_id=copying.followers[0].user_id, subscription_id=copying.subscriptions[0],
            settings=capped, expected_version=None, now=SystemClock().now(),
        )  # fmt: skip
        await session.commit()
    engine = _engine(database, bus, copying.links)
    await engine.start()
    try:
        # EUR/USD is about 1.08: 0.40 lot is about 43,000 USD, within 60,000; another 0.40 would be 86,000.
        await _trade(copying, Side.BUY, "0.40")
        await _followers_hold(database, copying, ("0.40", "-0.20"))
        await _trade(copying, Side.BUY, "0.40")
        await _settled_count(database, copying.subscriptions[0], 2)
        copied = sum(i.qty for i in await _intents(database, copying.subscriptions[0]))

        async def synced() -> bool:
            return await _held(database, copying.followers[0].id) == copied

        await eventually(synced, "the follower's position to include every copy")
        async with database.session() as session:
            position = await PositionRepository(session).get(copying.followers[0].id, EURUSD)
        assert position is not None
        notional = position.qty * position.avg_price * 100_000
        assert notional <= 60_000, f"holds {position.qty} lots, {notional} USD"
    finally:
        await engine.stop()


async def _settled_count(database: Database, subscription_id: str, count: int) -> None:
    async def settled() -> bool:
        intents = await _intents(database, subscription_id)
        return len(intents) >= count and all(i.status is IntentStatus.FILLED for i in intents)

    await eventually(settled, f"{count} copies to be filled")


async def test_revoking_a_followers_link_cancels_its_queued_copies_unsent(
    make_links: LinksFactory, database: Database, bus: MemoryEventBus, venue: SimHarness
) -> None:
    """SECURITY 25: once a broker link is revoked, what the outbox holds for its account is
    cancelled, not sent; the other followers' copies go out as usual."""
    copying = await _copying(make_links(), database, venue)
    engine = _engine(database, bus, copying.links)  # not started: the copies wait in the outbox
    await _trade(copying, Side.BUY, "0.40")
    fill_id, fill = await _provider_fill(database, copying)
    await engine.consume(copying.strategy, fill_id, fill)
    revoked, kept = copying.followers
    await copying.links.unlink(revoked.user_id, revoked.connection_id)
    await engine.start()
    try:

        async def ended() -> bool:
            return all(i.status is IntentStatus.FAILED for i in await _intents(database, copying.subscriptions[0]))

        await eventually(ended, "the revoked follower's copy to be cancelled")
        [intent] = await _intents(database, copying.subscriptions[0])
        assert intent.attempts == 0
        assert intent.sent_at is None
        assert "revoked" in (intent.last_error or "")
        await _followers_hold(database, msgspec.structs.replace(copying, followers=[kept]), ("-0.20",))
    finally:
        await engine.stop()
