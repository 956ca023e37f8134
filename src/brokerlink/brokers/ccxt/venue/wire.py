"""Binance spot's JSON, as msgspec structs: what the test venue sends, field for field.

Names and shapes follow Binance's public reference (binance-spot-api-docs: ``rest-api.md``,
``user-data-stream.md``, ``web-socket-api.md``, ``errors.md``); decimals travel as strings with
eight places (``"0.10000000"``), times as integer milliseconds. The venue encodes these, and the
tests decode Binance's documented example responses with the same structs
(tests/brokers/ccxt/examples/), so the venue cannot drift from the documents unnoticed.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal

import msgspec

API_V3 = "/api/v3"
WS_API_PATH = "/ws-api/v3"
HEADER_API_KEY = "X-MBX-APIKEY"
HEADER_USED_WEIGHT = "X-MBX-USED-WEIGHT-1M"
HEADER_ORDER_COUNT_10S = "X-MBX-ORDER-COUNT-10S"
HEADER_ORDER_COUNT_1D = "X-MBX-ORDER-COUNT-1D"
DEFAULT_RECV_WINDOW_MS = 5_000
MAX_RECV_WINDOW_MS = 60_000
_EIGHT = Decimal("0.00000001")


def fmt(value: Decimal) -> str:
    """A decimal as Binance writes it: eight places (``Decimal("0.1")`` -> ``"0.10000000"``)."""
    return str(value.quantize(_EIGHT, rounding=ROUND_HALF_EVEN))


class Camel(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Base of Binance's REST bodies: camelCase names; unknown fields ignored on decoding."""


# --- errors and limits ------------------------------------------------------------------------


class ErrorBody(msgspec.Struct, frozen=True):
    """Every error: ``{"code": -1121, "msg": "Invalid symbol."}`` (errors.md)."""

    code: int
    msg: str


class RateLimit(Camel, frozen=True, kw_only=True):
    """One entry of ``rateLimits`` (ENUM definitions, "Rate limiters")."""

    rate_limit_type: Literal["REQUEST_WEIGHT", "ORDERS", "RAW_REQUESTS"]
    interval: Literal["SECOND", "MINUTE", "HOUR", "DAY"]
    interval_num: int
    limit: int


# --- exchange information ---------------------------------------------------------------------


class PriceFilter(Camel, frozen=True, kw_only=True, tag_field="filterType", tag="PRICE_FILTER"):
    """``PRICE_FILTER``: min, max and tick of ``price``/``stopPrice``."""

    min_price: str
    max_price: str
    tick_size: str


class LotSize(Camel, frozen=True, kw_only=True, tag_field="filterType", tag="LOT_SIZE"):
    """``LOT_SIZE``: min, max and step of ``quantity``."""

    min_qty: str
    max_qty: str
    step_size: str


class NotionalFilter(Camel, frozen=True, kw_only=True, tag_field="filterType", tag="NOTIONAL"):
    """``NOTIONAL``: price x quantity bounds (market orders use the average price)."""

    min_notional: str
    apply_min_to_market: bool = True
    max_notional: str = "9000000.00000000"
    apply_max_to_market: bool = False
    avg_price_mins: int = 5


class MaxNumOrders(Camel, frozen=True, kw_only=True, tag_field="filterType", tag="MAX_NUM_ORDERS"):
    """``MAX_NUM_ORDERS``: open orders per symbol."""

    max_num_orders: int


class MinNotionalFilter(Camel, frozen=True, kw_only=True, tag_field="filterType", tag="MIN_NOTIONAL"):
    """``MIN_NOTIONAL``, the older form of ``NOTIONAL`` (older documents show it)."""

    min_notional: str
    apply_to_market: bool = True
    avg_price_mins: int = 5


SymbolFilter = PriceFilter | LotSize | NotionalFilter | MaxNumOrders | MinNotionalFilter


class SymbolInfo(Camel, frozen=True, kw_only=True):
    """One entry of ``exchangeInfo.symbols``."""

    symbol: str
    status: str
    base_asset: str
    base_asset_precision: int
    quote_asset: str
    quote_precision: int
    quote_asset_precision: int
    order_types: list[str]
    iceberg_allowed: bool = False
    oco_allowed: bool = False
    quote_order_qty_market_allowed: bool = False
    is_spot_trading_allowed: bool = True
    is_margin_trading_allowed: bool = False
    filters: list[msgspec.Raw]
    """Decoded one by one with :data:`SymbolFilter` (a document may list filters this venue does not use)."""
    permissions: list[str] = []


class ExchangeInfo(Camel, frozen=True, kw_only=True):
    """``GET /api/v3/exchangeInfo``."""

    timezone: str
    server_time: int
    rate_limits: list[RateLimit]
    exchange_filters: list[msgspec.Raw] = []
    symbols: list[SymbolInfo]


class ServerTime(Camel, frozen=True, kw_only=True):
    """``GET /api/v3/time``."""

    server_time: int


# --- orders and trades ------------------------------------------------------------------------


class OrderFill(Camel, frozen=True, kw_only=True):
    """One fill inside a ``FULL`` new-order response."""

    price: str
    qty: str
    commission: str
    commission_asset: str
    trade_id: int | None = None


class NewOrderResult(Camel, frozen=True, kw_only=True):
    """``POST /api/v3/order`` with ``newOrderRespType`` ``RESULT`` or ``FULL`` (``fills`` only in ``FULL``)."""

    symbol: str
    order_id: int
    order_list_id: int = -1
    client_order_id: str
    transact_time: int
    price: str
    orig_qty: str
    executed_qty: str
    cummulative_quote_qty: str  # sic: Binance's spelling
    status: str
    time_in_force: str
    type: str
    side: str
    working_time: int | None = None
    fills: list[OrderFill] | None = None


class OrderQuery(Camel, frozen=True, kw_only=True):
    """``GET /api/v3/order`` and the entries of ``GET /api/v3/openOrders``."""

    symbol: str
    order_id: int
    order_list_id: int = -1
    client_order_id: str
    price: str
    orig_qty: str
    executed_qty: str
    cummulative_quote_qty: str
    status: str
    time_in_force: str
    type: str
    side: str
    stop_price: str
    iceberg_qty: str
    time: int
    update_time: int
    is_working: bool
    orig_quote_order_qty: str


class CancelResult(Camel, frozen=True, kw_only=True):
    """``DELETE /api/v3/order``: ``clientOrderId`` is the cancel's own id, ``origClientOrderId`` the order's."""

    symbol: str
    orig_client_order_id: str
    order_id: int
    order_list_id: int = -1
    client_order_id: str
    price: str
    orig_qty: str
    executed_qty: str
    cummulative_quote_qty: str
    status: str
    time_in_force: str
    type: str
    side: str


class MyTrade(Camel, frozen=True, kw_only=True):
    """One entry of ``GET /api/v3/myTrades``."""

    symbol: str
    id: int
    order_id: int
    order_list_id: int = -1
    price: str
    qty: str
    quote_qty: str
    commission: str
    commission_asset: str
    time: int
    is_buyer: bool
    is_maker: bool
    is_best_match: bool


class AssetBalance(Camel, frozen=True, kw_only=True):
    """One entry of ``balances``."""

    asset: str
    free: str
    locked: str


class AccountInfo(Camel, frozen=True, kw_only=True):
    """``GET /api/v3/account``."""

    maker_commission: int
    taker_commission: int
    buyer_commission: int
    seller_commission: int
    can_trade: bool
    can_withdraw: bool
    can_deposit: bool
    update_time: int
    account_type: str
    balances: list[AssetBalance]
    permissions: list[str]


class TickerPrice(Camel, frozen=True, kw_only=True):
    """``GET /api/v3/ticker/price`` (one entry)."""

    symbol: str
    price: str


class ListenKey(Camel, frozen=True, kw_only=True):
    """``POST /api/v3/userDataStream``."""

    listen_key: str


# --- user data stream -------------------------------------------------------------------------


class ExecutionReport(msgspec.Struct, frozen=True, kw_only=True):
    """The ``executionReport`` event (user-data-stream.md, "Order Update")."""

    event_type: Literal["executionReport"] = msgspec.field(name="e", default="executionReport")
    event_time: int = msgspec.field(name="E")
    symbol: str = msgspec.field(name="s")
    client_order_id: str = msgspec.field(name="c")
    side: str = msgspec.field(name="S")
    order_type: str = msgspec.field(name="o")
    time_in_force: str = msgspec.field(name="f")
    quantity: str = msgspec.field(name="q")
    price: str = msgspec.field(name="p")
    stop_price: str = msgspec.field(name="P")
    iceberg_quantity: str = msgspec.field(name="F", default="0.00000000")
    order_list_id: int = msgspec.field(name="g", default=-1)
    original_client_order_id: str | None = msgspec.field(name="C", default="")
    execution_type: str = msgspec.field(name="x")
    order_status: str = msgspec.field(name="X")
    reject_reason: str = msgspec.field(name="r", default="NONE")
    order_id: int = msgspec.field(name="i")
    last_executed_quantity: str = msgspec.field(name="l")
    cumulative_filled_quantity: str = msgspec.field(name="z")
    last_executed_price: str = msgspec.field(name="L")
    commission_amount: str = msgspec.field(name="n")
    commission_asset: str | None = msgspec.field(name="N")
    transaction_time: int = msgspec.field(name="T")
    trade_id: int = msgspec.field(name="t")
    ignore_i: int = msgspec.field(name="I", default=0)
    is_on_book: bool = msgspec.field(name="w")
    is_maker: bool = msgspec.field(name="m")
    ignore_m: bool = msgspec.field(name="M", default=False)
    creation_time: int = msgspec.field(name="O")
    cumulative_quote_quantity: str = msgspec.field(name="Z")
    last_quote_quantity: str = msgspec.field(name="Y")
    quote_order_quantity: str = msgspec.field(name="Q", default="0.00000000")
    working_time: int | None = msgspec.field(name="W", default=None)
    self_trade_prevention_mode: str = msgspec.field(name="V", default="NONE")


class BalanceEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One asset in ``outboundAccountPosition``."""

    asset: str = msgspec.field(name="a")
    free: str = msgspec.field(name="f")
    locked: str = msgspec.field(name="l")


class OutboundAccountPosition(msgspec.Struct, frozen=True, kw_only=True):
    """The ``outboundAccountPosition`` event: the balances an event may have changed."""

    event_type: Literal["outboundAccountPosition"] = msgspec.field(name="e", default="outboundAccountPosition")
    event_time: int = msgspec.field(name="E")
    last_update_time: int = msgspec.field(name="u")
    balances: list[BalanceEntry] = msgspec.field(name="B")


UserEvent = ExecutionReport | OutboundAccountPosition


class StreamEvent(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A user data stream event on the WebSocket API: ``{"subscriptionId": 0, "event": {...}}``."""

    subscription_id: int
    event: msgspec.Raw


# --- WebSocket API ----------------------------------------------------------------------------


class WsRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A WebSocket API request: ``{"id", "method", "params"}`` (``id`` is any string or integer)."""

    id: str | int | None = None
    method: str
    params: dict[str, str | int | bool] = {}


class WsError(msgspec.Struct, frozen=True):
    """``error`` of a failed WebSocket API response."""

    code: int
    msg: str


class WsResponse(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A WebSocket API response: ``status`` 200 with ``result``, or an error status with ``error``."""

    id: str | int | None
    status: int
    result: msgspec.Raw | None = None
    error: WsError | None = None
    rate_limits: list[msgspec.Raw] | None = msgspec.field(name="rateLimits", default=None)


class SubscribeResult(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Result of ``userDataStream.subscribe.signature``."""

    subscription_id: int
