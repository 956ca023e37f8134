"""Numbers and instrument rules from ccxt, as ``Decimal``, without float arithmetic.

ccxt hands out floats (``0.00001``, ``967984.95``) parsed from the exchange's decimal strings. A
float's shortest ``repr`` is the decimal string it was parsed from whenever that string has at most
15 significant digits, so ``Decimal(repr(x))`` recovers it exactly. A ``repr`` of 16 or more digits
means the float could not carry the value; it is then quantized to the grid the value lives on (the
market's amount step or price tick, eight places for balances), which recovers it as long as it is on
that grid. No arithmetic is ever done on the floats themselves.

Instrument rules come from ``load_markets``: ``precision`` (a tick size, or a number of decimal
places, per the exchange's ``precisionMode``) and ``limits`` (``amount.min``/``max``, ``cost.min``).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from ccxt.base.decimal_to_precision import (  # type: ignore[import-untyped]
    DECIMAL_PLACES,
    SIGNIFICANT_DIGITS,
    TICK_SIZE,
)

from brokerlink.domain.enums import AssetClass
from brokerlink.domain.models import Instrument

EIGHT_PLACES = Decimal("0.00000001")
_FALLBACK_STEP = EIGHT_PLACES
_FLOAT_DIGITS = 16
"""Significant digits from which a float's ``repr`` may not be the decimal it was parsed from."""


def to_decimal(value: object, step: Decimal | None = None) -> Decimal | None:
    """A ccxt number (float, int, str or None) as a Decimal, quantized to ``step`` when given."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        text = repr(value)
    elif isinstance(value, int | str | Decimal):
        text = str(value)
    else:
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    if step is not None and step > 0 and len(number.as_tuple().digits) >= _FLOAT_DIGITS:
        number = number.quantize(step.normalize(), rounding=ROUND_HALF_EVEN)
    return number


def step_of(precision: object, mode: int) -> Decimal | None:
    """A market's ``precision`` entry as a step (``0.01``), whatever the exchange's ``precisionMode``."""
    value = to_decimal(precision)
    if value is None:
        return None
    if mode == TICK_SIZE:
        return value.normalize() if value > 0 else None
    if mode == DECIMAL_PLACES:
        return Decimal(1).scaleb(-int(value))
    if mode == SIGNIFICANT_DIGITS:
        return None  # no fixed grid: the step depends on the price; ccxt's own rounding applies
    return None


def instrument(market: Mapping[str, Any], mode: int) -> Instrument | None:
    """The rules of a ccxt spot market; ``None`` for one without usable precision or not active."""
    if not market.get("spot") or market.get("active") is False:
        return None
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    tick = step_of(precision.get("price"), mode) or _FALLBACK_STEP
    step = step_of(precision.get("amount"), mode) or _FALLBACK_STEP
    amount = limits.get("amount") or {}
    cost = limits.get("cost") or {}
    min_qty = to_decimal(amount.get("min"), step) or step
    max_qty = to_decimal(amount.get("max"), step)
    min_notional = to_decimal(cost.get("min")) or Decimal(0)
    base, quote = str(market["base"]), str(market["quote"])
    return Instrument(
        symbol=f"{base}/{quote}",
        venue_symbol=str(market["id"]),
        asset_class=AssetClass.CRYPTO,
        base=base,
        quote=quote,
        tick_size=tick,
        qty_step=step,
        min_qty=max(min_qty, step),
        max_qty=max_qty or None,
        min_notional=min_notional.normalize() if min_notional else Decimal(0),
    )


def text(value: Decimal) -> str:
    """A Decimal as ccxt takes numbers in order requests: a plain string, never a float."""
    return format(value.normalize(), "f")
