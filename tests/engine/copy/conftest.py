"""Fixtures shared by the copy engine's store tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from brokerlink.store.db import Database
from brokerlink.store.migrate import upgrade
from tests.backends import mark_backend


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated database on each backend (PostgreSQL: a database of its own, dropped afterwards)."""
    if request.param == "sqlite":
        mark_backend(request, "sqlite")
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
        await upgrade(url)
        database = Database(url)
        yield database
        await database.dispose()
        return
    from tests.store.conftest import _pg_database

    mark_backend(request, "postgresql")
    async with _pg_database(str(request.getfixturevalue("postgres_url"))) as url:
        await upgrade(url)
        database = Database(url)
        yield database
        await database.dispose()
