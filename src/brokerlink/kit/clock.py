"""Clocks. Everything that needs the time takes a :class:`Clock`, so tests can hold time still.

Wall time is always timezone-aware UTC. Durations are measured with ``monotonic_ns`` (an int,
so no binary float ever enters a computation that could touch money).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """What the rest of the code may ask of time."""

    def now(self) -> datetime:
        """The current UTC time, timezone-aware."""
        ...

    def monotonic_ns(self) -> int:
        """A monotonic counter in nanoseconds, for measuring durations."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()


class ManualClock:
    """A clock that moves only when told to. For tests and simulations."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start time")
        self._now = start.astimezone(UTC)
        self._mono = 0

    def now(self) -> datetime:
        return self._now

    def monotonic_ns(self) -> int:
        return self._mono

    def advance(self, delta: timedelta) -> None:
        """Move both the wall clock and the monotonic counter forward."""
        if delta < timedelta(0):
            raise ValueError("time does not run backwards")
        self._now += delta
        self._mono += (delta // timedelta(microseconds=1)) * 1000

    def set(self, when: datetime) -> None:
        """Jump the wall clock (e.g. to a market open). Refuses to go back."""
        when = when.astimezone(UTC)
        if when < self._now:
            raise ValueError("time does not run backwards")
        self.advance(when - self._now)


def utcnow() -> datetime:
    """The current UTC time, for code at the edges that has no injected clock (CLI, migrations)."""
    return datetime.now(UTC)
