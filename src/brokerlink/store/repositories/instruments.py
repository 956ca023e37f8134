"""Instruments per broker. Returns domain :class:`~brokerlink.domain.models.Instrument` objects.

An instrument is keyed by ``(broker, symbol)``; refreshing a broker's instrument list upserts on
that key, so the row id stays stable while the size and price rules follow the venue.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.models import Instrument
from brokerlink.kit.ids import new_id
from brokerlink.store.mapping import instrument_from_row, instrument_values
from brokerlink.store.models import InstrumentRow
from brokerlink.store.repositories._common import FRESH, upsert_insert

_KEY = ("broker", "symbol")


class InstrumentRepository:
    """Queries on ``instruments``. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def upsert(self, broker: str, instrument: Instrument, *, now: datetime) -> None:
        """Insert the instrument, or update the rules of the one already stored under its symbol."""
        await self.upsert_many(broker, [instrument], now=now)

    async def upsert_many(self, broker: str, instruments: Iterable[Instrument], *, now: datetime) -> None:
        """:meth:`upsert` for a whole instrument list, in one statement run per batch.

        A venue symbol already used by another of the broker's symbols raises ``IntegrityError``.
        """
        rows = [{"id": new_id("ins"), **instrument_values(broker, i, now)} for i in instruments]
        if not rows:
            return
        stmt = upsert_insert(self.session, InstrumentRow)
        updated = {name: stmt.excluded[name] for name in rows[0] if name not in ("id", *_KEY)}
        await self.session.execute(stmt.on_conflict_do_update(index_elements=list(_KEY), set_=updated), rows)

    async def get(self, broker: str, symbol: str) -> Instrument | None:
        """The broker's instrument with this canonical symbol."""
        stmt = select(InstrumentRow).where(InstrumentRow.broker == broker, InstrumentRow.symbol == symbol)
        row = (await self.session.execute(stmt, execution_options=FRESH)).scalar_one_or_none()
        return None if row is None else instrument_from_row(row)

    async def get_by_venue_symbol(self, broker: str, venue_symbol: str) -> Instrument | None:
        """The broker's instrument with this venue symbol (the broker's own spelling)."""
        stmt = select(InstrumentRow).where(InstrumentRow.broker == broker, InstrumentRow.venue_symbol == venue_symbol)
        row = (await self.session.execute(stmt, execution_options=FRESH)).scalar_one_or_none()
        return None if row is None else instrument_from_row(row)

    async def list_for_broker(self, broker: str, *, tradable_only: bool = False) -> list[Instrument]:
        """The broker's instruments, by symbol."""
        stmt = select(InstrumentRow).where(InstrumentRow.broker == broker)
        if tradable_only:
            stmt = stmt.where(InstrumentRow.tradable.is_(True))
        stmt = stmt.order_by(InstrumentRow.symbol)
        return [
            instrument_from_row(row) for row in (await self.session.execute(stmt, execution_options=FRESH)).scalars()
        ]
