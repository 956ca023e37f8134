"""Migrations: they build exactly the schema the models describe, and they run down and up again."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from brokerlink.store.db import create_engine
from brokerlink.store.migrate import alembic_config, current_revision, downgrade, head_revision, upgrade, upgrade_sync
from brokerlink.store.models import Base


def _diff(conn: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def _check_constraints(conn: Connection) -> dict[str, dict[str, str]]:
    inspector = inspect(conn)
    return {
        table: {str(ck["name"]): str(ck["sqltext"]) for ck in inspector.get_check_constraints(table)}
        for table in Base.metadata.tables
    }


async def test_migrated_schema_matches_the_models(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        assert await conn.run_sync(_diff) == []


async def test_check_constraints_match_the_models(engine: AsyncEngine) -> None:
    # Autogenerate does not compare CHECK constraints, so enum drift is caught here instead.
    async with engine.connect() as conn:
        found = await conn.run_sync(_check_constraints)
    for table in Base.metadata.tables.values():
        expected = {
            str(c.name): str(c.sqltext)
            for c in table.constraints
            if c.__class__.__name__ == "CheckConstraint" and c.name is not None
        }
        assert set(found[table.name]) == set(expected), table.name
        for name, sql in expected.items():
            for value in re.findall(r"'([^']*)'", sql) or re.findall(r"\d+", sql):
                assert value in found[table.name][name], (table.name, name, value)


async def test_revision_is_head_after_upgrade(database_url: str) -> None:
    # 0007-0015: issues 6, 9, 5; 0016 copy SL/TP (4); 0017-0018 webhooks (8); 0019 CHECKs (ADR 0039)
    assert head_revision() == "0019"
    assert await current_revision(database_url) == head_revision()


async def test_downgrade_to_base_and_upgrade_again(blank_url: str) -> None:
    database_url = blank_url
    await upgrade(database_url)
    await downgrade(database_url, "base")
    assert await current_revision(database_url) is None
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) <= {"alembic_version"}
        await upgrade(database_url)
        assert await current_revision(database_url) == head_revision()
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == {*Base.metadata.tables, "alembic_version"}
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


async def test_upgrade_is_idempotent(blank_url: str) -> None:
    await upgrade(blank_url)
    await upgrade(blank_url)
    assert await current_revision(blank_url) == head_revision()


async def test_fresh_database_has_no_revision(blank_url: str) -> None:
    assert await current_revision(blank_url) is None


def test_upgrade_sync_for_callers_without_a_loop(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    upgrade_sync(url)
    assert (tmp_path / "cli.db").exists()


@pytest.mark.parametrize("url", ["sqlite+aiosqlite://", "postgresql+asyncpg://u@localhost/db"], ids=["sqlite", "pg"])
def test_offline_sql_includes_the_append_only_triggers(url: str) -> None:
    # `alembic upgrade --sql`: a DBA can review or apply the DDL by hand, triggers included.
    buffer = io.StringIO()
    config = alembic_config(url)
    config.output_buffer = buffer
    command.upgrade(config, "head", sql=True)
    sql = buffer.getvalue()
    assert "CREATE TABLE event_log" in sql
    assert "event_log is append-only" in sql


def _inserts_opening_ephemeral_tables(conn: Connection) -> list[str]:
    found = []
    for table in Base.metadata.tables.values():
        columns = ", ".join(f'"{c.name}"' for c in table.columns)
        marks = ", ".join("?" for _ in table.columns)
        sql = f'EXPLAIN INSERT INTO "{table.name}" ({columns}) VALUES ({marks})'  # noqa: S608 - our own table names
        program = conn.exec_driver_sql(sql, tuple(None for _ in table.columns)).fetchall()
        if any(row[1] == "OpenEphemeral" for row in program):
            found.append(table.name)
    return found


async def test_no_insert_builds_an_ephemeral_index_for_its_checks(tmp_path: Path) -> None:
    """SQLite compiles ``CHECK (x IN ('a', 'b', 'c'))`` into an ephemeral index built again for every
    row written (~4 µs each); after 0019 every enum CHECK is an ``OR`` chain, compared in place.
    (An SQLite query plan: PostgreSQL checks IN lists in place, and 0019 leaves it alone.)"""
    url = f"sqlite+aiosqlite:///{tmp_path / 'plans.db'}"
    await upgrade(url)
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_inserts_opening_ephemeral_tables) == []
    finally:
        await engine.dispose()


async def test_the_rewritten_checks_still_refuse_what_is_not_an_enum_value(engine: AsyncEngine) -> None:
    insert = text(
        "INSERT INTO alerts (id, rule, severity, subject, dedup_key, status, message, labels, count,"
        " first_seen, last_seen) VALUES (:id, 'r', 'warning', 's', :id, :status, 'm', '{}', 1, :now, :now)"
    )
    when = datetime(2026, 11, 22, tzinfo=UTC)
    now = str(when) if engine.dialect.name == "sqlite" else when  # raw SQL: SQLite takes the text
    async with engine.connect() as conn:
        for status in ("OPEN", "", "open OR 1", "opened"):
            with pytest.raises(IntegrityError, match=r"(?i)check"):
                await conn.execute(insert, {"id": "alr_bad", "status": status, "now": now})
            await conn.rollback()
        await conn.execute(insert, {"id": "alr_null", "status": "acknowledged", "now": now})
        await conn.execute(text("UPDATE alerts SET status = 'resolved' WHERE id = 'alr_null'"))
        with pytest.raises(IntegrityError, match=r"(?i)check"):
            await conn.execute(text("UPDATE alerts SET status = 'gone' WHERE id = 'alr_null'"))
        await conn.rollback()


def _sqlite_check_texts(conn: Connection) -> dict[str, str]:
    return dict(conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall())


async def test_0019_rewrites_only_the_check_texts_and_back(tmp_path: Path) -> None:
    blank_url = f"sqlite+aiosqlite:///{tmp_path / 'rewrite.db'}"  # SQLite's schema text: 0019 leaves PostgreSQL alone
    await upgrade(blank_url, "0018")
    engine = create_engine(blank_url)
    try:
        async with engine.connect() as conn:
            before = await conn.run_sync(_sqlite_check_texts)
        await upgrade(blank_url, "0019")
        async with engine.connect() as conn:
            after = await conn.run_sync(_sqlite_check_texts)
            assert (await conn.exec_driver_sql("PRAGMA integrity_check")).scalars().all() == ["ok"]
        assert after.keys() == before.keys()
        changed = {name for name in before if before[name] != after[name]}
        assert {"orders", "copy_intents", "copy_links", "copy_events", "alerts", "ledger_accounts"} <= changed
        for name in changed:
            assert " IN ('" in before[name], name
            assert " IN ('" not in after[name], name
            # Nothing but the CHECKs: the same text once both spell them the same way.
            assert re.sub(r"CHECK \(.*?\)[,\n]", "", before[name]) == re.sub(r"CHECK \(.*?\)[,\n]", "", after[name])
        await downgrade(blank_url, "0018")
        async with engine.connect() as conn:
            assert await conn.run_sync(_sqlite_check_texts) == before
    finally:
        await engine.dispose()
