"""Conversions between table rows and the domain's frozen structs.

Repositories hand services domain objects, never rows, for every table that has a domain struct
(accounts, instruments, orders, fills, positions, balances, and the copy trading tables). Enum
columns hold plain strings; they become StrEnum members here, so an unknown value in the database
fails loudly on read.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

import msgspec

from brokerlink.domain.copy import CopyEvent, CopyIntent, CopyLink, CopySignal, Strategy, Subscription
from brokerlink.domain.models import Account, Balance, Fill, Instrument, Order, Position
from brokerlink.store.models import OrderRow

M = TypeVar("M", bound=msgspec.Struct)


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


def order_values(order: Order) -> dict[str, Any]:
    """Column values for a new row of a domain order."""
    return {
        "id": order.id,
        "account_id": order.account_id,
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "side": order.side.value,
        "type": order.type.value,
        "created_at": order.created_at,
        **order_mutable_values(order),
    }


def order_to_row(order: Order) -> OrderRow:
    """A new row for a domain order."""
    return OrderRow(**order_values(order))


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


def struct_values(struct: msgspec.Struct) -> dict[str, Any]:
    """Column values for a new row of a struct whose fields are exactly its table's columns
    (the copy trading structs): every field, enum members as their values.
    """
    return {
        name: value.value if isinstance(value, StrEnum) else value
        for name, value in zip(struct.__struct_fields__, msgspec.structs.astuple(struct), strict=True)
    }


def _from_row(model: type[M]) -> Callable[[object], M]:
    def convert(row: object) -> M:
        # Reads the model's declared fields by name from the row, validating enum strings and types;
        # fields the table does not store (a position's unrealized P&L) take the model's default.
        return msgspec.convert(row, model, from_attributes=True)

    convert.__doc__ = f"The domain {model.__name__} for a row."
    return convert


account_from_row = _from_row(Account)
instrument_from_row = _from_row(Instrument)
order_from_row = _from_row(Order)
fill_from_row = _from_row(Fill)
position_from_row = _from_row(Position)
balance_from_row = _from_row(Balance)
strategy_from_row = _from_row(Strategy)
subscription_from_row = _from_row(Subscription)
copy_signal_from_row = _from_row(CopySignal)
copy_link_from_row = _from_row(CopyLink)
copy_intent_from_row = _from_row(CopyIntent)
copy_event_from_row = _from_row(CopyEvent)
