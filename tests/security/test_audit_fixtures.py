"""Fixtures and helpers shared by the audit trail tests (no tests here).

``audit_url`` / ``audit_db``: a migrated database on SQLite (a fresh file) and on PostgreSQL (the
run's shared migrated database, emptied first, as tests/store/conftest.py does it). ``tampering``
switches the append-only triggers off for one transaction, as an attacker with the table owner's
rights (or the file) could; on PostgreSQL they are back on at the end.

Fixtures carry explicit names, so a test module imports the functions (``audit_db_fixture``) and
its tests ask for ``audit_db``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from brokerlink.security.audit import Actor, AuditContext, record
from brokerlink.security.audit_sign import AuditSigner
from brokerlink.store.db import Database
from brokerlink.store.migrate import upgrade
from tests.backends import mark_backend
from tests.store.conftest import _drop_migrated, _empty, _migrated_pg_database

__all__ = ["T0", "audit_db_fixture", "audit_pg_cleanup", "audit_url_fixture", "seed", "signer_fixture", "tampering"]

T0 = datetime(2026, 3, 2, 9, 30, 0, 120000, tzinfo=UTC)
_SQLITE_TRIGGERS = ("audit_records_no_update", "audit_records_no_delete", "audit_checkpoints_no_update",
                    "audit_checkpoints_no_delete")  # fmt: skip


@pytest.fixture(scope="session", name="_audit_pg_cleanup")
def audit_pg_cleanup() -> Iterator[None]:
    """At the end of the run, drop the PostgreSQL databases migrated for it (as tests/store does)."""
    yield
    asyncio.run(_drop_migrated())


@pytest.fixture(params=["sqlite", "postgresql"], name="audit_url")
async def audit_url_fixture(request: pytest.FixtureRequest, tmp_path: Path, _audit_pg_cleanup: None) -> str:
    """A migrated, empty database: a SQLite file, or the run's PostgreSQL database."""
    if request.param == "sqlite":
        mark_backend(request, "sqlite")
        url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
        await upgrade(url)
        return url
    url = await _migrated_pg_database(str(request.getfixturevalue("postgres_url")))
    await _empty(url)
    return url


@pytest.fixture(name="audit_db")
async def audit_db_fixture(audit_url: str) -> AsyncIterator[Database]:
    db = Database(audit_url)
    yield db
    await db.dispose()


@pytest.fixture(name="signer")
def signer_fixture(tmp_path: Path) -> AuditSigner:
    """A signing key in the test's data dir (where the CLI's ``--data-dir tmp_path`` finds it)."""
    return AuditSigner(tmp_path / "audit-signing-key.json")


async def seed(db: Database, n: int, *, start: datetime = T0, step: timedelta = timedelta(minutes=1)) -> list[int]:
    """``n`` records, one committed transaction each, a minute apart from ``start``; their sequences."""
    sequences = []
    for i in range(n):
        async with db.session() as session:
            seq = await record(
                session,
                actor=Actor(kind="user" if i % 3 else "system", id=f"usr_{i % 4}"),
                action=("auth.login", "order.place", "connection.link")[i % 3],
                target=f"tgt_{i}",
                now=start + i * step,
                outcome=("success", "failure", "denied")[i % 3],
                context=AuditContext(request_id=f"req_{i}", source_ip="203.0.113.7"),
                details={"n": i, "note": "caf\u00e9", "flag": i % 2 == 0, "none": None},
            )
            await session.commit()
            sequences.append(seq)
    return sequences


@asynccontextmanager
async def tampering(db: Database) -> AsyncIterator[AsyncConnection]:
    """One transaction with the audit tables' triggers off (SQLite: dropped for good; PostgreSQL: disabled)."""
    async with db.engine.begin() as conn:
        if db.dialect == "sqlite":
            for name in _SQLITE_TRIGGERS:
                await conn.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
            yield conn
        else:
            await conn.execute(text("ALTER TABLE audit_records DISABLE TRIGGER USER"))
            await conn.execute(text("ALTER TABLE audit_checkpoints DISABLE TRIGGER USER"))
            yield conn
            await conn.execute(text("ALTER TABLE audit_records ENABLE TRIGGER USER"))
            await conn.execute(text("ALTER TABLE audit_checkpoints ENABLE TRIGGER USER"))
