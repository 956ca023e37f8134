"""Orders (idempotency key, updates, owner scoping, cursor pages) and fills (deduplication)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import msgspec
import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from brokerlink.domain.enums import OrderStatus, Side
from brokerlink.kit.errors import NotFound
from brokerlink.store.models import OrderRow
from brokerlink.store.repositories.fills import FillRepository
from brokerlink.store.repositories.orders import OrderRepository
from tests.store.factories import NOW, make_account, make_fill, make_order, make_user


async def test_order_round_trip(session: AsyncSession) -> None:
    account = await make_account(session)
    repo = OrderRepository(session)
    order = make_order(account.id, "cid-1", stop_price=Decimal("1.07000"), venue_order_id=None)
    await repo.add(order)
    session.expunge_all()  # read from the database, not the identity map
    assert await repo.get_by_id(order.id) == order
    assert await repo.get_by_client_order_id(account.id, "cid-1") == order
    assert await repo.get_by_client_order_id(account.id, "cid-2") is None
    assert await repo.get_by_id("ord_01ARZ3NDEKTSV4RRFFQ69G5FAV") is None


async def test_update_stores_the_new_state(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        account = await make_account(session)
        order = make_order(account.id)
        await OrderRepository(session).add(order)
        filled = msgspec.structs.replace(
            order,
            status=OrderStatus.PARTIALLY_FILLED,
            venue_order_id="V-42",
            filled_qty=Decimal(50000),
            avg_fill_price=Decimal("1.08501"),
            updated_at=NOW + timedelta(seconds=2),
        )
        await OrderRepository(session).update(filled)
        await session.commit()
    async with sessions() as session:
        repo = OrderRepository(session)
        assert await repo.get_by_id(order.id) == filled
        assert await repo.get_by_venue_order_id(account.id, "V-42") == filled
        rejected = msgspec.structs.replace(filled, status=OrderStatus.REJECTED, reject_reason="market closed")
        await repo.update(rejected)
        assert (await repo.get_by_id(order.id)) == rejected


async def test_update_refuses_unknown_orders_and_identity_changes(session: AsyncSession) -> None:
    account = await make_account(session)
    repo = OrderRepository(session)
    order = make_order(account.id)
    with pytest.raises(NotFound):
        await repo.update(order)
    await repo.add(order)
    with pytest.raises(ValueError, match="never change"):
        await repo.update(msgspec.structs.replace(order, side=Side.SELL))
    with pytest.raises(ValueError, match="never change"):
        await repo.update(msgspec.structs.replace(order, client_order_id="other"))


async def test_orders_are_owner_scoped(session: AsyncSession) -> None:
    alice_account = await make_account(session)
    bob = await make_user(session)
    bob_account = await make_account(session, user_id=bob.id)
    repo = OrderRepository(session)
    alice_order, bob_order = make_order(alice_account.id), make_order(bob_account.id)
    await repo.add(alice_order)
    await repo.add(bob_order)

    assert await repo.get_for_user(alice_account.user_id, alice_order.id) == alice_order
    assert await repo.get_for_user(bob.id, alice_order.id) is None
    assert await repo.get_for_user(bob.id, bob_order.id) == bob_order

    assert (await repo.list_for_user(bob.id)).items == [bob_order]
    # Bob naming Alice's account gets nothing, not her orders.
    assert (await repo.list_for_user(bob.id, account_id=alice_account.id)).items == []


async def test_client_order_id_is_unique_per_account(session: AsyncSession) -> None:
    user = await make_user(session)
    first, second = await make_account(session, user.id), await make_account(session, user.id)
    repo = OrderRepository(session)
    await repo.add(make_order(first.id, "same"))
    await repo.add(make_order(second.id, "same"))  # fine in another account
    with pytest.raises(IntegrityError):
        await repo.add(make_order(first.id, "same"))


async def test_database_refuses_an_unknown_status(session: AsyncSession) -> None:
    account = await make_account(session)
    order = make_order(account.id)
    await OrderRepository(session).add(order)
    row = await session.get(OrderRow, order.id)
    assert row is not None
    row.status = "lost"
    with pytest.raises(IntegrityError):
        await session.flush()


async def test_cursor_pagination(session: AsyncSession) -> None:
    account = await make_account(session)
    repo = OrderRepository(session)
    orders = [make_order(account.id) for _ in range(7)]
    for order in orders:
        await repo.add(order)
    expected = sorted(orders, key=lambda o: o.id)

    seen, after, pages = [], None, 0
    while True:
        page = await repo.list_for_account(account.id, limit=3, after=after)
        seen.extend(page.items)
        pages += 1
        if page.next_after is None:
            break
        after = page.next_after
    assert seen == expected
    assert pages == 3

    newest = await repo.list_for_account(account.id, limit=4, descending=True)
    assert list(newest.items) == expected[::-1][:4]
    rest = await repo.list_for_account(account.id, limit=4, after=newest.next_after, descending=True)
    assert list(rest.items) == expected[::-1][4:]
    assert rest.next_after is None

    exact = await repo.list_for_account(account.id, limit=7)
    assert exact.next_after is None  # no empty extra page when the count divides evenly

    with pytest.raises(ValueError, match="limit"):
        await repo.list_for_account(account.id, limit=0)
    with pytest.raises(ValueError, match="limit"):
        await repo.list_for_account(account.id, limit=501)


async def test_list_open(session: AsyncSession) -> None:
    account = await make_account(session)
    repo = OrderRepository(session)
    working = make_order(account.id, status=OrderStatus.NEW)
    done = make_order(account.id, status=OrderStatus.FILLED)
    canceling = make_order(account.id, status=OrderStatus.PENDING_CANCEL)
    for order in (working, done, canceling):
        await repo.add(order)
    assert {o.id for o in await repo.list_open(account.id)} == {working.id, canceling.id}


async def test_fill_is_stored_once(session: AsyncSession) -> None:
    account = await make_account(session)
    order = make_order(account.id)
    await OrderRepository(session).add(order)
    repo = FillRepository(session)
    fill = make_fill(account.id, "T-1", order_id=order.id, client_order_id=order.client_order_id)

    assert await repo.add_if_new(fill) is True
    assert await repo.add_if_new(fill) is False
    # A redelivery with different details is still the same trade: the first one stands.
    assert await repo.add_if_new(msgspec.structs.replace(fill, qty=Decimal(1))) is False
    assert await repo.get_by_trade_id(account.id, "T-1") == fill
    assert await repo.list_for_order(order.id) == [fill]


async def test_same_trade_id_in_another_account_is_another_fill(session: AsyncSession) -> None:
    user = await make_user(session)
    first, second = await make_account(session, user.id), await make_account(session, user.id)
    repo = FillRepository(session)
    assert await repo.add_if_new(make_fill(first.id, "T-1"))
    assert await repo.add_if_new(make_fill(second.id, "T-1"))


async def test_concurrent_deliveries_store_one_fill(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        account = await make_account(session)
        await session.commit()
    fill = make_fill(account.id, "T-race")

    async def deliver() -> bool:
        async with sessions() as session:
            stored = await FillRepository(session).add_if_new(fill)
            await session.commit()
            return stored

    results = await asyncio.gather(*(deliver() for _ in range(6)))
    assert sorted(results) == [False] * 5 + [True]
    async with sessions() as session:
        page = await FillRepository(session).list_for_account(account.id)
    assert page.items == [fill]


async def test_fills_outlive_a_deleted_order(session: AsyncSession) -> None:
    account = await make_account(session)
    order = make_order(account.id)
    await OrderRepository(session).add(order)
    fill = make_fill(account.id, "T-9", order_id=order.id, client_order_id=order.client_order_id)
    await FillRepository(session).add_if_new(fill)
    row = await session.get(OrderRow, order.id)
    await session.delete(row)
    await session.flush()
    session.expunge_all()
    kept = await FillRepository(session).get_by_trade_id(account.id, "T-9")
    assert kept == msgspec.structs.replace(fill, order_id=None)


async def test_fill_must_reference_a_known_order(session: AsyncSession) -> None:
    account = await make_account(session)
    with pytest.raises(IntegrityError):
        await FillRepository(session).add_if_new(make_fill(account.id, order_id="ord_01ARZ3NDEKTSV4RRFFQ69G5FAV"))


async def test_fill_pages(session: AsyncSession) -> None:
    account = await make_account(session)
    repo = FillRepository(session)
    fills = [make_fill(account.id, f"T-{i}") for i in range(5)]
    for fill in fills:
        await repo.add_if_new(fill)
    first = await repo.list_for_account(account.id, limit=2)
    second = await repo.list_for_account(account.id, limit=2, after=first.next_after)
    third = await repo.list_for_account(account.id, limit=2, after=second.next_after)
    # Fill rows are ordered by their ids; ULIDs from the same millisecond have no set order, so
    # compare as sets: every fill exactly once across the pages.
    seen = [f.trade_id for f in (*first.items, *second.items, *third.items)]
    assert sorted(seen) == sorted(f.trade_id for f in fills)
    assert third.next_after is None
