"""SL/TP mirroring at run time: the followers' protective orders follow the provider's (ADR 0027).

**Level-triggered.** Nothing here consumes the provider's order events one by one. Whenever one
may have changed something (a provider order event, a consumed fill, a follower's protective order
ending, and every retry round), :func:`sync_strategy` compares, per open link, what the provider's
working orders ask for (:mod:`~brokerlink.engine.copy.protective`) with the link's stored
protective intents, and writes the difference into the outbox in one transaction: a new revision
where the price or quantity changed, cancellations where nothing is wanted any more. A crash loses
nothing: the next round sees the same state and derives the same revision, hence the same client
order id (subscription, provider order id, action, link, revision); an intent already committed is
sent by the outbox replay like any other.

**Cancel, then replace.** A follower's protective order is never modified in place: a new revision
is placed only once the older ones are over at the venue (cancelled first, bounded wait). Two live
stops of the whole position on a netting account could both fill and reverse the follower; a gap
of one cancel acknowledgement is the price of never flipping.

**Closes come first.** Before a reduce or close of a link goes out, the link's protective orders
are cancelled; if one of them filled meanwhile (the follower was stopped out too), the close is cut
to what the follower still holds on that side at its venue, down to nothing: a close never flips.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.brokers.base import BrokerError
from brokerlink.domain.copy import (
    LIVE_SUBSCRIPTION_STATUSES,
    PROTECTIVE_ACTIONS,
    TRADE_ACTIONS,
    CopyEvent,
    CopyEventKind,
    CopyIntent,
    CopyLink,
    CopyOrderType,
    IntentAction,
    IntentStatus,
    Strategy,
    Subscription,
    SubscriptionStatus,
)
from brokerlink.domain.enums import OrderType, Side, TimeInForce
from brokerlink.domain.events import OrderCancelRequested, OrderRejected
from brokerlink.domain.models import Order
from brokerlink.engine.copy.ids import copy_client_order_id
from brokerlink.engine.copy.protective import DesiredOrder, Protection, follower_orders, provider_protection
from brokerlink.engine.copy.settings import Direction
from brokerlink.kit.errors import BrokerlinkError
from brokerlink.kit.ids import new_id
from brokerlink.logs import get_logger
from brokerlink.store.repositories.copy_events import CopyEventRepository
from brokerlink.store.repositories.copy_intents import CopyIntentRepository
from brokerlink.store.repositories.copy_links import CopyLinkRepository
from brokerlink.store.repositories.orders import OrderRepository
from brokerlink.store.repositories.strategies import StrategyPositionRepository
from brokerlink.store.repositories.subscriptions import SubscriptionRepository

if TYPE_CHECKING:
    from brokerlink.engine.copy.service import CopyEngine

_log = get_logger("brokerlink.engine.copy.protect")

_ACTIVE = frozenset({IntentStatus.PENDING, IntentStatus.SENT, IntentStatus.ACKNOWLEDGED})
_ALL_STATUSES = frozenset(SubscriptionStatus)


def protective_client_order_id(subscription_id: str, desired: DesiredOrder, link_id: str, revision: int) -> str:
    """The follower's client order id for one revision of a link's protective order."""
    return copy_client_order_id(
        subscription_id, desired.provider_order_id, f"{desired.action.value}#{revision}@{link_id}"
    )


async def provider_stop_loss(
    session: AsyncSession, strategy: Strategy, symbol: str, position: Decimal, price: Decimal
) -> Decimal | None:
    """The provider's stop-loss on ``symbol`` for ``position`` (reference: the fill's ``price``), if any:
    what ``risk_percent`` sizing measures the risk to. Read in the signal's own transaction."""
    orders = await OrderRepository(session).list_open(strategy.account_id)
    level = provider_protection(orders, symbol=symbol, position=position, reference=price).stop_loss
    return None if level is None else level.price


async def sync_strategy(engine: CopyEngine, strategy: Strategy) -> list[CopyIntent]:
    """Bring every follower's protective orders in line with the provider's (see the module).

    Returns the new intents (committed) for the caller to dispatch; cancellations are sent here.
    """
    now = engine.clock.now()
    cancel: list[CopyIntent] = []
    async with engine.database.session() as session:
        # Nothing to mirror and nothing to take back (the usual case, on every order event): two cheap reads
        # instead of every link of every follower and their intents.
        if not await OrderRepository(session).list_open(strategy.account_id) and not await CopyIntentRepository(
            session
        ).any_protective_open(strategy.id):
            return []
        subscriptions = await SubscriptionRepository(session).list_for_strategy(strategy.id, _ALL_STATUSES)
        by_id = {s.id: s for s in subscriptions}
        intents_repo = CopyIntentRepository(session)
        open_protective = await intents_repo.list_protective_open(list(by_id))
        live_ids = [s.id for s in subscriptions if s.status in LIVE_SUBSCRIPTION_STATUSES]
        links = await CopyLinkRepository(session).list_open_for_subscriptions(live_ids)
        if not links and not open_protective:
            return []
        provider_orders = await OrderRepository(session).list_open(strategy.account_id)
        positions = StrategyPositionRepository(session)
        protections: dict[str, Protection] = {}
        for symbol in {link.provider_symbol for link in links}:
            position = await positions.get(strategy.id, symbol)
            protections[symbol] = provider_protection(
                provider_orders, symbol=symbol, position=position, reference=_provider_price(engine, strategy, symbol)
            )
        by_link: defaultdict[str, list[CopyIntent]] = defaultdict(list)
        for intent in await intents_repo.list_for_links([link.id for link in links]):
            by_link[intent.link_id or ""].append(intent)
        fresh: list[CopyIntent] = []
        events: list[CopyEvent] = []
        kept: set[str] = set()
        for link in links:
            subscription = by_id[link.subscription_id]
            mine = by_link.get(link.id, [])
            wanted = _wanted(
                engine, subscription, link, protections[link.provider_symbol], mine=mine, events=events, now=now
            )
            if wanted is None:  # a trade of this link is in flight: leave its protection as it is
                kept |= {i.id for i in mine if i.action.is_protective}
                continue
            for action in PROTECTIVE_ACTIONS:
                revisions = [i for i in mine if i.action is action]
                desired = wanted.get(action)
                latest = revisions[-1] if revisions else None
                if desired is not None and latest is not None and _same(latest, desired):
                    kept.add(latest.id)
                    continue
                if desired is not None:
                    intent = _intent(subscription, link, desired, len(revisions) + 1, now)
                    fresh.append(intent)
                    kept.add(intent.id)
        cancel = [i for i in open_protective if i.id not in kept]
        events = [e for e in events if not await _recorded(session, e)]
        # Known before the commit: a close dispatched from then on checks these links' protection.
        (await engine.protected_links()).update(i.link_id for i in fresh if i.link_id is not None)
        await intents_repo.add_many(fresh)
        await CopyEventRepository(session).add_many(events)
        await session.commit()
    await cancel_protective(engine, cancel)
    return fresh


def _wanted(
    engine: CopyEngine,
    subscription: Subscription,
    link: CopyLink,
    protection: Protection,
    *,
    mine: Sequence[CopyIntent],
    events: list[CopyEvent],
    now: datetime,
) -> dict[IntentAction, DesiredOrder] | None:
    """The protective orders the link should carry (empty: none), or None while a trade of it is in flight."""
    settings = engine.settings_of(subscription)
    if not settings.copy_sl_tp or subscription.status is SubscriptionStatus.STOPPED:
        return {}
    if any(i.action in TRADE_ACTIONS and i.status in _ACTIVE for i in mine):
        return None  # its quantity is not what the follower holds yet
    if protection.stop_loss is None and protection.take_profit is None:
        return {}
    account_id = subscription.account_id
    if not engine.links.is_live(account_id):
        return None  # the instrument's grid and the broker's order types are not known now: wait
    live = engine.links.live(account_id)
    try:
        instrument = live.instrument(link.follower_symbol)
    except BrokerlinkError:
        return None
    desired, skips = follower_orders(
        protection,
        link_side=link.side,
        link_qty=link.qty,
        reversed_direction=settings.direction is Direction.REVERSED,
        instrument=instrument,
        order_types=live.adapter.capabilities.order_types,
    )
    events.extend(
        CopyEvent(
            id=new_id("cpe"), subscription_id=subscription.id, kind=CopyEventKind.SKIPPED,
            reason=skip.reason.value, detail=f"{link.follower_symbol}: {skip.detail}", created_at=now,
        )
        for skip in skips
    )  # fmt: skip
    return {d.action: d for d in desired}


def _same(intent: CopyIntent, desired: DesiredOrder) -> bool:
    """Whether the stored revision already is ``desired`` (a revision cancelled at the venue is not:
    the provider's level is still there, so it is placed again)."""
    return (
        intent.status is not IntentStatus.CANCELED
        and intent.qty == desired.qty
        and intent.limit_price == desired.price
        and intent.side is desired.side
    )


def _intent(
    subscription: Subscription, link: CopyLink, desired: DesiredOrder, revision: int, now: datetime
) -> CopyIntent:
    stop = desired.action is IntentAction.STOP_LOSS
    return CopyIntent(
        id=new_id("cpi"),
        subscription_id=subscription.id,
        signal_id=None,
        link_id=link.id,
        action=desired.action,
        follower_account_id=subscription.account_id,
        client_order_id=protective_client_order_id(subscription.id, desired, link.id, revision),
        symbol=link.follower_symbol,
        side=desired.side,
        qty=desired.qty,
        order_type=CopyOrderType.STOP if stop else CopyOrderType.LIMIT,
        limit_price=desired.price,
        tif=TimeInForce.GTC,
        created_at=now,
        updated_at=now,
    )


async def _recorded(session: AsyncSession, event: CopyEvent) -> bool:
    return await CopyEventRepository(session).exists(
        event.subscription_id, kind=event.kind, reason=event.reason or "", detail=event.detail
    )


def _provider_price(engine: CopyEngine, strategy: Strategy, symbol: str) -> Decimal | None:
    if not engine.links.is_live(strategy.account_id):
        return None
    quote = engine.links.live(strategy.account_id).quote(symbol)
    return None if quote is None else (quote.bid + quote.ask) / 2


# --- the venue side -------------------------------------------------------------------------------


async def cancel_protective(engine: CopyEngine, intents: Iterable[CopyIntent], *, wait_s: float = 0.0) -> bool:
    """Cancel the protective orders of ``intents`` at their venues; returns whether all of them are over
    (waiting up to ``wait_s``). A pending intent without an order is left to its dispatch, which ends
    it once it is no longer wanted."""
    orders = await _working_orders(engine, intents)
    if not orders:
        return True
    for order in orders:
        await _request_cancel(engine, order)
    if wait_s <= 0:
        return False
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(wait_s):
            # The answers arrive on the stream and land in the store; polling is bounded by the timeout.
            while await _working_orders(engine, intents):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            return True
    return False


async def _working_orders(engine: CopyEngine, intents: Iterable[CopyIntent]) -> list[Order]:
    found: list[Order] = []
    async with engine.database.session() as session:
        orders = OrderRepository(session)
        for intent in intents:
            order = await orders.get_by_client_order_id(intent.follower_account_id, intent.client_order_id)
            if order is not None and not order.status.is_terminal:
                found.append(order)
    return found


async def _request_cancel(engine: CopyEngine, order: Order) -> None:
    if not engine.links.is_live(order.account_id):
        return  # the next round cancels it once the follower is back
    live = engine.links.live(order.account_id)
    requested = OrderCancelRequested(
        account_id=order.account_id, client_order_id=order.client_order_id, ts=engine.clock.now()
    )
    try:
        await engine.links.apply(live, requested)
        await live.adapter.cancel(order.client_order_id)
    except (BrokerError, BrokerlinkError) as exc:  # already over, or not reachable now: the next round sees
        _log.info("copy_protective_cancel_failed", client_order_id=order.client_order_id, error=str(exc))


async def still_wanted(engine: CopyEngine, intent: CopyIntent) -> str | None:
    """Why a pending protective intent must not be sent any more (None: send it). Checked right before
    sending: the state may have moved on since it was written (superseded, link closed, mirroring off)."""
    async with engine.database.session() as session:
        subscription = await SubscriptionRepository(session).get_by_id(intent.subscription_id)
        link = None if intent.link_id is None else await CopyLinkRepository(session).get_by_id(intent.link_id)
        mine = [] if link is None else await CopyIntentRepository(session).list_for_links([link.id])
    if subscription is None or subscription.status is SubscriptionStatus.STOPPED:
        return "the subscription stopped"
    if not engine.settings_of(subscription).copy_sl_tp:
        return "SL/TP copying is off"
    if link is None or link.status.value != "open" or link.qty < intent.qty:
        return "the link no longer holds that much"
    revisions = [i for i in mine if i.action is intent.action]
    if revisions and revisions[-1].id != intent.id:
        return "superseded by a newer revision"
    return None


async def older_revisions(engine: CopyEngine, intent: CopyIntent) -> list[CopyIntent]:
    """The link's other protective intents that may still work at the venue (cancelled before ``intent``
    is placed: never two protective orders of the same kind at once)."""
    if intent.link_id is None:
        return []
    async with engine.database.session() as session:
        mine = await CopyIntentRepository(session).list_for_links([intent.link_id])
    return [i for i in mine if i.action is intent.action and i.id != intent.id and i.status in _ACTIVE]


async def guard_close(
    engine: CopyEngine, intent: CopyIntent, prepared: Order | None
) -> tuple[CopyIntent, Order | None] | None:
    """Before a reduce or close of a link: cancel the link's protective orders, and cut the close to what
    the follower still holds on the link's side if one of them filled. Returns the intent (and its
    stored order) to send, or None to send nothing now (held for the next round, or ended)."""
    if intent.link_id is None or intent.link_id not in await engine.protected_links():
        return intent, prepared
    async with engine.database.session() as session:
        mine = await CopyIntentRepository(session).list_for_links([intent.link_id])
    protective = [i for i in mine if i.action.is_protective and i.id < intent.id]
    if not protective:
        return intent, prepared
    if not await cancel_protective(engine, [i for i in protective if i.status in _ACTIVE], wait_s=engine.ack_wait_s):
        return None  # a protective order still works: the retry round tries again
    if await _filled(engine, protective) == 0:
        return intent, prepared
    return await _clamp(engine, intent, prepared)


async def _clamp(
    engine: CopyEngine, intent: CopyIntent, prepared: Order | None
) -> tuple[CopyIntent, Order | None] | None:
    """Cut a close to what the follower holds on the link's side at its venue (a protective order of the
    link filled): never more, so the close cannot reverse the follower. Nothing left ends the intent."""
    live = engine.links.live(intent.follower_account_id)
    try:
        positions = await live.adapter.positions()
    except BrokerError:
        return None
    net = sum((p.qty for p in positions if p.symbol == intent.symbol), Decimal(0))
    held = max(Decimal(0), net if intent.side is Side.SELL else -net)  # a sell closes a long
    if held >= intent.qty:
        return intent, prepared
    now = engine.clock.now()
    async with engine.database.session() as session:
        if held > 0:
            await CopyIntentRepository(session).set_pending_qty(intent.id, held, now=now)
        stored = prepared or await OrderRepository(session).get_by_client_order_id(
            intent.follower_account_id, intent.client_order_id
        )
        if stored is not None and held > 0:
            stored = msgspec.structs.replace(stored, qty=held, updated_at=now)
            await OrderRepository(session).update(stored)
        await session.commit()
    if held > 0:
        return msgspec.structs.replace(intent, qty=held), (stored if prepared is not None else None)
    reason = "not sent: the follower's protective order already closed the position"
    if stored is not None:
        await engine.links.apply(
            live,
            OrderRejected(account_id=stored.account_id, client_order_id=stored.client_order_id, ts=now, reason=reason),
        )
    await engine.end_canceled(intent, reason)
    return None


async def _filled(engine: CopyEngine, intents: Sequence[CopyIntent]) -> Decimal:
    total = Decimal(0)
    async with engine.database.session() as session:
        orders = OrderRepository(session)
        for intent in intents:
            order = await orders.get_by_client_order_id(intent.follower_account_id, intent.client_order_id)
            if order is not None:
                total += order.filled_qty
    return total


def ticket_type(intent: CopyIntent) -> OrderType:
    """The order type an intent is placed as."""
    return {
        CopyOrderType.MARKET: OrderType.MARKET,
        CopyOrderType.LIMIT: OrderType.LIMIT,
        CopyOrderType.STOP: OrderType.STOP,
    }[intent.order_type]
