"""Helpers of the statistics, snapshot and statement tests (no tests here).

Owners, accounts, strategies, subscriptions, balances, fills and journal entries made directly in the
store (the database itself: ``tests.store.conftest.migrated_database``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import select

from brokerlink.domain.copy import Strategy, StrategyVisibility, Subscription
from brokerlink.domain.enums import AccountMode, ConnectionState, Side
from brokerlink.domain.models import Account, Balance, Fill, Position
from brokerlink.kit.ids import new_id
from brokerlink.ledger import chart
from brokerlink.store.db import Database
from brokerlink.store.models_ledger import JournalEntryRow, LedgerAccountRow, PostingRow
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.connections import ConnectionRepository
from brokerlink.store.repositories.fills import FillRepository
from brokerlink.store.repositories.positions import BalanceRepository, PositionRepository
from brokerlink.store.repositories.strategies import StrategyRepository
from brokerlink.store.repositories.subscriptions import SubscriptionRepository
from brokerlink.store.repositories.users import UserRepository

BACKENDS = ["sqlite", "postgresql"]


async def make_account(
    database: Database, email: str, *, now: datetime, currency: str = "USD", broker: str = "sim"
) -> Account:
    """A user with one connection and one account."""
    async with database.session() as session:
        user = await UserRepository(session).create(email=email, display_name=email, password_hash="x", now=now)
        connection = await ConnectionRepository(session).create(
            user_id=user.id, broker=broker, label=f"{email} link", status=ConnectionState.CONNECTED, now=now
        )
        account = Account(
            id=new_id("acc"), user_id=user.id, connection_id=connection.id, venue_account_id=f"V-{email}",
            name=f"{email} account", currency=currency, mode=AccountMode.NETTING,
        )  # fmt: skip
        await AccountRepository(session).add(account, now=now)
        await session.commit()
    return account


async def make_strategy(
    database: Database, provider: Account, *, now: datetime, visibility: str = "public"
) -> Strategy:
    strategy = Strategy(
        id=new_id("stg"), provider_user_id=provider.user_id, account_id=provider.id, name=f"S {new_id('nm')}",
        visibility=StrategyVisibility(visibility), created_at=now, updated_at=now,
    )  # fmt: skip
    async with database.session() as session:
        await StrategyRepository(session).add(strategy)
        await session.commit()
    return strategy


async def make_subscription(
    database: Database, strategy: Strategy, follower: Account, *, now: datetime, start_equity: str | None = None
) -> Subscription:
    subscription = Subscription(
        id=new_id("sub"), strategy_id=strategy.id, follower_user_id=follower.user_id, account_id=follower.id,
        settings="{}", created_at=now, updated_at=now,
        start_equity=None if start_equity is None else Decimal(start_equity),
    )  # fmt: skip
    async with database.session() as session:
        await SubscriptionRepository(session).add(subscription)
        await session.commit()
    return subscription


async def set_balance(
    database: Database, account: Account, cash: str, equity: str | None = None, *, now: datetime
) -> None:
    async with database.session() as session:
        await BalanceRepository(session).upsert(
            Balance(
                account_id=account.id, currency=account.currency, cash=Decimal(cash),
                equity=Decimal(equity or cash), buying_power=Decimal(cash), ts=now,
            )
        )  # fmt: skip
        await session.commit()


async def set_position(database: Database, account: Account, symbol: str, qty: str, avg: str, *, now: datetime) -> None:
    async with database.session() as session:
        position = Position(account_id=account.id, symbol=symbol, qty=Decimal(qty), avg_price=Decimal(avg))
        await PositionRepository(session).upsert(position, now=now)
        await session.commit()


def fill(
    account: Account,
    side: Side,
    qty: str,
    price: str,
    ts: datetime,
    *,
    fee: str = "0",
    symbol: str = "EUR/USD",
    client_order_id: str | None = None,
) -> Fill:
    return Fill(
        trade_id=new_id("trd"), order_id=None, client_order_id=client_order_id, account_id=account.id,
        symbol=symbol, side=side, qty=Decimal(qty), price=Decimal(price), fee=Decimal(fee), ts=ts,
    )  # fmt: skip


async def add_fills(database: Database, fills: list[Fill]) -> None:
    async with database.session() as session:
        for f in fills:
            assert await FillRepository(session).add_if_new(f)
        await session.commit()


async def book(
    database: Database,
    *,
    owner_id: str,
    kind: str,
    description: str,
    at: datetime,
    legs: list[tuple[str, str, str, str]],
) -> str:
    """A balanced journal entry written straight into the ledger tables: ``legs`` are
    ``(account code, currency, debit, credit)``. (Straight in, so these tests do not depend on how
    the journal validates; the journal's own tests cover that.)"""
    debit = sum(Decimal(leg[2]) for leg in legs)
    credit = sum(Decimal(leg[3]) for leg in legs)
    assert debit == credit, "the test's entry must balance"
    entry_id = new_id("jen")
    async with database.session() as session:
        for code, *_ in legs:
            known = await session.execute(select(LedgerAccountRow.id).where(LedgerAccountRow.code == code))
            if known.first() is None:
                session.add(
                    LedgerAccountRow(
                        id=new_id("lac"), code=code, type=code.split(":")[0], owner_id=owner_id, created_at=at
                    )
                )
                await session.flush()
        session.add(
            JournalEntryRow(
                id=entry_id, idempotency_key=entry_id, correlation_id=entry_id, kind=kind, description=description,
                occurred_at=at, created_at=at, reverses_entry_id=None, content_hash="0" * 64,
            )
        )  # fmt: skip
        await session.flush()
        for code, currency, d, c in legs:
            session.add(
                PostingRow(
                    id=new_id("pst"), entry_id=entry_id, account=code, currency=currency, debit=Decimal(d),
                    credit=Decimal(c), owner_id=owner_id, occurred_at=at,
                )
            )  # fmt: skip
        await session.commit()
    return entry_id


async def deposit(database: Database, account: Account, amount: str, *, at: datetime) -> str:
    """A deposit booked as the ledger does: debit cash, credit owner capital."""
    return await book(
        database, owner_id=account.user_id, kind="deposit", description=f"deposit {amount}", at=at,
        legs=[(chart.cash(account.id), account.currency, amount, "0"),
              (chart.owner_capital(account.id), account.currency, "0", amount)],
    )  # fmt: skip


async def withdraw(database: Database, account: Account, amount: str, *, at: datetime) -> str:
    return await book(
        database, owner_id=account.user_id, kind="withdrawal", description=f"withdrawal {amount}", at=at,
        legs=[(chart.owner_capital(account.id), account.currency, amount, "0"),
              (chart.cash(account.id), account.currency, "0", amount)],
    )  # fmt: skip
