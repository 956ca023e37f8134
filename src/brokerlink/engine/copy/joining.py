"""A new subscription and the provider's positions already open: the ``on_subscribe`` policy.

Each open provider position is planned like a provider fill from flat (every guard and the sizing
apply) after :func:`~brokerlink.engine.copy.guards.subscribe_decision`: skip, copy at market, or copy
only while the follower's price is no worse than the provider's entry. Client order ids derive from
the subscription and the symbol, and a position already linked is not copied again.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from brokerlink.domain.copy import CopyEvent, CopyEventKind, CopyIntent, SubscriptionStatus
from brokerlink.domain.enums import Side
from brokerlink.engine.copy.guards import follower_side, subscribe_decision
from brokerlink.engine.copy.planner import Follower, Plan, QuoteOf, Signal, plan_follower
from brokerlink.engine.copy.reasons import Skip, SkipReason
from brokerlink.engine.copy.symbols import resolve_symbol
from brokerlink.kit.ids import new_id
from brokerlink.store.repositories.copy_events import CopyEventRepository
from brokerlink.store.repositories.copy_intents import CopyIntentRepository
from brokerlink.store.repositories.copy_links import CopyLinkRepository
from brokerlink.store.repositories.positions import BalanceRepository, PositionRepository
from brokerlink.store.repositories.strategies import StrategyPositionRepository, StrategyRepository
from brokerlink.store.repositories.subscriptions import SubscriptionRepository

if TYPE_CHECKING:
    from brokerlink.engine.copy.service import CopyEngine


async def equity_of(balances: BalanceRepository, account_id: str) -> Decimal | None:
    """The account's equity as last reported (its first balance), if any."""
    rows = await balances.list_for_account(account_id)
    return rows[0].equity if rows else None


async def copy_open_positions(engine: CopyEngine, subscription_id: str) -> list[CopyIntent]:
    """Apply the subscription's ``on_subscribe`` policy to the provider's positions open now.

    Each position is an open planned like a provider fill from flat (every guard and the sizing
    apply), after :func:`~brokerlink.engine.copy.guards.subscribe_decision`: skip, at market, or
    only while the follower's price is no worse than the provider's entry. The client order id
    is derived from the subscription and the symbol, so calling this twice copies once.
    """
    if subscription_id in engine.joined:
        return []
    engine.joined.add(subscription_id)
    now = engine.clock.now()
    async with engine.database.session() as session:
        subscription = await SubscriptionRepository(session).get_by_id(subscription_id)
        if subscription is None or subscription.status is not SubscriptionStatus.ACTIVE:
            return []
        strategy = await StrategyRepository(session).get_by_id(subscription.strategy_id)
        if strategy is None:
            return []
        held = await StrategyPositionRepository(session).all(strategy.id)
        entries = {
            p.symbol: p.avg_price for p in await PositionRepository(session).list_for_account(strategy.account_id)
        }
        balances = BalanceRepository(session)
        provider_equity = await equity_of(balances, strategy.account_id)
        link_repo = CopyLinkRepository(session)
        intents: list[CopyIntent] = []
        events: list[CopyEvent] = []
        for symbol, qty in sorted(held.items()):
            if qty == 0 or await link_repo.get_open(subscription.id, symbol) is not None:
                continue
            follower = await engine.follower_view(balances, subscription, None)
            skip, plan = _plan_existing(
                follower, symbol, qty, entries.get(symbol), provider_equity,
                quote_of=engine.quote_for(subscription.account_id), now=now,
            )  # fmt: skip
            if skip is None and plan is not None:
                made, link = engine.build_intents(
                    subscription, plan, signal_id=None, trade_id=f"subscribe:{symbol}", symbol=symbol, now=now
                )
                intents += made
                if link is not None:
                    await link_repo.add(link)
                skip = plan.skip
            if skip is not None:
                events.append(
                    CopyEvent(
                        id=new_id("cpe"), subscription_id=subscription.id, kind=CopyEventKind.SKIPPED,
                        reason=skip.reason.value, detail=f"{symbol}: {skip.detail}", created_at=now,
                    )
                )  # fmt: skip
        await CopyIntentRepository(session).add_many(intents)
        await CopyEventRepository(session).add_many(events)
        await session.commit()
    engine.dispatch(intents)
    return intents


def _plan_existing(
    follower: Follower,
    symbol: str,
    qty: Decimal,
    entry: Decimal | None,
    provider_equity: Decimal | None,
    *,
    quote_of: QuoteOf,
    now: datetime,
) -> tuple[Skip | None, Plan | None]:
    provider_side = Side.BUY if qty > 0 else Side.SELL
    side = follower_side(follower.settings, provider_side)
    instrument = None
    if follower.instruments is not None:
        found = resolve_symbol(follower.settings, symbol, follower.instruments)
        instrument = None if isinstance(found, Skip) else found
    quote = None if instrument is None else quote_of(instrument.symbol)
    price = None if quote is None else (quote.ask if side is Side.BUY else quote.bid)
    if entry is not None and entry <= 0:
        entry = None
    # The policy first, with the provider's entry as stored: ``skip`` needs no price (the provider's
    # position may not be stored with its entry yet when the follower subscribes; that is still a
    # skip by policy, not for want of a price), and ``if_not_worse`` without an entry cannot compare
    # (the follower's own price standing in for the entry would make every price "not worse").
    refused = subscribe_decision(follower.settings, side, entry, price)
    if refused is not None:
        return refused, None
    sizing_price = entry if entry is not None else price  # ``market``: the follower's price will do
    if sizing_price is None:
        return Skip(reason=SkipReason.NO_PRICE, detail="no price for the provider's entry"), None
    signal = Signal(
        trade_id=f"subscribe:{symbol}", symbol=symbol, side=provider_side, qty=abs(qty), price=sizing_price,
        before=Decimal(0), after=qty, provider_equity=provider_equity,
    )  # fmt: skip
    return None, plan_follower(signal, follower, quote=quote_of, now=now)
