"""Netting position accounting: one signed position per (account, symbol), average-cost method. Pure; no I/O.

The state is a :class:`Holding`: the domain :class:`~brokerlink.domain.models.Position` plus the
**exact cost basis** of its open quantity (``cost_basis``: the sum of ``signed qty * price`` of the
entries still held, per unit of contract size; signed like ``qty``).

- Opening or increasing adds ``signed qty * price`` to the cost basis, exactly. It realizes exactly
  nothing. ``avg_price`` is the cost basis over the quantity, rounded (:data:`AVERAGE_PRICE_CONTEXT`):
  a figure to show and store, never one that P&L is computed from.
- Reducing realizes ``closed_qty * exit_price * direction`` minus the closed share of the cost basis
  (``cost_basis * closed / |qty|``), times the contract size, and leaves the average price alone.
- Closing to exactly zero realizes against the whole remaining cost basis and resets ``avg_price``
  to 0.
- A fill larger than the position flips it: the old side is closed completely (realizing its P&L)
  and the remainder opens at the fill price.
- ``unrealized_pnl`` at a price is ``(qty * price - cost_basis) * contract_size``.

**Fees are not in ``realized_pnl``.** ``realized_pnl`` is gross trading P&L in the quote currency;
commissions are tracked separately (:func:`fees_by_currency`) and booked by the ledger. A fee is
often charged in another currency (BNB, the account currency), so subtracting it here would mix
currencies, and the copy engine's statistics need gross and net apart anyway.

**Exactness.** Products and sums are computed exactly (an Inexact trap refuses anything that would
round). The one possible rounding is the closed share of the cost basis on a *partial* reduce, a
division that may not terminate (1@1 + 2@2, then sell 1: a share of 5/3). It is rounded to
:data:`COST_SHARE_CONTEXT` (40 significant digits) only when it does not terminate, and the cost basis
left open is the old one minus exactly the share taken, so nothing leaks: for every sequence of fills,
``sum(-signed_qty * price * contract_size) + qty * mark * contract_size == realized_pnl + unrealized_pnl``
at that mark, exactly. Realized P&L is the exact cash flow of the closed quantity whenever the share
terminates, and always once the position is back to flat. It never carries trailing zeros past 1E-20
(a rounded share's 40 digits leave them once the value is exact again: 0.00002, not 0.00002000...
with 44 decimals; :func:`_own_scale`).

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

_RESIDUE_EXPONENT = -20
"""Realized P&L carries no trailing zeros past 1E-20 (:func:`_own_scale`)."""
# Same contract as in brokerlink.domain.orders: products and sums never round, and refusing beats rounding.
_EXACT = Context(prec=200, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])

AVERAGE_PRICE_CONTEXT = Context(prec=28, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])
"""The displayed average entry price (cost basis / quantity): 28 significant digits, half-even. No P&L uses it."""

COST_SHARE_CONTEXT = Context(prec=40, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])
"""A closed share of the cost basis that does not terminate (partial reduce): 40 significant digits, half-even."""


class Holding(msgspec.Struct, frozen=True, kw_only=True):
    """A position and the exact cost basis of its open quantity: the state :func:`apply_fill` works on."""

    position: Position
    cost_basis: Decimal = _ZERO
    """Sum of ``signed qty * price`` of the entries still open, per unit of contract size (signed like ``qty``)."""

    @classmethod
    def of(cls, position: Position) -> Holding:
        """Start from a bare position (e.g. a stored one), taking ``avg_price * qty`` as its exact cost basis."""
        with localcontext(_EXACT):
            return cls(position=position, cost_basis=position.avg_price * position.qty)


def _check_positive(name: str, value: Decimal) -> None:
    if not value.is_finite() or value <= 0:
        raise InvalidInput(f"{name}: must be a positive finite number, got {value}", extra={"field": name})


def _check_finite(name: str, value: Decimal) -> None:
    if not value.is_finite():
        raise InvalidInput(f"{name}: must be a finite number, got {value}", extra={"field": name})


def _sign(value: Decimal) -> int:
    return (value > 0) - (value < 0)


def _closed_share(cost_basis: Decimal, closed: Decimal, held: Decimal) -> Decimal:
    """``cost_basis * closed / held``: exact when it terminates, else rounded by :data:`COST_SHARE_CONTEXT`."""
    with localcontext(_EXACT):
        numerator = cost_basis * closed
    try:
        return _EXACT.divide(numerator, held)
    except Inexact:
        return COST_SHARE_CONTEXT.divide(numerator, held)


def _own_scale(value: Decimal) -> Decimal:
    """``value`` without trailing zeros past 1E-20: what a rounded cost share leaves behind.

    A rounded share has 40 significant digits; once the rest of the basis is realized the sum is
    exact again, but its exponent stays the share's (0.00002 as ``0.0000200...0`` with 44 decimals,
    into the API and the store). A value with 20 decimals or fewer keeps its scale (1.50 stays).
    """
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int) or exponent >= _RESIDUE_EXPONENT:
        return value
    trimmed = value.normalize(_EXACT)
    trimmed_exponent = trimmed.as_tuple().exponent
    if isinstance(trimmed_exponent, int) and trimmed_exponent > 0:  # normalize writes 100 as 1E+2
        return trimmed.quantize(_ONE, context=_EXACT)
    return trimmed


def apply_fill(held: Holding, fill: Fill, *, contract_size: Decimal = _ONE) -> Holding:
    """Apply one fill to a net position and return the new holding.

    ``unrealized_pnl`` of the result is marked at the fill price (the freshest price known for the
    symbol at that moment); call :func:`mark` with a better price when there is one.

    Raises :class:`~brokerlink.kit.errors.InvalidInput` when the fill belongs to another account or
    symbol, or when a quantity, price or contract size is not usable.
    """
    position = held.position
    if fill.account_id != position.account_id or fill.symbol != position.symbol:
        raise InvalidInput(
            f"fill {fill.trade_id!r} for {fill.account_id}/{fill.symbol} applied to the position "
            f"{position.account_id}/{position.symbol}"
        )
    _check_positive("qty", fill.qty)
    _check_finite("price", fill.price)
    _check_positive("contract_size", contract_size)

    qty, avg, cost, price = position.qty, position.avg_price, held.cost_basis, fill.price
    with localcontext(_EXACT):
        signed = fill.qty * fill.side.sign
        new_qty = qty + signed
        realized = position.realized_pnl
        if qty == 0 or _sign(qty) == _sign(signed):
            # Opening or increasing: the entry joins the cost basis exactly; nothing is realized.
            new_cost = cost + signed * price
            new_avg = AVERAGE_PRICE_CONTEXT.divide(new_cost, new_qty)
        else:
            # Reducing, closing or flipping: the closed part realizes against its share of the cost basis.
            direction = _sign(qty)
            closed = min(abs(qty), fill.qty)
            share = cost if closed == abs(qty) else _closed_share(cost, closed, abs(qty))
            realized = _own_scale(realized + (closed * direction * price - share) * contract_size)
            if new_qty == 0:
                new_avg, new_cost = _ZERO, _ZERO
            elif _sign(new_qty) == direction:
                new_avg, new_cost = avg, cost - share
            else:
                new_avg, new_cost = price, new_qty * price  # flipped: the remainder opened at this fill's price
        unrealized = (new_qty * price - new_cost) * contract_size if new_qty else _ZERO
    after = msgspec.structs.replace(
        position, qty=new_qty, avg_price=new_avg, realized_pnl=realized, unrealized_pnl=unrealized
    )
    return Holding(position=after, cost_basis=new_cost)


def mark(held: Holding, price: Decimal, contract_size: Decimal = _ONE) -> Holding:
    """The holding with ``unrealized_pnl = (qty * price - cost_basis) * contract_size`` (zero when flat)."""
    _check_finite("price", price)
    _check_positive("contract_size", contract_size)
    position = held.position
    with localcontext(_EXACT):
        unrealized = (position.qty * price - held.cost_basis) * contract_size if position.qty else _ZERO
    return msgspec.structs.replace(held, position=msgspec.structs.replace(position, unrealized_pnl=unrealized))


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
