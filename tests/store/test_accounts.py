"""Broker connections and accounts: owner scoping, uniqueness, cascades."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from brokerlink.domain.enums import AccountMode, ConnectionState
from brokerlink.domain.models import Account, Balance, Position
from brokerlink.kit.ids import is_id, new_id
from brokerlink.store.models import AccountRow, BalanceRow, BrokerConnectionRow, PositionRow, UserRow
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.connections import ConnectionRepository
from brokerlink.store.repositories.orders import OrderRepository
from brokerlink.store.repositories.positions import BalanceRepository, PositionRepository
from tests.store.factories import NOW, make_account, make_connection, make_order, make_user


async def test_connection_crud_and_owner_scoping(session: AsyncSession) -> None:
    alice, bob = await make_user(session), await make_user(session)
    repo = ConnectionRepository(session)
    conn = await repo.create(user_id=alice.id, broker="sim", label="Paper", now=NOW)
    assert is_id(conn.id, "con")
    assert (conn.status, conn.credentials_ref) == ("disconnected", None)

    assert await repo.get_for_user(alice.id, conn.id) is conn
    assert await repo.get_for_user(bob.id, conn.id) is None
    assert await repo.get_by_id(conn.id) is conn
    assert [c.id for c in await repo.list_for_user(alice.id)] == [conn.id]
    assert await repo.list_for_user(bob.id) == []

    assert await repo.set_status(conn.id, ConnectionState.CONNECTED, now=NOW)
    assert await repo.set_credentials_ref(conn.id, "vault:key/1", now=NOW)
    assert (conn.status, conn.credentials_ref) == ("connected", "vault:key/1")
    assert [c.id for c in await repo.list_by_status(ConnectionState.CONNECTED)] == [conn.id]
    assert await repo.list_by_status(ConnectionState.REVOKED) == []

    assert not await repo.rename(bob.id, conn.id, "Mine now", now=NOW)
    assert await repo.rename(alice.id, conn.id, "Renamed", now=NOW)
    assert not await repo.delete_for_user(bob.id, conn.id)
    assert await repo.delete_for_user(alice.id, conn.id)
    assert await repo.get_by_id(conn.id) is None


async def test_connection_label_is_unique_per_user(session: AsyncSession) -> None:
    alice, bob = await make_user(session), await make_user(session)
    await make_connection(session, alice.id, "Main")
    await make_connection(session, bob.id, "Main")  # another user may reuse the label
    with pytest.raises(IntegrityError):
        await make_connection(session, alice.id, "Main")


async def test_account_crud_and_owner_scoping(session: AsyncSession) -> None:
    alice, bob = await make_user(session), await make_user(session)
    conn = await make_connection(session, alice.id, "Paper")
    repo = AccountRepository(session)
    account = Account(
        id=new_id("acc"),
        user_id=alice.id,
        connection_id=conn.id,
        venue_account_id="SIM-001",
        name="Main",
        currency="USD",
        mode=AccountMode.HEDGING,
    )
    await repo.add(account, now=NOW)

    assert await repo.get_for_user(alice.id, account.id) == account
    assert await repo.get_for_user(bob.id, account.id) is None
    assert await repo.get_by_id(account.id) == account
    assert await repo.get_by_venue_account_id(conn.id, "SIM-001") == account
    assert await repo.list_for_user(alice.id) == [account]
    assert await repo.list_for_user(bob.id) == []
    assert await repo.list_for_connection(conn.id) == [account]

    listing = await repo.list_with_connections(alice.id)
    assert len(listing) == 1
    assert (listing[0].id, listing[0].broker, listing[0].connection_label) == (account.id, "sim", "Paper")
    assert (listing[0].mode, listing[0].connection_status) == (AccountMode.HEDGING, ConnectionState.DISCONNECTED)
    assert await repo.list_with_connections(bob.id) == []

    assert await repo.rename(bob.id, account.id, "Stolen", now=NOW) is None
    renamed = await repo.rename(alice.id, account.id, "Swing", now=NOW)
    assert renamed is not None
    assert renamed.name == "Swing"


async def test_venue_account_is_unique_per_connection(session: AsyncSession) -> None:
    user = await make_user(session)
    c1, c2 = await make_connection(session, user.id), await make_connection(session, user.id)
    repo = AccountRepository(session)
    template = Account(
        id=new_id("acc"), user_id=user.id, connection_id=c1.id, venue_account_id="A1", name="x", currency="USD"
    )
    await repo.add(template, now=NOW)
    # The same venue account through another connection is a different row.
    await repo.add(Account(**{**_fields(template), "id": new_id("acc"), "connection_id": c2.id}), now=NOW)
    with pytest.raises(IntegrityError):
        await repo.add(Account(**{**_fields(template), "id": new_id("acc")}), now=NOW)


async def test_account_owner_must_own_the_connection(session: AsyncSession) -> None:
    alice, mallory = await make_user(session), await make_user(session)
    conn = await make_connection(session, alice.id)
    with pytest.raises(IntegrityError):
        await make_account(session, user_id=mallory.id, connection_id=conn.id)


async def test_deleting_a_user_cascades_to_connections_accounts_and_snapshots(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        account = await make_account(session)
        other = await make_account(session)
        await PositionRepository(session).upsert(
            Position(account_id=account.id, symbol="AAPL", qty=Decimal(3), avg_price=Decimal("190.5")), now=NOW
        )
        await BalanceRepository(session).upsert(
            Balance(
                account_id=account.id,
                currency="USD",
                cash=Decimal(1),
                equity=Decimal(1),
                buying_power=Decimal(1),
                ts=NOW,
            )
        )
        await session.commit()
    async with sessions() as session:
        await session.delete(await session.get(UserRow, account.user_id))
        await session.commit()
    async with sessions() as session:
        for model in (BrokerConnectionRow, AccountRow, PositionRow, BalanceRow):
            count = (await session.execute(select(func.count()).select_from(model))).scalar_one()
            # Only the other user's connection and account remain.
            assert count == (1 if model in (BrokerConnectionRow, AccountRow) else 0), model
        assert await AccountRepository(session).get_by_id(other.id) == other


async def test_trading_history_blocks_deleting_its_account(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        account = await make_account(session)
        await OrderRepository(session).add(make_order(account.id))
        await session.commit()
    async with sessions() as session:
        with pytest.raises(IntegrityError):
            await ConnectionRepository(session).delete_for_user(account.user_id, account.connection_id)
        await session.rollback()
    async with sessions() as session:
        assert await AccountRepository(session).get_by_id(account.id) == account


def _fields(account: Account) -> dict[str, object]:
    return {name: getattr(account, name) for name in account.__struct_fields__}
