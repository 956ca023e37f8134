"""Domain events: what a broker adapter reports, normalized. Frozen, tagged, idempotent.

Every event is a frozen msgspec struct in one tagged union (:data:`DomainEvent`, tag field ``"type"``),
so a consumer decodes one JSON document without knowing in advance what it holds. Quantities and
money are ``Decimal`` and travel as JSON strings (``"0.00000001"`` stays exactly that); times are
timezone-aware UTC and travel as RFC 3339 with ``Z``. Naive or non-UTC times and non-finite
decimals are refused at construction and at decoding, so nothing downstream has to re-check.

Every event carries ``account_id``, ``ts`` (when brokerlink observed it) and ``venue_ts`` (when
the venue says it happened, if it says). Order events carry the order's ``client_order_id``, the
idempotency key everywhere.

``dedupe_key`` names what makes an event "the same event" when it arrives twice (stream and REST
poll, redelivery after a reconnect, the sim's duplicated-events fault). For fills it is
``(account_id, trade_id)`` and it is load-bearing: applying a fill twice would double-count. For
every other event a second application is a no-op in the order state machine anyway
(``brokerlink.domain.orders``), so their keys only spare consumers redundant work.

Unknown fields are ignored on decoding (unlike the models): events are persisted and cross nodes,
and during a rolling upgrade an older node must still read what a newer one wrote.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, TypeAlias

import msgspec

from brokerlink.domain.enums import ConnectionState, Side
from brokerlink.domain.models import Balance, Position
from brokerlink.kit.errors import InvalidInput

_ZERO = Decimal(0)
_UTC_OFFSET = timedelta(0)

Liquidity: TypeAlias = Literal["maker", "taker"]
"""Whether a fill added liquidity (maker, often a rebate) or took it (taker)."""

DedupeKey: TypeAlias = tuple[str, ...]
"""A hashable identity; the first element is always the event's tag, so keys of different kinds never collide."""


def _check_value(owner: str, name: str, value: Any) -> None:
    if isinstance(value, Decimal) and not value.is_finite():
        raise ValueError(f"{owner}.{name} must be a finite decimal, got {value}")
    if isinstance(value, datetime) and value.utcoffset() != _UTC_OFFSET:
        raise ValueError(f"{owner}.{name} must be a timezone-aware UTC datetime, got {value.isoformat()}")
    if isinstance(value, msgspec.Struct):
        # Nested models (Position, Balance) do not validate themselves; an event must not carry a NaN inside.
        for field in value.__struct_fields__:
            _check_value(type(value).__name__, field, getattr(value, field))


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every domain event: the account it concerns and when it happened."""

    account_id: str
    ts: datetime
    """When brokerlink observed the event (UTC)."""
    venue_ts: datetime | None = None
    """When the venue says it happened (UTC), if the venue says."""

    def __post_init__(self) -> None:
        for field in self.__struct_fields__:
            _check_value(type(self).__name__, field, getattr(self, field))

    @property
    def tag(self) -> str:
        """The wire tag (the JSON ``type`` member), e.g. ``"order_filled"``."""
        return str(self.__struct_config__.tag)

    @property
    def dedupe_key(self) -> DedupeKey:
        """What makes two deliveries the same event. Subclasses narrow it to their natural ids."""
        return (self.tag, self.account_id, self.ts.isoformat())


class OrderEvent(Event, frozen=True, kw_only=True):
    """Base of the events about one order."""

    client_order_id: str
    """The order's idempotency key. Adapters synthesize one deterministically for orders placed outside brokerlink."""
    venue_order_id: str | None = None

    @property
    def dedupe_key(self) -> DedupeKey:
        # Events that happen at most once per order (accepted, rejected, canceled, expired, triggered).
        return (self.tag, self.account_id, self.client_order_id)


class OrderAccepted(OrderEvent, frozen=True, kw_only=True, tag="order_accepted"):
    """The venue acknowledged the order and it is working."""

    venue_order_id: str


class OrderRejected(OrderEvent, frozen=True, kw_only=True, tag="order_rejected"):
    """The venue refused the order; it never worked."""

    reason: str


class OrderUpdated(OrderEvent, frozen=True, kw_only=True, tag="order_updated"):
    """The venue confirmed a modification. ``None`` means "unchanged", never "removed"."""

    qty: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None

    @property
    def dedupe_key(self) -> DedupeKey:
        # An order may be modified many times; the new values and the time identify one modification.
        when = (self.venue_ts or self.ts).isoformat()
        return (self.tag, self.account_id, self.client_order_id, str(self.qty), str(self.limit_price),
                str(self.stop_price), when)  # fmt: skip


class OrderCancelRequested(OrderEvent, frozen=True, kw_only=True, tag="order_cancel_requested"):
    """brokerlink sent a cancel request; the order is pending cancel until the venue answers."""

    @property
    def dedupe_key(self) -> DedupeKey:
        return (self.tag, self.account_id, self.client_order_id, self.ts.isoformat())


class OrderCancelRejected(OrderEvent, frozen=True, kw_only=True, tag="order_cancel_rejected"):
    """The venue refused a cancel request (usually: too late, the order already finished)."""

    reason: str

    @property
    def dedupe_key(self) -> DedupeKey:
        return (self.tag, self.account_id, self.client_order_id, (self.venue_ts or self.ts).isoformat())


class OrderCanceled(OrderEvent, frozen=True, kw_only=True, tag="order_canceled"):
    """The venue canceled the rest of the order (on request, or unsolicited)."""

    reason: str | None = None


class OrderExpired(OrderEvent, frozen=True, kw_only=True, tag="order_expired"):
    """The order's time in force ran out (day order at the close, IOC/FOK remainder)."""


class OrderTriggered(OrderEvent, frozen=True, kw_only=True, tag="order_triggered"):
    """A stop or stop-limit order's stop price was reached; it now works as a market or limit order."""


class OrderFilled(OrderEvent, frozen=True, kw_only=True, tag="order_filled"):
    """One execution of an order. ``trade_id`` is unique per venue and identifies the fill."""

    trade_id: str
    symbol: str
    side: Side
    last_qty: Decimal
    """Quantity of this execution (not cumulative)."""
    last_price: Decimal
    commission: Decimal = _ZERO
    """Positive is a cost, negative a rebate."""
    commission_currency: str | None = None
    liquidity: Liquidity | None = None

    @property
    def dedupe_key(self) -> DedupeKey:
        # The same fill arrives over the stream and over REST; the venue's trade id is the only stable identity.
        return (self.tag, self.account_id, self.trade_id)


class PositionUpdated(Event, frozen=True, kw_only=True, tag="position_updated"):
    """The venue reported a position (a snapshot: applying it twice gives the same result)."""

    position: Position

    @property
    def dedupe_key(self) -> DedupeKey:
        return (self.tag, self.account_id, self.position.symbol, (self.venue_ts or self.ts).isoformat())


class AccountUpdated(Event, frozen=True, kw_only=True, tag="account_updated"):
    """The venue reported the account's balance in one currency (a snapshot)."""

    balance: Balance

    @property
    def dedupe_key(self) -> DedupeKey:
        return (self.tag, self.account_id, self.balance.currency, (self.venue_ts or self.ts).isoformat())


class ConnectionChanged(Event, frozen=True, kw_only=True, tag="connection_changed"):
    """The link to the broker changed state.

    ``gap_possible`` says events may have been missed (a disconnect, a sequence gap): consumers must
    reconcile from the adapter's reports before trusting their state again.
    """

    state: ConnectionState
    gap_possible: bool = False
    reason: str | None = None

    @property
    def dedupe_key(self) -> DedupeKey:
        return (self.tag, self.account_id, str(self.state), self.ts.isoformat())


OrderEventType: TypeAlias = (
    OrderAccepted
    | OrderRejected
    | OrderUpdated
    | OrderCancelRequested
    | OrderCancelRejected
    | OrderCanceled
    | OrderExpired
    | OrderTriggered
    | OrderFilled
)
"""The events the order state machine consumes."""

DomainEvent: TypeAlias = OrderEventType | PositionUpdated | AccountUpdated | ConnectionChanged
"""Every domain event, as one tagged union."""

EVENT_TYPES: tuple[type[Event], ...] = (
    OrderAccepted,
    OrderRejected,
    OrderUpdated,
    OrderCancelRequested,
    OrderCancelRejected,
    OrderCanceled,
    OrderExpired,
    OrderTriggered,
    OrderFilled,
    PositionUpdated,
    AccountUpdated,
    ConnectionChanged,
)
"""Every concrete event class, for registries and exhaustive tests."""

# Decimals are encoded as strings (msgspec's default, stated here so it cannot drift).
_ENCODER = msgspec.json.Encoder(decimal_format="string")
_DECODER: msgspec.json.Decoder[DomainEvent] = msgspec.json.Decoder(DomainEvent)


def encode_event(event: DomainEvent) -> bytes:
    """Encode an event as JSON: ``{"type": "<tag>", ...}``, decimals as strings, times as UTC RFC 3339."""
    return _ENCODER.encode(event)


def decode_event(data: bytes) -> DomainEvent:
    """Decode JSON produced by :func:`encode_event` (or an adapter) into the right event class.

    Raises :class:`~brokerlink.kit.errors.InvalidInput` for malformed JSON, an unknown ``type``, a
    missing field, a non-finite decimal or a time that is not UTC.
    """
    try:
        return _DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidInput(f"not a valid domain event: {exc}") from exc
