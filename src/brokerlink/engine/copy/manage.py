"""Publishing strategies and managing subscriptions: the commands behind the copy-trading routes.

Each function takes the caller's session and flushes; the request (or the CLI) commits. A new
strategy starts from where its account stands: the provider's open positions are its baseline
(they are not copied as if they were new trades) and the account's fill history is not replayed.
Stopping a subscription may close its copies: one closing intent per open link, with a client
order id derived from the link, so a repeated stop never closes twice.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.copy import (
    CopyEvent,
    CopyEventKind,
    CopyIntent,
    IntentAction,
    Strategy,
    StrategyStatus,
    StrategyVisibility,
    Subscription,
    SubscriptionStatus,
)
from brokerlink.domain.enums import Side, TimeInForce
from brokerlink.engine.copy.ids import copy_client_order_id
from brokerlink.engine.copy.settings import CopySettings, encode_settings
from brokerlink.kit.errors import Conflict, InvalidInput, NotFound
from brokerlink.kit.ids import new_id
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.copy_events import CopyEventRepository
from brokerlink.store.repositories.copy_intents import CopyIntentRepository
from brokerlink.store.repositories.copy_links import CopyLinkRepository
from brokerlink.store.repositories.fills import FillRepository
from brokerlink.store.repositories.positions import BalanceRepository, PositionRepository
from brokerlink.store.repositories.strategies import StrategyPositionRepository, StrategyRepository
from brokerlink.store.repositories.subscriptions import SubscriptionRepository

_STATUS_EVENTS = {
    SubscriptionStatus.ACTIVE: CopyEventKind.RESUMED,
    SubscriptionStatus.PAUSED: CopyEventKind.PAUSED,
    SubscriptionStatus.CLOSE_ONLY: CopyEventKind.CLOSE_ONLY,
    SubscriptionStatus.STOPPED: CopyEventKind.STOPPED,
}


async def create_strategy(
    session: AsyncSession,
    *,
    provider_user_id: str,
    account_id: str,
    name: str,
    description: str = "",
    visibility: StrategyVisibility = StrategyVisibility.PRIVATE,
    min_follower_equity: Decimal | None = None,
    now: datetime,
) -> Strategy:
    """Publish a strategy backed by one of the provider's accounts (404 for anyone else's account)."""
    if await AccountRepository(session).get_for_user(provider_user_id, account_id) is None:
        raise NotFound("account not found")
    strategy = Strategy(
        id=new_id("stg"),
        provider_user_id=provider_user_id,
        account_id=account_id,
        name=name,
        description=description,
        visibility=visibility,
        min_follower_equity=min_follower_equity,
        fill_cursor=await FillRepository(session).latest_id(account_id),
        created_at=now,
        updated_at=now,
    )
    try:
        async with session.begin_nested():
            await StrategyRepository(session).add(strategy)
    except IntegrityError:
        raise Conflict(f"you already have a strategy named {name!r}", extra={"field": "name"}) from None
    baseline = StrategyPositionRepository(session)
    for position in await PositionRepository(session).list_for_account(account_id):
        await baseline.set(strategy.id, position.symbol, position.qty, now=now)
    return strategy


async def subscribe(
    session: AsyncSession,
    *,
    follower_user_id: str,
    strategy_id: str,
    account_id: str,
    settings: CopySettings,
    now: datetime,
) -> Subscription:
    """Follow a strategy with one of the follower's accounts. Copies start with the provider's next trade."""
    strategy = await StrategyRepository(session).get_visible(follower_user_id, strategy_id)
    if strategy is None:
        raise NotFound("strategy not found")
    if strategy.status is StrategyStatus.CLOSED:
        raise Conflict("the strategy is closed: it sends no more signals", extra={"field": "strategy_id"})
    if await AccountRepository(session).get_for_user(follower_user_id, account_id) is None:
        raise NotFound("account not found")
    if strategy.account_id == account_id:
        raise InvalidInput("account_id: an account cannot follow the strategy it backs", extra={"field": "account_id"})
    balances = await BalanceRepository(session).list_for_account(account_id)
    equity = balances[0].equity if balances else None
    if strategy.min_follower_equity is not None and (equity is None or equity < strategy.min_follower_equity):
        raise InvalidInput(
            f"account_id: the strategy asks for at least {strategy.min_follower_equity} of equity",
            extra={"field": "account_id"},
        )
    start = settings.allocated_amount if settings.allocated_amount is not None else equity
    subscription = Subscription(
        id=new_id("sub"),
        strategy_id=strategy.id,
        follower_user_id=follower_user_id,
        account_id=account_id,
        settings=encode_settings(settings).decode(),
        start_equity=start,
        created_at=now,
        updated_at=now,
    )
    try:
        async with session.begin_nested():
            await SubscriptionRepository(session).add(subscription)
    except IntegrityError:
        raise Conflict("this account already follows the strategy", extra={"field": "account_id"}) from None
    await _event(session, subscription.id, CopyEventKind.SUBSCRIBED, f"following {strategy.name}", now=now)
    return subscription


async def update_settings(
    session: AsyncSession,
    *,
    user_id: str,
    subscription_id: str,
    settings: CopySettings,
    expected_version: int | None,
    now: datetime,
) -> Subscription:
    """Replace a subscription's settings; they apply from the provider's next trade."""
    current = await _own(session, user_id, subscription_id)
    changed = await SubscriptionRepository(session).update_settings(
        subscription_id, encode_settings(settings).decode(), now=now, expected_version=expected_version
    )
    if changed is None:
        raise NotFound("subscription not found")
    if changed.version != current.version:  # the same settings again change nothing
        await _event(session, subscription_id, CopyEventKind.SETTINGS_CHANGED, "settings changed", now=now)
    return changed


async def set_status(
    session: AsyncSession,
    *,
    user_id: str,
    subscription_id: str,
    status: SubscriptionStatus,
    close_copies: bool = False,
    expected_version: int | None = None,
    now: datetime,
) -> tuple[Subscription, list[CopyIntent]]:
    """Pause, resume, switch to close-only or stop; stopping may close the copies (the intents returned)."""
    current = await _own(session, user_id, subscription_id)
    if close_copies and status is not SubscriptionStatus.STOPPED:
        raise InvalidInput("close_copies: only a stop closes the copies", extra={"field": "close_copies"})
    changed = await SubscriptionRepository(session).set_status(
        subscription_id, status, now=now, expected_version=expected_version
    )
    if changed is None:
        raise NotFound("subscription not found")
    intents: list[CopyIntent] = []
    if close_copies:
        intents = await close_open_copies(session, current, cause="stop", now=now)
    if changed.version != current.version:
        detail = f"{current.status.value} -> {status.value}" + (f", closing {len(intents)} copies" if intents else "")
        await _event(session, subscription_id, _STATUS_EVENTS[status], detail, now=now)
    return changed, intents


async def close_open_copies(
    session: AsyncSession, subscription: Subscription, *, cause: str, now: datetime
) -> list[CopyIntent]:
    """One closing intent per open copy, at market, and the links closed now. Flushes; the caller
    commits and dispatches.

    The client order id derives from ``cause`` (``stop``, ``stall``) and the link, so the same cause
    never closes one copy twice, and a later close finds the link closed already.
    """
    links = CopyLinkRepository(session)
    intents = [
        CopyIntent(
            id=new_id("cpi"),
            subscription_id=subscription.id,
            signal_id=None,
            link_id=link.id,
            action=IntentAction.CLOSE,
            follower_account_id=subscription.account_id,
            client_order_id=copy_client_order_id(subscription.id, f"{cause}:{link.id}", IntentAction.CLOSE.value),
            symbol=link.follower_symbol,
            side=Side.SELL if link.side is Side.BUY else Side.BUY,
            qty=link.qty,
            tif=TimeInForce.GTC,
            created_at=now,
            updated_at=now,
        )
        for link in await links.list_open_for_subscription(subscription.id)
        if link.qty > 0
    ]
    await CopyIntentRepository(session).add_many(intents)
    for intent in intents:
        assert intent.link_id is not None  # noqa: S101 - built just above with one
        await links.set_qty(intent.link_id, Decimal(0), now=now)
        await links.close(intent.link_id, now=now)
    return intents


async def _own(session: AsyncSession, user_id: str, subscription_id: str) -> Subscription:
    subscription = await SubscriptionRepository(session).get_for_user(user_id, subscription_id)
    if subscription is None:
        raise NotFound("subscription not found")
    return subscription


async def _event(
    session: AsyncSession, subscription_id: str, kind: CopyEventKind, detail: str, *, now: datetime
) -> None:
    await CopyEventRepository(session).add(
        CopyEvent(id=new_id("cpe"), subscription_id=subscription_id, kind=kind, detail=detail, created_at=now)
    )
