"""Copy settings: defaults, every validation error names its field, and an exact JSON round trip."""

from __future__ import annotations

from datetime import UTC, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerlink.engine.copy import (
    CopySettings,
    Direction,
    DrawdownPeriod,
    OnSubscribe,
    SizingMode,
    SlippageAction,
    StallAction,
    TradingWindow,
    Weekday,
    decode_settings,
    encode_settings,
)
from brokerlink.kit.errors import InvalidInput


def test_defaults_copy_in_proportion_to_equity_with_no_caps() -> None:
    s = CopySettings()
    assert s.sizing is SizingMode.EQUITY_RATIO
    assert s.multiplier == 1
    assert s.direction is Direction.SAME
    assert s.on_subscribe is OnSubscribe.SKIP
    assert s.copy_sl_tp is True
    assert s.force_min_qty is False
    assert s.catch_up is False
    assert (s.max_qty_per_order, s.max_open_positions, s.max_exposure_per_symbol, s.max_leverage) == (None,) * 4
    assert (s.allow_symbols, s.deny_symbols, dict(s.symbol_map), s.trading_hours) == (None, (), {}, ())


D = Decimal


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param({"sizing": SizingMode.FIXED_QTY}, "fixed_qty", id="fixed_qty mode without fixed_qty"),
        pytest.param({"sizing": SizingMode.FIXED_NOTIONAL}, "fixed_notional", id="fixed_notional mode without it"),
        pytest.param({"sizing": SizingMode.RISK_PERCENT}, "risk_percent", id="risk mode without risk_percent"),
        pytest.param({"fixed_qty": D(1)}, "fixed_qty", id="fixed_qty with another mode"),
        pytest.param({"fixed_notional": D(100)}, "fixed_notional", id="fixed_notional with another mode"),
        pytest.param({"risk_percent": D(1)}, "risk_percent", id="risk_percent with another mode"),
        pytest.param({"sizing": SizingMode.MULTIPLIER, "allocated_amount": D(5)}, "allocated_amount", id="alloc"),
        pytest.param({"multiplier": D(2)}, "multiplier", id="multiplier with another mode"),
        pytest.param({"sizing": SizingMode.MULTIPLIER, "multiplier": D(0)}, "multiplier", id="zero multiplier"),
        pytest.param({"sizing": SizingMode.FIXED_QTY, "fixed_qty": D(-1)}, "fixed_qty", id="negative fixed_qty"),
        pytest.param({"allocated_amount": D(0)}, "allocated_amount", id="zero allocation"),
        pytest.param({"sizing": SizingMode.RISK_PERCENT, "risk_percent": D(0)}, "risk_percent", id="risk 0"),
        pytest.param({"sizing": SizingMode.RISK_PERCENT, "risk_percent": D(101)}, "risk_percent", id="risk 101"),
        pytest.param({"max_qty_per_order": D(0)}, "max_qty_per_order", id="zero max qty"),
        pytest.param({"max_open_positions": 0}, "max_open_positions", id="zero max positions"),
        pytest.param({"max_exposure_per_symbol": D(-5)}, "max_exposure_per_symbol", id="negative exposure cap"),
        pytest.param({"max_leverage": D(0)}, "max_leverage", id="zero leverage"),
        pytest.param({"max_slippage_bps": D(-1)}, "max_slippage_bps", id="negative slippage"),
        pytest.param({"max_slippage_bps": D(10_000)}, "max_slippage_bps", id="slippage of 100%"),
        pytest.param({"slippage_action": SlippageAction.LIMIT}, "max_slippage_bps", id="limit without tolerance"),
        pytest.param({"copy_stop_loss_pct": D(0)}, "copy_stop_loss_pct", id="copy stop 0"),
        pytest.param({"copy_stop_loss_pct": D("100.01")}, "copy_stop_loss_pct", id="copy stop over 100"),
        pytest.param({"max_drawdown_pct": D(-3)}, "max_drawdown_pct", id="negative drawdown"),
        pytest.param({"max_drawdown_pct": D("NaN")}, "max_drawdown_pct", id="NaN drawdown"),
        pytest.param({"max_leverage": D("Infinity")}, "max_leverage", id="infinite leverage"),
        pytest.param({"allow_symbols": ()}, "allow_symbols", id="empty allow list"),
        pytest.param({"allow_symbols": ("EURUSD",), "deny_symbols": ("eur/usd",)}, "deny_symbols", id="both"),
        pytest.param({"deny_symbols": ("///",)}, "deny_symbols", id="not a symbol"),
        pytest.param({"symbol_map": {"EUR/USD": ""}}, "symbol_map", id="empty map target"),
        pytest.param({"symbol_map": {"EUR/USD": "A", "eurusd": "B"}}, "symbol_map", id="mapped twice"),
    ],
)
def test_an_inconsistent_setting_names_its_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        CopySettings(**fields)
    assert caught.value.extra["field"] == field
    assert caught.value.detail.startswith(f"{field}: ")
    assert caught.value.status == 422


def test_a_float_is_refused_even_when_built_in_python() -> None:
    with pytest.raises(InvalidInput) as caught:
        CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=0.5)  # type: ignore[arg-type]
    assert caught.value.extra["field"] == "multiplier"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param({"weekdays": ()}, "trading_hours.weekdays", id="no days"),
        pytest.param({"weekdays": (Weekday.MON, Weekday.MON)}, "trading_hours.weekdays", id="a day twice"),
        pytest.param({"start": time(9, tzinfo=timezone(timedelta(hours=2)))}, "trading_hours.start", id="not UTC"),
        pytest.param({"start": time(9, tzinfo=UTC)}, None, id="UTC is fine"),
        pytest.param({"end": time(8)}, None, id="start == end is a whole day"),
    ],
)
def test_trading_window_checks(fields: dict[str, Any], field: str | None) -> None:
    base: dict[str, Any] = {"start": time(8), "end": time(17)} | fields
    if field is None:
        TradingWindow(**base)
        return
    with pytest.raises(InvalidInput) as caught:
        TradingWindow(**base)
    assert caught.value.extra["field"] == field


def test_decoding_reports_the_field_and_refuses_unknown_ones() -> None:
    cases = {
        b'{"sizing": "fixed_qty"}': "fixed_qty",
        b'{"max_leverage": "lots"}': "max_leverage",
        b'{"colour": "red"}': "colour",
        b'{"direction": "sideways"}': "direction",
        b'{"trading_hours": [{"start": "08:00:00", "end": "17:00:00+02:00"}]}': "trading_hours.end",
        b'{"trading_hours": [{"start": "08:00:00"}]}': "trading_hours",
    }
    for data, field in cases.items():
        with pytest.raises(InvalidInput) as caught:
            decode_settings(data)
        assert caught.value.extra["field"] == field, data
    with pytest.raises(InvalidInput):
        decode_settings(b"{not json")


def test_json_keeps_decimals_as_strings_and_accepts_utc_times() -> None:
    s = CopySettings(
        sizing=SizingMode.MULTIPLIER,
        multiplier=Decimal("0.25"),
        trading_hours=(TradingWindow(weekdays=(Weekday.MON, Weekday.FRI), start=time(8), end=time(17, 30)),),
    )
    doc = msgspec.json.decode(encode_settings(s))
    assert doc["multiplier"] == "0.25"
    assert doc["trading_hours"] == [{"weekdays": ["mon", "fri"], "start": "08:00:00", "end": "17:30:00"}]
    # A client may send a JSON number; msgspec reads its digits, never a binary float.
    assert decode_settings(b'{"sizing": "multiplier", "multiplier": 0.1}').multiplier == Decimal("0.1")
    assert decode_settings(b'{"trading_hours": [{"start": "08:00:00Z", "end": "17:00:00"}]}').trading_hours


def _decimal(low: str, high: str, places: int = 4) -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=Decimal(low), max_value=Decimal(high), places=places)


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


_SYMBOLS = st.sampled_from(["EUR/USD", "GBP/USD", "AAPL", "BTC/USDT", "XAU/USD", "US500", "BRK.B"])
_WINDOWS = st.builds(
    TradingWindow,
    weekdays=st.lists(st.sampled_from(list(Weekday)), min_size=1, max_size=7, unique=True).map(tuple),
    start=st.times(),
    end=st.times(),
)


@st.composite
def copy_settings(draw: st.DrawFn) -> CopySettings:
    mode = draw(st.sampled_from(list(SizingMode)))
    fields: dict[str, Any] = {"sizing": mode}
    if mode is SizingMode.FIXED_QTY:
        fields["fixed_qty"] = draw(_decimal("0.0001", "1000"))
    elif mode is SizingMode.MULTIPLIER:
        fields["multiplier"] = draw(_decimal("0.0001", "100"))
    elif mode is SizingMode.EQUITY_RATIO:
        fields["allocated_amount"] = draw(_optional(_decimal("0.01", "1000000", 2)))
    elif mode is SizingMode.FIXED_NOTIONAL:
        fields["fixed_notional"] = draw(_decimal("0.01", "1000000", 2))
    else:
        fields["risk_percent"] = draw(_decimal("0.01", "100", 2))
    symbols = draw(st.lists(_SYMBOLS, unique=True, max_size=5))
    split = draw(st.integers(0, len(symbols)))
    bps = _decimal("0", "500", 2)
    action = draw(st.sampled_from(list(SlippageAction)))
    return CopySettings(
        **fields,
        force_min_qty=draw(st.booleans()),
        max_qty_per_order=draw(_optional(_decimal("0.0001", "1000"))),
        max_open_positions=draw(_optional(st.integers(1, 500))),
        max_exposure_per_symbol=draw(_optional(_decimal("1", "10000000", 2))),
        max_leverage=draw(_optional(_decimal("0.1", "500", 1))),
        allow_symbols=tuple(symbols[:split]) or None,
        deny_symbols=tuple(symbols[split:]),
        symbol_map=draw(st.dictionaries(_SYMBOLS, st.sampled_from(["EURUSD.m", "GOLD", "SPX500.pro"]), max_size=3)),
        direction=draw(st.sampled_from(list(Direction))),
        max_slippage_bps=draw(_decimal("0", "9999", 2) if action is SlippageAction.LIMIT else _optional(bps)),
        slippage_action=action,
        copy_stop_loss_pct=draw(_optional(_decimal("0.01", "100", 2))),
        max_drawdown_pct=draw(_optional(_decimal("0.01", "100", 2))),
        drawdown_period=draw(st.sampled_from(list(DrawdownPeriod))),
        trading_hours=tuple(draw(st.lists(_WINDOWS, max_size=3))),
        on_subscribe=draw(st.sampled_from(list(OnSubscribe))),
        copy_sl_tp=draw(st.booleans()),
        on_provider_stall=draw(st.sampled_from(list(StallAction))),
        pause_symbol_after_rejects=draw(st.integers(0, 1000)),
        catch_up=draw(st.booleans()),
    )


@given(copy_settings())
def test_json_round_trip_is_exact(settings: CopySettings) -> None:
    data = encode_settings(settings)
    back = decode_settings(data)
    assert back == settings
    assert encode_settings(back) == data
    assert decode_settings(data.decode()) == settings
