"""Builders for the copy trading store tests: strategies, subscriptions, signals, links, intents, events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.copy import (
    CopyEvent,
    CopyEventKind,
    CopyIntent,
    CopyLink,
    CopySignal,
    IntentAction,
    Strategy,
    StrategyVisibility,
    Subscription,
)
from brokerlink.domain.enums import Side, TimeInForce
from brokerlink.domain.models import Account
from brokerlink.kit.ids import new_id
from brokerlink.store.repositories.strategies import StrategyRepository
from brokerlink.store.repositories.subscriptions import SubscriptionRepository
from tests.store.factories import NOW, make_account


def strategy(account: Account, **overrides: Any) -> Strategy:
    """An unsaved public strategy backed by ``account`` (its owner is the provider)."""
    fields: dict[str, Any] = {
        "id": new_id("stg"),
        "provider_user_id": account.user_id,
        "account_id": account.id,
        "name": new_id("name"),
        "description": "Trend following on majors",
        "visibility": StrategyVisibility.PUBLIC,
        "min_follower_equity": Decimal("1000.00"),
        "created_at": NOW,
        "updated_at": NOW,
    }
    fields.update(overrides)
    return Strategy(**fields)


def subscription(stg: Strategy, account: Account, **overrides: Any) -> Subscription:
    """An unsaved active subscription of ``account`` (its owner is the follower) to ``stg``."""
    fields: dict[str, Any] = {
        "id": new_id("sub"),
        "strategy_id": stg.id,
        "follower_user_id": account.user_id,
        "account_id": account.id,
        "settings": '{"sizing":{"mode":"multiplier","factor":"0.5"}}',
        "created_at": NOW,
        "updated_at": NOW,
    }
    fields.update(overrides)
    return Subscription(**fields)


def signal(stg: Strategy, trade_id: str | None = None, **overrides: Any) -> CopySignal:
    """An unsaved signal: the provider bought 0.5 of EUR/USD, going from short 0.2 to long 0.3."""
    fields: dict[str, Any] = {
        "id": new_id("sig"),
        "strategy_id": stg.id,
        "provider_account_id": stg.account_id,
        "provider_trade_id": trade_id or new_id("trd"),
        "symbol": "EUR/USD",
        "side": Side.BUY,
        "qty": Decimal("0.50"),
        "price": Decimal("1.08512"),
        "provider_position_before": Decimal("-0.20"),
        "provider_position_after": Decimal("0.30"),
        "venue_ts": NOW,
        "received_at": NOW + timedelta(milliseconds=3),
        "created_at": NOW + timedelta(milliseconds=4),
    }
    fields.update(overrides)
    return CopySignal(**fields)


def link(sub: Subscription, provider_symbol: str = "EUR/USD", **overrides: Any) -> CopyLink:
    """An unsaved open link of ``sub`` holding 0.15 long in ``EURUSD.m``."""
    fields: dict[str, Any] = {
        "id": new_id("lnk"),
        "subscription_id": sub.id,
        "provider_symbol": provider_symbol,
        "follower_symbol": "EURUSD.m",
        "side": Side.BUY,
        "qty": Decimal("0.15"),
        "opened_at": NOW,
        "updated_at": NOW,
    }
    fields.update(overrides)
    return CopyLink(**fields)


def intent(
    sub: Subscription, signal_id: str | None, client_order_id: str | None = None, **overrides: Any
) -> CopyIntent:
    """An unsaved pending market intent of ``sub`` opening 0.15 EURUSD.m."""
    fields: dict[str, Any] = {
        "id": new_id("cpi"),
        "subscription_id": sub.id,
        "signal_id": signal_id,
        "action": IntentAction.OPEN,
        "follower_account_id": sub.account_id,
        "client_order_id": client_order_id or new_id("cp"),
        "symbol": "EURUSD.m",
        "side": Side.BUY,
        "qty": Decimal("0.15"),
        "tif": TimeInForce.IOC,
        "signal_us": 3000,
        "created_at": NOW,
        "updated_at": NOW,
    }
    fields.update(overrides)
    return CopyIntent(**fields)


def event(sub: Subscription, kind: CopyEventKind = CopyEventKind.SKIPPED, **overrides: Any) -> CopyEvent:
    """An unsaved event of ``sub``."""
    fields: dict[str, Any] = {
        "id": new_id("cpe"),
        "subscription_id": sub.id,
        "kind": kind,
        "reason": "below_min_qty" if kind is CopyEventKind.SKIPPED else None,
        "detail": "0.004 rounds down to 0 at a step of 0.01",
        "created_at": NOW,
    }
    fields.update(overrides)
    return CopyEvent(**fields)


@dataclass(frozen=True)
class Copying:
    """A stored provider account and strategy, and a follower account subscribed to it."""

    provider: Account
    strategy: Strategy
    follower: Account
    subscription: Subscription


async def make_copying(session: AsyncSession, **subscription_overrides: Any) -> Copying:
    """Store a provider with a strategy and a follower with a subscription to it."""
    provider = await make_account(session)
    stg = strategy(provider)
    await StrategyRepository(session).add(stg)
    follower = await make_account(session)
    sub = subscription(stg, follower, **subscription_overrides)
    await SubscriptionRepository(session).add(sub)
    return Copying(provider=provider, strategy=stg, follower=follower, subscription=sub)
