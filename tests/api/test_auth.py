"""Registration, sign-in, sessions and CSRF through the real app."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import httpx
from litestar import Litestar
from sqlalchemy import select

from brokerlink.kit.clock import ManualClock
from brokerlink.store.db import Database
from brokerlink.store.models import SessionRow, UserRow
from tests.api.support import PASSWORD, ClientFactory, asgi_client, with_csrf

Client = httpx.AsyncClient


async def test_register_signs_in_with_a_hardened_cookie(client: Client) -> None:
    await with_csrf(client)
    r = await client.post(
        "/v1/auth/register", json={"email": "Alice@Example.com", "password": PASSWORD, "display_name": "Alice"}
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["user"]["email"] == "alice@example.com"
    assert body["user"]["role"] == "user"
    assert "password" not in r.text
    cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith("brokerlink_session="))
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=lax", "path=/"} <= flags
    me = await client.get("/v1/me")
    assert me.status_code == 200
    assert me.json()["email"] == "alice@example.com"


async def test_database_holds_only_the_hash_of_the_session_token(app: Litestar, client: Client) -> None:
    await with_csrf(client)
    await client.post("/v1/auth/register", json={"email": "a@example.com", "password": PASSWORD, "display_name": "A"})
    token = client.cookies["brokerlink_session"]
    database: Database = app.state.db
    async with database.session() as s:
        rows = (await s.execute(select(SessionRow))).scalars().all()
    assert [r.token_hash for r in rows] == [hashlib.sha256(token.encode()).hexdigest()]
    assert token not in {r.token_hash for r in rows}


async def test_password_is_stored_as_argon2id(app: Litestar, client: Client) -> None:
    await with_csrf(client)
    await client.post("/v1/auth/register", json={"email": "a@example.com", "password": PASSWORD, "display_name": "A"})
    database: Database = app.state.db
    async with database.session() as s:
        user = (await s.execute(select(UserRow))).scalar_one()
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash


async def test_duplicate_email_in_any_case_is_409(make_client: ClientFactory, client: Client) -> None:
    await make_client("alice@example.com")
    await with_csrf(client)
    r = await client.post(
        "/v1/auth/register", json={"email": "ALICE@example.com", "password": PASSWORD, "display_name": "Other"}
    )
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "conflict"


async def test_weak_password_is_422_and_creates_nothing(client: Client) -> None:
    await with_csrf(client)
    r = await client.post(
        "/v1/auth/register", json={"email": "a@example.com", "password": "short", "display_name": "A"}
    )
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_input"
    login = await client.post("/v1/auth/login", json={"email": "a@example.com", "password": "short"})
    assert login.status_code == 401


async def test_bad_login_is_the_same_401_for_unknown_email_and_wrong_password(
    make_client: ClientFactory, client: Client
) -> None:
    await make_client("alice@example.com")
    await with_csrf(client)
    wrong = await client.post("/v1/auth/login", json={"email": "alice@example.com", "password": "not the password!"})
    unknown = await client.post("/v1/auth/login", json={"email": "nobody@example.com", "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    strip = lambda p: {k: v for k, v in p.items() if k != "request_id"}  # noqa: E731
    assert strip(wrong.json()) == strip(unknown.json())
    assert wrong.json()["code"] == "invalid_credentials"
    assert "brokerlink_session" not in client.cookies


async def test_login_issues_a_new_token_and_ends_the_old_session(app: Litestar, make_client: ClientFactory) -> None:
    c = await make_client("alice@example.com")
    first = c.cookies["brokerlink_session"]
    r = await c.post("/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD})
    assert r.status_code == 200
    second = c.cookies["brokerlink_session"]
    assert second != first
    assert (await c.get("/v1/me")).status_code == 200
    async with asgi_client(app, cookies={"brokerlink_session": first}) as old:
        assert (await old.get("/v1/me")).status_code == 401


async def test_logout_ends_the_session(app: Litestar, make_client: ClientFactory) -> None:
    c = await make_client()
    token = c.cookies["brokerlink_session"]
    r = await c.post("/v1/auth/logout")
    assert r.status_code == 204
    assert (await c.get("/v1/me")).status_code == 401
    # Replaying the old cookie does not bring the session back.
    async with asgi_client(app, cookies={"brokerlink_session": token}) as old:
        assert (await old.get("/v1/me")).status_code == 401


async def test_state_changing_request_without_csrf_token_is_403(make_client: ClientFactory) -> None:
    c = await make_client()
    del c.headers["x-csrf-token"]
    r = await c.post("/v1/auth/logout")
    assert r.status_code == 403
    assert r.json()["code"] == "forbidden"
    assert (await c.get("/v1/me")).status_code == 200, "the refused logout must not have ended the session"


async def test_csrf_token_from_another_secret_is_refused(make_client: ClientFactory) -> None:
    c = await make_client()
    c.headers["x-csrf-token"] = "0" * 64 + "f" * 64
    assert (await c.post("/v1/auth/logout")).status_code == 403


async def test_session_expires_after_idle_period(make_client: ClientFactory, clock: ManualClock) -> None:
    c = await make_client()
    clock.advance(timedelta(minutes=59))
    assert (await c.get("/v1/me")).status_code == 200  # activity resets the idle timer
    clock.advance(timedelta(minutes=59))
    assert (await c.get("/v1/me")).status_code == 200
    clock.advance(timedelta(minutes=61))
    assert (await c.get("/v1/me")).status_code == 401


async def test_session_expires_at_absolute_lifetime_despite_activity(
    make_client: ClientFactory, clock: ManualClock
) -> None:
    c = await make_client()
    statuses = []
    for _ in range(16):  # activity every 30 minutes; the session lives 8 hours
        clock.advance(timedelta(minutes=30))
        statuses.append((await c.get("/v1/me")).status_code)
    assert statuses == [200] * 15 + [401]


async def test_deactivated_user_loses_access(app: Litestar, make_client: ClientFactory, clock: ManualClock) -> None:
    c = await make_client("alice@example.com")
    database: Database = app.state.db
    async with database.session() as s:
        user = (await s.execute(select(UserRow))).scalar_one()
        user.is_active = False
        await s.commit()
    assert (await c.get("/v1/me")).status_code == 401
    r = await c.post("/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD})
    assert r.status_code == 401


async def test_registration_can_be_closed(settings_closed_client: Client) -> None:
    await with_csrf(settings_closed_client)
    r = await settings_closed_client.post(
        "/v1/auth/register", json={"email": "a@example.com", "password": PASSWORD, "display_name": "A"}
    )
    assert r.status_code == 403
