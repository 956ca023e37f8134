"""Choosing what to link: ``GET /v1/brokers`` and ``POST /v1/connections/discover`` against a real
sim venue on loopback. Discovery stores nothing and never echoes the credentials; it is refused
like linking (unknown broker, endpoint off the allow-list, credentials the broker refuses) and
audited like any other use of credentials.
"""

from __future__ import annotations

import httpx
import pytest
from litestar import Litestar

from tests.api.support import assert_problem, link_body, snapshot, venue_account_id, venue_credentials
from tests.contract.harness import SimHarness


@pytest.fixture
def app(venue: SimHarness, app: Litestar) -> Litestar:
    """The app, started after the venue it reaches."""
    return app


async def test_the_broker_kinds_on_offer_name_their_credential_fields(alice: httpx.AsyncClient) -> None:
    r = await alice.get("/v1/brokers")
    assert r.status_code == 200, r.text
    kinds = {b["kind"]: b["credential_fields"] for b in r.json()["data"]}
    assert kinds["sim"] == ["api_key", "api_secret"]


async def test_discovery_lists_the_account_the_credentials_reach_and_stores_nothing(
    app: Litestar, alice: httpx.AsyncClient, venue: SimHarness
) -> None:
    before = await snapshot(app)
    body = {"broker": "sim", "base_url": venue.base_url, "credentials": venue_credentials(1)}
    r = await alice.post("/v1/connections/discover", json=body)
    assert r.status_code == 200, r.text
    assert r.json() == {"data": [{"venue_account_id": venue_account_id(1), "name": None, "currency": "USD"}]}
    assert "conf-secret" not in r.text
    (counts_before, rows_before), (counts_after, rows_after) = before, await snapshot(app)
    assert rows_after == rows_before
    changed = {table for table in counts_after if counts_after[table] != counts_before.get(table)}
    assert changed <= {"audit_records", "audit_head"}, f"nothing but the audit record is stored: {changed}"
    # The chosen account links as usual.
    linked = await alice.post(
        "/v1/connections", json=link_body(venue.base_url, 1, venue_account_id=venue_account_id(1))
    )
    assert linked.status_code == 201, linked.text


async def test_discovery_with_refused_credentials_is_a_422_and_stores_nothing(
    app: Litestar, alice: httpx.AsyncClient, venue: SimHarness
) -> None:
    before = await snapshot(app)
    body = {"broker": "sim", "base_url": venue.base_url, "credentials": {"api_key": "wrong"}}
    r = await alice.post("/v1/connections/discover", json=body)
    assert r.status_code == 422, r.text
    assert "wrong" not in r.text
    assert await snapshot(app) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"broker": "nosuch", "base_url": "http://127.0.0.1:1", "credentials": {"api_key": "k"}}, "broker"),
        ({"broker": "sim", "base_url": "http://10.0.0.1:8100", "credentials": {"api_key": "k"}}, "base_url"),
    ],
)
async def test_discovery_refuses_unknown_brokers_and_endpoints_off_the_allow_list(
    app: Litestar, alice: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    before = await snapshot(app)
    problem = assert_problem(await alice.post("/v1/connections/discover", json=body), 422, "invalid_input")
    assert problem["field"] == field
    assert await snapshot(app) == before
