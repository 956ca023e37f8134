"""Fee settlement periods: calendar months (``2026-11``) or quarters (``2026-Q4``), in UTC.

A period is half-open, ``[start, end)``. Its key is what invoices, accruals and ledger idempotency
keys carry, so it is stable text, not a timestamp.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Literal

import msgspec

from brokerlink.kit.errors import InvalidInput

PeriodKind = Literal["monthly", "quarterly"]

_MONTH = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")
_QUARTER = re.compile(r"(\d{4})-Q([1-4])")


class Period(msgspec.Struct, frozen=True, kw_only=True):
    """One settlement period: ``[start, end)`` in UTC, and its key."""

    key: str
    start: datetime
    end: datetime

    def contains(self, when: datetime) -> bool:
        """Whether ``when`` (aware) falls inside the period."""
        return self.start <= when < self.end

    def days(self) -> list[date]:
        """The UTC days of the period, in order."""
        first, last = self.start.date(), self.end.date()
        return [first + timedelta(days=n) for n in range((last - first).days)]


def _month_start(year: int, month: int) -> datetime:
    return datetime(year, month, 1, tzinfo=UTC)


def _plus_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def _build(kind: PeriodKind, year: int, first_month: int) -> Period:
    length = 1 if kind == "monthly" else 3
    end_year, end_month = _plus_months(year, first_month, length)
    key = f"{year:04d}-{first_month:02d}" if kind == "monthly" else f"{year:04d}-Q{(first_month - 1) // 3 + 1}"
    return Period(key=key, start=_month_start(year, first_month), end=_month_start(end_year, end_month))


def period_of(kind: PeriodKind, when: datetime) -> Period:
    """The period containing ``when`` (timezone-aware)."""
    if when.tzinfo is None:
        raise ValueError("when must be timezone-aware")
    utc = when.astimezone(UTC)
    first = utc.month if kind == "monthly" else (utc.month - 1) // 3 * 3 + 1
    return _build(kind, utc.year, first)


def previous_period(kind: PeriodKind, period: Period) -> Period:
    """The period just before ``period``."""
    return period_of(kind, period.start - timedelta(microseconds=1))


def next_period_start(kind: PeriodKind, when: datetime) -> datetime:
    """The start of the period after the one containing ``when``: where a fee schedule change takes effect."""
    return period_of(kind, when).end


def parse_period(kind: PeriodKind, key: str) -> Period:
    """The period named ``key`` (``2026-11`` monthly, ``2026-Q4`` quarterly); 422 naming ``period`` otherwise."""
    pattern = _MONTH if kind == "monthly" else _QUARTER
    found = pattern.fullmatch(key.strip())
    if found is None:
        example = "2026-11" if kind == "monthly" else "2026-Q4"
        raise InvalidInput(f"period: expected a {kind} period like {example}, got {key!r}", extra={"field": "period"})
    year = int(found.group(1))
    first = int(found.group(2)) if kind == "monthly" else (int(found.group(2)) - 1) * 3 + 1
    return _build(kind, year, first)
