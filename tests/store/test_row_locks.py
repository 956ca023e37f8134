"""Row locks for ``If-Match`` changes (store/repositories/locks.py, ADR 0033), on both backends.

On PostgreSQL a second transaction locking the same row waits until the first ends, and then reads
what the first wrote; SQLite takes no row lock (one writer at a time) and the call only says whether
the row exists.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from brokerlink.store.models import UserRow
from brokerlink.store.repositories._common import dialect_name
from brokerlink.store.repositories.locks import RowLocks
from tests.store.factories import make_user


async def test_a_locked_row_makes_the_next_locker_wait_for_the_commit(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as setup:
        user = await make_user(setup)
        user_id = user.id
        await setup.commit()
    async with sessions() as first, sessions() as second:
        assert await RowLocks(first).lock(UserRow, user_id)
        assert not await RowLocks(first).lock(UserRow, "usr_missing")
        if dialect_name(first) != "postgresql":
            return
        row = await first.get(UserRow, user_id)
        assert row is not None
        row.display_name = "changed by the first"
        await first.flush()
        waiting = asyncio.create_task(RowLocks(second).lock(UserRow, user_id))
        for _ in range(10):  # bounded: the lock must still be held by the first transaction
            await asyncio.sleep(0.02)
            assert not waiting.done()
        await first.commit()
        assert await asyncio.wait_for(waiting, timeout=10)
        seen = await second.get(UserRow, user_id, populate_existing=True)
        assert seen is not None
        assert seen.display_name == "changed by the first"
