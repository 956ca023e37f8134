"""Bring a freshly connected account back in line with its venue, from the venue's reports.

Runs each time an account's adapter connects (at startup, after a restart, after a failed
connect): the stream only carries what happens from now on, so whatever happened while
brokerlink was away is read from the reports and applied as the events the stream would have
carried. The same :func:`~brokerlink.engine.links.ingest.ingest` path applies them, so a report
that repeats something already stored changes nothing.

- Balance and positions: the venue's are the truth; a stored position the venue no longer has
  is flattened.
- Orders brokerlink still considers open are looked up by client order id. One the venue has
  never seen, still ``pending_new``, never reached it (brokerlink stopped between storing the
  intent and sending it): a person's order is rejected, not sent late at a price its owner did not
  choose; an order whose sender replays it (the copy engine's outbox) is left to that sender. Fills
  it is missing are read from the venue's fill history (one pass, only when some order lacks
  fills) and applied by trade id; then its final state (canceled, expired, rejected) follows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

from brokerlink.domain.enums import OrderStatus
from brokerlink.domain.events import (
    AccountUpdated,
    DomainEvent,
    OrderAccepted,
    OrderCanceled,
    OrderEventType,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    PositionUpdated,
)
from brokerlink.domain.models import Fill, Order, Position
from brokerlink.engine.links.ingest import Outcome
from brokerlink.engine.links.live import LiveAccount
from brokerlink.kit.clock import Clock
from brokerlink.logs import get_logger
from brokerlink.store.db import Database
from brokerlink.store.repositories.fills import FillRepository
from brokerlink.store.repositories.orders import OrderRepository
from brokerlink.store.repositories.positions import PositionRepository

_log = get_logger("brokerlink.engine.recovery")

Apply = Callable[[LiveAccount, DomainEvent], Awaitable[Outcome]]

_E = TypeVar("_E", OrderAccepted, OrderCanceled, OrderExpired, OrderRejected)

MAX_CATCH_UP_PAGES = 200
"""Fill history pages read at a reconnect (500 fills each at the sim venue)."""

NEVER_SENT = "never reached the broker: brokerlink stopped before sending it"


async def recover(
    database: Database,
    live: LiveAccount,
    *,
    clock: Clock,
    apply: Apply,
    owned_elsewhere: Callable[[Order], bool] = lambda _order: False,
    horizon: datetime | None = None,
) -> None:
    """Apply what the venue's reports say happened while the account was not followed.

    ``horizon``: venue fills from before it are not caught up. Order history older than the
    retention period is purged here (ADR 0017); without a horizon, a purged fill the venue still
    reports would come back as new, and a provider's old trade would be copied again.

    ``owned_elsewhere(order)`` names unsent orders whose sender replays them itself (the copy
    engine's outbox, which must send each intent exactly once): those are left ``pending_new``.
    """
    adapter = live.adapter
    account_id = live.id
    await sync_holdings(database, live, clock=clock, apply=apply)
    async with database.session() as session:
        open_orders = await OrderRepository(session).list_open(account_id)
    behind: dict[str, tuple[Order, Order]] = {}
    for order in open_orders:
        venue = await adapter.order(client_order_id=order.client_order_id)
        if venue is None:
            if order.status is OrderStatus.PENDING_NEW and owned_elsewhere(order):
                _log.info("order_left_to_its_sender", account_id=account_id, client_order_id=order.client_order_id)
            elif order.status is OrderStatus.PENDING_NEW:
                _log.warning("order_never_sent", account_id=account_id, client_order_id=order.client_order_id)
                await apply(live, _event(OrderRejected, order, clock, reason=NEVER_SENT))
            else:
                _log.warning("open_order_unknown_at_venue", account_id=account_id, order_id=order.id)
            continue
        behind[order.client_order_id] = (order, venue)
    await _catch_up_fills(database, live, clock=clock, apply=apply, horizon=horizon)
    for order, venue in behind.values():
        for event in _final_events(order, venue, clock):
            await apply(live, event)


async def sync_holdings(database: Database, live: LiveAccount, *, clock: Clock, apply: Apply) -> None:
    """Make the stored balance and positions the venue's: its positions as reported, and those it
    no longer has flattened (their realized P&L kept).

    One at a time per account (``live.holdings_lock``): the recovery at connect and the re-read
    after fills can overlap, and a venue read taken before a fill but answered after another read
    stored the fill's position would take that position for one the venue no longer holds, and
    flatten it."""
    account_id = live.id
    async with live.holdings_lock:
        now = clock.now()
        await apply(live, AccountUpdated(account_id=account_id, ts=now, balance=await live.adapter.balance()))
        venue_positions = {p.symbol: p for p in await live.adapter.positions()}
        async with database.session() as session:
            stored_positions = await PositionRepository(session).list_for_account(account_id)
        for position in stored_positions:
            if position.symbol not in venue_positions:
                flat = Position(account_id=account_id, symbol=position.symbol, realized_pnl=position.realized_pnl)
                await apply(live, PositionUpdated(account_id=account_id, ts=now, position=flat))
        for position in venue_positions.values():
            await apply(live, PositionUpdated(account_id=account_id, ts=now, position=position))


async def _catch_up_fills(
    database: Database, live: LiveAccount, *, clock: Clock, apply: Apply, horizon: datetime | None
) -> None:
    """Apply every venue fill the store does not have: of brokerlink's orders (their fills while it was
    away) and of orders placed elsewhere (a provider trading on the broker's own platform: the copy
    engine must see those too, or its record of the provider's position goes stale).

    The venue's fill history is read from its start, at most :data:`MAX_CATCH_UP_PAGES` pages; only
    trade ids the store lacks are applied. Venues with long histories need a stored cursor instead.
    """
    async with database.session() as session:
        known = await FillRepository(session).trade_ids(live.id)
    cursor: str | None = None
    for _ in range(MAX_CATCH_UP_PAGES):
        page = await live.adapter.fills_since(cursor)
        for fill in page.fills:
            if fill.trade_id not in known and (horizon is None or fill.ts >= horizon):
                await apply(live, _fill_event(fill, clock=clock))
        if page.next_cursor is None or not page.fills:
            return
        cursor = page.next_cursor
    _log.warning("fill_catch_up_truncated", account_id=live.id, pages=MAX_CATCH_UP_PAGES)


def _fill_event(fill: Fill, *, clock: Clock) -> OrderFilled:
    return OrderFilled(
        account_id=fill.account_id,
        ts=clock.now(),
        venue_ts=fill.ts,
        # A fill of an order placed elsewhere may carry no client order id: one derived from the trade.
        client_order_id=fill.client_order_id or f"external:{fill.trade_id}",
        venue_order_id=fill.order_id,
        trade_id=fill.trade_id,
        symbol=fill.symbol,
        side=fill.side,
        last_qty=fill.qty,
        last_price=fill.price,
        commission=fill.fee,
        commission_currency=fill.fee_currency,
    )


def _final_events(order: Order, venue: Order, clock: Clock) -> list[OrderEventType]:
    events: list[OrderEventType] = []
    if order.status is OrderStatus.PENDING_NEW and venue.venue_order_id and venue.status is not OrderStatus.REJECTED:
        events.append(_event(OrderAccepted, venue, clock, venue_order_id=venue.venue_order_id))
    if venue.status is OrderStatus.CANCELED:
        events.append(_event(OrderCanceled, venue, clock))
    elif venue.status is OrderStatus.EXPIRED:
        events.append(_event(OrderExpired, venue, clock))
    elif venue.status is OrderStatus.REJECTED:
        events.append(_event(OrderRejected, venue, clock, reason=venue.reject_reason or "rejected by the broker"))
    return events


def _event(kind: type[_E], order: Order, clock: Clock, **fields: object) -> _E:
    ids: dict[str, object] = {
        "account_id": order.account_id,
        "client_order_id": order.client_order_id,
        "ts": clock.now(),
    }
    if "venue_order_id" not in fields and order.venue_order_id is not None:
        ids["venue_order_id"] = order.venue_order_id
    return kind(**ids, **fields)  # type: ignore[arg-type]
