"""The order state machine (an explicit transition table) and order request validation. Pure; no I/O.

Real venues are messy, and the table accepts what they actually do:

- **Fill before acknowledgement.** ``PENDING_NEW`` + fill goes to ``PARTIALLY_FILLED``/``FILLED``;
  the late ack then keeps the status (it only records the venue order id), never moves it back.
- **Fill after a cancel request.** A partial fill keeps ``PENDING_CANCEL`` and a completing fill goes
  to ``FILLED``. Keeping ``PENDING_CANCEL`` follows FIX's OrdStatus precedence (pending cancel ranks
  above partially filled): the cancel is still in flight, and a user who saw "partially filled"
  would think it was lost and cancel again. ``filled_qty`` shows the fill either way.
- **Cancel rejected.** ``PENDING_CANCEL`` returns to the state the request interrupted. The order
  does not store it; it is derived: ``PARTIALLY_FILLED`` if anything is filled, else ``NEW`` if the
  venue acknowledged the order (``venue_order_id`` known), else ``PENDING_NEW``.
- **Late fill after cancel or expiry.** Venues report an execution after the cancel (or expiry)
  confirmation when the cancel raced a fill: the execution happened first, the reports crossed.
  The fill is accepted: ``filled_qty`` and ``avg_fill_price`` are updated and the order stays
  ``CANCELED``/``EXPIRED`` - unless the late fills complete the quantity, in which case it becomes
  ``FILLED``: if every unit executed, nothing was canceled, and a consumer (the copy engine, the
  ledger) must see a complete order. With the matching rule that ``FILLED`` ignores a late cancel
  confirmation, the final state does not depend on the order in which fills and the cancel arrive.
- **Duplicates.** A fill whose trade id was already applied leaves the state unchanged (the very
  same object is returned). Every other event is idempotent through the table itself: repeating it
  is a ``KEEP`` row. Double counting is impossible by construction because fills are applied to an
  :class:`OrderState`, which holds the order *and* the fills already applied to it.
- **Refusals.** An overfill raises :class:`Overfill`; a pair (state, trigger) that is not in the
  table raises :class:`InvalidTransition` naming both (e.g. ``rejected`` + ``fill``); an event for
  another order or account raises :class:`EventMismatch`. All are ``409 Conflict``.

``avg_fill_price`` is the quantity-weighted mean of the fills, computed from the exact sum of
``qty * price`` with one division rounded to :data:`AVERAGE_PRICE_CONTEXT` (28 significant digits,
half-even). Computing it incrementally from the previous average would drift in the last digit
whenever a mean does not terminate (1@1 and 2@2 is 5/3), which is why :class:`OrderState` keeps the
fills rather than only their count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow, localcontext
from enum import StrEnum
from types import MappingProxyType

import msgspec

from brokerlink.domain.enums import OrderStatus, OrderType
from brokerlink.domain.events import (
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderCancelRequested,
    OrderEventType,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderTriggered,
    OrderUpdated,
)
from brokerlink.domain.models import Fill, Instrument, Order
from brokerlink.kit.errors import Conflict, InvalidInput
from brokerlink.kit.money import is_multiple_of

_ZERO = Decimal(0)

# Sums and products of quantities and prices must never round. 200 digits hold any realistic value exactly;
# the Inexact trap turns an unrealistic one into an error instead of a silent rounding (the default context
# would round at 28 digits, and an 8-decimal quantity times an 8-decimal price can exceed that).
_EXACT = Context(prec=200, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])

AVERAGE_PRICE_CONTEXT = Context(prec=28, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])
"""The one rounding in an average price: the quotient of exact sums, 28 significant digits, half-even."""


class Trigger(StrEnum):
    """What can happen to an order; each event maps to exactly one trigger (:func:`trigger_of`)."""

    ACCEPT = "accept"
    REJECT = "reject"
    UPDATE = "update"
    TRIGGER = "trigger"
    CANCEL_REQUEST = "cancel_request"
    CANCEL_REJECT = "cancel_reject"
    CANCEL = "cancel"
    EXPIRE = "expire"
    FILL = "fill"


class Rule(StrEnum):
    """A table target that depends on the order's quantities rather than being one fixed status."""

    KEEP = "keep"
    """The status does not change (repeats, late acks); the event's data may still be recorded."""
    BY_FILL = "by_fill"
    """``FILLED`` if ``filled_qty == qty``, else ``PARTIALLY_FILLED`` if anything is filled, else ``NEW``."""
    FILLED_OR_KEEP = "filled_or_keep"
    """``FILLED`` if ``filled_qty == qty``, else the status does not change."""
    RESTORE = "restore"
    """The state a cancel request interrupted, derived from ``filled_qty`` and ``venue_order_id``."""


S = OrderStatus
T = Trigger
R = Rule

TRANSITIONS: Mapping[tuple[OrderStatus, Trigger], OrderStatus | Rule] = MappingProxyType(
    {
        # Sent, not yet acknowledged. Anything that proves the venue holds the order working
        # (a modify confirmation, a stop trigger) counts as the acknowledgement it overtook.
        (S.PENDING_NEW, T.ACCEPT): S.NEW,
        (S.PENDING_NEW, T.REJECT): S.REJECTED,
        (S.PENDING_NEW, T.UPDATE): S.NEW,
        (S.PENDING_NEW, T.TRIGGER): S.NEW,
        (S.PENDING_NEW, T.FILL): R.BY_FILL,
        (S.PENDING_NEW, T.CANCEL_REQUEST): S.PENDING_CANCEL,
        (S.PENDING_NEW, T.CANCEL_REJECT): R.KEEP,
        (S.PENDING_NEW, T.CANCEL): S.CANCELED,
        (S.PENDING_NEW, T.EXPIRE): S.EXPIRED,
        # Working, nothing filled.
        (S.NEW, T.ACCEPT): R.KEEP,
        (S.NEW, T.UPDATE): R.KEEP,
        (S.NEW, T.TRIGGER): R.KEEP,
        (S.NEW, T.FILL): R.BY_FILL,
        (S.NEW, T.CANCEL_REQUEST): S.PENDING_CANCEL,
        (S.NEW, T.CANCEL_REJECT): R.KEEP,
        (S.NEW, T.CANCEL): S.CANCELED,
        (S.NEW, T.EXPIRE): S.EXPIRED,
        # Working, partly filled. A modify down to the filled quantity completes the order.
        (S.PARTIALLY_FILLED, T.ACCEPT): R.KEEP,
        (S.PARTIALLY_FILLED, T.UPDATE): R.BY_FILL,
        (S.PARTIALLY_FILLED, T.TRIGGER): R.KEEP,
        (S.PARTIALLY_FILLED, T.FILL): R.BY_FILL,
        (S.PARTIALLY_FILLED, T.CANCEL_REQUEST): S.PENDING_CANCEL,
        (S.PARTIALLY_FILLED, T.CANCEL_REJECT): R.KEEP,
        (S.PARTIALLY_FILLED, T.CANCEL): S.CANCELED,
        (S.PARTIALLY_FILLED, T.EXPIRE): S.EXPIRED,
        # Cancel in flight. A reject is possible only if the request overtook the ack (guarded: nothing filled).
        (S.PENDING_CANCEL, T.ACCEPT): R.KEEP,
        (S.PENDING_CANCEL, T.REJECT): S.REJECTED,
        (S.PENDING_CANCEL, T.UPDATE): R.FILLED_OR_KEEP,
        (S.PENDING_CANCEL, T.TRIGGER): R.KEEP,
        (S.PENDING_CANCEL, T.FILL): R.FILLED_OR_KEEP,
        (S.PENDING_CANCEL, T.CANCEL_REQUEST): R.KEEP,
        (S.PENDING_CANCEL, T.CANCEL_REJECT): R.RESTORE,
        (S.PENDING_CANCEL, T.CANCEL): S.CANCELED,
        (S.PENDING_CANCEL, T.EXPIRE): S.EXPIRED,
        # Terminal states absorb late reports of things that happened before them; the first terminal word wins.
        (S.FILLED, T.ACCEPT): R.KEEP,
        (S.FILLED, T.TRIGGER): R.KEEP,
        (S.FILLED, T.CANCEL_REJECT): R.KEEP,
        (S.FILLED, T.CANCEL): R.KEEP,
        (S.FILLED, T.EXPIRE): R.KEEP,
        (S.CANCELED, T.ACCEPT): R.KEEP,
        (S.CANCELED, T.FILL): R.FILLED_OR_KEEP,
        (S.CANCELED, T.CANCEL_REJECT): R.KEEP,
        (S.CANCELED, T.CANCEL): R.KEEP,
        (S.CANCELED, T.EXPIRE): R.KEEP,
        (S.EXPIRED, T.ACCEPT): R.KEEP,
        (S.EXPIRED, T.FILL): R.FILLED_OR_KEEP,
        (S.EXPIRED, T.CANCEL_REJECT): R.KEEP,
        (S.EXPIRED, T.CANCEL): R.KEEP,
        (S.EXPIRED, T.EXPIRE): R.KEEP,
        (S.REJECTED, T.REJECT): R.KEEP,
        (S.REJECTED, T.CANCEL_REJECT): R.KEEP,
    }
)
"""Every allowed (status, trigger) pair. A pair that is missing is an :class:`InvalidTransition`."""

del S, T, R

_TRIGGERS: Mapping[type[OrderEventType], Trigger] = MappingProxyType(
    {
        OrderAccepted: Trigger.ACCEPT,
        OrderRejected: Trigger.REJECT,
        OrderUpdated: Trigger.UPDATE,
        OrderTriggered: Trigger.TRIGGER,
        OrderCancelRequested: Trigger.CANCEL_REQUEST,
        OrderCancelRejected: Trigger.CANCEL_REJECT,
        OrderCanceled: Trigger.CANCEL,
        OrderExpired: Trigger.EXPIRE,
        OrderFilled: Trigger.FILL,
    }
)

_LIMIT_TYPES = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})
_STOP_TYPES = frozenset({OrderType.STOP, OrderType.STOP_LIMIT})


class InvalidTransition(Conflict):
    """The order's status does not take this trigger (``rejected`` + ``fill``); names both."""

    code = "invalid_transition"
    title = "Invalid order state transition"

    def __init__(self, order_status: OrderStatus, trigger: Trigger, why: str | None = None) -> None:
        detail = f"order in status {order_status.value!r} cannot take trigger {trigger.value!r}"
        super().__init__(
            f"{detail}: {why}" if why else detail,
            extra={"order_status": order_status.value, "trigger": trigger.value},
        )
        self.order_status = order_status
        self.trigger = trigger


class Overfill(Conflict):
    """A fill (or a modify) would make the filled quantity exceed the order quantity."""

    code = "overfill"
    title = "Order overfilled"


class EventMismatch(Conflict):
    """The event does not belong to this order (other account, client order id, symbol or side)."""

    code = "event_mismatch"
    title = "Event does not match the order"


def trigger_of(event: OrderEventType) -> Trigger:
    """The state-machine trigger an event fires."""
    return _TRIGGERS[type(event)]


def average_fill_price(fills: Iterable[Fill]) -> Decimal | None:
    """Quantity-weighted mean price of ``fills`` (``None`` if there are none), rounded only once."""
    fills = tuple(fills)  # iterated twice below; a generator would come back empty the second time
    with localcontext(_EXACT):
        qty = sum((f.qty for f in fills), _ZERO)
        notional = sum((f.qty * f.price for f in fills), _ZERO)
    return AVERAGE_PRICE_CONTEXT.divide(notional, qty) if qty else None


class OrderState(msgspec.Struct, frozen=True, kw_only=True):
    """An order together with the fills already applied to it: the unit the state machine works on.

    Keeping the fills makes two things hold by construction: a trade id is never counted twice, and
    the average price is the exact weighted mean. Build one from the store with the order and its
    fills; construction checks that they agree (``sum(fills.qty) == order.filled_qty``).
    """

    order: Order
    fills: tuple[Fill, ...] = ()

    def __post_init__(self) -> None:
        seen: set[str] = set()
        with localcontext(_EXACT):
            total = _ZERO
            for fill in self.fills:
                if fill.trade_id in seen:
                    raise EventMismatch(f"trade {fill.trade_id!r} appears twice in the fills of one order")
                seen.add(fill.trade_id)
                _check_fill_matches(self.order, fill)
                total += fill.qty
        if total != self.order.filled_qty:
            raise EventMismatch(f"fills sum to {total} but the order's filled_qty is {self.order.filled_qty}")

    @property
    def trade_ids(self) -> frozenset[str]:
        """Trade ids already applied."""
        return frozenset(f.trade_id for f in self.fills)


def _check_fill_matches(order: Order, fill: Fill) -> None:
    problems = [
        name
        for name, ok in (
            ("account_id", fill.account_id == order.account_id),
            ("symbol", fill.symbol == order.symbol),
            ("side", fill.side == order.side),
            ("client_order_id", fill.client_order_id in (None, order.client_order_id)),
            ("order_id", fill.order_id in (None, order.id)),
        )
        if not ok
    ]
    if problems:
        raise EventMismatch(f"fill {fill.trade_id!r} does not match order {order.id!r}: {', '.join(problems)} differ")


def fill_from_event(event: OrderFilled, *, order_id: str | None) -> Fill:
    """The :class:`Fill` record an ``OrderFilled`` event produces (timestamped at the venue when known).

    ``order_id`` is our order's id, or ``None`` for a fill of an order placed outside brokerlink.
    """
    return Fill(
        trade_id=event.trade_id,
        order_id=order_id,
        client_order_id=event.client_order_id,
        account_id=event.account_id,
        symbol=event.symbol,
        side=event.side,
        qty=event.last_qty,
        price=event.last_price,
        fee=event.commission,
        fee_currency=event.commission_currency,
        ts=event.venue_ts or event.ts,
    )


def apply_event(state: OrderState, event: OrderEventType) -> OrderState:
    """Apply one event to an order and return the new state; the input is never modified.

    A fill whose trade id is already in ``state`` returns ``state`` itself (check with ``is``), so
    a caller can tell a duplicate from a new fill. A new fill is appended to ``fills`` and is the
    last element, ready to be persisted and applied to the position.

    Raises :class:`InvalidTransition`, :class:`Overfill` or :class:`EventMismatch`.
    """
    order = state.order
    if event.account_id != order.account_id or event.client_order_id != order.client_order_id:
        raise EventMismatch(
            f"{event.tag} for {event.account_id}/{event.client_order_id} applied to order "
            f"{order.account_id}/{order.client_order_id}"
        )
    if isinstance(event, OrderFilled) and _already_applied(state, event):
        return state

    trigger = trigger_of(event)
    target = TRANSITIONS.get((order.status, trigger))
    if target is None:
        raise InvalidTransition(order.status, trigger)

    fills = state.fills
    changes: dict[str, object] = {"updated_at": max(order.updated_at, event.ts)}
    if order.venue_order_id is None and event.venue_order_id is not None:
        # Any report naming the venue's id teaches it to us; a known id is never overwritten by a late ack.
        changes["venue_order_id"] = event.venue_order_id

    if isinstance(event, OrderRejected):
        if order.filled_qty:
            raise InvalidTransition(order.status, trigger, f"{order.filled_qty} is already filled")
        changes["reject_reason"] = event.reason
    elif isinstance(event, OrderTriggered):
        if order.type not in _STOP_TYPES:
            raise InvalidTransition(order.status, trigger, f"a {order.type.value} order has no stop to trigger")
    elif isinstance(event, OrderUpdated):
        changes.update(_update_changes(order, event))
    elif isinstance(event, OrderFilled):
        fills = (*fills, _new_fill(order, event))
        with localcontext(_EXACT):
            changes["filled_qty"] = order.filled_qty + event.last_qty
        changes["avg_fill_price"] = average_fill_price(fills)

    updated = msgspec.structs.replace(order, **changes)
    status = _resolve(target, before=order, after=updated)
    if status != updated.status:
        updated = msgspec.structs.replace(updated, status=status)
    return OrderState(order=updated, fills=fills)


def _already_applied(state: OrderState, event: OrderFilled) -> bool:
    known = next((f for f in state.fills if f.trade_id == event.trade_id), None)
    if known is None:
        return False
    # The same fill again (stream and REST). A different fill under a known trade id is corrupt data, not a repeat.
    if (known.qty, known.price) != (event.last_qty, event.last_price):
        raise EventMismatch(
            f"trade {event.trade_id!r} was applied as {known.qty} @ {known.price}, "
            f"now reported as {event.last_qty} @ {event.last_price}"
        )
    return True


def _new_fill(order: Order, event: OrderFilled) -> Fill:
    fill = fill_from_event(event, order_id=order.id)
    _check_fill_matches(order, fill)
    if not (fill.qty > 0):
        raise EventMismatch(f"fill {fill.trade_id!r} has a non-positive quantity {fill.qty}")
    with localcontext(_EXACT):
        filled = order.filled_qty + fill.qty
    if filled > order.qty:
        raise Overfill(
            f"fill {fill.trade_id!r} of {fill.qty} would fill {filled} of an order for {order.qty}",
            extra={"order_qty": str(order.qty), "filled_qty": str(order.filled_qty), "fill_qty": str(fill.qty)},
        )
    return fill


def _update_changes(order: Order, event: OrderUpdated) -> dict[str, object]:
    changes: dict[str, object] = {}
    if event.venue_order_id is not None:
        # Some venues (Alpaca) replace an order with a new venue id on modify; the newest id is the live one.
        changes["venue_order_id"] = event.venue_order_id
    if event.qty is not None:
        if not (event.qty > 0):
            raise EventMismatch(f"modified qty must be positive, got {event.qty}")
        if event.qty < order.filled_qty:
            raise Overfill(f"modified qty {event.qty} is below the filled qty {order.filled_qty}")
        changes["qty"] = event.qty
    if event.limit_price is not None:
        if order.type not in _LIMIT_TYPES:
            raise EventMismatch(f"a {order.type.value} order has no limit price to modify")
        changes["limit_price"] = event.limit_price
    if event.stop_price is not None:
        if order.type not in _STOP_TYPES:
            raise EventMismatch(f"a {order.type.value} order has no stop price to modify")
        changes["stop_price"] = event.stop_price
    return changes


def _resolve(target: OrderStatus | Rule, *, before: Order, after: Order) -> OrderStatus:
    """Turn a table target into a status, looking at the order after the event's data was applied."""
    if isinstance(target, OrderStatus):
        return target
    if after.filled_qty == after.qty and target in (Rule.BY_FILL, Rule.FILLED_OR_KEEP):
        return OrderStatus.FILLED
    if target in (Rule.KEEP, Rule.FILLED_OR_KEEP):
        return before.status
    # BY_FILL short of complete, and RESTORE: the working state the quantities (and the ack) imply.
    if after.filled_qty > 0:
        return OrderStatus.PARTIALLY_FILLED
    if target is Rule.BY_FILL or after.venue_order_id is not None:
        return OrderStatus.NEW
    return OrderStatus.PENDING_NEW


def _invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", extra={"field": field})


def _finite_positive(field: str, value: Decimal) -> None:
    if not value.is_finite():
        raise _invalid(field, f"must be a finite number, got {value}")
    if value <= 0:
        raise _invalid(field, f"must be greater than 0, got {value}")


def _on_grid(value: Decimal, step: Decimal) -> bool:
    # kit's is_multiple_of uses the ambient context; a large quotient at 28 digits would raise, not answer.
    with localcontext(_EXACT):
        return is_multiple_of(value, step)


def validate_order_request(
    instrument: Instrument,
    *,
    qty: Decimal,
    order_type: OrderType,
    limit_price: Decimal | None = None,
    stop_price: Decimal | None = None,
    reference_price: Decimal | None = None,
) -> None:
    """Check a new order against the instrument's rules before it is sent; raise ``InvalidInput`` naming the field.

    Checks, in order: the instrument is tradable; ``qty`` is positive, within ``min_qty``/``max_qty``
    and a whole number of ``qty_step``; ``limit_price`` is given exactly for limit and stop-limit
    orders and ``stop_price`` exactly for stop and stop-limit orders, both positive and on the tick
    grid; and the notional is at least ``min_notional`` when a price is known (the limit price, else
    the stop price, else ``reference_price``, e.g. the last quote for a market order). Prices must be
    positive: instruments that trade at negative prices are not supported yet.
    """
    if not instrument.tradable:
        raise _invalid("symbol", f"{instrument.symbol} is not tradable")
    _finite_positive("qty", qty)
    if qty < instrument.min_qty:
        raise _invalid("qty", f"{qty} is below the minimum {instrument.min_qty}")
    if instrument.max_qty is not None and qty > instrument.max_qty:
        raise _invalid("qty", f"{qty} is above the maximum {instrument.max_qty}")
    if not _on_grid(qty, instrument.qty_step):
        raise _invalid("qty", f"{qty} is not a multiple of the quantity step {instrument.qty_step}")

    for field, price, needed in (
        ("limit_price", limit_price, order_type in _LIMIT_TYPES),
        ("stop_price", stop_price, order_type in _STOP_TYPES),
    ):
        if needed and price is None:
            raise _invalid(field, f"is required for a {order_type.value} order")
        if not needed and price is not None:
            raise _invalid(field, f"is not allowed for a {order_type.value} order")
        if price is not None:
            _finite_positive(field, price)
            if not _on_grid(price, instrument.tick_size):
                raise _invalid(field, f"{price} is not a multiple of the tick size {instrument.tick_size}")

    if reference_price is not None:
        _finite_positive("reference_price", reference_price)
    price = limit_price if limit_price is not None else stop_price if stop_price is not None else reference_price
    if price is not None and instrument.min_notional > 0:
        with localcontext(_EXACT):
            notional = instrument.notional(qty, price)
        if notional < instrument.min_notional:
            minimum = instrument.min_notional
            raise _invalid("qty", f"notional {notional} at price {price} is below the minimum {minimum}")
