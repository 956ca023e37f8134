"""Bodies of the trading routes: balances, positions, instruments, quotes, orders and fills.

Decimals travel as JSON strings (``"1.25"``); a request may also send a JSON number, which is
read from its text exactly, never through a binary float.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

import msgspec

from brokerlink.api.schemas import RequestBody, ResponseBody
from brokerlink.domain.enums import AssetClass, OrderStatus, OrderType, Side, TimeInForce

Symbol = Annotated[str, msgspec.Meta(min_length=1, max_length=40, examples=["EUR/USD"])]
ClientOrderId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$", examples=["my-order-0001"])
]


class BalanceResponse(ResponseBody, kw_only=True):
    """Cash and equity in one currency, as the broker last reported them."""

    currency: str
    cash: Decimal
    equity: Decimal
    buying_power: Decimal
    margin_used: Decimal
    ts: datetime


class BalanceList(ResponseBody, kw_only=True):
    """The account's balances."""

    data: list[BalanceResponse]
    next_after: str | None
    """The cursor of the next page (``after``); null on the last page."""


class PositionResponse(ResponseBody, kw_only=True):
    """An open position. ``mark_price`` and ``unrealized_pnl`` are null without a live quote."""

    symbol: str
    qty: Decimal
    avg_price: Decimal
    realized_pnl: Decimal
    mark_price: Decimal | None = None
    unrealized_pnl: Decimal | None = None


class PositionList(ResponseBody, kw_only=True):
    """The account's open positions."""

    data: list[PositionResponse]
    next_after: str | None
    """The cursor of the next page (``after``); null on the last page."""


class InstrumentResponse(ResponseBody, kw_only=True):
    """What the broker lists, with its trading rules."""

    symbol: str
    venue_symbol: str
    asset_class: AssetClass
    base: str
    quote: str
    tick_size: Decimal
    qty_step: Decimal
    min_qty: Decimal
    max_qty: Decimal | None
    min_notional: Decimal
    contract_size: Decimal
    tradable: bool


class InstrumentList(ResponseBody, kw_only=True):
    """The instruments the account can trade."""

    data: list[InstrumentResponse]
    next_after: str | None
    """The cursor of the next page (``after``); null on the last page."""


class QuoteResponse(ResponseBody, kw_only=True):
    """Best bid and offer."""

    symbol: str
    bid: Decimal
    ask: Decimal
    bid_size: Decimal
    ask_size: Decimal
    ts: datetime


class QuoteList(ResponseBody, kw_only=True):
    """Quotes for the symbols asked for, in the order asked."""

    data: list[QuoteResponse]


class OrderCreate(RequestBody, kw_only=True):
    """A new order. ``client_order_id`` makes the request idempotent: the same id with the same
    parameters returns the order already placed (200), with other parameters it is a 409."""

    symbol: Symbol
    side: Side
    qty: Annotated[Decimal, msgspec.Meta(examples=["1000"])]
    type: OrderType = OrderType.MARKET
    tif: TimeInForce = TimeInForce.GTC
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    client_order_id: ClientOrderId | None = None


class OrderResponse(ResponseBody, kw_only=True):
    """An order and where it stands."""

    id: str
    client_order_id: str
    account_id: str
    symbol: str
    side: Side
    qty: Decimal
    type: OrderType
    tif: TimeInForce
    limit_price: Decimal | None
    stop_price: Decimal | None
    status: OrderStatus
    filled_qty: Decimal
    avg_fill_price: Decimal | None
    venue_order_id: str | None
    reject_reason: str | None
    created_at: datetime
    updated_at: datetime


class OrderList(ResponseBody, kw_only=True):
    """One page of orders, newest first; pass ``next_after`` as ``after`` for the next page."""

    data: list[OrderResponse]
    next_after: str | None


class FillResponse(ResponseBody, kw_only=True):
    """One execution."""

    trade_id: str
    order_id: str | None
    client_order_id: str | None
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str | None
    ts: datetime


class FillList(ResponseBody, kw_only=True):
    """One page of fills, newest first."""

    data: list[FillResponse]
    next_after: str | None
