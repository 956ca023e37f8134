"""Engines and the Database holder: SQLite connection settings, transactions, readiness."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import structlog
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


async def test_a_writer_that_times_out_names_the_task_holding_the_lock_and_where_it_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stalled writer is a bug elsewhere: the error says which task held the lock, and at what."""
    monkeypatch.setattr(db, "_WRITE_LOCK_TIMEOUT_S", 0.2)
    monkeypatch.setattr(db, "_LONG_HOLD_S", 0.1)
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'stalled.db'}")
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    holding, done = asyncio.Event(), asyncio.Event()

    async def wait_for_the_venue_inside_the_transaction() -> None:
        await done.wait()

    @contextlib.asynccontextmanager
    async def starting() -> AsyncIterator[None]:  # like the app's lifespan: the holder inside an ``async with``
        async with sessions() as holder:
            await holder.execute(text("INSERT INTO t VALUES (1)"))
            holding.set()
            await wait_for_the_venue_inside_the_transaction()
            await holder.commit()
        yield

    async def hold() -> None:
        async with starting():
            pass

    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (n INTEGER)"))
        task = asyncio.create_task(hold(), name="slow-writer")
        await holding.wait()
        async with sessions() as late:
            with pytest.raises(OperationalError, match="database is locked") as refused:
                await late.execute(text("INSERT INTO t VALUES (2)"))
        message = str(refused.value)
        assert "by task slow-writer since 'INSERT INTO t VALUES (1)'" in message
        assert "starting (test_db.py:" in message
        assert "wait_for_the_venue_inside_the_transaction (test_db.py:" in message
        with structlog.testing.capture_logs() as logs:
            done.set()
            await task
        (long_hold,) = [entry for entry in logs if entry["event"] == "sqlite_write_lock_held_long"]
        assert long_hold["task"] == "slow-writer"
        assert long_hold["first_write"] == "INSERT INTO t VALUES (1)"
        assert long_hold["held_s"] >= 0.2
    finally:
        await engine.dispose()


async def test_a_begin_that_waits_on_another_connection_is_logged_with_ours_in_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's own lock, held outside this process's queue (another process here), shows as a slow
    BEGIN: logged with this engine's connections that are in a transaction (none here)."""
    monkeypatch.setattr(db, "_LONG_HOLD_S", 0.1)
    path = tmp_path / "waited.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (n INTEGER)"))
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, other.execute, "COMMIT")
        with structlog.testing.capture_logs() as logs:
            async with async_sessionmaker(engine)() as session:
                await session.execute(text("INSERT INTO t VALUES (1)"))
                await session.commit()
        other.close()
        (entry,) = [e for e in logs if e["event"] == "sqlite_begin_waited"]
        assert entry["waited_s"] >= 0.2
        assert entry["failed"] is False
        assert entry["ours_in_transaction"] == []
        if sys.platform == "linux":  # /proc/locks: who held the file's locks (here: `other`, in this process)
            assert any(h.startswith(f"{os.getpid()} (this process) ") for h in entry["lock_holders"]), entry
    finally:
        await engine.dispose()
