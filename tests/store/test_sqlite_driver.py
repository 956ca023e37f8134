"""The SQLite adapter (store/sqlite_driver.py, ADRs 0036 and 0042): one trip to aiosqlite's thread per
write, none for a read (it runs on the loop's thread within a budget) or an idle COMMIT or ROLLBACK,
and the DBAPI behaviour SQLAlchemy relies on unchanged."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from brokerlink.store import sqlite_driver
from brokerlink.store.db import SQLITE_POOL_SIZE, create_engine, session_factory
from brokerlink.store.sqlite_driver import OneTripConnection, OneTripCursor

# A read long enough to outlast any budget: two million rows counted from a recursive CTE.
LONG_READ = (
    "SELECT thread_id(), (SELECT count(*) FROM (WITH RECURSIVE c(x) AS "
    "(SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) SELECT x FROM c))"
)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    async with engine.begin() as conn:
        await conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, n INTEGER)")
        await conn.exec_driver_sql("INSERT INTO t (name, n) VALUES ('a', 1), ('b', 2), ('c', 3)")
    yield engine
    await engine.dispose()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Every call queued to aiosqlite's thread, by the function's name (the real driver, counted)."""
    counted: Counter[str] = Counter()
    queue = aiosqlite.Connection._execute

    async def counting(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        counted[getattr(fn, "__name__", repr(fn))] += 1
        return await queue(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counting)
    return counted


async def test_engines_use_the_one_trip_adapter(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert isinstance(raw.dbapi_connection, OneTripConnection)
        assert isinstance(raw.dbapi_connection.cursor(), OneTripCursor)


async def test_a_read_request_makes_no_trip_for_its_select_its_commit_or_its_check_in(
    engine: AsyncEngine, trips: Counter[str]
) -> None:
    async with session_factory(engine)() as session:
        await session.execute(text("SELECT 1"))  # the pool's first checkout pings nothing; warm it anyway
        await session.commit()
    trips.clear()
    async with session_factory(engine)() as session:
        rows = (await session.execute(text("SELECT name FROM t ORDER BY id"))).scalars().all()
        await session.commit()
    assert rows == ["a", "b", "c"]
    # SQLAlchemy's adapter: cursor, execute, fetchall, close, COMMIT, and ROLLBACK at check-in = 6.
    assert trips == Counter()


@pytest.fixture
async def thread_id(engine: AsyncEngine) -> None:
    """``thread_id()`` in SQL: the id of the thread that runs the statement."""

    @event.listens_for(engine.sync_engine, "connect")
    def _register(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection._connection._conn.create_function("thread_id", 0, threading.get_ident)

    await engine.dispose()  # the pool's connections so far were made without it


async def test_a_select_runs_on_the_event_loops_thread(engine: AsyncEngine, thread_id: None) -> None:
    async with engine.connect() as conn:
        ran_on = (await conn.exec_driver_sql("SELECT thread_id()")).scalar_one()
    assert ran_on == threading.get_ident()


async def test_a_select_past_its_budget_moves_to_the_drivers_thread_and_gives_the_same_rows(
    engine: AsyncEngine, thread_id: None, trips: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_driver, "INLINE_READ_BUDGET_S", 0.0)  # the first look at the clock ends it
    async with engine.connect() as conn:
        trips.clear()
        ran_on, count = (await conn.exec_driver_sql(LONG_READ)).one()
        # A short read still runs inline: the budget is per statement.
        short_on = (await conn.exec_driver_sql("SELECT thread_id() FROM t LIMIT 1")).scalar_one()
    assert count == 2_000_000
    assert ran_on != threading.get_ident()
    assert trips == Counter({"_run": 1})
    assert short_on == threading.get_ident()


async def test_a_select_moved_off_the_loop_inside_a_write_transaction_keeps_the_transaction(
    engine: AsyncEngine, thread_id: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite rolls back a transaction whose write is interrupted, not one whose read is."""
    monkeypatch.setattr(sqlite_driver, "INLINE_READ_BUDGET_S", 0.0)
    async with session_factory(engine)() as session:
        await session.execute(text("INSERT INTO t (name, n) VALUES ('d', 4)"))
        ran_on, _ = (await session.execute(text(LONG_READ))).one()
        assert ran_on != threading.get_ident()
        seen = (await session.execute(text("SELECT n FROM t WHERE name = 'd'"))).scalar_one()
        await session.commit()
    assert seen == 4
    async with engine.connect() as conn:
        assert (await conn.exec_driver_sql("SELECT count(*) FROM t")).scalar_one() == 4


async def test_a_failing_select_raises_the_dbapi_error_and_leaves_the_connection_usable(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        with pytest.raises(OperationalError, match="no such table"):
            await conn.exec_driver_sql("SELECT * FROM missing")
        await conn.rollback()
        assert (await conn.exec_driver_sql("SELECT count(*) FROM t")).scalar_one() == 3


async def test_a_write_is_a_trip_per_statement_and_one_for_its_commit(engine: AsyncEngine, trips: Counter[str]) -> None:
    async with session_factory(engine)() as session:
        await session.execute(text("UPDATE t SET n = n + 1 WHERE name = 'a'"))
        await session.execute(text("UPDATE t SET n = n + 1 WHERE name = 'b'"))
        await session.commit()
    # BEGIN IMMEDIATE (the write hook) in the first UPDATE's trip, the second UPDATE, then COMMIT;
    # nothing at check-in.
    assert trips == Counter({"_run": 2, "commit": 1})
    async with engine.connect() as conn:
        assert (await conn.exec_driver_sql("SELECT n FROM t WHERE name = 'a'")).scalar_one() == 2
        assert (await conn.exec_driver_sql("SELECT n FROM t WHERE name = 'b'")).scalar_one() == 3


async def test_a_failing_first_write_leaves_neither_transaction_nor_lock(engine: AsyncEngine) -> None:
    """The BEGIN rides on the first write's trip: when the write fails, its transaction is rolled back
    and the write lock handed on, so the next writer goes ahead."""
    async with session_factory(engine)() as session:
        with pytest.raises(IntegrityError):
            await session.execute(text("INSERT INTO t (name, n) VALUES ('a', 9)"))  # name is unique
        await session.rollback()
        raw = (await session.connection()).sync_connection.connection.dbapi_connection
        assert not raw._connection._connection.in_transaction
    async with session_factory(engine)() as session:
        await session.execute(text("INSERT INTO t (name, n) VALUES ('d', 4)"))
        await session.commit()
    async with engine.connect() as conn:
        assert (await conn.exec_driver_sql("SELECT count(*) FROM t")).scalar_one() == 4


async def test_rowcount_lastrowid_returning_and_executemany_behave_as_sqlite3s(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        updated = await conn.exec_driver_sql("UPDATE t SET n = n * 10 WHERE n >= 2")
        assert updated.rowcount == 2
        inserted = await conn.exec_driver_sql("INSERT INTO t (name, n) VALUES ('d', 4)")
        assert inserted.lastrowid == 4
        returned = await conn.exec_driver_sql("INSERT INTO t (name, n) VALUES ('e', 5) RETURNING id, name")
        assert returned.all() == [(5, "e")]
        many = await conn.execute(
            text("INSERT INTO t (name, n) VALUES (:name, :n)"), [{"name": "f", "n": 6}, {"name": "g", "n": 7}]
        )
        assert many.rowcount == 2
        deleted = await conn.exec_driver_sql("DELETE FROM t WHERE name IN ('f', 'g', 'zz')")
        assert deleted.rowcount == 2
    async with engine.connect() as conn:
        result = await conn.exec_driver_sql("SELECT name, n FROM t ORDER BY id")
        assert [c[0] for c in result.cursor.description] == ["name", "n"]
        assert result.fetchmany(2) == [("a", 1), ("b", 20)]
        assert result.fetchone() == ("c", 30)
        assert result.fetchall() == [("d", 4), ("e", 5)]


async def test_a_failed_statement_raises_the_dbapi_error_and_the_transaction_rolls_back(engine: AsyncEngine) -> None:
    async with session_factory(engine)() as session:
        await session.execute(text("UPDATE t SET n = 100 WHERE name = 'a'"))
        with pytest.raises(IntegrityError):
            await session.execute(text("INSERT INTO t (name, n) VALUES ('b', 9)"))  # name is unique
        await session.rollback()
    async with session_factory(engine)() as session:
        with pytest.raises(OperationalError, match="no such table"):
            await session.execute(text("SELECT * FROM missing"))
    async with engine.connect() as conn:
        # The rollback happened (SQLite had a transaction open: the UPDATE's BEGIN IMMEDIATE).
        assert (await conn.exec_driver_sql("SELECT n FROM t WHERE name = 'a'")).scalar_one() == 1


async def test_a_rolled_back_write_leaves_nothing_and_the_connection_clean(engine: AsyncEngine) -> None:
    async with session_factory(engine)() as session:
        await session.execute(text("INSERT INTO t (name, n) VALUES ('x', 0)"))
        await session.rollback()
        # The same session goes on: its next write begins a fresh transaction.
        await session.execute(text("INSERT INTO t (name, n) VALUES ('y', 0)"))
        await session.commit()
    async with engine.connect() as conn:
        names = (await conn.exec_driver_sql("SELECT name FROM t ORDER BY id")).scalars().all()
        raw = await conn.get_raw_connection()
        assert not raw.dbapi_connection.driver_connection.in_transaction
    assert names == ["a", "b", "c", "y"]


async def test_server_side_cursors_still_stream(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        result = await conn.stream(text("SELECT name FROM t ORDER BY id"))
        assert [row.name async for row in result] == ["a", "b", "c"]


async def test_a_file_database_keeps_its_connections_under_load(engine: AsyncEngine) -> None:
    """40 requests at once on 16 pooled connections: none is opened twice or closed (the default pool
    closed its overflow connections whenever 5 were idle, and opened new ones a moment later)."""
    opened: list[object] = []
    closed: list[object] = []
    event.listen(engine.sync_engine, "connect", lambda dbapi, _record: opened.append(dbapi))
    event.listen(engine.sync_engine, "close", lambda dbapi, _record: closed.append(dbapi))
    sessions = session_factory(engine)

    async def request() -> None:
        async with sessions() as session:
            await session.execute(text("SELECT count(*) FROM t"))
            await asyncio.sleep(0)  # hold the connection across a loop turn, as a handler does
            await session.commit()

    for _ in range(3):
        await asyncio.gather(*(request() for _ in range(40)))
    assert 1 <= len(opened) <= SQLITE_POOL_SIZE
    assert closed == []


async def test_a_writer_cancelled_while_its_begin_waits_leaves_no_transaction_behind(tmp_path: Path) -> None:
    """The thread runs a queued ``BEGIN IMMEDIATE`` whatever becomes of the task that queued it. Had the
    task's rollback found no transaction yet (no trip: ``OneTripConnection``) and the connection gone
    back to the pool, it would hold SQLite's write lock with nobody to release it, and every other
    writer would wait out the busy timeout. SQLAlchemy terminates a connection whose statement was
    cancelled; the close queues behind the BEGIN, and the lock goes with it."""
    path = tmp_path / "cancel.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.connect() as conn:  # the pool's one connection, which the writer gets next
            await conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
            await conn.commit()
            thread = (await conn.get_raw_connection()).dbapi_connection._connection
        busy = threading.Event()
        thread._tx.put_nowait((None, busy.wait))  # the driver's thread is busy: the BEGIN waits in its queue
        started = asyncio.Event()

        async def write() -> None:
            async with session_factory(engine)() as session:
                started.set()
                await session.execute(text("INSERT INTO t VALUES (1)"))
                await session.commit()

        task = asyncio.create_task(write())
        await started.wait()
        await asyncio.sleep(0.1)
        task.cancel()
        await asyncio.sleep(0.1)
        busy.set()  # the thread goes on: BEGIN IMMEDIATE, then whatever the cancelled task left queued
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.2)
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # timeout=0: fails at once if a pooled connection kept the lock
            other.execute("ROLLBACK")
        finally:
            other.close()
        async with session_factory(engine)() as session:
            assert (await session.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0
    finally:
        await engine.dispose()
