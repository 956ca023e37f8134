"""Object-level authorization: another user's object is indistinguishable from a missing one."""

from __future__ import annotations

import httpx
import pytest
from litestar import Litestar

from brokerlink.kit.ids import new_id
from tests.api.support import ClientFactory, link_account


@pytest.fixture
async def two_users(app: Litestar, make_client: ClientFactory) -> dict[str, object]:
    alice = await make_client("alice@example.com", "Alice")
    bob = await make_client("bob@example.com", "Bob")
    a_conn, a_acc = await link_account(app, "alice@example.com", "alice-main")
    b_conn, b_acc = await link_account(app, "bob@example.com", "bob-main")
    return {"alice": alice, "bob": bob, "a_conn": a_conn, "a_acc": a_acc, "b_conn": b_conn, "b_acc": b_acc}


async def test_each_user_lists_only_their_own_accounts(two_users: dict[str, object]) -> None:
    alice, bob = two_users["alice"], two_users["bob"]
    assert isinstance(alice, httpx.AsyncClient)
    assert isinstance(bob, httpx.AsyncClient)
    a = (await alice.get("/v1/accounts")).json()["data"]
    b = (await bob.get("/v1/accounts")).json()["data"]
    assert [x["id"] for x in a] == [two_users["a_acc"]]
    assert [x["id"] for x in b] == [two_users["b_acc"]]
    assert a[0]["broker"] == "sim"
    assert a[0]["connection_status"] == "disconnected"


async def test_reading_another_users_account_is_404_like_a_missing_one(two_users: dict[str, object]) -> None:
    bob = two_users["bob"]
    assert isinstance(bob, httpx.AsyncClient)
    foreign = await bob.get(f"/v1/accounts/{two_users['a_acc']}")
    missing = await bob.get(f"/v1/accounts/{new_id('acc')}")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["code"] == missing.json()["code"] == "not_found"
    assert foreign.json()["detail"] == missing.json()["detail"]
    assert "alice" not in foreign.text


async def test_changing_another_users_account_is_404_and_changes_nothing(two_users: dict[str, object]) -> None:
    alice, bob = two_users["alice"], two_users["bob"]
    assert isinstance(alice, httpx.AsyncClient)
    assert isinstance(bob, httpx.AsyncClient)
    r = await bob.patch(f"/v1/accounts/{two_users['a_acc']}", json={"name": "pwned"})
    assert r.status_code == 404
    mine = await alice.get(f"/v1/accounts/{two_users['a_acc']}")
    assert mine.json()["name"] == "alice-main"


async def test_owner_can_rename_their_account(two_users: dict[str, object]) -> None:
    alice = two_users["alice"]
    assert isinstance(alice, httpx.AsyncClient)
    r = await alice.patch(f"/v1/accounts/{two_users['a_acc']}", json={"name": "  Swing FX  "})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Swing FX"
    blank = await alice.patch(f"/v1/accounts/{two_users['a_acc']}", json={"name": "   "})
    assert blank.status_code == 422


async def test_connections_are_scoped_and_carry_no_credentials(two_users: dict[str, object]) -> None:
    alice, bob = two_users["alice"], two_users["bob"]
    assert isinstance(alice, httpx.AsyncClient)
    assert isinstance(bob, httpx.AsyncClient)
    listed = (await alice.get("/v1/connections")).json()["data"]
    assert [c["id"] for c in listed] == [two_users["a_conn"]]
    assert "credentials" not in str(listed)
    assert (await bob.get(f"/v1/connections/{two_users['a_conn']}")).status_code == 404
    assert (await alice.get(f"/v1/connections/{two_users['a_conn']}")).status_code == 200


@pytest.mark.parametrize(
    "path", ["/v1/me", "/v1/accounts", "/v1/connections", "/v1/accounts/acc_x", "/docs", "/openapi.json"]
)
async def test_protected_routes_need_a_session(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path)
    assert r.status_code == 401
    assert r.json()["code"] == "not_authenticated"
