"""Copy trading as stored: strategies, subscriptions, consumed provider fills, links, the order outbox
and the events a follower sees (DESIGN.md, "Copy trading"). Frozen msgspec structs; no I/O.

Field names are the column names of the matching tables, so the store converts in both directions
without a field-by-field copy. Quantities and money are ``Decimal``; times are aware UTC.

Two state machines live here as data, so the store applies them in one conditional UPDATE and a
stale or repeated report can never move a row backwards:

- :data:`SUBSCRIPTION_TRANSITIONS`: ``active``, ``paused`` and ``close_only`` move freely among
  themselves; any of them can stop; ``stopped`` is final (a new subscription starts over).
- :data:`INTENT_TRANSITIONS`: an outbox intent moves forward from ``pending`` through ``sent`` and
  ``acknowledged`` to an outcome. The venue is the truth, so an acknowledgement or a fill may arrive
  for an intent still marked ``pending`` (the engine died between sending and recording it). A
  ``sent`` intent may be sent again with the same client order id (the venue deduplicates) or go
  back to ``pending`` when the adapter proved nothing reached the broker. Late fills may complete a
  ``canceled`` intent, as in the order state machine (``brokerlink.domain.orders``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType

from brokerlink.domain.enums import Side, TimeInForce
from brokerlink.domain.models import DomainModel


class StrategyVisibility(StrEnum):
    """Who can find and follow a strategy."""

    PUBLIC = "public"
    """Listed in the directory; anyone may follow."""
    UNLISTED = "unlisted"
    """Not listed; anyone who knows its id may follow."""
    PRIVATE = "private"
    """Only its provider sees it."""


class StrategyStatus(StrEnum):
    """Whether a strategy still emits signals."""

    ACTIVE = "active"
    CLOSED = "closed"


class SubscriptionStatus(StrEnum):
    """What the engine does with a subscription's signals."""

    ACTIVE = "active"
    PAUSED = "paused"
    """No new copies; what is open stays open."""
    CLOSE_ONLY = "close_only"
    """Reductions and closes are copied, opens and increases are not."""
    STOPPED = "stopped"
    """Final: nothing is copied any more."""

    def can_become(self, target: SubscriptionStatus) -> bool:
        """Whether :data:`SUBSCRIPTION_TRANSITIONS` allows moving from this status to ``target``."""
        return target in SUBSCRIPTION_TRANSITIONS[self]


_LIVE = frozenset({SubscriptionStatus.ACTIVE, SubscriptionStatus.PAUSED, SubscriptionStatus.CLOSE_ONLY})

SUBSCRIPTION_TRANSITIONS: Mapping[SubscriptionStatus, frozenset[SubscriptionStatus]] = MappingProxyType(
    {
        **{status: (_LIVE - {status}) | {SubscriptionStatus.STOPPED} for status in _LIVE},
        SubscriptionStatus.STOPPED: frozenset(),
    }
)
"""The status changes a subscription accepts (a status is not a change to itself)."""

LIVE_SUBSCRIPTION_STATUSES: frozenset[SubscriptionStatus] = _LIVE
"""Every status but ``stopped``: the subscriptions the engine still has to look at."""


class LinkStatus(StrEnum):
    """Whether a link still holds a follower position."""

    OPEN = "open"
    CLOSED = "closed"


class IntentAction(StrEnum):
    """What a follower order does to its link."""

    OPEN = "open"
    INCREASE = "increase"
    REDUCE = "reduce"
    CLOSE = "close"
    STOP_LOSS = "stop_loss"
    """A protective stop on the link's closing side, mirroring the provider's (ADR 0027). It moves the
    link only when it fills; it is cancelled and replaced, never modified, when the provider's moves."""
    TAKE_PROFIT = "take_profit"
    """A protective limit on the link's closing side, mirroring the provider's take-profit (ADR 0027)."""

    @property
    def is_protective(self) -> bool:
        """Whether this is a resting stop-loss or take-profit rather than a trade planned from a fill."""
        return self in PROTECTIVE_ACTIONS


PROTECTIVE_ACTIONS: frozenset[IntentAction] = frozenset({IntentAction.STOP_LOSS, IntentAction.TAKE_PROFIT})
"""The intents that rest at the follower's venue as protective orders (ADR 0027)."""
TRADE_ACTIONS: frozenset[IntentAction] = frozenset(
    {IntentAction.OPEN, IntentAction.INCREASE, IntentAction.REDUCE, IntentAction.CLOSE}
)
"""The intents planned from provider fills: they move the link when planned."""


class CopyOrderType(StrEnum):
    """The order types a copy uses: market; limit for the slippage guard's price cap or a take-profit;
    stop for a stop-loss (its trigger price travels in ``limit_price``, see :class:`CopyIntent`)."""

    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"


class IntentStatus(StrEnum):
    """Where an outbox intent stands. ``filled``, ``rejected`` and ``failed`` are final."""

    PENDING = "pending"
    """Written, not yet handed to the adapter (or handed, but the engine died before recording it)."""
    SENT = "sent"
    """Handed to the adapter; the outcome is not known yet."""
    ACKNOWLEDGED = "acknowledged"
    FILLED = "filled"
    REJECTED = "rejected"
    """Refused by the broker (or by the adapter before sending, for a definitive reason)."""
    CANCELED = "canceled"
    """Ended at the venue without filling completely (canceled, expired, an IOC remainder)."""
    FAILED = "failed"
    """The engine gave up (too many attempts, an outcome that lookup could not resolve)."""

    def can_become(self, target: IntentStatus) -> bool:
        """Whether :data:`INTENT_TRANSITIONS` allows moving from this status to ``target``."""
        return target in INTENT_TRANSITIONS[self]


_S = IntentStatus
INTENT_TRANSITIONS: Mapping[IntentStatus, frozenset[IntentStatus]] = MappingProxyType(
    {
        _S.PENDING: frozenset({_S.SENT, _S.ACKNOWLEDGED, _S.FILLED, _S.REJECTED, _S.CANCELED, _S.FAILED}),
        # SENT -> SENT is a resend with the same client order id; SENT -> PENDING a proven non-send.
        _S.SENT: frozenset({_S.SENT, _S.PENDING, _S.ACKNOWLEDGED, _S.FILLED, _S.REJECTED, _S.CANCELED, _S.FAILED}),
        _S.ACKNOWLEDGED: frozenset({_S.FILLED, _S.REJECTED, _S.CANCELED}),
        _S.CANCELED: frozenset({_S.FILLED}),
        _S.FILLED: frozenset(),
        _S.REJECTED: frozenset(),
        _S.FAILED: frozenset(),
    }
)
"""The status changes an outbox intent accepts."""


def intent_sources(target: IntentStatus) -> frozenset[IntentStatus]:
    """The statuses from which an intent may move to ``target``."""
    return frozenset(source for source, targets in INTENT_TRANSITIONS.items() if target in targets)


class CopyEventKind(StrEnum):
    """What happened to a subscription, as its follower sees it. ``reason`` refines it."""

    SUBSCRIBED = "subscribed"
    COPIED = "copied"
    SKIPPED = "skipped"
    REJECTED = "rejected"
    FAILED = "failed"
    GUARD_TRIPPED = "guard_tripped"
    PAUSED = "paused"
    RESUMED = "resumed"
    CLOSE_ONLY = "close_only"
    STOPPED = "stopped"
    SETTINGS_CHANGED = "settings_changed"
    RECONCILED = "reconciled"
    STALLED = "stalled"
    """The provider's feed went quiet (the stall watchdog's warning)."""


class Strategy(DomainModel, frozen=True, kw_only=True):
    """A provider's published strategy, backed by one of the provider's accounts (which never changes)."""

    id: str
    provider_user_id: str
    account_id: str
    name: str
    description: str = ""
    visibility: StrategyVisibility = StrategyVisibility.PRIVATE
    min_follower_equity: Decimal | None = None
    """In the currency of the strategy's account; None: no minimum."""
    status: StrategyStatus = StrategyStatus.ACTIVE
    fill_cursor: str | None = None
    """The last provider fill (``fills.id``) the copy engine consumed; the engine moves it."""
    created_at: datetime
    updated_at: datetime


class Subscription(DomainModel, frozen=True, kw_only=True):
    """A follower account copying a strategy.

    ``settings`` is the engine's settings struct as JSON text, opaque to the store. ``version``
    starts at 1 and grows with every change (settings, status, start equity): the ETag, and the
    engine's cache key.
    """

    id: str
    strategy_id: str
    follower_user_id: str
    account_id: str
    """The follower's account."""
    settings: str
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE
    version: int = 1
    start_equity: Decimal | None = None
    """The subscription's equity when copying started: the baseline of the copy stop-loss."""
    created_at: datetime
    updated_at: datetime
    stopped_at: datetime | None = None


class CopySignal(DomainModel, frozen=True, kw_only=True):
    """A provider execution the engine consumed: stored once per ``(strategy_id, provider_trade_id)``.

    The provider's position in ``symbol`` before and after it (signed, long > 0) is what turns a
    fill into an open, increase, partial close, close or reversal.
    """

    id: str
    strategy_id: str
    provider_account_id: str
    provider_trade_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    provider_position_before: Decimal
    provider_position_after: Decimal
    venue_ts: datetime
    """When the venue says the fill happened."""
    received_at: datetime
    """When brokerlink received it: ``received_at - venue_ts`` is the signal latency."""
    created_at: datetime


class CopyLink(DomainModel, frozen=True, kw_only=True):
    """The follower position copied from one provider position (one per subscription and provider symbol
    while open). ``qty`` is what the follower holds in this link now, never negative; ``side`` is the
    follower's side, the provider's reversed when the subscription copies in reverse.
    """

    id: str
    subscription_id: str
    provider_symbol: str
    follower_symbol: str
    side: Side
    qty: Decimal
    status: LinkStatus = LinkStatus.OPEN
    opened_at: datetime
    closed_at: datetime | None = None
    updated_at: datetime


class CopyIntent(DomainModel, frozen=True, kw_only=True):
    """One follower order in the outbox, written in the transaction that consumed its cause.

    ``client_order_id`` is derived from (subscription, provider execution, action), so replaying the
    outbox after a crash sends the same order again and the venue deduplicates it. ``signal_id`` is
    None for orders no provider execution caused: copying the provider's open positions at
    subscription time, closing the copies on stop, a reconciliation repair.

    Latencies are microseconds (a millisecond is too coarse for a 2 ms engine budget): ``signal_us``
    venue fill to event received, ``engine_us`` event received to order handed to the adapter,
    ``broker_us`` sent to acknowledged. ``slippage_bps`` is the follower's fill price against the
    provider's, in basis points, positive when worse for the follower.
    """

    id: str
    subscription_id: str
    signal_id: str | None
    link_id: str | None = None
    action: IntentAction
    follower_account_id: str
    client_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    order_type: CopyOrderType = CopyOrderType.MARKET
    limit_price: Decimal | None = None
    """The order's price: the limit of a ``limit`` order, the trigger (stop price) of a ``stop`` order."""
    tif: TimeInForce
    status: IntentStatus = IntentStatus.PENDING
    order_id: str | None = None
    """Our ``orders.id`` once the order is placed."""
    attempts: int = 0
    last_error: str | None = None
    created_at: datetime
    updated_at: datetime
    """When the status last changed (``created_at`` until then)."""
    sent_at: datetime | None = None
    """When it was last handed to the adapter."""
    acked_at: datetime | None = None
    signal_us: int | None = None
    engine_us: int | None = None
    broker_us: int | None = None
    slippage_bps: Decimal | None = None


class CopyEvent(DomainModel, frozen=True, kw_only=True):
    """Something a follower is shown about a subscription. ``reason`` is a stable machine code
    (``below_min_qty``, ``slippage``, ``symbol_not_mapped``...), ``detail`` the human text.
    """

    id: str
    subscription_id: str
    kind: CopyEventKind
    reason: str | None = None
    detail: str = ""
    signal_id: str | None = None
    intent_id: str | None = None
    created_at: datetime
