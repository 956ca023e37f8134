"""Runs of rejected copy orders per subscription and follower symbol, and the pauses they trip.

A row exists while a follower symbol's copy orders keep being refused: ``rejects`` counts the run
(an atomic ``INSERT ... ON CONFLICT DO UPDATE``, so two refusals settled at once both count), and
``paused_at`` is set once the run is long enough. A fill in the symbol ends a run that has not
paused yet (the row goes); a pause stays until the follower resumes the symbol (the row goes, and
the count starts over).

Symbols are the *follower's* (as on the intents): what the follower's broker refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import msgspec
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.store.models import CopySymbolPauseRow
from brokerlink.store.repositories._common import FRESH, rowcount, upsert_insert


class SymbolRejects(msgspec.Struct, frozen=True, kw_only=True):
    """A follower symbol's run of refused copy orders (paused when ``paused_at`` is set)."""

    subscription_id: str
    symbol: str
    rejects: int
    """Consecutive refusals, up to the one that paused it."""
    reason: str
    """The last refusal, as the broker (or the order checks) worded it."""
    paused_at: datetime | None
    updated_at: datetime

    @property
    def paused(self) -> bool:
        """Whether opens in this symbol are held back until the follower resumes it."""
        return self.paused_at is not None


def _from_row(row: CopySymbolPauseRow) -> SymbolRejects:
    return msgspec.convert(row, SymbolRejects, from_attributes=True)


class CopySymbolPauseRepository:
    """Queries on ``copy_symbol_pauses``. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def count_reject(self, subscription_id: str, symbol: str, *, reason: str, now: datetime) -> SymbolRejects:
        """Count one more refused copy order in ``symbol``; returns the run as it stands now.

        A paused symbol keeps counting (a close refused while paused), but stays paused as it was.
        """
        values = {
            "subscription_id": subscription_id,
            "symbol": symbol,
            "rejects": 1,
            "reason": reason,
            "paused_at": None,
            "updated_at": now,
        }
        stmt = upsert_insert(self.session, CopySymbolPauseRow).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["subscription_id", "symbol"],
            set_={"rejects": CopySymbolPauseRow.rejects + 1, "reason": stmt.excluded.reason, "updated_at": now},
        )
        await self.session.execute(stmt)
        found = await self.get(subscription_id, symbol)
        assert found is not None  # noqa: S101 - written just above, in this transaction
        return found

    async def end_run(self, subscription_id: str, symbol: str) -> bool:
        """A copy order in ``symbol`` filled: forget its run of refusals, unless it already paused the symbol.

        Returns whether a run was forgotten. One indexed DELETE: cheap enough for every fill.
        """
        stmt = delete(CopySymbolPauseRow).where(
            CopySymbolPauseRow.subscription_id == subscription_id,
            CopySymbolPauseRow.symbol == symbol,
            CopySymbolPauseRow.paused_at.is_(None),
        )
        return rowcount(await self.session.execute(stmt.execution_options(synchronize_session=False))) > 0

    async def pause(self, subscription_id: str, symbol: str, *, now: datetime) -> bool:
        """Pause the symbol (its run must exist). Returns False when it was paused already: one alert per pause."""
        stmt = (
            update(CopySymbolPauseRow)
            .where(
                CopySymbolPauseRow.subscription_id == subscription_id,
                CopySymbolPauseRow.symbol == symbol,
                CopySymbolPauseRow.paused_at.is_(None),
            )
            .values(paused_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        return rowcount(await self.session.execute(stmt)) > 0

    async def resume(self, subscription_id: str, symbol: str) -> bool:
        """Lift the pause on the symbol and forget its run. Returns False when it was not paused."""
        stmt = delete(CopySymbolPauseRow).where(
            CopySymbolPauseRow.subscription_id == subscription_id,
            CopySymbolPauseRow.symbol == symbol,
            CopySymbolPauseRow.paused_at.is_not(None),
        )
        return rowcount(await self.session.execute(stmt.execution_options(synchronize_session=False))) > 0

    async def get(self, subscription_id: str, symbol: str) -> SymbolRejects | None:
        """The symbol's run (paused or not), if it has one."""
        stmt = select(CopySymbolPauseRow).where(
            CopySymbolPauseRow.subscription_id == subscription_id, CopySymbolPauseRow.symbol == symbol
        )
        row = (await self.session.execute(stmt, execution_options=FRESH)).scalar_one_or_none()
        return None if row is None else _from_row(row)

    async def list_paused(self, subscription_id: str) -> list[SymbolRejects]:
        """The subscription's paused symbols, by symbol."""
        stmt = (
            select(CopySymbolPauseRow)
            .where(CopySymbolPauseRow.subscription_id == subscription_id, CopySymbolPauseRow.paused_at.is_not(None))
            .order_by(CopySymbolPauseRow.symbol)
        )
        return [_from_row(row) for row in (await self.session.execute(stmt, execution_options=FRESH)).scalars()]

    async def paused_symbols(self, subscription_ids: Iterable[str]) -> dict[str, frozenset[str]]:
        """Each subscription's paused follower symbols, in one query (subscriptions with none are left out)."""
        ids = list(dict.fromkeys(subscription_ids))
        if not ids:
            return {}
        stmt = select(CopySymbolPauseRow.subscription_id, CopySymbolPauseRow.symbol).where(
            CopySymbolPauseRow.subscription_id.in_(ids), CopySymbolPauseRow.paused_at.is_not(None)
        )
        found: dict[str, set[str]] = {}
        for subscription_id, symbol in await self.session.execute(stmt):
            found.setdefault(str(subscription_id), set()).add(str(symbol))
        return {subscription_id: frozenset(symbols) for subscription_id, symbols in found.items()}
