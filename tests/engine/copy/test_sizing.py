"""Opening sizes: one hand-checked scenario per sizing mode, cap and minimum rule, then properties.

The properties hold for random settings and contexts: the size never exceeds any cap, is always
on the qty step, never rounds up unless forced (and then is exactly the venue's minimum), and
equals an independent model computed with exact fractions.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from math import ceil, floor
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from brokerlink.domain.enums import AssetClass
from brokerlink.domain.models import Instrument
from brokerlink.engine.copy import (
    CopySettings,
    OpenContext,
    OpenSize,
    SizingMode,
    Skip,
    SkipReason,
    minimum_qty,
    size_open,
    size_open_detail,
)
from brokerlink.kit.money import is_multiple_of

D = Decimal


def instrument(**overrides: Any) -> Instrument:
    fields: dict[str, Any] = {
        "symbol": "EUR/USD",
        "venue_symbol": "EURUSD.m",
        "asset_class": AssetClass.FX,
        "base": "EUR",
        "quote": "USD",
        "tick_size": D("0.00001"),
        "qty_step": D("0.01"),
        "min_qty": D("0.01"),
        "contract_size": D(100_000),
    }
    fields.update(overrides)
    return Instrument(**fields)


EURUSD = instrument()
AAPL = instrument(
    symbol="AAPL",
    venue_symbol="AAPL",
    asset_class=AssetClass.EQUITY,
    base="AAPL",
    quote="USD",
    tick_size=D("0.01"),
    qty_step=D(1),
    min_qty=D(1),
    contract_size=D(1),
)
BTC = instrument(
    symbol="BTC/USDT",
    venue_symbol="BTCUSDT",
    asset_class=AssetClass.CRYPTO,
    base="BTC",
    quote="USDT",
    tick_size=D("0.01"),
    qty_step=D("0.0001"),
    min_qty=D("0.0001"),
    min_notional=D(10),
    contract_size=D(1),
)


def ctx(inst: Instrument = EURUSD, **overrides: Any) -> OpenContext:
    fields: dict[str, Any] = {"instrument": inst, "provider_qty": D(1), "provider_price": D("1.08500")}
    fields.update(overrides)
    return OpenContext(**fields)


def skip_reason(result: Decimal | Skip | OpenSize) -> SkipReason:
    assert isinstance(result, Skip), result
    assert result.detail
    return result.reason


# ---- one scenario per sizing mode -------------------------------------------------------------


def test_fixed_qty_rounds_down_to_the_step() -> None:
    s = CopySettings(sizing=SizingMode.FIXED_QTY, fixed_qty=D("0.377"))
    # 0.377 lots at a step of 0.01 -> 0.37, whatever the provider traded.
    assert size_open(s, ctx(provider_qty=D(50))) == D("0.37")


def test_multiplier_scales_the_provider_quantity() -> None:
    s = CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=D("0.5"))
    # 3 lots x 0.5 = 1.5 lots, shown at the step's two decimals.
    assert str(size_open(s, ctx(provider_qty=D(3)))) == "1.50"
    s = CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=D("0.3"))
    # 0.05 x 0.3 = 0.015 -> 0.01 (down, never up to 0.02).
    assert size_open(s, ctx(provider_qty=D("0.05"))) == D("0.01")


def test_equity_ratio_scales_by_equity_or_allocation() -> None:
    base = {"provider_qty": D(2), "provider_equity": D(100_000), "follower_equity": D(7_500)}
    # 2 lots x 7,500 / 100,000 = 0.15 lots.
    assert size_open(CopySettings(), ctx(**base)) == D("0.15")
    # With 5,000 allocated: 2 x 5,000 / 100,000 = 0.10.
    assert size_open(CopySettings(allocated_amount=D(5_000)), ctx(**base)) == D("0.10")
    # 10,000 allocated but only 7,500 of equity: the equity is the base, 0.15 again.
    assert size_open(CopySettings(allocated_amount=D(10_000)), ctx(**base)) == D("0.15")
    # Follower in EUR (9,000), provider in USD (100,000), 0.9 EUR per USD: the provider has
    # 90,000 EUR, so 2 x 9,000 / 90,000 = 0.20.
    assert size_open(CopySettings(), ctx(**base | {"follower_equity": D(9_000), "fx_rate": D("0.9")})) == D("0.20")


def test_equity_ratio_needs_both_equities() -> None:
    assert skip_reason(size_open(CopySettings(), ctx(follower_equity=D(1)))) is SkipReason.EQUITY_UNKNOWN
    no_money = ctx(provider_equity=D(100), follower_equity=D(-5))
    assert skip_reason(size_open(CopySettings(), no_money)) is SkipReason.INSUFFICIENT_EQUITY


def test_fixed_notional_divides_by_price_and_contract_size() -> None:
    s = CopySettings(sizing=SizingMode.FIXED_NOTIONAL, fixed_notional=D(10_000))
    # 10,000 / (1.085 x 100,000 per lot) = 0.0921... -> 0.09 lots.
    assert size_open(s, ctx()) == D("0.09")
    # The follower's own quote is the price when known: 10,000 / (1.0000 x 100,000) = 0.10.
    assert size_open(s, ctx(follower_price=D("1.00000"))) == D("0.10")
    # Account in EUR at 0.9 EUR per USD: one lot is worth 108,500 x 0.9 = 97,650 EUR;
    # 10,000 / 97,650 = 0.1024... -> 0.10.
    assert size_open(s, ctx(quote_rate=D("0.9"))) == D("0.10")
    # 1,000 USD of AAPL at 187.50 = 5.33 shares -> 5.
    s = CopySettings(sizing=SizingMode.FIXED_NOTIONAL, fixed_notional=D(1_000))
    assert size_open(s, ctx(AAPL, provider_price=D("187.50"))) == D(5)


def test_risk_percent_sizes_from_the_providers_stop_loss() -> None:
    s = CopySettings(sizing=SizingMode.RISK_PERCENT, risk_percent=D(1))
    # 1% of 20,000 = 200 at risk; entry 1.0850, stop 1.0800: 0.0050 x 100,000 = 500 per lot;
    # 200 / 500 = 0.40 lots.
    c = ctx(follower_equity=D(20_000), provider_stop_loss=D("1.08000"))
    assert size_open(s, c) == D("0.40")
    # A short with its stop above: the distance is the same, so the size is too.
    assert size_open(s, ctx(follower_equity=D(20_000), provider_stop_loss=D("1.09000"))) == D("0.40")
    assert skip_reason(size_open(s, ctx(follower_equity=D(20_000)))) is SkipReason.NO_STOP_LOSS
    at_entry = ctx(follower_equity=D(20_000), provider_stop_loss=D("1.08500"))
    assert skip_reason(size_open(s, at_entry)) is SkipReason.NO_STOP_LOSS
    assert skip_reason(size_open(s, ctx(provider_stop_loss=D(1)))) is SkipReason.EQUITY_UNKNOWN


# ---- caps clamp, and skip only when the clamp leaves less than the minimum --------------------


def test_max_qty_per_order_clamps_then_rounds_down() -> None:
    s = CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=D(2), max_qty_per_order=D("2.555"))
    # 3 x 2 = 6 lots, clamped to 2.555, rounded down to 2.55.
    assert size_open_detail(s, ctx(provider_qty=D(3))) == OpenSize(
        qty=D("2.55"), raw_qty=D(6), capped_by=SkipReason.MAX_QTY_PER_ORDER
    )


def test_the_venues_max_qty_clamps_like_a_cap() -> None:
    s = CopySettings(sizing=SizingMode.MULTIPLIER)
    sized = size_open_detail(s, ctx(instrument(max_qty=D(50)), provider_qty=D(80)))
    assert isinstance(sized, OpenSize)
    assert (sized.qty, sized.capped_by) == (D(50), SkipReason.VENUE_MAX_QTY)


def test_exposure_cap_leaves_room_for_what_is_already_held() -> None:
    s = CopySettings(sizing=SizingMode.MULTIPLIER, max_exposure_per_symbol=D(50_000))
    # 40,000 held, 10,000 of room at 200 a share = 50 shares of the 80 wanted.
    c = ctx(AAPL, provider_qty=D(80), provider_price=D(200), follower_symbol_exposure=D(40_000))
    assert size_open(s, c) == D(50)
    full = ctx(AAPL, provider_qty=D(80), provider_price=D(200), follower_symbol_exposure=D(50_000))
    assert skip_reason(size_open(s, full)) is SkipReason.MAX_EXPOSURE


def test_leverage_cap_counts_gross_exposure_over_equity() -> None:
    s = CopySettings(sizing=SizingMode.MULTIPLIER, max_leverage=D(2))
    # 2 x 10,000 equity = 20,000 gross allowed; 15,000 held: 5,000 of room. One lot at 1.25 is
    # 125,000, so 5,000 / 125,000 = 0.04 lots.
    c = ctx(provider_price=D("1.25"), follower_equity=D(10_000), follower_gross_exposure=D(15_000))
    assert size_open(s, c) == D("0.04")
    at_limit = ctx(follower_equity=D(10_000), follower_gross_exposure=D(20_000))
    assert skip_reason(size_open(s, at_limit)) is SkipReason.MAX_LEVERAGE
    assert skip_reason(size_open(s, ctx())) is SkipReason.EQUITY_UNKNOWN


def test_the_tightest_cap_wins_and_is_named() -> None:
    s = CopySettings(
        sizing=SizingMode.MULTIPLIER, max_qty_per_order=D(60), max_exposure_per_symbol=D(5_000), max_leverage=D(1)
    )
    # Per order 60; exposure 5,000 / 100 = 50; leverage 1 x 4,000 / 100 = 40 -> 40, by leverage.
    sized = size_open_detail(s, ctx(AAPL, provider_qty=D(100), provider_price=D(100), follower_equity=D(4_000)))
    assert isinstance(sized, OpenSize)
    assert (sized.qty, sized.capped_by) == (D(40), SkipReason.MAX_LEVERAGE)


def test_a_cap_below_the_minimum_skips_naming_the_cap() -> None:
    s = CopySettings(sizing=SizingMode.MULTIPLIER, max_qty_per_order=D("0.05"))
    # 1 lot clamped to 0.05, below the venue's 0.10 minimum.
    assert skip_reason(size_open(s, ctx(instrument(min_qty=D("0.1"))))) is SkipReason.MAX_QTY_PER_ORDER


def test_max_open_positions_skips_new_positions_but_not_additions() -> None:
    s = CopySettings(sizing=SizingMode.MULTIPLIER, max_open_positions=3)
    assert skip_reason(size_open(s, ctx(follower_open_positions=3))) is SkipReason.MAX_OPEN_POSITIONS
    assert size_open(s, ctx(follower_open_positions=3, adds_to_open_position=True)) == D(1)
    assert size_open(s, ctx(follower_open_positions=2)) == D(1)


# ---- minimums: skip, or force the minimum within the caps -------------------------------------


def test_below_the_minimum_quantity_skips_with_the_reason() -> None:
    s = CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=D("0.004"))
    # 1 x 0.004 = 0.004 lots -> 0.00 at a step of 0.01.
    assert skip_reason(size_open(s, ctx())) is SkipReason.ZERO_AFTER_ROUNDING
    # 2 x 0.004 = 0.008 lots -> 0.008 at a step of 0.001, below the 0.01 minimum.
    c = ctx(instrument(qty_step=D("0.001")), provider_qty=D(2))
    assert skip_reason(size_open(s, c)) is SkipReason.BELOW_MIN_QTY


def test_below_the_minimum_notional_skips_or_forces_the_smallest_valid_size() -> None:
    s = CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=D("0.001"))
    # 0.15 BTC x 0.001 = 0.00015 -> 0.0001 BTC, worth 5 USDT at 50,000: below the 10 USDT minimum.
    c = ctx(BTC, provider_qty=D("0.15"), provider_price=D(50_000))
    assert skip_reason(size_open(s, c)) is SkipReason.BELOW_MIN_NOTIONAL
    forced = CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=D("0.001"), force_min_qty=True)
    # 10 / 50,000 = 0.0002 BTC, the smallest size worth 10 USDT.
    assert size_open_detail(forced, c) == OpenSize(qty=D("0.0002"), raw_qty=D("0.00015"), forced_min=True)
    # At 30,000: 10 / 30,000 = 0.000333... -> up to 0.0004 (0.0003 would be worth only 9).
    assert size_open(forced, ctx(BTC, provider_qty=D("0.15"), provider_price=D(30_000))) == D("0.0004")
    assert minimum_qty(BTC, D(30_000)) == D("0.0004")


def test_forcing_the_minimum_respects_the_caps() -> None:
    forced = CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=D("0.004"), force_min_qty=True)
    lot = instrument(min_qty=D("0.1"))
    # 0.004 lots, forced up to the 0.1 minimum.
    assert size_open(forced, ctx(lot)) == D("0.10")
    capped = CopySettings(
        sizing=SizingMode.MULTIPLIER, multiplier=D("0.004"), force_min_qty=True, max_qty_per_order=D("0.05")
    )
    # The 0.1 minimum is above the 0.05 cap: skip, naming the cap.
    assert skip_reason(size_open(capped, ctx(lot))) is SkipReason.MAX_QTY_PER_ORDER


def test_no_price_skips() -> None:
    s = CopySettings(sizing=SizingMode.MULTIPLIER)
    assert skip_reason(size_open(s, ctx(provider_price=D(0)))) is SkipReason.NO_PRICE
    assert skip_reason(size_open(s, ctx(follower_price=D(0)))) is SkipReason.NO_PRICE


def test_a_context_refuses_impossible_inputs() -> None:
    with pytest.raises(ValueError, match="provider_qty"):
        ctx(provider_qty=D(0))
    with pytest.raises(ValueError, match="follower_symbol_exposure"):
        ctx(follower_symbol_exposure=D(-1))
    with pytest.raises(ValueError, match="follower_equity"):
        ctx(follower_equity=D("NaN"))
    with pytest.raises(ValueError, match="provider_price"):
        ctx(provider_price=1.085)


def test_a_long_quotient_never_rounds_up_across_a_step() -> None:
    # 0.999...9 (40 nines) lots would be 1.000 in a 28-digit context, then "rounded down" to 1.
    s = CopySettings(sizing=SizingMode.FIXED_NOTIONAL, fixed_notional=D("0." + "9" * 40))
    c = ctx(instrument(contract_size=D(1), min_qty=D("0.001"), qty_step=D("0.001")), provider_price=D(1))
    assert size_open(s, c) == D("0.999")


# ---- properties --------------------------------------------------------------------------------

STEPS = [D("0.0001"), D("0.001"), D("0.01"), D("0.1"), D(1), D(5), D(100)]


def _dec(low: str, high: str, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=D(low), max_value=D(high), places=places)


@st.composite
def instruments(draw: st.DrawFn) -> Instrument:
    step = draw(st.sampled_from(STEPS))
    min_steps = draw(st.integers(0, 20))
    max_qty = draw(st.none() | st.integers(1, 10_000).map(lambda n: step * n))
    return instrument(
        qty_step=step,
        min_qty=step * min_steps,
        max_qty=max_qty,
        min_notional=draw(st.sampled_from([D(0), D(1), D(5), D(10), D(100)])),
        contract_size=draw(st.sampled_from([D(1), D(100), D(100_000), D("0.01")])),
    )


@st.composite
def settings(draw: st.DrawFn) -> CopySettings:
    mode = draw(st.sampled_from(list(SizingMode)))
    fields: dict[str, Any] = {"sizing": mode}
    if mode is SizingMode.FIXED_QTY:
        fields["fixed_qty"] = draw(_dec("0.0001", "500", 4))
    elif mode is SizingMode.MULTIPLIER:
        fields["multiplier"] = draw(_dec("0.001", "20", 3))
    elif mode is SizingMode.EQUITY_RATIO:
        fields["allocated_amount"] = draw(st.none() | _dec("1", "1000000", 2))
    elif mode is SizingMode.FIXED_NOTIONAL:
        fields["fixed_notional"] = draw(_dec("1", "1000000", 2))
    else:
        fields["risk_percent"] = draw(_dec("0.01", "100", 2))
    return CopySettings(
        **fields,
        force_min_qty=draw(st.booleans()),
        max_qty_per_order=draw(st.none() | _dec("0.0001", "1000", 4)),
        max_open_positions=draw(st.none() | st.integers(1, 10)),
        max_exposure_per_symbol=draw(st.none() | _dec("1", "10000000", 2)),
        max_leverage=draw(st.none() | _dec("0.1", "100", 1)),
    )


@st.composite
def contexts(draw: st.DrawFn) -> OpenContext:
    price = draw(_dec("0.0001", "100000", 4))
    equity = draw(_dec("1", "10000000", 2))
    return OpenContext(
        instrument=draw(instruments()),
        provider_qty=draw(_dec("0.0001", "1000", 4)),
        provider_price=price,
        follower_price=draw(st.none() | _dec("0.0001", "100000", 4)),
        provider_equity=draw(_dec("1", "100000000", 2)),
        follower_equity=equity,
        fx_rate=draw(_dec("0.01", "200", 4)),
        quote_rate=draw(_dec("0.005", "200", 4)),
        provider_stop_loss=draw(st.none() | _dec("0.0001", "100000", 4)),
        follower_open_positions=draw(st.integers(0, 12)),
        adds_to_open_position=draw(st.booleans()),
        follower_symbol_exposure=draw(_dec("0", "10000000", 2)),
        follower_gross_exposure=draw(_dec("0", "100000000", 2)),
    )


F = Fraction


def _floor_step(x: Fraction, step: Decimal) -> Fraction:
    return floor(x / F(step)) * F(step)


def _ceil_step(x: Fraction, step: Decimal) -> Fraction:
    return ceil(x / F(step)) * F(step)


def _model_raw(s: CopySettings, c: OpenContext) -> Fraction | None:
    """The sizing formulas again, in exact fractions; None where the copy must skip before sizing."""
    price, cs = F(c.price), F(c.instrument.contract_size)
    if s.sizing is SizingMode.FIXED_QTY:
        return F(s.fixed_qty or 0)
    if s.sizing is SizingMode.MULTIPLIER:
        return F(s.multiplier) * F(c.provider_qty)
    if s.sizing is SizingMode.FIXED_NOTIONAL:
        return F(s.fixed_notional or 0) / (price * cs * F(c.quote_rate))
    if s.sizing is SizingMode.EQUITY_RATIO:
        assert c.follower_equity is not None
        assert c.provider_equity is not None
        base = F(c.follower_equity)
        if s.allocated_amount is not None:
            base = min(base, F(s.allocated_amount))
        return F(c.provider_qty) * base / (F(c.provider_equity) * F(c.fx_rate))
    if c.provider_stop_loss is None or c.provider_stop_loss == c.provider_price:
        return None
    assert c.follower_equity is not None
    assert s.risk_percent is not None
    distance = abs(F(c.provider_price) - F(c.provider_stop_loss))
    return F(c.follower_equity) * F(s.risk_percent) / 100 / (distance * cs * F(c.quote_rate))


def _model_caps(s: CopySettings, c: OpenContext) -> list[tuple[Fraction, SkipReason]]:
    unit = F(c.price) * F(c.instrument.contract_size) * F(c.quote_rate)
    caps: list[tuple[Fraction, SkipReason]] = []
    if s.max_qty_per_order is not None:
        caps.append((F(s.max_qty_per_order), SkipReason.MAX_QTY_PER_ORDER))
    if c.instrument.max_qty is not None:
        caps.append((F(c.instrument.max_qty), SkipReason.VENUE_MAX_QTY))
    if s.max_exposure_per_symbol is not None:
        caps.append(((F(s.max_exposure_per_symbol) - F(c.follower_symbol_exposure)) / unit, SkipReason.MAX_EXPOSURE))
    if s.max_leverage is not None:
        assert c.follower_equity is not None
        room = F(s.max_leverage) * F(c.follower_equity) - F(c.follower_gross_exposure)
        caps.append((room / unit, SkipReason.MAX_LEVERAGE))
    return caps


def _model(s: CopySettings, c: OpenContext) -> Fraction | SkipReason:  # noqa: PLR0911 - one return per rule
    """What size_open must answer, from the rules in its docstring, in exact arithmetic."""
    inst = c.instrument
    most = s.max_open_positions
    if most is not None and not c.adds_to_open_position and c.follower_open_positions >= most:
        return SkipReason.MAX_OPEN_POSITIONS
    raw = _model_raw(s, c)
    if raw is None:
        return SkipReason.NO_STOP_LOSS
    caps = _model_caps(s, c)
    full = [reason for bound, reason in caps if bound <= 0]
    if full:
        return full[0]
    tightest = min(caps, key=lambda cap: cap[0]) if caps else None
    unit_notional = F(c.price) * F(inst.contract_size)
    minimum = _ceil_step(max(F(inst.min_qty), F(inst.qty_step), F(inst.min_notional) / unit_notional), inst.qty_step)
    rounded = _floor_step(raw, inst.qty_step)
    if rounded >= minimum:
        if tightest is None or rounded <= tightest[0]:
            return rounded
        clamped = _floor_step(tightest[0], inst.qty_step)
        return clamped if clamped >= minimum else tightest[1]
    if s.force_min_qty:
        return tightest[1] if tightest is not None and minimum > tightest[0] else minimum
    if rounded == 0:
        return SkipReason.ZERO_AFTER_ROUNDING
    return SkipReason.BELOW_MIN_QTY if rounded < F(inst.min_qty) else SkipReason.BELOW_MIN_NOTIONAL


@hypothesis_settings(max_examples=400)
@given(settings(), contexts())
def test_open_size_matches_the_exact_model(s: CopySettings, c: OpenContext) -> None:
    result = size_open(s, c)
    expected = _model(s, c)
    if isinstance(expected, SkipReason):
        assert skip_reason(result) is expected
    else:
        assert isinstance(result, Decimal), result
        assert F(result) == expected


@hypothesis_settings(max_examples=400)
@given(settings(), contexts())
def test_open_size_never_breaks_a_cap_a_minimum_or_the_step(s: CopySettings, c: OpenContext) -> None:
    sized = size_open_detail(s, c)
    if isinstance(sized, Skip):
        return
    inst, q = c.instrument, sized.qty
    notional = F(q) * F(c.price) * F(inst.contract_size) * F(c.quote_rate)
    assert q > 0
    assert is_multiple_of(q, inst.qty_step)
    assert q >= inst.min_qty
    assert F(inst.notional(q, c.price)) >= F(inst.min_notional)
    if s.max_qty_per_order is not None:
        assert q <= s.max_qty_per_order
    if inst.max_qty is not None:
        assert q <= inst.max_qty
    if s.max_exposure_per_symbol is not None:
        assert F(c.follower_symbol_exposure) + notional <= F(s.max_exposure_per_symbol)
    if s.max_leverage is not None:
        assert c.follower_equity is not None
        assert F(c.follower_gross_exposure) + notional <= F(s.max_leverage) * F(c.follower_equity)
    if s.max_open_positions is not None and not c.adds_to_open_position:
        assert c.follower_open_positions < s.max_open_positions
    # Never rounded up, unless forced to the minimum, which only happens when the raw size is below it.
    if sized.forced_min:
        assert s.force_min_qty
        assert q == minimum_qty(inst, c.price)
        assert sized.raw_qty < q
    else:
        assert q <= sized.raw_qty
