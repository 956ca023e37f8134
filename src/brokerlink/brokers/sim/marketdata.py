"""Market data for the sim venue: a GBM quote generator, CSV tick replay, the market maker's ladder, and rates.

**GBM arithmetic.** Every price is a ``Decimal``. A step of length ``dt`` (a fraction of an ACT/365
year) multiplies the mid by ``exp((drift - volatility**2 / 2) * dt + volatility * sqrt(dt) * z)``,
computed in :data:`GBM_CONTEXT` (34 significant digits, half-even). The standard normal ``z`` comes
from Marsaglia's polar method evaluated in Decimal, fed by ``random.Random.random()``. That is the
one binary float here, and it never rounds: ``random()`` returns ``k / 2**53`` and ``Decimal(float)``
converts it exactly. The alternative, ``random.gauss``, calls the platform's libm ``log``/``cos``,
whose last bits differ between platforms; and ``random()`` is the only stream CPython promises to keep
stable across versions. With Decimal's correctly rounded ``ln``/``sqrt``/``exp``, a seed gives the same
path everywhere. Each symbol has its own ``Random`` seeded with ``"{seed}:{symbol}"``, so adding an
instrument to a set does not change the paths of the others.

**Quotes.** The internal mid is kept at full precision; quotes are on the tick grid with a spread of
exactly ``spread_ticks`` ticks (:func:`quote_prices`), so ``bid < ask`` by construction.

**Liquidity.** :func:`liquidity_ladder` says which resting orders a market maker should have around a
mid. It is data: the venue reconciles its market-maker orders to it; nothing here calls the book.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import (
    ROUND_CEILING,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from pathlib import Path
from typing import NamedTuple, Protocol

import msgspec

from brokerlink.brokers.sim.instruments import InstrumentSet, SimInstrument
from brokerlink.domain.enums import Side
from brokerlink.domain.models import Instrument, Quote
from brokerlink.kit.clock import Clock
from brokerlink.kit.errors import InvalidInput, NotFound, Unavailable
from brokerlink.kit.money import MoneyError, is_multiple_of, round_down_to_step, round_to_tick, to_decimal

GBM_CONTEXT = Context(prec=34, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])
"""Where the random walk is computed: 34 significant digits (IEEE decimal128), half-even."""

RATE_CONTEXT = Context(prec=28, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])
"""The one rounding in :class:`MidRates`: an inverse or cross rate, 28 significant digits, half-even."""

_CEILING = Context(prec=34, rounding=ROUND_CEILING, traps=[InvalidOperation, DivisionByZero, Overflow])
_MICROS_PER_YEAR = 365 * 24 * 3600 * 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ZERO = Decimal(0)


def year_fraction(dt: timedelta) -> Decimal:
    """``dt`` as a fraction of an ACT/365 year (whole microseconds, so no float is involved)."""
    return GBM_CONTEXT.divide(Decimal(dt // timedelta(microseconds=1)), Decimal(_MICROS_PER_YEAR))


class NormalSource:
    """Standard normal draws in Decimal from a ``random.Random`` (Marsaglia's polar method)."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._spare: Decimal | None = None

    def _uniform(self) -> Decimal:
        # random() is k / 2**53: Decimal(float) is exact; only the scaling to (-1, 1) rounds, in GBM_CONTEXT.
        return GBM_CONTEXT.subtract(GBM_CONTEXT.multiply(Decimal(self._rng.random()), Decimal(2)), Decimal(1))

    def draw(self) -> Decimal:
        """The next draw; the polar method yields two, so every other call uses the cached spare."""
        if self._spare is not None:
            spare, self._spare = self._spare, None
            return spare
        with localcontext(GBM_CONTEXT):
            while True:
                u, v = self._uniform(), self._uniform()
                s = u * u + v * v
                if 0 < s < 1:
                    break
            factor = (Decimal(-2) * s.ln() / s).sqrt()
            self._spare = v * factor
            return u * factor


def quote_prices(entry: SimInstrument, mid: Decimal) -> tuple[Decimal, Decimal]:
    """Bid and ask around ``mid``: on the tick grid, exactly ``spread_ticks`` ticks apart.

    The bid is the nearest tick to ``mid - spread / 2`` and never below one tick: a price near zero
    still quotes a positive bid rather than a crossed or negative market.
    """
    tick = entry.instrument.tick_size
    spread = entry.params.spread_ticks * tick
    bid = max(round_to_tick(mid - spread / 2, tick), round_to_tick(tick, tick))
    return bid, bid + spread


class LadderLevel(NamedTuple):
    """One resting order the market maker should have: side, price (on the tick grid), qty (on the step grid)."""

    side: Side
    price: Decimal
    qty: Decimal


def _level_qty(entry: SimInstrument, level: int, price: Decimal) -> Decimal:
    inst, params = entry.instrument, entry.params
    with localcontext(GBM_CONTEXT):
        grown = params.top_qty * params.size_growth**level
    qty = max(round_down_to_step(grown, inst.qty_step), inst.min_qty)
    if inst.min_notional > 0:
        # Deeper bids are cheaper, so the minimum notional needs more units there; round up to stay above it.
        # Dividing with ceiling rounding keeps "needed" at or above the exact quotient.
        needed = _CEILING.divide(inst.min_notional, price * inst.contract_size)
        qty = max(qty, round_to_tick(needed, inst.qty_step, "up"))
    return qty if inst.max_qty is None else min(qty, inst.max_qty)


def liquidity_ladder(entry: SimInstrument, mid: Decimal) -> list[LadderLevel]:
    """The market maker's resting orders around ``mid``: bids best first, then asks best first.

    The best level is the quote (:func:`quote_prices`); each further level is ``level_spacing_ticks``
    away with a size that never shrinks with distance (``top_qty * size_growth**k`` rounded down to the
    step, raised to ``min_qty`` and ``min_notional``, capped at ``max_qty``). Bid levels that would be
    at or below zero are left out.
    """
    inst, params = entry.instrument, entry.params
    bid, ask = quote_prices(entry, mid)
    spacing = params.level_spacing_ticks * inst.tick_size
    levels: list[LadderLevel] = []
    for side, best in ((Side.BUY, bid), (Side.SELL, ask)):
        previous = _ZERO
        for k in range(params.depth_levels):
            price = best - spacing * k * side.sign
            if price <= 0:
                break
            # A running maximum keeps sizes monotone where the min-notional floor falls with rising ask prices.
            previous = max(previous, _level_qty(entry, k, price))
            levels.append(LadderLevel(side, price, previous))
    return levels


class QuoteSource(Protocol):
    """What the venue pulls quotes from: the GBM generator or a replay."""

    def step(self, dt: timedelta) -> list[Quote]:
        """Advance by ``dt`` and return the quotes that changed, in a deterministic order."""
        ...


class MarketDataGenerator:
    """Geometric Brownian motion per instrument, deterministic for a seed; quotes stamped by ``clock``."""

    def __init__(self, instruments: Iterable[SimInstrument], *, seed: int, clock: Clock) -> None:
        self._entries = {entry.symbol: entry for entry in instruments}
        if not self._entries:
            raise InvalidInput("a market data generator needs at least one instrument")
        self._clock = clock
        self._normals = {s: NormalSource(random.Random(f"{seed}:{s}")) for s in self._entries}  # noqa: S311 - a simulation, not secrets
        self._mids = {s: e.params.initial_price for s, e in self._entries.items()}

    @property
    def instruments(self) -> list[SimInstrument]:
        """The simulated instruments, in the order quotes are returned."""
        return list(self._entries.values())

    def _entry(self, symbol: str) -> SimInstrument:
        try:
            return self._entries[symbol]
        except KeyError:
            raise NotFound(f"unknown symbol {symbol!r}", extra={"symbol": symbol}) from None

    def mid(self, symbol: str) -> Decimal:
        """The current internal mid (full precision, not on the tick grid)."""
        self._entry(symbol)
        return self._mids[symbol]

    def set_mid(self, symbol: str, price: Decimal) -> None:
        """Move a mid by hand (tests, demo scenarios, fault injection); the walk continues from there."""
        self._entry(symbol)
        if not price.is_finite() or price <= 0:
            raise InvalidInput(f"price: must be positive, got {price}", extra={"field": "price"})
        self._mids[symbol] = price

    def quote(self, symbol: str) -> Quote:
        """The current quote for ``symbol``: top of the ladder, stamped now."""
        entry = self._entry(symbol)
        mid = self._mids[symbol]
        bid, ask = quote_prices(entry, mid)
        # Top-of-book sizes are the ladder's first level, so the quote and the resting book agree.
        return Quote(
            symbol=symbol,
            bid=bid,
            ask=ask,
            bid_size=_level_qty(entry, 0, bid),
            ask_size=_level_qty(entry, 0, ask),
            ts=self._clock.now(),
        )

    def quotes(self) -> list[Quote]:
        """Current quotes of every instrument."""
        return [self.quote(symbol) for symbol in self._entries]

    def step(self, dt: timedelta) -> list[Quote]:
        """Advance every instrument by ``dt`` and return the new quotes (every instrument, in order)."""
        if dt <= timedelta(0):
            raise InvalidInput("dt: must be positive")
        t = year_fraction(dt)
        with localcontext(GBM_CONTEXT):
            root_t = t.sqrt()
            for symbol, entry in self._entries.items():
                mu, sigma = entry.params.drift, entry.params.volatility
                z = self._normals[symbol].draw()
                self._mids[symbol] *= ((mu - sigma * sigma / 2) * t + sigma * root_t * z).exp()
        return self.quotes()


# --- replay ---------------------------------------------------------------------------------------


class TickFileError(InvalidInput):
    """A tick file the venue refuses to replay; ``extra`` names the line."""

    code = "invalid_tick_file"
    title = "Invalid tick file"


_REQUIRED = ("ts", "symbol", "bid", "ask")
_OPTIONAL = ("bid_size", "ask_size")


def _parse_ts(text: str) -> datetime:
    if text.isdigit():  # epoch milliseconds, as most tick exports write them
        return _EPOCH + timedelta(milliseconds=int(text))
    ts = datetime.fromisoformat(text)
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no timezone")
    return ts.astimezone(UTC)


def _parse_row(row: dict[str, str], entries: dict[str, SimInstrument]) -> Quote:
    entry = entries.get(row["symbol"])
    if entry is None:
        raise ValueError(f"unknown symbol {row['symbol']!r}")
    inst = entry.instrument
    bid, ask = to_decimal(row["bid"]), to_decimal(row["ask"])
    for name, price in (("bid", bid), ("ask", ask)):
        if price <= 0 or not is_multiple_of(price, inst.tick_size):
            raise ValueError(f"{name} {price} is not a positive multiple of the tick {inst.tick_size}")
    if bid >= ask:
        raise ValueError(f"{'locked' if bid == ask else 'crossed'} quote: bid {bid} >= ask {ask}")
    sizes = []
    for name in _OPTIONAL:
        size = to_decimal(row[name]) if row.get(name) else entry.params.top_qty
        if size <= 0 or not is_multiple_of(size, inst.qty_step):
            raise ValueError(f"{name} {size} is not a positive multiple of the step {inst.qty_step}")
        sizes.append(size)
    return Quote(symbol=inst.symbol, bid=bid, ask=ask, bid_size=sizes[0], ask_size=sizes[1], ts=_parse_ts(row["ts"]))


def parse_ticks(lines: Iterable[str], instruments: InstrumentSet | Iterable[SimInstrument]) -> list[Quote]:
    """Parse CSV ticks ``ts,symbol,bid,ask[,bid_size,ask_size]`` into quotes, refusing anything doubtful.

    ``ts`` is ISO 8601 with a timezone or epoch milliseconds, and never goes back; ``symbol`` is a
    canonical or venue symbol of ``instruments``; prices are Decimals on the tick grid with
    ``bid < ask``; sizes are on the qty step and default to the instrument's ``top_qty``. Any other
    column, or any bad row, raises :class:`TickFileError` with the line number.
    """
    items = instruments.instruments if isinstance(instruments, InstrumentSet) else instruments
    entries: dict[str, SimInstrument] = {}
    for entry in items:
        entries[entry.instrument.symbol] = entries[entry.instrument.venue_symbol] = entry
    reader = csv.reader(iter(lines))
    header = [name.strip() for name in next(reader, [])]
    missing = [name for name in _REQUIRED if name not in header]
    unknown = [name for name in header if name not in _REQUIRED + _OPTIONAL]
    if missing or unknown or len(set(header)) != len(header):
        raise TickFileError(
            f"header {header}: missing {missing}, unknown {unknown}; expected {list(_REQUIRED + _OPTIONAL)}",
            extra={"line": 1},
        )
    quotes: list[Quote] = []
    for fields in reader:
        if not fields:
            continue
        line = reader.line_num
        if len(fields) != len(header):
            raise TickFileError(f"line {line}: {len(fields)} fields, header has {len(header)}", extra={"line": line})
        try:
            quote = _parse_row(dict(zip(header, (f.strip() for f in fields), strict=True)), entries)
        except (ValueError, MoneyError) as exc:  # MoneyError is a ValueError; named for the reader
            raise TickFileError(f"line {line}: {exc}", extra={"line": line}) from exc
        if quotes and quote.ts < quotes[-1].ts:
            raise TickFileError(f"line {line}: timestamp {quote.ts.isoformat()} goes back", extra={"line": line})
        quotes.append(quote)
    return quotes


def load_ticks(path: Path, instruments: InstrumentSet | Iterable[SimInstrument]) -> list[Quote]:
    """:func:`parse_ticks` on a UTF-8 CSV file."""
    with path.open(encoding="utf-8", newline="") as handle:
        return parse_ticks(handle, instruments)


class ReplayFeed:
    """Replays parsed ticks at their recorded pace, restamped with the venue's clock.

    ``step(dt)`` moves the replay cursor ``dt`` past the first tick and returns every tick recorded up
    to there, in file order, with ``ts`` set to ``clock.now()``: the venue lives in its own time, the
    file only says when, relative to its start, each quote changed.
    """

    def __init__(self, quotes: Sequence[Quote], *, clock: Clock) -> None:
        self._quotes = list(quotes)
        self._clock = clock
        self._next = 0
        self._elapsed = timedelta(0)
        self._start = self._quotes[0].ts if self._quotes else _EPOCH

    @property
    def exhausted(self) -> bool:
        """Whether every tick has been replayed."""
        return self._next >= len(self._quotes)

    def step(self, dt: timedelta) -> list[Quote]:
        """Advance the replay by ``dt`` and return the ticks that became due, restamped now."""
        if dt < timedelta(0):
            raise InvalidInput("dt: must not be negative")
        self._elapsed += dt
        now = self._clock.now()
        due: list[Quote] = []
        while self._next < len(self._quotes) and self._quotes[self._next].ts - self._start <= self._elapsed:
            due.append(msgspec.structs.replace(self._quotes[self._next], ts=now))
            self._next += 1
        return due


# --- conversion rates -----------------------------------------------------------------------------


class MidRates:
    """A rate source for accounts, from the latest mids: ``rates(source, target)`` = target units per source unit.

    Known directly (a quote of ``source/target``), inverted (``target/source``: ``1 / mid``), or across
    one common currency (``EUR -> JPY`` via ``EUR/USD`` and ``USD/JPY``). Fixed rates, such as
    ``USDT -> USD = 1``, are set with :meth:`set_rate`. No known path raises :class:`Unavailable`.
    """

    def __init__(self, instruments: Iterable[Instrument] = ()) -> None:
        self._pairs = {inst.symbol: (inst.base, inst.quote) for inst in instruments}
        self._rates: dict[tuple[str, str], Decimal] = {}

    def set_rate(self, base: str, quote: str, rate: Decimal) -> None:
        """Set ``quote`` units per ``base`` unit."""
        if not rate.is_finite() or rate <= 0:
            raise InvalidInput(f"rate: must be positive, got {rate}", extra={"field": "rate"})
        self._rates[base, quote] = rate

    def update(self, quote: Quote) -> None:
        """Take the mid of a quote of a known instrument; quotes of other symbols are ignored."""
        pair = self._pairs.get(quote.symbol)
        if pair is not None:
            self.set_rate(*pair, quote.mid)

    def _one_hop(self, source: str, target: str) -> Decimal | None:
        if (source, target) in self._rates:
            return self._rates[source, target]
        if (target, source) in self._rates:
            return RATE_CONTEXT.divide(Decimal(1), self._rates[target, source])
        return None

    def __call__(self, source: str, target: str) -> Decimal:
        """Target-currency units per one unit of ``source``."""
        if source == target:
            return Decimal(1)
        direct = self._one_hop(source, target)
        if direct is not None:
            return direct
        for pivot in sorted({c for pair in self._rates for c in pair} - {source, target}):
            first, second = self._one_hop(source, pivot), self._one_hop(pivot, target)
            if first is not None and second is not None:
                return RATE_CONTEXT.multiply(first, second)
        raise Unavailable(f"no conversion rate from {source} to {target}", extra={"from": source, "to": target})
