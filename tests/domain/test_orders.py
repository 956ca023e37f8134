"""The order state machine: every table row, every refused pair, real-venue sequences, and exact fills."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal, Inexact, InvalidOperation, localcontext
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerlink.domain.enums import AssetClass, OrderStatus, OrderType, Side, TimeInForce
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
from brokerlink.domain.orders import (
    TRANSITIONS,
    EventMismatch,
    InvalidTransition,
    OrderState,
    Overfill,
    Rule,
    Trigger,
    apply_event,
    average_fill_price,
    fill_from_event,
    trigger_of,
    validate_order_request,
)
from brokerlink.kit.errors import Conflict, InvalidInput

S = OrderStatus
T = Trigger
TS = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
LATER = TS + timedelta(seconds=1)
EXACT = Context(prec=200, traps=[Inexact, InvalidOperation])
AVG = Context(prec=28, rounding=ROUND_HALF_EVEN)  # the documented contract: 28 significant digits, half-even

# What each status typically holds when a test does not say (qty is 10).
DEFAULT_FILLED = {S.PENDING_NEW: "0", S.NEW: "0", S.PARTIALLY_FILLED: "4", S.PENDING_CANCEL: "4", S.FILLED: "10",
                  S.CANCELED: "4", S.EXPIRED: "4", S.REJECTED: "0"}  # fmt: skip


def make_fill(trade_id: str, qty: str, price: str = "100", **overrides: Any) -> Fill:
    fields: dict[str, Any] = {
        "trade_id": trade_id,
        "order_id": "ord_1",
        "client_order_id": "c-1",
        "account_id": "acc_1",
        "symbol": "AAPL",
        "side": Side.BUY,
        "qty": Decimal(qty),
        "price": Decimal(price),
        "ts": TS,
    }
    fields.update(overrides)
    return Fill(**fields)


def make_state(
    status: OrderStatus,
    *,
    filled: str | None = None,
    venue_order_id: str | None = "v-1",
    qty: str = "10",
    order_type: OrderType = OrderType.STOP_LIMIT,
) -> OrderState:
    """An order in ``status``; anything already filled is one fill ``t-0`` at 100."""
    filled = DEFAULT_FILLED[status] if filled is None else filled
    fills = (make_fill("t-0", filled),) if Decimal(filled) else ()
    order = Order(
        id="ord_1",
        client_order_id="c-1",
        account_id="acc_1",
        symbol="AAPL",
        side=Side.BUY,
        qty=Decimal(qty),
        type=order_type,
        tif=TimeInForce.GTC,
        limit_price=Decimal(101) if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None,
        stop_price=Decimal(100) if order_type in (OrderType.STOP, OrderType.STOP_LIMIT) else None,
        status=status,
        filled_qty=Decimal(filled),
        avg_fill_price=Decimal(100) if fills else None,
        venue_order_id=None if status is S.PENDING_NEW else venue_order_id,
        created_at=TS,
        updated_at=TS,
    )
    return OrderState(order=order, fills=fills)


def make_event(trigger: Trigger, *, ts: datetime = LATER, **kw: Any) -> OrderEventType:
    """A valid event of each kind for order ``c-1`` (a fill of 1 @ 100 unless told otherwise)."""
    base: dict[str, Any] = {"account_id": "acc_1", "client_order_id": "c-1", "ts": ts}
    if trigger is T.FILL:
        return fill_event(kw.pop("trade_id", "t-new"), kw.pop("qty", "1"), ts=ts, **kw)
    if trigger is T.ACCEPT:
        kw.setdefault("venue_order_id", "v-1")
    elif trigger is T.REJECT:
        kw.setdefault("reason", "insufficient funds")
    elif trigger is T.CANCEL_REJECT:
        kw.setdefault("reason", "too late to cancel")
    factories: dict[Trigger, Callable[..., OrderEventType]] = {
        T.ACCEPT: OrderAccepted,
        T.REJECT: OrderRejected,
        T.UPDATE: OrderUpdated,
        T.TRIGGER: OrderTriggered,
        T.CANCEL_REQUEST: OrderCancelRequested,
        T.CANCEL_REJECT: OrderCancelRejected,
        T.CANCEL: OrderCanceled,
        T.EXPIRE: OrderExpired,
    }
    return factories[trigger](**base, **kw)


def fill_event(trade_id: str, qty: str, price: str = "100", *, ts: datetime = LATER, **kw: Any) -> OrderFilled:
    fields: dict[str, Any] = {
        "account_id": "acc_1",
        "client_order_id": "c-1",
        "ts": ts,
        "trade_id": trade_id,
        "symbol": "AAPL",
        "side": Side.BUY,
        "last_qty": Decimal(qty),
        "last_price": Decimal(price),
    }
    fields.update(kw)
    return OrderFilled(**fields)


def apply_all(state: OrderState, *events: OrderEventType) -> OrderState:
    for event in events:
        state = apply_event(state, event)
    return state


# --- the table, row by row --------------------------------------------------------------------

# (status, filled before, venue id known, trigger, event arguments, expected status, expected filled)
Row = tuple[OrderStatus, str | None, bool, Trigger, dict[str, Any], OrderStatus, str | None]
ROWS: list[Row] = [
    (S.PENDING_NEW, None, False, T.ACCEPT, {}, S.NEW, None),
    (S.PENDING_NEW, None, False, T.REJECT, {}, S.REJECTED, None),
    (S.PENDING_NEW, None, False, T.UPDATE, {"qty": Decimal(12)}, S.NEW, None),
    (S.PENDING_NEW, None, False, T.TRIGGER, {}, S.NEW, None),
    (S.PENDING_NEW, None, False, T.FILL, {"qty": "4"}, S.PARTIALLY_FILLED, "4"),
    (S.PENDING_NEW, None, False, T.FILL, {"qty": "10"}, S.FILLED, "10"),
    (S.PENDING_NEW, None, False, T.CANCEL_REQUEST, {}, S.PENDING_CANCEL, None),
    (S.PENDING_NEW, None, False, T.CANCEL_REJECT, {}, S.PENDING_NEW, None),
    (S.PENDING_NEW, None, False, T.CANCEL, {}, S.CANCELED, None),
    (S.PENDING_NEW, None, False, T.EXPIRE, {}, S.EXPIRED, None),
    (S.NEW, None, True, T.ACCEPT, {}, S.NEW, None),
    (S.NEW, None, True, T.UPDATE, {"qty": Decimal(12)}, S.NEW, None),
    (S.NEW, None, True, T.TRIGGER, {}, S.NEW, None),
    (S.NEW, None, True, T.FILL, {"qty": "4"}, S.PARTIALLY_FILLED, "4"),
    (S.NEW, None, True, T.FILL, {"qty": "10"}, S.FILLED, "10"),
    (S.NEW, None, True, T.CANCEL_REQUEST, {}, S.PENDING_CANCEL, None),
    (S.NEW, None, True, T.CANCEL_REJECT, {}, S.NEW, None),
    (S.NEW, None, True, T.CANCEL, {}, S.CANCELED, None),
    (S.NEW, None, True, T.EXPIRE, {}, S.EXPIRED, None),
    (S.PARTIALLY_FILLED, None, True, T.ACCEPT, {}, S.PARTIALLY_FILLED, None),
    (S.PARTIALLY_FILLED, None, True, T.UPDATE, {"qty": Decimal(12)}, S.PARTIALLY_FILLED, None),
    (S.PARTIALLY_FILLED, None, True, T.UPDATE, {"qty": Decimal(4)}, S.FILLED, None),
    (S.PARTIALLY_FILLED, None, True, T.TRIGGER, {}, S.PARTIALLY_FILLED, None),
    (S.PARTIALLY_FILLED, None, True, T.FILL, {"qty": "2"}, S.PARTIALLY_FILLED, "6"),
    (S.PARTIALLY_FILLED, None, True, T.FILL, {"qty": "6"}, S.FILLED, "10"),
    (S.PARTIALLY_FILLED, None, True, T.CANCEL_REQUEST, {}, S.PENDING_CANCEL, None),
    (S.PARTIALLY_FILLED, None, True, T.CANCEL_REJECT, {}, S.PARTIALLY_FILLED, None),
    (S.PARTIALLY_FILLED, None, True, T.CANCEL, {}, S.CANCELED, None),
    (S.PARTIALLY_FILLED, None, True, T.EXPIRE, {}, S.EXPIRED, None),
    (S.PENDING_CANCEL, "0", False, T.ACCEPT, {}, S.PENDING_CANCEL, None),
    (S.PENDING_CANCEL, "0", False, T.REJECT, {}, S.REJECTED, None),
    (S.PENDING_CANCEL, None, True, T.UPDATE, {"qty": Decimal(12)}, S.PENDING_CANCEL, None),
    (S.PENDING_CANCEL, None, True, T.UPDATE, {"qty": Decimal(4)}, S.FILLED, None),
    (S.PENDING_CANCEL, None, True, T.TRIGGER, {}, S.PENDING_CANCEL, None),
    (S.PENDING_CANCEL, "0", True, T.FILL, {"qty": "4"}, S.PENDING_CANCEL, "4"),
    (S.PENDING_CANCEL, None, True, T.FILL, {"qty": "6"}, S.FILLED, "10"),
    (S.PENDING_CANCEL, None, True, T.CANCEL_REQUEST, {}, S.PENDING_CANCEL, None),
    (S.PENDING_CANCEL, "4", True, T.CANCEL_REJECT, {}, S.PARTIALLY_FILLED, None),
    (S.PENDING_CANCEL, "0", True, T.CANCEL_REJECT, {}, S.NEW, None),
    (S.PENDING_CANCEL, "0", False, T.CANCEL_REJECT, {}, S.PENDING_NEW, None),
    (S.PENDING_CANCEL, None, True, T.CANCEL, {}, S.CANCELED, None),
    (S.PENDING_CANCEL, None, True, T.EXPIRE, {}, S.EXPIRED, None),
    (S.FILLED, None, True, T.ACCEPT, {}, S.FILLED, None),
    (S.FILLED, None, False, T.ACCEPT, {}, S.FILLED, None),
    (S.FILLED, None, True, T.TRIGGER, {}, S.FILLED, None),
    (S.FILLED, None, True, T.CANCEL_REJECT, {}, S.FILLED, None),
    (S.FILLED, None, True, T.CANCEL, {}, S.FILLED, None),
    (S.FILLED, None, True, T.EXPIRE, {}, S.FILLED, None),
    (S.CANCELED, None, True, T.ACCEPT, {}, S.CANCELED, None),
    (S.CANCELED, None, True, T.FILL, {"qty": "2"}, S.CANCELED, "6"),
    (S.CANCELED, None, True, T.FILL, {"qty": "6"}, S.FILLED, "10"),
    (S.CANCELED, None, True, T.CANCEL_REJECT, {}, S.CANCELED, None),
    (S.CANCELED, None, True, T.CANCEL, {}, S.CANCELED, None),
    (S.CANCELED, None, True, T.EXPIRE, {}, S.CANCELED, None),
    (S.EXPIRED, None, True, T.ACCEPT, {}, S.EXPIRED, None),
    (S.EXPIRED, None, True, T.FILL, {"qty": "2"}, S.EXPIRED, "6"),
    (S.EXPIRED, None, True, T.FILL, {"qty": "6"}, S.FILLED, "10"),
    (S.EXPIRED, None, True, T.CANCEL_REJECT, {}, S.EXPIRED, None),
    (S.EXPIRED, None, True, T.CANCEL, {}, S.EXPIRED, None),
    (S.EXPIRED, None, True, T.EXPIRE, {}, S.EXPIRED, None),
    (S.REJECTED, None, True, T.REJECT, {}, S.REJECTED, None),
    (S.REJECTED, None, True, T.CANCEL_REJECT, {}, S.REJECTED, None),
]


def test_every_table_row_is_tested_and_only_table_rows() -> None:
    assert {(status, trigger) for status, _, _, trigger, *_ in ROWS} == set(TRANSITIONS)


def test_rules_with_several_outcomes_are_tested_for_each() -> None:
    multi = {key for key, target in TRANSITIONS.items() if target in (Rule.BY_FILL, Rule.FILLED_OR_KEEP, Rule.RESTORE)}
    outcomes: dict[tuple[OrderStatus, Trigger], set[OrderStatus]] = {}
    for status, _, _, trigger, _, expected, _ in ROWS:
        outcomes.setdefault((status, trigger), set()).add(expected)
    assert all(len(outcomes[key]) >= 2 for key in multi)


@pytest.mark.parametrize("row", ROWS, ids=[f"{r[0].value}+{r[1] or 'd'}+{r[3].value}->{r[5].value}" for r in ROWS])
def test_transition_row(row: Row) -> None:
    status, filled, venue_known, trigger, kwargs, expected, expected_filled = row
    state = make_state(status, filled=filled, venue_order_id="v-1" if venue_known else None)
    event = make_event(trigger, **kwargs)
    assert trigger_of(event) is trigger
    result = apply_event(state, event)
    assert result.order.status is expected
    before = state.order.filled_qty
    assert result.order.filled_qty == (Decimal(expected_filled) if expected_filled else before)
    assert result.order.updated_at == LATER
    assert state.order.status is status  # the input is untouched


INVALID = [(s, t) for s in OrderStatus for t in Trigger if (s, t) not in TRANSITIONS]


@pytest.mark.parametrize(("status", "trigger"), INVALID, ids=[f"{s.value}+{t.value}" for s, t in INVALID])
def test_pairs_outside_the_table_are_refused(status: OrderStatus, trigger: Trigger) -> None:
    state = make_state(status)
    with pytest.raises(InvalidTransition) as info:
        apply_event(state, make_event(trigger))
    error = info.value
    assert isinstance(error, Conflict)
    assert error.status == 409
    assert error.code == "invalid_transition"
    assert f"{status.value!r}" in error.detail
    assert f"{trigger.value!r}" in error.detail
    assert error.extra == {"order_status": status.value, "trigger": trigger.value}
    assert (error.order_status, error.trigger) == (status, trigger)


def test_invalid_pairs_include_the_obvious_ones() -> None:
    for pair in [(S.REJECTED, T.FILL), (S.FILLED, T.FILL), (S.FILLED, T.UPDATE), (S.NEW, T.REJECT),
                 (S.CANCELED, T.CANCEL_REQUEST), (S.FILLED, T.CANCEL_REQUEST), (S.REJECTED, T.ACCEPT)]:  # fmt: skip
        assert pair in INVALID
    assert len(TRANSITIONS) + len(INVALID) == len(OrderStatus) * len(Trigger)


# --- real-venue sequences ---------------------------------------------------------------------


def test_fill_before_ack_then_late_ack_does_not_go_back() -> None:
    state = apply_all(make_state(S.PENDING_NEW), fill_event("t-1", "4", "100"))
    assert state.order.status is S.PARTIALLY_FILLED
    assert state.order.venue_order_id is None
    state = apply_event(state, make_event(T.ACCEPT, venue_order_id="v-9"))
    assert state.order.status is S.PARTIALLY_FILLED
    assert state.order.venue_order_id == "v-9"
    state = apply_event(state, fill_event("t-2", "6", "101"))
    assert state.order.status is S.FILLED
    assert state.order.avg_fill_price == Decimal("100.6")


def test_full_fill_before_ack() -> None:
    state = apply_all(make_state(S.PENDING_NEW), fill_event("t-1", "10"), make_event(T.ACCEPT, venue_order_id="v-9"))
    assert state.order.status is S.FILLED
    assert state.order.venue_order_id == "v-9"
    assert state.order.leaves_qty == 0


def test_partial_fill_while_cancel_pending_then_canceled() -> None:
    state = apply_all(make_state(S.NEW), make_event(T.CANCEL_REQUEST), fill_event("t-1", "4", "99.5"))
    assert state.order.status is S.PENDING_CANCEL  # FIX precedence: the cancel is still in flight
    assert state.order.filled_qty == 4
    state = apply_event(state, make_event(T.CANCEL))
    assert state.order.status is S.CANCELED
    assert state.order.filled_qty == 4
    assert state.order.avg_fill_price == Decimal("99.5")
    assert state.order.leaves_qty == 0


def test_fill_completes_while_cancel_pending_then_cancel_rejected() -> None:
    state = apply_all(make_state(S.PARTIALLY_FILLED), make_event(T.CANCEL_REQUEST), fill_event("t-1", "6"))
    assert state.order.status is S.FILLED
    state = apply_event(state, make_event(T.CANCEL_REJECT))
    assert state.order.status is S.FILLED


@pytest.mark.parametrize(
    ("start", "filled", "expected"),
    [(S.NEW, "0", S.NEW), (S.PARTIALLY_FILLED, "4", S.PARTIALLY_FILLED)],
)
def test_cancel_reject_returns_to_where_it_came_from(start: OrderStatus, filled: str, expected: OrderStatus) -> None:
    state = apply_all(make_state(start, filled=filled), make_event(T.CANCEL_REQUEST), make_event(T.CANCEL_REJECT))
    assert state.order.status is expected


def test_cancel_request_before_ack_then_ack_then_reject() -> None:
    state = apply_all(make_state(S.PENDING_NEW), make_event(T.CANCEL_REQUEST))
    assert apply_event(state, make_event(T.CANCEL_REJECT)).order.status is S.PENDING_NEW
    state = apply_all(state, make_event(T.ACCEPT), make_event(T.CANCEL_REJECT))
    assert state.order.status is S.NEW


@pytest.mark.parametrize("terminal", [T.CANCEL, T.EXPIRE])
def test_late_fills_after_cancel_or_expiry(terminal: Trigger) -> None:
    state = apply_all(make_state(S.PARTIALLY_FILLED), make_event(terminal))
    final = S.CANCELED if terminal is T.CANCEL else S.EXPIRED
    state = apply_event(state, fill_event("t-late-1", "2", "103"))
    assert state.order.status is final
    assert state.order.filled_qty == 6
    assert state.order.avg_fill_price == Decimal(101)  # (4*100 + 2*103) / 6
    assert state.order.leaves_qty == 0
    state = apply_event(state, fill_event("t-late-2", "4", "100"))
    assert state.order.status is S.FILLED
    assert state.order.filled_qty == 10


def test_duplicate_fill_is_not_counted_twice() -> None:
    state = make_state(S.NEW)
    once = apply_event(state, fill_event("t-1", "4", "100"))
    again = apply_event(once, fill_event("t-1", "4", "100.00", ts=LATER + timedelta(seconds=5)))  # over REST
    assert again is once
    assert again.order.filled_qty == 4
    assert len(again.fills) == 1


def test_duplicate_trade_id_with_other_content_is_refused() -> None:
    state = apply_event(make_state(S.NEW), fill_event("t-1", "4"))
    with pytest.raises(EventMismatch, match="t-1"):
        apply_event(state, fill_event("t-1", "5"))


def test_overfill_is_refused() -> None:
    state = apply_event(make_state(S.NEW), fill_event("t-1", "8"))
    with pytest.raises(Overfill, match=r"fill 't-2' of 3 would fill 11 of an order for 10") as info:
        apply_event(state, fill_event("t-2", "3"))
    assert info.value.status == 409
    assert info.value.extra == {"order_qty": "10", "filled_qty": "8", "fill_qty": "3"}
    assert state.order.filled_qty == 8


def test_reject_after_a_fill_is_refused() -> None:
    state = apply_all(make_state(S.PENDING_NEW), make_event(T.CANCEL_REQUEST), fill_event("t-1", "1"))
    with pytest.raises(InvalidTransition, match="already filled"):
        apply_event(state, make_event(T.REJECT))


def test_reject_records_the_reason() -> None:
    state = apply_event(make_state(S.PENDING_NEW), make_event(T.REJECT))
    assert state.order.reject_reason == "insufficient funds"
    assert state.order.leaves_qty == 0


def test_trigger_needs_a_stop_order() -> None:
    with pytest.raises(InvalidTransition, match="limit order has no stop"):
        apply_event(make_state(S.NEW, order_type=OrderType.LIMIT), make_event(T.TRIGGER))
    assert apply_event(make_state(S.NEW, order_type=OrderType.STOP), make_event(T.TRIGGER)).order.status is S.NEW


def test_update_changes_quantity_prices_and_venue_id() -> None:
    event = make_event(
        T.UPDATE, qty=Decimal(12), limit_price=Decimal(102), stop_price=Decimal(99), venue_order_id="v-2"
    )
    order = apply_event(make_state(S.PARTIALLY_FILLED), event).order
    assert (order.qty, order.limit_price, order.stop_price) == (Decimal(12), Decimal(102), Decimal(99))
    assert order.venue_order_id == "v-2"  # a replace at the venue gives the live order a new id
    assert order.leaves_qty == 8


def test_update_below_filled_is_an_overfill() -> None:
    with pytest.raises(Overfill, match="below the filled qty 4"):
        apply_event(make_state(S.PARTIALLY_FILLED), make_event(T.UPDATE, qty=Decimal(3)))


@pytest.mark.parametrize(
    ("order_type", "kwargs", "match"),
    [
        (OrderType.MARKET, {"limit_price": Decimal(1)}, "market order has no limit price"),
        (OrderType.LIMIT, {"stop_price": Decimal(1)}, "limit order has no stop price"),
        (OrderType.LIMIT, {"qty": Decimal(0)}, "must be positive"),
    ],
)
def test_update_inconsistent_with_the_order_is_refused(
    order_type: OrderType, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(EventMismatch, match=match):
        apply_event(make_state(S.NEW, order_type=order_type), make_event(T.UPDATE, **kwargs))


def test_late_ack_does_not_overwrite_a_known_venue_id() -> None:
    state = make_state(S.NEW, venue_order_id="v-replaced")
    assert apply_event(state, make_event(T.ACCEPT, venue_order_id="v-1")).order.venue_order_id == "v-replaced"


@pytest.mark.parametrize(
    "event",
    [
        OrderAccepted(account_id="acc_2", client_order_id="c-1", ts=LATER, venue_order_id="v"),
        OrderAccepted(account_id="acc_1", client_order_id="c-2", ts=LATER, venue_order_id="v"),
        fill_event("t-1", "1", symbol="MSFT"),
        fill_event("t-1", "1", side=Side.SELL),
        fill_event("t-1", "0"),
    ],
    ids=["other account", "other order", "other symbol", "other side", "zero qty"],
)
def test_events_for_something_else_are_refused(event: OrderEventType) -> None:
    with pytest.raises(EventMismatch):
        apply_event(make_state(S.NEW), event)


def test_updated_at_never_goes_back() -> None:
    state = apply_event(make_state(S.NEW), make_event(T.CANCEL_REQUEST, ts=TS - timedelta(hours=1)))
    assert state.order.updated_at == TS


def test_fill_record_from_event() -> None:
    state = make_state(S.NEW)
    event = fill_event("t-1", "2", "100.5", venue_ts=TS, commission=Decimal("0.01"), commission_currency="USD")
    fill = fill_from_event(event, order_id=state.order.id)
    assert fill == make_fill("t-1", "2", "100.5", fee=Decimal("0.01"), fee_currency="USD", ts=TS)
    assert apply_event(state, event).fills[-1] == fill


def test_order_state_checks_its_fills() -> None:
    order = make_state(S.PARTIALLY_FILLED).order
    with pytest.raises(EventMismatch, match="fills sum to 0"):
        OrderState(order=order)
    with pytest.raises(EventMismatch, match="appears twice"):
        OrderState(order=order, fills=(make_fill("t-0", "2"), make_fill("t-0", "2")))
    with pytest.raises(EventMismatch, match="symbol"):
        OrderState(order=order, fills=(make_fill("t-0", "4", symbol="MSFT"),))


# --- exact averages ---------------------------------------------------------------------------


def test_average_does_not_drift_when_a_mean_does_not_terminate() -> None:
    state = apply_all(make_state(S.NEW), fill_event("t-1", "1", "1"), fill_event("t-2", "2", "2"))
    assert state.order.avg_fill_price == Decimal("1.666666666666666666666666667")
    state = apply_event(state, fill_event("t-3", "1", "3"))
    assert state.order.avg_fill_price == Decimal(2)  # (1 + 4 + 3) / 4, not 2.00000000000000000000000000025


def test_average_is_exact_with_many_digits() -> None:
    qty = "12345678.12345678"
    state = make_state(S.NEW, qty="24691356.24691356")
    state = apply_all(state, fill_event("t-1", qty, "65432.12345678"), fill_event("t-2", qty, "65432.12345680"))
    assert state.order.avg_fill_price == Decimal("65432.12345679")
    assert state.order.status is S.FILLED
    assert average_fill_price([]) is None
    fills = [make_fill("a", "1", "1"), make_fill("b", "3", "2")]
    assert average_fill_price(f for f in fills) == Decimal("1.75")  # a one-shot iterable works too


amounts = st.builds(lambda n: Decimal(n).scaleb(-3), st.integers(1, 10**6))
prices = st.builds(lambda n: Decimal(n).scaleb(-6), st.integers(1, 10**13))


def expected_average(fills: list[tuple[Decimal, Decimal]]) -> Decimal:
    with localcontext(EXACT):
        notional = sum((q * p for q, p in fills), Decimal(0))
        total = sum((q for q, _ in fills), Decimal(0))
    return AVG.divide(notional, total)


@given(st.lists(st.tuples(amounts, prices), min_size=1, max_size=12), st.sampled_from([0, 0, 1, 7]))
def test_fills_sum_and_average_exactly(fills: list[tuple[Decimal, Decimal]], spare: int) -> None:
    with localcontext(EXACT):
        total = sum((q for q, _ in fills), Decimal(0))
        qty = total + spare
    state = make_state(S.NEW, qty=str(qty))
    for i, (q, p) in enumerate(fills):
        state = apply_event(state, fill_event(f"t-{i}", str(q), str(p)))
    assert state.order.filled_qty == total
    assert state.order.avg_fill_price == expected_average(fills)
    assert (state.order.status is S.FILLED) == (total == qty)
    assert state.order.status in (S.FILLED, S.PARTIALLY_FILLED)


@given(
    st.lists(st.tuples(amounts, prices), min_size=1, max_size=6),
    st.booleans(),
    st.randoms(use_true_random=False),
)
def test_outcome_does_not_depend_on_delivery_order_or_repeats(
    fills: list[tuple[Decimal, Decimal]], complete: bool, rnd: random.Random
) -> None:
    """Fills, the ack and a cancel, shuffled and partly repeated, always end in the same state."""
    with localcontext(EXACT):
        total = sum((q for q, _ in fills), Decimal(0))
    qty = total if complete else total + 1
    events: list[OrderEventType] = [fill_event(f"t-{i}", str(q), str(p)) for i, (q, p) in enumerate(fills)]
    events += [make_event(T.ACCEPT, venue_order_id="v-7"), make_event(T.CANCEL)]
    events += [rnd.choice(events) for _ in range(rnd.randint(0, 3))]  # redeliveries
    rnd.shuffle(events)
    state = apply_all(make_state(S.PENDING_NEW, qty=str(qty)), *events)
    assert state.order.status is (S.FILLED if complete else S.CANCELED)
    assert state.order.filled_qty == total
    assert state.order.avg_fill_price == expected_average(fills)
    assert state.order.venue_order_id == "v-7"
    assert len(state.fills) == len(fills)


# --- order request validation -----------------------------------------------------------------

BTC = Instrument(
    symbol="BTC/USDT",
    venue_symbol="BTCUSDT",
    asset_class=AssetClass.CRYPTO,
    base="BTC",
    quote="USDT",
    tick_size=Decimal("0.01"),
    qty_step=Decimal("0.0001"),
    min_qty=Decimal("0.0001"),
    max_qty=Decimal(100),
    min_notional=Decimal(5),
)
EURUSD = Instrument(
    symbol="EUR/USD",
    venue_symbol="EUR_USD",
    asset_class=AssetClass.FX,
    base="EUR",
    quote="USD",
    tick_size=Decimal("0.00001"),
    qty_step=Decimal("0.01"),
    min_qty=Decimal("0.01"),
    min_notional=Decimal(1000),
    contract_size=Decimal(100000),
)
M, L, ST, SL = OrderType.MARKET, OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT


def d(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


@pytest.mark.parametrize(
    ("instrument", "qty", "order_type", "limit", "stop", "reference"),
    [
        (BTC, "0.01", M, None, None, "50000"),
        (BTC, "0.0001", M, None, None, None),  # no price known: min_notional cannot be checked yet
        (BTC, "0.5", L, "43000.01", None, None),
        (BTC, "1", ST, None, "42000", None),
        (BTC, "100", SL, "41999.99", "42000.00", None),
        (EURUSD, "0.01", L, "1.10001", None, None),  # 0.01 lot is 1000.01 USD
        # No max_qty, and qty / step has 31 digits: at Decimal's default 28 the grid check would raise.
        (EURUSD, "1000000000000000000000000000.01", M, None, None, None),
    ],
)
def test_valid_order_requests_pass(
    *,
    instrument: Instrument,
    qty: str,
    order_type: OrderType,
    limit: str | None,
    stop: str | None,
    reference: str | None,
) -> None:
    validate_order_request(
        instrument,
        qty=Decimal(qty),
        order_type=order_type,
        limit_price=d(limit),
        stop_price=d(stop),
        reference_price=d(reference),
    )


@pytest.mark.parametrize(
    ("qty", "order_type", "limit", "stop", "reference", "field", "match"),
    [
        ("0", M, None, None, None, "qty", "qty: must be greater than 0, got 0"),
        ("-1", M, None, None, None, "qty", "greater than 0"),
        ("NaN", M, None, None, None, "qty", "qty: must be a finite number"),
        ("0.00005", M, None, None, None, "qty", "qty: 0.00005 is below the minimum 0.0001"),
        ("100.0001", M, None, None, None, "qty", "qty: 100.0001 is above the maximum 100"),
        ("0.00015", M, None, None, None, "qty", "qty: 0.00015 is not a multiple of the quantity step 0.0001"),
        ("1", L, None, None, None, "limit_price", "limit_price: is required for a limit order"),
        ("1", SL, None, "42000", None, "limit_price", "required for a stop_limit order"),
        ("1", M, "42000", None, None, "limit_price", "limit_price: is not allowed for a market order"),
        ("1", ST, None, None, None, "stop_price", "stop_price: is required for a stop order"),
        ("1", SL, "42000", None, None, "stop_price", "required for a stop_limit order"),
        ("1", L, "42000", "41000", None, "stop_price", "stop_price: is not allowed for a limit order"),
        ("1", L, "0", None, None, "limit_price", "limit_price: must be greater than 0"),
        ("1", L, "43000.001", None, None, "limit_price", "43000.001 is not a multiple of the tick size 0.01"),
        ("1", ST, None, "-5", None, "stop_price", "stop_price: must be greater than 0"),
        ("1", ST, None, "42000.5001", None, "stop_price", "tick size"),
        ("1", M, None, None, "-1", "reference_price", "reference_price: must be greater than 0"),
        ("0.0001", L, "43000", None, None, "qty", "qty: notional 4.3000 at price 43000 is below the minimum 5"),
        ("0.0001", ST, None, "40000", None, "qty", "notional 4.0000 at price 40000"),
        ("0.0001", M, None, None, "49999.99", "qty", "notional 4.999999"),
    ],
)
def test_invalid_order_requests_name_the_field(
    *,
    qty: str,
    order_type: OrderType,
    limit: str | None,
    stop: str | None,
    reference: str | None,
    field: str,
    match: str,
) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_order_request(
            BTC,
            qty=Decimal(qty),
            order_type=order_type,
            limit_price=d(limit),
            stop_price=d(stop),
            reference_price=d(reference),
        )
    assert info.value.detail.startswith(f"{field}: ")
    assert match in info.value.detail
    assert info.value.extra == {"field": field}
    assert info.value.status == 422


def test_untradable_instrument_is_refused_first() -> None:
    halted = msgspec.structs.replace(BTC, tradable=False)
    with pytest.raises(InvalidInput, match="symbol: BTC/USDT is not tradable"):
        validate_order_request(halted, qty=Decimal(0), order_type=M)
