"""Each subscription's highest follower equity in its current drawdown period (the drawdown guard's base).

The comparison (is this reading a new peak, has the period rolled over) is the caller's: on SQLite
the amount is text, and SQL would compare strings. Writers go through :meth:`save_many`, an upsert,
so a signal and the periodic sampling racing for one row cannot fail on the key; the later write wins,
and both only ever write a reading at least as high as the one they read within their transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.store.models import CopyEquityPeakRow
from brokerlink.store.repositories._common import FRESH, upsert_insert

_IN_CHUNK = 500


class EquityPeak(msgspec.Struct, frozen=True, kw_only=True):
    """The highest equity seen since ``period_start``."""

    subscription_id: str
    period_start: datetime
    peak_equity: Decimal


class CopyEquityPeakRepository:
    """Queries on ``copy_equity_peaks``. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_many(self, subscription_ids: Iterable[str]) -> dict[str, EquityPeak]:
        """The stored peaks of these subscriptions (those without one are absent), in one query per 500."""
        ids = sorted(set(subscription_ids))
        found: dict[str, EquityPeak] = {}
        for start in range(0, len(ids), _IN_CHUNK):
            stmt = select(CopyEquityPeakRow).where(
                CopyEquityPeakRow.subscription_id.in_(ids[start : start + _IN_CHUNK])
            )
            for row in (await self.session.execute(stmt, execution_options=FRESH)).scalars():
                found[row.subscription_id] = EquityPeak(
                    subscription_id=row.subscription_id, period_start=row.period_start, peak_equity=row.peak_equity
                )
        return found

    async def save_many(self, peaks: Sequence[EquityPeak], *, now: datetime) -> None:
        """Store these peaks (insert or replace), in one statement."""
        if not peaks:
            return
        insert = upsert_insert(self.session, CopyEquityPeakRow.__table__)
        stmt = insert.on_conflict_do_update(
            index_elements=["subscription_id"],
            set_={
                "period_start": insert.excluded.period_start,
                "peak_equity": insert.excluded.peak_equity,
                "updated_at": insert.excluded.updated_at,
            },
        )
        rows = [
            {
                "subscription_id": p.subscription_id,
                "period_start": p.period_start,
                "peak_equity": p.peak_equity,
                "updated_at": now,
            }
            for p in peaks
        ]
        await self.session.flush()
        await self.session.execute(stmt, rows)


def next_peak(stored: EquityPeak | None, subscription_id: str, period_start: datetime, equity: Decimal) -> EquityPeak:
    """The peak after reading ``equity`` in the period starting ``period_start``: a new period starts over."""
    if stored is None or stored.period_start != period_start or equity > stored.peak_equity:
        return EquityPeak(subscription_id=subscription_id, period_start=period_start, peak_equity=equity)
    return stored
