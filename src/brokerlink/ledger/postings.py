"""What broker activity posts: one journal entry per fill, the opening balance, confirmed capital.

Pure functions over domain objects; the poster (:mod:`brokerlink.ledger.poster`) feeds them from the
``fills`` table, and reconciliation reuses them to price fills that are not posted yet.

**The ledger posts what the broker's cash does**, so that ledger cash reconciles with the cash the
broker reports, to the unit. Two settlement styles:

* ``margin`` (FX and CFDs on margin, and every sim account: the sim venue is cash-settled
  throughout, see :mod:`brokerlink.brokers.sim.accounts`): opening a position moves no cash. Cash
  moves by realized P&L and by commissions only. Realized P&L is gross, from the average-cost
  position arithmetic of :mod:`brokerlink.domain.positions` (the same the sim books with), and is
  posted as the change in the *rounded cumulative* realized P&L of the account, so the rounding
  remainder carries exactly as the broker's does (half-even to the currency's minor unit).

      realized gain:  Dr assets:cash            Cr income:trading
      realized loss:  Dr income:trading         Cr assets:cash
      commission:     Dr expenses:commissions   Cr assets:cash

* ``cash`` (spot crypto, cash equities): a buy pays the notional, which becomes holdings at cost;
  a sell receives the proceeds, releases the closed share of the cost and books the difference as
  realized P&L. Exact, no rounding (the cost share of a partial sell is the one 40-digit rounding of
  the position arithmetic, and is carried inside the cost basis, so nothing leaks).

      buy:   Dr assets:positions (cost)  Cr assets:cash (notional)
      sell:  Dr assets:cash (proceeds)   Cr assets:positions (cost share)   Cr/Dr income:trading

Limits, on purpose: realized P&L in a quote currency other than the account currency is posted in
the quote currency (the rate the broker converted at is not in the fill); hedging accounts are
replayed as netting (fills carry no position id). Reconciliation shows both as differences.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, InvalidOperation, Overflow, localcontext
from typing import Literal

import msgspec

from brokerlink.brokers.sim.accounts import CURRENCY_DECIMALS
from brokerlink.domain import positions
from brokerlink.domain.models import Fill, Instrument, Position
from brokerlink.ledger import chart
from brokerlink.ledger.journal import EXACT, Entry, Leg

Settlement = Literal["cash", "margin"]

_ZERO = Decimal(0)
_WIDE = Context(prec=60, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])


def fill_key(fill_id: str) -> str:
    """The idempotency key of a fill's entry (the stored fill id, a ULID)."""
    return f"fill:{fill_id}"


def opening_key(account_id: str, currency: str) -> str:
    """The idempotency key of an account's opening balance in one currency."""
    return f"opening:{account_id}:{currency}"


def minor_unit(currency: str, decimals: Mapping[str, int] = CURRENCY_DECIMALS) -> Decimal:
    """The currency's smallest unit (0.01 by default; 1 for JPY; 1E-8 for coins)."""
    return Decimal(1).scaleb(-decimals.get(currency, 2))


class AccountBook(msgspec.Struct, kw_only=True):
    """Replay state of one account: its positions and the realized P&L posted so far, per currency.

    Mutable on purpose: the poster replays an account's fills through one book in storage order.
    """

    account_id: str
    owner_id: str
    currency: str
    settlement: Settlement = "margin"
    holdings: dict[str, positions.Holding] = msgspec.field(default_factory=dict)
    realized_exact: dict[str, Decimal] = msgspec.field(default_factory=dict)
    realized_posted: dict[str, Decimal] = msgspec.field(default_factory=dict)


def _leg(account: str, currency: str, amount: Decimal, owner_id: str, *, debit: bool) -> Leg:
    """A debit of ``amount`` if ``debit`` else a credit; a negative amount goes to the other side."""
    if amount < 0:
        amount, debit = amount.copy_negate(), not debit  # copy_negate: exact (unary minus rounds to the context)
    if debit:
        return Leg(account=account, currency=currency, debit=amount, owner_id=owner_id)
    return Leg(account=account, currency=currency, credit=amount, owner_id=owner_id)


def apply_fill(book: AccountBook, fill_id: str, fill: Fill, instrument: Instrument | None) -> Entry | None:
    """Advance ``book`` by one fill and return the entry it posts (None if it moves no money).

    ``instrument`` gives the contract size and quote currency; without it (an instrument the
    broker no longer lists) the fill is taken as quoted in the account currency with a contract size
    of one.
    """
    contract_size = instrument.contract_size if instrument is not None else Decimal(1)
    quote = instrument.quote if instrument is not None else book.currency
    before = book.holdings.get(fill.symbol) or positions.Holding(
        position=Position(account_id=fill.account_id, symbol=fill.symbol)
    )
    after = positions.apply_fill(before, fill, contract_size=contract_size)
    book.holdings[fill.symbol] = after
    realized = _WIDE.subtract(after.position.realized_pnl, before.position.realized_pnl)
    owner, account = book.owner_id, book.account_id
    legs: list[Leg] = []
    if book.settlement == "margin":
        exact = _WIDE.add(book.realized_exact.get(quote, _ZERO), realized)
        book.realized_exact[quote] = exact
        rounded = exact.quantize(minor_unit(quote), rounding=ROUND_HALF_EVEN, context=_WIDE)
        posted = rounded - book.realized_posted.get(quote, _ZERO)
        book.realized_posted[quote] = rounded
        if posted:
            legs.append(_leg(chart.cash(account), quote, posted, owner, debit=True))
            legs.append(_leg(chart.realized_pnl(account), quote, posted, owner, debit=False))
    else:
        # Exact (EXACT traps instead of rounding): the three legs must balance to the last digit.
        realized = EXACT.subtract(after.position.realized_pnl, before.position.realized_pnl)
        cost_change = EXACT.multiply(EXACT.subtract(after.cost_basis, before.cost_basis), contract_size)
        cash_change = EXACT.subtract(realized, cost_change)
        if cash_change:
            legs.append(_leg(chart.cash(account), quote, cash_change, owner, debit=True))
        if cost_change:
            legs.append(_leg(chart.positions_at_cost(account), quote, cost_change, owner, debit=True))
        if realized:
            legs.append(_leg(chart.realized_pnl(account), quote, realized, owner, debit=False))
    if fill.fee:
        fee_currency = fill.fee_currency or book.currency
        legs.append(_leg(chart.commissions(account), fee_currency, fill.fee, owner, debit=True))
        legs.append(_leg(chart.cash(account), fee_currency, fill.fee, owner, debit=False))
    if not legs:
        return None
    return Entry(
        idempotency_key=fill_key(fill_id),
        correlation_id=fill.client_order_id or fill.trade_id,
        kind="fill",
        description=f"{fill.side} {fill.qty} {fill.symbol} @ {fill.price} (trade {fill.trade_id})",
        occurred_at=fill.ts,
        legs=tuple(legs),
    )


def cash_effect(entry: Entry, account_id: str, currency: str) -> Decimal:
    """What ``entry`` does to the account's cash in ``currency`` (debits minus credits)."""
    code = chart.cash(account_id)
    with localcontext(EXACT):
        return sum(
            (leg.debit - leg.credit for leg in entry.legs if leg.account == code and leg.currency == currency), _ZERO
        )


def opening_entry(
    account_id: str, owner_id: str, currency: str, amount: Decimal, *, occurred_at: datetime
) -> Entry | None:
    """The account's cash before the first posted fill, against ``equity:opening`` (None if zero)."""
    if not amount:
        return None
    return Entry(
        idempotency_key=opening_key(account_id, currency),
        correlation_id=account_id,
        kind="opening",
        description=f"opening balance of {account_id} in {currency}, as reported by the broker",
        occurred_at=occurred_at,
        legs=(
            _leg(chart.cash(account_id), currency, amount, owner_id, debit=True),
            _leg(chart.opening_balance(account_id), currency, amount, owner_id, debit=False),
        ),
    )


def capital_entry(
    account_id: str,
    owner_id: str,
    currency: str,
    amount: Decimal,
    *,
    reference: str,
    occurred_at: datetime,
) -> Entry:
    """A deposit (``amount`` > 0) or withdrawal (< 0) the account owner confirmed, against ``equity:capital``."""
    what = "deposit" if amount > 0 else "withdrawal"
    return Entry(
        idempotency_key=f"capital:{account_id}:{reference}",
        correlation_id=reference,
        kind=what,
        description=f"{what} of {abs(amount)} {currency} confirmed by the owner",
        occurred_at=occurred_at,
        legs=(
            _leg(chart.cash(account_id), currency, amount, owner_id, debit=True),
            _leg(chart.owner_capital(account_id), currency, amount, owner_id, debit=False),
        ),
    )


__all__ = [
    "AccountBook",
    "Settlement",
    "apply_fill",
    "capital_entry",
    "cash_effect",
    "fill_key",
    "minor_unit",
    "opening_entry",
    "opening_key",
]
