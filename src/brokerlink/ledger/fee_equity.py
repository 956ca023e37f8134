"""A subscription's equity: the figure the performance and management fees are measured on (ADR 0021).

**Definition.** At a time ``at``, in the follower account's currency::

    equity = capital + realized P&L - commissions + unrealized P&L

- ``capital`` is the subscription's ``start_equity`` (its allocation, or the account's equity when
  it subscribed; zero when neither was known) plus the deposits and minus the withdrawals recorded
  for it (:func:`brokerlink.ledger.fees.record_flow`) before ``at``;
- the P&L is that of the **copies only**: the fills of the orders the subscription's copy intents
  placed (matched on the follower account and client order id), before ``at``, replayed per symbol
  with the average-cost method of :mod:`brokerlink.domain.positions`; commissions are those fills'
  fees;
- the open quantity is marked at the price a :data:`Marks` source gives (the live quote the copy
  would close at, in the server), else at the account's last fill price in that symbol before
  ``at``.

The follower's own trades in the same account, and its other subscriptions, never move it, so a
provider is paid for what its signals earned and nothing else. Fees themselves are settled through
the ledger, not through the copies, so the equity is gross of them and stays comparable with the
high-water mark from one period to the next.

A copy that cannot be valued exactly in the account's currency (an instrument the store does not
know, a quote currency or commission currency other than the account's: there is no exchange rate
here) makes the equity unknown (``equity is None`` with the reason); no fee is measured on an
unknown equity, which is the follower's side of the doubt.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.copy import Subscription
from brokerlink.domain.models import Position
from brokerlink.domain.positions import Holding, apply_fill, mark
from brokerlink.store.models_fees import FlowKind
from brokerlink.store.repositories.fees import FeeRepository

Marks = Callable[[str, str, Decimal], Decimal | None]
"""``marks(account_id, symbol, signed_qty)``: the price an open copy would close at now, or None."""

_ZERO = Decimal(0)


class SubscriptionEquity(msgspec.Struct, frozen=True, kw_only=True):
    """A subscription's equity and its parts. ``equity`` is None when it cannot be valued (``detail`` says why)."""

    subscription_id: str
    currency: str
    at: datetime
    capital: Decimal
    realized_pnl: Decimal
    commissions: Decimal
    unrealized_pnl: Decimal
    equity: Decimal | None
    detail: str = ""


async def subscription_equity(
    session: AsyncSession, subscription: Subscription, *, at: datetime, marks: Marks | None = None
) -> SubscriptionEquity:
    """The subscription's equity at ``at`` (see the module for the definition)."""
    repo = FeeRepository(session)
    currency = await repo.account_currency(subscription.account_id) or "USD"
    capital = subscription.start_equity if subscription.start_equity is not None else _ZERO
    for flow in await repo.list_flows(subscription.id, until=at):
        capital += flow.amount if flow.kind is FlowKind.DEPOSIT else -flow.amount

    instruments = await repo.instruments_of_account(subscription.account_id)
    holdings: dict[str, Holding] = {}
    commissions = _ZERO
    problem = ""
    for copy in await repo.copy_fills(subscription.id, until=at):
        fill = copy.fill
        instrument = instruments.get(fill.symbol)
        if instrument is None:
            problem = problem or f"instrument {fill.symbol} is not known"
            continue
        if instrument.quote != currency:
            problem = problem or f"{fill.symbol} is quoted in {instrument.quote}, the account is in {currency}"
        if fill.fee:
            if fill.fee_currency not in {None, currency}:
                problem = problem or f"a commission in {fill.fee_currency}, the account is in {currency}"
            commissions += fill.fee
        held = holdings.get(fill.symbol) or Holding(position=Position(account_id=fill.account_id, symbol=fill.symbol))
        holdings[fill.symbol] = apply_fill(held, fill, contract_size=instrument.contract_size)

    realized = unrealized = _ZERO
    for symbol, held in holdings.items():
        realized += held.position.realized_pnl
        if held.position.qty == 0:
            continue
        price = marks(subscription.account_id, symbol, held.position.qty) if marks is not None else None
        if price is None:
            price = await repo.last_fill_price(subscription.account_id, symbol, until=at)
        if price is None:  # pragma: no cover - an open copy has at least one fill before ``at``
            problem = problem or f"no price for {symbol}"
            continue
        unrealized += mark(held, price, instruments[symbol].contract_size).position.unrealized_pnl

    equity = None if problem else capital + realized - commissions + unrealized
    return SubscriptionEquity(
        subscription_id=subscription.id,
        currency=currency,
        at=at,
        capital=capital,
        realized_pnl=realized,
        commissions=commissions,
        unrealized_pnl=unrealized,
        equity=equity,
        detail=problem,
    )
