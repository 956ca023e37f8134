"""Copy signals (a provider fill is consumed once) and the intent outbox (unique client order ids,
the follower account pinned to the subscription's, oldest-first queues, forward-only status changes).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import msgspec
import pytest
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from brokerlink.domain.copy import CopyOrderType, IntentAction, IntentStatus
from brokerlink.domain.enums import Side
from brokerlink.store.models import CopySignalRow, OrderRow
from brokerlink.store.repositories.copy_intents import CopyIntentRepository
from brokerlink.store.repositories.copy_signals import CopySignalRepository
from brokerlink.store.repositories.orders import OrderRepository
from brokerlink.store.repositories.strategies import StrategyRepository
from brokerlink.store.repositories.subscriptions import SubscriptionRepository
from tests.store.copy_factories import intent, make_copying, signal, strategy, subscription
from tests.store.factories import NOW, make_account, make_order

LATER = NOW + timedelta(seconds=1)


async def test_signal_round_trip_with_exact_signed_decimals(session: AsyncSession) -> None:
    copying = await make_copying(session)
    repo = CopySignalRepository(session)
    sig = signal(
        copying.strategy,
        "T-1",
        qty=Decimal("0.00000001"),
        price=Decimal("65000.10"),
        provider_position_before=Decimal("-1.50000000"),
        provider_position_after=Decimal("-1.49999999"),
    )
    assert await repo.add_if_new(sig) is True
    session.expunge_all()
    stored = await repo.get_by_id(sig.id)
    assert stored == sig
    assert stored is not None
    # Digit for digit, scale included (equality alone would accept -1.5 for -1.50000000).
    assert [format(stored.qty, "f"), format(stored.provider_position_before, "f")] == ["0.00000001", "-1.50000000"]
    assert await repo.get_by_provider_trade_id(copying.strategy.id, "T-1") == sig
    assert await repo.get_by_provider_trade_id(copying.strategy.id, "T-2") is None


async def test_a_provider_fill_is_consumed_once(session: AsyncSession) -> None:
    copying = await make_copying(session)
    repo = CopySignalRepository(session)
    first = signal(copying.strategy, "T-1")
    assert await repo.add_if_new(first) is True
    assert await repo.add_if_new(first) is False
    # A redelivery (REST after stream) is a new object with a new id and perhaps other details:
    # still the same trade, and the first delivery stands.
    assert await repo.add_if_new(signal(copying.strategy, "T-1", qty=Decimal(9))) is False
    assert (await repo.list_for_strategy(copying.strategy.id)).items == [first]

    # The same trade id is a separate signal for another strategy backed by the same account.
    twin = strategy(copying.provider)
    await StrategyRepository(session).add(twin)
    assert await repo.add_if_new(signal(twin, "T-1")) is True


async def test_concurrent_deliveries_consume_one_signal(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        copying = await make_copying(session)
        await session.commit()

    async def deliver() -> bool:
        async with sessions() as session:
            stored = await CopySignalRepository(session).add_if_new(signal(copying.strategy, "T-race"))
            await session.commit()
            return stored

    results = await asyncio.gather(*(deliver() for _ in range(6)))
    assert sorted(results) == [False] * 5 + [True]


async def test_signal_must_come_from_the_strategys_account(session: AsyncSession) -> None:
    copying = await make_copying(session)
    with pytest.raises(IntegrityError):
        await CopySignalRepository(session).add_if_new(
            signal(copying.strategy, provider_account_id=copying.follower.id)
        )


async def test_intent_round_trip_with_exact_decimals(session: AsyncSession) -> None:
    copying = await make_copying(session)
    sig = signal(copying.strategy)
    await CopySignalRepository(session).add_if_new(sig)
    repo = CopyIntentRepository(session)
    cpi = intent(
        copying.subscription,
        sig.id,
        "cp-1",
        action=IntentAction.REDUCE,
        side=Side.SELL,
        qty=Decimal("0.070"),
        order_type=CopyOrderType.LIMIT,
        limit_price=Decimal("1.08450"),
    )
    await repo.add(cpi)
    session.expunge_all()
    stored = await repo.get_by_id(cpi.id)
    assert stored == cpi
    assert stored is not None
    assert (str(stored.qty), str(stored.limit_price), stored.status, stored.attempts) == (
        "0.070",
        "1.08450",
        IntentStatus.PENDING,
        0,
    )
    assert await repo.get_by_client_order_id(copying.follower.id, "cp-1") == cpi
    assert await repo.get_by_client_order_id(copying.provider.id, "cp-1") is None


async def test_intents_without_a_provider_execution(session: AsyncSession) -> None:
    # Copying the provider's open positions at subscription time, or closing copies on stop.
    copying = await make_copying(session)
    cpi = intent(copying.subscription, None)
    await CopyIntentRepository(session).add(cpi)
    assert await CopyIntentRepository(session).get_by_id(cpi.id) == cpi


async def test_client_order_id_is_unique_per_follower_account(session: AsyncSession) -> None:
    copying = await make_copying(session)
    other = await make_copying(session)
    repo = CopyIntentRepository(session)
    await repo.add(intent(copying.subscription, None, "cp-same"))
    await repo.add(intent(other.subscription, None, "cp-same"))  # another follower account
    with pytest.raises(IntegrityError):
        await repo.add(intent(copying.subscription, None, "cp-same"))


async def test_client_order_id_is_unique_across_subscriptions_of_one_account(session: AsyncSession) -> None:
    copying = await make_copying(session)
    second_strategy = strategy(copying.provider)
    await StrategyRepository(session).add(second_strategy)
    second = subscription(second_strategy, copying.follower)
    await SubscriptionRepository(session).add(second)
    repo = CopyIntentRepository(session)
    await repo.add(intent(copying.subscription, None, "cp-same"))
    with pytest.raises(IntegrityError):
        await repo.add(intent(second, None, "cp-same"))


async def test_intent_must_target_its_subscriptions_account(session: AsyncSession) -> None:
    copying = await make_copying(session)
    elsewhere = await make_account(session, user_id=copying.follower.user_id)
    with pytest.raises(IntegrityError):
        await CopyIntentRepository(session).add(intent(copying.subscription, None, follower_account_id=elsewhere.id))


async def test_add_many_is_all_or_nothing(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        copying = await make_copying(session)
        await session.commit()
    batch = [intent(copying.subscription, None, f"cp-{i}") for i in range(5)]
    async with sessions() as session:
        repo = CopyIntentRepository(session)
        await repo.add_many(batch)
        await repo.add_many([])
        await session.commit()
        assert await repo.list_pending() == sorted(batch, key=lambda i: i.id)
    async with sessions() as session:
        with pytest.raises(IntegrityError):
            await CopyIntentRepository(session).add_many(
                [intent(copying.subscription, None, "cp-new"), intent(copying.subscription, None, "cp-2")]
            )
        await session.rollback()
    async with sessions() as session:
        assert await CopyIntentRepository(session).get_by_client_order_id(copying.follower.id, "cp-new") is None


async def test_pending_and_sent_queues_are_oldest_first(session: AsyncSession) -> None:
    copying = await make_copying(session)
    repo = CopyIntentRepository(session)
    intents = [intent(copying.subscription, None) for _ in range(5)]
    await repo.add_many(intents)
    oldest_first = sorted(intents, key=lambda i: i.id)

    assert await repo.list_pending(limit=2) == oldest_first[:2]
    assert await repo.mark_sent(oldest_first[0].id, now=NOW)
    assert await repo.mark_sent(oldest_first[1].id, now=LATER)
    assert [i.id for i in await repo.list_pending()] == [i.id for i in oldest_first[2:]]
    assert [i.id for i in await repo.list_sent()] == [i.id for i in oldest_first[:2]]
    # Only what was sent before a moment: the rest may still be answered.
    assert [i.id for i in await repo.list_sent(sent_before=LATER)] == [oldest_first[0].id]
    with pytest.raises(ValueError, match="limit"):
        await repo.list_pending(limit=0)


async def test_status_moves_forward_only(session: AsyncSession) -> None:
    copying = await make_copying(session)
    account = copying.follower
    order = make_order(account.id, "cp-1")
    await OrderRepository(session).add(order)
    repo = CopyIntentRepository(session)
    cpi = intent(copying.subscription, None, "cp-1")
    await repo.add(cpi)

    assert await repo.mark_sent(cpi.id, now=NOW, order_id=order.id, engine_us=412)
    assert await repo.mark_sent(cpi.id, now=LATER)  # a replay sends again under the same id
    assert await repo.mark_acknowledged(cpi.id, now=LATER, broker_us=1850)
    assert not await repo.mark_acknowledged(cpi.id, now=LATER)  # a duplicate report changes nothing
    assert not await repo.mark_sent(cpi.id, now=LATER)  # nor does a stale send
    assert await repo.mark_filled(cpi.id, now=LATER, slippage_bps=Decimal("-1.25"))
    assert not await repo.mark_rejected(cpi.id, reason="late", now=LATER)
    assert not await repo.mark_failed(cpi.id, error="late", now=LATER)

    stored = await repo.get_by_id(cpi.id)
    expected = msgspec.structs.replace(
        cpi,
        status=IntentStatus.FILLED,
        order_id=order.id,  # not erased by the reports that did not carry it
        attempts=2,
        sent_at=LATER,
        acked_at=LATER,
        engine_us=412,
        broker_us=1850,
        slippage_bps=Decimal("-1.25"),
        updated_at=LATER,
    )
    assert stored == expected
    assert not await repo.mark_sent("cpi_01ARZ3NDEKTSV4RRFFQ69G5FAV", now=NOW)


async def test_outcomes_and_retries(session: AsyncSession) -> None:
    copying = await make_copying(session)
    repo = CopyIntentRepository(session)
    fill_first, rejected, requeued, canceled = (intent(copying.subscription, None) for _ in range(4))
    await repo.add_many([fill_first, rejected, requeued, canceled])

    # The engine died after sending and before recording it: the venue's fill still lands.
    assert await repo.mark_filled(fill_first.id, now=LATER)
    assert await repo.mark_rejected(rejected.id, reason="insufficient margin", now=LATER)
    assert not await repo.requeue(requeued.id, error="never sent", now=LATER)  # only a sent intent goes back
    assert await repo.mark_sent(requeued.id, now=NOW)
    assert await repo.requeue(requeued.id, error="connection refused", now=LATER)
    assert await repo.mark_sent(canceled.id, now=NOW)
    assert await repo.mark_canceled(canceled.id, now=LATER, reason="ioc remainder")
    assert await repo.mark_filled(canceled.id, now=LATER)  # late fills may still complete it

    by_id = {i.id: i for i in (await repo.list_for_subscription(copying.subscription.id)).items}
    assert by_id[fill_first.id].status is IntentStatus.FILLED
    assert by_id[fill_first.id].acked_at is None
    assert (by_id[rejected.id].status, by_id[rejected.id].last_error) == (IntentStatus.REJECTED, "insufficient margin")
    assert (by_id[requeued.id].status, by_id[requeued.id].attempts) == (IntentStatus.PENDING, 1)
    assert by_id[requeued.id].last_error == "connection refused"
    assert by_id[canceled.id].status is IntentStatus.FILLED
    assert [i.id for i in await repo.list_pending()] == [requeued.id]


async def test_intent_pages_and_purged_orders(session: AsyncSession) -> None:
    copying = await make_copying(session)
    repo = CopyIntentRepository(session)
    order = make_order(copying.follower.id)
    await OrderRepository(session).add(order)
    intents = sorted((intent(copying.subscription, None) for _ in range(5)), key=lambda i: i.id)
    await repo.add_many(intents)
    assert await repo.mark_sent(intents[0].id, now=NOW, order_id=order.id)

    newest = await repo.list_for_subscription(copying.subscription.id, limit=3, descending=True)
    assert [i.id for i in newest.items] == [i.id for i in intents[::-1][:3]]
    rest = await repo.list_for_subscription(copying.subscription.id, limit=3, after=newest.next_after, descending=True)
    assert [i.id for i in rest.items] == [i.id for i in intents[::-1][3:]]
    assert rest.next_after is None

    # The intent outlives a purged order row, like a fill does.
    await session.execute(delete(OrderRow).where(OrderRow.id == order.id))
    stored = await repo.get_by_id(intents[0].id)
    assert stored is not None
    assert (stored.order_id, stored.status) == (None, IntentStatus.SENT)


async def test_an_intent_outlives_a_purged_signal(session: AsyncSession) -> None:
    copying = await make_copying(session)
    sig = signal(copying.strategy)
    await CopySignalRepository(session).add_if_new(sig)
    cpi = intent(copying.subscription, sig.id)
    await CopyIntentRepository(session).add(cpi)
    await session.execute(delete(CopySignalRow).where(CopySignalRow.id == sig.id))
    assert await CopyIntentRepository(session).get_by_id(cpi.id) == msgspec.structs.replace(cpi, signal_id=None)
