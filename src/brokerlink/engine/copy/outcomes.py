"""How each copy order ended: the intent's final status, the follower's copy event, the link's correction.

An open that filled less than planned holds less than its link says: the link shrinks by the
difference, so later closes never overshoot. A close that did not complete leaves a position the
reconciliation reports. Slippage is measured in basis points against the provider's fill price.

A refused copy order also counts towards pausing its symbol for the subscription, and a fill ends
the symbol's run of refusals (:mod:`~brokerlink.engine.copy.rejects`), in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink import observe
from brokerlink.domain.copy import CopyEvent, CopyEventKind, CopyIntent, IntentAction, IntentStatus, LinkStatus
from brokerlink.domain.enums import OrderStatus
from brokerlink.domain.models import Order
from brokerlink.engine.copy import rejects
from brokerlink.engine.copy.guards import slippage_bps
from brokerlink.kit.clock import Clock
from brokerlink.kit.ids import new_id
from brokerlink.store.db import Database
from brokerlink.store.repositories.copy_events import CopyEventRepository
from brokerlink.store.repositories.copy_intents import CopyIntentRepository
from brokerlink.store.repositories.copy_links import CopyLinkRepository
from brokerlink.store.repositories.copy_signals import CopySignalRepository
from brokerlink.store.repositories.orders import OrderRepository

_IN_FLIGHT = frozenset({IntentStatus.SENT, IntentStatus.ACKNOWLEDGED})
SETTLE_BATCH = 16
"""Copy orders :func:`settle_many` settles per transaction (each holds the write lock a few milliseconds)."""


async def settle(
    database: Database, clock: Clock, account_id: str, client_order_id: str, *, broker_us: int | None = None
) -> bool:
    """Bring the intent behind a copy order in line with the order's state (idempotent). Returns
    whether the intent is done with (ended now or before, or unknown); False while it is pending or
    its order is still working.

    A sent intent whose order the broker has answered becomes ``acknowledged`` (with ``broker_us``,
    the time from handing the order over to the answer, when the caller measured it).
    """
    async with database.session() as session:
        done = await _settle(session, clock, account_id, client_order_id, broker_us=broker_us)
        await session.commit()
    return done


async def settle_many(
    database: Database, clock: Clock, orders: Sequence[tuple[str, str, int | None]]
) -> dict[str, bool]:
    """:func:`settle` for several copy orders, ``(account id, client order id, broker_us)`` each, a few per
    transaction (the answers to a fan-out arrive together: one write lock and one commit for several,
    and never held long, since the links' ingest queues for it). If a batch fails, each of its orders is
    settled in a transaction of its own (one bad order cannot hold up the others). Whether each is done
    with, by client order id."""
    done: dict[str, bool] = {}
    for start in range(0, len(orders), SETTLE_BATCH):
        batch = orders[start : start + SETTLE_BATCH]
        settled: dict[str, bool] = {}
        try:
            async with database.session() as session:
                for account_id, client_order_id, broker_us in batch:
                    settled[client_order_id] = await _settle(
                        session, clock, account_id, client_order_id, broker_us=broker_us
                    )
                await session.commit()
        except Exception:  # noqa: BLE001 - retried one by one below, where the failing one raises on its own
            settled = {}
            for account_id, client_order_id, broker_us in batch:
                settled[client_order_id] = await settle(
                    database, clock, account_id, client_order_id, broker_us=broker_us
                )
        done |= settled
    return done


async def _settle(
    session: AsyncSession, clock: Clock, account_id: str, client_order_id: str, *, broker_us: int | None
) -> bool:
    """:func:`settle` in the caller's transaction (never commits)."""
    intents = CopyIntentRepository(session)
    intent = await intents.get_by_client_order_id(account_id, client_order_id)
    order = await OrderRepository(session).get_by_client_order_id(account_id, client_order_id)
    if intent is None:
        return True
    # A pending intent is settled by its dispatch, right after it records the send (and timings).
    if order is None or intent.status not in _IN_FLIGHT:
        return intent.status is not IntentStatus.PENDING
    now = clock.now()
    if intent.status is IntentStatus.SENT and order.status is not OrderStatus.PENDING_NEW:
        await intents.mark_acknowledged(intent.id, now=now, order_id=order.id, broker_us=broker_us)
        observe.copy_latency(signal_us=None, engine_us=None, broker_us=broker_us)  # the answer came after the send
    if not order.status.is_terminal:
        return False
    if intent.action.is_protective:
        await _settle_protective(session, intent, order, now=now)
        return True
    refused = False
    if order.status is OrderStatus.FILLED:
        slip = await _slippage(session, intent, order)
        await intents.mark_filled(intent.id, now=now, order_id=order.id, slippage_bps=slip)
        await rejects.record_fill(session, intent)
        kind, reason = CopyEventKind.COPIED, None
        detail = f"{order.side.value} {order.filled_qty} {order.symbol} at {order.avg_fill_price}"
    elif order.status is OrderStatus.REJECTED:
        # Counted only by the settle that moved it: a refusal settled twice (bus and sweep) counts once.
        refused = await intents.mark_rejected(intent.id, reason=order.reject_reason or "rejected", now=now)
        kind, reason, detail = CopyEventKind.REJECTED, "broker_rejected", order.reject_reason or "rejected"
    else:
        await intents.mark_canceled(intent.id, now=now, reason=order.status.value)
        kind, reason = CopyEventKind.REJECTED, f"order_{order.status.value}"
        detail = f"{order.filled_qty} of {order.qty} filled before it was {order.status.value}"
    await _correct_link(session, intent, planned=intent.qty, filled=order.filled_qty, now=now)
    await CopyEventRepository(session).add(
        CopyEvent(
            id=new_id("cpe"), subscription_id=intent.subscription_id, kind=kind, reason=reason,
            detail=detail, signal_id=intent.signal_id, intent_id=intent.id, created_at=now,
        )
    )  # fmt: skip
    if refused:
        await rejects.record_reject(session, intent, detail, now=now)
    return True


async def end(database: Database, clock: Clock, intent: CopyIntent, status: IntentStatus, reason: str) -> None:
    """End an intent that never became an order at the venue (refused, or given up), with an event."""
    now = clock.now()
    async with database.session() as session:
        intents = CopyIntentRepository(session)
        refused = False
        if status is IntentStatus.REJECTED:
            refused = await intents.mark_rejected(intent.id, reason=reason, now=now)
        else:
            await intents.mark_failed(intent.id, error=reason, now=now)
        await _correct_link(session, intent, planned=intent.qty, filled=Decimal(0), now=now)
        kind = CopyEventKind.REJECTED if status is IntentStatus.REJECTED else CopyEventKind.FAILED
        await CopyEventRepository(session).add(
            CopyEvent(
                id=new_id("cpe"), subscription_id=intent.subscription_id, kind=kind, reason=status.value,
                detail=reason, signal_id=intent.signal_id, intent_id=intent.id, created_at=now,
            )
        )  # fmt: skip
        if refused and not intent.action.is_protective:  # a refused stop does not pause the symbol's opens
            await rejects.record_reject(session, intent, reason, now=now)
        await session.commit()


async def _settle_protective(session: AsyncSession, intent: CopyIntent, order: Order, *, now: datetime) -> None:
    """A follower's stop-loss or take-profit ended (ADR 0027). What it filled is what the follower no
    longer holds in the link: the link shrinks by it (closed at zero), so the provider's own close,
    mirrored after, finds nothing left to close. A cancellation is routine (a new revision, a close
    first) and shows no event; a fill and a refusal do."""
    intents = CopyIntentRepository(session)
    label = intent.action.value.replace("_", "-")
    if order.status is OrderStatus.FILLED:
        moved = await intents.mark_filled(intent.id, now=now, order_id=order.id)
        fill = f"{order.side.value} {order.filled_qty} {order.symbol} at {order.avg_fill_price}"
        event = (CopyEventKind.COPIED, f"{intent.action.value}_filled", f"{label}: {fill}")
    elif order.status is OrderStatus.REJECTED:
        moved = await intents.mark_rejected(intent.id, reason=order.reject_reason or "rejected", now=now)
        event = (CopyEventKind.REJECTED, "broker_rejected", f"{label}: {order.reject_reason or 'rejected'}")
    else:
        moved = await intents.mark_canceled(intent.id, now=now, reason=order.status.value)
        event = None
    if not moved:
        return  # settled before (bus and sweep): the link moved once
    if order.filled_qty > 0 and intent.link_id is not None:
        links = CopyLinkRepository(session)
        link = await links.get_by_id(intent.link_id)
        if link is not None and link.status is LinkStatus.OPEN:
            left = max(Decimal(0), link.qty - order.filled_qty)
            await links.set_qty(link.id, left, now=now)
            if left == 0:
                await links.close(link.id, now=now)
    if event is not None:
        kind, reason, detail = event
        await CopyEventRepository(session).add(
            CopyEvent(
                id=new_id("cpe"), subscription_id=intent.subscription_id, kind=kind, reason=reason,
                detail=detail, intent_id=intent.id, created_at=now,
            )
        )  # fmt: skip


async def _correct_link(
    session: AsyncSession, intent: CopyIntent, *, planned: Decimal, filled: Decimal, now: datetime
) -> None:
    """An open that filled less than planned holds less: shrink its link by the difference.

    A link left holding nothing is closed. Left open, it would make the provider's next open in that
    symbol plan a second open link for the subscription, which the store refuses, failing the fill's
    transaction for every follower of the strategy.
    """
    if intent.link_id is None or filled >= planned:
        return
    if intent.action not in (IntentAction.OPEN, IntentAction.INCREASE):
        return  # a close that did not complete leaves a position the reconciliation reports
    links = CopyLinkRepository(session)
    link = await links.get_by_id(intent.link_id)
    if link is None or link.status is not LinkStatus.OPEN:
        return
    left = max(Decimal(0), link.qty - (planned - filled))
    await links.set_qty(link.id, left, now=now)
    if left == 0:
        await links.close(link.id, now=now)


async def _slippage(session: AsyncSession, intent: CopyIntent, order: Order) -> Decimal | None:
    if intent.signal_id is None or order.avg_fill_price is None:
        return None
    signal = await CopySignalRepository(session).get_by_id(intent.signal_id)
    if signal is None:
        return None
    return slippage_bps(intent.side, signal.price, order.avg_fill_price)
