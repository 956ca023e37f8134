"""CORS (SECURITY 11): strict on /v1 for the configured origins only, none at all anywhere else.

Runs against the real app with one allowed origin. The authorization server's endpoints
(``/authorize``, ``/oauth/*``, metadata) and the pages get no CORS header whatever the origin,
whether a preflight or a plain request, and whether or not the route exists in this build.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from litestar import Litestar

from brokerlink.api.cors import ALLOWED_HEADERS
from brokerlink.app.factory import create_app
from brokerlink.config import Settings
from brokerlink.kit.clock import ManualClock
from tests.api.support import asgi_client, running

APP_ORIGIN = "https://app.example.com"
EVIL_ORIGIN = "https://evil.example.net"


def preflight(origin: str, method: str = "POST", headers: str = "content-type, x-csrf-token") -> dict[str, str]:
    return {"origin": origin, "access-control-request-method": method, "access-control-request-headers": headers}


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"cors_allowed_origins": [APP_ORIGIN]})


async def test_a_preflight_from_an_allowed_origin_is_answered(client: httpx.AsyncClient) -> None:
    r = await client.options("/v1/accounts/acc_x/orders", headers=preflight(APP_ORIGIN))
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == APP_ORIGIN
    assert r.headers["access-control-allow-credentials"] == "true"
    assert set(r.headers["access-control-allow-methods"].split(", ")) == {"GET", "POST", "PUT", "PATCH", "DELETE"}
    assert set(r.headers["access-control-allow-headers"].split(", ")) == set(ALLOWED_HEADERS)
    assert {"dpop", "idempotency-key", "authorization"} <= set(ALLOWED_HEADERS)
    assert r.headers["access-control-max-age"] == "600"
    assert "Origin" in r.headers["vary"]
    assert r.headers["x-frame-options"] == "DENY"  # the hardening headers are on every answer


async def test_a_preflight_from_another_origin_gets_no_cors(client: httpx.AsyncClient) -> None:
    r = await client.options("/v1/accounts/acc_x/orders", headers=preflight(EVIL_ORIGIN))
    assert cors_headers(r) == {}  # Litestar's own OPTIONS answer (Allow), which no browser takes as a preflight pass


async def test_responses_to_an_allowed_origin_carry_cors_with_credentials(alice: httpx.AsyncClient) -> None:
    r = await alice.get("/v1/me", headers={"origin": APP_ORIGIN})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == APP_ORIGIN
    assert r.headers["access-control-allow-credentials"] == "true"
    exposed = r.headers["access-control-expose-headers"].split(", ")
    assert {"ratelimit-remaining", "retry-after", "idempotent-replayed", "x-request-id"} <= set(exposed)
    assert "Origin" in r.headers["vary"]


async def test_errors_to_an_allowed_origin_are_readable_too(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/me", headers={"origin": APP_ORIGIN})
    assert r.status_code == 401
    assert r.headers["access-control-allow-origin"] == APP_ORIGIN


async def test_other_origins_get_no_cors_on_the_api(alice: httpx.AsyncClient) -> None:
    for origin in (EVIL_ORIGIN, "null", "https://app.example.com.evil.net", "http://app.example.com"):
        r = await alice.get("/v1/me", headers={"origin": origin})
        assert r.status_code == 200
        assert cors_headers(r) == {}, origin
        assert "Origin" in r.headers["vary"]


async def test_same_origin_requests_get_no_cors(alice: httpx.AsyncClient) -> None:
    r = await alice.get("/v1/me")
    assert cors_headers(r) == {}


NO_CORS_PATHS = [
    "/authorize",
    "/oauth/par",
    "/oauth/token",
    "/oauth/introspect",
    "/oauth/revoke",
    "/oauth/jwks",
    "/.well-known/oauth-authorization-server",
    "/login",
    "/",
    "/healthz",
    "/openapi.json",
]


async def test_security11_no_cors_on_the_authorization_endpoints_and_pages(client: httpx.AsyncClient) -> None:
    for path in NO_CORS_PATHS:
        for method in ("GET", "POST"):
            answer = await client.options(path, headers=preflight(APP_ORIGIN, method))
            assert cors_headers(answer) == {}, (path, method, answer.status_code)
        plain = await client.get(path, headers={"origin": APP_ORIGIN})
        assert cors_headers(plain) == {}, path


async def test_security11_preflight_to_authorize_gets_no_allow_origin(client: httpx.AsyncClient) -> None:
    r = await client.options("/authorize", headers=preflight(APP_ORIGIN, "GET", ""))
    assert "access-control-allow-origin" not in r.headers


@pytest.fixture
async def default_client(settings: Settings, clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    app: Litestar = create_app(
        settings.model_copy(update={"cors_allowed_origins": []}), clock=clock, configure_logs=False
    )
    async with running(app), asgi_client(app) as c:
        yield c


async def test_by_default_no_origin_is_allowed(default_client: httpx.AsyncClient) -> None:
    for origin in (APP_ORIGIN, EVIL_ORIGIN):
        r = await default_client.options("/v1/me", headers=preflight(origin, "GET"))
        assert cors_headers(r) == {}
        assert cors_headers(await default_client.get("/v1/me", headers={"origin": origin})) == {}


def test_the_setting_takes_exact_origins_only() -> None:
    assert Settings(cors_allowed_origins=["HTTPS://App.Example.com/"]).cors_allowed_origins == [APP_ORIGIN]
    for bad in ("*", "https://*.example.com", "app.example.com", "https://app.example.com/path", "null"):
        with pytest.raises(ValueError, match="not an origin"):
            Settings(cors_allowed_origins=[bad])
