"""OANDA v20's REST and streaming JSON as msgspec structs, shared by the adapter and the test venue.

Field names are OANDA's (camelCase, ``ID`` / ``IDs`` / ``PL`` / ``NAV`` spelled as the v20 reference
spells them: ``lastTransactionID``, ``tradeIDs``, ``unrealizedPL``); :func:`oanda_name` derives them
from the Python names, so the structs read as ordinary Python. Decimals travel as JSON strings
(``"units": "-100"``), times as RFC 3339 with up to nine fractional digits (msgspec keeps
microseconds). Unknown fields are ignored when decoding: OANDA adds fields over time (instrument
``financing``, ``tags``...), and a new field must never stop an adapter.

Transactions are one wide struct (:class:`Transaction`) rather than one struct per type: the
adapter branches on ``type`` and reads the few fields it needs, and a transaction type it does not
know (``DAILY_FINANCING``, ``MARGIN_CALL_ENTER``...) still decodes and is skipped.

Sources: developer.oanda.com/rest-live-v20 (account-, instrument-, order-, trade-, position-,
pricing- and transaction-df/-ep pages) and the recorded examples under tests/brokers/oanda/examples/.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

import msgspec

PRACTICE_URL = "https://api-fxpractice.oanda.com"
LIVE_URL = "https://api-fxtrade.oanda.com"
PRACTICE_STREAM_URL = "https://stream-fxpractice.oanda.com"
LIVE_STREAM_URL = "https://stream-fxtrade.oanda.com"
API_PREFIX = "/v3"
HEADER_DATETIME_FORMAT = "Accept-Datetime-Format"

_UPPER = {"id": "ID", "ids": "IDs", "pl": "PL", "vwap": "VWAP", "nav": "NAV"}


def oanda_name(name: str) -> str:
    """``last_transaction_id`` -> ``lastTransactionID``, ``unrealized_pl`` -> ``unrealizedPL``, ``nav`` -> ``NAV``."""
    if name == "nav":
        return "NAV"
    head, *rest = name.split("_")
    return head + "".join(_UPPER.get(part, part.capitalize()) for part in rest)


class Wire(msgspec.Struct, frozen=True, kw_only=True, rename=oanda_name, omit_defaults=True):
    """Base of every OANDA body: camelCase names, defaults left out when encoding."""


OrderState = Literal["PENDING", "FILLED", "TRIGGERED", "CANCELLED"]
TimeInForceCode = Literal["GTC", "GTD", "GFD", "FOK", "IOC"]
PositionFill = Literal["OPEN_ONLY", "REDUCE_FIRST", "REDUCE_ONLY", "DEFAULT"]
Timestamp = datetime


class ClientExtensions(Wire, frozen=True, kw_only=True):
    """``clientExtensions``: the client's own id (our client order id), tag and comment."""

    id: str | None = None
    tag: str | None = None
    comment: str | None = None


class ErrorBody(Wire, frozen=True, kw_only=True):
    """Any 4xx/5xx body: ``errorMessage`` always, ``errorCode`` often, a reject transaction on order endpoints."""

    error_message: str = ""
    error_code: str | None = None
    order_reject_transaction: Transaction | None = None
    order_cancel_reject_transaction: Transaction | None = None
    related_transaction_ids: list[str] = []
    last_transaction_id: str | None = None


# --- accounts --------------------------------------------------------------------------------


class AccountProperties(Wire, frozen=True, kw_only=True):
    """One entry of ``GET /v3/accounts``."""

    id: str
    mt4_account_id: int | None = None
    tags: list[str] | None = None


class AccountsResponse(Wire, frozen=True, kw_only=True):
    """``GET /v3/accounts``: the accounts the token reaches."""

    accounts: list[AccountProperties]


class AccountSummary(Wire, frozen=True, kw_only=True):
    """``GET /v3/accounts/{id}/summary`` -> ``account``. Money in the account's home currency."""

    id: str
    alias: str | None = None
    currency: str
    balance: Decimal
    created_by_user_id: int | None = None
    created_time: Timestamp | None = None
    pl: Decimal = Decimal(0)
    resettable_pl: Decimal = Decimal(0)
    financing: Decimal | None = None
    commission: Decimal | None = None
    margin_rate: Decimal | None = None
    open_trade_count: int = 0
    open_position_count: int = 0
    pending_order_count: int = 0
    hedging_enabled: bool = False
    unrealized_pl: Decimal = Decimal(0)
    nav: Decimal
    margin_used: Decimal = Decimal(0)
    margin_available: Decimal
    position_value: Decimal | None = None
    margin_closeout_unrealized_pl: Decimal | None = None
    margin_closeout_nav: Decimal | None = None
    margin_closeout_margin_used: Decimal | None = None
    margin_closeout_percent: Decimal | None = None
    margin_closeout_position_value: Decimal | None = None
    withdrawal_limit: Decimal | None = None
    margin_call_margin_used: Decimal | None = None
    margin_call_percent: Decimal | None = None
    last_transaction_id: str | None = None


class AccountSummaryResponse(Wire, frozen=True, kw_only=True):
    """``GET /v3/accounts/{id}/summary``."""

    account: AccountSummary
    last_transaction_id: str


class Instrument(Wire, frozen=True, kw_only=True):
    """One tradeable instrument: prices have ``displayPrecision`` decimals, units ``tradeUnitsPrecision``."""

    name: str
    type: str
    """``CURRENCY``, ``CFD`` or ``METAL``."""
    display_name: str | None = None
    pip_location: int
    display_precision: int
    trade_units_precision: int
    minimum_trade_size: Decimal
    maximum_trailing_stop_distance: Decimal | None = None
    minimum_trailing_stop_distance: Decimal | None = None
    maximum_position_size: Decimal | None = None
    maximum_order_units: Decimal | None = None
    margin_rate: Decimal | None = None


class InstrumentsResponse(Wire, frozen=True, kw_only=True):
    """``GET /v3/accounts/{id}/instruments``."""

    instruments: list[Instrument]
    last_transaction_id: str | None = None


# --- transactions ----------------------------------------------------------------------------


class TradeOpen(Wire, frozen=True, kw_only=True):
    """``tradeOpened`` of an ``ORDER_FILL``: the trade's id is the fill's transaction id."""

    trade_id: str
    units: Decimal
    price: Decimal | None = None
    guaranteed_execution_fee: Decimal | None = None
    half_spread_cost: Decimal | None = None
    initial_margin_required: Decimal | None = None
    client_extensions: ClientExtensions | None = None


class TradeReduce(Wire, frozen=True, kw_only=True):
    """An entry of ``tradesClosed`` or the ``tradeReduced`` of an ``ORDER_FILL``."""

    trade_id: str
    units: Decimal
    price: Decimal | None = None
    realized_pl: Decimal = Decimal(0)
    financing: Decimal = Decimal(0)
    guaranteed_execution_fee: Decimal | None = None
    half_spread_cost: Decimal | None = None


class PriceBucket(Wire, frozen=True, kw_only=True):
    """One price level with its liquidity (an integer in the pricing stream, a string in ``fullPrice``)."""

    price: Decimal
    liquidity: int | Decimal


class FullPrice(Wire, frozen=True, kw_only=True):
    """``fullPrice`` of an ``ORDER_FILL``: the prices the fill was made against."""

    bids: list[PriceBucket] = []
    asks: list[PriceBucket] = []
    closeout_bid: Decimal | None = None
    closeout_ask: Decimal | None = None
    timestamp: Timestamp | None = None


class PositionCloseout(Wire, frozen=True, kw_only=True):
    """``longPositionCloseout`` / ``shortPositionCloseout`` of a closing ``MARKET_ORDER``."""

    instrument: str
    units: str


class TradeClose(Wire, frozen=True, kw_only=True):
    """``tradeClose`` of a closing ``MARKET_ORDER``."""

    trade_id: str
    client_trade_id: str | None = None
    units: str


class Transaction(Wire, frozen=True, kw_only=True):
    """Any transaction, and the ``HEARTBEAT`` of the transaction stream (``type`` says which).

    ``MARKET_ORDER`` / ``LIMIT_ORDER`` / ``STOP_ORDER`` create orders (``reason`` ``CLIENT_ORDER`` or
    ``REPLACEMENT``), ``*_REJECT`` refuse them (``rejectReason``), ``ORDER_FILL`` fills one,
    ``ORDER_CANCEL`` cancels one (``reason``). Fields not used by a type are absent.
    """

    type: str
    id: str | None = None
    time: Timestamp | None = None
    user_id: int | str | None = None
    account_id: str | None = None
    batch_id: str | None = None
    request_id: str | None = None
    last_transaction_id: str | None = None
    """Only in a ``HEARTBEAT``: the newest transaction of the account."""
    # order creation and rejection
    instrument: str | None = None
    units: Decimal | None = None
    price: Decimal | None = None
    price_bound: Decimal | None = None
    time_in_force: TimeInForceCode | None = None
    gtd_time: Timestamp | None = None
    position_fill: PositionFill | None = None
    trigger_condition: str | None = None
    reason: str | None = None
    client_extensions: ClientExtensions | None = None
    trade_client_extensions: ClientExtensions | None = None
    replaces_order_id: str | None = None
    cancelling_transaction_id: str | None = None
    reject_reason: str | None = None
    long_position_closeout: PositionCloseout | None = None
    short_position_closeout: PositionCloseout | None = None
    trade_close: TradeClose | None = None
    # fills and cancels
    order_id: str | None = None
    client_order_id: str | None = None
    replaced_by_order_id: str | None = None
    full_vwap: Decimal | None = None
    full_price: FullPrice | None = None
    pl: Decimal | None = None
    financing: Decimal | None = None
    commission: Decimal | None = None
    guaranteed_execution_fee: Decimal | None = None
    account_balance: Decimal | None = None
    half_spread_cost: Decimal | None = None
    gain_quote_home_conversion_factor: Decimal | None = None
    loss_quote_home_conversion_factor: Decimal | None = None
    trade_opened: TradeOpen | None = None
    trades_closed: list[TradeReduce] | None = None
    trade_reduced: TradeReduce | None = None
    # funding
    amount: Decimal | None = None
    home_currency: str | None = None


class TransactionsResponse(Wire, frozen=True, kw_only=True):
    """``GET /v3/accounts/{id}/transactions/sinceid?id=`` (and ``idrange``)."""

    transactions: list[Transaction]
    last_transaction_id: str


class TransactionResponse(Wire, frozen=True, kw_only=True):
    """``GET /v3/accounts/{id}/transactions/{transactionID}``."""

    transaction: Transaction
    last_transaction_id: str


# --- orders --------------------------------------------------------------------------------


class OrderRequest(Wire, frozen=True, kw_only=True):
    """``{"order": ...}`` of ``POST .../orders`` and ``PUT .../orders/{specifier}``.

    ``type`` ``MARKET`` (``timeInForce`` FOK or IOC), ``LIMIT`` or ``STOP`` (GTC, GTD, GFD, FOK, IOC);
    ``units`` signed (positive buys, negative sells).
    """

    type: Literal["MARKET", "LIMIT", "STOP"]
    instrument: str
    units: Decimal
    price: Decimal | None = None
    price_bound: Decimal | None = None
    time_in_force: TimeInForceCode | None = None
    gtd_time: Timestamp | None = None
    position_fill: PositionFill = "DEFAULT"
    trigger_condition: str | None = None
    client_extensions: ClientExtensions | None = None
    trade_client_extensions: ClientExtensions | None = None


class CreateOrderBody(Wire, frozen=True, kw_only=True):
    """The body of ``POST .../orders`` and of the replace ``PUT .../orders/{specifier}``."""

    order: OrderRequest


class Order(Wire, frozen=True, kw_only=True):
    """An order as ``GET .../orders/{specifier}`` and ``GET .../orders`` report it.

    Dependent orders (``TAKE_PROFIT``, ``STOP_LOSS``, ``TRAILING_STOP_LOSS``) have a ``tradeID`` and
    no ``units``.
    """

    id: str
    create_time: Timestamp
    state: OrderState
    type: str
    client_extensions: ClientExtensions | None = None
    instrument: str | None = None
    units: Decimal | None = None
    price: Decimal | None = None
    price_bound: Decimal | None = None
    time_in_force: TimeInForceCode | None = None
    gtd_time: Timestamp | None = None
    position_fill: str | None = None
    trigger_condition: str | None = None
    partial_fill: str | None = None
    trade_id: str | None = None
    filling_transaction_id: str | None = None
    filled_time: Timestamp | None = None
    trade_opened_id: str | None = None
    trade_reduced_id: str | None = None
    trade_closed_ids: list[str] | None = None
    cancelling_transaction_id: str | None = None
    cancelled_time: Timestamp | None = None
    replaces_order_id: str | None = None
    replaced_by_order_id: str | None = None


class OrderResponse(Wire, frozen=True, kw_only=True):
    """``GET .../orders/{specifier}``."""

    order: Order
    last_transaction_id: str


class OrdersResponse(Wire, frozen=True, kw_only=True):
    """``GET .../orders`` and ``GET .../pendingOrders``."""

    orders: list[Order]
    last_transaction_id: str


class CreateOrderResponse(Wire, frozen=True, kw_only=True):
    """201 of ``POST .../orders`` (and of the replace ``PUT``, with the replaced order's cancel)."""

    order_create_transaction: Transaction
    order_fill_transaction: Transaction | None = None
    order_cancel_transaction: Transaction | None = None
    order_reissue_transaction: Transaction | None = None
    order_reissue_reject_transaction: Transaction | None = None
    replacing_order_cancel_transaction: Transaction | None = None
    related_transaction_ids: list[str] = []
    last_transaction_id: str


class CancelOrderResponse(Wire, frozen=True, kw_only=True):
    """200 of ``PUT .../orders/{specifier}/cancel``."""

    order_cancel_transaction: Transaction
    related_transaction_ids: list[str] = []
    last_transaction_id: str


# --- trades and positions ------------------------------------------------------------------


class Trade(Wire, frozen=True, kw_only=True):
    """``GET .../openTrades`` / ``GET .../trades``: one trade (``currentUnits`` signed)."""

    id: str
    instrument: str
    price: Decimal
    open_time: Timestamp
    state: Literal["OPEN", "CLOSED", "CLOSE_WHEN_TRADEABLE"]
    initial_units: Decimal
    initial_margin_required: Decimal | None = None
    current_units: Decimal
    realized_pl: Decimal = Decimal(0)
    unrealized_pl: Decimal | None = None
    margin_used: Decimal | None = None
    average_close_price: Decimal | None = None
    closing_transaction_ids: list[str] | None = None
    financing: Decimal | None = None
    close_time: Timestamp | None = None
    client_extensions: ClientExtensions | None = None


class TradesResponse(Wire, frozen=True, kw_only=True):
    """``GET .../openTrades``."""

    trades: list[Trade]
    last_transaction_id: str


class PositionSide(Wire, frozen=True, kw_only=True):
    """The long or the short side of a position (``units`` positive for long, negative for short)."""

    units: Decimal
    average_price: Decimal | None = None
    trade_ids: list[str] | None = None
    pl: Decimal = Decimal(0)
    unrealized_pl: Decimal = Decimal(0)
    resettable_pl: Decimal = Decimal(0)
    financing: Decimal | None = None
    guaranteed_execution_fees: Decimal | None = None


class Position(Wire, frozen=True, kw_only=True):
    """One instrument's position: both sides (both non-zero only in a hedging account)."""

    instrument: str
    pl: Decimal = Decimal(0)
    unrealized_pl: Decimal = Decimal(0)
    margin_used: Decimal | None = None
    resettable_pl: Decimal = Decimal(0)
    financing: Decimal | None = None
    commission: Decimal | None = None
    guaranteed_execution_fees: Decimal | None = None
    long: PositionSide
    short: PositionSide


class PositionsResponse(Wire, frozen=True, kw_only=True):
    """``GET .../openPositions`` and ``GET .../positions``."""

    positions: list[Position]
    last_transaction_id: str


class ClosePositionBody(Wire, frozen=True, kw_only=True):
    """``PUT .../positions/{instrument}/close``: ``"ALL"``, ``"NONE"`` or a number of units per side."""

    long_units: str | None = None
    long_client_extensions: ClientExtensions | None = None
    short_units: str | None = None
    short_client_extensions: ClientExtensions | None = None


class ClosePositionResponse(Wire, frozen=True, kw_only=True):
    """200 of ``PUT .../positions/{instrument}/close``."""

    long_order_create_transaction: Transaction | None = None
    long_order_fill_transaction: Transaction | None = None
    long_order_cancel_transaction: Transaction | None = None
    short_order_create_transaction: Transaction | None = None
    short_order_fill_transaction: Transaction | None = None
    short_order_cancel_transaction: Transaction | None = None
    related_transaction_ids: list[str] = []
    last_transaction_id: str | None = None


# --- pricing -------------------------------------------------------------------------------


class ClientPrice(Wire, frozen=True, kw_only=True):
    """A ``PRICE`` (pricing stream line, and an entry of ``GET .../pricing``), or a ``HEARTBEAT`` line."""

    type: str | None = None
    """``PRICE`` or ``HEARTBEAT`` on the stream (absent in ``GET .../pricing``'s list: a price)."""
    instrument: str | None = None
    time: Timestamp
    status: str | None = None
    tradeable: bool | None = None
    bids: list[PriceBucket] = []
    asks: list[PriceBucket] = []
    closeout_bid: Decimal | None = None
    closeout_ask: Decimal | None = None


class PricingResponse(Wire, frozen=True, kw_only=True):
    """``GET .../pricing?instruments=``."""

    prices: list[ClientPrice]
    time: Timestamp | None = None
