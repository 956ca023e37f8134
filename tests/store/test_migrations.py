"""Migrations: they build exactly the schema the models describe, and they run down and up again."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
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
            for value in sql[sql.index("(") + 1 : sql.rindex(")")].split(", "):
                assert value.strip("'") in found[table.name][name], (table.name, name, value)


async def test_revision_is_head_after_upgrade(database_url: str) -> None:
    assert head_revision() == "0018"  # 0007-0015: issues 6, 9, 5; 0016 copy SL/TP (4); 0017-0018 webhooks (8)
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
