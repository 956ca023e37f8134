"""The API's audit wiring (SECURITY.md 33): each state change writes exactly one audit record, in the
transaction that makes the change; a refused sign-in is recorded although its request rolls back; a
refused change records nothing; and a state-changing route that forgets to record fails in tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any

import httpx
import pytest
from litestar import Litestar, Request, post
from litestar.params import Parameter
from sqlalchemy import select

from brokerlink.api.audit import audited, unchanged
from brokerlink.api.deps import AppClock, DbSession
from brokerlink.security.audit_verify import verify
from brokerlink.store.db import Database
from brokerlink.store.models import UserRow
from brokerlink.store.models_audit import AuditRecordRow
from tests.api.mfa_support import authenticator
from tests.api.support import PASSWORD, ClientFactory, asgi_client, link_body, with_csrf
from tests.contract.harness import SimHarness


@pytest.fixture
def app(venue: SimHarness, app: Litestar) -> Litestar:
    """The venue starts before the app and stops after it."""
    return app


Row = dict[str, Any]


async def _records(app: Litestar) -> list[Row]:
    database: Database = app.state.db
    async with database.session() as s:
        rows = (await s.scalars(select(AuditRecordRow).order_by(AuditRecordRow.seq))).all()
    return [
        {
            "seq": r.seq,
            "actor": (r.actor_kind, r.actor_id),
            "action": r.action,
            "target": r.target,
            "outcome": r.outcome,
            "request_id": r.request_id,
            "source_ip": r.source_ip,
        }
        for r in rows
    ]


async def _user_id(app: Litestar, email: str) -> str:
    database: Database = app.state.db
    async with database.session() as s:
        return (await s.execute(select(UserRow.id).where(UserRow.email == email))).scalar_one()


class Trail:
    """The records written since the last call."""

    def __init__(self, app: Litestar) -> None:
        self.app = app
        self.seen = 0

    async def new(self) -> list[Row]:
        rows = await _records(self.app)
        fresh, self.seen = rows[self.seen :], len(rows)
        return fresh

    async def one(self, response: httpx.Response, action: str, *, actor_id: str, outcome: str = "success") -> Row:
        fresh = await self.new()
        assert len(fresh) == 1, fresh
        (row,) = fresh
        assert (row["action"], row["actor"], row["outcome"]) == (action, ("user", actor_id), outcome), row
        assert row["request_id"] == response.headers["x-request-id"]
        assert row["source_ip"]
        return row


@pytest.fixture
async def trail(app: Litestar, client: httpx.AsyncClient) -> AsyncIterator[Trail]:
    yield Trail(app)
    database: Database = app.state.db
    async with database.session() as s:
        result = await verify(s, public_keys={})
    assert result.ok, result


async def test_each_state_change_writes_exactly_one_record(
    app: Litestar, make_client: ClientFactory, venue: SimHarness, trail: Trail
) -> None:
    bob = await make_client("bob@example.com", "Bob")  # registers and enrols MFA
    bob_id = await _user_id(app, "bob@example.com")
    actions = [row["action"] for row in await trail.new()]
    assert actions == ["auth.register", "mfa.totp_start", "mfa.totp_enable"]

    response = await bob.post("/v1/connections", json=link_body(venue.base_url))
    assert response.status_code == 201, response.text
    linked = response.json()
    assert (await trail.one(response, "connection.link", actor_id=bob_id))["target"] == linked["connection"]["id"]
    response = await bob.get(f"/v1/connections/{linked['connection']['id']}")  # a read records nothing
    assert response.status_code == 200
    assert await trail.new() == []
    account_id = linked["account"]["id"]

    response = await bob.patch(f"/v1/accounts/{account_id}", json={"name": "Main"})
    assert response.status_code == 200, response.text
    assert (await trail.one(response, "account.rename", actor_id=bob_id))["target"] == account_id

    order = {"symbol": "EUR/USD", "side": "buy", "qty": "0.10", "type": "limit", "limit_price": "0.50000", "tif": "gtc"}
    response = await bob.post(f"/v1/accounts/{account_id}/orders", json=order)
    assert response.status_code == 201, response.text
    order_id = response.json()["id"]
    assert (await trail.one(response, "order.place", actor_id=bob_id))["target"] == order_id

    response = await bob.delete(f"/v1/orders/{order_id}")
    assert response.status_code == 200, response.text
    assert (await trail.one(response, "order.cancel", actor_id=bob_id))["target"] == order_id

    response = await bob.delete(f"/v1/orders/{order_id}")  # refused (already canceled): nothing recorded
    assert response.status_code == 409, response.text
    assert await trail.new() == []

    response = await bob.post("/v1/auth/logout")
    assert response.status_code == 204, response.text
    await trail.one(response, "auth.logout", actor_id=bob_id)


async def test_a_refused_sign_in_is_recorded_though_its_request_rolls_back(
    app: Litestar, client: httpx.AsyncClient, make_client: ClientFactory, trail: Trail
) -> None:
    await make_client("carol@example.com", "Carol", mfa=False)
    carol_id = await _user_id(app, "carol@example.com")
    await trail.new()
    stranger = asgi_client(app)
    try:
        await with_csrf(stranger)
        response = await stranger.post("/v1/auth/login", json={"email": "carol@example.com", "password": "wrong-1234"})
        assert response.status_code == 401
        (row,) = await trail.new()
        assert (row["action"], row["actor"], row["outcome"], row["target"]) == (
            "auth.login", ("user", "anonymous"), "failure", "user:carol@example.com",
        )  # fmt: skip
        assert row["request_id"] == response.headers["x-request-id"]

        response = await stranger.post("/v1/auth/login", json={"email": "carol@example.com", "password": PASSWORD})
        assert response.status_code == 200, response.text
        await trail.one(response, "auth.login", actor_id=carol_id)
    finally:
        await stranger.aclose()


async def test_a_wrong_mfa_code_is_recorded(
    app: Litestar, make_client: ClientFactory, clock: Any, trail: Trail
) -> None:
    dana = await make_client("dana@example.com", "Dana", mfa=True)
    dana_id = await _user_id(app, "dana@example.com")
    await trail.new()
    response = await dana.post("/v1/auth/mfa", json={"code": "000000"})
    if response.status_code == 200:  # 000000 happened to be the current code: use a surely wrong one
        pytest.skip("the current TOTP code was 000000")
    assert response.status_code == 401, response.text
    await trail.one(response, "auth.mfa", actor_id=dana_id, outcome="failure")
    good = authenticator(dana).code(clock, steps_ahead=1)
    clock.advance(timedelta(seconds=30))
    response = await dana.post("/v1/auth/mfa", json={"code": good})
    assert response.status_code == 200, response.text
    await trail.one(response, "auth.mfa", actor_id=dana_id)


@post("/v1/test-audit/{mode:str}", status_code=200)
async def _probe(
    request: Request[Any, Any, Any], mode: Annotated[str, Parameter(max_length=16)], db: DbSession, clock: AppClock
) -> dict[str, str]:
    """A state-changing route for the check itself: records once, twice, never, or says it changed nothing."""
    for _ in range({"once": 1, "twice": 2}.get(mode, 0)):
        await audited(request, db, action="test.probe", target=mode, now=clock.now())
    if mode == "unchanged":
        unchanged(request)
    return {"mode": mode}


async def test_a_state_change_that_does_not_record_exactly_once_fails_in_tests(
    app: Litestar, make_client: ClientFactory, trail: Trail
) -> None:
    app.register(_probe)
    erin = await make_client("erin@example.com", "Erin", mfa=False)
    await trail.new()
    assert (await erin.post("/v1/test-audit/once")).status_code == 200
    assert [r["action"] for r in await trail.new()] == ["test.probe"]
    assert (await erin.post("/v1/test-audit/unchanged")).status_code == 200
    assert await trail.new() == []
    for forgotten in ("never", "twice"):
        response = await erin.post(f"/v1/test-audit/{forgotten}")
        assert response.status_code == 500, response.text
        assert await trail.new() == [], "the failed request's records rolled back with it"
