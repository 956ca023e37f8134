"""An app on a fresh SQLite database per test, driven in-process over ASGI, and signed-in clients.

The app's lifespan runs in the test's own event loop, as it does under a real server. Litestar's
``AsyncTestClient`` would run it (and every request) in a thread with a loop of its own instead,
which breaks broker links: their adapters, and the sim venue a test starts, live in the test's
loop, and a request there blocks the test's loop while it waits for the venue in that same loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from pydantic import SecretStr

from brokerlink.app.factory import create_app
from brokerlink.config import Settings
from brokerlink.domain.enums import Role
from brokerlink.kit.clock import ManualClock
from tests.api.mfa_support import enrol_totp
from tests.api.support import PASSWORD, ClientFactory, asgi_client, grant_role, running, with_csrf
from tests.contract.harness import SimHarness, sim_venue

SPARE_VENUE_ACCOUNTS = 4
"""Funded venue accounts besides ``SIM-CONF`` (``SIM-CONF-1`` ... with ``conf-key-1`` ...)."""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        environment="test",
        secret_key=SecretStr("test-secret-key-that-is-long-enough-0123456789"),
        log_level="warning",
        log_format="console",
        max_body_bytes=64 * 1024,
        # The suite's clients make bursts of requests (enrolment, linking, paging); the limits' own
        # tests (test_ratelimit.py) set theirs.
        rate_limit_user="1000/second",
        rate_limit_ip="1000/second",
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def app(settings: Settings, clock: ManualClock) -> Litestar:
    return create_app(settings, clock=clock, configure_logs=False)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """An anonymous client (HTTPS base URL, so Secure cookies are sent back).

    It runs the app's lifespan (database, bus, broker links) in the test's event loop for as long
    as it is open: every test of the running app depends on it, directly or through ``make_client``.
    """
    async with running(app), asgi_client(app) as c:
        c.follow_redirects = False  # tests assert on the redirects themselves
        yield c


@pytest.fixture
async def make_client(
    app: Litestar, client: httpx.AsyncClient, clock: ManualClock, request: pytest.FixtureRequest
) -> AsyncIterator[ClientFactory]:
    """``await make_client("bob@example.com")``: a client signed in as a newly registered user.

    Each client has its own cookie jar over the same running app (the ``client`` fixture runs its
    lifespan). With ``mfa=True`` the user also enrols TOTP, so the session has just verified MFA and
    may link broker accounts (``require_mfa_for_linking``); :func:`~tests.api.mfa_support.authenticator`
    gives the client's authenticator. ``role`` grants a role after sign-up (``provider`` publishes
    strategies). The default is ``True`` in tests that run a sim venue (they
    link accounts) and ``False`` elsewhere.
    """
    mfa_by_default = "venue" in request.fixturenames
    opened: list[httpx.AsyncClient] = []

    async def factory(
        email: str = "alice@example.com", name: str = "Alice", *, mfa: bool | None = None, role: Role = Role.USER
    ) -> httpx.AsyncClient:
        c = asgi_client(app)
        opened.append(c)
        await with_csrf(c)
        response = await c.post("/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": name})
        assert response.status_code == 201, response.text
        if role is not Role.USER:
            await grant_role(app, email, role)
        if mfa_by_default if mfa is None else mfa:
            await enrol_totp(c, clock)
        return c

    yield factory
    for c in opened:
        await c.aclose()


@pytest.fixture
async def settings_closed_client(settings: Settings, clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app that does not allow registration."""
    closed = create_app(settings.model_copy(update={"allow_registration": False}), clock=clock, configure_logs=False)
    async with running(closed), asgi_client(closed) as c:
        yield c


@pytest.fixture
async def venue() -> AsyncIterator[SimHarness]:
    """A real sim venue on a loopback port, with spare funded accounts for more users and links.

    A module that links to it overrides ``app`` to depend on it, so the venue starts before the
    app and stops only after the app's links have closed.
    """
    async with sim_venue(extra_accounts=SPARE_VENUE_ACCOUNTS) as harness:
        yield harness


@pytest.fixture
async def alice(make_client: ClientFactory) -> httpx.AsyncClient:
    """Alice, signed in."""
    return await make_client("alice@example.com", "Alice")


@pytest.fixture
async def bob(make_client: ClientFactory) -> httpx.AsyncClient:
    """Bob, signed in; a provider (he publishes the tests' strategies)."""
    return await make_client("bob@example.com", "Bob", role=Role.PROVIDER)
