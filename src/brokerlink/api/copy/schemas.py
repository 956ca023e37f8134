"""Bodies of the copy-trading routes: strategies, subscriptions, settings, copy events, orders and links.

A subscription's settings travel as the engine's own :class:`~brokerlink.engine.copy.settings.CopySettings`
struct, so the API accepts exactly what the engine checks (unknown fields and inconsistent
combinations are a 422 naming the field) and renders them as a JSON object, never as a string.
Decimals travel as JSON strings.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

import msgspec

from brokerlink.api.schemas import RequestBody, ResponseBody
from brokerlink.domain.copy import (
    CopyEventKind,
    CopyOrderType,
    IntentAction,
    IntentStatus,
    LinkStatus,
    Strategy,
    StrategyStatus,
    StrategyVisibility,
    Subscription,
    SubscriptionStatus,
)
from brokerlink.domain.enums import Side, TimeInForce
from brokerlink.engine.copy.settings import CopySettings, decode_settings

ObjectId = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
StrategyName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, examples=["EUR trend"])]
Description = Annotated[str, msgspec.Meta(max_length=2000, examples=["Trend following on the majors."])]
MinEquity = Annotated[Decimal, msgspec.Meta(examples=["1000"])]
"""Not negative (checked by the route: msgspec bounds only ints and floats)."""


class StrategyCreate(RequestBody, kw_only=True):
    """Publish a strategy backed by one of your accounts: its fills from now on are the signals.

    ``visibility``: ``public`` is listed in the directory, ``unlisted`` can be followed by anyone
    who knows its id, ``private`` only by you. ``min_follower_equity`` is in the currency of the
    backing account.
    """

    name: StrategyName
    account_id: ObjectId
    description: Description = ""
    visibility: StrategyVisibility = StrategyVisibility.PRIVATE
    min_follower_equity: MinEquity | None = None


class StrategyUpdate(RequestBody, kw_only=True):
    """Change a strategy; fields left out stay as they are (``min_follower_equity: null`` removes the
    minimum). ``status: closed`` ends the strategy for good: no more signals are taken from its
    account, it leaves the directory, and it cannot be followed or changed any more."""

    name: StrategyName | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET
    visibility: StrategyVisibility | msgspec.UnsetType = msgspec.UNSET
    min_follower_equity: MinEquity | msgspec.UnsetType | None = msgspec.UNSET
    status: Literal["closed"] | msgspec.UnsetType = msgspec.UNSET


class StrategyResponse(ResponseBody, kw_only=True):
    """A strategy. ``account_id`` (the backing account) is shown to its provider only."""

    id: str
    name: str
    description: str
    visibility: StrategyVisibility
    status: StrategyStatus
    min_follower_equity: Decimal | None
    is_mine: bool
    account_id: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def render(cls, strategy: Strategy, *, mine: bool) -> StrategyResponse:
        """The strategy as ``mine`` (its provider, within the grant) or anyone else sees it."""
        return cls(
            id=strategy.id,
            name=strategy.name,
            description=strategy.description,
            visibility=strategy.visibility,
            status=strategy.status,
            min_follower_equity=strategy.min_follower_equity,
            is_mine=mine,
            account_id=strategy.account_id if mine else None,
            created_at=strategy.created_at,
            updated_at=strategy.updated_at,
        )


class StrategyList(ResponseBody, kw_only=True):
    """One page of strategies, newest first; pass ``next_after`` as ``after`` for the next page."""

    data: list[StrategyResponse]
    next_after: str | None


class SubscriptionCreate(RequestBody, kw_only=True):
    """Follow a strategy with one of your accounts. Copies start with the provider's next trade
    (``settings.on_subscribe`` decides about the positions the provider already holds)."""

    strategy_id: ObjectId
    account_id: ObjectId
    settings: CopySettings


class StopRequest(RequestBody, kw_only=True):
    """Stop a subscription; ``close_copies`` also closes every position it copied (at market)."""

    close_copies: bool = False


class SubscriptionResponse(ResponseBody, kw_only=True):
    """A subscription and its settings. ``version`` grows with every change; the ETag carries it."""

    id: str
    strategy_id: str
    account_id: str
    status: SubscriptionStatus
    version: int
    settings: CopySettings
    start_equity: Decimal | None
    created_at: datetime
    updated_at: datetime
    stopped_at: datetime | None

    @classmethod
    def render(cls, subscription: Subscription) -> SubscriptionResponse:
        """The stored subscription with its settings decoded into an object."""
        return cls(
            id=subscription.id,
            strategy_id=subscription.strategy_id,
            account_id=subscription.account_id,
            status=subscription.status,
            version=subscription.version,
            settings=decode_settings(subscription.settings),
            start_equity=subscription.start_equity,
            created_at=subscription.created_at,
            updated_at=subscription.updated_at,
            stopped_at=subscription.stopped_at,
        )


class SubscriptionList(ResponseBody, kw_only=True):
    """One page of subscriptions, newest first."""

    data: list[SubscriptionResponse]
    next_after: str | None


class CopyEventResponse(ResponseBody, kw_only=True):
    """Something that happened to a subscription. ``reason`` is a stable code for skips and
    rejections (``below_min_qty``, ``slippage``, ``symbol_not_allowed``...), ``detail`` the sentence."""

    id: str
    kind: CopyEventKind
    reason: str | None
    detail: str
    signal_id: str | None
    intent_id: str | None
    created_at: datetime


class CopyEventList(ResponseBody, kw_only=True):
    """One page of copy events, newest first."""

    data: list[CopyEventResponse]
    next_after: str | None


class CopyIntentResponse(ResponseBody, kw_only=True):
    """One copy order and where it stands. Latencies are microseconds: ``signal_us`` venue fill to
    brokerlink, ``engine_us`` to the order handed to the broker adapter, ``broker_us`` sent to
    acknowledged; ``slippage_bps`` is against the provider's price, positive when worse."""

    id: str
    signal_id: str | None
    link_id: str | None
    action: IntentAction
    client_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    order_type: CopyOrderType
    limit_price: Decimal | None
    tif: TimeInForce
    status: IntentStatus
    order_id: str | None
    attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    acked_at: datetime | None
    signal_us: int | None
    engine_us: int | None
    broker_us: int | None
    slippage_bps: Decimal | None


class CopyIntentList(ResponseBody, kw_only=True):
    """One page of copy orders, newest first."""

    data: list[CopyIntentResponse]
    next_after: str | None


class CopyLinkResponse(ResponseBody, kw_only=True):
    """A follower position copied from a provider position. ``qty`` is what the copy holds now."""

    id: str
    provider_symbol: str
    follower_symbol: str
    side: Side
    qty: Decimal
    status: LinkStatus
    opened_at: datetime
    closed_at: datetime | None
    updated_at: datetime


class CopyLinkList(ResponseBody, kw_only=True):
    """One page of links, open and closed, newest first."""

    data: list[CopyLinkResponse]
    next_after: str | None
