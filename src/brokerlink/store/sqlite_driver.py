"""SQLite through SQLAlchemy and aiosqlite, with one trip to the driver's thread per statement (ADR 0036).

aiosqlite runs each sqlite3 call on a thread of its own and hands the result back to the event
loop: a queue put, a thread wake-up, a future resolved with ``call_soon_threadsafe`` and the loop's
self-pipe. That round trip costs ~50 µs of CPU here. SQLAlchemy's adapter makes four of them for
one statement (open a cursor, execute, fetch all, close the cursor), and two more per request for
``COMMIT`` and the pool's ``ROLLBACK`` on check-in even when no transaction is open (brokerlink runs
the driver in autocommit mode and begins ``BEGIN IMMEDIATE`` only before the first write, see
:func:`brokerlink.store.db._install_sqlite_hooks`): six trips for a request that reads one row.

This adapter keeps SQLAlchemy's and changes these things:

- a statement is one trip: the cursor is opened, executed, drained and closed in the driver's
  thread, and what SQLAlchemy reads afterwards (``description``, ``rowcount``, ``lastrowid``, the
  rows) comes back with it;
- ``commit()`` and ``rollback()`` make no trip when SQLite has no transaction open (sqlite3's own
  ``commit`` and ``rollback`` do nothing then either; they only find out in the thread);
- a transaction's ``BEGIN IMMEDIATE`` (issued by the write hook before the first write) runs in the
  same trip as that write (:meth:`OneTripCursor.begin_first`): a write transaction of one statement
  is two trips, the statement and ``COMMIT``;
- a ``SELECT`` makes no trip at all: it runs on the event loop's thread, with a budget
  (:data:`INLINE_READ_BUDGET_S`, checked every :data:`INLINE_CHECK_EVERY` SQLite VM instructions).
  One that is still running when the budget is spent is interrupted and run again on the driver's
  thread, so a report or a scan never holds the loop longer than the budget (ADR 0042). A read
  cannot wait on a lock in WAL mode, so the loop never sleeps on one; writes, ``BEGIN``,
  ``COMMIT`` and ``ROLLBACK``, which can, stay on the thread.

Server-side cursors (``stream_results``) keep SQLAlchemy's behaviour. Installed by
:func:`brokerlink.store.db.create_engine` for every SQLite engine via ``create_async_engine(module=...)``.

It reaches into both libraries' internals (aiosqlite's ``_execute`` queue and ``_connection``,
SQLAlchemy's adapter slots), which is why both are pinned exactly; every database test runs through
it, and ``tests/store/test_sqlite_driver.py`` pins the trips.
"""

# ruff: noqa: SLF001 - an adapter between two libraries' internals (module docstring)

from __future__ import annotations

import collections
import sqlite3
import time
from typing import Any, Protocol, cast

import aiosqlite
from sqlalchemy.connectors.asyncio import AsyncAdapt_dbapi_connection
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util.concurrency import await_

__all__ = ["OneTripDbapi"]

_Result = tuple[Any, int, int | None, list[Any]]

INLINE_READ_BUDGET_S = 0.0005
"""How long a ``SELECT`` may run on the event loop's thread before it moves to the driver's (ADR 0042)."""
INLINE_CHECK_EVERY = 1000
"""SQLite VM instructions between two looks at the clock during an inline read (~25-100 µs of work)."""


class BeginWaited(Protocol):
    """Told how long a trip that began a transaction took, and whether it failed."""

    def __call__(self, seconds: float, *, failed: bool) -> None: ...


def _run(
    connection: aiosqlite.Connection, operation: str, parameters: Any, *, many: bool, begin: bool = False
) -> _Result:
    if begin:  # a transaction's first write: its BEGIN IMMEDIATE rides on the same trip
        connection._conn.execute("BEGIN IMMEDIATE")
    cursor = connection._conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        # After the rows: a DML statement with RETURNING counts its rows as they are fetched.
        return description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


def _run_inline(connection: aiosqlite.Connection, operation: str, parameters: Any) -> _Result | None:
    """Run a ``SELECT`` on the calling thread, or give up (``None``) once it has run ``INLINE_READ_BUDGET_S``.

    SQLite calls the progress handler every ``INLINE_CHECK_EVERY`` VM instructions; a non-zero
    answer interrupts the statement (``SQLITE_INTERRUPT``), which for a ``SELECT`` changes nothing:
    an open transaction stays open with its writes (SQLite rolls back only an interrupted write).
    """
    driver = connection._conn
    deadline = time.perf_counter() + INLINE_READ_BUDGET_S
    spent = False

    def over_budget() -> bool:
        nonlocal spent
        spent = time.perf_counter() > deadline
        return spent

    driver.set_progress_handler(over_budget, INLINE_CHECK_EVERY)
    try:
        return _run(connection, operation, parameters, many=False)
    except sqlite3.OperationalError:
        if spent:
            return None
        raise
    finally:
        driver.set_progress_handler(None, 0)


def _is_select(operation: Any) -> bool:
    return isinstance(operation, str) and operation[:6].upper() == "SELECT"


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A client-side cursor: a write is one trip to aiosqlite's thread, a read none (module docstring)."""

    __slots__ = ("_arraysize", "_begin_first", "_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: AsyncAdapt_dbapi_connection) -> None:
        # No sqlite3 cursor is opened here (SQLAlchemy's opens one: a trip): each statement opens its own.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = {}  # type: ignore[assignment]
        self._rows = collections.deque()
        self._description: Any = None
        self._begin_first: BeginWaited | None = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self._arraysize = 1

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]  # None before an INSERT, as sqlite3's

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    async def _async_soft_close(self) -> None:
        """Nothing to close: the statement's cursor closed in the driver's thread."""

    def close(self) -> None:
        self._rows.clear()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        try:
            await_(self._statement(operation, parameters, many=False))
        except Exception as error:  # noqa: BLE001 - translated to the DBAPI's errors, as SQLAlchemy's adapter does
            self._adapt_connection._handle_exception(error)
        return self

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        try:
            await_(self._statement(operation, seq_of_parameters, many=True))
        except Exception as error:  # noqa: BLE001 - as above
            self._adapt_connection._handle_exception(error)
        return self

    def begin_first(self, waited: BeginWaited) -> None:
        """Run ``BEGIN IMMEDIATE`` in the next statement's trip, before it: one round trip fewer for every
        write transaction. ``waited(seconds, failed)`` is told how long the trip took (a BEGIN that
        waited on another connection's lock shows there)."""
        self._begin_first = waited

    async def _statement(self, operation: Any, parameters: Any, *, many: bool) -> None:
        waited, self._begin_first = self._begin_first, None
        begin = waited is not None
        if not begin and not many and _is_select(operation) and not self._adapt_connection._execute_mutex.locked():
            inline = _run_inline(cast("aiosqlite.Connection", self._connection), operation, parameters)
            if inline is not None:
                self._description, self._rowcount, self._lastrowid, rows = inline
                self._rows = collections.deque(rows)
                return
        started = time.monotonic() if begin else 0.0
        try:
            async with self._adapt_connection._execute_mutex:
                result: _Result = await self._connection._execute(
                    _run, self._connection, operation, parameters, many=many, begin=begin
                )
        except BaseException:
            if waited is not None:
                waited(time.monotonic() - started, failed=True)
            raise
        if waited is not None:
            waited(time.monotonic() - started, failed=False)
        self._description, self._rowcount, self._lastrowid, rows = result
        self._rows = collections.deque(rows)

    def nextset(self) -> None:
        raise self._adapt_connection.dbapi.NotSupportedError("sqlite3 has one result set per statement")

    def setinputsizes(self, *inputsizes: Any) -> None:
        """A no-op, as in sqlite3."""


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    """SQLAlchemy's aiosqlite connection with :class:`OneTripCursor` and no trip for an idle ``COMMIT``/``ROLLBACK``."""

    __slots__ = ()

    _cursor_cls = OneTripCursor

    def _idle(self) -> bool:
        # sqlite3_get_autocommit(): no BEGIN in force. Read on the loop's thread while no statement of
        # this connection runs (SQLAlchemy awaits each one), so it cannot change underneath.
        driver: sqlite3.Connection | None = self._connection._connection
        return driver is not None and not driver.in_transaction

    def commit(self) -> None:
        if not self._idle():
            super().commit()

    def rollback(self) -> None:
        if not self._idle():
            super().rollback()


class OneTripDbapi(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module SQLAlchemy's aiosqlite dialect is given, making :class:`OneTripConnection` s."""

    def __init__(self) -> None:
        super().__init__(aiosqlite, sqlite3)

    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        # Reads run on the loop's thread, everything else on aiosqlite's: never both at once (a
        # connection serves one statement at a time; a read that finds the mutex held takes the thread's path).
        kw["check_same_thread"] = False
        adapted = super().connect(*arg, **kw)
        return OneTripConnection(self, adapted._connection)
