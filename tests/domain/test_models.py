"""The normalized model: enums, derived properties, immutability and the JSON wire form."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import pytest

from brokerlink.domain.enums import AssetClass, OrderStatus, OrderType, Side, TimeInForce
from brokerlink.domain.models import Fill, Instrument, Order, Position, Quote

TS = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def make_order(status: OrderStatus = OrderStatus.NEW, filled: str = "0") -> Order:
    return Order(
        id="ord_1",
        client_order_id="c-1",
        account_id="acc_1",
        symbol="AAPL",
        side=Side.BUY,
        qty=Decimal(10),
        type=OrderType.LIMIT,
        tif=TimeInForce.DAY,
        limit_price=Decimal("190.25"),
        status=status,
        filled_qty=Decimal(filled),
        created_at=TS,
        updated_at=TS,
    )


@pytest.mark.parametrize(("side", "sign", "opposite"), [(Side.BUY, 1, Side.SELL), (Side.SELL, -1, Side.BUY)])
def test_side_sign_and_opposite(side: Side, sign: int, opposite: Side) -> None:
    assert side.sign == sign
    assert side.opposite is opposite


@pytest.mark.parametrize(
    ("status", "terminal"),
    [
        (OrderStatus.PENDING_NEW, False),
        (OrderStatus.NEW, False),
        (OrderStatus.PARTIALLY_FILLED, False),
        (OrderStatus.PENDING_CANCEL, False),
        (OrderStatus.FILLED, True),
        (OrderStatus.CANCELED, True),
        (OrderStatus.EXPIRED, True),
        (OrderStatus.REJECTED, True),
    ],
)
def test_order_status_terminal(status: OrderStatus, *, terminal: bool) -> None:
    assert status.is_terminal is terminal


@pytest.mark.parametrize(
    ("status", "filled", "leaves"),
    [
        (OrderStatus.NEW, "0", "10"),
        (OrderStatus.PARTIALLY_FILLED, "3.5", "6.5"),
        (OrderStatus.PENDING_CANCEL, "4", "6"),
        (OrderStatus.CANCELED, "4", "0"),
        (OrderStatus.FILLED, "10", "0"),
    ],
)
def test_order_leaves_qty(status: OrderStatus, filled: str, leaves: str) -> None:
    assert make_order(status, filled).leaves_qty == Decimal(leaves)


def test_instrument_notional_uses_abs_qty_and_contract_size() -> None:
    eurusd = Instrument(
        symbol="EUR/USD",
        venue_symbol="EUR_USD",
        asset_class=AssetClass.FX,
        base="EUR",
        quote="USD",
        tick_size=Decimal("0.00001"),
        qty_step=Decimal("0.01"),
        min_qty=Decimal("0.01"),
        contract_size=Decimal(100000),
    )
    assert eurusd.notional(Decimal("-0.5"), Decimal("1.10123")) == Decimal("55061.5")
    assert eurusd.tradable is True
    assert eurusd.max_qty is None
    assert eurusd.min_notional == 0


def test_position_is_flat() -> None:
    assert Position(account_id="acc_1", symbol="AAPL").is_flat
    assert not Position(account_id="acc_1", symbol="AAPL", qty=Decimal(-1)).is_flat


def test_quote_mid_is_exact() -> None:
    one = Decimal(1)
    quote = Quote(symbol="EUR/USD", bid=Decimal("1.1"), ask=Decimal("1.2"), bid_size=one, ask_size=one, ts=TS)
    assert quote.mid == Decimal("1.15")


def test_models_are_frozen_and_keyword_only() -> None:
    order = make_order()
    with pytest.raises(AttributeError):
        order.status = OrderStatus.FILLED  # type: ignore[misc]
    with pytest.raises(TypeError):
        Position("acc_1", "AAPL")  # type: ignore[call-arg]


def test_order_json_round_trip_keeps_decimals_as_strings() -> None:
    order = make_order(OrderStatus.PARTIALLY_FILLED, "0.10")
    data = msgspec.json.encode(order)
    raw = msgspec.json.decode(data)
    assert raw["qty"] == "10"
    assert raw["filled_qty"] == "0.10"
    assert raw["limit_price"] == "190.25"
    assert raw["created_at"] == "2026-01-05T12:00:00Z"
    assert msgspec.json.decode(data, type=Order) == order


def test_models_refuse_unknown_fields() -> None:
    data = msgspec.json.encode(
        Fill(
            trade_id="t1",
            order_id=None,
            client_order_id=None,
            account_id="acc_1",
            symbol="AAPL",
            side=Side.SELL,
            qty=Decimal(1),
            price=Decimal(2),
            ts=TS,
        )
    )
    tampered = data[:-1] + b',"extra":1}'
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.json.decode(tampered, type=Fill)
