"""Row locks for read-check-write sequences (issue 8, ADR 0033: ``If-Match`` on settings).

A change guarded by ``If-Match`` reads the object, compares its tag, then writes. On PostgreSQL (read
committed) two such requests could both read the old row and both write; locking the row first
(``SELECT ... FOR UPDATE``) makes the second wait for the first to commit and then read what it
wrote, so its stale tag is refused. SQLite has no row locks and needs none here: it admits one
writer at a time, and a transaction that read before another's commit cannot write after it.
Flushes nothing, commits nothing: the lock lasts until the caller's transaction ends.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.store.repositories._common import dialect_name

__all__ = ["RowLocks"]


class RowLocks:
    """Locks rows by primary key for the rest of the session's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock(self, model: Any, row_id: str) -> bool:
        """Lock ``model``'s row ``row_id`` (PostgreSQL; a no-op on SQLite). Returns whether it exists."""
        stmt = select(model.id).where(model.id == row_id)
        if dialect_name(self.session) == "postgresql":
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none() is not None
