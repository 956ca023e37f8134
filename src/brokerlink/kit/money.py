"""Decimal money and quantity helpers. Rounding is always explicit and named.

Binary floats never enter: :func:`to_decimal` refuses them, because ``0.1`` as a float is not
0.1 and a copy-trading size computed from it can land one lot step off.
"""

from __future__ import annotations

from decimal import (
    ROUND_CEILING,
    ROUND_DOWN,
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)
from typing import Literal

import msgspec

TickRounding = Literal["nearest", "down", "up"]

# Rounding to a step divides by the step. In the default 28-digit context a long quotient is
# itself rounded before we round it to a whole number of steps, which can round *up* a quantity
# we promised to round down. This context is wide enough for any amount a venue reports and
# raises instead of rounding, so an impossible value fails loudly.
_EXACT = Context(prec=120, traps=[InvalidOperation, DivisionByZero, Overflow])


class MoneyError(ValueError):
    """A value that cannot be money or a quantity (float, NaN, infinity, garbage)."""


def to_decimal(value: Decimal | int | str) -> Decimal:
    """Convert an exact input to a finite Decimal. Floats are refused, not rounded."""
    if isinstance(value, bool):
        raise MoneyError("a boolean is not an amount")
    if isinstance(value, float):
        raise MoneyError("binary floats are not accepted for money or quantities; pass a str or Decimal")
    try:
        result = value if isinstance(value, Decimal) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise MoneyError(f"not a decimal number: {value!r}") from exc
    if not result.is_finite():
        raise MoneyError(f"not a finite number: {value!r}")
    return result


def _check_step(step: Decimal) -> None:
    if not step.is_finite() or step <= 0:
        raise MoneyError(f"step must be a positive finite decimal, got {step!r}")


def _whole_steps(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    """``value / step`` rounded to an integer with ``rounding``, computed without intermediate rounding."""
    try:
        # The remainder decides the rounding, so the quotient's integer part must be exact.
        whole, remainder = _EXACT.divmod(value, step)
        if remainder == 0:
            return whole
        # Not a whole number of steps: round the exact fraction remainder/step (|fraction| < 1).
        fraction = _EXACT.divide(remainder, step)
        return _EXACT.add(whole, fraction).to_integral_value(rounding=rounding, context=_EXACT)
    except (InvalidOperation, Overflow) as exc:
        raise MoneyError(f"{value} cannot be rounded to a step of {step}: out of range") from exc


def _at_step_exponent(value: Decimal, step: Decimal) -> Decimal:
    """Show a rounded value with the step's decimals (``1.20`` for step ``0.01``; ``120`` for step ``10``)."""
    exponent = step.as_tuple().exponent
    if not isinstance(exponent, int):  # pragma: no cover - _check_step refuses non-finite steps
        raise MoneyError("step must be finite")
    return value.quantize(step if exponent < 0 else Decimal(1))


def round_down_to_step(qty: Decimal, step: Decimal) -> Decimal:
    """Round a quantity toward zero to a whole number of ``step``s.

    This is the sizing rule: a follower never gets more than computed. The result carries the
    step's exponent (``round_down_to_step(Decimal("1.239"), Decimal("0.01")) == Decimal("1.23")``).
    """
    _check_step(step)
    return _at_step_exponent(_whole_steps(qty, step, ROUND_DOWN) * step, step)


def round_to_tick(price: Decimal, tick: Decimal, mode: TickRounding = "nearest") -> Decimal:
    """Round a price to the instrument's tick size: nearest (half-even), down (floor) or up (ceiling)."""
    _check_step(tick)
    rounding = {"nearest": ROUND_HALF_EVEN, "down": ROUND_FLOOR, "up": ROUND_CEILING}[mode]
    return _at_step_exponent(_whole_steps(price, tick, rounding) * tick, tick)


def round_limit_price(price: Decimal, tick: Decimal, side: Literal["buy", "sell"]) -> Decimal:
    """Round a limit price to a tick in the direction that never pays more than asked.

    A buy limit rounds down (never above the price the caller accepted), a sell limit rounds up.
    """
    return round_to_tick(price, tick, "down" if side == "buy" else "up")


def is_multiple_of(value: Decimal, step: Decimal) -> bool:
    """Whether ``value`` is a whole number of ``step``s."""
    _check_step(step)
    try:
        return _EXACT.remainder(value, step) == 0
    except InvalidOperation as exc:
        raise MoneyError(f"{value} is out of range for a step of {step}") from exc


class Money(msgspec.Struct, frozen=True):
    """An amount in one currency. Arithmetic refuses to mix currencies."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise MoneyError("money amounts are Decimals; pass a str or Decimal, never a float")
        if not self.amount.is_finite():
            raise MoneyError("money must be finite")
        if not (3 <= len(self.currency) <= 10 and self.currency.isalnum() and self.currency.isupper()):
            raise MoneyError(f"invalid currency code: {self.currency!r}")

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise MoneyError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def times(self, factor: Decimal) -> Money:
        """Multiply by an exact factor (a quantity, a rate)."""
        return Money(self.amount * factor, self.currency)

    @staticmethod
    def zero(currency: str) -> Money:
        """Zero in a currency."""
        return Money(Decimal(0), currency)
