"""Performance statistics as pure functions over Decimal series (ADR 0022 defines each one).

Everything here is arithmetic on samples and fills the caller loaded (:mod:`brokerlink.ledger.stats_load`
reads them): no I/O, no clock, no float. Divisions and square roots run in :data:`CONTEXT` (34
significant digits, the precision of IEEE decimal128, half-even), far more than any reported figure
needs; ratios are then quantized to :data:`RATIO_PLACES` (8 decimals) so the API shows a stable value.

- Returns are *time-weighted*: a sample's external flow (deposits minus withdrawals since the previous
  sample) is taken out of its growth, as if it arrived just before the sample, and the sub-period
  returns are chained. Money moved in or out is neither profit nor loss.
- Drawdowns are measured on the same flow-neutral index (growth of one unit), on equity and on cash
  separately: a withdrawal is not a drawdown, a deposit does not end one.
- Sharpe and Sortino use daily returns (the last sample of each UTC day closes it) annualised with
  ``sqrt(periods_per_year)``: 252 trading days, or 365 for accounts that trade only crypto.
- A trade is a round trip: a position in one symbol from flat back to flat (a reversal closes one
  and opens the next), its P&L the realized P&L of its reductions at average cost minus its fees.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, InvalidOperation, Overflow
from itertools import pairwise
from typing import Protocol

import msgspec

from brokerlink.domain.enums import Side
from brokerlink.domain.models import Fill

CONTEXT = Context(prec=34, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])
"""Where every division and square root of this module is computed."""
RATIO_PLACES = Decimal("0.00000001")
TRADING_DAYS = 252
CALENDAR_DAYS = 365

_ZERO = Decimal(0)
_ONE = Decimal(1)


class Sample(Protocol):
    """What the statistics read of a sample (an :class:`~brokerlink.store.repositories.stats.EquitySnapshot`)."""

    @property
    def ts(self) -> datetime: ...
    @property
    def cash(self) -> Decimal: ...
    @property
    def equity(self) -> Decimal: ...
    @property
    def net_flow(self) -> Decimal: ...


class Point(msgspec.Struct, frozen=True, kw_only=True):
    """A sample made by hand or by aggregation: satisfies :class:`Sample`."""

    ts: datetime
    cash: Decimal
    equity: Decimal
    net_flow: Decimal = _ZERO


class RoundTrip(msgspec.Struct, frozen=True, kw_only=True):
    """One closed trade: a position in ``symbol`` from flat to flat."""

    symbol: str
    side: Side
    """The side of the opening fill (long trips open with a buy)."""
    opened_at: datetime
    closed_at: datetime
    pnl: Decimal
    """Realized P&L at average cost minus the trip's fees, in the instrument's quote currency."""

    @property
    def holding(self) -> timedelta:
        """How long the position was open."""
        return self.closed_at - self.opened_at


def ratio(value: Decimal) -> Decimal:
    """A ratio as reported: quantized to :data:`RATIO_PLACES`, half-even."""
    return value.quantize(RATIO_PLACES, rounding=ROUND_HALF_EVEN, context=CONTEXT)


def _value(sample: Sample, basis: str) -> Decimal:
    return sample.equity if basis == "equity" else sample.cash


# --- returns ---------------------------------------------------------------------------------------


def period_returns(samples: Sequence[Sample], basis: str = "equity") -> list[Decimal]:
    """The return of each interval between consecutive samples, the later sample's flow taken out.

    ``r_i = (V_i - F_i) / V_(i-1) - 1``: the flow ``F_i`` is assumed to arrive just before sample
    ``i``. An interval that starts at a value of zero or less has no defined return and is skipped
    (an account emptied and later refunded starts over instead of showing an infinite gain).
    """
    returns: list[Decimal] = []
    for before, after in pairwise(samples):
        base = _value(before, basis)
        if base <= 0:
            continue
        grown = CONTEXT.subtract(_value(after, basis), after.net_flow)
        returns.append(CONTEXT.subtract(CONTEXT.divide(grown, base), _ONE))
    return returns


def chain(returns: Iterable[Decimal]) -> Decimal:
    """Compound returns: ``prod(1 + r) - 1``."""
    growth = _ONE
    for r in returns:
        growth = CONTEXT.multiply(growth, CONTEXT.add(_ONE, r))
    return CONTEXT.subtract(growth, _ONE)


def time_weighted_return(samples: Sequence[Sample], basis: str = "equity") -> Decimal | None:
    """The time-weighted return over the samples (None with fewer than two usable samples)."""
    returns = period_returns(samples, basis)
    return chain(returns) if returns else None


def growth_index(samples: Sequence[Sample], basis: str = "equity") -> list[Decimal]:
    """What one unit invested at the first sample is worth at each sample, flows neutralised.

    An interval without a defined return (from a value of zero or less) leaves the index unchanged.
    """
    if not samples:
        return []
    index = [_ONE]
    for before, after in pairwise(samples):
        base = _value(before, basis)
        if base <= 0:
            index.append(index[-1])
            continue
        factor = CONTEXT.divide(CONTEXT.subtract(_value(after, basis), after.net_flow), base)
        index.append(CONTEXT.multiply(index[-1], factor))
    return index


# --- drawdown --------------------------------------------------------------------------------------


def max_drawdown_of(values: Sequence[Decimal]) -> Decimal:
    """The largest peak-to-trough fall as a fraction of the peak (0 for a curve that never falls).

    A peak of zero or less cannot fall by a fraction of itself; such peaks are ignored.
    """
    worst = _ZERO
    peak: Decimal | None = None
    for value in values:
        if peak is None or value > peak:
            peak = value
            continue
        if peak > 0:
            worst = max(worst, CONTEXT.divide(CONTEXT.subtract(peak, value), peak))
    return worst


def max_drawdown(samples: Sequence[Sample], basis: str = "equity") -> Decimal:
    """Max drawdown of the flow-neutral :func:`growth_index` on ``basis`` (``"equity"`` or ``"cash"``)."""
    return max_drawdown_of(growth_index(samples, basis))


# --- daily returns, Sharpe, Sortino ----------------------------------------------------------------


def daily_closes(samples: Sequence[Sample]) -> list[Point]:
    """One point per UTC day that has samples: its last sample, with the flows of every sample since
    the previous day's close (the first day's flows come before the base and are dropped)."""
    closes: list[Point] = []
    day: date | None = None
    flow = _ZERO
    last: Sample | None = None
    for i, sample in enumerate(samples):
        today = sample.ts.date()
        if day is not None and today != day and last is not None:
            closes.append(Point(ts=last.ts, cash=last.cash, equity=last.equity, net_flow=flow))
            flow = _ZERO
        if i > 0:
            flow = CONTEXT.add(flow, sample.net_flow)
        day, last = today, sample
    if last is not None:
        closes.append(Point(ts=last.ts, cash=last.cash, equity=last.equity, net_flow=flow))
    if closes:
        closes[0] = msgspec.structs.replace(closes[0], net_flow=_ZERO)
    return closes


def daily_returns(samples: Sequence[Sample]) -> list[Decimal]:
    """Equity returns from one daily close to the next, flows neutralised (see :func:`period_returns`)."""
    return period_returns(daily_closes(samples), "equity")


def _mean(values: Sequence[Decimal]) -> Decimal:
    return CONTEXT.divide(sum(values, _ZERO), Decimal(len(values)))


def sharpe(
    returns: Sequence[Decimal], *, periods_per_year: int = TRADING_DAYS, risk_free: Decimal = _ZERO
) -> Decimal | None:
    """Annualised Sharpe ratio: mean excess return over its sample standard deviation (n - 1),
    times ``sqrt(periods_per_year)``. ``risk_free`` is the annual rate, spread evenly over the periods.

    None with fewer than two returns or no variation (the ratio is undefined, not infinite).
    """
    if len(returns) < 2:
        return None
    per_period = CONTEXT.divide(risk_free, Decimal(periods_per_year))
    excess = [CONTEXT.subtract(r, per_period) for r in returns]
    mean = _mean(excess)
    squares = sum((CONTEXT.power(CONTEXT.subtract(x, mean), 2) for x in excess), _ZERO)
    variance = CONTEXT.divide(squares, Decimal(len(excess) - 1))
    if variance == 0:
        return None
    deviation = CONTEXT.sqrt(variance)
    return ratio(CONTEXT.multiply(CONTEXT.divide(mean, deviation), CONTEXT.sqrt(Decimal(periods_per_year))))


def sortino(
    returns: Sequence[Decimal], *, periods_per_year: int = TRADING_DAYS, risk_free: Decimal = _ZERO
) -> Decimal | None:
    """Annualised Sortino ratio: mean excess return over the downside deviation
    ``sqrt(sum(min(0, r - rf)^2) / n)`` (target: the risk-free rate; n: every period), times
    ``sqrt(periods_per_year)``. None with fewer than two returns or no period below the target.
    """
    if len(returns) < 2:
        return None
    per_period = CONTEXT.divide(risk_free, Decimal(periods_per_year))
    excess = [CONTEXT.subtract(r, per_period) for r in returns]
    downside = sum((CONTEXT.power(x, 2) for x in excess if x < 0), _ZERO)
    if downside == 0:
        return None
    deviation = CONTEXT.sqrt(CONTEXT.divide(downside, Decimal(len(excess))))
    return ratio(CONTEXT.multiply(CONTEXT.divide(_mean(excess), deviation), CONTEXT.sqrt(Decimal(periods_per_year))))


# --- trades ----------------------------------------------------------------------------------------


class _Open:
    """A round trip under way in one symbol."""

    __slots__ = ("avg", "opened_at", "pnl", "qty", "side")

    def __init__(self, qty: Decimal, price: Decimal, opened_at: datetime, pnl: Decimal) -> None:
        self.qty = qty  # signed
        self.avg = price
        self.opened_at = opened_at
        self.pnl = pnl
        self.side = Side.BUY if qty > 0 else Side.SELL


def round_trips(fills: Iterable[Fill], contract_sizes: dict[str, Decimal] | None = None) -> list[RoundTrip]:
    """The closed round trips of a netting account's fills (in time order), at average cost.

    A reduction realizes ``closed qty x (price - average entry) x contract size`` (signed by the
    position's side); a fill that reverses the position closes the trip and opens the next with the
    rest, its fee split between them by quantity. Fees count in full against the trip they belong
    to. Trips still open after the last fill are not trades yet and are left out.
    """
    sizes = contract_sizes or {}
    open_trips: dict[str, _Open] = {}
    closed: list[RoundTrip] = []
    for fill in fills:
        size = sizes.get(fill.symbol, _ONE)
        signed = fill.qty * fill.side.sign
        trip = open_trips.get(fill.symbol)
        if trip is None:
            open_trips[fill.symbol] = _Open(signed, fill.price, fill.ts, -fill.fee)
            continue
        if (trip.qty > 0) == (signed > 0):
            total = abs(trip.qty) + abs(signed)
            cost = CONTEXT.add(CONTEXT.multiply(trip.avg, abs(trip.qty)), CONTEXT.multiply(fill.price, abs(signed)))
            trip.avg = CONTEXT.divide(cost, total)
            trip.qty += signed
            trip.pnl -= fill.fee
            continue
        closing = min(abs(signed), abs(trip.qty))
        direction = _ONE if trip.qty > 0 else -_ONE
        move = CONTEXT.multiply(CONTEXT.subtract(fill.price, trip.avg), direction)
        trip.pnl = CONTEXT.add(trip.pnl, CONTEXT.multiply(CONTEXT.multiply(closing, move), size))
        fee_closing = fill.fee if closing == abs(signed) else CONTEXT.divide(fill.fee * closing, abs(signed))
        trip.pnl = CONTEXT.subtract(trip.pnl, fee_closing)
        trip.qty += closing * fill.side.sign
        if trip.qty != 0:
            continue
        closed.append(
            RoundTrip(symbol=fill.symbol, side=trip.side, opened_at=trip.opened_at, closed_at=fill.ts, pnl=trip.pnl)
        )
        del open_trips[fill.symbol]
        rest = abs(signed) - closing
        if rest > 0:
            open_trips[fill.symbol] = _Open(
                rest * fill.side.sign, fill.price, fill.ts, -CONTEXT.subtract(fill.fee, fee_closing)
            )
    return closed


def win_rate(trips: Sequence[RoundTrip]) -> Decimal | None:
    """Winning trips (P&L above zero) over all trips; None without trips."""
    if not trips:
        return None
    return ratio(CONTEXT.divide(Decimal(sum(1 for t in trips if t.pnl > 0)), Decimal(len(trips))))


def profit_factor(trips: Sequence[RoundTrip]) -> Decimal | None:
    """Gross profit over gross loss; None without a losing trip (undefined, not infinite)."""
    loss = sum((-t.pnl for t in trips if t.pnl < 0), _ZERO)
    if loss == 0:
        return None
    return ratio(CONTEXT.divide(sum((t.pnl for t in trips if t.pnl > 0), _ZERO), loss))


def average_holding(trips: Sequence[RoundTrip]) -> timedelta | None:
    """The mean time a trip was open (to the microsecond); None without trips."""
    if not trips:
        return None
    total = sum((t.holding for t in trips), timedelta(0))
    return total / len(trips)


# --- curves ----------------------------------------------------------------------------------------


def equity_curve(samples: Sequence[Sample], interval: timedelta | None = None) -> list[Point]:
    """The samples as a curve, thinned to the last sample of each ``interval`` bucket (from the epoch,
    UTC) when one is given; a bucket's point carries the flows of every sample it replaced."""
    if interval is None:
        return [Point(ts=s.ts, cash=s.cash, equity=s.equity, net_flow=s.net_flow) for s in samples]
    if interval <= timedelta(0):
        raise ValueError("interval must be positive")
    if not samples:
        return []
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    points: list[Point] = []
    bucket: int | None = None
    flow = _ZERO
    for sample in samples:
        here = (sample.ts - epoch) // interval
        if bucket is not None and here != bucket:
            points[-1] = msgspec.structs.replace(points[-1], net_flow=flow)
            flow = _ZERO
        if bucket is None or here != bucket:
            points.append(Point(ts=sample.ts, cash=sample.cash, equity=sample.equity))
        else:
            points[-1] = Point(ts=sample.ts, cash=sample.cash, equity=sample.equity)
        flow = CONTEXT.add(flow, sample.net_flow)
        bucket = here
    points[-1] = msgspec.structs.replace(points[-1], net_flow=flow)
    return points
