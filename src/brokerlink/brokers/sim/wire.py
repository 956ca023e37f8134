"""The sim venue's wire protocol in code: bodies, error codes and request signing.

Both sides import this module (the venue in ``brokerlink.brokers.sim.venue``, the adapter in
``brokerlink.brokers.sim.adapter``), so the JSON they exchange cannot drift apart. The protocol
itself is described in docs/adr/0006-sim-wire-protocol.md. Decimals travel as JSON strings.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

import msgspec

from brokerlink.domain.enums import AccountMode, AssetClass, OrderStatus, OrderType, Side, TimeInForce

API_PREFIX = "/api/v1"
HEADER_API_KEY = "x-sim-api-key"
HEADER_TIMESTAMP = "x-sim-timestamp"
HEADER_SIGNATURE = "x-sim-signature"
HEADER_RECV_WINDOW = "x-sim-recv-window"
DEFAULT_RECV_WINDOW_MS = 5_000
MAX_RECV_WINDOW_MS = 60_000

ClientOrderId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]


class ErrorCode(StrEnum):
    """Error codes in the venue's ``{"code", "message"}`` bodies (ADR 0006 maps them to adapter errors)."""

    AUTH_FAILED = "auth_failed"
    BAD_SIGNATURE = "bad_signature"
    TIMESTAMP_OUTSIDE_RECV_WINDOW = "timestamp_outside_recv_window"
    INVALID_ORDER = "invalid_order"
    UNKNOWN_ORDER = "unknown_order"
    DUPLICATE_CLIENT_ORDER_ID = "duplicate_client_order_id"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    MARKET_CLOSED = "market_closed"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class ErrorBody(msgspec.Struct, frozen=True):
    """Every error response."""

    code: ErrorCode
    message: str


class WireStruct(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of request bodies the venue accepts: unknown fields are an ``invalid_order``."""


class NewOrder(WireStruct, frozen=True, kw_only=True):
    """``POST /orders``."""

    client_order_id: ClientOrderId
    symbol: str
    side: Side
    qty: Decimal
    type: OrderType
    tif: TimeInForce = TimeInForce.GTC
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None


class AmendOrder(WireStruct, frozen=True, kw_only=True):
    """``PATCH /orders/by-client-id/{client_order_id}``: fields left out stay as they are."""

    qty: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None


class OrderBody(msgspec.Struct, frozen=True, kw_only=True):
    """An order as the venue reports it."""

    order_id: str
    client_order_id: str
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
    reject_reason: str | None = None
    created_at: datetime
    updated_at: datetime


class FillBody(msgspec.Struct, frozen=True, kw_only=True):
    """One execution of one of the account's orders."""

    id: int
    """Increasing per venue: the ``since_id`` cursor."""
    execution_id: str
    order_id: str
    client_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    commission: Decimal
    commission_currency: str
    liquidity: Literal["maker", "taker"]
    ts: datetime


class FillsPage(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /fills?since_id=``."""

    fills: list[FillBody]
    next_since_id: int | None


class AccountBody(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /account``."""

    account_id: str
    currency: str
    mode: AccountMode
    cash: Decimal
    equity: Decimal
    buying_power: Decimal
    margin_used: Decimal
    ts: datetime


class PositionBody(msgspec.Struct, frozen=True, kw_only=True):
    """One open position (one per symbol when netting; per position id when hedging)."""

    position_id: str
    symbol: str
    qty: Decimal
    """Signed: long > 0."""
    avg_price: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal


class InstrumentBody(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /instruments``."""

    symbol: str
    base: str
    quote: str
    asset_class: AssetClass
    tick_size: Decimal
    qty_step: Decimal
    min_qty: Decimal
    max_qty: Decimal | None
    min_notional: Decimal
    contract_size: Decimal
    tradable: bool


class QuoteBody(msgspec.Struct, frozen=True, kw_only=True):
    """Top of book (REST and the ``quotes:`` channel)."""

    symbol: str
    bid: Decimal
    ask: Decimal
    bid_size: Decimal
    ask_size: Decimal
    ts: datetime


class DepthBody(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /depth/{symbol}``: levels best first, and the update id the snapshot reflects."""

    symbol: str
    bids: list[tuple[Decimal, Decimal]]
    asks: list[tuple[Decimal, Decimal]]
    last_update_id: int


class DepthDiff(msgspec.Struct, frozen=True, kw_only=True, rename={"first_update_id": "U", "last_update_id": "u"}):
    """A ``depth:`` channel message: levels whose total changed; quantity ``0`` removes the level."""

    first_update_id: int
    last_update_id: int
    bids: list[tuple[Decimal, Decimal]]
    asks: list[tuple[Decimal, Decimal]]


class TradeBody(msgspec.Struct, frozen=True, kw_only=True):
    """A ``trades:SYM`` channel message: one public trade print (the taker's side is the aggressor)."""

    trade_id: str
    price: Decimal
    size: Decimal
    aggressor: Side
    ts: datetime


TradeUpdateEvent = Literal["new", "fill", "partial_fill", "canceled", "expired", "replaced", "rejected", "triggered"]


class TradeUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """A ``trade_updates`` channel message about one of the account's orders."""

    event: TradeUpdateEvent
    order: OrderBody
    execution_id: str | None = None
    qty: Decimal | None = None
    price: Decimal | None = None
    commission: Decimal | None = None
    commission_currency: str | None = None
    liquidity: Literal["maker", "taker"] | None = None
    position_qty: Decimal | None = None
    reason: str | None = None


def signature_payload(timestamp_ms: int, method: str, path_with_query: str, body: bytes) -> bytes:
    """The bytes an HMAC signature covers: timestamp, method, path with query, body."""
    return f"{timestamp_ms}{method.upper()}{path_with_query}".encode() + body


def sign(secret: str, timestamp_ms: int, method: str, path_with_query: str, body: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of :func:`signature_payload` under ``secret``."""
    payload = signature_payload(timestamp_ms, method, path_with_query, body)
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def signature_matches(
    secret: str, signature: str, *, timestamp_ms: int, method: str, path_with_query: str, body: bytes
) -> bool:
    """Constant-time check of a request signature."""
    expected = sign(secret, timestamp_ms, method, path_with_query, body)
    return hmac.compare_digest(expected, signature.lower())
