"""Engines and the Database holder: SQLite connection settings, transactions, readiness."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from brokerlink.config import Settings
from brokerlink.store import db
from brokerlink.store.db import Database, create_engine
from tests.store.factories import NOW, make_user


async def test_sqlite_connections_get_the_pragmas(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'nested' / 'deeper' / 'x.db'}")
    try:
        async with engine.connect() as conn:
            values = {
                name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar_one()
                for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
            }
    finally:
        await engine.dispose()
    # PRAGMA synchronous reports NORMAL as 1.
    assert values == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 5000, "synchronous": 1}
    assert (tmp_path / "nested" / "deeper" / "x.db").exists()


async def test_migration_engines_can_turn_sqlite_foreign_keys_off(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", sqlite_foreign_keys=False)
    try:
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar_one() == 0
    finally:
        await engine.dispose()


async def test_savepoint_rolls_back_inside_the_transaction(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with sessions() as session:
        kept = await make_user(session, "kept@example.com")
        nested = await session.begin_nested()
        await make_user(session, "dropped@example.com")
        await nested.rollback()
        await session.commit()
    async with engine.connect() as conn:
        emails = (await conn.execute(text("SELECT email FROM users"))).scalars().all()
    assert emails == [kept.email]


async def test_a_released_savepoint_still_rolls_back_with_its_transaction(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # With the sqlite3 driver's own transaction handling, a SAVEPOINT before any write started a
    # transaction of its own and RELEASE committed it; the outer rollback then kept the row.
    async with sessions() as session:
        async with session.begin_nested():
            await make_user(session)
        await session.rollback()
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM users"))).scalar_one() == 0


async def test_read_then_write_survives_a_concurrent_commit(sessions: async_sessionmaker[AsyncSession]) -> None:
    # The shape of most requests: read, then write. On SQLite a transaction that began at its first
    # read would fail here with "database is locked"; ours begins at the first write.
    async with sessions() as first, sessions() as second:
        assert (await first.execute(text("SELECT count(*) FROM users"))).scalar_one() == 0
        await make_user(second)
        await second.commit()
        await make_user(first)
        await first.commit()
    async with sessions() as session:
        assert (await session.execute(text("SELECT count(*) FROM users"))).scalar_one() == 2


async def test_a_failed_transaction_leaves_nothing_behind(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        await make_user(session, "first@example.com")
        await session.execute(text("UPDATE users SET display_name = 'changed'"))
        await session.rollback()
    async with sessions() as session:
        assert (await session.execute(text("SELECT count(*) FROM users"))).scalar_one() == 0


async def test_concurrent_writers_queue_instead_of_failing(sessions: async_sessionmaker[AsyncSession]) -> None:
    async def register(i: int) -> None:
        async with sessions() as session:
            await make_user(session, f"user{i}@example.com")
            await asyncio.sleep(0.01)  # hold the write lock across an await, as a real request might
            await session.commit()

    await asyncio.gather(*(register(i) for i in range(8)))
    async with sessions() as session:
        assert (await session.execute(text("SELECT count(*) FROM users"))).scalar_one() == 8


async def test_database_ping_and_session(database_url: str) -> None:
    db = Database(database_url)
    try:
        assert await db.ping()
        assert db.dialect in {"sqlite", "postgresql"}
        async with db.session() as session:
            await make_user(session)
            await session.commit()
    finally:
        await db.dispose()


async def test_ping_is_false_for_a_postgres_server_that_is_not_there() -> None:
    db = Database("postgresql+asyncpg://nobody@127.0.0.1:9/none", ping_timeout=2.0)
    try:
        assert not await db.ping()
    finally:
        await db.dispose()


async def test_database_from_settings_defaults_to_sqlite_under_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "state", database_url=None)
    db = Database.from_settings(settings)
    try:
        assert db.dialect == "sqlite"
        assert await db.ping()
        assert (tmp_path / "state" / "brokerlink.db").exists()
    finally:
        await db.dispose()


def test_factories_use_aware_time() -> None:
    assert NOW.tzinfo is not None


async def test_sqlite_writers_of_one_process_take_turns_in_arrival_order(tmp_path: Path) -> None:
    """Writers queue in the process's FIFO write lock instead of SQLite's sleeping busy handler:
    whoever asked first writes first, and a rollback or a failed statement hands the lock on."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'fifo.db'}")
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE turns (n INTEGER PRIMARY KEY, who INTEGER)"))
        order: list[int] = []
        holder = sessions()
        await holder.execute(text("INSERT INTO turns (who) VALUES (-1)"))  # holds the write lock

        async def write(i: int) -> None:
            async with sessions() as session:
                await session.execute(text("INSERT INTO turns (who) VALUES (:i)"), {"i": i})
                order.append(i)
                if i % 3 == 0:
                    await session.rollback()  # gives the lock back without writing
                else:
                    await session.commit()

        tasks = []
        for i in range(12):
            tasks.append(asyncio.create_task(write(i)))
            await asyncio.sleep(0.05)  # each is queued (its connection opened) before the next one arrives
        await holder.rollback()
        await holder.close()
        await asyncio.gather(*tasks)
        assert order == list(range(12))
        async with sessions() as session:
            written = (await session.execute(text("SELECT who FROM turns ORDER BY n"))).scalars().all()
        assert written == [i for i in range(12) if i % 3]
    finally:
        await engine.dispose()


async def test_a_writer_that_never_gets_the_lock_fails_as_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "_WRITE_LOCK_TIMEOUT_S", 0.2)
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'locked.db'}")
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (n INTEGER)"))
        async with sessions() as holder:
            await holder.execute(text("INSERT INTO t VALUES (1)"))
            async with sessions() as late:
                with pytest.raises(OperationalError, match="database is locked"):
                    await late.execute(text("INSERT INTO t VALUES (2)"))
            await holder.commit()
        async with sessions() as session:  # the lock was handed back: writing works again
            await session.execute(text("INSERT INTO t VALUES (3)"))
            await session.commit()
            assert (await session.execute(text("SELECT count(*) FROM t"))).scalar_one() == 2
    finally:
        await engine.dispose()
