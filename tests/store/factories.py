"""Builders for store tests: users, connections, accounts, orders and fills with sensible defaults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.enums import OrderType, Side, TimeInForce
from brokerlink.domain.models import Account, Fill, Order
from brokerlink.kit.ids import new_id
from brokerlink.store.models import BrokerConnectionRow, UserRow
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.connections import ConnectionRepository
from brokerlink.store.repositories.users import UserRepository

NOW = datetime(2026, 1, 5, 12, 0, 0, 123456, tzinfo=UTC)


async def make_user(session: AsyncSession, email: str | None = None) -> UserRow:
    """A stored user."""
    return await UserRepository(session).create(
        email=email or f"{new_id('user')}@example.com",
        display_name="Test User",
        password_hash="$argon2id$v=19$m=65536,t=3,p=4$fake",
        now=NOW,
    )


async def make_connection(session: AsyncSession, user_id: str, label: str | None = None) -> BrokerConnectionRow:
    """A stored broker connection of ``user_id``."""
    return await ConnectionRepository(session).create(
        user_id=user_id, broker="sim", label=label or new_id("lbl"), now=NOW
    )


async def make_account(session: AsyncSession, user_id: str | None = None, connection_id: str | None = None) -> Account:
    """A stored account; creates its user and connection when not given."""
    if user_id is None:
        user_id = (await make_user(session)).id
    if connection_id is None:
        connection_id = (await make_connection(session, user_id)).id
    account = Account(
        id=new_id("acc"),
        user_id=user_id,
        connection_id=connection_id,
        venue_account_id=new_id("venue"),
        name="Main",
        currency="USD",
    )
    await AccountRepository(session).add(account, now=NOW)
    return account


def make_order(account_id: str, client_order_id: str | None = None, **overrides: Any) -> Order:
    """An unsaved limit order."""
    fields: dict[str, Any] = {
        "id": new_id("ord"),
        "client_order_id": client_order_id or new_id("cid"),
        "account_id": account_id,
        "symbol": "EUR/USD",
        "side": Side.BUY,
        "qty": Decimal(100000),
        "type": OrderType.LIMIT,
        "tif": TimeInForce.GTC,
        "limit_price": Decimal("1.08505"),
        "created_at": NOW,
        "updated_at": NOW,
    }
    fields.update(overrides)
    return Order(**fields)


def make_fill(account_id: str, trade_id: str | None = None, **overrides: Any) -> Fill:
    """An unsaved fill."""
    fields: dict[str, Any] = {
        "trade_id": trade_id or new_id("trd"),
        "order_id": None,
        "client_order_id": None,
        "account_id": account_id,
        "symbol": "EUR/USD",
        "side": Side.BUY,
        "qty": Decimal(50000),
        "price": Decimal("1.08501"),
        "fee": Decimal("0.75"),
        "fee_currency": "USD",
        "ts": NOW + timedelta(seconds=1),
    }
    fields.update(overrides)
    return Fill(**fields)
