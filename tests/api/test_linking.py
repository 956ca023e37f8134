"""Linking broker accounts through ``/v1/connections``, against a real sim venue on loopback.

Linking proves the credentials by connecting before anything is stored; a refusal, an unreachable
broker or a forbidden endpoint stores nothing. The credentials go into the vault and never come
back out: not in a response, a header or a log line (SECURITY.md 20, 35, 38). Another user's link
is invisible (SECURITY.md 19).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
import structlog
from litestar import Litestar

from brokerlink.kit.ids import new_id
from brokerlink.logs import configure_logging
from tests.api.support import (
    MARKET_ORDER,
    RESTING_ORDER,
    assert_problem,
    eventually,
    ledger_caught_up,
    link_body,
    link_via_api,
    snapshot,
    table_counts,
    venue_account_id,
    venue_credentials,
)
from tests.contract.harness import SimHarness


@pytest.fixture
def app(venue: SimHarness, app: Litestar) -> Litestar:
    """The app, started after the venue its links reach (so its links close before the venue stops)."""
    return app


async def test_linking_stores_the_link_and_the_account_shows_connected(
    app: Litestar, alice: httpx.AsyncClient, venue: SimHarness
) -> None:
    r = await alice.post("/v1/connections", json=link_body(venue.base_url, 1, label="Sim FX", account_name="Swing"))
    assert r.status_code == 201, r.text
    connection, account = r.json()["connection"], r.json()["account"]
    assert (connection["broker"], connection["label"], connection["status"]) == ("sim", "Sim FX", "connected")
    assert connection["id"].startswith("con_")
    assert account["id"].startswith("acc_")
    assert account["connection_id"] == connection["id"]
    assert account["venue_account_id"] == venue_account_id(1)  # learned from the broker, not typed in
    assert (account["name"], account["currency"], account["mode"]) == ("Swing", "USD", "netting")
    assert account["connection_status"] == "connected"

    listed = (await alice.get("/v1/accounts")).json()["data"]
    assert [(a["id"], a["connection_status"]) for a in listed] == [(account["id"], "connected")]
    assert (await alice.get(f"/v1/accounts/{account['id']}")).json() == account
    assert [c["id"] for c in (await alice.get("/v1/connections")).json()["data"]] == [connection["id"]]
    assert (await alice.get(f"/v1/connections/{connection['id']}")).json() == connection
    counts = await table_counts(app)
    assert (counts["broker_connections"], counts["vault_secrets"], counts["accounts"]) == (1, 1, 1)
    # Usable at once: the account's broker answers through the link.
    assert (await alice.get(f"/v1/accounts/{account['id']}/balances")).status_code == 200


async def test_credentials_the_broker_refuses_are_a_422_and_store_nothing(
    app: Litestar, alice: httpx.AsyncClient, venue: SimHarness
) -> None:
    before = await snapshot(app)
    wrong = {"api_key": "wrong-key-0123", "api_secret": "wrong-secret-0123"}
    r = await alice.post("/v1/connections", json=link_body(venue.base_url, 1, credentials=wrong))
    problem = assert_problem(r, 422, "broker_refused")
    assert problem["instance"] == "/v1/connections"
    assert "wrong-key-0123" not in r.text
    assert "wrong-secret-0123" not in r.text
    assert await snapshot(app) == before
    assert (await alice.get("/v1/connections")).json()["data"] == []


async def test_an_unreachable_broker_is_a_503_and_stores_nothing(app: Litestar, alice: httpx.AsyncClient) -> None:
    before = await snapshot(app)
    r = await alice.post("/v1/connections", json=link_body("http://127.0.0.1:9", 1))  # discard port: nobody listens
    assert_problem(r, 503, "broker_unavailable")
    assert await snapshot(app) == before


@pytest.mark.parametrize(
    "base_url",
    [
        "http://169.254.169.254/latest",  # cloud metadata
        "http://10.0.0.1:8100",
        "https://broker.example.com",
        "http://127.0.0.1@10.0.0.1:8100",  # loopback only as the user part
        "http://127.0.0.1.example.com:8100",
        "http://[fd00::1]:8100",
    ],
)
async def test_only_loopback_broker_endpoints_are_linked(
    app: Litestar, alice: httpx.AsyncClient, base_url: str
) -> None:
    """The server connects wherever a link points it: anything off the allow-list is refused before
    any connection is tried (SSRF, SECURITY.md 30)."""
    before = await snapshot(app)
    r = await alice.post("/v1/connections", json=link_body(base_url, 1))
    problem = assert_problem(r, 422, "invalid_input")
    assert problem["field"] == "base_url"
    assert "base_url" in problem["detail"]
    assert await snapshot(app) == before


async def test_a_base_url_that_is_not_http_is_refused_by_the_schema(app: Litestar, alice: httpx.AsyncClient) -> None:
    before = await snapshot(app)
    r = await alice.post("/v1/connections", json=link_body("ftp://127.0.0.1/", 1))
    problem = assert_problem(r, 422, "invalid_input")
    assert [e["field"] for e in problem["errors"]] == ["base_url"]
    assert await snapshot(app) == before


async def test_a_label_or_a_venue_account_linked_twice_is_a_409(
    app: Litestar, alice: httpx.AsyncClient, venue: SimHarness
) -> None:
    linked = await link_via_api(alice, venue.base_url, 1, label="Sim FX")
    await ledger_caught_up(app, linked["account"]["id"])
    before = await snapshot(app)
    same_label = await alice.post("/v1/connections", json=link_body(venue.base_url, 2, label="Sim FX"))
    problem = assert_problem(same_label, 409, "conflict")
    assert problem["field"] == "label"
    same_account = await alice.post("/v1/connections", json=link_body(venue.base_url, 1, label="Sim FX again"))
    assert "already linked" in assert_problem(same_account, 409, "conflict")["detail"]
    assert await snapshot(app) == before
    # The refused attempts left the first link working.
    assert [c["status"] for c in (await alice.get("/v1/connections")).json()["data"]] == ["connected"]


@pytest.mark.parametrize(("broker", "how"), [("nosuchbroker", "the links service"), ("Sim!", "the schema")])
async def test_an_unknown_broker_is_a_422(
    app: Litestar, alice: httpx.AsyncClient, venue: SimHarness, broker: str, how: str
) -> None:
    before = await snapshot(app)
    r = await alice.post("/v1/connections", json=link_body(venue.base_url, 1, broker=broker))
    problem = assert_problem(r, 422, "invalid_input")
    assert "broker" in problem["detail"], how
    assert await snapshot(app) == before


@pytest.mark.parametrize("field", ["label", "account_name"])
async def test_a_blank_label_or_account_name_is_a_422(
    app: Litestar, alice: httpx.AsyncClient, venue: SimHarness, field: str
) -> None:
    """The schema's minimum length counts the spaces; the names are stored stripped."""
    before = await snapshot(app)
    r = await alice.post("/v1/connections", json=link_body(venue.base_url, 1, **{field: "   "}))
    problem = assert_problem(r, 422, "invalid_input")
    assert problem["field"] == field
    assert await snapshot(app) == before


# --- credentials never leave the vault ----------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put back what :func:`configure_logging` changes (root handlers, library loggers, structlog)."""
    names = ["", "uvicorn", "uvicorn.error", "uvicorn.access", "granian", "granian.access", "_granian", "httpx"]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in map(logging.getLogger, names)]
    yield
    for lg, handlers, level, propagate in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate
    structlog.reset_defaults()


class Recorder:
    """Keeps every response a client receives: status line, headers and body."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, response: httpx.Response) -> None:
        await response.aread()
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.multi_items())
        self.seen.append(
            f"{response.request.method} {response.request.url} {response.status_code}\n{headers}\n{response.text}"
        )


@pytest.mark.parametrize(
    "level",
    [
        "info",
        "debug",
    ],
)
async def test_credentials_never_appear_in_a_response_a_header_or_a_log(  # noqa: PLR0917 - pytest fixtures
    app: Litestar,
    alice: httpx.AsyncClient,
    bob: httpx.AsyncClient,
    venue: SimHarness,
    capfd: pytest.CaptureFixture[str],
    restore_logging: None,
    level: str,
) -> None:
    configure_logging(level, "json")
    recorder = Recorder()
    for c in (alice, bob):
        c.event_hooks["response"].append(recorder)
    secrets = [
        *venue_credentials(1).values(),
        *venue_credentials(2).values(),
        "refused-key-9876",
        "refused-secret-9876",
    ]

    # Refusals first: a wrong key, a bad endpoint, an unknown broker, a bad credential name.
    refused = {"api_key": "refused-key-9876", "api_secret": "refused-secret-9876"}
    assert (
        await alice.post("/v1/connections", json=link_body(venue.base_url, 1, credentials=refused))
    ).status_code == 422
    assert (await alice.post("/v1/connections", json=link_body("http://10.0.0.1", 1))).status_code == 422
    assert (await alice.post("/v1/connections", json=link_body(venue.base_url, 1, broker="nope"))).status_code == 422
    bad_name = {"API KEY": "refused-key-9876"}
    assert (
        await alice.post("/v1/connections", json=link_body(venue.base_url, 1, credentials=bad_name))
    ).status_code == 422
    too_long = {"api_key": "refused-key-9876" * 200}
    assert (
        await alice.post("/v1/connections", json=link_body(venue.base_url, 1, credentials=too_long))
    ).status_code == 422

    # A link, everything that shows it, a conflict, trading through it, and unlinking.
    linked = await link_via_api(alice, venue.base_url, 1, label="Sim FX")
    connection_id, account_id = linked["connection"]["id"], linked["account"]["id"]
    assert (await alice.post("/v1/connections", json=link_body(venue.base_url, 2, label="Sim FX"))).status_code == 409
    for path in [
        "/v1/connections",
        f"/v1/connections/{connection_id}",
        "/v1/accounts",
        f"/v1/accounts/{account_id}",
        f"/v1/accounts/{account_id}/balances",
        "/v1/me",
        "/openapi.json",
    ]:
        assert (await alice.get(path)).status_code == 200, path
    placed = await alice.post(f"/v1/accounts/{account_id}/orders", json=MARKET_ORDER)
    assert placed.status_code == 201, placed.text
    assert (await bob.get(f"/v1/connections/{connection_id}")).status_code == 404
    assert (await alice.delete(f"/v1/connections/{connection_id}")).status_code == 204
    assert (await alice.get(f"/v1/connections/{connection_id}")).status_code == 200  # revoked, history kept

    assert len(recorder.seen) >= 18
    out, err = capfd.readouterr()
    assert '"event": "broker_linked"' in err, "the logs were captured"
    for secret in secrets:
        for seen in recorder.seen:
            assert secret not in seen, f"a response carries {secret!r}: {seen[:200]}"
        leaking = [line for line in (out + err).splitlines() if secret in line]
        assert not leaking, f"{len(leaking)} log line(s) carry {secret!r}, e.g. {leaking[0][:300]}"


# --- unlinking ---------------------------------------------------------------------------------


async def test_unlinking_an_account_without_history_removes_it(
    app: Litestar, alice: httpx.AsyncClient, venue: SimHarness
) -> None:
    linked = await link_via_api(alice, venue.base_url, 1)
    connection_id, account_id = linked["connection"]["id"], linked["account"]["id"]
    r = await alice.delete(f"/v1/connections/{connection_id}")
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert_problem(await alice.get(f"/v1/connections/{connection_id}"), 404, "not_found")
    assert_problem(await alice.get(f"/v1/accounts/{account_id}"), 404, "not_found")
    assert_problem(await alice.get(f"/v1/accounts/{account_id}/balances"), 404, "not_found")
    assert (await alice.get("/v1/accounts")).json()["data"] == []
    counts = await table_counts(app)
    assert (counts["broker_connections"], counts["vault_secrets"], counts["accounts"]) == (0, 0, 0)
    assert_problem(await alice.delete(f"/v1/connections/{connection_id}"), 404, "not_found")
    # The venue account is free to be linked again.
    await link_via_api(alice, venue.base_url, 1)


async def test_unlinking_an_account_with_history_revokes_it_and_stops_its_orders(
    app: Litestar, alice: httpx.AsyncClient, venue: SimHarness
) -> None:
    """SECURITY.md 25: once revoked, no order goes to the account; its record stays the user's."""
    linked = await link_via_api(alice, venue.base_url, 1)
    connection_id, account_id = linked["connection"]["id"], linked["account"]["id"]
    placed = await alice.post(f"/v1/accounts/{account_id}/orders", json=MARKET_ORDER)
    assert placed.status_code == 201, placed.text

    assert (await alice.delete(f"/v1/connections/{connection_id}")).status_code == 204
    connection = (await alice.get(f"/v1/connections/{connection_id}")).json()
    assert connection["status"] == "revoked"
    assert [(a["id"], a["connection_status"]) for a in (await alice.get("/v1/accounts")).json()["data"]] == [
        (account_id, "revoked")
    ]
    orders = (await alice.get(f"/v1/accounts/{account_id}/orders")).json()["data"]
    assert [o["id"] for o in orders] == [placed.json()["id"]]
    assert (await table_counts(app))["vault_secrets"] == 0

    await ledger_caught_up(app, account_id)
    before = await snapshot(app)
    refused = await alice.post(f"/v1/accounts/{account_id}/orders", json=MARKET_ORDER)
    assert_problem(refused, 409, "conflict")  # not "try again": retrying can never help
    assert "link the account again" in refused.json()["detail"]
    assert await snapshot(app) == before


# --- another user's link ------------------------------------------------------------------------


async def test_another_users_link_cannot_be_seen_unlinked_or_traded_through(
    app: Litestar, alice: httpx.AsyncClient, bob: httpx.AsyncClient, venue: SimHarness
) -> None:
    """SECURITY.md 19: 404 exactly like a missing object, never 403, and nothing changes."""
    linked = await link_via_api(alice, venue.base_url, 1)
    connection_id, account_id = linked["connection"]["id"], linked["account"]["id"]
    placed = await alice.post(f"/v1/accounts/{account_id}/orders", json=RESTING_ORDER)
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["id"]

    async def acknowledged() -> bool | None:
        return (await alice.get(f"/v1/orders/{order_id}")).json()["status"] == "new" or None

    await eventually(acknowledged, "the venue to acknowledge Alice's order")

    await ledger_caught_up(app, account_id)
    before = await snapshot(app)
    assert (await bob.get("/v1/connections")).json()["data"] == []
    assert (await bob.get("/v1/accounts")).json()["data"] == []
    missing_connection, missing_account = new_id("con"), new_id("acc")
    attempts = [
        ("GET", f"/v1/connections/{connection_id}", f"/v1/connections/{missing_connection}", None),
        ("DELETE", f"/v1/connections/{connection_id}", f"/v1/connections/{missing_connection}", None),
        ("GET", f"/v1/accounts/{account_id}", f"/v1/accounts/{missing_account}", None),
        ("PATCH", f"/v1/accounts/{account_id}", f"/v1/accounts/{missing_account}", {"name": "mine now"}),
        ("GET", f"/v1/accounts/{account_id}/balances", f"/v1/accounts/{missing_account}/balances", None),
        ("GET", f"/v1/accounts/{account_id}/orders", f"/v1/accounts/{missing_account}/orders", None),
        ("POST", f"/v1/accounts/{account_id}/orders", f"/v1/accounts/{missing_account}/orders", MARKET_ORDER),
        ("GET", f"/v1/orders/{order_id}", f"/v1/orders/{new_id('ord')}", None),
        ("DELETE", f"/v1/orders/{order_id}", f"/v1/orders/{new_id('ord')}", None),
    ]
    for method, foreign, missing, body in attempts:
        theirs = await bob.request(method, foreign, json=body)
        nothing = await bob.request(method, missing, json=body)
        assert theirs.status_code == nothing.status_code == 404, (method, foreign, theirs.text)
        assert theirs.json()["detail"] == nothing.json()["detail"], (method, foreign)
        assert "Alice" not in theirs.text
        assert venue_account_id(1) not in theirs.text
    assert await snapshot(app) == before
    # Alice's link is untouched and still trades.
    assert (await alice.get(f"/v1/connections/{connection_id}")).json()["status"] == "connected"
    assert (await alice.get(f"/v1/orders/{order_id}")).json()["status"] == "new"
    assert (await alice.post(f"/v1/accounts/{account_id}/orders", json=MARKET_ORDER)).status_code == 201
