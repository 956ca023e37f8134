"""One running app per module and backend (SQLite, PostgreSQL), shared by the module's tests.

Starting an app migrates a database, so the authorization server tests share one per module: every
test makes its own clients, users and codes, so they do not see each other's rows. The clock is
shared too; a test that moves it only moves it forward, and every time the tests compute is
relative to ``clock.now()``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from litestar import Litestar
from pydantic import SecretStr

from brokerlink.app.factory import create_app
from brokerlink.config import Settings
from brokerlink.kit.clock import ManualClock
from brokerlink.kit.ids import new_id
from brokerlink.store.db import Database
from brokerlink.store.models import UserRow
from tests.api.oauth.support import ISSUER, Dpop, TestClient, app_db, create_client
from tests.api.support import asgi_client, running
from tests.backends import mark_backend
from tests.store.conftest import _pg_database


@dataclass
class Server:
    """A running app, its HTTP client, database and clock."""

    app: Litestar
    http: httpx.AsyncClient
    db: Database
    clock: ManualClock
    backend: str

    async def user(self) -> str:
        """A new user row (consents need one); no password: nobody signs in as it here."""
        user_id = new_id("usr")
        async with self.db.session() as session:
            session.add(
                UserRow(
                    id=user_id, email=f"{user_id.lower()}@example.com", display_name="Test", password_hash="x",
                    role="user", is_active=True, created_at=self.clock.now(), updated_at=self.clock.now(),
                    last_login_at=None,
                )
            )  # fmt: skip
            await session.commit()
        return user_id

    async def client(self, **kwargs: object) -> TestClient:
        return await create_client(self.db, self.clock, **kwargs)  # type: ignore[arg-type]

    def dpop(self) -> Dpop:
        return Dpop(self.clock)


def oauth_settings(tmp: Path, database_url: str | None = None, **changes: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp,
        "database_url": database_url,
        "environment": "test",
        "secret_key": SecretStr("test-secret-key-that-is-long-enough-0123456789"),
        "log_level": "warning",
        "log_format": "console",
        "rate_limit_ip": "100000/second",
        "rate_limit_user": "100000/second",
        "rate_limit_client": "100000/second",
        "oauth_issuer": ISSUER,
        # The module's tests fail authentications on purpose from one address; the lockout's own
        # test (test_lockout.py) runs an app with a low threshold.
        "login_lockout_threshold": 100_000,
        "alerts_enabled": False,
    }
    return Settings(**(values | changes))  # type: ignore[arg-type]


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgresql"])
async def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    tmp = tmp_path_factory.mktemp("oauth")
    clock = ManualClock()
    if request.param == "sqlite":
        app = create_app(oauth_settings(tmp), clock=clock, configure_logs=False)
        async with running(app), asgi_client(app) as http:
            yield Server(app, http, app_db(app), clock, "sqlite")
        return
    url = os.environ.get("BROKERLINK_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("BROKERLINK_REQUIRE_SERVICES") == "1":
            pytest.fail("BROKERLINK_TEST_POSTGRES_URL unset - BROKERLINK_REQUIRE_SERVICES=1 forbids skipping")
        pytest.skip('PostgreSQL not configured; start one with: eval "$(scripts/test-services.sh start)"')
    async with _pg_database(url) as database_url:
        app = create_app(oauth_settings(tmp, database_url), clock=clock, configure_logs=False)
        async with running(app), asgi_client(app) as http:
            yield Server(app, http, app_db(app), clock, "postgresql")


@pytest.fixture(autouse=True)
def _backend(request: pytest.FixtureRequest) -> None:
    if "server" in request.fixturenames:
        mark_backend(request, request.getfixturevalue("server").backend)
