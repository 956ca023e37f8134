"""Copy links (one open link per subscription and provider symbol, quantities never negative) and
copy events (newest-first pages, counts by reason).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import msgspec
import pytest
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from brokerlink.domain.copy import CopyEventKind, LinkStatus
from brokerlink.domain.enums import Side
from brokerlink.store.models import CopyIntentRow
from brokerlink.store.repositories.copy_events import CopyEventRepository
from brokerlink.store.repositories.copy_intents import CopyIntentRepository
from brokerlink.store.repositories.copy_links import CopyLinkRepository
from brokerlink.store.repositories.subscriptions import SubscriptionRepository
from tests.store.copy_factories import event, intent, link, make_copying, subscription
from tests.store.factories import NOW, make_account

LATER = NOW + timedelta(minutes=1)


async def test_link_round_trip_and_quantity_changes(session: AsyncSession) -> None:
    copying = await make_copying(session)
    repo = CopyLinkRepository(session)
    lnk = link(copying.subscription, side=Side.SELL, qty=Decimal("0.150"))
    await repo.add(lnk)
    session.expunge_all()
    assert await repo.get_by_id(lnk.id) == lnk
    assert await repo.get_open(copying.subscription.id, "EUR/USD") == lnk
    assert await repo.get_open(copying.subscription.id, "GBP/USD") is None

    assert await repo.set_qty(lnk.id, Decimal("0.075"), now=LATER)
    with pytest.raises(ValueError, match="zero or more"):
        await repo.set_qty(lnk.id, Decimal("-0.01"), now=LATER)
    assert await repo.set_qty(lnk.id, Decimal("0.000"), now=LATER)
    assert await repo.close(lnk.id, now=LATER)
    assert not await repo.close(lnk.id, now=LATER)  # already closed
    assert not await repo.set_qty(lnk.id, Decimal(1), now=LATER)  # a closed link holds what it held

    closed = await repo.get_by_id(lnk.id)
    assert closed == msgspec.structs.replace(
        lnk, qty=Decimal("0.000"), status=LinkStatus.CLOSED, closed_at=LATER, updated_at=LATER
    )
    assert closed is not None
    assert format(closed.qty, "f") == "0.000"
    assert await repo.get_open(copying.subscription.id, "EUR/USD") is None
    with pytest.raises(ValueError, match="zero or more"):
        await repo.add(link(copying.subscription, qty=Decimal(-1)))


async def test_one_open_link_per_subscription_and_provider_symbol(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        copying = await make_copying(session)
        first = link(copying.subscription)
        await CopyLinkRepository(session).add(first)
        await CopyLinkRepository(session).add(link(copying.subscription, "GBP/USD"))  # another symbol
        await session.commit()
    async with sessions() as session:
        with pytest.raises(IntegrityError):
            await CopyLinkRepository(session).add(link(copying.subscription))
        await session.rollback()
    async with sessions() as session:
        repo = CopyLinkRepository(session)
        assert await repo.close(first.id, now=LATER)
        reopened = link(copying.subscription)
        await repo.add(reopened)  # closed links are history; a new one may open
        assert await repo.close(reopened.id, now=LATER)
        await repo.add(link(copying.subscription))  # several closed ones are fine
        await session.commit()
        page = await repo.list_for_subscription(copying.subscription.id)
        assert [lnk.status for lnk in page.items].count(LinkStatus.OPEN) == 2
        assert len(page.items) == 4


async def test_open_links_across_a_strategys_followers(session: AsyncSession) -> None:
    copying = await make_copying(session)
    other_follower = await make_account(session)
    second = subscription(copying.strategy, other_follower)
    await SubscriptionRepository(session).add(second)
    unrelated = await make_copying(session)
    repo = CopyLinkRepository(session)
    ours = [link(copying.subscription), link(second)]
    await repo.add_many([*ours, link(copying.subscription, "GBP/USD"), link(unrelated.subscription)])
    closed = link(second, "USD/JPY")
    await repo.add(closed)
    await repo.close(closed.id, now=LATER)

    assert await repo.list_open_for_strategy(copying.strategy.id, "EUR/USD") == sorted(ours, key=lambda lnk: lnk.id)
    assert await repo.list_open_for_strategy(copying.strategy.id, "USD/JPY") == []
    assert [lnk.provider_symbol for lnk in await repo.list_open_for_subscription(copying.subscription.id)] == [
        "EUR/USD",
        "GBP/USD",
    ]


async def test_events_newest_first_in_pages(session: AsyncSession) -> None:
    copying = await make_copying(session)
    other = await make_copying(session)
    repo = CopyEventRepository(session)
    events = [event(copying.subscription, created_at=NOW + timedelta(seconds=i)) for i in range(5)]
    await repo.add_many(events)
    await repo.add(event(other.subscription))
    newest_first = sorted(events, key=lambda e: e.id, reverse=True)

    first = await repo.list_for_subscription(copying.subscription.id, limit=2)
    second = await repo.list_for_subscription(copying.subscription.id, limit=2, after=first.next_after)
    third = await repo.list_for_subscription(copying.subscription.id, limit=2, after=second.next_after)
    assert [*first.items, *second.items, *third.items] == newest_first
    assert third.next_after is None
    oldest = await repo.list_for_subscription(copying.subscription.id, limit=5, descending=False)
    assert list(oldest.items) == newest_first[::-1]


async def test_count_by_reason(session: AsyncSession) -> None:
    copying = await make_copying(session)
    repo = CopyEventRepository(session)
    sub = copying.subscription
    await repo.add_many(
        [
            event(sub, reason="below_min_qty"),
            event(sub, reason="below_min_qty", created_at=LATER),
            event(sub, reason="slippage", created_at=LATER),
            event(sub, CopyEventKind.REJECTED, reason="insufficient_margin", created_at=LATER),
            event(sub, CopyEventKind.COPIED),  # no reason: not counted
        ]
    )
    assert await repo.count_by_reason(sub.id) == {"below_min_qty": 2, "slippage": 1, "insufficient_margin": 1}
    assert await repo.count_by_reason(sub.id, kind=CopyEventKind.SKIPPED) == {"below_min_qty": 2, "slippage": 1}
    assert await repo.count_by_reason(sub.id, kind=CopyEventKind.SKIPPED, since=LATER) == {
        "below_min_qty": 1,
        "slippage": 1,
    }
    assert await repo.count_by_reason(sub.id, kind=CopyEventKind.STALLED) == {}


async def test_an_event_outlives_the_intent_it_mentions(session: AsyncSession) -> None:
    copying = await make_copying(session)
    cpi = intent(copying.subscription, None)
    await CopyIntentRepository(session).add(cpi)
    rejected = event(copying.subscription, CopyEventKind.REJECTED, reason="market_closed", intent_id=cpi.id)
    repo = CopyEventRepository(session)
    await repo.add(rejected)
    await session.execute(delete(CopyIntentRow).where(CopyIntentRow.id == cpi.id))
    page = await repo.list_for_subscription(copying.subscription.id)
    assert page.items == [msgspec.structs.replace(rejected, intent_id=None)]


async def test_database_refuses_an_unknown_event_kind(session: AsyncSession) -> None:
    copying = await make_copying(session)
    with pytest.raises(IntegrityError):
        # Bypass the struct (which would refuse it first) to prove the CHECK constraint.
        await CopyEventRepository(session).add(msgspec.structs.replace(event(copying.subscription), kind="lost"))
