"""Bad input on every write route: a clear problem+json error, and nothing changes.

The routes are discovered from the app itself, so a write route added later is covered without
editing this file: the test fails if it meets a write route it has no valid body for.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.api.support import PASSWORD, ClientFactory, link_account, snapshot

# A valid body per JSON write route. Each case below breaks it in one way.
VALID_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/auth/register"): {"email": "new@example.com", "password": PASSWORD, "display_name": "New"},
    ("POST", "/v1/auth/login"): {"email": "alice@example.com", "password": PASSWORD},
    ("PATCH", "/v1/accounts/{account_id}"): {"name": "Renamed"},
}
# The pages' form posts, with a valid form each (tests/web/test_form_validation.py breaks them).
VALID_FORMS: dict[tuple[str, str], dict[str, str]] = {
    ("POST", "/login"): {"email": "alice@example.com", "password": PASSWORD},
    ("POST", "/register"): {"email": "new@example.com", "password": PASSWORD, "display_name": "New"},
}
# Write routes that take no body: a body in the wrong media type is still refused.
BODILESS = {("POST", "/v1/auth/logout"), ("POST", "/logout")}
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def write_routes(app: Litestar) -> list[tuple[str, str]]:
    """Every (method, path template) in the app that changes state."""
    return sorted(
        (method, route.path.replace("{account_id:str}", "{account_id}"))
        for route in app.routes
        for method in getattr(route, "methods", set()) & WRITE_METHODS
    )


def test_every_write_route_has_a_case(app: Litestar) -> None:
    routes = set(write_routes(app))
    covered = set(VALID_BODIES) | set(VALID_FORMS) | BODILESS
    assert routes == covered, "a write route was added or removed: give it a valid body here"


@pytest.fixture
async def alice(make_client: ClientFactory) -> httpx.AsyncClient:
    return await make_client("alice@example.com")


@pytest.fixture
async def account_id(app: Litestar, alice: httpx.AsyncClient) -> str:
    """An account of Alice's (no API links brokers yet, so it goes straight into the store)."""
    _, account = await link_account(app, "alice@example.com", "Main")
    return account


Sender = Callable[[httpx.AsyncClient, str, str], Awaitable[httpx.Response]]


def _raw(content: bytes, content_type: str = "application/json") -> Sender:
    async def send(c: httpx.AsyncClient, method: str, url: str) -> httpx.Response:
        return await c.request(method, url, content=content, headers={"content-type": content_type})

    return send


def _json(body: Any) -> Sender:
    async def send(c: httpx.AsyncClient, method: str, url: str) -> httpx.Response:
        return await c.request(method, url, json=body)

    return send


def cases(valid: dict[str, Any]) -> dict[str, tuple[Sender, int, str]]:
    """Name -> (how to send it, expected status, expected problem code)."""
    first = next(iter(valid))
    wrong_type = {**valid, first: 12345}
    unknown = {**valid, "owner_id": "usr_01ATTACKER0000000000000000"}
    smuggled = {**valid, "role": "admin"}
    return {
        "malformed_json": (_raw(b'{"email": "a@example.com", '), 400, "malformed_request"),
        "not_an_object": (_json([valid]), 422, "invalid_input"),
        "wrong_type": (_json(wrong_type), 422, "invalid_input"),
        "unknown_field": (_json(unknown), 422, "invalid_input"),
        "smuggled_role": (_json(smuggled), 422, "invalid_input"),
        "missing_body": (_raw(b""), 422, "invalid_input"),
        "oversized": (_raw(b'{"x": "' + b"a" * (80 * 1024) + b'"}'), 413, "payload_too_large"),
        "not_json": (
            _raw(b"email=a%40example.com", "application/x-www-form-urlencoded"),
            415,
            "unsupported_media_type",
        ),
    }


CASE_NAMES = list(cases({"x": 1}))


@pytest.mark.parametrize("case", CASE_NAMES)
@pytest.mark.parametrize("route", sorted(VALID_BODIES))
async def test_bad_input_is_refused_with_a_problem_and_changes_nothing(  # noqa: PLR0917 - pytest fixtures
    app: Litestar,
    client: AsyncTestClient[Litestar],
    alice: httpx.AsyncClient,
    account_id: str,
    route: tuple[str, str],
    case: str,
) -> None:
    method, template = route
    url = template.format(account_id=account_id)
    send, status, code = cases(VALID_BODIES[route])[case]
    before = await snapshot(app)
    response = await send(alice, method, url)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status
    assert problem["code"] == code
    assert problem["type"] == f"urn:brokerlink:problem:{code}"
    assert problem["detail"]
    assert problem["instance"] == url
    assert await snapshot(app) == before
    if status == 422 and case != "missing_body":
        assert problem["errors"], "a 422 names the offending fields"


@pytest.mark.parametrize("route", sorted(VALID_BODIES))
async def test_the_valid_body_is_accepted(
    app: Litestar, alice: httpx.AsyncClient, account_id: str, route: tuple[str, str]
) -> None:
    """Guards the cases above: they fail for the reason they name, not because the valid body is wrong."""
    method, template = route
    response = await alice.request(method, template.format(account_id=account_id), json=VALID_BODIES[route])
    assert response.status_code in (200, 201), response.text


async def test_unknown_field_error_names_the_field(alice: httpx.AsyncClient, account_id: str) -> None:
    r = await alice.patch(f"/v1/accounts/{account_id}", json={"name": "x", "balance": "1000000"})
    assert r.status_code == 422
    assert "balance" in r.json()["detail"]


@pytest.mark.parametrize("path", sorted(path for _, path in BODILESS))
async def test_bodiless_write_routes_refuse_a_body_of_the_wrong_type(alice: httpx.AsyncClient, path: str) -> None:
    r = await alice.post(path, content=b"x=1", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    assert r.json()["code"] == "unsupported_media_type"
    assert (await alice.get("/v1/me")).status_code == 200, "the refused logout ended nothing"
