"""Roles (user, provider, admin, auditor): function-level checks, and admins granting roles.

Every route under /v1/admin is walked with each non-admin role (403); publishing a strategy needs
the provider role, which an admin grants with ``PATCH /v1/admin/users/{id}``.
"""

from __future__ import annotations

import json

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import select

from brokerlink.domain.enums import Role
from brokerlink.store.db import Database
from brokerlink.store.models_audit import AuditRecordRow
from tests.api.resource_support import user_id
from tests.api.support import ClientFactory, assert_problem, link_account
from tests.api.test_scopes import concrete, v1_routes

STAFF_ONLY_ELSEWHERE = [("GET", "/v1/ledger/trial-balance"), ("POST", "/v1/admin/fees/settle")]
AUDITOR_MAY = {("GET", "/v1/admin/audit"), ("GET", "/v1/admin/audit/verify")}


@pytest.fixture
async def admin(app: Litestar, make_client: ClientFactory) -> httpx.AsyncClient:
    return await make_client("root@example.com", "Root", role=Role.ADMIN)


async def test_security21_a_non_admin_on_every_admin_route_gets_403(app: Litestar, make_client: ClientFactory) -> None:
    clients = {
        role: await make_client(f"{role.value}@example.com", role.value.title(), role=role)
        for role in (Role.USER, Role.PROVIDER, Role.AUDITOR)
    }
    admin_routes = [(m, p) for m, p, _ in v1_routes(app) if p.startswith("/v1/admin/") and m != "WS"]
    assert len(admin_routes) >= 15
    for role, c in clients.items():
        for method, template in [*admin_routes, *STAFF_ONLY_ELSEWHERE]:
            if role is Role.AUDITOR and (method, template) in AUDITOR_MAY:
                continue
            response = await c.request(method, concrete(template, "acc_x"), json={})
            assert response.status_code == 403, (role, method, template, response.text)
    assert (await clients[Role.AUDITOR].get("/v1/admin/audit")).status_code == 200


async def test_publishing_needs_the_provider_role(app: Litestar, make_client: ClientFactory) -> None:
    carol = await make_client("carol@example.com", "Carol")
    _, account = await link_account(app, "carol@example.com", "Main")
    body = {"name": "Trend", "account_id": account}
    problem = assert_problem(await carol.post("/v1/strategies", json=body), 403, "forbidden")
    assert "provider" in problem["detail"]
    # Following is anyone's; browsing too.
    assert (await carol.get("/v1/strategies/public")).status_code == 200

    pat = await make_client("pat@example.com", "Pat", role=Role.PROVIDER)
    _, pats = await link_account(app, "pat@example.com", "Pat's")
    assert (await pat.post("/v1/strategies", json={"name": "Trend", "account_id": pats})).status_code == 201


async def test_an_admin_grants_the_provider_role(
    app: Litestar, admin: httpx.AsyncClient, make_client: ClientFactory
) -> None:
    dave = await make_client("dave@example.com", "Dave")
    _, account = await link_account(app, "dave@example.com", "Main")
    dave_id = await user_id(app, "dave@example.com")
    assert_problem(await dave.patch(f"/v1/admin/users/{dave_id}", json={"role": "provider"}), 403, "forbidden")

    listed = (await admin.get("/v1/admin/users")).json()["data"]
    assert {u["email"] for u in listed} == {"root@example.com", "dave@example.com"}
    assert all("password_hash" not in u for u in listed)

    granted = await admin.patch(f"/v1/admin/users/{dave_id}", json={"role": "provider"})
    assert granted.status_code == 200, granted.text
    assert granted.json()["role"] == "provider"
    # At once: the session reads the role on each request.
    assert (await dave.post("/v1/strategies", json={"name": "D", "account_id": account})).status_code == 201
    again = await admin.patch(f"/v1/admin/users/{dave_id}", json={"role": "provider"})
    assert again.status_code == 200  # unchanged: nothing recorded
    database: Database = app.state.db
    async with database.session() as s:
        rows = (await s.scalars(select(AuditRecordRow).where(AuditRecordRow.action == "user.role"))).all()
    assert [(r.target, json.loads(r.details)) for r in rows] == [(dave_id, {"from": "user", "to": "provider"})]


async def test_role_changes_are_validated(app: Litestar, admin: httpx.AsyncClient) -> None:
    root_id = await user_id(app, "root@example.com")
    assert_problem(await admin.patch(f"/v1/admin/users/{root_id}", json={"role": "user"}), 409, "own_admin_role")
    assert_problem(await admin.patch(f"/v1/admin/users/{root_id}", json={"role": "owner"}), 422, "invalid_input")
    extra = {"role": "admin", "email": "x@example.com"}
    assert_problem(await admin.patch(f"/v1/admin/users/{root_id}", json=extra), 422, "invalid_input")
    assert_problem(await admin.patch("/v1/admin/users/usr_missing", json={"role": "user"}), 404, "not_found")
    assert_problem(await admin.get("/v1/admin/users/usr_missing"), 404, "not_found")
    assert (await admin.get(f"/v1/admin/users/{root_id}")).json()["role"] == "admin"
