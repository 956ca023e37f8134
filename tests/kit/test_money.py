"""kit.money: exact conversion, named rounding, and Money arithmetic."""

from __future__ import annotations

from decimal import Context, Decimal, Inexact, InvalidOperation, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerlink.kit.money import (
    Money,
    MoneyError,
    is_multiple_of,
    round_down_to_step,
    round_limit_price,
    round_to_tick,
    to_decimal,
)

# Checks in the tests compute exactly; a rounding in the test itself would hide one in the code.
EXACT = Context(prec=200, traps=[Inexact, InvalidOperation])


def scaled(max_abs: int, places: tuple[int, int], *, positive: bool = False) -> st.SearchStrategy[Decimal]:
    """Decimals n * 10**-k with |n| <= max_abs: at most ~24 significant digits, inside kit's 28-digit context."""
    ints = st.integers(1, max_abs) if positive else st.integers(-max_abs, max_abs)
    return st.builds(lambda n, k: Decimal(n).scaleb(-k), ints, st.integers(*places))


quantities = scaled(10**15, (0, 8))
steps = scaled(10**4, (-2, 8), positive=True)


def exponent(value: Decimal) -> int:
    exp = value.as_tuple().exponent
    assert isinstance(exp, int)
    return exp


# --- to_decimal -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("1.10"), Decimal("1.10")),
        ("0.00000001", Decimal("0.00000001")),
        ("123456789.123456789", Decimal("123456789.123456789")),
        (42, Decimal(42)),
        ("-3", Decimal(-3)),
    ],
)
def test_to_decimal_accepts_exact_inputs(value: Decimal | int | str, expected: Decimal) -> None:
    result = to_decimal(value)
    assert result == expected
    assert str(result) == str(expected)  # the exponent survives too: "1.10" stays "1.10"


@given(st.floats())
def test_to_decimal_refuses_every_float(value: float) -> None:
    with pytest.raises(MoneyError, match="float"):
        to_decimal(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [True, False])
def test_to_decimal_refuses_bool(value: bool) -> None:
    with pytest.raises(MoneyError, match="boolean"):
        to_decimal(value)


@pytest.mark.parametrize(
    "value",
    ["NaN", "-nan", "sNaN", "Infinity", "-Infinity", "inf", Decimal("NaN"), Decimal("-Infinity"), Decimal("sNaN")],
)
def test_to_decimal_refuses_non_finite(value: str | Decimal) -> None:
    with pytest.raises(MoneyError, match="finite"):
        to_decimal(value)


@pytest.mark.parametrize("value", ["", "abc", "1,5", "1.2.3", None, object()])
def test_to_decimal_refuses_garbage(value: object) -> None:
    with pytest.raises(MoneyError, match="not a decimal"):
        to_decimal(value)  # type: ignore[arg-type]


# --- round_down_to_step -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("qty", "step", "expected"),
    [
        ("1.239", "0.01", "1.23"),
        ("1.2", "0.01", "1.20"),
        ("-1.239", "0.01", "-1.23"),
        ("0.009", "0.01", "0.00"),
        ("125", "10", "120"),
        ("0.75", "0.25", "0.75"),
        ("0.74", "0.25", "0.50"),
        ("1234567.8912", "0.0001", "1234567.8912"),
    ],
)
def test_round_down_to_step_examples(qty: str, step: str, expected: str) -> None:
    result = round_down_to_step(Decimal(qty), Decimal(step))
    assert str(result) == expected


@given(quantities, steps)
def test_round_down_to_step_properties(qty: Decimal, step: Decimal) -> None:
    result = round_down_to_step(qty, step)
    with localcontext(EXACT):
        assert abs(result) <= abs(qty)  # never increases magnitude
        assert result * qty >= 0  # never crosses zero
        assert result % step == 0  # a whole number of steps
        assert abs(qty - result) < step  # less than one step away
    assert exponent(result) == min(exponent(step), 0)


def test_round_down_to_step_never_rounds_up_beyond_28_digits() -> None:
    qty = Decimal("12345678901234567890123456.999")
    assert round_down_to_step(qty, Decimal(1)) == Decimal(12345678901234567890123456)


@pytest.mark.parametrize("step", ["0", "-0.01", "NaN", "Infinity"])
def test_round_down_to_step_refuses_bad_steps(step: str) -> None:
    with pytest.raises(MoneyError, match="step"):
        round_down_to_step(Decimal(1), Decimal(step))


# --- round_to_tick and round_limit_price ------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "tick", "mode", "expected"),
    [
        ("1.234", "0.01", "down", "1.23"),
        ("1.234", "0.01", "up", "1.24"),
        ("1.234", "0.01", "nearest", "1.23"),
        ("1.236", "0.01", "nearest", "1.24"),
        ("1.225", "0.01", "nearest", "1.22"),  # half-even: a tie goes to the even tick
        ("1.235", "0.01", "nearest", "1.24"),
        ("-1.234", "0.01", "down", "-1.24"),  # down is floor, not toward zero
        ("-1.234", "0.01", "up", "-1.23"),
        ("1.23", "0.01", "up", "1.23"),
        ("101.3", "0.25", "nearest", "101.25"),
        ("1234", "5", "up", "1235"),
    ],
)
def test_round_to_tick_examples(price: str, tick: str, mode: str, expected: str) -> None:
    result = round_to_tick(Decimal(price), Decimal(tick), mode)  # type: ignore[arg-type]
    assert str(result) == expected


@given(quantities, steps)
def test_round_to_tick_modes(price: Decimal, tick: Decimal) -> None:
    down = round_to_tick(price, tick, "down")
    up = round_to_tick(price, tick, "up")
    nearest = round_to_tick(price, tick, "nearest")
    with localcontext(EXACT):
        for result in (down, up, nearest):
            assert result % tick == 0
        assert down <= price < down + tick
        assert up - tick < price <= up
        assert nearest in (down, up)
        distance = abs(price - nearest)
        assert distance * 2 <= tick
        if distance * 2 == tick:
            assert (nearest / tick) % 2 == 0  # ties to the even tick


@pytest.mark.parametrize(
    ("side", "expected"),
    [("buy", "1.23"), ("sell", "1.24")],
)
def test_round_limit_price_never_pays_more(side: str, expected: str) -> None:
    assert str(round_limit_price(Decimal("1.2345"), Decimal("0.01"), side)) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "step", "expected"),
    [("1.20", "0.01", True), ("1.205", "0.01", False), ("0", "0.5", True), ("-1.5", "0.5", True), ("7", "2", False)],
)
def test_is_multiple_of(value: str, step: str, *, expected: bool) -> None:
    assert is_multiple_of(Decimal(value), Decimal(step)) is expected


# --- Money ------------------------------------------------------------------------------------


def test_money_arithmetic_is_exact_and_keeps_currency() -> None:
    a = Money(Decimal("0.1"), "USD")
    b = Money(Decimal("0.2"), "USD")
    assert a + b == Money(Decimal("0.3"), "USD")
    assert b - a == Money(Decimal("0.1"), "USD")
    assert -a == Money(Decimal("-0.1"), "USD")
    assert a.times(Decimal(3)) == Money(Decimal("0.3"), "USD")
    assert Money.zero("EUR") == Money(Decimal(0), "EUR")


def test_money_refuses_to_mix_currencies() -> None:
    with pytest.raises(MoneyError, match="USD with EUR"):
        _ = Money(Decimal(1), "USD") + Money(Decimal(1), "EUR")
    with pytest.raises(MoneyError, match="USD with EUR"):
        _ = Money(Decimal(1), "USD") - Money(Decimal(1), "EUR")


@pytest.mark.parametrize("currency", ["usd", "US", "ABCDEFGHIJK", "US-D", ""])
def test_money_refuses_invalid_currency_codes(currency: str) -> None:
    with pytest.raises(MoneyError, match="currency"):
        Money(Decimal(1), currency)


@pytest.mark.parametrize("currency", ["USD", "USDT", "1INCH"])
def test_money_accepts_currency_codes(currency: str) -> None:
    assert Money(Decimal(1), currency).currency == currency


@pytest.mark.parametrize("amount", ["NaN", "Infinity"])
def test_money_refuses_non_finite_amounts(amount: str) -> None:
    with pytest.raises(MoneyError, match="finite"):
        Money(Decimal(amount), "USD")


def test_money_refuses_a_float_amount() -> None:
    with pytest.raises(MoneyError, match="float"):
        Money(1.5, "USD")  # type: ignore[arg-type]


def test_rounding_an_out_of_range_value_is_a_money_error_not_a_decimal_trap() -> None:
    with pytest.raises(MoneyError, match="out of range"):
        round_down_to_step(Decimal("1E+200"), Decimal("1E-200"))
    with pytest.raises(MoneyError, match="out of range"):
        is_multiple_of(Decimal("1E+200"), Decimal("1E-200"))
