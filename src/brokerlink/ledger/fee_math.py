"""The fee arithmetic, pure and exact: what each fee is, how the high-water mark moves, how money rounds.

Everything is ``Decimal`` in a wide context that refuses to round silently; the only roundings are
the named ones below, and each is chosen so that it never goes against the follower:

- a fee charged is rounded **down** to the currency's minor unit (:func:`round_fee`);
- an accrual line (a day of management fee, one fill's volume fee) is kept to
  :data:`ACCRUAL_STEP` (rounded down) and only the period's total is rounded to cents, so many
  small lines do not each lose a fraction;
- a high-water mark scaled down by a withdrawal is rounded **up** to the minor unit
  (:func:`scale_hwm`): a higher mark means less fee;
- the platform's share is rounded down and the provider gets the rest, so the two always add up
  to exactly what the follower paid.
"""

from __future__ import annotations

from decimal import Context, Decimal, DivisionByZero, InvalidOperation, Overflow

from brokerlink.kit.money import round_down_to_step, round_to_tick

_WIDE = Context(prec=60, traps=[InvalidOperation, DivisionByZero, Overflow])
_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
_MILLION = Decimal(1_000_000)
DAYS_PER_YEAR = Decimal(365)
"""Management fees accrue 1/365 of the yearly rate per day, leap years included (ACT/365 fixed)."""

ACCRUAL_STEP = Decimal("0.00000001")
"""Accrual lines are kept to 8 decimals (rounded down) and rounded to cents only when settled."""

_MINOR_UNITS: dict[str, int] = {"JPY": 0, "KRW": 0, "HUF": 0, "BTC": 8, "ETH": 8, "USDT": 2, "USDC": 2}


def minor_unit(currency: str) -> Decimal:
    """The smallest amount of ``currency`` an invoice shows: ``0.01`` for most, ``1`` for JPY, ``1E-8`` for BTC."""
    return Decimal(1).scaleb(-_MINOR_UNITS.get(currency.upper(), 2))


def round_fee(amount: Decimal, currency: str) -> Decimal:
    """A fee rounded **down** to the currency's minor unit (never charge the follower a fraction more)."""
    if amount <= 0:
        return round_down_to_step(_ZERO, minor_unit(currency))
    return round_down_to_step(amount, minor_unit(currency))


def round_accrual(amount: Decimal) -> Decimal:
    """An accrual line rounded down to :data:`ACCRUAL_STEP`."""
    return round_down_to_step(max(amount, _ZERO), ACCRUAL_STEP)


def performance_fee(equity: Decimal, high_water_mark: Decimal, pct: Decimal) -> Decimal:
    """``pct`` percent of the gain above the high-water mark (unrounded); zero at or below it."""
    gain = _WIDE.subtract(equity, high_water_mark)
    if gain <= 0 or pct <= 0:
        return _ZERO
    return _WIDE.divide(_WIDE.multiply(gain, pct), _HUNDRED)


def hwm_after_settlement(equity: Decimal, high_water_mark: Decimal) -> Decimal:
    """The mark after a settlement: the equity, when it is above the mark (the gain was charged); else unchanged.

    Lowering the mark to a lower equity would charge the follower again for recovering a loss.
    """
    return max(high_water_mark, equity)


def deposit_hwm(high_water_mark: Decimal, amount: Decimal) -> Decimal:
    """A deposit raises the mark by the amount: new money is not a gain."""
    return _WIDE.add(high_water_mark, amount)


def scale_hwm(high_water_mark: Decimal, equity_before: Decimal, withdrawn: Decimal, currency: str) -> Decimal:
    """A withdrawal of ``withdrawn`` out of ``equity_before`` lowers the mark in the same proportion.

    Withdrawing 20% of the equity leaves 80% of the mark, so the gain still to be recovered shrinks
    with the capital. Rounded **up** to the minor unit (a higher mark is the follower's side). A
    withdrawal of everything (or from an equity that is not positive) leaves a mark of zero.
    """
    if equity_before <= 0 or withdrawn >= equity_before:
        return round_to_tick(_ZERO, minor_unit(currency))
    kept = _WIDE.divide(_WIDE.subtract(equity_before, withdrawn), equity_before)
    return round_to_tick(_WIDE.multiply(high_water_mark, kept), minor_unit(currency), "up")


def management_day(equity: Decimal, pct_per_year: Decimal) -> Decimal:
    """One day of management fee on ``equity``: ``equity x pct / 100 / 365``, rounded down to :data:`ACCRUAL_STEP`."""
    if equity <= 0 or pct_per_year <= 0:
        return round_accrual(_ZERO)
    return round_accrual(_WIDE.divide(_WIDE.multiply(equity, pct_per_year), _WIDE.multiply(_HUNDRED, DAYS_PER_YEAR)))


def volume_per_lot(qty: Decimal, fee_per_lot: Decimal) -> Decimal:
    """The volume fee of a fill of ``qty`` lots, rounded down to :data:`ACCRUAL_STEP`."""
    return round_accrual(_WIDE.multiply(abs(qty), fee_per_lot))


def notional(qty: Decimal, price: Decimal, contract_size: Decimal) -> Decimal:
    """A fill's notional: ``|qty| x contract_size x price``, exactly."""
    return _WIDE.multiply(_WIDE.multiply(abs(qty), contract_size), abs(price))


def volume_per_million(notional_amount: Decimal, fee_per_million: Decimal) -> Decimal:
    """The volume fee of ``notional_amount``, charged per million, rounded down to :data:`ACCRUAL_STEP`."""
    return round_accrual(_WIDE.divide(_WIDE.multiply(notional_amount, fee_per_million), _MILLION))


def split(amount: Decimal, platform_share_pct: Decimal, currency: str) -> tuple[Decimal, Decimal]:
    """``(provider, platform)`` shares of a charged fee: the platform's rounded down, the provider gets the rest."""
    platform = round_down_to_step(
        _WIDE.divide(_WIDE.multiply(amount, platform_share_pct), _HUNDRED), minor_unit(currency)
    )
    return _WIDE.subtract(amount, platform), platform
