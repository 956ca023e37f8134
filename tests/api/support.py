"""Helpers shared by the API tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
from litestar import Litestar
from sqlalchemy import func, select

from brokerlink.domain.enums import AccountMode
from brokerlink.domain.models import Account
from brokerlink.kit.ids import new_id
from brokerlink.store.db import Database
from brokerlink.store.models import AccountRow, Base, UserRow
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.connections import ConnectionRepository

C = TypeVar("C", bound=httpx.AsyncClient)
PASSWORD = "correct horse battery staple"
ClientFactory = Callable[..., Awaitable[httpx.AsyncClient]]


async def with_csrf(c: C) -> C:
    """Fetch a CSRF token and send it on every later request, as the dashboard's scripts do."""
    response = await c.get("/v1/auth/csrf")
    assert response.status_code == 200, response.text
    c.headers["x-csrf-token"] = response.json()["csrf_token"]
    return c


def asgi_client(app: object, cookies: dict[str, str] | None = None) -> httpx.AsyncClient:
    """Another client of an app whose lifespan is already running (no second startup)."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
        base_url="https://testserver.local",
        cookies=cookies,
    )


async def link_account(app: Litestar, email: str, name: str) -> tuple[str, str]:
    """Give a user a connection and an account directly in the store; returns (connection id, account id)."""
    database: Database = app.state.db
    now = app.state.clock.now()
    async with database.session() as s:
        user = (await s.execute(select(UserRow).where(UserRow.email == email))).scalar_one()
        conn = await ConnectionRepository(s).create(user_id=user.id, broker="sim", label=f"{name} sim", now=now)
        account = Account(
            id=new_id("acc"),
            user_id=user.id,
            connection_id=conn.id,
            venue_account_id=f"SIM-{name}",
            name=name,
            currency="USD",
            mode=AccountMode.NETTING,
        )
        await AccountRepository(s).add(account, now=now)
        await s.commit()
    return conn.id, account.id


async def table_counts(app: Litestar) -> dict[str, int]:
    database: Database = app.state.db
    async with database.session() as s:
        return {
            t.name: (await s.execute(select(func.count()).select_from(t))).scalar_one()
            for t in Base.metadata.sorted_tables
        }


async def snapshot(app: Litestar) -> tuple[dict[str, int], list[tuple[str, ...]]]:
    """Row counts of every table plus the mutable columns of users and accounts: enough to see any write."""
    database: Database = app.state.db
    async with database.session() as s:
        users = [(u.id, u.email, u.display_name, u.role, str(u.is_active)) for u in (await s.scalars(select(UserRow)))]
        accounts = [(a.id, a.name) for a in (await s.scalars(select(AccountRow)))]
    return await table_counts(app), sorted(users) + sorted(accounts)
