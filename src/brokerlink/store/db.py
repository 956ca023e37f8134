"""Engines, sessions and the :class:`Database` holder the application keeps for its lifetime.

SQLite (the embedded default) gets a fixed set of PRAGMAs on every new connection and proper
transactions; PostgreSQL gets a pre-pinged pool. Everything above this module works with
``AsyncSession`` and does not care which database is behind it.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.util import await_

from brokerlink.config import Settings
from brokerlink.kit.tasks import where
from brokerlink.logs import get_logger
from brokerlink.store.sqlite_driver import OneTripCursor, OneTripDbapi

# busy_timeout: a writer waits up to 5 s for another writer instead of failing at once.
# synchronous=NORMAL is durable across application crashes in WAL mode (only an OS crash can lose
# the last commits), and much faster than FULL.
_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA busy_timeout=5000",
    "PRAGMA synchronous=NORMAL",
)


SQLITE_POOL_SIZE = 16
"""Connections to one SQLite file, each with its thread; a request waits for one when all are busy."""


def is_sqlite(url: str | URL) -> bool:
    """Whether a database URL names SQLite."""
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:") or url.query.get("uri"):
        return None
    return Path(database)


# Statements that must run inside the transaction: writes, DDL, and SAVEPOINT. WITH is included
# because a CTE may front an INSERT/UPDATE/DELETE; a read-only CTE merely begins a little early.
_NEEDS_TRANSACTION = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER|SAVEPOINT|WITH)\b", re.IGNORECASE)
_BEGUN = "brokerlink.sqlite_begun"
_LAST_WRITE = "brokerlink.sqlite_last_write"
_WRITE_LOCK_TIMEOUT_S = 5.0  # as long as SQLite's own busy timeout
_LONG_HOLD_S = 1.0  # a write transaction open this long is logged: every other writer waited for it

_log = get_logger("brokerlink.store")


class _WriteLock:
    """The process's turn at SQLite's single write lock: writers queue here, first come first served.

    SQLite lets one connection write at a time. Left to SQLite, a writer that finds the lock taken
    sleeps in its busy handler (1, 2, 5, ... up to 100 ms a time) and retries, so under load a
    write waits tens of milliseconds after the lock is free, and the order is a lottery. Within one
    process the writers can queue instead: an :class:`asyncio.Lock` (FIFO) taken just before
    ``BEGIN IMMEDIATE`` and released right after ``COMMIT`` or ``ROLLBACK`` hands the lock on at
    once. Other processes (the CLI) still meet SQLite's busy timeout, as before. The hooks run in
    SQLAlchemy's greenlet on the event loop's thread, so they wait with ``await_``.
    """

    def __init__(self) -> None:
        self._locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        self._holders: dict[int, asyncio.Lock] = {}  # id() of a DBAPI connection holding a lock -> that lock
        # Who holds each lock, and since when: a writer that times out names it (a stall is a bug).
        self._held_by: dict[asyncio.Lock, tuple[asyncio.Task[Any] | None, float, str]] = {}

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            self._locks = {k: v for k, v in self._locks.items() if not k.is_closed()}
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    @staticmethod
    def _key(connection: object) -> int:
        # The hooks see the pool's proxy of a connection (commit, rollback) or the DBAPI one (begin).
        return id(getattr(connection, "dbapi_connection", None) or connection)

    def acquire(self, dbapi_connection: object, statement: str = "") -> None:
        lock = self._lock()

        async def take() -> None:
            async with asyncio.timeout(_WRITE_LOCK_TIMEOUT_S):
                await lock.acquire()

        try:
            await_(take())
        except TimeoutError:
            raise OperationalError(
                "BEGIN IMMEDIATE", None, Exception(f"database is locked ({self._describe_holder(lock)})")
            ) from None
        self._holders[self._key(dbapi_connection)] = lock
        self._held_by[lock] = (asyncio.current_task(), time.monotonic(), statement)

    def release(self, dbapi_connection: object) -> None:
        lock = self._holders.pop(self._key(dbapi_connection), None)
        if lock is not None:
            task, since, statement = self._held_by.pop(lock, (None, 0.0, ""))
            lock.release()
            held_s = time.monotonic() - since
            if held_s > _LONG_HOLD_S:  # every other writer waited that long: say who
                _log.warning(
                    "sqlite_write_lock_held_long",
                    held_s=round(held_s, 3),
                    task=task.get_name() if task is not None else None,
                    first_write=statement[:120],
                )

    def _describe_holder(self, lock: asyncio.Lock) -> str:
        """The task holding ``lock``, since when, its first write, and where the task waits now."""
        task, since, statement = self._held_by.get(lock, (None, time.monotonic(), ""))
        if task is None:
            return "held by no known task"
        now_at = where(task)
        held_s = time.monotonic() - since
        return (
            f"held {held_s:.1f} s by task {task.get_name()}{' (done)' if task.done() else ''}"
            f" since {statement[:120]!r}, now at {now_at}"
        )


def _task_name() -> str | None:
    task = asyncio.current_task()
    return task.get_name() if task is not None else None


def _report_slow_begin(
    records: dict[int, ConnectionPoolEntry], waiter: Any, waited_s: float, *, failed: bool, path: Path | None
) -> None:
    """SQLite's write lock was held by a connection outside this process's queue (another process,
    or one of ours in a transaction nobody owns): list this engine's connections in a transaction,
    with the last write each ran and the task that ran it, so the log says which it was."""
    in_transaction = []
    for record in list(records.values()):
        dbapi_connection = record.dbapi_connection
        driver = getattr(getattr(dbapi_connection, "_connection", None), "_connection", None)
        if dbapi_connection is not waiter and driver is not None and driver.in_transaction:
            in_transaction.append(record.info.get(_LAST_WRITE))
    _log.warning(
        "sqlite_begin_waited",
        waited_s=round(waited_s, 3),
        failed=failed,
        task=_task_name(),
        ours_in_transaction=in_transaction,
        connections=len(records),
        lock_holders=_lock_holders(str(path)) if path else None,
    )


def _lock_holders(path: str) -> list[str] | None:
    """Which processes hold POSIX locks on the database's ``-shm`` file (WAL mode keeps its write lock
    there) and on the file itself, from Linux's ``/proc/locks``: ``pid command`` each, ours marked."""
    try:
        files = [Path(path), Path(f"{path}-shm")]
        inodes = {file.stat().st_ino for file in files if file.exists()}
        lines = Path("/proc/locks").read_text(encoding="ascii").splitlines()
    except OSError:
        return None
    pids: set[int] = set()
    for line in lines:
        fields = line.split()
        # "1: POSIX  ADVISORY  WRITE 1234 08:01:5678 120 120" ("->" marks a waiter: its fields shift)
        posix = len(fields) >= 6 and fields[1] == "POSIX" and fields[4].isdigit()
        if posix and int(fields[5].rsplit(":", 1)[-1]) in inodes:
            pids.add(int(fields[4]))
    holders = []
    for pid in sorted(pids):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            command = raw.replace(b"\0", b" ").decode(errors="replace").strip()[:160]
        except OSError:
            command = "?"
        holders.append(f"{pid}{' (this process)' if pid == os.getpid() else ''} {command}")
    return holders


def _install_write_lock(engine: AsyncEngine) -> _WriteLock:
    """The engine's :class:`_WriteLock`, released whenever a connection's transaction ends: at
    ``COMMIT`` and ``ROLLBACK``, and when a connection is closed, terminated, invalidated or checked
    back in (a cancelled task's connection ends its transaction that way)."""
    write_lock = _WriteLock()
    dialect = engine.sync_engine.dialect
    do_commit, do_rollback, do_close = dialect.do_commit, dialect.do_rollback, dialect.do_close

    def _commit(dbapi_connection: Any) -> None:
        try:
            do_commit(dbapi_connection)
        finally:
            write_lock.release(dbapi_connection)

    def _rollback(dbapi_connection: Any) -> None:
        try:
            do_rollback(dbapi_connection)
        finally:
            write_lock.release(dbapi_connection)

    def _close(dbapi_connection: Any) -> None:
        try:
            do_close(dbapi_connection)
        finally:
            write_lock.release(dbapi_connection)

    def _terminate(dbapi_connection: Any) -> None:  # a connection dropped mid-transaction (a cancelled task)
        try:
            do_terminate(dbapi_connection)
        finally:
            write_lock.release(dbapi_connection)

    # Instance attributes: this engine's dialect only (each engine has its own dialect object).
    do_terminate = dialect.do_terminate
    dialect.do_commit = _commit  # type: ignore[method-assign]
    dialect.do_rollback = _rollback  # type: ignore[method-assign]
    dialect.do_close = _close  # type: ignore[method-assign]
    dialect.do_terminate = _terminate  # type: ignore[method-assign]

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # A connection back in the pool holds no transaction, whatever path it took to get there.
        if dbapi_connection is not None:
            write_lock.release(dbapi_connection)

    @event.listens_for(engine.sync_engine, "invalidate")
    def _on_invalidate(dbapi_connection: Any, _record: ConnectionPoolEntry, _exception: BaseException | None) -> None:
        if dbapi_connection is not None:
            write_lock.release(dbapi_connection)

    return write_lock


def _install_sqlite_hooks(engine: AsyncEngine, *, foreign_keys: bool) -> None:
    """PRAGMAs on every new connection, and transaction control that behaves like PostgreSQL's.

    The sqlite3 driver's own mode starts a transaction at the first INSERT/UPDATE/DELETE only, so a
    SAVEPOINT issued before any write starts a transaction of its own, and releasing it commits
    (``begin_nested`` then silently escapes the rollback), and DDL is never transactional.
    SQLAlchemy's documented fix - BEGIN as soon as the session starts - has the opposite problem
    under concurrency: a transaction that read first holds a snapshot, and once another connection
    commits, its first write fails at once with "database is locked" (no busy wait can help).
    Read-then-write is what nearly every request does, so instead BEGIN IMMEDIATE is emitted lazily,
    right before the first statement that writes (or a SAVEPOINT). Reads before it see the latest
    commit, as under PostgreSQL's READ COMMITTED; writers queue (:class:`_WriteLock`); savepoints nest.
    """
    fk_pragma = f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}"
    write_lock = _install_write_lock(engine)
    path = _sqlite_file(engine.url)

    # The pool's records (a fixed pool: SQLITE_POOL_SIZE of them), for _report_slow_begin.
    records: dict[int, ConnectionPoolEntry] = {}

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        records[id(record)] = record
        dbapi_connection.isolation_level = None  # the driver emits no BEGIN of its own
        cursor = dbapi_connection.cursor()
        try:
            for pragma in (*_SQLITE_PRAGMAS, fk_pragma):
                cursor.execute(pragma)
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # SQLAlchemy's transaction starts here; SQLite's only at the first write (below).
        conn.info[_BEGUN] = False

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _before_execute(
        conn: Connection, cursor: Any, statement: str, _params: Any, _context: Any, _executemany: bool
    ) -> None:
        if conn.in_transaction() and not conn.info.get(_BEGUN, True) and _NEEDS_TRANSACTION.match(statement):
            conn.info[_BEGUN] = True
            # IMMEDIATE: take the write lock now (this process's writers queue in ``write_lock``,
            # other processes' on the busy timeout). A plain BEGIN would let a SAVEPOINT's reads
            # take a snapshot that another writer's commit makes stale, and the first write after
            # it would then fail at once with "database is locked".
            dbapi_connection = conn.connection.dbapi_connection
            write_lock.acquire(dbapi_connection, statement)

            def waited(seconds: float, *, failed: bool) -> None:
                if seconds > _LONG_HOLD_S:
                    _report_slow_begin(records, dbapi_connection, seconds, failed=failed, path=path)

            if isinstance(cursor, OneTripCursor):
                # The BEGIN goes with this statement, in its trip to the driver's thread. If either
                # fails, the rollback that follows releases the write lock (``_install_write_lock``).
                cursor.begin_first(waited)
            else:  # a server-side cursor's statement: BEGIN on a trip of its own
                asked = time.monotonic()
                try:
                    cursor.execute("BEGIN IMMEDIATE")
                except BaseException:
                    write_lock.release(dbapi_connection)
                    waited(time.monotonic() - asked, failed=True)
                    raise
                waited(time.monotonic() - asked, failed=False)
        if conn.info.get(_BEGUN):
            conn.info[_LAST_WRITE] = (statement[:120], _task_name())


def create_engine(url: str | URL, *, echo: bool = False, sqlite_foreign_keys: bool = True) -> AsyncEngine:
    """An async engine for ``url`` (``sqlite+aiosqlite://...`` or ``postgresql+asyncpg://...``).

    SQLite: the database file's directory is created, and every connection runs with WAL, foreign
    keys on, a 5 s busy timeout and ``synchronous=NORMAL``. ``sqlite_foreign_keys=False`` exists
    for migrations only: Alembic's batch mode rebuilds tables, and with foreign keys enforced,
    dropping the old table would cascade-delete the rows that reference it.

    PostgreSQL: a pool that checks connections before use (so a database restart costs one retry,
    not a burst of errors), recycles them after 30 minutes, and runs sessions in UTC.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = _sqlite_file(parsed)
        if path is not None:
            path.expanduser().absolute().parent.mkdir(parents=True, exist_ok=True)
        # One trip to aiosqlite's thread per statement, none for an idle COMMIT (sqlite_driver.py).
        # A file database gets a fixed pool: SQLAlchemy's default (5, plus 10 overflow connections
        # closed whenever 5 are idle) opened and closed a connection - a thread, a file, the PRAGMAs -
        # every few requests under load (ADR 0036). An in-memory one keeps its single connection.
        pooling: dict[str, Any] = {} if path is None else {"pool_size": SQLITE_POOL_SIZE, "max_overflow": 0}
        engine = create_async_engine(parsed, echo=echo, module=OneTripDbapi(), **pooling)
        _install_sqlite_hooks(engine, foreign_keys=sqlite_foreign_keys)
        return engine
    connect_args: dict[str, Any] = {}
    if parsed.get_driver_name() == "asyncpg":
        connect_args["server_settings"] = {"application_name": "brokerlink", "timezone": "UTC"}
    return create_async_engine(
        parsed,
        echo=echo,
        pool_size=10,
        max_overflow=10,
        pool_timeout=30,
        pool_recycle=1800,
        pool_pre_ping=True,
        connect_args=connect_args,
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """A session factory whose objects stay readable after commit (``expire_on_commit=False``).

    Without it, touching an attribute after commit would issue a lazy refresh, which async
    sessions cannot do implicitly.
    """
    return async_sessionmaker(engine, expire_on_commit=False)


class Database:
    """The engine and session factory of one database, kept by the application for its lifetime."""

    def __init__(self, url: str | URL, *, echo: bool = False, ping_timeout: float = 2.0) -> None:
        self.url = make_url(url)
        self.ping_timeout = ping_timeout
        self.engine = create_engine(self.url, echo=echo)
        self.sessionmaker = session_factory(self.engine)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        """The database the settings name (``effective_database_url``, ``db_echo``)."""
        return cls(settings.effective_database_url, echo=settings.db_echo)

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.url.get_backend_name()

    def session(self) -> AsyncSession:
        """A new session. Use as ``async with db.session() as session:``; commit at the boundary."""
        return self.sessionmaker()

    async def ping(self) -> bool:
        """Whether the database answers ``SELECT 1`` within ``ping_timeout`` seconds (readiness probe)."""
        try:
            async with asyncio.timeout(self.ping_timeout), self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError, TimeoutError):
            return False
        return True

    async def dispose(self) -> None:
        """Close every pooled connection. Call once at shutdown."""
        await self.engine.dispose()
