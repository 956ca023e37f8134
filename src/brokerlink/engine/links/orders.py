"""Placing and cancelling a user's orders through their linked account's adapter.

An order is stored (``pending_new``) before it is sent, so a crash between the two leaves a
record that recovery resolves by client order id (:mod:`brokerlink.engine.links.recovery`). The
client order id is the idempotency key: the same id with the same parameters returns the order
already placed; with other parameters it is a conflict. The three kinds of broker failure end
differently: a definitive refusal rejects the order and says why (422); a transient failure
rejects it as not sent (503: nothing reached the broker, safe to try again); an unknown outcome
is resolved by looking the order up, never by sending it again.

Both commands wait a short while for the broker's answer to arrive on the stream, so a caller
usually gets the order as ``new`` (or already filled) rather than ``pending_new``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import msgspec

from brokerlink.brokers.base import (
    OrderRefused,
    OrderRequest,
    OutcomeUnknown,
    TransientBrokerError,
    resolve_outcome,
)
from brokerlink.domain.enums import OrderStatus, OrderType, Side, TimeInForce
from brokerlink.domain.events import OrderCancelRejected, OrderCancelRequested, OrderRejected
from brokerlink.domain.models import Order
from brokerlink.domain.orders import validate_order_request
from brokerlink.engine.audit import Stamp
from brokerlink.engine.links.live import LiveAccount
from brokerlink.engine.links.service import BrokerLinks
from brokerlink.kit.errors import Conflict, InvalidInput, NotFound, Unavailable
from brokerlink.kit.ids import new_id
from brokerlink.store.repositories.orders import OrderRepository

ACK_WAIT_S = 2.0
"""How long a command waits for the broker's answer before returning the order as it stands."""


class OrderTicket(msgspec.Struct, frozen=True, kw_only=True):
    """A new order as the user asked for it."""

    symbol: str
    side: Side
    qty: Decimal
    type: OrderType = OrderType.MARKET
    tif: TimeInForce = TimeInForce.GTC
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    client_order_id: str | None = None


def _same_order(order: Order, ticket: OrderTicket) -> bool:
    return (order.symbol, order.side, order.qty, order.type, order.tif, order.limit_price, order.stop_price) == (
        ticket.symbol,
        ticket.side,
        ticket.qty,
        ticket.type,
        ticket.tif,
        ticket.limit_price,
        ticket.stop_price,
    )


async def place_order(
    links: BrokerLinks,
    account_id: str,
    ticket: OrderTicket,
    *,
    ack_wait_s: float = ACK_WAIT_S,
    keep_unsent: bool = False,
    audit: Stamp | None = None,
) -> tuple[Order, bool]:
    """Place ``ticket`` in the account; returns the order and whether this call created it.

    ``audit`` records ``order.place`` in the transaction that stores the order (a repeated
    ``client_order_id`` stores nothing and records nothing).

    ``keep_unsent``: when the broker provably did not take the order (a transient failure, an
    unknown outcome that lookup shows never arrived), leave it ``pending_new`` for the caller to
    send again with :func:`send_stored` (an outbox), instead of rejecting it.
    """
    live = links.live(account_id)
    order = prepare_order(live, ticket, now=links.clock.now())
    client_order_id = order.client_order_id
    async with live.lock, links.database.session() as session:
        orders = OrderRepository(session)
        existing = await orders.get_by_client_order_id(account_id, client_order_id)
        if existing is not None:
            if _same_order(existing, ticket):
                return existing, False
            raise Conflict(
                f"client_order_id {client_order_id!r} was used for a different order",
                extra={"field": "client_order_id", "order_id": existing.id},
            )
        live.require_connected()
        await orders.add(order)
        if audit is not None:
            await audit.record(
                session, action="order.place", target=order.id, now=order.created_at, details=_placed(order)
            )
        await session.commit()
    changed = live.changed(client_order_id)
    try:
        await _send(links, live, order, keep_unsent=keep_unsent)
        return await _await_change(links, order, changed=changed, done=_acknowledged, wait_s=ack_wait_s), True
    finally:
        live.forget(client_order_id)


def _placed(order: Order) -> dict[str, str | None]:
    """The audit details of a placed order: what was asked, never anything secret."""
    return {
        "account_id": order.account_id,
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "side": order.side.value,
        "qty": str(order.qty),
        "type": order.type.value,
        "limit_price": None if order.limit_price is None else str(order.limit_price),
    }


def prepare_order(live: LiveAccount, ticket: OrderTicket, *, now: datetime) -> Order:
    """The order ``ticket`` makes in the live account, ``pending_new``, checked against the broker's
    capabilities and the instrument's rules (:class:`InvalidInput` naming the field otherwise).

    Nothing is stored: :func:`place_order` stores and sends it; the copy engine stores a fan-out's
    orders in the transaction that plans them and sends them with :func:`send_stored`.
    """
    instrument = live.instrument(ticket.symbol)
    capabilities = live.adapter.capabilities
    if ticket.type not in capabilities.order_types:
        raise InvalidInput(f"type: {live.broker} does not take {ticket.type.value} orders", extra={"field": "type"})
    if ticket.tif not in capabilities.time_in_force:
        raise InvalidInput(f"tif: {live.broker} does not take {ticket.tif.value} orders", extra={"field": "tif"})
    client_order_id = ticket.client_order_id or new_id("cli")
    if len(client_order_id) > capabilities.max_client_order_id_length:
        raise InvalidInput(
            f"client_order_id: at most {capabilities.max_client_order_id_length} characters at {live.broker}",
            extra={"field": "client_order_id"},
        )
    validate_order_request(
        instrument,
        qty=ticket.qty,
        order_type=ticket.type,
        limit_price=ticket.limit_price,
        stop_price=ticket.stop_price,
        reference_price=_reference_price(live, ticket),
    )
    return Order(
        id=new_id("ord"),
        client_order_id=client_order_id,
        account_id=live.account.id,
        symbol=ticket.symbol,
        side=ticket.side,
        qty=ticket.qty,
        type=ticket.type,
        tif=ticket.tif,
        limit_price=ticket.limit_price,
        stop_price=ticket.stop_price,
        created_at=now,
        updated_at=now,
    )


async def send_stored(links: BrokerLinks, order: Order, *, ack_wait_s: float = ACK_WAIT_S) -> Order:
    """Send an order that is stored ``pending_new`` but was never sent (an outbox replay after a
    restart), under its own client order id: a venue that got it after all refuses the duplicate."""
    live = links.live(order.account_id)
    live.require_connected()
    changed = live.changed(order.client_order_id)
    try:
        await _send(links, live, order, keep_unsent=True)
        return await _await_change(links, order, changed=changed, done=_acknowledged, wait_s=ack_wait_s)
    finally:
        live.forget(order.client_order_id)


async def submit_stored(links: BrokerLinks, order: Order) -> None:
    """:func:`send_stored` without waiting for the answer: hand the order to the adapter and return.

    The answer arrives on the stream like any other (the copy engine settles its intents from the
    bus). A fan-out then spends no connection of the pool, and no read, per order in flight.
    """
    live = links.live(order.account_id)
    live.require_connected()
    await _send(links, live, order, keep_unsent=True)


async def _send(links: BrokerLinks, live: LiveAccount, order: Order, *, keep_unsent: bool = False) -> None:
    request = OrderRequest(
        client_order_id=order.client_order_id,
        symbol=order.symbol,
        side=order.side,
        qty=order.qty,
        type=order.type,
        tif=order.tif,
        limit_price=order.limit_price,
        stop_price=order.stop_price,
    )
    try:
        await live.adapter.submit(request)
    except OrderRefused as exc:
        await _reject(links, live, order, str(exc))
        raise
    except TransientBrokerError as exc:
        if not keep_unsent:
            await _reject(links, live, order, f"not sent: {exc}")
        raise
    except OutcomeUnknown:
        found = await resolve_outcome(live.adapter, order.client_order_id, wait=lambda i: asyncio.sleep(0.2 * 2**i))
        if found is None:  # the broker never got it: say so, and let the caller decide to try again
            if not keep_unsent:
                await _reject(links, live, order, "the broker did not receive the order")
            raise Unavailable("the broker did not receive the order; it was not placed") from None
        # It took effect: its acknowledgement and fills arrive on the stream (or at the next reconciliation).


async def _reject(links: BrokerLinks, live: LiveAccount, order: Order, reason: str) -> None:
    event = OrderRejected(
        account_id=order.account_id, client_order_id=order.client_order_id, ts=links.clock.now(), reason=reason
    )
    await links.apply(live, event)


async def cancel_order(
    links: BrokerLinks, user_id: str, order_id: str, *, ack_wait_s: float = ACK_WAIT_S, audit: Stamp | None = None
) -> Order:
    """Ask the broker to cancel the user's order; returns it as it stands after the answer (or the wait).
    ``audit`` records ``order.cancel`` with the cancel request's state change."""
    order = await _load_for_user(links, user_id, order_id)
    if order.status.is_terminal:
        raise Conflict(f"the order is {order.status.value}; there is nothing to cancel", extra={"status": order.status})
    live = links.live(order.account_id)
    live.require_connected()
    changed = live.changed(order.client_order_id)
    try:
        account_id, client_order_id = order.account_id, order.client_order_id
        requested = OrderCancelRequested(account_id=account_id, client_order_id=client_order_id, ts=links.clock.now())
        hook = None
        if audit is not None:
            hook = functools.partial(audit.record, action="order.cancel", target=order.id, now=requested.ts)
        await links.apply(live, requested, audit=hook)
        try:
            await live.adapter.cancel(order.client_order_id)
        except OrderRefused as exc:
            rejected = OrderCancelRejected(
                account_id=account_id, client_order_id=client_order_id, ts=links.clock.now(), reason=str(exc)
            )
            await links.apply(live, rejected)
            current = await _load_for_user(links, user_id, order_id)
            if current.status.is_terminal:  # it filled (or ended) before the cancel arrived
                return current
            raise Conflict(f"the broker refused the cancel: {exc}") from exc
        return await _await_change(links, order, changed=changed, done=_ended, wait_s=ack_wait_s)
    finally:
        live.forget(order.client_order_id)


async def _load_for_user(links: BrokerLinks, user_id: str, order_id: str) -> Order:
    async with links.database.session() as session:
        order = await OrderRepository(session).get_for_user(user_id, order_id)
    if order is None:
        raise NotFound("order not found")
    return order


async def _await_change(
    links: BrokerLinks,
    order: Order,
    *,
    changed: asyncio.Event,
    done: Callable[[Order], bool],
    wait_s: float,
) -> Order:
    current = order
    # Yield once before the first read: in a fan-out, every other order's task reaches its submit
    # before this one spends the loop's time on the follow-up read (which costs more than a submit).
    await asyncio.sleep(0)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(wait_s):
            while True:
                async with links.database.session() as session:
                    found = await OrderRepository(session).get_by_id(order.id)
                current = found or current
                if done(current):
                    break
                await changed.wait()
                changed.clear()
    return current


def _acknowledged(order: Order) -> bool:
    return order.status is not OrderStatus.PENDING_NEW


def _ended(order: Order) -> bool:
    return order.status.is_terminal


def _reference_price(live: LiveAccount, ticket: OrderTicket) -> Decimal | None:
    """The price a market order would likely trade at, for the minimum-notional check."""
    if ticket.type is not OrderType.MARKET:
        return None
    quote = live.quote(ticket.symbol)
    if quote is None:
        return None
    return quote.ask if ticket.side is Side.BUY else quote.bid
