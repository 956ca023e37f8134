"""Netting positions: average cost, realized P&L, flips, contract size, fees, and exact cash conservation."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Context, Decimal, Inexact, InvalidOperation, localcontext
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerlink.domain.enums import Side
from brokerlink.domain.models import Fill, Position
from brokerlink.domain.positions import apply_fill, fees_by_currency, mark
from brokerlink.kit.errors import InvalidInput

TS = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
EXACT = Context(prec=200, traps=[Inexact, InvalidOperation])
FLAT = Position(account_id="acc_1", symbol="AAPL")


def fill(side: Side, qty: str | Decimal, price: str | Decimal, **overrides: Any) -> Fill:
    fields: dict[str, Any] = {
        "trade_id": "t",
        "order_id": None,
        "client_order_id": None,
        "account_id": "acc_1",
        "symbol": "AAPL",
        "side": side,
        "qty": Decimal(qty),
        "price": Decimal(price),
        "ts": TS,
    }
    fields.update(overrides)
    return Fill(**fields)


def buy(qty: str, price: str, **kw: Any) -> Fill:
    return fill(Side.BUY, qty, price, **kw)


def sell(qty: str, price: str, **kw: Any) -> Fill:
    return fill(Side.SELL, qty, price, **kw)


def run(*fills: Fill, contract_size: Decimal = Decimal(1), start: Position = FLAT) -> Position:
    position = start
    for f in fills:
        position = apply_fill(position, f, contract_size=contract_size)
    return position


def pnl(position: Position) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    return position.qty, position.avg_price, position.realized_pnl, position.unrealized_pnl


@pytest.mark.parametrize(
    ("fills", "expected"),
    [
        pytest.param([buy("10", "100")], ("10", "100", "0", "0"), id="open long"),
        pytest.param([buy("10", "100"), buy("30", "104")], ("40", "103", "0", "40"), id="increase long"),
        pytest.param(
            [buy("10", "100"), buy("30", "104"), sell("15", "110")], ("25", "103", "105", "175"), id="reduce long"
        ),
        pytest.param(
            [buy("10", "100"), buy("30", "104"), sell("15", "110"), sell("25", "99")],
            ("0", "0", "5", "0"),
            id="close long to zero",
        ),
        pytest.param([sell("5", "50"), buy("2", "45")], ("-3", "50", "10", "15"), id="cover part of a short"),
        pytest.param([sell("5", "50"), sell("5", "60")], ("-10", "55", "0", "-50"), id="increase short"),
        pytest.param([buy("10", "100"), sell("25", "110")], ("-15", "110", "100", "0"), id="flip long to short"),
        pytest.param([sell("4", "20"), buy("10", "25")], ("6", "25", "-20", "0"), id="flip short to long"),
        pytest.param([buy("0.5", "3"), sell("0.5", "3")], ("0", "0", "0", "0"), id="round trip at the same price"),
    ],
)
def test_netting_examples(fills: list[Fill], expected: tuple[str, str, str, str]) -> None:
    assert pnl(run(*fills)) == tuple(Decimal(x) for x in expected)


def test_closing_to_zero_resets_the_average() -> None:
    position = run(buy("3", "10.5"), sell("3", "11"))
    assert position.is_flat
    assert position.avg_price == 0
    assert position.realized_pnl == Decimal("1.5")
    reopened = apply_fill(position, buy("1", "20"))
    assert (reopened.avg_price, reopened.realized_pnl) == (Decimal(20), Decimal("1.5"))


def test_contract_size_scales_pnl() -> None:
    lots = run(buy("1.5", "1.10000"), sell("1.5", "1.10050"), contract_size=Decimal(100000))
    assert lots.realized_pnl == Decimal(75)
    open_lots = run(sell("2", "1.2000"), contract_size=Decimal(100000))
    assert mark(open_lots, Decimal("1.1990"), Decimal(100000)).unrealized_pnl == Decimal(200)


def test_mark() -> None:
    long = run(buy("10", "100"), buy("30", "104"), sell("15", "110"))
    assert mark(long, Decimal(101)).unrealized_pnl == Decimal(-50)
    short = run(sell("4", "20"))
    assert mark(short, Decimal("19.5")).unrealized_pnl == Decimal(2)
    assert mark(FLAT, Decimal(123)).unrealized_pnl == 0
    assert mark(long, Decimal(101)).realized_pnl == long.realized_pnl


def test_fees_stay_out_of_realized_pnl() -> None:
    position = run(buy("1", "100", fee=Decimal(5), fee_currency="USD"), sell("1", "101", fee=Decimal(5)))
    assert position.realized_pnl == Decimal(1)


def test_fees_by_currency() -> None:
    fills = [
        buy("1", "1", fee=Decimal("1.5"), fee_currency="USD"),
        buy("1", "1", fee=Decimal("0.001"), fee_currency="BNB"),
        sell("1", "1", fee=Decimal("-0.2"), fee_currency="USD"),  # maker rebate
        sell("1", "1"),  # no fee, no currency
    ]
    assert fees_by_currency(fills) == {"USD": Decimal("1.3"), "BNB": Decimal("0.001")}
    with pytest.raises(InvalidInput, match="fee_currency"):
        fees_by_currency([buy("1", "1", fee=Decimal(1))])


def test_average_rounding_residual_keeps_realized_exact() -> None:
    position = run(buy("1", "1"), buy("2", "2"))
    assert position.avg_price == Decimal("1.666666666666666666666666667")  # 5/3, rounded once
    assert position.realized_pnl == Decimal("1E-27")  # the rounding residual, booked so that nothing leaks
    closed = apply_fill(position, sell("3", "2"))
    assert closed.realized_pnl == Decimal(1)  # -1 - 4 + 6, exactly


def test_many_digits_do_not_round() -> None:
    qty, price = "12345678.12345678", "65432.12345678"
    position = run(buy(qty, price), sell(qty, "65432.12345679"))
    assert position.realized_pnl == Decimal("0.1234567812345678")


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (buy("1", "1", symbol="MSFT"), "MSFT"),
        (buy("1", "1", account_id="acc_2"), "acc_2"),
        (buy("0", "1"), "qty"),
        (buy("-1", "1"), "qty"),
        (buy("1", "NaN"), "price"),
    ],
)
def test_unusable_fills_are_refused(bad: Fill, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        apply_fill(FLAT, bad)


@pytest.mark.parametrize("contract_size", ["0", "-1", "Infinity"])
def test_bad_contract_size_is_refused(contract_size: str) -> None:
    with pytest.raises(InvalidInput, match="contract_size"):
        apply_fill(FLAT, buy("1", "1"), contract_size=Decimal(contract_size))
    with pytest.raises(InvalidInput, match="contract_size"):
        mark(FLAT, Decimal(1), Decimal(contract_size))


# --- properties -------------------------------------------------------------------------------

sides = st.sampled_from(Side)
quantities = st.builds(lambda n: Decimal(n).scaleb(-2), st.integers(1, 10**5))
prices = st.builds(lambda n: Decimal(n).scaleb(-3), st.integers(1, 10**7))
fill_lists = st.lists(st.tuples(sides, quantities, prices), min_size=1, max_size=15)
contract_sizes = st.sampled_from([Decimal(1), Decimal(100), Decimal(100000), Decimal("0.01"), Decimal("0.001")])


@given(fill_lists, prices, contract_sizes)
def test_cash_is_conserved_exactly(
    fills: list[tuple[Side, Decimal, Decimal]], mark_price: Decimal, contract_size: Decimal
) -> None:
    position = run(*(fill(s, q, p) for s, q, p in fills), contract_size=contract_size)
    marked = mark(position, mark_price, contract_size)
    with localcontext(EXACT):
        cash = sum((-s.sign * q * p * contract_size for s, q, p in fills), Decimal(0))
        assert position.qty == sum((s.sign * q for s, q, _ in fills), Decimal(0))
        assert cash + position.qty * mark_price * contract_size == marked.realized_pnl + marked.unrealized_pnl
    if position.is_flat:
        assert (position.avg_price, position.unrealized_pnl) == (Decimal(0), Decimal(0))
    else:
        assert min(p for _, _, p in fills) <= position.avg_price <= max(p for _, _, p in fills)


@given(fill_lists, contract_sizes)
def test_pnl_scales_linearly_with_contract_size(
    fills: list[tuple[Side, Decimal, Decimal]], contract_size: Decimal
) -> None:
    unit = run(*(fill(s, q, p) for s, q, p in fills))
    scaled = run(*(fill(s, q, p) for s, q, p in fills), contract_size=contract_size)
    with localcontext(EXACT):
        assert scaled.realized_pnl == unit.realized_pnl * contract_size
        assert scaled.unrealized_pnl == unit.unrealized_pnl * contract_size
    assert (scaled.qty, scaled.avg_price) == (unit.qty, unit.avg_price)
