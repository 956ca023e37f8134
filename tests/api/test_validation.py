"""Bad input on every write route: a clear problem+json error, and nothing changes.

The routes are discovered from the app itself, so a write route added later is covered without
editing this file: the test fails if it meets a write route it has no valid body for.

Alice's account is linked through the API to a real sim venue on loopback, so the trading and
linking routes run for real: a valid body is genuinely accepted, and a bad one is refused before
anything reaches the broker or the database.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from litestar import Litestar

from tests.api.support import (
    MARKET_ORDER,
    PASSWORD,
    RESTING_ORDER,
    eventually,
    link_body,
    link_via_api,
    snapshot,
)
from tests.contract.harness import SimHarness

BASE_URL = "<venue base url>"
"""Stands for the sim venue's URL, known only once the venue runs (see :func:`valid_body`)."""

# A valid body per JSON write route, and the status it gets. Each case below breaks it in one way.
VALID_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/auth/register"): {"email": "new@example.com", "password": PASSWORD, "display_name": "New"},
    ("POST", "/v1/auth/login"): {"email": "alice@example.com", "password": PASSWORD},
    ("PATCH", "/v1/accounts/{account_id}"): {"name": "Renamed"},
    # A venue account other than the one Alice's fixture links: the same one twice is a 409.
    ("POST", "/v1/connections"): link_body(BASE_URL, 1, label="Spare"),
    ("POST", "/v1/accounts/{account_id}/orders"): MARKET_ORDER,
}
ACCEPTED_WITH = {
    ("POST", "/v1/auth/register"): 201,
    ("POST", "/v1/auth/login"): 200,
    ("PATCH", "/v1/accounts/{account_id}"): 200,
    ("POST", "/v1/connections"): 201,
    ("POST", "/v1/accounts/{account_id}/orders"): 201,
}
# The pages' form posts, with a valid form each (tests/web/test_form_validation.py breaks them).
VALID_FORMS: dict[tuple[str, str], dict[str, str]] = {
    ("POST", "/login"): {"email": "alice@example.com", "password": PASSWORD},
    ("POST", "/register"): {"email": "new@example.com", "password": PASSWORD, "display_name": "New"},
}
# Write routes that take no body: a body in the wrong media type is still refused.
BODILESS = {
    ("POST", "/v1/auth/logout"),
    ("POST", "/logout"),
    ("DELETE", "/v1/connections/{connection_id}"),
    ("DELETE", "/v1/orders/{order_id}"),
}
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
_TYPED_PARAM = re.compile(r"\{(\w+):\w+\}")


def write_routes(app: Litestar) -> list[tuple[str, str]]:
    """Every (method, path template) in the app that changes state, path parameters as ``{name}``."""
    return sorted(
        (method, _TYPED_PARAM.sub(r"{\1}", route.path))
        for route in app.routes
        for method in getattr(route, "methods", set()) & WRITE_METHODS
    )


def valid_body(route: tuple[str, str], venue: SimHarness) -> dict[str, Any]:
    """The route's valid body, pointed at the running venue."""
    return {k: venue.base_url if v == BASE_URL else v for k, v in VALID_BODIES[route].items()}


def test_every_write_route_has_a_case(app: Litestar) -> None:
    routes = set(write_routes(app))
    covered = set(VALID_BODIES) | set(VALID_FORMS) | BODILESS
    assert routes == covered, "a write route was added or removed: give it a valid body here"
    assert set(ACCEPTED_WITH) == set(VALID_BODIES)


def test_write_routes_normalizes_every_typed_path_parameter(app: Litestar) -> None:
    assert not [path for _, path in write_routes(app) if ":" in path]


@pytest.fixture
def app(venue: SimHarness, app: Litestar) -> Litestar:
    """The app, started after the venue its links reach (so its links close before the venue stops)."""
    return app


@pytest.fixture
async def linked(alice: httpx.AsyncClient, venue: SimHarness) -> dict[str, Any]:
    """Alice's account at the venue (``SIM-CONF``), linked through ``POST /v1/connections``."""
    return await link_via_api(alice, venue.base_url, label="Main")


@pytest.fixture
def account_id(linked: dict[str, Any]) -> str:
    account: str = linked["account"]["id"]
    return account


@pytest.fixture
def path_ids(linked: dict[str, Any]) -> dict[str, str]:
    """Values for the path parameters of the write routes."""
    return {"account_id": linked["account"]["id"], "connection_id": linked["connection"]["id"]}


@pytest.fixture
async def resting_order_id(alice: httpx.AsyncClient, account_id: str) -> str:
    """An open order of Alice's, acknowledged by the venue."""
    placed = await alice.post(f"/v1/accounts/{account_id}/orders", json=RESTING_ORDER)
    assert placed.status_code == 201, placed.text
    order_id: str = placed.json()["id"]

    async def acknowledged() -> bool | None:
        return (await alice.get(f"/v1/orders/{order_id}")).json()["status"] == "new" or None

    await eventually(acknowledged, "the venue to acknowledge the order")
    return order_id


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
    venue: SimHarness,
    alice: httpx.AsyncClient,
    path_ids: dict[str, str],
    route: tuple[str, str],
    case: str,
) -> None:
    method, template = route
    url = template.format(**path_ids)
    send, status, code = cases(valid_body(route, venue))[case]
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
    app: Litestar, venue: SimHarness, alice: httpx.AsyncClient, path_ids: dict[str, str], route: tuple[str, str]
) -> None:
    """Guards the cases above: they fail for the reason they name, not because the valid body is wrong."""
    method, template = route
    before = await snapshot(app)
    response = await alice.request(method, template.format(**path_ids), json=valid_body(route, venue))
    assert response.status_code == ACCEPTED_WITH[route], response.text
    assert await snapshot(app) != before, "an accepted write changed something"


async def test_unknown_field_error_names_the_field(alice: httpx.AsyncClient, account_id: str) -> None:
    r = await alice.patch(f"/v1/accounts/{account_id}", json={"name": "x", "balance": "1000000"})
    assert r.status_code == 422
    assert "balance" in r.json()["detail"]


@pytest.mark.parametrize("route", sorted(BODILESS))
async def test_bodiless_write_routes_refuse_a_body_of_the_wrong_type(
    app: Litestar, alice: httpx.AsyncClient, path_ids: dict[str, str], resting_order_id: str, route: tuple[str, str]
) -> None:
    method, template = route
    url = template.format(**path_ids, order_id=resting_order_id)
    before = await snapshot(app)
    r = await alice.request(method, url, content=b"x=1", headers={"content-type": "text/plain"})
    assert r.status_code == 415, r.text
    assert r.json()["code"] == "unsupported_media_type"
    assert await snapshot(app) == before, "the refused request cancelled, unlinked or ended nothing"
    assert (await alice.get("/v1/me")).status_code == 200, "the refused logout ended nothing"
    assert (await alice.get(f"/v1/orders/{resting_order_id}")).json()["status"] == "new"
    assert (await alice.get(f"/v1/connections/{path_ids['connection_id']}")).json()["status"] == "connected"


@pytest.mark.parametrize("route", sorted(BODILESS))
async def test_bodiless_write_routes_work_without_a_body(
    alice: httpx.AsyncClient, path_ids: dict[str, str], resting_order_id: str, route: tuple[str, str]
) -> None:
    """Guards the test above: the 415 is for the body, not for the request."""
    method, template = route
    r = await alice.request(method, template.format(**path_ids, order_id=resting_order_id))
    assert r.status_code in {200, 204, 303}, r.text
