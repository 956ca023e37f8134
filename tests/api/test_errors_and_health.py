"""Problem details for every failure, no internals in a 500, security headers, request ids, probes."""

from __future__ import annotations

import httpx
import pytest
from litestar import Litestar, get
from litestar.testing import AsyncTestClient

from brokerlink.app.factory import create_app
from brokerlink.config import Settings
from brokerlink.kit.clock import ManualClock
from brokerlink.store.db import Database
from tests.api.support import ClientFactory


async def test_healthz_is_public(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


async def test_readyz_checks_database_and_bus(client: httpx.AsyncClient) -> None:
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == {"database": "ok", "bus": "ok"}


async def test_readyz_is_503_when_the_database_is_gone(app: Litestar, client: httpx.AsyncClient) -> None:
    # The check gets a database whose every connection attempt fails. The app's own engine is left
    # alone: disposing it under the running background services would orphan their connections.
    running = app.state.db
    gone = Database(running.url)
    gone.engine.pool._creator = lambda: (_ for _ in ()).throw(OSError("database unreachable"))  # type: ignore[attr-defined]
    app.state.db = gone
    try:
        r = await client.get("/readyz")
    finally:
        app.state.db = running
        await gone.dispose()
    assert r.status_code == 503
    assert r.json()["checks"]["database"] == "failing"


async def test_unknown_route_is_a_problem_with_security_headers(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/nothing-here")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "not_found"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["strict-transport-security"].startswith("max-age=")
    assert r.headers["x-request-id"].startswith("req_")


async def test_wrong_method_is_405_problem(make_client: ClientFactory) -> None:
    c = await make_client()
    r = await c.delete("/v1/me")
    assert r.status_code == 405
    assert r.json()["code"] == "method_not_allowed"


async def test_request_id_is_echoed_when_sane_and_replaced_when_not(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz", headers={"x-request-id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = await client.get("/healthz", headers={"x-request-id": "bad id\n" + "x" * 100})
    assert r.headers["x-request-id"].startswith("req_")


async def test_api_responses_are_not_cached(make_client: ClientFactory) -> None:
    c = await make_client()
    r = await c.get("/v1/me")
    assert r.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in r.headers["content-security-policy"]


@pytest.fixture
async def failing_client(settings: Settings) -> httpx.AsyncClient:
    @get("/boom", opt={"exclude_from_auth": True})
    async def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2 at /srv/app.py line 42")

    app = create_app(settings, clock=ManualClock(), configure_logs=False)
    app.register(boom)
    return app  # type: ignore[return-value]


async def test_a_500_reveals_no_internals(failing_client: Litestar, capsys: pytest.CaptureFixture[str]) -> None:
    async with AsyncTestClient(failing_client, base_url="https://testserver.local") as c:
        r = await c.get("/boom")
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == "internal_error"
    assert "secret" not in r.text
    assert "Traceback" not in r.text
    assert "app.py" not in r.text
    assert body["request_id"] == r.headers["x-request-id"]


async def test_openapi_document_and_docs_page_for_a_signed_in_user(make_client: ClientFactory) -> None:
    c = await make_client()
    spec = (await c.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    assert spec["info"]["title"] == "brokerlink API"
    assert {"/v1/auth/login", "/v1/auth/register", "/v1/me", "/v1/accounts", "/v1/accounts/{account_id}"} <= set(
        spec["paths"]
    )
    login = spec["paths"]["/v1/auth/login"]["post"]
    assert "requestBody" in login
    docs = await c.get("/docs", headers={"accept": "text/html"})
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
