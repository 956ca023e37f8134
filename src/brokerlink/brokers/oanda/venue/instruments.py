"""What the OANDA test venue lists: the sim's FX pairs in OANDA's units, and the ``BTC_USD`` CFD.

OANDA trades FX in units of the base currency (one unit steps, ``tradeUnitsPrecision`` 0, minimum
one unit), not in lots, so the venue's instruments are the sim's FX pairs with a contract size of 1 and
a unit grid; the market maker's ladder starts at a million units. ``BTC_USD`` is a CFD at OANDA; the
engine books it as crypto (its leverage and commission), and the venue lists it with ``type`` ``CFD``.
"""

from __future__ import annotations

from decimal import Decimal

from brokerlink.brokers.oanda import wire
from brokerlink.brokers.sim.instruments import SimInstrument, SimParams
from brokerlink.domain.enums import AssetClass
from brokerlink.domain.models import Instrument

MAX_ORDER_UNITS = Decimal(100_000_000)


def _fx(base: str, quote: str, price: str, vol: str, spread: int) -> SimInstrument:
    jpy = quote == "JPY"
    return SimInstrument(
        instrument=Instrument(
            symbol=f"{base}/{quote}",
            venue_symbol=f"{base}_{quote}",
            asset_class=AssetClass.FX,
            base=base,
            quote=quote,
            tick_size=Decimal("0.001") if jpy else Decimal("0.00001"),
            qty_step=Decimal(1),
            min_qty=Decimal(1),
            max_qty=MAX_ORDER_UNITS,
        ),
        params=SimParams(
            initial_price=Decimal(price), volatility=Decimal(vol), spread_ticks=spread, top_qty=Decimal(1_000_000)
        ),
    )


BTC_USD = SimInstrument(
    instrument=Instrument(
        symbol="BTC/USD",
        venue_symbol="BTC_USD",
        asset_class=AssetClass.CRYPTO,
        base="BTC",
        quote="USD",
        tick_size=Decimal("0.1"),
        qty_step=Decimal("0.01"),
        min_qty=Decimal("0.01"),
        max_qty=Decimal(100),
    ),
    params=SimParams(
        initial_price=Decimal("65000.0"), volatility=Decimal("0.60"), spread_ticks=200, top_qty=Decimal(5)
    ),
)

INSTRUMENTS: tuple[SimInstrument, ...] = (
    _fx("EUR", "USD", "1.08500", "0.07", 8),
    _fx("GBP", "USD", "1.27000", "0.08", 10),
    _fx("USD", "JPY", "150.000", "0.09", 10),
    _fx("AUD", "USD", "0.66000", "0.10", 12),
    _fx("USD", "CHF", "0.88000", "0.07", 12),
    _fx("USD", "CAD", "1.36000", "0.06", 14),
    _fx("EUR", "JPY", "162.750", "0.09", 16),
    _fx("EUR", "GBP", "0.85430", "0.06", 14),
    BTC_USD,
)
"""The venue's instruments, in the order ``GET .../instruments`` lists them."""

_MARGIN_RATES = {AssetClass.FX: Decimal("0.0333"), AssetClass.CRYPTO: Decimal("0.50")}


def precision(step: Decimal) -> int:
    """``0.00001`` -> ``5``: the number of decimals of a grid step."""
    return max(0, -step.normalize().as_tuple().exponent)  # type: ignore[operator]


def instrument_body(entry: SimInstrument) -> wire.Instrument:
    """An instrument as ``GET .../instruments`` reports it."""
    inst = entry.instrument
    digits = precision(inst.tick_size)
    fx = inst.asset_class is AssetClass.FX
    return wire.Instrument(
        name=inst.venue_symbol,
        type="CURRENCY" if fx else "CFD",
        display_name=inst.symbol,
        pip_location=(-2 if inst.quote == "JPY" else -4) if fx else 0,
        display_precision=digits,
        trade_units_precision=precision(inst.qty_step),
        minimum_trade_size=inst.min_qty,
        maximum_position_size=Decimal(0),
        maximum_order_units=inst.max_qty,
        margin_rate=_MARGIN_RATES.get(inst.asset_class, Decimal("0.05")),
    )


def margin_rate(entry: SimInstrument) -> Decimal:
    """The instrument's margin rate as listed (the engine's leverage, rounded as OANDA lists it)."""
    return _MARGIN_RATES.get(entry.instrument.asset_class, Decimal("0.05"))
