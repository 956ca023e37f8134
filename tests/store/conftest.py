"""Fixtures for the storage contract tests: every test that uses them runs on SQLite and PostgreSQL.

SQLite gets a fresh file under ``tmp_path`` for every test. PostgreSQL gets databases with unique
names, created through an admin connection to the server's ``postgres`` database and dropped at
the end, so runs can share a server. Creating a PostgreSQL database costs about 0.3 s, so the
migrated one is created once per test run and emptied before each test (TRUNCATE, with the event
log's append-only triggers switched off for that one transaction); tests that need a database
never migrated (``blank_url``) still get their own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from brokerlink.store.db import Database, create_engine, is_sqlite, session_factory
from brokerlink.store.migrate import upgrade
from brokerlink.store.models import Base
from tests.backends import mark_backend

BACKENDS = ["sqlite", "postgresql"]

# PostgreSQL server URL -> name of the database on it that this run migrated, shared by its tests.
_migrated: dict[str, str] = {}


def _unique_name() -> str:
    return f"brokerlink_test_{uuid.uuid4().hex[:16]}"


def _url_of(server: URL, database: str) -> str:
    return server.set(database=database).render_as_string(hide_password=False)


async def _admin(server: URL, sql: str) -> None:
    admin = create_async_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with admin.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await admin.dispose()


@asynccontextmanager
async def _pg_database(server_url: str) -> AsyncIterator[str]:
    server = make_url(server_url)
    name = _unique_name()
    try:
        await _admin(server, f'CREATE DATABASE "{name}"')
        yield _url_of(server, name)
    finally:
        await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def migrated_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A freshly migrated :class:`Database` on ``request.param`` (``"sqlite"``: a file in ``tmp_path``;
    ``"postgresql"``: a database of its own on the test server, dropped afterwards), marked for the
    backend report. For fixtures parametrized over both backends."""
    if request.param == "sqlite":
        mark_backend(request, "sqlite")
        async with _upgraded(f"sqlite+aiosqlite:///{tmp_path / 'test.db'}") as database:
            yield database
        return
    async with _pg_database(str(request.getfixturevalue("postgres_url"))) as url, _upgraded(url) as database:
        yield database


@asynccontextmanager
async def _upgraded(url: str) -> AsyncIterator[Database]:
    """A :class:`Database` on ``url`` after migrating it to the head, disposed afterwards."""
    await upgrade(url)
    database = Database(url)
    try:
        yield database
    finally:
        await database.dispose()


async def _migrated_pg_database(server_url: str) -> str:
    server = make_url(server_url)
    if server_url not in _migrated:
        name = _unique_name()
        await _admin(server, f'CREATE DATABASE "{name}"')
        _migrated[server_url] = name
        await upgrade(_url_of(server, name))
    return _url_of(server, _migrated[server_url])


async def _empty(url: str) -> None:
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            # Only the table owner can do this, and only here: the triggers are back on at COMMIT.
            await conn.execute(text("ALTER TABLE event_log DISABLE TRIGGER USER"))
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY"))
            await conn.execute(text("ALTER TABLE event_log ENABLE TRIGGER USER"))
    finally:
        await engine.dispose()


async def _drop_migrated() -> None:
    for server_url, name in _migrated.items():
        await _admin(make_url(server_url), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _migrated.clear()


@pytest.fixture(scope="session")
def _drop_databases_at_exit() -> Iterator[None]:
    yield
    if _migrated:
        asyncio.run(_drop_migrated())


@pytest.fixture(params=BACKENDS)
def server_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the backend lives: a SQLite file URL, or the PostgreSQL server's URL (which may skip)."""
    if request.param == "sqlite":
        mark_backend(request, "sqlite")
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    # Only this branch asks for postgres_url, so SQLite runs never skip for want of a server.
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def blank_url(server_url: str) -> AsyncIterator[str]:
    """URL of an empty, never migrated database on the test's backend."""
    if is_sqlite(server_url):
        yield server_url
        return
    async with _pg_database(server_url) as url:
        yield url


@pytest.fixture
async def database_url(server_url: str, _drop_databases_at_exit: None) -> str:
    """URL of an empty database migrated to head with the packaged migrations."""
    if is_sqlite(server_url):
        await upgrade(server_url)
        return server_url
    url = await _migrated_pg_database(server_url)
    await _empty(url)  # before, not after: a test that died mid-way leaves nothing to the next one
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the migrated database, disposed after the test."""
    engine = create_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """The session factory, for tests that need several sessions (concurrency, commit boundaries)."""
    return session_factory(engine)


@pytest.fixture
async def session(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One session; whatever the test did not commit is rolled back."""
    async with sessions() as session:
        yield session
