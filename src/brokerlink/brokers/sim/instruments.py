"""What the sim venue trades, as data: instrument sets, market simulation parameters, leverage, commissions.

A venue is started with one named set (:data:`INSTRUMENT_SETS`: ``"fx"``, ``"equities"``, ``"crypto"``).
Each entry pairs a frozen :class:`~brokerlink.domain.models.Instrument` (the rules a client sees)
with :class:`SimParams` (how the simulated market behaves: start price, drift, volatility, spread
and the depth of the market maker's ladder). Everything is ``Decimal``; nothing here does I/O.

Commissions are computed in the instrument's quote currency, from exact products of Decimals;
converting them to the account currency and rounding to cents is the account's job
(:mod:`brokerlink.brokers.sim.accounts`).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Context, Decimal, Inexact, InvalidOperation, localcontext
from enum import StrEnum
from types import MappingProxyType

import msgspec

from brokerlink.domain.enums import AssetClass
from brokerlink.domain.models import Instrument
from brokerlink.kit.errors import InvalidInput, NotFound
from brokerlink.kit.money import is_multiple_of

_ZERO = Decimal(0)
_ONE = Decimal(1)
_EXACT = Context(prec=100, traps=[InvalidOperation, Inexact])


class Liquidity(StrEnum):
    """Whether a fill added liquidity (a resting order, maker) or took it (an aggressing order, taker)."""

    MAKER = "maker"
    TAKER = "taker"


class SimParams(msgspec.Struct, frozen=True, kw_only=True):
    """How the simulated market for one instrument behaves.

    ``drift`` and ``volatility`` are annualized (ACT/365) and feed geometric Brownian motion
    (:mod:`brokerlink.brokers.sim.marketdata`). The quoted spread is a whole number of ticks, so
    bid and ask are always on the tick grid and never cross. The market maker's ladder has
    ``depth_levels`` price levels per side, ``level_spacing_ticks`` apart, with ``top_qty`` at the
    best level and each further level ``size_growth`` times the one before (rounded down to the qty
    step), so a market order walks into deeper, larger levels.
    """

    initial_price: Decimal
    drift: Decimal = _ZERO
    volatility: Decimal
    spread_ticks: int
    depth_levels: int = 10
    level_spacing_ticks: int = 1
    top_qty: Decimal
    size_growth: Decimal = Decimal("1.5")

    def __post_init__(self) -> None:
        for name in ("initial_price", "top_qty"):
            value: Decimal = getattr(self, name)
            if not value.is_finite() or value <= 0:
                raise InvalidInput(f"{name}: must be positive, got {value}", extra={"field": name})
        if not self.drift.is_finite():
            raise InvalidInput(f"drift: must be finite, got {self.drift}", extra={"field": "drift"})
        if not self.volatility.is_finite() or self.volatility < 0:
            raise InvalidInput(f"volatility: must be >= 0, got {self.volatility}", extra={"field": "volatility"})
        for name in ("spread_ticks", "depth_levels", "level_spacing_ticks"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"{name}: must be at least 1", extra={"field": name})
        if not self.size_growth.is_finite() or self.size_growth < 1:
            # Sizes must not shrink with distance, or the ladder would thin out where it should be deep.
            raise InvalidInput(f"size_growth: must be >= 1, got {self.size_growth}", extra={"field": "size_growth"})


class SimInstrument(msgspec.Struct, frozen=True, kw_only=True):
    """An instrument and its simulation parameters, checked against each other."""

    instrument: Instrument
    params: SimParams

    def __post_init__(self) -> None:
        inst, params = self.instrument, self.params
        if not is_multiple_of(params.initial_price, inst.tick_size):
            raise InvalidInput(f"{inst.symbol}: initial price {params.initial_price} is off the tick grid")
        if not is_multiple_of(params.top_qty, inst.qty_step) or params.top_qty < inst.min_qty:
            raise InvalidInput(f"{inst.symbol}: top_qty {params.top_qty} is off the qty step or below min_qty")

    @property
    def symbol(self) -> str:
        """The canonical symbol."""
        return self.instrument.symbol


class InstrumentSet(msgspec.Struct, frozen=True, kw_only=True):
    """A named set of instruments of one asset class that a venue can be started with."""

    name: str
    asset_class: AssetClass
    instruments: tuple[SimInstrument, ...]

    def __post_init__(self) -> None:
        symbols = [s.symbol for s in self.instruments]
        if len(set(symbols)) != len(symbols):
            raise InvalidInput(f"instrument set {self.name!r} repeats a symbol")
        if any(s.instrument.asset_class is not self.asset_class for s in self.instruments):
            raise InvalidInput(f"instrument set {self.name!r} mixes asset classes")

    def get(self, symbol: str) -> SimInstrument:
        """The entry for a canonical or venue symbol; :class:`NotFound` when the set has no such symbol."""
        for entry in self.instruments:
            if symbol in (entry.instrument.symbol, entry.instrument.venue_symbol):
                return entry
        raise NotFound(f"unknown symbol {symbol!r} in instrument set {self.name!r}", extra={"symbol": symbol})


# --- commission schedules -------------------------------------------------------------------------


class PerMillion(msgspec.Struct, frozen=True, kw_only=True, tag="per_million"):
    """FX style: ``rate`` per 1,000,000 of notional, in the quote currency (35 = 0.35 bp), maker or taker."""

    rate: Decimal


class PerShare(msgspec.Struct, frozen=True, kw_only=True, tag="per_share"):
    """Equities style: ``per_share`` per unit of the underlying, at least ``minimum`` per fill."""

    per_share: Decimal
    minimum: Decimal = _ZERO


class Bps(msgspec.Struct, frozen=True, kw_only=True, tag="bps"):
    """Crypto style: basis points of notional, different for makers and takers (negative = rebate)."""

    maker_bps: Decimal
    taker_bps: Decimal


CommissionSchedule = PerMillion | PerShare | Bps
"""One of the commission models; tagged, so a venue can load a schedule from JSON with msgspec."""


def commission(
    schedule: CommissionSchedule, instrument: Instrument, qty: Decimal, price: Decimal, liquidity: Liquidity
) -> Decimal:
    """The commission for a fill of ``qty`` at ``price``, in the instrument's quote currency, unrounded.

    Exact: products of short Decimals in a wide context, and dividing by 10**6 or 10**4 only moves
    the exponent; the Inexact trap makes any rounding an error instead of a silent cent.
    """
    with localcontext(_EXACT):
        match schedule:
            case PerMillion(rate=rate):
                return instrument.notional(qty, price) * rate / 1_000_000
            case PerShare(per_share=per_share, minimum=minimum):
                return max(abs(qty) * instrument.contract_size * per_share, minimum)
            case Bps(maker_bps=maker, taker_bps=taker):
                return instrument.notional(qty, price) * (maker if liquidity is Liquidity.MAKER else taker) / 10_000


LEVERAGE: Mapping[AssetClass, Decimal] = MappingProxyType(
    {AssetClass.FX: Decimal(30), AssetClass.EQUITY: Decimal(5), AssetClass.CRYPTO: Decimal(2)}
)
"""Maximum leverage per asset class (ESMA-like retail limits): used margin = notional / leverage."""

COMMISSIONS: Mapping[AssetClass, CommissionSchedule] = MappingProxyType(
    {
        AssetClass.FX: PerMillion(rate=Decimal(35)),
        AssetClass.EQUITY: PerShare(per_share=Decimal("0.005"), minimum=Decimal("1.00")),
        AssetClass.CRYPTO: Bps(maker_bps=Decimal(2), taker_bps=Decimal(5)),
    }
)
"""Default commission schedule per asset class."""


# --- the instrument sets --------------------------------------------------------------------------


def _fx(base: str, quote: str, price: str, vol: str, spread: int) -> SimInstrument:
    jpy = quote == "JPY"
    return SimInstrument(
        instrument=Instrument(
            symbol=f"{base}/{quote}",
            venue_symbol=f"{base}{quote}",
            asset_class=AssetClass.FX,
            base=base,
            quote=quote,
            tick_size=Decimal("0.001") if jpy else Decimal("0.00001"),
            qty_step=Decimal("0.01"),
            min_qty=Decimal("0.01"),
            max_qty=Decimal(100),
            contract_size=Decimal(100_000),
        ),
        params=SimParams(
            initial_price=Decimal(price), volatility=Decimal(vol), spread_ticks=spread, top_qty=Decimal(2)
        ),
    )


def _equity(symbol: str, price: str, drift: str, vol: str) -> SimInstrument:
    return SimInstrument(
        instrument=Instrument(
            symbol=symbol,
            venue_symbol=symbol,
            asset_class=AssetClass.EQUITY,
            base=symbol,
            quote="USD",
            tick_size=Decimal("0.01"),
            qty_step=_ONE,
            min_qty=_ONE,
        ),
        params=SimParams(
            initial_price=Decimal(price),
            drift=Decimal(drift),
            volatility=Decimal(vol),
            spread_ticks=2,
            top_qty=Decimal(100),
        ),
    )


def _crypto(base: str, price: str, tick: str, vol: str, top: str) -> SimInstrument:
    return SimInstrument(
        instrument=Instrument(
            symbol=f"{base}/USDT",
            venue_symbol=f"{base}USDT",
            asset_class=AssetClass.CRYPTO,
            base=base,
            quote="USDT",
            tick_size=Decimal(tick),
            qty_step=Decimal("0.00001"),
            min_qty=Decimal("0.00001"),
            min_notional=Decimal(5),
        ),
        params=SimParams(initial_price=Decimal(price), volatility=Decimal(vol), spread_ticks=2, top_qty=Decimal(top)),
    )


FX = InstrumentSet(
    name="fx",
    asset_class=AssetClass.FX,
    instruments=(
        _fx("EUR", "USD", "1.08500", "0.07", 8),
        _fx("GBP", "USD", "1.27000", "0.08", 10),
        _fx("USD", "JPY", "150.000", "0.09", 10),
        _fx("AUD", "USD", "0.66000", "0.10", 12),
        _fx("USD", "CHF", "0.88000", "0.07", 12),
        _fx("USD", "CAD", "1.36000", "0.06", 14),
        _fx("EUR", "JPY", "162.750", "0.09", 16),
        _fx("EUR", "GBP", "0.85430", "0.06", 14),
    ),
)
"""FX majors and crosses: lots of 100,000 base units, step 0.01 lot; pipettes (0.001 for JPY quotes)."""

EQUITIES = InstrumentSet(
    name="equities",
    asset_class=AssetClass.EQUITY,
    instruments=(
        _equity("AAPL", "190.00", "0.08", "0.25"),
        _equity("MSFT", "410.00", "0.08", "0.22"),
        _equity("NVDA", "880.00", "0.15", "0.50"),
        _equity("AMZN", "180.00", "0.08", "0.30"),
        _equity("SPY", "510.00", "0.06", "0.15"),
    ),
)
"""US equities and an ETF: whole shares, cent ticks, quoted in USD."""

CRYPTO = InstrumentSet(
    name="crypto",
    asset_class=AssetClass.CRYPTO,
    instruments=(
        _crypto("BTC", "65000.0", "0.1", "0.60", "0.5"),
        _crypto("ETH", "3200.00", "0.01", "0.70", "5"),
        _crypto("SOL", "150.00", "0.01", "0.90", "50"),
        _crypto("XRP", "0.5200", "0.0001", "0.80", "10000"),
    ),
)
"""Crypto against USDT: qty step 0.00001, minimum notional 5 USDT."""

INSTRUMENT_SETS: Mapping[str, InstrumentSet] = MappingProxyType({s.name: s for s in (FX, EQUITIES, CRYPTO)})
"""Every named set, by name."""


def instrument_set(name: str) -> InstrumentSet:
    """The named set; :class:`NotFound` listing the known names otherwise."""
    try:
        return INSTRUMENT_SETS[name]
    except KeyError:
        known = ", ".join(sorted(INSTRUMENT_SETS))
        raise NotFound(f"unknown instrument set {name!r}; known: {known}", extra={"set": name}) from None
