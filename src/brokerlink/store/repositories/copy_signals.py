"""Copy signals: the provider executions the copy engine consumed. Returns :class:`~brokerlink.domain.copy.CopySignal`.

The same provider fill may arrive twice (stream and REST, two engine nodes during a lease handover),
so it is stored once per ``(strategy_id, provider_trade_id)``, and :meth:`CopySignalRepository.add_if_new`
tells the caller whether this delivery was the first. Only the first one writes intents, in the same
transaction: a fill seen twice is copied once.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.copy import CopySignal
from brokerlink.store.mapping import copy_signal_from_row, struct_values
from brokerlink.store.models import CopySignalRow
from brokerlink.store.repositories._common import FRESH, Page, fetch_page, upsert_insert


class CopySignalRepository:
    """Queries on ``copy_signals``. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_if_new(self, signal: CopySignal) -> bool:
        """Store the signal unless its strategy already consumed this provider trade. True if this call stored it.

        ``INSERT ... ON CONFLICT DO NOTHING``, as :meth:`FillRepository.add_if_new
        <brokerlink.store.repositories.fills.FillRepository.add_if_new>`: two deliveries at once cannot
        both store it, and no IntegrityError poisons the caller's transaction. A signal whose
        ``provider_account_id`` is not the strategy's account is refused (``IntegrityError``).
        """
        await self.session.flush()
        insert = upsert_insert(self.session, CopySignalRow).values(struct_values(signal))
        stmt = insert.on_conflict_do_nothing(index_elements=["strategy_id", "provider_trade_id"]).returning(
            CopySignalRow.id
        )
        return (await self.session.execute(stmt)).scalar_one_or_none() is not None

    async def get_by_id(self, signal_id: str) -> CopySignal | None:
        """The signal with this id."""
        stmt = select(CopySignalRow).where(CopySignalRow.id == signal_id)
        row = (await self.session.execute(stmt, execution_options=FRESH)).scalar_one_or_none()
        return None if row is None else copy_signal_from_row(row)

    async def get_by_provider_trade_id(self, strategy_id: str, provider_trade_id: str) -> CopySignal | None:
        """The strategy's signal for this provider trade id (the first delivery's)."""
        stmt = select(CopySignalRow).where(
            CopySignalRow.strategy_id == strategy_id, CopySignalRow.provider_trade_id == provider_trade_id
        )
        row = (await self.session.execute(stmt, execution_options=FRESH)).scalar_one_or_none()
        return None if row is None else copy_signal_from_row(row)

    async def list_for_strategy(
        self, strategy_id: str, *, limit: int = 100, after: str | None = None, descending: bool = False
    ) -> Page[CopySignal]:
        """One page of a strategy's signals by id (consumption order to the millisecond)."""
        stmt = select(CopySignalRow).where(CopySignalRow.strategy_id == strategy_id)
        return await fetch_page(
            self.session, stmt, CopySignalRow.id, copy_signal_from_row, limit=limit, after=after, descending=descending
        )
