"""Domain events: exact JSON round trips, UTC and finiteness checks, and dedupe keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, get_args

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerlink.domain.enums import ConnectionState, Side
from brokerlink.domain.events import (
    EVENT_TYPES,
    AccountUpdated,
    ConnectionChanged,
    DomainEvent,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderCancelRequested,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderTriggered,
    OrderUpdated,
    PositionUpdated,
    decode_event,
    encode_event,
)
from brokerlink.domain.models import Balance, Position
from brokerlink.kit.errors import InvalidInput

TS = datetime(2026, 1, 5, 12, 0, 0, 123456, tzinfo=UTC)

# Values that lose information if anything on the way is a float or re-normalizes the exponent.
TRICKY = [Decimal(s) for s in ("0.00000001", "123456789.123456789", "1.10", "0", "-0", "1E+30", "-42.000")]

decimals = st.one_of(st.sampled_from(TRICKY), st.decimals(allow_nan=False, allow_infinity=False))
maybe_decimals = st.none() | decimals
# Hypothesis takes naive bounds and attaches the zone itself.
utc_times = st.datetimes(
    min_value=datetime(1970, 1, 1),  # noqa: DTZ001
    max_value=datetime(2200, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)
text = st.text(min_size=1, max_size=20)
maybe_text = st.none() | text


def common(**fields: st.SearchStrategy[Any]) -> dict[str, st.SearchStrategy[Any]]:
    return {"account_id": text, "ts": utc_times, "venue_ts": st.none() | utc_times, **fields}


def order_fields(**fields: st.SearchStrategy[Any]) -> dict[str, st.SearchStrategy[Any]]:
    return common(**{"client_order_id": text, "venue_order_id": maybe_text, **fields})


positions = st.builds(
    Position,
    account_id=text,
    symbol=text,
    qty=decimals,
    avg_price=decimals,
    realized_pnl=decimals,
    unrealized_pnl=decimals,
)
balances = st.builds(
    Balance,
    account_id=text,
    currency=text,
    cash=decimals,
    equity=decimals,
    buying_power=decimals,
    margin_used=decimals,
    ts=utc_times,
)

EVENT_STRATEGIES: dict[type[Any], st.SearchStrategy[Any]] = {
    OrderAccepted: st.builds(OrderAccepted, **order_fields(venue_order_id=text)),
    OrderRejected: st.builds(OrderRejected, **order_fields(reason=text)),
    OrderUpdated: st.builds(
        OrderUpdated, **order_fields(qty=maybe_decimals, limit_price=maybe_decimals, stop_price=maybe_decimals)
    ),
    OrderCancelRequested: st.builds(OrderCancelRequested, **order_fields()),
    OrderCancelRejected: st.builds(OrderCancelRejected, **order_fields(reason=text)),
    OrderCanceled: st.builds(OrderCanceled, **order_fields(reason=maybe_text)),
    OrderExpired: st.builds(OrderExpired, **order_fields()),
    OrderTriggered: st.builds(OrderTriggered, **order_fields()),
    OrderFilled: st.builds(
        OrderFilled,
        **order_fields(
            trade_id=text,
            symbol=text,
            side=st.sampled_from(Side),
            last_qty=decimals,
            last_price=decimals,
            commission=decimals,
            commission_currency=maybe_text,
            liquidity=st.sampled_from([None, "maker", "taker"]),
        ),
    ),
    PositionUpdated: st.builds(PositionUpdated, **common(position=positions)),
    AccountUpdated: st.builds(AccountUpdated, **common(balance=balances)),
    ConnectionChanged: st.builds(
        ConnectionChanged,
        **common(state=st.sampled_from(ConnectionState), gap_possible=st.booleans(), reason=maybe_text),
    ),
}


def test_every_event_type_is_in_the_union_and_has_a_strategy() -> None:
    assert set(get_args(DomainEvent)) == set(EVENT_TYPES)
    assert set(EVENT_STRATEGIES) == set(EVENT_TYPES)
    tags = [cls.__struct_config__.tag for cls in EVENT_TYPES]
    assert len(set(tags)) == len(tags)


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda cls: cls.__name__)
@given(data=st.data())
def test_round_trip_is_exact(cls: type[Any], data: st.DataObject) -> None:
    event = data.draw(EVENT_STRATEGIES[cls])
    encoded = encode_event(event)
    decoded = decode_event(encoded)
    assert type(decoded) is cls
    assert decoded == event
    # Equality ignores exponents (1.10 == 1.1); identical re-encoding proves they survived too.
    assert encode_event(decoded) == encoded
    assert msgspec.json.decode(encoded)["type"] == event.tag


def filled(**overrides: Any) -> OrderFilled:
    fields: dict[str, Any] = {
        "account_id": "acc_1",
        "ts": TS,
        "client_order_id": "c-1",
        "venue_order_id": "v-1",
        "trade_id": "t-1",
        "symbol": "BTC/USDT",
        "side": Side.BUY,
        "last_qty": Decimal("0.00000001"),
        "last_price": Decimal("123456789.123456789"),
        "commission": Decimal("0.0000000001"),
        "commission_currency": "BNB",
        "liquidity": "taker",
    }
    fields.update(overrides)
    return OrderFilled(**fields)


def test_wire_format_of_a_fill() -> None:
    assert encode_event(filled()) == (
        b'{"type":"order_filled","account_id":"acc_1","ts":"2026-01-05T12:00:00.123456Z","venue_ts":null,'
        b'"client_order_id":"c-1","venue_order_id":"v-1","trade_id":"t-1","symbol":"BTC/USDT","side":"buy",'
        b'"last_qty":"1E-8","last_price":"123456789.123456789","commission":"1E-10",'
        b'"commission_currency":"BNB","liquidity":"taker"}'
    )
    decoded = decode_event(encode_event(filled()))
    assert isinstance(decoded, OrderFilled)
    assert decoded.last_qty == Decimal("0.00000001")
    assert decoded.last_price == Decimal("123456789.123456789")


def test_decoding_accepts_json_numbers_exactly_and_ignores_unknown_fields() -> None:
    data = (
        b'{"type":"order_filled","account_id":"a","ts":"2026-01-05T12:00:00Z","client_order_id":"c",'
        b'"trade_id":"t","symbol":"X","side":"sell","last_qty":0.1,"last_price":1.10,"added_later":true}'
    )
    event = decode_event(data)
    assert isinstance(event, OrderFilled)
    assert str(event.last_qty) == "0.1"
    assert str(event.last_price) == "1.10"
    assert event.commission == 0
    assert event.liquidity is None


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"not json", "not a valid domain event"),
        (b'{"type":"order_teleported","account_id":"a","ts":"2026-01-05T12:00:00Z"}', "order_teleported"),
        (b'{"type":"order_expired","account_id":"a","ts":"2026-01-05T12:00:00Z"}', "client_order_id"),
        (b'{"type":"order_expired","account_id":"a","client_order_id":"c","ts":"2026-01-05T12:00:00"}', "UTC"),
        (b'{"type":"order_expired","account_id":"a","client_order_id":"c","ts":"2026-01-05T14:00:00+02:00"}', "UTC"),
        (
            (
                b'{"type":"order_filled","account_id":"a","ts":"2026-01-05T12:00:00Z","client_order_id":"c",'
                b'"trade_id":"t","symbol":"X","side":"buy","last_qty":"NaN","last_price":"1"}'
            ),
            "last_qty must be a finite decimal",
        ),
        (
            (
                b'{"type":"position_updated","account_id":"a","ts":"2026-01-05T12:00:00Z",'
                b'"position":{"account_id":"a","symbol":"X","qty":"Infinity"}}'
            ),
            r"Position\.qty must be a finite decimal",
        ),
    ],
)
def test_decoding_refuses_bad_events(data: bytes, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        decode_event(data)


def test_construction_refuses_naive_and_non_utc_times_and_nan() -> None:
    with pytest.raises(ValueError, match=r"OrderFilled\.ts must be a timezone-aware UTC datetime"):
        filled(ts=datetime(2026, 1, 5, 12, 0))  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="venue_ts"):
        filled(venue_ts=datetime(2026, 1, 5, 14, 0, tzinfo=timezone(timedelta(hours=2))))
    with pytest.raises(ValueError, match="last_price must be a finite decimal"):
        filled(last_price=Decimal("NaN"))


def test_events_are_frozen() -> None:
    event = filled()
    with pytest.raises(AttributeError):
        event.last_qty = Decimal(2)  # type: ignore[misc]


def test_fill_dedupe_key_is_account_and_trade_id() -> None:
    from_stream = filled(ts=TS, venue_ts=TS)
    from_rest = filled(ts=TS + timedelta(seconds=3), venue_ts=None, venue_order_id=None, liquidity=None)
    assert from_stream.dedupe_key == from_rest.dedupe_key == ("order_filled", "acc_1", "t-1")
    assert filled(account_id="acc_2").dedupe_key != from_stream.dedupe_key
    assert filled(trade_id="t-2").dedupe_key != from_stream.dedupe_key


def test_once_per_order_events_dedupe_by_client_order_id() -> None:
    first = OrderAccepted(account_id="acc_1", ts=TS, client_order_id="c-1", venue_order_id="v-1")
    again = OrderAccepted(account_id="acc_1", ts=TS + timedelta(seconds=1), client_order_id="c-1", venue_order_id="v-1")
    assert first.dedupe_key == again.dedupe_key == ("order_accepted", "acc_1", "c-1")
    canceled = OrderCanceled(account_id="acc_1", ts=TS, client_order_id="c-1")
    assert canceled.dedupe_key == ("order_canceled", "acc_1", "c-1")


def test_repeatable_events_dedupe_by_time_and_content() -> None:
    one = OrderUpdated(account_id="a", ts=TS, client_order_id="c", qty=Decimal(5))
    two = OrderUpdated(account_id="a", ts=TS, client_order_id="c", qty=Decimal(6))
    assert one.dedupe_key != two.dedupe_key
    assert one.dedupe_key == OrderUpdated(account_id="a", ts=TS, client_order_id="c", qty=Decimal(5)).dedupe_key
    req1 = OrderCancelRequested(account_id="a", ts=TS, client_order_id="c")
    req2 = OrderCancelRequested(account_id="a", ts=TS + timedelta(seconds=1), client_order_id="c")
    assert req1.dedupe_key != req2.dedupe_key
    earlier = TS - timedelta(seconds=1)
    rej = OrderCancelRejected(account_id="a", ts=TS, venue_ts=earlier, client_order_id="c", reason="x")
    assert rej.dedupe_key == ("order_cancel_rejected", "a", "c", earlier.isoformat())


def test_snapshot_and_connection_dedupe_keys() -> None:
    pos = PositionUpdated(account_id="a", ts=TS, position=Position(account_id="a", symbol="AAPL", qty=Decimal(3)))
    assert pos.dedupe_key == ("position_updated", "a", "AAPL", TS.isoformat())
    bal = AccountUpdated(
        account_id="a",
        ts=TS,
        venue_ts=TS - timedelta(seconds=1),
        balance=Balance(
            account_id="a", currency="USD", cash=Decimal(1), equity=Decimal(1), buying_power=Decimal(1), ts=TS
        ),
    )
    assert bal.dedupe_key == ("account_updated", "a", "USD", (TS - timedelta(seconds=1)).isoformat())
    conn = ConnectionChanged(account_id="a", ts=TS, state=ConnectionState.DISCONNECTED, gap_possible=True)
    assert conn.dedupe_key == ("connection_changed", "a", "disconnected", TS.isoformat())
    assert conn.gap_possible is True


def test_keys_of_different_kinds_never_collide() -> None:
    accepted = OrderAccepted(account_id="a", ts=TS, client_order_id="x", venue_order_id="v")
    expired = OrderExpired(account_id="a", ts=TS, client_order_id="x")
    triggered = OrderTriggered(account_id="a", ts=TS, client_order_id="x")
    rejected = OrderRejected(account_id="a", ts=TS, client_order_id="x", reason="r")
    fill = filled(account_id="a", trade_id="x")
    keys = {e.dedupe_key for e in (accepted, expired, triggered, rejected, fill)}
    assert len(keys) == 5
