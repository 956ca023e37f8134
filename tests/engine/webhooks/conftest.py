"""Fixtures for the webhook engine tests: a migrated database (SQLite and PostgreSQL), a user with an
account, a real HTTP receiver on 127.0.0.1 (shared by the module), and services on a manual clock."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from pydantic import SecretStr
from sqlalchemy import text

from brokerlink.bus.memory import MemoryEventBus
from brokerlink.config import Settings
from brokerlink.engine.webhooks.service import WebhookService
from brokerlink.engine.webhooks.signing import verify
from brokerlink.kit.clock import ManualClock
from brokerlink.security.vault import LocalKeyFile, Vault
from brokerlink.store.db import Database
from brokerlink.store.migrate import upgrade
from brokerlink.store.models import AccountRow, BrokerConnectionRow, UserRow
from tests.backends import mark_backend
from tests.conftest import _service_url
from tests.contract.harness import free_port
from tests.store.conftest import _pg_database

START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


@dataclass
class Receiver:
    """A webhook receiver: answers ``statuses`` in turn (then 204), verifies signatures, dedupes by id."""

    secret: str = ""
    statuses: list[int] = field(default_factory=list)
    always: int | None = None
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    processed: dict[str, bytes] = field(default_factory=dict)
    bad_signatures: int = 0

    def reset(self, secret: str = "") -> None:
        self.secret, self.statuses, self.always = secret, [], None
        self.requests, self.processed, self.bad_signatures = [], {}, 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.requests.append((headers, body))
        status = 401
        if verify(self.secret, headers, body):
            self.processed.setdefault(headers["webhook-id"], body)
            status = self.always or (self.statuses.pop(0) if self.statuses else 204)
        else:
            self.bad_signatures += 1
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    """A real HTTP receiver (uvicorn) on a loopback port."""
    app = Receiver()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on", timeout_graceful_shutdown=1)
    )
    task = asyncio.create_task(server.serve())
    for _ in range(200):  # bounded: 10 s
        if server.started:
            break
        await asyncio.sleep(0.05)
    assert server.started
    yield app, f"http://127.0.0.1:{port}/hooks"
    server.should_exit = True
    await asyncio.wait_for(task, timeout=10)


def webhook_settings(tmp_path: Path, **changes: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path,
        "environment": "test",
        "secret_key": SecretStr("test-secret-key-that-is-long-enough-0123456789"),
        "webhook_allowed_hosts": ["127.0.0.1"],
        "webhook_timeout_s": 5.0,
        "webhook_poll_s": 3600.0,  # the tests drive polls themselves
    }
    return Settings(**(values | changes))  # type: ignore[arg-type]


@dataclass
class World:
    database: Database
    bus: MemoryEventBus
    vault: Vault
    clock: ManualClock
    tmp_path: Path
    made: list[WebhookService] = field(default_factory=list)

    def service(self, **changes: object) -> WebhookService:
        service = WebhookService(
            self.database, self.bus, self.vault, self.clock, webhook_settings(self.tmp_path, **changes)
        )
        self.made.append(service)
        return service


ServiceFactory = Callable[..., WebhookService]


_TABLES = (
    "webhook_attempts", "webhook_deliveries", "webhook_endpoints", "webhook_cursors", "vault_secrets",
    "accounts", "broker_connections", "oauth_clients", "users",
)  # fmt: skip


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def migrated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """One migrated database per module and backend (migrating per test costs seconds on PostgreSQL):
    SQLite as a template file each test copies, PostgreSQL as a database each test empties first."""
    loop = asyncio.new_event_loop()
    try:
        if request.param == "sqlite":
            template = tmp_path_factory.mktemp("webhooks") / "template.db"
            loop.run_until_complete(upgrade(f"sqlite+aiosqlite:///{template}"))
            yield "sqlite", str(template)
            return
        server = _service_url("BROKERLINK_TEST_POSTGRES_URL", "PostgreSQL")
        context = _pg_database(server)
        url = loop.run_until_complete(context.__aenter__())
        try:
            loop.run_until_complete(upgrade(url))
            yield "postgresql", url
        finally:
            loop.run_until_complete(context.__aexit__(None, None, None))
    finally:
        loop.close()


@pytest.fixture
async def database(
    migrated: tuple[str, str], request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Database]:
    backend, where = migrated
    mark_backend(request, backend)
    if backend == "sqlite":
        shutil.copy(where, tmp_path / "webhooks.db")
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'webhooks.db'}")
    else:
        db = Database(where)
        async with db.session() as session:
            for table in _TABLES:
                await session.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - fixed table names
            await session.commit()
    yield db
    await db.dispose()


@pytest.fixture
async def world(database: Database, tmp_path: Path) -> AsyncIterator[World]:
    async with MemoryEventBus() as bus:
        made = World(database, bus, Vault(LocalKeyFile(tmp_path / "vault-keys.json")), ManualClock(START), tmp_path)
        yield made
        for service in made.made:
            await service.stop()


async def add_user_with_account(database: Database, name: str) -> tuple[str, str]:
    """A user and one linked account of theirs: ``(user_id, account_id)``."""
    user_id, connection_id, account_id = f"usr_{name}", f"con_{name}", f"acc_{name}"
    async with database.session() as session:
        session.add(
            UserRow(
                id=user_id,
                email=f"{name}@example.com",
                display_name=name,
                password_hash="x",
                role="user",
                is_active=True,
                created_at=START,
                updated_at=START,
                last_login_at=None,
            )
        )
        await session.flush()
        session.add(
            BrokerConnectionRow(
                id=connection_id, user_id=user_id, broker="sim", label=name, status="connected",
                credentials_ref=None, created_at=START, updated_at=START,
            )
        )  # fmt: skip
        await session.flush()
        session.add(
            AccountRow(
                id=account_id, user_id=user_id, connection_id=connection_id, venue_account_id=f"V-{name}",
                name=name, currency="USD", mode="netting", created_at=START, updated_at=START,
            )
        )  # fmt: skip
        await session.commit()
    return user_id, account_id
