"""Persist one broker event: the order state machine, fills by trade id, positions and balances.

This is the "normalized event → persisted" step of DESIGN.md's data flow. Every adapter event goes
through :func:`ingest` in a transaction that stores its event-log record too (on SQLite a transaction
may carry several accounts' events: :mod:`~brokerlink.engine.links.group`), so what the database
says and what the log says can never disagree. The caller serializes calls per account
(one writer per account at a time), so a fill and a concurrent cancel request cannot overwrite
each other's changes to the same order row.

Duplicates are expected (the same fill arrives over the stream and over REST; venues repeat
reports) and change nothing. Reports that contradict what is stored (an overfill, a transition
the state machine refuses) are logged and skipped rather than allowed to corrupt the order; the
next reconciliation looks the order up at the venue.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink import observe
from brokerlink.domain.events import (
    AccountUpdated,
    ConnectionChanged,
    DomainEvent,
    OrderEventType,
    OrderFilled,
    PositionUpdated,
)
from brokerlink.domain.models import Order
from brokerlink.domain.orders import (
    EventMismatch,
    InvalidTransition,
    OrderState,
    Overfill,
    apply_event,
    fill_from_event,
)
from brokerlink.engine.copy.ids import PREFIX as COPY_ID_PREFIX
from brokerlink.logs import get_logger
from brokerlink.store.repositories.events import EventRepository
from brokerlink.store.repositories.fills import FillRepository
from brokerlink.store.repositories.orders import OrderRepository
from brokerlink.store.repositories.positions import BalanceRepository, PositionRepository

_log = get_logger("brokerlink.engine.ingest")

ACCOUNT_TOPIC = "account"
"""Event-log and bus topic of everything that happens in a linked account; the key is the account id."""

OBSERVATIONS = "brokerlink.observations"
"""``session.info`` key: a list of calls recording metrics, for whoever commits the session to make
after the commit (an attempt rolled back counts nothing). Without it ingest records them at once."""


class Outcome(StrEnum):
    """What :func:`ingest` did with an event."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    UNTRACKED = "untracked"
    """About an order brokerlink did not place; only its fills are kept (with no order attached)."""
    REFUSED = "refused"
    """Contradicts the stored order; logged and left for reconciliation."""


async def ingest(session: AsyncSession, event: DomainEvent, *, now: datetime) -> Outcome:
    """Apply ``event`` to the store and append it to the event log when it changed anything. Flushes only."""
    if isinstance(event, ConnectionChanged):
        raise TypeError("connection changes belong to the connection, not to ingest()")
    if isinstance(event, PositionUpdated):
        await PositionRepository(session).upsert(event.position, now=now)
        outcome = Outcome.APPLIED
    elif isinstance(event, AccountUpdated):
        await BalanceRepository(session).upsert(event.balance)
        outcome = Outcome.APPLIED
    else:
        outcome = await _ingest_order_event(session, event)
    if outcome in (Outcome.APPLIED, Outcome.UNTRACKED):
        await EventRepository(session).append(
            topic=ACCOUNT_TOPIC, key=event.account_id, event_type=event.tag, payload=event, now=now
        )
    return outcome


async def _ingest_order_event(session: AsyncSession, event: OrderEventType) -> Outcome:
    orders = OrderRepository(session)
    fills = FillRepository(session)
    order = await orders.get_by_client_order_id(event.account_id, event.client_order_id)
    if order is None:
        if isinstance(event, OrderFilled) and await fills.add_if_new(fill_from_event(event, order_id=None)):
            return Outcome.UNTRACKED
        return Outcome.DUPLICATE if isinstance(event, OrderFilled) else Outcome.UNTRACKED
    state = OrderState(order=order, fills=tuple(await fills.list_for_order(order.id)))
    try:
        after = apply_event(state, event)
    except (InvalidTransition, Overfill, EventMismatch) as exc:
        _log.warning(
            "broker_event_refused",
            account_id=event.account_id,
            client_order_id=event.client_order_id,
            event_type=event.tag,
            status=order.status.value,
            reason=str(exc),
        )
        return Outcome.REFUSED
    if after is state:
        return Outcome.DUPLICATE
    await orders.update(after.order)
    if after.order.status.is_terminal and not state.order.status.is_terminal:  # once per order
        observation = partial(
            observe.order_outcome,
            broker=session.info.get("broker", ""),  # set by GroupIngest: events name no broker
            status=after.order.status.value,
            source="copy" if event.client_order_id.startswith(COPY_ID_PREFIX) else "user",
        )
        pending = session.info.get(OBSERVATIONS)
        if pending is None:
            observation()
        else:
            pending.append(observation)
    if len(after.fills) > len(state.fills):
        await fills.add_if_new(after.fills[-1])
    return Outcome.APPLIED


def is_open(order: Order) -> bool:
    """Whether the order can still change at the venue."""
    return not order.status.is_terminal
