"""Netting positions: average cost, exact cost basis, realized P&L, flips, contract size, fees, cash conservation."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Context, Decimal, Inexact, InvalidOperation, localcontext
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerlink.domain.enums import Side
from brokerlink.domain.models import Fill, Position
from brokerlink.domain.positions import Holding, _own_scale, apply_fill, fees_by_currency, mark
from brokerlink.kit.errors import InvalidInput

TS = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
EXACT = Context(prec=200, traps=[Inexact, InvalidOperation])
FLAT = Holding(position=Position(account_id="acc_1", symbol="AAPL"))


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


def run(*fills: Fill, contract_size: Decimal = Decimal(1), start: Holding = FLAT) -> Position:
    return run_holding(*fills, contract_size=contract_size, start=start).position


def run_holding(*fills: Fill, contract_size: Decimal = Decimal(1), start: Holding = FLAT) -> Holding:
    held = start
    for f in fills:
        held = apply_fill(held, f, contract_size=contract_size)
    return held


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
    held = run_holding(buy("3", "10.5"), sell("3", "11"))
    position = held.position
    assert position.is_flat
    assert (position.avg_price, held.cost_basis) == (0, 0)
    assert position.realized_pnl == Decimal("1.5")
    reopened = apply_fill(held, buy("1", "20")).position
    assert (reopened.avg_price, reopened.realized_pnl) == (Decimal(20), Decimal("1.5"))


def test_contract_size_scales_pnl() -> None:
    lots = run(buy("1.5", "1.10000"), sell("1.5", "1.10050"), contract_size=Decimal(100000))
    assert lots.realized_pnl == Decimal(75)
    open_lots = run_holding(sell("2", "1.2000"), contract_size=Decimal(100000))
    assert mark(open_lots, Decimal("1.1990"), Decimal(100000)).position.unrealized_pnl == Decimal(200)


def test_mark() -> None:
    long = run_holding(buy("10", "100"), buy("30", "104"), sell("15", "110"))
    assert mark(long, Decimal(101)).position.unrealized_pnl == Decimal(-50)
    short = run_holding(sell("4", "20"))
    assert mark(short, Decimal("19.5")).position.unrealized_pnl == Decimal(2)
    assert mark(FLAT, Decimal(123)).position.unrealized_pnl == 0
    assert mark(long, Decimal(101)).position.realized_pnl == long.position.realized_pnl
    assert mark(long, Decimal(101)).cost_basis == long.cost_basis


def test_a_bare_position_starts_from_its_average() -> None:
    stored = Position(account_id="acc_1", symbol="AAPL", qty=Decimal(-4), avg_price=Decimal("20.5"))
    held = Holding.of(stored)
    assert held.cost_basis == Decimal(-82)
    assert apply_fill(held, buy("4", "20")).position.realized_pnl == Decimal(2)


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


def test_an_inexact_average_changes_no_pnl() -> None:
    held = run_holding(buy("1", "1"), buy("2", "2"))
    assert held.position.avg_price == Decimal("1.666666666666666666666666667")  # 5/3, rounded for show only
    assert held.cost_basis == Decimal(5)  # exact; P&L comes from here
    assert held.position.realized_pnl == 0  # increasing realizes nothing, not even a rounding residual
    assert held.position.unrealized_pnl == Decimal(1)  # 3 * 2 - 5, exactly
    closed = apply_fill(held, sell("3", "2")).position
    assert closed.realized_pnl == Decimal(1)  # -1 - 4 + 6, exactly


def test_a_partial_close_takes_its_share_of_the_cost_basis() -> None:
    held = run_holding(buy("1", "1"), buy("2", "2"), sell("1", "2"))
    # 2 - 5/3: the share 5/3 does not terminate, so it is rounded to 40 significant digits, and only it.
    assert held.position.realized_pnl == Decimal("0." + "3" * 39)
    assert held.cost_basis == Decimal("3." + "3" * 39)  # 5 minus exactly the share taken
    assert held.position.realized_pnl + held.position.unrealized_pnl == Decimal(1)  # nothing leaks
    assert held.position.avg_price == Decimal("1.666666666666666666666666667")  # left alone
    assert apply_fill(held, sell("2", "2")).position.realized_pnl == Decimal(1)  # flat again: the exact flows


def test_flat_again_after_a_rounded_share_leaves_no_residue_digits() -> None:
    """Found by hypothesis (CI, 2026-11-22): the value was exact once flat, but it kept the rounded
    share's exponent, 0.00002 as 0.0000200... with 44 decimals, into the API and the store."""
    held = run_holding(sell("0.01", "0.001"), sell("0.02", "0.002"), buy("0.01", "0.001"))
    assert held.position.realized_pnl == Decimal("0.00000" + "6" * 38 + "7")  # 0.00002 - 0.00005 / 3, rounded
    flat = apply_fill(held, buy("0.02", "0.001")).position
    assert (flat.qty, str(flat.realized_pnl)) == (0, "0.00002")
    flipped = apply_fill(held, buy("0.03", "0.001")).position  # closes the whole basis too, then opens
    assert (flipped.qty, str(flipped.realized_pnl)) == (Decimal("0.01"), "0.00002")


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("0.00002" + "0" * 39, "0.00002"),
        ("100." + "0" * 25, "100"),  # not 1E+2
        ("-123.45" + "0" * 20, "-123.45"),
        ("0E-44", "0"),
        ("0.000000004901123046875" + "0" * 3, "0.000000004901123046875"),  # needs its 21 decimals, not the zeros
        ("1.50", "1.50"),  # 20 decimals or fewer: its own scale
        ("0." + "0" * 19 + "1", "0." + "0" * 19 + "1"),
    ],
)
def test_own_scale_drops_only_trailing_zeros_past_1e_minus_20(value: str, kept: str) -> None:
    assert format(_own_scale(Decimal(value)), "f") == kept  # fixed-point, as the API and the store write it
    assert _own_scale(Decimal(value)) == Decimal(value)


def test_trailing_zeros_of_a_realized_pnl_with_few_decimals_are_its_own() -> None:
    assert str(run(buy("1", "1.25"), sell("1", "2.75")).realized_pnl) == "1.50"
    assert str(run(buy("100", "1.00"), sell("100", "2.00")).realized_pnl) == "100.00"


def test_a_half_cent_tie_stays_exact() -> None:
    # The sim-account regression: the average 5561.14 / 60 does not terminate; the realized P&L of 45 closed must.
    held = run_holding(buy("14", "101.51"), buy("46", "90.00"))
    assert held.position.realized_pnl == 0
    reduced = apply_fill(held, sell("45", "90.00")).position
    assert reduced.realized_pnl == Decimal("-120.855")  # 45 * 90 - 45/60 * 5561.14, no 28th-digit residue
    assert reduced.unrealized_pnl == Decimal("-40.285")  # 15 * 90 - 15/60 * 5561.14


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
    held = run_holding(*(fill(s, q, p) for s, q, p in fills), contract_size=contract_size)
    position, marked = held.position, mark(held, mark_price, contract_size).position
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


def _terminates(value: Fraction) -> bool:
    """Whether a rational has a finite decimal expansion (its denominator has no prime but 2 and 5)."""
    d = value.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


@given(fill_lists, contract_sizes)
def test_realized_pnl_is_the_exact_flow_of_the_closed_quantity(
    fills: list[tuple[Side, Decimal, Decimal]], contract_size: Decimal
) -> None:
    # Reference: average cost in exact rationals. Opening realizes exactly nothing; realized P&L is exactly the
    # reference whenever every closed share so far had a finite decimal value, equal to it once flat again, and
    # never more than a 40-digit rounding away from it in between. Digits past 1E-20 appear only when the value
    # needs them (a terminating share at a contract size of 0.001 can), never as trailing zeros.
    held, qty, cost, realized, rounded = FLAT, Fraction(0), Fraction(0), Fraction(0), False
    cs = Fraction(contract_size)
    for side, q, p in fills:
        before = held.position.realized_pnl
        held = apply_fill(held, fill(side, q, p), contract_size=contract_size)
        signed, price = Fraction(side.sign) * Fraction(q), Fraction(p)
        if qty == 0 or (qty > 0) == (signed > 0):
            cost += signed * price
            assert held.position.realized_pnl == before  # an opening or increasing fill realizes exactly 0
        else:
            closed = min(abs(qty), abs(signed))
            share = cost * closed / abs(qty)
            rounded = rounded or not _terminates(share)
            realized += (closed * price * (1 if qty > 0 else -1) - share) * cs
            cost = cost - share if closed < abs(qty) else (qty + signed) * price
        qty += signed
        got = Fraction(held.position.realized_pnl)
        _, digits, exponent = held.position.realized_pnl.as_tuple()
        assert int(exponent) >= -20 or digits[-1] != 0  # no trailing zeros past 1E-20, rounded or not
        if rounded:
            assert abs(got - realized) <= abs(realized + cost * cs) * Fraction(1, 10**35) + Fraction(1, 10**30)
        else:
            assert got == realized
            assert Fraction(held.cost_basis) == cost
        if qty == 0:
            assert got == realized  # back to flat: exactly the cash flows
            rounded = False
