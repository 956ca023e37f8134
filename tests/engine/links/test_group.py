"""Group commit of broker events (``GroupIngest``): shared transactions, failures isolated, clean stop."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.enums import AccountMode, OrderStatus, OrderType, Side, TimeInForce
from brokerlink.domain.events import AccountUpdated, DomainEvent, OrderRejected
from brokerlink.domain.models import Account, Balance, Order
from brokerlink.engine.links.group import GroupIngest
from brokerlink.engine.links.ingest import ACCOUNT_TOPIC, Outcome
from brokerlink.kit.clock import SystemClock
from brokerlink.kit.ids import new_id
from brokerlink.store.db import Database
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.connections import ConnectionRepository
from brokerlink.store.repositories.events import EventRepository
from brokerlink.store.repositories.orders import OrderRepository
from brokerlink.store.repositories.positions import BalanceRepository
from tests.test_observe import sample

CLOCK = SystemClock()


async def _accounts(database: Database, user_id: str, count: int) -> list[str]:
    now = CLOCK.now()
    ids: list[str] = []
    async with database.session() as session:
        for n in range(count):
            connection = await ConnectionRepository(session).create(
                user_id=user_id, broker="sim", label=f"c{n}", now=now
            )
            account = Account(
                id=new_id("acc"), user_id=user_id, connection_id=connection.id, venue_account_id=f"SIM-{n}",
                name=f"A{n}", currency="USD", mode=AccountMode.NETTING,
            )  # fmt: skip
            await AccountRepository(session).add(account, now=now)
            ids.append(account.id)
        await session.commit()
    return ids


def _balance(account_id: str, cash: str) -> AccountUpdated:
    now = CLOCK.now()
    balance = Balance(account_id=account_id, currency="USD", cash=Decimal(cash), equity=Decimal(cash),
                      buying_power=Decimal(cash), ts=now)  # fmt: skip
    return AccountUpdated(account_id=account_id, ts=now, balance=balance)


async def _cash(database: Database, account_id: str) -> Decimal | None:
    async with database.session() as session:
        balances = await BalanceRepository(session).list_for_account(account_id)
    return balances[0].cash if balances else None


async def _logged(database: Database) -> list[str]:
    async with database.session() as session:
        return [record.key for record in await EventRepository(session).read_since(0, 500, topic=ACCOUNT_TOPIC)]


async def test_events_queued_together_share_one_transaction(database: Database, user_id: str) -> None:
    accounts = await _accounts(database, user_id, 5)
    group = GroupIngest(database, CLOCK, grouped=True)
    try:
        outcomes = await asyncio.gather(*(group.apply("sim", _balance(a, f"{n}00")) for n, a in enumerate(accounts)))
    finally:
        await group.stop()
    assert outcomes == [Outcome.APPLIED] * 5
    assert group.transactions == 1
    assert [await _cash(database, a) for a in accounts] == [Decimal(f"{n}00") for n in range(5)]
    assert await _logged(database) == accounts  # every event with its log record, in arrival order


async def test_ungrouped_gives_every_event_its_own_transaction(database: Database, user_id: str) -> None:
    accounts = await _accounts(database, user_id, 3)
    group = GroupIngest(database, CLOCK, grouped=False)  # PostgreSQL's way
    await asyncio.gather(*(group.apply("sim", _balance(a, "1")) for a in accounts))
    assert group.transactions == 3
    assert sorted(await _logged(database)) == sorted(accounts)  # concurrent transactions: any order


async def test_a_failing_event_fails_only_its_caller(database: Database, user_id: str) -> None:
    good, other = await _accounts(database, user_id, 2)
    group = GroupIngest(database, CLOCK, grouped=True)
    try:
        results = await asyncio.gather(
            group.apply("sim", _balance(good, "10")),
            group.apply("sim", _balance("acc_missing", "20")),  # no such account: the foreign key refuses it
            group.apply("sim", _balance(other, "30")),
            return_exceptions=True,
        )
    finally:
        await group.stop()
    assert results[0] == results[2] == Outcome.APPLIED
    assert isinstance(results[1], IntegrityError)
    # The shared attempt was rolled back whole; then each event alone: the two good ones committed.
    assert group.transactions == 2
    assert (await _cash(database, good), await _cash(database, other)) == (Decimal(10), Decimal(30))
    assert await _logged(database) == [good, other]


async def test_metrics_count_only_what_was_committed(database: Database, user_id: str) -> None:
    """An order's outcome is counted once, by the commit that stored it, not by an attempt rolled back."""
    (account,) = await _accounts(database, user_id, 1)
    now = CLOCK.now()
    order = Order(
        id=new_id("ord"), client_order_id="grp-1", account_id=account, symbol="EUR/USD", side=Side.BUY,
        qty=Decimal("0.10"), type=OrderType.MARKET, tif=TimeInForce.GTC, status=OrderStatus.PENDING_NEW,
        created_at=now, updated_at=now,
    )  # fmt: skip
    async with database.session() as session:
        await OrderRepository(session).add(order)
        await session.commit()
    rejected = OrderRejected(account_id=account, ts=now, client_order_id="grp-1", reason="no")
    before = sample("brokerlink_order_outcomes_total", broker="grp", status="rejected", source="user")
    group = GroupIngest(database, CLOCK, grouped=True)
    try:
        results = await asyncio.gather(
            group.apply("grp", rejected), group.apply("grp", _balance("acc_missing", "1")), return_exceptions=True
        )
    finally:
        await group.stop()
    assert results[0] == Outcome.APPLIED
    assert isinstance(results[1], IntegrityError)
    after = sample("brokerlink_order_outcomes_total", broker="grp", status="rejected", source="user")
    assert after == before + 1  # the rejection was ingested twice (shared attempt, then alone), counted once


async def test_stop_cancels_what_is_queued_and_later_events_commit_alone(database: Database, user_id: str) -> None:
    first, second, third = await _accounts(database, user_id, 3)
    group = GroupIngest(database, CLOCK, grouped=True)
    inside = asyncio.Event()

    async def stuck(_session: AsyncSession) -> None:  # an audit hook that never returns
        inside.set()
        await asyncio.Event().wait()

    callers = [asyncio.create_task(group.apply("sim", _balance(first, "1"), stuck))]
    await inside.wait()  # the first batch is in its transaction
    callers += [asyncio.create_task(group.apply("sim", _balance(a, "2"))) for a in (second, third)]
    await asyncio.sleep(0)  # queued behind it
    await group.stop()
    for caller in callers:
        with pytest.raises(asyncio.CancelledError):
            await caller
    assert await _logged(database) == []  # the batch in flight was rolled back, the queue never ran
    assert await group.apply("sim", _balance(second, "3")) == Outcome.APPLIED
    assert group.transactions == 1
    assert await _cash(database, second) == Decimal(3)


async def test_events_keep_their_order_across_batches(database: Database, user_id: str) -> None:
    """An account's later balance wins even when its events land in different batches."""
    (account,) = await _accounts(database, user_id, 1)
    group = GroupIngest(database, CLOCK, grouped=True, max_batch=2)
    events: list[DomainEvent] = [_balance(account, str(n)) for n in range(1, 8)]
    try:
        await asyncio.gather(*(group.apply("sim", event) for event in events))
    finally:
        await group.stop()
    assert group.transactions == 4  # 7 events, 2 a batch
    assert await _cash(database, account) == Decimal(7)
