"""``Idempotency-Key`` on every POST that creates something (issue 8, SECURITY.md 28, ADR 0033).

The route table is walked: every ``POST`` under ``/v1`` either honours the header (``@idempotent``)
or is listed in :data:`NOT_IDEMPOTENT` with the reason it needs none. Then each creating route is
driven: the same key and body returns the first response again (``Idempotent-Replayed: true``) and
creates nothing more; the same key with another body is a 422 ``idempotency_key_reused``. Responses
carrying a secret shown once (webhook signing secrets) are stored sealed, never in plaintext.
Order placement has its own tests (``test_idempotency.py``); linking a broker needs a venue and is
covered by the walk.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute
from sqlalchemy import select

from brokerlink.api.idempotency import REPLAYED_HEADER, claim_key, sealing_key, unseal
from brokerlink.config import Settings
from brokerlink.domain.enums import Role
from brokerlink.store.db import Database
from brokerlink.store.models_idempotency import IdempotencyKeyRow
from tests.api.consents.support import jwks
from tests.api.support import ClientFactory, assert_problem, grant_role, link_account

NOT_IDEMPOTENT: dict[str, str] = {
    "/v1/auth/register": "sign-up: a repeated e-mail is a 409 already, and the session is per request",
    "/v1/auth/login": "signs in: creates a session for this request only",
    "/v1/auth/logout": "ends the session; repeating it changes nothing",
    "/v1/auth/mfa": "the MFA step of signing in",
    "/v1/me/mfa/totp": "starts (or restarts) enrolment: the newest secret is the one to confirm",
    "/v1/me/mfa/totp/confirm": "confirms enrolment; a repeat is a 409",
    "/v1/connections/discover": "reads: lists the accounts credentials reach, stores nothing",
    "/v1/subscriptions/{subscription_id:str}/pause": "a state change that is idempotent by itself",
    "/v1/subscriptions/{subscription_id:str}/resume": "a state change that is idempotent by itself",
    "/v1/subscriptions/{subscription_id:str}/close-only": "a state change that is idempotent by itself",
    "/v1/subscriptions/{subscription_id:str}/stop": "final and idempotent by itself",
    "/v1/webhooks/{endpoint_id:str}/deliveries/{delivery_id:str}/replay": "re-sends one delivery: same id",
    "/v1/admin/alerts/{alert_id:str}/acknowledge": "a state change that is idempotent by itself",
    "/v1/admin/alerts/{alert_id:str}/resolve": "a state change that is idempotent by itself",
}
"""POST routes that take no ``Idempotency-Key``, and why: none of them creates an object a retry
could duplicate."""


def _post_routes(app: Litestar) -> list[tuple[str, HTTPRouteHandler]]:
    return [
        (route.path, handler)
        for route in app.routes
        if route.path.startswith("/v1") and isinstance(route, HTTPRoute)
        for handler in route.route_handlers
        if "POST" in handler.http_methods
    ]


def test_security28_every_creating_post_honours_idempotency_keys(app: Litestar) -> None:
    routes = _post_routes(app)
    missing = [path for path, h in routes if claim_key not in (h.guards or []) and path not in NOT_IDEMPOTENT]
    assert missing == [], "decorate with @idempotent or list in NOT_IDEMPOTENT with the reason: " + ", ".join(missing)
    stale = set(NOT_IDEMPOTENT) - {path for path, h in routes if claim_key not in (h.guards or [])}
    assert stale == set(), f"listed but idempotent (or gone): {sorted(stale)}"
    documented = app.openapi_schema.to_schema()["paths"]
    for path, handler in routes:
        if claim_key in (handler.guards or []):
            template = path.replace(":str", "")
            names = {p["name"].lower() for p in documented[template]["post"].get("parameters", [])}
            assert "idempotency-key" in names, f"{path}: the header is not in the OpenAPI document"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_allowed_hosts": ["127.0.0.1"], "alert_webhook_allow_loopback": True})


Post = Callable[[str], Awaitable[httpx.Response]]


async def _check(
    post: Callable[[dict[str, Any], str], Awaitable[httpx.Response]],
    body: dict[str, Any],
    other: dict[str, Any],
    count: Callable[[], Awaitable[int]],
    key: str = "key-0f8fad5b-d9cb-469f-a165-70867728950e",
) -> httpx.Response:
    before = await count()
    first = await post(body, key)
    assert first.status_code < 300, first.text
    assert REPLAYED_HEADER.lower() not in first.headers
    again = await post(dict(reversed(list(body.items()))), key)  # the same JSON, keys in another order
    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert again.headers[REPLAYED_HEADER] == "true"
    for header in ("location", "etag"):
        assert again.headers.get(header) == first.headers.get(header)
    assert await count() == before + 1
    assert_problem(await post(other, key), 422, "idempotency_key_reused")
    fresh = await post(other, key + "-2")
    assert fresh.status_code < 300, fresh.text
    assert await count() == before + 2
    return first


def _poster(client: httpx.AsyncClient, path: str) -> Callable[[dict[str, Any], str], Awaitable[httpx.Response]]:
    async def post(body: dict[str, Any], key: str) -> httpx.Response:
        return await client.post(path, json=body, headers={"Idempotency-Key": key})

    return post


def _counter(client: httpx.AsyncClient, path: str) -> Callable[[], Awaitable[int]]:
    async def count() -> int:
        response = await client.get(path, params={"limit": "100"})
        assert response.status_code == 200, response.text
        return len(response.json()["data"])

    return count


async def test_security28_strategies_and_subscriptions(app: Litestar, make_client: ClientFactory) -> None:
    bob = await make_client("bob@example.com", "Bob", role=Role.PROVIDER)
    alice = await make_client("alice@example.com", "Alice")
    _, bob_account = await link_account(app, "bob@example.com", "Provider")
    _, alice_account = await link_account(app, "alice@example.com", "Follower")
    _, alice_other = await link_account(app, "alice@example.com", "Follower 2")
    created = await _check(
        _poster(bob, "/v1/strategies"),
        {"name": "Trend", "account_id": bob_account, "visibility": "public"},
        {"name": "Carry", "account_id": bob_account, "visibility": "public"},
        _counter(bob, "/v1/strategies"),
    )
    strategy = created.json()["id"]
    settings = {"sizing": "multiplier", "multiplier": "1"}
    await _check(
        _poster(alice, "/v1/subscriptions"),
        {"strategy_id": strategy, "account_id": alice_account, "settings": settings},
        {"strategy_id": strategy, "account_id": alice_other, "settings": settings},
        _counter(alice, "/v1/subscriptions"),
    )


async def test_security28_webhook_endpoints_replay_their_secret_stored_sealed(
    app: Litestar, make_client: ClientFactory
) -> None:
    alice = await make_client("alice@example.com", "Alice")
    key = "6f1c1a52-3f0e-4c8e-9a1e-2b8f5d7c9e01"
    first = await _check(
        _poster(alice, "/v1/webhooks"),
        {"url": "http://127.0.0.1:9/hooks", "event_types": ["order.filled"]},
        {"url": "http://127.0.0.1:9/other", "event_types": ["order.filled"]},
        _counter(alice, "/v1/webhooks"),
        key=key,
    )
    secret = first.json()["secret"]
    assert secret.startswith("whsec_")
    assert first.headers["cache-control"] == "no-store"
    database: Database = app.state.db
    async with database.session() as s:
        stored = (await s.execute(select(IdempotencyKeyRow))).scalars().all()
    bodies = [row.response_body for row in stored if row.response_body is not None]
    assert len(bodies) == 2
    for body in bodies:
        raw = body if isinstance(body, bytes) else str(body).encode()
        assert raw.startswith(b"sealed1:")
        assert b"whsec_" not in raw
        assert secret.encode() not in raw
    # Only the key the client holds opens it (the owner and request fingerprint bind it too).
    row = next(r for r in stored if r.response_body is not None and r.request_hash)
    with pytest.raises(Exception):  # noqa: B017, PT011 - cryptography's InvalidTag
        unseal(sealing_key("another key", row.owner), row.request_hash, bytes(row.response_body))


async def test_security28_admin_creations(app: Litestar, make_client: ClientFactory) -> None:
    admin = await make_client("ops@example.com", "Ops")
    await grant_role(app, "ops@example.com", Role.ADMIN)
    client_body = {"name": "Tracker", "redirect_uris": ["https://tracker.example/cb"], "jwks": jwks(),
                   "scopes": ["accounts:read"]}  # fmt: skip
    await _check(
        _poster(admin, "/v1/admin/clients"),
        client_body,
        client_body | {"name": "Ledger app"},
        _counter(admin, "/v1/admin/clients"),
    )
    await _check(
        _poster(admin, "/v1/admin/alert-webhooks"),
        {"url": "http://127.0.0.1:9/alerts"},
        {"url": "http://127.0.0.1:9/other-alerts"},
        _counter(admin, "/v1/admin/alert-webhooks"),
        key="alert-webhook-1",
    )
    settle = await admin.post("/v1/admin/fees/settle", headers={"Idempotency-Key": "settle-1"})
    assert settle.status_code == 200, settle.text
    replay = await admin.post("/v1/admin/fees/settle", headers={"Idempotency-Key": "settle-1"})
    assert (replay.content, replay.headers[REPLAYED_HEADER]) == (settle.content, "true")
    other = await admin.post("/v1/admin/fees/settle?period=2020-01", headers={"Idempotency-Key": "settle-1"})
    assert_problem(other, 422, "idempotency_key_reused")
