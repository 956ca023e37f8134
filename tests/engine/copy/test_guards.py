"""Guards with hand-checked numbers: direction, trading hours, slippage, equity stop and drawdown, subscribe policy."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerlink.domain.enums import Side
from brokerlink.engine.copy import (
    CopySettings,
    Direction,
    DrawdownPeriod,
    OnSubscribe,
    Skip,
    SkipReason,
    SlippageAction,
    TradingWindow,
    Weekday,
    equity_guard,
    follower_side,
    period_start,
    slippage_bps,
    slippage_decision,
    subscribe_decision,
    trading_hours_guard,
    within_trading_hours,
)

D = Decimal
WEEKDAYS = (Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI)


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A UTC time in the week of Monday 2026-01-05 (day 0 = Monday)."""
    return datetime(2026, 1, 5 + day, hour, minute, second, tzinfo=UTC)


def reason(result: object) -> SkipReason:
    assert isinstance(result, Skip), result
    assert result.detail
    return result.reason


def test_direction() -> None:
    assert follower_side(CopySettings(), Side.BUY) is Side.BUY
    reversed_ = CopySettings(direction=Direction.REVERSED)
    assert follower_side(reversed_, Side.BUY) is Side.SELL
    assert follower_side(reversed_, Side.SELL) is Side.BUY


def test_office_hours_window() -> None:
    s = CopySettings(trading_hours=(TradingWindow(weekdays=WEEKDAYS, start=time(8), end=time(17)),))
    assert not within_trading_hours(s, at(0, 7, 59, 59))
    assert within_trading_hours(s, at(0, 8))  # start inclusive
    assert within_trading_hours(s, at(4, 16, 59, 59))
    assert not within_trading_hours(s, at(4, 17))  # end exclusive
    assert not within_trading_hours(s, at(5, 12))  # Saturday
    # 09:30 at +02:00 is 07:30 UTC: outside.
    assert not within_trading_hours(s, datetime(2026, 1, 5, 9, 30, tzinfo=timezone(timedelta(hours=2))))
    assert reason(trading_hours_guard(s, at(6, 12))) is SkipReason.OUTSIDE_TRADING_HOURS
    assert trading_hours_guard(s, at(2, 12)) is None


def test_a_window_past_midnight_runs_into_the_next_day() -> None:
    # Sunday 22:00 to Monday 02:00.
    s = CopySettings(trading_hours=(TradingWindow(weekdays=(Weekday.SUN,), start=time(22), end=time(2)),))
    assert within_trading_hours(s, at(6, 23))  # Sunday 23:00
    assert within_trading_hours(s, at(7, 1, 59))  # Monday (the next week's) 01:59
    assert not within_trading_hours(s, at(7, 2))
    assert within_trading_hours(s, at(0, 1))  # windows recur weekly: every Monday follows a Sunday
    assert not within_trading_hours(s, at(1, 1))  # Tuesday 01:00
    assert not within_trading_hours(s, at(5, 23))  # Saturday 23:00


def test_start_equal_to_end_is_a_whole_day_and_no_windows_is_always() -> None:
    s = CopySettings(trading_hours=(TradingWindow(weekdays=(Weekday.WED,), start=time(6), end=time(6)),))
    assert within_trading_hours(s, at(2, 6))
    assert within_trading_hours(s, at(3, 5, 59))
    assert not within_trading_hours(s, at(3, 6))
    assert within_trading_hours(CopySettings(), at(5, 3))
    with pytest.raises(ValueError, match="timezone-aware"):
        within_trading_hours(s, datetime(2026, 1, 5, 12))  # noqa: DTZ001 - the point of the test


def test_slippage_bps_is_positive_when_worse_for_the_follower() -> None:
    # Buy at 200.30 against the provider's 200: 0.30 / 200 = 15 bps worse.
    assert slippage_bps(Side.BUY, D(200), D("200.30")) == D("15.0000")
    # A sell at the same price is 15 bps better.
    assert slippage_bps(Side.SELL, D(200), D("200.30")) == D("-15.0000")
    # 0.0001 / 1.0850 = 0.92165... bps, to 4 places.
    assert slippage_bps(Side.BUY, D("1.0850"), D("1.0851")) == D("0.9217")


def test_slippage_guard_skips_beyond_the_tolerance() -> None:
    s = CopySettings(max_slippage_bps=D(10))
    # Buy, provider 100.00: 100.10 is 10 bps (allowed, the limit is inclusive); 100.11 is 11 bps.
    assert slippage_decision(s, Side.BUY, D(100), D("100.10"), D("0.01")) is None
    assert reason(slippage_decision(s, Side.BUY, D(100), D("100.11"), D("0.01"))) is SkipReason.SLIPPAGE
    # Sell: 99.90 is 10 bps worse (allowed), 99.89 is 11.
    assert slippage_decision(s, Side.SELL, D(100), D("99.90"), D("0.01")) is None
    assert reason(slippage_decision(s, Side.SELL, D(100), D("99.89"), D("0.01"))) is SkipReason.SLIPPAGE
    # A better price is always fine.
    assert slippage_decision(s, Side.BUY, D(100), D(90), D("0.01")) is None
    assert reason(slippage_decision(s, Side.BUY, D(100), None, D("0.01"))) is SkipReason.NO_PRICE
    assert slippage_decision(CopySettings(), Side.BUY, D(100), D(200), D("0.01")) is None  # no guard


def test_slippage_guard_in_limit_mode_caps_the_price() -> None:
    s = CopySettings(max_slippage_bps=D(25), slippage_action=SlippageAction.LIMIT)
    # Buy: 1.085 x (1 + 0.0025) = 1.0877125 -> down to the tick: 1.08771.
    assert slippage_decision(s, Side.BUY, D("1.08500"), None, D("0.00001")) == D("1.08771")
    # Sell: 1.085 x (1 - 0.0025) = 1.0822875 -> up to the tick: 1.08229.
    assert slippage_decision(s, Side.SELL, D("1.08500"), D(1), D("0.00001")) == D("1.08229")


@given(
    st.sampled_from(list(Side)),
    st.decimals(min_value=D("0.01"), max_value=D(100_000), places=2),
    st.decimals(min_value=D(0), max_value=D(9_999), places=2),
    st.sampled_from([D("0.00001"), D("0.01"), D("0.25"), D(5)]),
)
def test_a_slippage_limit_never_exceeds_the_tolerance(side: Side, price: Decimal, bps: Decimal, tick: Decimal) -> None:
    s = CopySettings(max_slippage_bps=bps, slippage_action=SlippageAction.LIMIT)
    limit = slippage_decision(s, side, price, None, tick)
    if isinstance(limit, Skip):
        # Only a buy below one tick has no positive tick price within the tolerance.
        assert side is Side.BUY
        assert price * (10_000 + bps) < tick * 10_000
        assert limit.reason is SkipReason.SLIPPAGE
        return
    assert isinstance(limit, Decimal)
    assert (limit % tick) == 0
    # Worse than the provider by at most the tolerance; a sell limit stays a price.
    assert (limit - price) * side.sign * 10_000 <= bps * price
    assert limit > 0


def test_copy_stop_loss_trips_at_its_percentage() -> None:
    s = CopySettings(copy_stop_loss_pct=D(20))
    # Started at 10,000; 20% down is 8,000.
    assert reason(equity_guard(s, D(10_000), D(10_000), D(8_000))) is SkipReason.COPY_STOP_LOSS
    assert equity_guard(s, D(10_000), D(10_000), D("8000.01")) is None
    assert reason(equity_guard(s, D(0), D(0), D(0))) is SkipReason.INSUFFICIENT_EQUITY


def test_drawdown_guard_measures_from_the_periods_peak() -> None:
    s = CopySettings(max_drawdown_pct=D(5), drawdown_period=DrawdownPeriod.WEEK)
    # Peak 12,000 this week; 5% down is 11,400. Starting equity (9,000) does not matter.
    assert reason(equity_guard(s, D(9_000), D(12_000), D(11_400))) is SkipReason.DRAWDOWN_GUARD
    assert equity_guard(s, D(9_000), D(12_000), D(11_401)) is None


def test_the_copy_stop_loss_is_checked_first() -> None:
    s = CopySettings(copy_stop_loss_pct=D(10), max_drawdown_pct=D(10))
    assert reason(equity_guard(s, D(100), D(100), D(50))) is SkipReason.COPY_STOP_LOSS
    assert equity_guard(CopySettings(), D(100), D(100), D(1)) is None  # no guards set


def test_period_start() -> None:
    wednesday = datetime(2026, 1, 7, 15, 30, 12, tzinfo=UTC)
    assert period_start(DrawdownPeriod.DAY, wednesday) == datetime(2026, 1, 7, tzinfo=UTC)
    assert period_start(DrawdownPeriod.WEEK, wednesday) == datetime(2026, 1, 5, tzinfo=UTC)
    assert period_start(DrawdownPeriod.MONTH, wednesday) == datetime(2026, 1, 1, tzinfo=UTC)
    # 00:30 on the 1st at +02:00 is still the previous month in UTC.
    local = datetime(2026, 2, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    assert period_start(DrawdownPeriod.MONTH, local) == datetime(2026, 1, 1, tzinfo=UTC)


def test_subscribe_policy() -> None:
    skip = CopySettings(on_subscribe=OnSubscribe.SKIP)
    assert reason(subscribe_decision(skip, Side.BUY, D(100), D(100))) is SkipReason.ON_SUBSCRIBE_SKIP
    assert subscribe_decision(CopySettings(on_subscribe=OnSubscribe.MARKET), Side.BUY, D(100), D(150)) is None
    s = CopySettings(on_subscribe=OnSubscribe.IF_NOT_WORSE)
    # A buy at or below the provider's entry of 100 is not worse; a sell at or above it is not worse.
    assert subscribe_decision(s, Side.BUY, D(100), D("99.5")) is None
    assert subscribe_decision(s, Side.BUY, D(100), D(100)) is None
    assert reason(subscribe_decision(s, Side.BUY, D(100), D("100.5"))) is SkipReason.WORSE_THAN_ENTRY
    assert subscribe_decision(s, Side.SELL, D(100), D("100.5")) is None
    assert reason(subscribe_decision(s, Side.SELL, D(100), D("99.5"))) is SkipReason.WORSE_THAN_ENTRY
    assert reason(subscribe_decision(s, Side.SELL, D(100), None)) is SkipReason.NO_PRICE


def test_the_skip_and_market_policies_decide_without_prices() -> None:
    """A provider position whose entry is not stored yet, and no follower quote: ``skip`` still skips
    by policy (not for want of a price), ``market`` leaves it to the plan, ``if_not_worse`` cannot
    compare."""
    skip = CopySettings(on_subscribe=OnSubscribe.SKIP)
    assert reason(subscribe_decision(skip, Side.BUY, None, None)) is SkipReason.ON_SUBSCRIBE_SKIP
    assert subscribe_decision(CopySettings(on_subscribe=OnSubscribe.MARKET), Side.SELL, None, None) is None
    not_worse = CopySettings(on_subscribe=OnSubscribe.IF_NOT_WORSE)
    assert reason(subscribe_decision(not_worse, Side.BUY, None, D(100))) is SkipReason.NO_PRICE
    assert reason(subscribe_decision(not_worse, Side.BUY, D(100), None)) is SkipReason.NO_PRICE
