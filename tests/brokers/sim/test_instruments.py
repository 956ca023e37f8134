"""Sim instrument sets, simulation parameters, leverage and commission schedules."""

from __future__ import annotations

from decimal import Context, Decimal, Inexact, InvalidOperation
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerlink.brokers.sim.instruments import (
    COMMISSIONS,
    CRYPTO,
    EQUITIES,
    FX,
    INSTRUMENT_SETS,
    LEVERAGE,
    Bps,
    CommissionSchedule,
    InstrumentSet,
    Liquidity,
    PerMillion,
    PerShare,
    SimInstrument,
    SimParams,
    commission,
    instrument_set,
)
from brokerlink.domain.enums import AssetClass
from brokerlink.kit.errors import InvalidInput, NotFound
from brokerlink.kit.money import is_multiple_of

EXACT = Context(prec=200, traps=[Inexact, InvalidOperation])
ALL = [entry for s in INSTRUMENT_SETS.values() for entry in s.instruments]


def params(**overrides: Any) -> SimParams:
    fields: dict[str, Any] = {
        "initial_price": Decimal("1.00000"),
        "volatility": Decimal("0.1"),
        "spread_ticks": 2,
        "top_qty": Decimal(1),
    }
    fields.update(overrides)
    return SimParams(**fields)


def test_sets_by_name() -> None:
    assert sorted(INSTRUMENT_SETS) == ["crypto", "equities", "fx"]
    assert instrument_set("fx") is FX
    assert (FX.asset_class, EQUITIES.asset_class, CRYPTO.asset_class) == (
        AssetClass.FX,
        AssetClass.EQUITY,
        AssetClass.CRYPTO,
    )


def test_unknown_set_lists_the_known_ones() -> None:
    with pytest.raises(NotFound, match="known: crypto, equities, fx") as info:
        instrument_set("bonds")
    assert info.value.extra == {"set": "bonds"}


@pytest.mark.parametrize(
    ("symbol", "venue", "rules"),
    [
        # (tick, qty step, min qty, contract size, min notional, quote currency)
        ("EUR/USD", "EURUSD", ("0.00001", "0.01", "0.01", "100000", "0", "USD")),
        ("USD/JPY", "USDJPY", ("0.001", "0.01", "0.01", "100000", "0", "JPY")),
        ("EUR/JPY", "EURJPY", ("0.001", "0.01", "0.01", "100000", "0", "JPY")),
        ("GBP/USD", "GBPUSD", ("0.00001", "0.01", "0.01", "100000", "0", "USD")),
        ("AAPL", "AAPL", ("0.01", "1", "1", "1", "0", "USD")),
        ("BTC/USDT", "BTCUSDT", ("0.1", "0.00001", "0.00001", "1", "5", "USDT")),
        ("ETH/USDT", "ETHUSDT", ("0.01", "0.00001", "0.00001", "1", "5", "USDT")),
    ],
)
def test_instrument_rules(symbol: str, venue: str, rules: tuple[str, str, str, str, str, str]) -> None:
    inst = next(e.instrument for e in ALL if e.symbol == symbol)
    *numbers, quote = rules
    assert inst.venue_symbol == venue
    assert [inst.tick_size, inst.qty_step, inst.min_qty, inst.contract_size, inst.min_notional] == [
        Decimal(n) for n in numbers
    ]
    assert inst.quote == quote


@pytest.mark.parametrize("entry", ALL, ids=lambda e: e.symbol)
def test_every_entry_is_consistent(entry: SimInstrument) -> None:
    inst, p = entry.instrument, entry.params
    assert is_multiple_of(p.initial_price, inst.tick_size)
    assert is_multiple_of(p.top_qty, inst.qty_step)
    assert p.top_qty >= inst.min_qty
    assert inst.tradable
    assert inst.symbol.replace("/", "") == inst.venue_symbol


def test_get_by_canonical_or_venue_symbol() -> None:
    assert FX.get("EUR/USD") is FX.get("EURUSD")
    with pytest.raises(NotFound, match="'XAUUSD'"):
        FX.get("XAUUSD")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"initial_price": Decimal(0)}, "initial_price"),
        ({"initial_price": Decimal("NaN")}, "initial_price"),
        ({"top_qty": Decimal(-1)}, "top_qty"),
        ({"volatility": Decimal("-0.01")}, "volatility"),
        ({"drift": Decimal("Infinity")}, "drift"),
        ({"spread_ticks": 0}, "spread_ticks"),
        ({"depth_levels": 0}, "depth_levels"),
        ({"level_spacing_ticks": 0}, "level_spacing_ticks"),
        ({"size_growth": Decimal("0.99")}, "size_growth"),
    ],
)
def test_params_refuse_bad_values(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        params(**overrides)
    assert info.value.extra == {"field": field}


def test_zero_volatility_is_allowed() -> None:
    assert params(volatility=Decimal(0)).volatility == 0


def test_entry_refuses_params_off_the_instrument_grids() -> None:
    inst = FX.get("EUR/USD").instrument
    with pytest.raises(InvalidInput, match="off the tick grid"):
        SimInstrument(instrument=inst, params=params(initial_price=Decimal("1.000005")))
    with pytest.raises(InvalidInput, match="top_qty"):
        SimInstrument(instrument=inst, params=params(top_qty=Decimal("0.005")))


def test_set_refuses_duplicates_and_mixed_classes() -> None:
    eur = FX.get("EUR/USD")
    with pytest.raises(InvalidInput, match="repeats"):
        InstrumentSet(name="x", asset_class=AssetClass.FX, instruments=(eur, eur))
    with pytest.raises(InvalidInput, match="mixes"):
        InstrumentSet(name="x", asset_class=AssetClass.FX, instruments=(eur, EQUITIES.get("AAPL")))


def test_leverage_table() -> None:
    assert dict(LEVERAGE) == {AssetClass.FX: 30, AssetClass.EQUITY: 5, AssetClass.CRYPTO: 2}
    with pytest.raises(TypeError):
        LEVERAGE[AssetClass.FX] = Decimal(100)  # type: ignore[index]


@pytest.mark.parametrize(
    ("symbol", "qty", "price", "liquidity", "expected"),
    [
        # FX: 35 per million of notional, in the quote currency.
        ("EUR/USD", "1", "1.10000", Liquidity.TAKER, "3.85"),
        ("EUR/USD", "0.01", "1.08500", Liquidity.MAKER, "0.037975"),
        ("USD/JPY", "2", "150.000", Liquidity.TAKER, "1050"),
        # Equities: half a cent a share, at least a dollar.
        ("AAPL", "100", "190.00", Liquidity.TAKER, "1.00"),
        ("AAPL", "1000", "190.00", Liquidity.TAKER, "5.000"),
        ("AAPL", "201", "190.00", Liquidity.MAKER, "1.005"),
        # Crypto: 2 bps maker, 5 bps taker.
        ("BTC/USDT", "0.5", "65000.0", Liquidity.TAKER, "16.25"),
        ("BTC/USDT", "0.5", "65000.0", Liquidity.MAKER, "6.5"),
        ("ETH/USDT", "0.00001", "3200.00", Liquidity.TAKER, "0.000016"),
    ],
)
def test_default_commissions(symbol: str, qty: str, price: str, liquidity: Liquidity, expected: str) -> None:
    inst = next(e.instrument for e in ALL if e.symbol == symbol)
    fee = commission(COMMISSIONS[inst.asset_class], inst, Decimal(qty), Decimal(price), liquidity)
    assert fee == Decimal(expected)


def test_maker_rebate_is_a_negative_fee() -> None:
    inst = CRYPTO.get("BTC/USDT").instrument
    rebate = Bps(maker_bps=Decimal(-1), taker_bps=Decimal(5))
    assert commission(rebate, inst, Decimal("0.5"), Decimal("65000.0"), Liquidity.MAKER) == Decimal("-3.25")


def test_schedules_load_from_tagged_json() -> None:
    raw = (
        b'[{"type":"per_million","rate":"25"},{"type":"per_share","per_share":"0.01"},'
        b'{"type":"bps","maker_bps":"0","taker_bps":"7.5"}]'
    )
    loaded = msgspec.json.decode(raw, type=list[CommissionSchedule])
    assert loaded == [
        PerMillion(rate=Decimal(25)),
        PerShare(per_share=Decimal("0.01")),
        Bps(maker_bps=Decimal(0), taker_bps=Decimal("7.5")),
    ]


@given(
    st.sampled_from(ALL),
    st.integers(1, 10**7),
    st.integers(1, 10**9),
    st.sampled_from(list(Liquidity)),
)
def test_commission_is_exact_and_proportional(entry: SimInstrument, steps: int, ticks: int, liq: Liquidity) -> None:
    inst = entry.instrument
    qty, price = inst.qty_step * steps, inst.tick_size * ticks
    schedule = COMMISSIONS[inst.asset_class]
    fee = commission(schedule, inst, qty, price, liq)  # would raise Inexact if it had to round
    notional = EXACT.multiply(EXACT.multiply(qty, price), inst.contract_size)
    match schedule:
        case PerShare(per_share=per_share, minimum=minimum):
            assert fee == max(EXACT.multiply(qty, per_share), minimum)
        case PerMillion(rate=rate):
            assert EXACT.multiply(fee, Decimal(10**6)) == EXACT.multiply(notional, rate)
        case Bps(maker_bps=maker, taker_bps=taker):
            bps = maker if liq is Liquidity.MAKER else taker
            assert EXACT.multiply(fee, Decimal(10**4)) == EXACT.multiply(notional, bps)
