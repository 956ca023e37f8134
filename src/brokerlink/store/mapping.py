"""Conversions between table rows and the domain's frozen structs.

Repositories hand services domain objects, never rows, for every table that has a domain struct
(accounts, instruments, orders, fills, positions, balances). Enum columns hold plain strings; they
become StrEnum members here, so an unknown value in the database fails loudly on read.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from brokerlink.domain.enums import AccountMode, AssetClass, OrderStatus, OrderType, Side, TimeInForce
from brokerlink.domain.models import Account, Balance, Fill, Instrument, Order, Position
from brokerlink.store.models import AccountRow, BalanceRow, FillRow, InstrumentRow, OrderRow, PositionRow


def account_from_row(row: AccountRow) -> Account:
    """The domain account for a row."""
    return Account(
        id=row.id,
        user_id=row.user_id,
        connection_id=row.connection_id,
        venue_account_id=row.venue_account_id,
        name=row.name,
        currency=row.currency,
        mode=AccountMode(row.mode),
    )


def instrument_from_row(row: InstrumentRow) -> Instrument:
    """The domain instrument for a row."""
    return Instrument(
        symbol=row.symbol,
        venue_symbol=row.venue_symbol,
        asset_class=AssetClass(row.asset_class),
        base=row.base,
        quote=row.quote,
        tick_size=row.tick_size,
        qty_step=row.qty_step,
        min_qty=row.min_qty,
        max_qty=row.max_qty,
        min_notional=row.min_notional,
        contract_size=row.contract_size,
        tradable=row.tradable,
    )


def instrument_values(broker: str, instrument: Instrument, updated_at: datetime) -> dict[str, Any]:
    """Column values for an instrument row (without the id)."""
    return {
        "broker": broker,
        "symbol": instrument.symbol,
        "venue_symbol": instrument.venue_symbol,
        "asset_class": instrument.asset_class.value,
        "base": instrument.base,
        "quote": instrument.quote,
        "tick_size": instrument.tick_size,
        "qty_step": instrument.qty_step,
        "min_qty": instrument.min_qty,
        "max_qty": instrument.max_qty,
        "min_notional": instrument.min_notional,
        "contract_size": instrument.contract_size,
        "tradable": instrument.tradable,
        "updated_at": updated_at,
    }


def order_from_row(row: OrderRow) -> Order:
    """The domain order for a row."""
    return Order(
        id=row.id,
        client_order_id=row.client_order_id,
        account_id=row.account_id,
        symbol=row.symbol,
        side=Side(row.side),
        qty=row.qty,
        type=OrderType(row.type),
        tif=TimeInForce(row.tif),
        limit_price=row.limit_price,
        stop_price=row.stop_price,
        status=OrderStatus(row.status),
        filled_qty=row.filled_qty,
        avg_fill_price=row.avg_fill_price,
        venue_order_id=row.venue_order_id,
        reject_reason=row.reject_reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def order_mutable_values(order: Order) -> dict[str, Any]:
    """The columns an order update may change: everything but its identity and creation time."""
    return {
        "venue_order_id": order.venue_order_id,
        "qty": order.qty,
        "limit_price": order.limit_price,
        "stop_price": order.stop_price,
        "tif": order.tif.value,
        "status": order.status.value,
        "filled_qty": order.filled_qty,
        "avg_fill_price": order.avg_fill_price,
        "reject_reason": order.reject_reason,
        "updated_at": order.updated_at,
    }


def order_to_row(order: Order) -> OrderRow:
    """A new row for a domain order."""
    return OrderRow(
        id=order.id,
        account_id=order.account_id,
        client_order_id=order.client_order_id,
        symbol=order.symbol,
        side=order.side.value,
        type=order.type.value,
        created_at=order.created_at,
        **order_mutable_values(order),
    )


def fill_from_row(row: FillRow) -> Fill:
    """The domain fill for a row."""
    return Fill(
        trade_id=row.trade_id,
        order_id=row.order_id,
        client_order_id=row.client_order_id,
        account_id=row.account_id,
        symbol=row.symbol,
        side=Side(row.side),
        qty=row.qty,
        price=row.price,
        fee=row.fee,
        fee_currency=row.fee_currency,
        ts=row.ts,
    )


def fill_values(fill: Fill, row_id: str) -> dict[str, Any]:
    """Column values for a new fill row."""
    return {
        "id": row_id,
        "account_id": fill.account_id,
        "trade_id": fill.trade_id,
        "order_id": fill.order_id,
        "client_order_id": fill.client_order_id,
        "symbol": fill.symbol,
        "side": fill.side.value,
        "qty": fill.qty,
        "price": fill.price,
        "fee": fill.fee,
        "fee_currency": fill.fee_currency,
        "ts": fill.ts,
    }


def position_from_row(row: PositionRow) -> Position:
    """The domain position for a row.

    ``unrealized_pnl`` is not stored: it is a mark-to-market view that depends on the current
    quote, so it comes back as zero and the caller that holds a quote computes it.
    """
    return Position(
        account_id=row.account_id,
        symbol=row.symbol,
        qty=row.qty,
        avg_price=row.avg_price,
        realized_pnl=row.realized_pnl,
        unrealized_pnl=Decimal(0),
    )


def balance_from_row(row: BalanceRow) -> Balance:
    """The domain balance for a row."""
    return Balance(
        account_id=row.account_id,
        currency=row.currency,
        cash=row.cash,
        equity=row.equity,
        buying_power=row.buying_power,
        margin_used=row.margin_used,
        ts=row.ts,
    )
