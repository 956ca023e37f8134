"""Decimal money and quantity helpers. Rounding is always explicit and named.

Binary floats never enter: :func:`to_decimal` refuses them, because ``0.1`` as a float is not
0.1 and a copy-trading size computed from it can land one lot step off.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Literal

import msgspec

TickRounding = Literal["nearest", "down", "up"]


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
    steps = (qty / step).to_integral_value(rounding=ROUND_DOWN)
    return _at_step_exponent(steps * step, step)


def round_to_tick(price: Decimal, tick: Decimal, mode: TickRounding = "nearest") -> Decimal:
    """Round a price to the instrument's tick size: nearest (half-even), down (floor) or up (ceiling)."""
    _check_step(tick)
    rounding = {"nearest": ROUND_HALF_EVEN, "down": ROUND_FLOOR, "up": ROUND_CEILING}[mode]
    ticks = (price / tick).to_integral_value(rounding=rounding)
    return _at_step_exponent(ticks * tick, tick)


def round_limit_price(price: Decimal, tick: Decimal, side: Literal["buy", "sell"]) -> Decimal:
    """Round a limit price to a tick in the direction that never pays more than asked.

    A buy limit rounds down (never above the price the caller accepted), a sell limit rounds up.
    """
    return round_to_tick(price, tick, "down" if side == "buy" else "up")


def is_multiple_of(value: Decimal, step: Decimal) -> bool:
    """Whether ``value`` is a whole number of ``step``s."""
    _check_step(step)
    return value % step == 0


class Money(msgspec.Struct, frozen=True):
    """An amount in one currency. Arithmetic refuses to mix currencies."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
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
