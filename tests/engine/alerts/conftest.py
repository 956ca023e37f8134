"""Fixtures for the alert tests: a migrated database on SQLite and on PostgreSQL, and a running alert service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from brokerlink.bus.memory import MemoryEventBus
from brokerlink.config import Settings
from brokerlink.engine.alerts.service import AlertService
from brokerlink.kit.clock import Clock, SystemClock
from brokerlink.security.vault import LocalKeyFile, Vault
from brokerlink.store.db import Database
from tests.store.conftest import migrated_database

ServiceFactory = Callable[..., AlertService]


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A freshly migrated database, on SQLite and (a database of its own) on PostgreSQL."""
    async with migrated_database(request, tmp_path) as database:
        yield database


def alert_settings(tmp_path: Path, **changes: object) -> Settings:
    """Settings for an alert service under test: webhooks to loopback allowed, fast retries."""
    values: dict[str, object] = {
        "data_dir": tmp_path,
        "environment": "test",
        "secret_key": SecretStr("test-secret-key-that-is-long-enough-0123456789"),
        "alert_webhook_allow_loopback": True,
        "alert_webhook_backoff_s": 0.01,
        "alert_webhook_backoff_cap_s": 0.05,
        "alert_webhook_timeout_s": 5.0,
        "alert_tick_s": 0.05,
    }
    return Settings(**(values | changes))  # type: ignore[arg-type]


@pytest.fixture
async def make_service(tmp_path: Path, bus: MemoryEventBus) -> AsyncIterator[Callable[..., AlertService]]:
    """``make_service(database, clock=..., **settings)``: a started alert service; all are stopped at the end."""
    made: list[AlertService] = []
    vault = Vault(LocalKeyFile(tmp_path / "vault-keys.json"))

    def factory(database: Database, *, clock: Clock | None = None, **changes: object) -> AlertService:
        service = AlertService(database, bus, vault, clock or SystemClock(), alert_settings(tmp_path, **changes))
        made.append(service)
        return service

    yield factory
    for service in made:
        await service.stop()
