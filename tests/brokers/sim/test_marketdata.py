"""Sim market data: GBM determinism and statistics, quotes on the grid, the liquidity ladder, replay, rates."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, localcontext
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from brokerlink.brokers.sim.instruments import (
    CRYPTO,
    EQUITIES,
    FX,
    INSTRUMENT_SETS,
    InstrumentSet,
    SimInstrument,
    SimParams,
)
from brokerlink.brokers.sim.marketdata import (
    GBM_CONTEXT,
    LadderLevel,
    MarketDataGenerator,
    MidRates,
    NormalSource,
    ReplayFeed,
    TickFileError,
    liquidity_ladder,
    load_ticks,
    parse_ticks,
    quote_prices,
    year_fraction,
)
from brokerlink.domain.enums import Side
from brokerlink.domain.models import Quote
from brokerlink.kit.clock import ManualClock
from brokerlink.kit.errors import InvalidInput, NotFound, Unavailable
from brokerlink.kit.money import is_multiple_of

DATA = Path(__file__).parent / "data"
ALL = [entry for s in INSTRUMENT_SETS.values() for entry in s.instruments]
EURUSD, USDJPY, AAPL, BTC = FX.get("EUR/USD"), FX.get("USD/JPY"), EQUITIES.get("AAPL"), CRYPTO.get("BTC/USDT")
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
WIDE = Context(prec=50)


def custom(price: str, *, drift: str = "0", vol: str = "0.2", tick: str = "0.0001", spread: int = 2) -> SimInstrument:
    """An equity-like instrument with a fine tick, so rounding to the grid does not blur statistics."""
    return SimInstrument(
        instrument=replace(AAPL.instrument, symbol="TEST", venue_symbol="TEST", tick_size=Decimal(tick)),
        params=SimParams(
            initial_price=Decimal(price),
            drift=Decimal(drift),
            volatility=Decimal(vol),
            spread_ticks=spread,
            top_qty=Decimal(100),
        ),
    )


def path(seed: int, steps: int, instruments: list[SimInstrument] | None = None) -> list[Quote]:
    clock = ManualClock(T0)
    gen = MarketDataGenerator(instruments or list(FX.instruments), seed=seed, clock=clock)
    out: list[Quote] = []
    for _ in range(steps):
        clock.advance(timedelta(seconds=1))
        out.extend(gen.step(timedelta(seconds=1)))
    return out


# --- GBM ------------------------------------------------------------------------------------------


def test_same_seed_same_path_and_different_seeds_differ() -> None:
    assert path(7, 30) == path(7, 30)
    assert [q.bid for q in path(7, 30)] != [q.bid for q in path(8, 30)]


def test_golden_path_pins_the_arithmetic() -> None:
    # Platform-independent by construction (Decimal ln/sqrt/exp, random() only): these digits must never move.
    gen = MarketDataGenerator(FX.instruments, seed=42, clock=ManualClock(T0))
    for _ in range(100):
        quotes = gen.step(timedelta(minutes=1))
    assert gen.mid("EUR/USD") == Decimal("1.084005320771965650329316824993825")
    assert (quotes[0].bid, quotes[0].ask) == (Decimal("1.08397"), Decimal("1.08405"))
    assert (quotes[2].symbol, quotes[2].bid, quotes[2].ask) == ("USD/JPY", Decimal("150.021"), Decimal("150.031"))
    normals = NormalSource(random.Random(7))
    assert [normals.draw() for _ in range(2)] == [
        Decimal("-0.4465794700611202780852360730683534"),
        Decimal("-0.8850884827279728837508262907506818"),
    ]


def test_a_symbols_path_does_not_depend_on_the_rest_of_the_set() -> None:
    alone = path(3, 20, [EURUSD])
    in_set = [q for q in path(3, 20) if q.symbol == "EUR/USD"]
    assert alone == in_set


@settings(max_examples=25)
@given(st.integers(0, 2**32), st.sampled_from(list(INSTRUMENT_SETS.values())), st.integers(1, 3600))
def test_quotes_on_the_tick_grid_and_never_crossed(seed: int, iset: InstrumentSet, seconds: int) -> None:
    entries = list(iset.instruments)
    clock = ManualClock(T0)
    gen = MarketDataGenerator(entries, seed=seed, clock=clock)
    for _ in range(20):
        clock.advance(timedelta(seconds=seconds))
        quotes = gen.step(timedelta(seconds=seconds))
        assert [q.symbol for q in quotes] == [e.symbol for e in entries]
        for entry, q in zip(entries, quotes, strict=True):
            tick = entry.instrument.tick_size
            assert is_multiple_of(q.bid, tick)
            assert is_multiple_of(q.ask, tick)
            assert 0 < q.bid < q.ask
            assert q.ask - q.bid == entry.params.spread_ticks * tick
            assert q.bid_size >= entry.instrument.min_qty
            assert q.ts == clock.now()


def test_normal_draws_have_mean_zero_and_unit_variance() -> None:
    normals = NormalSource(random.Random(2026))
    draws = [normals.draw() for _ in range(4000)]
    with localcontext(WIDE):
        mean = sum(draws, Decimal(0)) / len(draws)
        var = sum(((d - mean) ** 2 for d in draws), Decimal(0)) / (len(draws) - 1)
    # Standard errors: 0.016 for the mean, 0.022 for the variance; bounds are 5+ of them.
    assert abs(mean) < Decimal("0.08")
    assert abs(var - 1) < Decimal("0.12")


@pytest.mark.parametrize(
    ("seed", "mu", "sigma", "mu_bound"),
    [
        # mu_hat's standard error is sigma / sqrt(T) over T = 3000 days = 8.2 years: 0.017 and 0.14; bounds ~5 of them.
        (1, "0.5", "0.05", "0.09"),
        (2, "0.0", "0.4", "0.7"),
        (3, "-0.3", "0.2", "0.35"),
    ],
)
def test_log_returns_match_drift_and_volatility(seed: int, mu: str, sigma: str, mu_bound: str) -> None:
    dt, steps = timedelta(days=1), 3000
    gen = MarketDataGenerator([custom("100.0000", drift=mu, vol=sigma)], seed=seed, clock=ManualClock(T0))
    mids = [gen.mid("TEST")]
    for _ in range(steps):
        gen.step(dt)
        mids.append(gen.mid("TEST"))
    t = year_fraction(dt)
    with localcontext(WIDE):
        rets = [(b / a).ln() for a, b in itertools.pairwise(mids)]
        mean = sum(rets, Decimal(0)) / steps
        std = (sum(((r - mean) ** 2 for r in rets), Decimal(0)) / (steps - 1)).sqrt()
        sigma_hat = std / t.sqrt()
        mu_hat = mean / t + sigma_hat**2 / 2
    # sigma_hat's relative standard error is 1 / sqrt(2 * 3000) = 1.3%: 8% is six of them.
    assert abs(sigma_hat / Decimal(sigma) - 1) < Decimal("0.08")
    assert abs(mu_hat - Decimal(mu)) < Decimal(mu_bound)


def test_zero_volatility_compounds_the_drift_exactly() -> None:
    gen = MarketDataGenerator([custom("100.0000", drift="0.1", vol="0")], seed=0, clock=ManualClock(T0))
    for _ in range(365):
        gen.step(timedelta(days=1))
    expected = GBM_CONTEXT.multiply(Decimal(100), Decimal("0.1").exp(GBM_CONTEXT))
    assert abs(gen.mid("TEST") - expected) < Decimal("1e-25")
    assert gen.quote("TEST").bid == Decimal("110.5170")  # e**0.1 * 100 = 110.51709..., minus one tick of spread


def test_year_fraction_is_act_365() -> None:
    assert year_fraction(timedelta(days=365)) == 1
    assert year_fraction(timedelta(days=73)) == Decimal("0.2")
    assert year_fraction(timedelta(microseconds=1)) == GBM_CONTEXT.divide(Decimal(1), Decimal(31_536_000_000_000))


def test_generator_refusals_and_manual_mid() -> None:
    gen = MarketDataGenerator([EURUSD], seed=1, clock=ManualClock(T0))
    with pytest.raises(InvalidInput):
        gen.step(timedelta(0))
    with pytest.raises(NotFound):
        gen.quote("GBP/USD")
    with pytest.raises(InvalidInput):
        gen.set_mid("EUR/USD", Decimal(0))
    with pytest.raises(InvalidInput):
        MarketDataGenerator([], seed=1, clock=ManualClock(T0))
    gen.set_mid("EUR/USD", Decimal("1.2"))
    q = gen.quote("EUR/USD")
    assert (q.bid, q.ask, q.bid_size, q.ask_size, q.ts) == (
        Decimal("1.19996"),
        Decimal("1.20004"),
        Decimal(2),
        Decimal(2),
        T0,
    )
    assert gen.instruments == [EURUSD]


@pytest.mark.parametrize(
    ("entry", "mid", "bid", "ask"),
    [
        (EURUSD, "1.08500", "1.08496", "1.08504"),  # 8 ticks, centred
        (AAPL, "190.005", "190.00", "190.02"),  # 189.995 is a tie: half-even goes to 190.00
        (custom("1.0000", spread=3), "1.0000", "0.9998", "1.0001"),  # odd spread: 1.5 ticks rounds to even
        (AAPL, "0.001", "0.01", "0.03"),  # near zero: the bid stays one tick above zero
    ],
)
def test_quote_prices(entry: SimInstrument, mid: str, bid: str, ask: str) -> None:
    assert quote_prices(entry, Decimal(mid)) == (Decimal(bid), Decimal(ask))


# --- liquidity ladder -----------------------------------------------------------------------------


def test_ladder_example() -> None:
    levels = liquidity_ladder(AAPL, Decimal("190.00"))
    assert levels[:3] == [
        LadderLevel(Side.BUY, Decimal("189.99"), Decimal(100)),
        LadderLevel(Side.BUY, Decimal("189.98"), Decimal(150)),
        LadderLevel(Side.BUY, Decimal("189.97"), Decimal(225)),
    ]
    asks = [lv for lv in levels if lv.side is Side.SELL]
    assert asks[:2] == [LadderLevel(Side.SELL, Decimal("190.01"), Decimal(100)), (Side.SELL, Decimal("190.02"), 150)]
    assert asks[-1] == (Side.SELL, Decimal("190.10"), Decimal(3844))  # 100 * 1.5**9 = 3844.3 rounded down
    assert len(levels) == 20


def test_ladder_respects_min_notional_and_max_qty() -> None:
    # BTC at 1.0 USDT: top_qty 0.5 would be 0.5 USDT, below the 5 USDT minimum; raised to 5 BTC at the bid.
    levels = liquidity_ladder(BTC, Decimal("1.0"))
    assert levels[0] == LadderLevel(Side.BUY, Decimal("0.9"), Decimal("5.55556"))
    # FX caps at max_qty 100 lots: 2 * 1.5**9 = 76.9, so a deeper ladder hits the cap.
    deep = replace(EURUSD, params=replace(EURUSD.params, depth_levels=15))
    assert max(lv.qty for lv in liquidity_ladder(deep, Decimal("1.085"))) == Decimal(100)


def test_ladder_drops_bids_at_or_below_zero() -> None:
    levels = liquidity_ladder(AAPL, Decimal("0.03"))
    bids = [lv.price for lv in levels if lv.side is Side.BUY]
    assert bids == [Decimal("0.02"), Decimal("0.01")]


@given(st.sampled_from(ALL), st.integers(1, 10**8))
def test_ladder_on_grid_monotone_and_uncrossed(entry: SimInstrument, mid_ticks: int) -> None:
    inst = entry.instrument
    mid = inst.tick_size * mid_ticks
    levels = liquidity_ladder(entry, mid)
    bids = [lv for lv in levels if lv.side is Side.BUY]
    asks = [lv for lv in levels if lv.side is Side.SELL]
    assert levels == bids + asks
    assert (bids[0].price, asks[0].price) == quote_prices(entry, mid)
    assert len(asks) == entry.params.depth_levels
    for side in (bids, asks):
        prices, sizes = [lv.price for lv in side], [lv.qty for lv in side]
        assert prices == sorted(prices, reverse=side is bids)
        assert len(set(prices)) == len(prices)
        assert sizes == sorted(sizes)
        for lv in side:
            assert lv.price > 0
            assert is_multiple_of(lv.price, inst.tick_size)
            assert is_multiple_of(lv.qty, inst.qty_step)
            assert lv.qty >= inst.min_qty
            assert inst.max_qty is None or lv.qty <= inst.max_qty
            assert inst.notional(lv.qty, lv.price) >= inst.min_notional
    assert bids[0].price < asks[0].price


# --- replay ---------------------------------------------------------------------------------------


def test_load_fixture_file() -> None:
    quotes = load_ticks(DATA / "fx_ticks.csv", FX)
    assert [(q.symbol, q.bid, q.ask, q.bid_size, q.ask_size, q.ts) for q in quotes] == [
        ("EUR/USD", Decimal("1.08500"), Decimal("1.08508"), Decimal("1.50"), Decimal("2.00"), T0),
        ("USD/JPY", Decimal("150.001"), Decimal("150.011"), Decimal(2), Decimal(2), T0 + timedelta(milliseconds=250)),
        ("EUR/USD", Decimal("1.08501"), Decimal("1.08509"), Decimal(3), Decimal("0.01"), T0 + timedelta(seconds=1)),
        ("GBP/USD", Decimal("1.27000"), Decimal("1.27010"), Decimal(1), Decimal(1), T0 + timedelta(seconds=1)),
        ("EUR/USD", Decimal("1.08490"), Decimal("1.08498"), Decimal(2), Decimal(2), T0 + timedelta(seconds=5)),
    ]


def test_epoch_millisecond_timestamps_and_optional_size_columns() -> None:
    ms = int((T0 - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1000 + 7
    quotes = parse_ticks(["symbol,ts,ask,bid", f"AAPL,{ms},190.02,190.00"], EQUITIES.instruments)
    assert quotes == [
        Quote(
            symbol="AAPL",
            bid=Decimal("190.00"),
            ask=Decimal("190.02"),
            bid_size=Decimal(100),
            ask_size=Decimal(100),
            ts=T0 + timedelta(milliseconds=7),
        )
    ]


GOOD = "2026-01-05T12:00:00Z,EUR/USD,1.08500,1.08508"
HEADER = "ts,symbol,bid,ask"


@pytest.mark.parametrize(
    ("lines", "line", "message"),
    [
        (["ts,symbol,bid"], 1, r"missing \['ask'\]"),
        (["ts,symbol,bid,ask,bidsize"], 1, r"unknown \['bidsize'\]"),
        (["ts,symbol,bid,ask,ask"], 1, "header"),
        ([], 1, "missing"),
        ([HEADER, GOOD, "2026-01-05T12:00:00Z,XAU/USD,1.0,1.1"], 3, "unknown symbol 'XAU/USD'"),
        ([HEADER, "2026-01-05T12:00:00Z,EUR/USD,1.08510,1.08500"], 2, "crossed quote"),
        ([HEADER, "2026-01-05T12:00:00Z,EUR/USD,1.08500,1.08500"], 2, "locked quote"),
        ([HEADER, "2026-01-05T12:00:00Z,EUR/USD,1.085001,1.08508"], 2, "not a positive multiple of the tick"),
        ([HEADER, "2026-01-05T12:00:00Z,EUR/USD,-1.08500,1.08508"], 2, "bid"),
        ([HEADER, "2026-01-05T12:00:00Z,EUR/USD,abc,1.08508"], 2, "not a decimal number"),
        ([HEADER, "2026-01-05T12:00:00Z,EUR/USD,NaN,1.08508"], 2, "not a finite number"),
        ([HEADER, "2026-01-05T12:00:00,EUR/USD,1.08500,1.08508"], 2, "no timezone"),
        ([HEADER, "yesterday,EUR/USD,1.08500,1.08508"], 2, "yesterday"),
        ([HEADER, GOOD, "2026-01-05T11:59:59Z,EUR/USD,1.08500,1.08508"], 3, "goes back"),
        ([HEADER, GOOD + ",1"], 2, "5 fields, header has 4"),
        ([HEADER + ",bid_size", GOOD + ",0.001"], 2, "bid_size 0.001 is not a positive multiple"),
        ([HEADER + ",ask_size", GOOD + ",0"], 2, "ask_size 0"),
    ],
)
def test_replay_refuses_bad_files(lines: list[str], line: int, message: str) -> None:
    with pytest.raises(TickFileError, match=message) as info:
        parse_ticks(lines, FX)
    assert info.value.extra == {"line": line}
    assert info.value.code == "invalid_tick_file"


def test_replay_feed_keeps_the_recorded_pace_on_the_venue_clock() -> None:
    quotes = load_ticks(DATA / "fx_ticks.csv", FX)
    clock = ManualClock(datetime(2030, 1, 1, tzinfo=UTC))
    feed = ReplayFeed(quotes, clock=clock)
    first = feed.step(timedelta(0))
    assert [q.symbol for q in first] == ["EUR/USD"]
    assert first[0].ts == clock.now()
    assert (first[0].bid, first[0].bid_size) == (Decimal("1.08500"), Decimal("1.50"))
    clock.advance(timedelta(seconds=1))
    assert [q.symbol for q in feed.step(timedelta(seconds=1))] == ["USD/JPY", "EUR/USD", "GBP/USD"]
    assert feed.step(timedelta(seconds=3)) == []
    before = feed.exhausted
    last = feed.step(timedelta(seconds=1))
    assert [(q.bid, q.ts) for q in last] == [(Decimal("1.08490"), clock.now())]
    assert (before, feed.exhausted) == (False, True)
    assert feed.step(timedelta(hours=1)) == []
    with pytest.raises(InvalidInput):
        feed.step(timedelta(seconds=-1))
    assert ReplayFeed([], clock=clock).exhausted


# --- rates ----------------------------------------------------------------------------------------


def quote(symbol: str, bid: str, ask: str) -> Quote:
    return Quote(symbol=symbol, bid=Decimal(bid), ask=Decimal(ask), bid_size=Decimal(1), ask_size=Decimal(1), ts=T0)


def test_mid_rates_direct_inverse_cross_and_fixed() -> None:
    rates = MidRates(entry.instrument for entry in FX.instruments)
    rates.update(quote("USD/JPY", "149.995", "150.005"))
    rates.update(quote("EUR/USD", "1.08000", "1.08010"))
    rates.update(quote("AAPL", "1", "2"))  # not an instrument it knows: ignored
    assert rates("USD", "JPY") == Decimal(150)
    assert rates("JPY", "USD") == Decimal("0.006666666666666666666666666667")  # 28 digits, half-even
    assert rates("EUR", "USD") == Decimal("1.08005")
    assert rates("EUR", "JPY") == Decimal("162.0075")  # via USD
    assert rates("USD", "USD") == 1
    with pytest.raises(Unavailable, match="USDT to USD"):
        rates("USDT", "USD")
    rates.set_rate("USDT", "USD", Decimal("0.9998"))
    assert rates("USDT", "USD") == Decimal("0.9998")
    with pytest.raises(InvalidInput):
        rates.set_rate("USDT", "USD", Decimal(0))
