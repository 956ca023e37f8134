"""Fixtures shared by the copy engine's store tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from brokerlink.store.db import Database
from tests.store.conftest import migrated_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated database on each backend (PostgreSQL: a database of its own, dropped afterwards)."""
    async with migrated_database(request, tmp_path) as database:
        yield database
