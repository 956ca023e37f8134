"""kit.clock: UTC wall time and an exact manual clock for tests and simulations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from brokerlink.kit.clock import ManualClock, SystemClock, utcnow


def test_system_clock_is_utc_and_monotonic() -> None:
    clock = SystemClock()
    now = clock.now()
    assert now.utcoffset() == timedelta(0)
    first = clock.monotonic_ns()
    second = clock.monotonic_ns()
    assert isinstance(first, int)
    assert second >= first


def test_utcnow_is_aware_utc() -> None:
    assert utcnow().utcoffset() == timedelta(0)


def test_manual_clock_default_start() -> None:
    clock = ManualClock()
    assert clock.now() == datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    assert clock.monotonic_ns() == 0


def test_manual_clock_refuses_naive_start() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ManualClock(datetime(2026, 1, 5, 12, 0))  # noqa: DTZ001 - the point of the test


def test_manual_clock_converts_start_to_utc() -> None:
    clock = ManualClock(datetime(2026, 1, 5, 14, 0, tzinfo=timezone(timedelta(hours=2))))
    assert clock.now() == datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    assert clock.now().tzinfo is UTC


def test_manual_clock_stands_still_until_advanced() -> None:
    clock = ManualClock()
    assert clock.now() == clock.now()
    clock.advance(timedelta(seconds=1, microseconds=500_001))
    assert clock.now() == datetime(2026, 1, 5, 12, 0, 1, 500_001, tzinfo=UTC)
    assert clock.monotonic_ns() == 1_500_001_000
    clock.advance(timedelta(0))
    assert clock.monotonic_ns() == 1_500_001_000


def test_manual_clock_refuses_to_go_back() -> None:
    clock = ManualClock()
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(timedelta(microseconds=-1))
    with pytest.raises(ValueError, match="backwards"):
        clock.set(clock.now() - timedelta(seconds=1))


def test_manual_clock_set_jumps_forward_and_moves_monotonic() -> None:
    clock = ManualClock()
    clock.set(datetime(2026, 1, 5, 9, 30, tzinfo=timezone(timedelta(hours=-5))))  # 14:30 UTC
    assert clock.now() == datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
    assert clock.monotonic_ns() == 2 * 3600 * 1_000_000_000 + 30 * 60 * 1_000_000_000
