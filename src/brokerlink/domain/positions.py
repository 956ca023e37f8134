"""Netting position accounting: one signed position per (account, symbol), average-cost method. Pure; no I/O.

- Opening or increasing moves the average price to the quantity-weighted mean of the entries.
- Reducing realizes ``(exit - avg) * closed_qty * direction * contract_size`` (direction +1 long,
  -1 short) and leaves the average price alone.
- Closing to exactly zero resets ``avg_price`` to 0.
- A fill larger than the position flips it: the old side is closed completely (realizing its P&L)
  and the remainder opens at the fill price.

**Fees are not in ``realized_pnl``.** ``realized_pnl`` is gross trading P&L in the quote currency;
commissions are tracked separately (:func:`fees_by_currency`) and booked by the ledger. A fee is
often charged in another currency (BNB, the account currency), so subtracting it here would mix
currencies, and the copy engine's statistics need gross and net apart anyway.

**Exactness.** Products and sums are computed exactly (an Inexact trap refuses anything that would
round). The only rounding is the average price on an increase, a division that may not terminate
(1@1 + 2@2 = 5/3); it is rounded to :data:`AVERAGE_PRICE_CONTEXT`, and the rounding residual
(a few units in the 28th digit) is booked into ``realized_pnl``. That keeps cash conservation exact:
for every sequence of fills, ``sum(-signed_qty * price * contract_size) + qty * mark * contract_size
== realized_pnl + unrealized_pnl`` at that mark. Without it, value would leak through the rounded
average, and reconciliation against the ledger could never match to the last digit.

**Duplicates.** A position has no memory of trade ids: the caller applies each fill once, after
recording it under its ``(account_id, trade_id)`` key (see ``brokerlink.domain.orders.OrderState``).

Hedging accounts (several positions per symbol) are out of scope here; the sim broker may add them.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow, localcontext

import msgspec

from brokerlink.domain.models import Fill, Position
from brokerlink.kit.errors import InvalidInput

_ZERO = Decimal(0)
_ONE = Decimal(1)

# Same contract as in brokerlink.domain.orders: products and sums never round, and refusing beats rounding.
_EXACT = Context(prec=200, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])

AVERAGE_PRICE_CONTEXT = Context(prec=28, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])
"""The one rounding in position accounting: a new average entry price, 28 significant digits, half-even."""


def _check_positive(name: str, value: Decimal) -> None:
    if not value.is_finite() or value <= 0:
        raise InvalidInput(f"{name}: must be a positive finite number, got {value}", extra={"field": name})


def _check_finite(name: str, value: Decimal) -> None:
    if not value.is_finite():
        raise InvalidInput(f"{name}: must be a finite number, got {value}", extra={"field": name})


def _sign(value: Decimal) -> int:
    return (value > 0) - (value < 0)


def apply_fill(position: Position, fill: Fill, *, contract_size: Decimal = _ONE) -> Position:
    """Apply one fill to a net position and return the new position.

    ``unrealized_pnl`` of the result is marked at the fill price (the freshest price known for the
    symbol at that moment); call :func:`mark` with a better price when there is one.

    Raises :class:`~brokerlink.kit.errors.InvalidInput` when the fill belongs to another account or
    symbol, or when a quantity, price or contract size is not usable.
    """
    if fill.account_id != position.account_id or fill.symbol != position.symbol:
        raise InvalidInput(
            f"fill {fill.trade_id!r} for {fill.account_id}/{fill.symbol} applied to the position "
            f"{position.account_id}/{position.symbol}"
        )
    _check_positive("qty", fill.qty)
    _check_finite("price", fill.price)
    _check_positive("contract_size", contract_size)

    qty, avg, price = position.qty, position.avg_price, fill.price
    with localcontext(_EXACT):
        signed = fill.qty * fill.side.sign
        new_qty = qty + signed
        realized = position.realized_pnl
        if qty == 0 or _sign(qty) == _sign(signed):
            # Opening or increasing: a new weighted average, and the residual of rounding it goes to realized.
            entry_value = avg * qty + price * signed
            new_avg = AVERAGE_PRICE_CONTEXT.divide(entry_value, new_qty)
            residual = (new_avg * new_qty - entry_value) * contract_size
            if residual:
                realized += residual
        else:
            # Reducing, closing or flipping: the closed part realizes against the average entry.
            direction = _sign(qty)
            closed = min(abs(qty), fill.qty)
            realized += (price - avg) * closed * direction * contract_size
            if new_qty == 0:
                new_avg = _ZERO
            elif _sign(new_qty) == direction:
                new_avg = avg
            else:
                new_avg = price  # flipped: the remainder opened at this fill's price
        unrealized = (price - new_avg) * new_qty * contract_size if new_qty else _ZERO
    return msgspec.structs.replace(
        position, qty=new_qty, avg_price=new_avg, realized_pnl=realized, unrealized_pnl=unrealized
    )


def mark(position: Position, price: Decimal, contract_size: Decimal = _ONE) -> Position:
    """The position with ``unrealized_pnl = (price - avg_price) * qty * contract_size`` (zero when flat)."""
    _check_finite("price", price)
    _check_positive("contract_size", contract_size)
    with localcontext(_EXACT):
        unrealized = (price - position.avg_price) * position.qty * contract_size if position.qty else _ZERO
    return msgspec.structs.replace(position, unrealized_pnl=unrealized)


def fees_by_currency(fills: Iterable[Fill]) -> dict[str, Decimal]:
    """Total commissions per currency (positive is a cost, negative a rebate); zero fees are skipped.

    Raises :class:`~brokerlink.kit.errors.InvalidInput` for a non-zero fee without a currency: it
    could not be booked anywhere.
    """
    totals: dict[str, Decimal] = {}
    with localcontext(_EXACT):
        for fill in fills:
            if not fill.fee:
                continue
            if fill.fee_currency is None:
                raise InvalidInput(f"fee_currency: fill {fill.trade_id!r} has a fee of {fill.fee} but no currency")
            totals[fill.fee_currency] = totals.get(fill.fee_currency, _ZERO) + fill.fee
    return totals
