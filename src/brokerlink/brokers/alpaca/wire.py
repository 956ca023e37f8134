"""Alpaca's documented wire format in code: Trading API v2, the ``trade_updates`` stream, Market Data.

Both the adapter and the test venue (:mod:`brokerlink.brokers.alpaca.venue`) use these structs, so
what the venue sends is exactly what the adapter reads. Field names, string decimals and status
values follow Alpaca's public reference (github.com/alpacahq/alpaca-docs, ``data/webapi/entities``
and ``content/api-references/trading-api``); the examples in ``tests/brokers/alpaca/examples`` are
taken from there and decode with these structs.

Response structs do not forbid unknown fields: Alpaca adds fields over time and a client must keep
reading. Trading API decimals are JSON strings; market data prices and sizes are JSON numbers,
which msgspec decodes into :class:`~decimal.Decimal` from their text, without a binary float.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import IntEnum
from typing import Any, Literal

import msgspec

PAPER_URL = "https://paper-api.alpaca.markets"
LIVE_URL = "https://api.alpaca.markets"
DATA_URL = "https://data.alpaca.markets"
DATA_STREAM_URL = "wss://stream.data.alpaca.markets"
ALPACA_HOSTS = frozenset({"paper-api.alpaca.markets", "api.alpaca.markets"})
"""Trading API hosts; for them market data lives on :data:`DATA_URL` / :data:`DATA_STREAM_URL`."""

HEADER_KEY_ID = "APCA-API-KEY-ID"
HEADER_SECRET_KEY = "APCA-API-SECRET-KEY"  # noqa: S105 - a header name

TRADING_STREAM_PATH = "/stream"
STOCK_STREAM_PATH = "/v2/iex"
"""The free IEX feed; ``/v2/sip`` is the paid consolidated one (option ``stock_feed``)."""
CRYPTO_STREAM_PATH = "/v1beta3/crypto/us"
STOCK_LATEST_QUOTES_PATH = "/v2/stocks/quotes/latest"
CRYPTO_LATEST_QUOTES_PATH = "/v1beta3/crypto/us/latest/quotes"

MAX_CLIENT_ORDER_ID = 48
"""``client_order_id``: "string (<= 48 characters)" (orders endpoint reference)."""
MAX_ACTIVITIES_PAGE = 100
"""``page_size`` of account activities: "the default and maximum value is 100"."""
MAX_ORDERS_PAGE = 500

AssetClass = Literal["us_equity", "crypto", "us_option"]
OrderSide = Literal["buy", "sell"]
OrderTypeWire = Literal["market", "limit", "stop", "stop_limit", "trailing_stop"]
TimeInForceWire = Literal["day", "gtc", "opg", "cls", "ioc", "fok"]


class ErrorCode(IntEnum):
    """The ``code`` of Alpaca's ``{"code", "message"}`` error bodies (status * 100000 + detail)."""

    INVALID_REQUEST = 40010001
    """Malformed or invalid parameters; also ``client_order_id must be unique`` (HTTP 422)."""
    UNAUTHORIZED = 40110000
    FORBIDDEN = 40310000
    """Insufficient buying power or quantity (HTTP 403)."""
    NOT_FOUND = 40410000
    UNPROCESSABLE = 42210000
    """E.g. ``order is not cancelable`` (HTTP 422)."""
    RATE_LIMITED = 42910000
    INTERNAL = 50010000


class ErrorBody(msgspec.Struct, frozen=True):
    """Every error answer of the Trading API."""

    code: int | None = None
    message: str = ""


# --- requests ---------------------------------------------------------------------------------


class NewOrder(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """``POST /v2/orders``. Exactly one of ``qty`` and ``notional``."""

    symbol: str
    side: OrderSide
    type: OrderTypeWire
    time_in_force: TimeInForceWire
    qty: Decimal | None = None
    notional: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    extended_hours: bool = False
    client_order_id: str | None = None
    order_class: str | None = None
    take_profit: dict[str, Any] | None = None
    stop_loss: dict[str, Any] | None = None


class ReplaceOrder(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """``PATCH /v2/orders/{order_id}``: each field given overrides the order's; the answer is a new order."""

    qty: Decimal | None = None
    time_in_force: TimeInForceWire | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail: Decimal | None = None
    client_order_id: str | None = None


# --- responses --------------------------------------------------------------------------------


class Order(msgspec.Struct, frozen=True, kw_only=True):
    """The order entity (``order-v2``), as every order endpoint and ``trade_updates`` carry it."""

    id: str
    client_order_id: str
    created_at: datetime
    updated_at: datetime | None = None
    submitted_at: datetime | None = None
    filled_at: datetime | None = None
    expired_at: datetime | None = None
    canceled_at: datetime | None = None
    cancel_requested_at: datetime | None = None
    failed_at: datetime | None = None
    replaced_at: datetime | None = None
    replaced_by: str | None = None
    replaces: str | None = None
    asset_id: str | None = None
    symbol: str
    asset_class: str | None = None
    notional: Decimal | None = None
    qty: Decimal | None = None
    filled_qty: Decimal = Decimal(0)
    filled_avg_price: Decimal | None = None
    order_class: str = ""
    order_type: str | None = None
    type: str
    side: OrderSide
    time_in_force: str
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    status: str
    extended_hours: bool = False
    legs: list[Order] | None = None
    trail_percent: Decimal | None = None
    trail_price: Decimal | None = None
    hwm: Decimal | None = None


class CancelResult(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of ``DELETE /v2/orders`` (HTTP 207): the order id and the status of its cancel request."""

    id: str
    status: int
    body: Order | None = None


class Account(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /v2/account`` (``account-v2``). Only a few fields are certain to be present."""

    id: str
    account_number: str
    status: str
    currency: str = "USD"
    cash: Decimal
    equity: Decimal | None = None
    buying_power: Decimal | None = None
    portfolio_value: Decimal | None = None
    regt_buying_power: Decimal | None = None
    daytrading_buying_power: Decimal | None = None
    non_marginable_buying_power: Decimal | None = None
    long_market_value: Decimal | None = None
    short_market_value: Decimal | None = None
    initial_margin: Decimal | None = None
    maintenance_margin: Decimal | None = None
    last_maintenance_margin: Decimal | None = None
    last_equity: Decimal | None = None
    sma: Decimal | None = None
    multiplier: Decimal | None = None
    daytrade_count: int | None = None
    pattern_day_trader: bool | None = None
    shorting_enabled: bool | None = None
    trading_blocked: bool = False
    transfers_blocked: bool = False
    account_blocked: bool = False
    trade_suspended_by_user: bool = False
    created_at: datetime | None = None
    crypto_status: str | None = None


class Asset(msgspec.Struct, frozen=True, kw_only=True, rename={"asset_class": "class"}):
    """``GET /v2/assets`` (``asset-v2``, ``asset-crypto-v2``): the increments exist for crypto only."""

    id: str
    asset_class: str
    exchange: str
    symbol: str
    name: str | None = None
    status: str
    tradable: bool
    marginable: bool = False
    shortable: bool = False
    easy_to_borrow: bool = False
    fractionable: bool = False
    min_order_size: Decimal | None = None
    min_trade_increment: Decimal | None = None
    price_increment: Decimal | None = None
    maintenance_margin_requirement: Decimal | None = None
    attributes: list[str] | None = None


class Position(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /v2/positions`` entry. ``qty`` is negative for a short position (``side`` ``"short"``)."""

    asset_id: str
    symbol: str
    exchange: str
    asset_class: str
    avg_entry_price: Decimal
    qty: Decimal
    qty_available: Decimal | None = None
    side: Literal["long", "short"]
    market_value: Decimal | None = None
    cost_basis: Decimal
    unrealized_pl: Decimal | None = None
    unrealized_plpc: Decimal | None = None
    unrealized_intraday_pl: Decimal | None = None
    unrealized_intraday_plpc: Decimal | None = None
    current_price: Decimal | None = None
    lastday_price: Decimal | None = None
    change_today: Decimal | None = None


class TradeActivity(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /v2/account/activities/FILL`` entry. ``id`` is ``"<date>::<uuid>"`` and serves as ``page_token``."""

    activity_type: Literal["FILL"]
    id: str
    cum_qty: Decimal
    leaves_qty: Decimal
    price: Decimal
    qty: Decimal
    side: OrderSide
    symbol: str
    transaction_time: datetime
    order_id: str
    type: Literal["fill", "partial_fill"]
    order_status: str | None = None


# --- the trading stream (wss://paper-api.alpaca.markets/stream) ---------------------------------


class StreamMessage(msgspec.Struct, frozen=True):
    """Every server message: ``{"stream": "authorization" | "listening" | "trade_updates", "data": {...}}``."""

    stream: str
    data: msgspec.Raw = msgspec.Raw(b"null")


class AuthorizationData(msgspec.Struct, frozen=True):
    """``authorization`` data: ``status`` is ``authorized`` or ``unauthorized``."""

    status: str
    action: str = "authenticate"


class ListeningData(msgspec.Struct, frozen=True):
    """``listening`` data: the streams the connection listens to now."""

    streams: list[str]


class TradeUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """``trade_updates`` data: ``qty`` and ``price`` are this execution's (``fill``, ``partial_fill``)."""

    event: str
    order: Order
    execution_id: str | None = None
    timestamp: datetime | None = None
    price: Decimal | None = None
    qty: Decimal | None = None
    position_qty: Decimal | None = None


class ClientAction(msgspec.Struct, frozen=True, kw_only=True):
    """A client message on the trading stream or a market data stream.

    Trading stream: ``{"action": "auth", "key", "secret"}`` (or the older ``{"action": "authenticate",
    "data": {"key_id", "secret_key"}}``), then ``{"action": "listen", "data": {"streams": [...]}}``.
    Market data: ``{"action": "auth", "key", "secret"}``, ``{"action": "subscribe" | "unsubscribe",
    "trades": [...], "quotes": [...], "bars": [...]}``.
    """

    action: str
    key: str | None = None
    secret: str | None = None
    data: dict[str, Any] | None = None
    trades: list[str] | None = None
    quotes: list[str] | None = None
    bars: list[str] | None = None


# --- market data (stream.data.alpaca.markets, data.alpaca.markets) --------------------------------

MarketKind = Literal["stock", "crypto"]


class MdKind(msgspec.Struct, frozen=True):
    """Just the ``T`` of one market data message, to pick the struct that reads the rest."""

    T: str


class MdControl(msgspec.Struct, frozen=True, kw_only=True):
    """``{"T": "success", "msg"}`` and ``{"T": "error", "code", "msg"}``."""

    T: str
    msg: str = ""
    code: int | None = None


class MdSubscription(msgspec.Struct, frozen=True, kw_only=True):
    """``{"T": "subscription", "trades", "quotes", "bars"}``: the whole current subscription."""

    T: Literal["subscription"] = "subscription"
    trades: list[str] = []
    quotes: list[str] = []
    bars: list[str] = []


class MdQuote(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename={"ask_size": "as"}):
    """A quote (``"T": "q"``). Stocks also carry exchange codes, conditions and tape."""

    T: Literal["q"]
    S: str
    bp: Decimal
    bs: Decimal
    ap: Decimal
    ask_size: Decimal
    t: datetime
    bx: str | None = None
    ax: str | None = None
    c: list[str] | None = None
    z: str | None = None


class MdTrade(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A trade (``"T": "t"``); ``tks`` (crypto) is the taker side, ``B`` or ``S``."""

    T: Literal["t"]
    S: str
    i: int
    p: Decimal
    s: Decimal
    t: datetime
    x: str | None = None
    c: list[str] | None = None
    z: str | None = None
    tks: str | None = None


class LatestQuote(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename={"ask_size": "as"}):
    """One quote of ``GET .../latest/quotes?symbols=`` (no ``T`` nor ``S``: the symbol is the key)."""

    bp: Decimal
    bs: Decimal
    ap: Decimal
    ask_size: Decimal
    t: datetime
    bx: str | None = None
    ax: str | None = None
    c: list[str] | None = None
    z: str | None = None


class LatestQuotes(msgspec.Struct, frozen=True):
    """``GET /v2/stocks/quotes/latest`` and ``GET /v1beta3/crypto/us/latest/quotes``."""

    quotes: dict[str, LatestQuote]


MD_ENCODER = msgspec.json.Encoder(decimal_format="number")
"""Market data travels with JSON numbers, as Alpaca sends it (the Trading API uses strings)."""
