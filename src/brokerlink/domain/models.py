"""The normalized model every broker maps onto (DESIGN.md). Frozen msgspec structs; no I/O.

Quantities and money are ``Decimal`` (JSON strings on the wire); times are timezone-aware UTC.
Order quantities are unsigned with a ``side``; position quantities are signed (long > 0).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import msgspec

from brokerlink.domain.enums import AccountMode, AssetClass, OrderStatus, OrderType, Side, TimeInForce

_ZERO = Decimal(0)


class DomainModel(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # Subclasses repeat frozen/kw_only: msgspec inherits them at run time, but type checkers need them spelled out.
    """Base of the normalized models: immutable, keyword-only, strict about unknown fields."""


class Instrument(DomainModel, frozen=True, kw_only=True):
    """A tradable instrument with the venue's rules for sizes and prices."""

    symbol: str
    """Canonical symbol: ``EUR/USD``, ``AAPL``, ``BTC/USDT``."""
    venue_symbol: str
    """The broker's own spelling: ``EUR_USD``, ``EURUSD.m``."""
    asset_class: AssetClass
    base: str
    quote: str
    tick_size: Decimal
    qty_step: Decimal
    min_qty: Decimal
    max_qty: Decimal | None = None
    min_notional: Decimal = _ZERO
    contract_size: Decimal = Decimal(1)
    """Units of ``base`` per 1 of quantity (FX lot: 100000)."""
    tradable: bool = True

    def notional(self, qty: Decimal, price: Decimal) -> Decimal:
        """Quote-currency value of ``qty`` at ``price``."""
        return abs(qty) * price * self.contract_size


class Account(DomainModel, frozen=True, kw_only=True):
    """A trading account at a broker, linked by a user."""

    id: str
    user_id: str
    connection_id: str
    venue_account_id: str
    name: str
    currency: str
    mode: AccountMode = AccountMode.NETTING


class Balance(DomainModel, frozen=True, kw_only=True):
    """Money in an account, as the broker reports it."""

    account_id: str
    currency: str
    cash: Decimal
    equity: Decimal
    buying_power: Decimal
    margin_used: Decimal = _ZERO
    ts: datetime


class Order(DomainModel, frozen=True, kw_only=True):
    """An order and where it stands. Status changes go through ``brokerlink.domain.orders``."""

    id: str
    client_order_id: str
    """The idempotency key everywhere: unique per account."""
    account_id: str
    symbol: str
    side: Side
    qty: Decimal
    type: OrderType
    tif: TimeInForce
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    status: OrderStatus = OrderStatus.PENDING_NEW
    filled_qty: Decimal = _ZERO
    avg_fill_price: Decimal | None = None
    venue_order_id: str | None = None
    reject_reason: str | None = None
    created_at: datetime
    updated_at: datetime

    @property
    def leaves_qty(self) -> Decimal:
        """Quantity still working (zero once terminal)."""
        return _ZERO if self.status.is_terminal else self.qty - self.filled_qty


class Fill(DomainModel, frozen=True, kw_only=True):
    """One execution. ``trade_id`` is unique per venue and is the deduplication key."""

    trade_id: str
    order_id: str | None
    client_order_id: str | None
    account_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    fee: Decimal = _ZERO
    fee_currency: str | None = None
    ts: datetime


class Position(DomainModel, frozen=True, kw_only=True):
    """A net position: signed quantity (long > 0), average entry price and P&L."""

    account_id: str
    symbol: str
    qty: Decimal = _ZERO
    avg_price: Decimal = _ZERO
    realized_pnl: Decimal = _ZERO
    unrealized_pnl: Decimal = _ZERO

    @property
    def is_flat(self) -> bool:
        """Whether the position holds nothing."""
        return self.qty == 0


class Quote(DomainModel, frozen=True, kw_only=True):
    """Top of book."""

    symbol: str
    bid: Decimal
    ask: Decimal
    bid_size: Decimal
    ask_size: Decimal
    ts: datetime

    @property
    def mid(self) -> Decimal:
        """Mid price."""
        return (self.bid + self.ask) / 2


class Trade(DomainModel, frozen=True, kw_only=True):
    """A public trade print."""

    symbol: str
    trade_id: str
    price: Decimal
    size: Decimal
    aggressor: Side | None
    ts: datetime
