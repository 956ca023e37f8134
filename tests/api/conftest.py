"""An app on a fresh SQLite database per test, driven in-process over ASGI, and signed-in clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from brokerlink.app.factory import create_app
from brokerlink.config import Settings
from brokerlink.kit.clock import ManualClock
from tests.api.support import PASSWORD, ClientFactory, asgi_client, with_csrf


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        environment="test",
        secret_key="test-secret-key-that-is-long-enough-0123456789",
        log_level="warning",
        log_format="console",
        max_body_bytes=64 * 1024,
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def app(settings: Settings, clock: ManualClock) -> Litestar:
    return create_app(settings, clock=clock, configure_logs=False)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """An anonymous client (HTTPS base URL, so Secure cookies are sent back)."""
    async with AsyncTestClient(app, base_url="https://testserver.local") as c:
        c.follow_redirects = False  # tests assert on the redirects themselves
        yield c


@pytest.fixture
async def make_client(app: Litestar, client: AsyncTestClient[Litestar]) -> AsyncIterator[ClientFactory]:
    """``await make_client("bob@example.com")``: a client signed in as a newly registered user.

    Each client has its own cookie jar over the same running app (the ``client`` fixture runs its lifespan).
    """
    opened: list[httpx.AsyncClient] = []

    async def factory(email: str = "alice@example.com", name: str = "Alice") -> httpx.AsyncClient:
        # A plain ASGI client: the app's lifespan already runs under ``client``, and must run only once.
        c = asgi_client(app)
        opened.append(c)
        await with_csrf(c)
        response = await c.post("/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": name})
        assert response.status_code == 201, response.text
        return c

    yield factory
    for c in opened:
        await c.aclose()


@pytest.fixture
async def settings_closed_client(settings: Settings, clock: ManualClock) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """A client of an app that does not allow registration."""
    closed = settings.model_copy(update={"allow_registration": False})
    async with AsyncTestClient(
        create_app(closed, clock=clock, configure_logs=False), base_url="https://testserver.local"
    ) as c:
        yield c
