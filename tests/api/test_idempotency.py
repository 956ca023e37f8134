"""``Idempotency-Key`` (SECURITY 28): a retry gets the first response and creates nothing.

The mechanism (api/idempotency.py) is tested on a test-only route of the real app whose handler
counts its runs and can be held mid-request, so concurrency is exercised deterministically; order
placement, where it is applied, is tested against a real sim venue on loopback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, post
from litestar.params import JSONBody
from sqlalchemy import func, select

from brokerlink.api.audit import NOT_AUDITED
from brokerlink.api.idempotency import IdempotencyKey, idempotent, key_hash, request_hash
from brokerlink.app.factory import create_app
from brokerlink.config import Settings
from brokerlink.engine.retention import RetentionPolicy, purge
from brokerlink.kit.clock import ManualClock
from brokerlink.kit.errors import Conflict, Unavailable
from brokerlink.store.db import Database
from brokerlink.store.models import OrderRow
from brokerlink.store.models_idempotency import IdempotencyKeyRow
from brokerlink.store.repositories.idempotency import IdempotencyRepository
from tests.api.support import MARKET_ORDER, PASSWORD, asgi_client, assert_problem, link_via_api, running, with_csrf
from tests.contract.harness import SimHarness

THINGS = "/v1/test/things"


class Things:
    """The test route's behaviour: how often it ran, what it fails with, and a gate that holds it."""

    def __init__(self) -> None:
        self.runs = 0
        self.fail_with: Exception | None = None
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Keys kept ten minutes, so a test can outlive one without outliving the sign-in session; no order
    velocity cap (its own tests set it), so concurrent placements all reach the idempotency check."""
    return settings.model_copy(update={"idempotency_ttl_seconds": 600, "rate_limit_orders": "1000/second"})


@pytest.fixture
def things() -> Things:
    return Things()


@pytest.fixture
def app(settings: Settings, clock: ManualClock, things: Things) -> Litestar:
    """The real app plus a test-only idempotent route that "creates" a numbered thing."""

    @idempotent
    @post(THINGS, status_code=201, opt=NOT_AUDITED)
    async def create_thing(
        request: Request[Any, Any, Any],
        data: JSONBody[dict[str, Any]],
        idempotency_key: IdempotencyKey = None,
    ) -> dict[str, Any]:
        things.runs += 1
        things.entered.set()
        if things.gate is not None:
            await things.gate.wait()
        if things.fail_with is not None:
            raise things.fail_with
        return {"number": things.runs, "data": data}

    created = create_app(settings, clock=clock, configure_logs=False)
    created.register(create_thing)
    return created


def key_rows(app: Litestar) -> Any:
    async def count() -> int:
        database: Database = app.state.db
        async with database.session() as s:
            return int((await s.execute(select(func.count()).select_from(IdempotencyKeyRow))).scalar_one())

    return count()


async def test_security28_same_key_and_body_replays_the_first_response(
    alice: httpx.AsyncClient, things: Things
) -> None:
    key = {"Idempotency-Key": "8e0c2f5e-2d4b-4c55-9b3e-4f1f0b8a7c11"}
    first = await alice.post(THINGS, json={"name": "a", "size": 1}, headers=key)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    # The same JSON, keys reordered and spaced differently: the same request.
    again = await alice.post(
        THINGS, content=b'{ "size": 1,  "name": "a" }', headers=key | {"content-type": "application/json"}
    )
    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["x-request-id"] != first.headers["x-request-id"]  # a new request, the old answer
    assert things.runs == 1


async def test_security28_same_key_other_body_is_422_and_runs_nothing(alice: httpx.AsyncClient, things: Things) -> None:
    key = {"Idempotency-Key": "order-1"}
    assert (await alice.post(THINGS, json={"name": "a"}, headers=key)).status_code == 201
    problem = assert_problem(await alice.post(THINGS, json={"name": "b"}, headers=key), 422, "idempotency_key_reused")
    assert problem["type"] == "urn:brokerlink:problem:idempotency_key_reused"
    assert things.runs == 1
    # The first response is still what an identical retry gets.
    replay = await alice.post(THINGS, json={"name": "a"}, headers=key)
    assert (replay.status_code, replay.json()["number"]) == (201, 1)


async def test_security28_concurrent_requests_with_one_key_run_once(alice: httpx.AsyncClient, things: Things) -> None:
    things.gate = asyncio.Event()
    key = {"Idempotency-Key": "concurrent"}
    first = asyncio.create_task(alice.post(THINGS, json={"n": 1}, headers=key))
    await asyncio.wait_for(things.entered.wait(), timeout=30)  # the first is inside the handler, holding the key
    second = await alice.post(THINGS, json={"n": 1}, headers=key)
    problem = assert_problem(second, 409, "idempotency_key_in_use")
    assert second.headers["retry-after"] == "1"
    assert "still being processed" in problem["detail"]
    things.gate.set()
    assert (await first).status_code == 201
    third = await alice.post(THINGS, json={"n": 1}, headers=key)
    assert (third.status_code, third.headers["idempotent-replayed"]) == (201, "true")
    assert things.runs == 1


async def test_keys_belong_to_their_principal(make_client: Any, things: Things) -> None:
    alice = await make_client("alice@example.com", "Alice")
    bob = await make_client("bob@example.com", "Bob")
    key = {"Idempotency-Key": "shared-key"}
    a = await alice.post(THINGS, json={"who": "me"}, headers=key)
    b = await bob.post(THINGS, json={"who": "me"}, headers=key)
    assert (a.status_code, b.status_code) == (201, 201)
    assert "idempotent-replayed" not in b.headers
    assert (a.json()["number"], b.json()["number"]) == (1, 2)  # Bob's request ran: Alice's answer is hers


async def test_a_server_error_releases_the_key_and_a_retry_runs(alice: httpx.AsyncClient, things: Things) -> None:
    key = {"Idempotency-Key": "retry-me"}
    things.fail_with = Unavailable("the broker is not connected")
    assert_problem(await alice.post(THINGS, json={}, headers=key), 503, "unavailable")
    things.fail_with = None
    retried = await alice.post(THINGS, json={}, headers=key)
    assert retried.status_code == 201
    assert "idempotent-replayed" not in retried.headers
    assert things.runs == 2


async def test_a_client_error_from_the_handler_is_the_kept_answer(alice: httpx.AsyncClient, things: Things) -> None:
    key = {"Idempotency-Key": "conflicted"}
    things.fail_with = Conflict("already there")
    first = await alice.post(THINGS, json={}, headers=key)
    assert_problem(first, 409, "conflict")
    things.fail_with = None
    again = await alice.post(THINGS, json={}, headers=key)
    assert (again.status_code, again.content, again.headers["idempotent-replayed"]) == (409, first.content, "true")
    assert again.headers["content-type"].startswith("application/problem+json")
    assert things.runs == 1


async def test_requests_refused_before_the_handler_do_not_use_the_key(
    alice: httpx.AsyncClient, client: httpx.AsyncClient, things: Things
) -> None:
    key = {"Idempotency-Key": "careful"}
    no_csrf = await alice.post(THINGS, json={}, headers=key | {"x-csrf-token": "forged"})
    assert no_csrf.status_code == 403
    anonymous = await client.post(THINGS, json={}, headers=key)
    assert anonymous.status_code in {401, 403}
    ok = await alice.post(THINGS, json={}, headers=key)
    assert ok.status_code == 201
    assert "idempotent-replayed" not in ok.headers
    assert things.runs == 1


async def test_without_a_key_every_request_runs(alice: httpx.AsyncClient, things: Things) -> None:
    for _ in range(2):
        assert (await alice.post(THINGS, json={"a": 1})).status_code == 201
    assert things.runs == 2


@pytest.mark.parametrize("bad", [b"", b"x" * 256, "caf\u00e9".encode("latin-1"), b"tab\there"])
async def test_a_malformed_key_is_invalid_input(alice: httpx.AsyncClient, things: Things, bad: bytes) -> None:
    r = await alice.post(THINGS, json={}, headers={"Idempotency-Key": bad})
    problem = assert_problem(r, 422, "invalid_input")
    assert problem["errors"][0]["field"] == "Idempotency-Key"
    assert problem["errors"][0]["source"] == "header"
    assert things.runs == 0


async def test_a_key_expires_and_then_starts_over(
    app: Litestar, alice: httpx.AsyncClient, clock: ManualClock, settings: Settings, things: Things
) -> None:
    key = {"Idempotency-Key": "short-lived"}
    assert (await alice.post(THINGS, json={"v": 1}, headers=key)).status_code == 201
    clock.advance(timedelta(seconds=settings.idempotency_ttl_seconds + 1))
    again = await alice.post(THINGS, json={"v": 2}, headers=key)  # another body: fine once the key expired
    assert (again.status_code, again.json()["number"]) == (201, 2)
    assert await key_rows(app) == 1


async def test_a_claim_whose_request_died_is_taken_over_after_the_lease(
    app: Litestar, alice: httpx.AsyncClient, clock: ManualClock, settings: Settings, things: Things
) -> None:
    # A request that claimed the key and never answered (its process died), made up directly in the store.
    me = (await alice.get("/v1/me")).json()
    database: Database = app.state.db
    async with database.session() as s:
        claim = await IdempotencyRepository(s).claim(
            owner=f"user:{me['id']}", key_hash=key_hash("orphan"),
            request_hash=request_hash("POST", THINGS, b"", b"{}"), now=clock.now(),
            lease=timedelta(seconds=settings.idempotency_lease_seconds), ttl=timedelta(days=1),
        )  # fmt: skip
        await s.commit()
    assert claim.outcome == "run"
    key = {"Idempotency-Key": "orphan"}
    assert_problem(await alice.post(THINGS, json={}, headers=key), 409, "idempotency_key_in_use")
    clock.advance(timedelta(seconds=settings.idempotency_lease_seconds))
    taken_over = await alice.post(THINGS, json={}, headers=key)
    assert taken_over.status_code == 201
    assert "idempotent-replayed" not in taken_over.headers
    assert things.runs == 1
    replay = await alice.post(THINGS, json={}, headers=key)
    assert replay.headers["idempotent-replayed"] == "true"


async def test_expired_keys_are_purged_by_retention(
    app: Litestar, alice: httpx.AsyncClient, clock: ManualClock, settings: Settings
) -> None:
    for n in range(3):
        assert (await alice.post(THINGS, json={}, headers={"Idempotency-Key": f"k{n}"})).status_code == 201
    clock.advance(timedelta(seconds=settings.idempotency_ttl_seconds - 1))
    assert (await alice.post(THINGS, json={}, headers={"Idempotency-Key": "fresh"})).status_code == 201
    clock.advance(timedelta(seconds=2))
    report = await purge(app.state.db, clock, RetentionPolicy())
    assert report.counts["idempotency_keys"] == 3
    assert await key_rows(app) == 1


# --- order placement, against a real venue ------------------------------------------------------------


@pytest.fixture
async def trader(
    venue: SimHarness, settings: Settings, clock: ManualClock
) -> AsyncIterator[tuple[Litestar, httpx.AsyncClient, str]]:
    """The plain app (started after the venue), Alice signed in with MFA and her account linked."""
    from tests.api.mfa_support import enrol_totp

    plain = create_app(settings, clock=clock, configure_logs=False)
    async with running(plain), asgi_client(plain) as alice:
        await with_csrf(alice)
        registered = await alice.post(
            "/v1/auth/register", json={"email": "alice@example.com", "password": PASSWORD, "display_name": "Alice"}
        )
        assert registered.status_code == 201, registered.text
        await enrol_totp(alice, clock)
        linked = await link_via_api(alice, venue.base_url, 1)
        yield plain, alice, linked["account"]["id"]


async def order_count(app: Litestar) -> int:
    database: Database = app.state.db
    async with database.session() as s:
        return int((await s.execute(select(func.count()).select_from(OrderRow))).scalar_one())


async def test_security28_repeated_order_placement_creates_no_second_order(
    trader: tuple[Litestar, httpx.AsyncClient, str],
) -> None:
    app, alice, account_id = trader
    url = f"/v1/accounts/{account_id}/orders"
    key = {"Idempotency-Key": "place-eurusd-1"}
    first = await alice.post(url, json=MARKET_ORDER, headers=key)
    assert first.status_code == 201, first.text
    again = await alice.post(url, json=MARKET_ORDER, headers=key)
    assert (again.status_code, again.content) == (201, first.content)
    assert again.headers["idempotent-replayed"] == "true"
    assert await order_count(app) == 1
    # The same key with another order: refused, nothing placed.
    other = await alice.post(url, json=MARKET_ORDER | {"qty": "0.20"}, headers=key)
    assert_problem(other, 422, "idempotency_key_reused")
    assert await order_count(app) == 1
    # Concurrent requests with a new key: one order, whatever the interleaving.
    key2 = {"Idempotency-Key": "place-eurusd-2"}
    answers = await asyncio.gather(*(alice.post(url, json=MARKET_ORDER, headers=key2) for _ in range(3)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses.count(201) >= 1
    assert set(statuses) <= {201, 409}, [r.text for r in answers]
    ran = [r for r in answers if r.status_code == 201 and "idempotent-replayed" not in r.headers]
    assert len(ran) == 1
    assert await order_count(app) == 2
    orders = (await alice.get(url)).json()["data"]
    assert len(orders) == 2
