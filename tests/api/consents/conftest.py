"""One running app per module and backend (SQLite, PostgreSQL), shared by the module's tests.

Starting an app migrates a database and registering a user hashes a password, so the consent and
client tests share one app per module and make their users straight in the store (with a real
session, so they browse as signed-in users do). Every test makes its own users, clients and
requests, and looks only at its own rows. The clock is shared: a test moves it only forward, and
the tests compute times relative to ``clock.now()``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from litestar import Litestar
from pydantic import SecretStr

from brokerlink.app.factory import create_app
from brokerlink.config import Settings
from brokerlink.domain.enums import Role
from brokerlink.kit.clock import ManualClock
from brokerlink.kit.ids import new_id
from brokerlink.security.sessions import SessionService
from brokerlink.store.db import Database
from brokerlink.store.repositories.users import UserRepository
from tests.api.consents.support import ALLOWED_JWKS_HOST, ISSUER, new_client, push
from tests.api.mfa_support import Authenticator, enrol_totp
from tests.api.support import asgi_client, link_account, running, with_csrf
from tests.backends import mark_backend
from tests.store.conftest import _pg_database

STEP = timedelta(seconds=30)


@dataclass
class User:
    """A signed-in user: their browser (cookies, CSRF header), id, email and linked accounts."""

    http: httpx.AsyncClient
    id: str
    email: str
    accounts: list[str] = field(default_factory=list)
    device: Authenticator | None = None

    def code(self, clock: ManualClock) -> str:
        """A TOTP code for now; moves the clock one step on first, as each code may be used once."""
        assert self.device is not None, "the user has no authenticator"
        clock.advance(STEP)
        return self.device.code(clock)


@dataclass
class Server:
    """A running app with its database and clock; makes users, clients and pushed requests."""

    app: Litestar
    clock: ManualClock
    settings: Settings
    backend: str
    opened: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def db(self) -> Database:
        database: Database = self.app.state.db
        return database

    def browser(self, cookies: dict[str, str] | None = None) -> httpx.AsyncClient:
        """A new client of the app (closed with the module)."""
        c = asgi_client(self.app, cookies=cookies)
        self.opened.append(c)
        return c

    async def user(self, *, mfa: bool = False, admin: bool = False, accounts: int = 0) -> User:
        """A new user signed in (no password: the session is started directly), with ``accounts``
        accounts in the store and, with ``mfa``, an enrolled authenticator."""
        email = f"{new_id('user').lower()}@example.com"
        async with self.db.session() as s:
            row = await UserRepository(s).create(
                email=email, display_name="Tess", password_hash="x", now=self.clock.now(),
                role=Role.ADMIN if admin else Role.USER,
            )  # fmt: skip
            issued = await SessionService(s, self.settings, self.clock).start(row, ip=None, user_agent=None)
            await s.commit()
        http = self.browser({self.settings.session_cookie: issued.token})
        await with_csrf(http)
        user = User(http=http, id=row.id, email=email)
        for index in range(accounts):
            user.accounts.append((await link_account(self.app, email, f"Acct{index}"))[1])
        if mfa:
            user.device = await enrol_totp(http, self.clock)
        return user

    async def client(self, **kwargs: Any) -> str:
        """A registered client; returns its id."""
        return await new_client(self.app, **kwargs)

    async def push(self, client_id: str, **kwargs: Any) -> str:
        """A pushed request of ``client_id``; returns its request_uri."""
        return await push(self.app, client_id, **kwargs)


def consent_settings(tmp: Path, database_url: str | None = None) -> Settings:
    return Settings(
        data_dir=tmp,
        database_url=database_url,
        environment="test",
        secret_key=SecretStr("test-secret-key-that-is-long-enough-0123456789"),
        log_level="warning",
        log_format="console",
        rate_limit_user="100000/second",
        rate_limit_ip="100000/second",
        # The tests send wrong MFA codes on purpose, all from one address.
        login_lockout_threshold=100_000,
        alerts_enabled=False,
        oauth_issuer=ISSUER,
        oauth_jwks_uri_allowed_hosts=[ALLOWED_JWKS_HOST],
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgresql"])
async def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    tmp = tmp_path_factory.mktemp("consents")
    clock = ManualClock()
    if request.param == "sqlite":
        settings = consent_settings(tmp)
        app = create_app(settings, clock=clock, configure_logs=False)
        async with running(app):
            srv = Server(app, clock, settings, "sqlite")
            yield srv
            for c in srv.opened:
                await c.aclose()
        return
    url = os.environ.get("BROKERLINK_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("BROKERLINK_REQUIRE_SERVICES") == "1":
            pytest.fail("BROKERLINK_TEST_POSTGRES_URL unset - BROKERLINK_REQUIRE_SERVICES=1 forbids skipping")
        pytest.skip('PostgreSQL not configured; start one with: eval "$(scripts/test-services.sh start)"')
    async with _pg_database(url) as database_url:
        settings = consent_settings(tmp, database_url)
        app = create_app(settings, clock=clock, configure_logs=False)
        async with running(app):
            srv = Server(app, clock, settings, "postgresql")
            yield srv
            for c in srv.opened:
                await c.aclose()


@pytest.fixture(autouse=True)
def _backend(request: pytest.FixtureRequest) -> None:
    if "server" in request.fixturenames:
        mark_backend(request, request.getfixturevalue("server").backend)
