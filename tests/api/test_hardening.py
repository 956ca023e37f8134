"""Hardening (SECURITY 27, 31): security headers everywhere, 413 for big bodies, 400 for big pages, no stack traces."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from litestar import Litestar, get

from brokerlink.api.hardening import API_CSP, DOCS_CSP, PAGE_CSP
from brokerlink.app.factory import create_app
from brokerlink.config import Settings
from brokerlink.kit.clock import ManualClock
from brokerlink.store.repositories._common import MAX_PAGE
from tests.api.support import ClientFactory, asgi_client, assert_problem, running

HTML = {"accept": "text/html"}


def assert_hardened(response: httpx.Response, csp: bytes) -> None:
    assert response.headers["strict-transport-security"].startswith("max-age=")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["content-security-policy"] == csp.decode()
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


@pytest.mark.parametrize(
    ("path", "headers", "status", "csp"),
    [
        ("/healthz", {}, 200, API_CSP),
        ("/v1/me", {}, 401, API_CSP),
        ("/v1/nowhere", {}, 404, API_CSP),
        ("/login", HTML, 200, PAGE_CSP),
        ("/", HTML, 303, PAGE_CSP),
        ("/static/dashboard.js", {}, 200, PAGE_CSP),
        ("/docs/", HTML, 303, DOCS_CSP),  # the API docs need a session
    ],
)
async def test_hardening_security_headers_on_api_and_page_responses(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], status: int, csp: bytes
) -> None:
    r = await client.get(path, headers=headers)
    assert r.status_code == status, r.text
    assert_hardened(r, csp)


async def test_hardening_page_csp_allows_the_dashboard_as_it_is(client: httpx.AsyncClient) -> None:
    # The page CSP forbids inline script and style; the login page (and the dashboard, test_pages) use none.
    page = await client.get("/login", headers=HTML)
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    assert "<script>" not in page.text
    assert "style=" not in page.text
    assert "<style" not in page.text


async def test_hardening_oversized_body_is_413_before_authentication(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    big = b'{"x": "' + b"a" * settings.max_body_bytes + b'"}'
    for path in ("/v1/auth/login", "/v1/accounts/acc_x/orders", "/login"):
        r = await client.post(path, content=big, headers={"content-type": "application/json"})
        problem = assert_problem(r, 413, "payload_too_large")
        assert problem["instance"] == path
        assert problem["request_id"] == r.headers["x-request-id"]
        assert r.headers["x-frame-options"] == "DENY"


async def test_hardening_body_at_the_limit_is_not_refused_for_size(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    body = b" " * settings.max_body_bytes  # not JSON: refused for its content, not its size
    r = await client.post("/v1/auth/login", content=body, headers={"content-type": "application/json"})
    assert r.status_code != 413


async def test_hardening_page_size_above_the_max_is_400(make_client: ClientFactory) -> None:
    alice = await make_client()
    too_big = await alice.get(f"/v1/strategies/public?limit={MAX_PAGE + 1}")
    problem = assert_problem(too_big, 400, "page_size_too_large")
    assert str(MAX_PAGE) in problem["detail"]
    assert too_big.headers["cache-control"] == "no-store"
    assert (await alice.get(f"/v1/strategies/public?limit={MAX_PAGE}")).status_code == 200
    # Checked before the route runs, so every list is covered, whoever asks.
    assert_problem(await alice.get("/v1/accounts/acc_x/orders?limit=100000"), 400, "page_size_too_large")
    assert_problem(await alice.get("/v1/subscriptions?limit=1&limit=9999"), 400, "page_size_too_large")
    # Not a size at all, or too small: the route's validation answers, as for any invalid input.
    assert_problem(await alice.get("/v1/strategies/public?limit=0"), 422, "invalid_input")
    assert_problem(await alice.get("/v1/strategies/public?limit=lots"), 422, "invalid_input")


@pytest.fixture
async def failing(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A test-only app with routes that fail unexpectedly, on an API path and on a page path."""

    @get("/v1/boom", opt={"exclude_from_auth": True})
    async def api_boom() -> None:
        raise RuntimeError("secret internals: password=hunter2 at /srv/brokerlink/api/x.py line 42")

    @get("/boom", opt={"exclude_from_auth": True})
    async def page_boom() -> None:
        raise KeyError("dsn=postgresql://admin:hunter2@db/prod")

    app: Litestar = create_app(settings, clock=ManualClock(), configure_logs=False)
    app.register(api_boom)
    app.register(page_boom)
    assert app.debug is False
    async with running(app), asgi_client(app) as c:
        yield c


@pytest.mark.parametrize("path", ["/v1/boom", "/boom"])
async def test_hardening_500_has_no_stack_trace(failing: httpx.AsyncClient, path: str) -> None:
    r = await failing.get(path, headers=HTML)
    problem = assert_problem(r, 500, "internal_error")
    assert set(problem) == {"type", "title", "status", "detail", "code", "instance", "request_id"}
    for leak in ("Traceback", "hunter2", "secret", "RuntimeError", "KeyError", ".py", "line 42", "postgresql"):
        assert leak not in r.text, leak
    assert r.headers["x-content-type-options"] == "nosniff"
