"""The client's own copies of the API's response shapes, as msgspec structs.

They mirror the server's schemas (``src/brokerlink/api/*/schemas.py``, the OpenAPI document) without
importing them: decimals are :class:`~decimal.Decimal` (sent as strings), times are timezone-aware
:class:`~datetime.datetime` (RFC 3339). Enumerations are plain strings so a value a newer server adds
does not break an older client, and fields the client does not know are ignored. A subscription's
copy settings stay a JSON object (``dict``): the server checks them, the client passes them through.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

import msgspec

__all__ = [
    "Account",
    "Balance",
    "Consent",
    "ConsentScope",
    "CopyEvent",
    "Fill",
    "Instrument",
    "Order",
    "Page",
    "Position",
    "Quote",
    "Strategy",
    "Subscription",
    "SubscriptionSettings",
    "User",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEndpointCreated",
]

T = TypeVar("T")


class Model(msgspec.Struct, kw_only=True):
    """Base of the response shapes (unknown fields are ignored)."""


class Page(msgspec.Struct, Generic[T], kw_only=True):
    """One page of a list; pass ``next_after`` as ``after`` for the next one (None: the last page)."""

    data: list[T]
    next_after: str | None = None


class User(Model, kw_only=True):
    """The signed-in user (session authentication)."""

    id: str
    email: str
    display_name: str
    role: str
    created_at: datetime


class Account(Model, kw_only=True):
    """A linked trading account."""

    id: str
    connection_id: str
    broker: str
    venue_account_id: str
    name: str
    currency: str
    mode: str
    connection_status: str
    created_at: datetime


class Balance(Model, kw_only=True):
    """Cash and equity in one currency, as the broker last reported them."""

    currency: str
    cash: Decimal
    equity: Decimal
    buying_power: Decimal
    margin_used: Decimal
    ts: datetime


class Position(Model, kw_only=True):
    """An open position; ``mark_price`` and ``unrealized_pnl`` are None without a live quote."""

    symbol: str
    qty: Decimal
    avg_price: Decimal
    realized_pnl: Decimal
    mark_price: Decimal | None = None
    unrealized_pnl: Decimal | None = None


class Instrument(Model, kw_only=True):
    """An instrument the account can trade, with the broker's rules."""

    symbol: str
    venue_symbol: str
    asset_class: str
    base: str
    quote: str
    tick_size: Decimal
    qty_step: Decimal
    min_qty: Decimal
    max_qty: Decimal | None
    min_notional: Decimal
    contract_size: Decimal
    tradable: bool


class Quote(Model, kw_only=True):
    """Best bid and offer."""

    symbol: str
    bid: Decimal
    ask: Decimal
    bid_size: Decimal
    ask_size: Decimal
    ts: datetime


class Order(Model, kw_only=True):
    """An order and where it stands (``status``: new, accepted, partially_filled, filled, cancelled...)."""

    id: str
    client_order_id: str
    account_id: str
    symbol: str
    side: str
    qty: Decimal
    type: str
    tif: str
    limit_price: Decimal | None
    stop_price: Decimal | None
    status: str
    filled_qty: Decimal
    avg_fill_price: Decimal | None
    venue_order_id: str | None
    reject_reason: str | None
    created_at: datetime
    updated_at: datetime


class Fill(Model, kw_only=True):
    """One execution."""

    trade_id: str
    order_id: str | None
    client_order_id: str | None
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str | None
    ts: datetime


class Strategy(Model, kw_only=True):
    """A copy-trading strategy; ``account_id`` is shown to its provider only."""

    id: str
    name: str
    description: str
    visibility: str
    status: str
    min_follower_equity: Decimal | None
    is_mine: bool
    account_id: str | None
    created_at: datetime
    updated_at: datetime


class Subscription(Model, kw_only=True):
    """A subscription to a strategy. ``etag`` is the response's ETag (not a body field): send it back
    as ``if_match`` to change the subscription."""

    id: str
    strategy_id: str
    account_id: str
    status: str
    version: int
    settings: dict[str, Any]
    start_equity: Decimal | None
    created_at: datetime
    updated_at: datetime
    stopped_at: datetime | None
    etag: str | None = None


class SubscriptionSettings(Model, kw_only=True):
    """A subscription's copy settings (a JSON object, as the server renders them) and their ETag."""

    settings: dict[str, Any]
    etag: str | None = None


class CopyEvent(Model, kw_only=True):
    """Something that happened to a subscription; ``reason`` is a stable code for skips and rejections."""

    id: str
    kind: str
    reason: str | None
    detail: str
    signal_id: str | None
    intent_id: str | None
    created_at: datetime


class ConsentScope(Model, kw_only=True):
    """A granted scope and what it lets the app do."""

    scope: str
    description: str


class Consent(Model, kw_only=True):
    """A user's consent to an app: which app, what it may do, on which accounts, until when."""

    id: str
    client_id: str
    client_name: str
    status: str
    scopes: list[ConsentScope]
    account_ids: list[str]
    created_at: datetime
    decided_at: datetime | None
    expires_at: datetime
    revoked_at: datetime | None


class WebhookEndpoint(Model, kw_only=True):
    """A webhook endpoint (its signing secret is shown only when it is created)."""

    id: str
    url: str
    description: str
    event_types: list[str]
    status: str
    disabled_reason: str | None
    disabled_at: datetime | None
    created_at: datetime
    updated_at: datetime


class WebhookEndpointCreated(WebhookEndpoint, kw_only=True):
    """A new endpoint and its signing secret (``whsec_...``), shown this once."""

    secret: str


class WebhookAttempt(Model, kw_only=True):
    """One HTTP attempt of a delivery."""

    number: int
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class WebhookDelivery(Model, kw_only=True):
    """One event sent to an endpoint, with its attempts."""

    id: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    attempt_log: list[WebhookAttempt] = msgspec.field(default_factory=list)
