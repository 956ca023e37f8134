"""Helpers shared by the API tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
from litestar import Litestar
from sqlalchemy import func, select

from brokerlink.domain.enums import AccountMode, Role
from brokerlink.domain.models import Account
from brokerlink.kit.ids import new_id
from brokerlink.ledger.poster import LedgerPoster
from brokerlink.ledger.postings import fill_key, opening_key
from brokerlink.security.totp import TOTP_SECRET_PURPOSE
from brokerlink.store.db import Database
from brokerlink.store.models import (
    AccountRow,
    BalanceRow,
    Base,
    BrokerConnectionRow,
    FillRow,
    OrderRow,
    PositionRow,
    UserRow,
    VaultSecretRow,
)
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.connections import ConnectionRepository
from brokerlink.store.repositories.ledger import LedgerRepository
from brokerlink.store.repositories.users import UserRepository

C = TypeVar("C", bound=httpx.AsyncClient)
T = TypeVar("T")
PASSWORD = "correct horse battery staple"
PROBLEM = "application/problem+json"
MARKET_ORDER = {"symbol": "EUR/USD", "side": "buy", "qty": "0.10"}
RESTING_ORDER = MARKET_ORDER | {"type": "limit", "limit_price": "0.50000"}
"""A buy limit far below the market: it rests until cancelled."""
ClientFactory = Callable[..., Awaitable[httpx.AsyncClient]]


async def with_csrf(c: C) -> C:
    """Fetch a CSRF token and send it on every later request, as the dashboard's scripts do."""
    response = await c.get("/v1/auth/csrf")
    assert response.status_code == 200, response.text
    c.headers["x-csrf-token"] = response.json()["csrf_token"]
    return c


@contextlib.asynccontextmanager
async def running(app: Litestar) -> AsyncIterator[Litestar]:
    """Run the app's lifespan (startup now, shutdown on exit) in the current event loop.

    The lifespan runs in a task of its own, as a server runs it: Litestar enters an anyio task group
    in it, which must be exited by the task that entered it, and a pytest fixture's setup and
    teardown run in different tasks.
    """
    up = asyncio.Event()
    down = asyncio.Event()

    async def lifespan() -> None:
        async with app.lifespan():
            up.set()
            await down.wait()

    task = asyncio.create_task(lifespan(), name="app-lifespan")
    waiting = asyncio.create_task(up.wait())
    await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
    if not up.is_set():
        waiting.cancel()
        await task  # startup failed: raise its error
        raise AssertionError("the app's lifespan ended during startup")
    try:
        yield app
    finally:
        down.set()
        await task


def asgi_client(app: object, cookies: dict[str, str] | None = None) -> httpx.AsyncClient:
    """Another client of an app whose lifespan is already running (no second startup)."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
        base_url="https://testserver.local",
        cookies=cookies,
    )


def venue_credentials(index: int = 0) -> dict[str, str]:
    """API key and secret of the harness venue's account ``SIM-CONF`` (0) or ``SIM-CONF-{index}``
    (tests/contract/harness.py, ``extra_accounts``)."""
    suffix = f"-{index}" if index else ""
    return {"api_key": f"conf-key{suffix}", "api_secret": f"conf-secret{suffix}"}


def venue_account_id(index: int = 0) -> str:
    """The venue's id of the account :func:`venue_credentials` trades."""
    return f"SIM-CONF-{index}" if index else "SIM-CONF"


def link_body(base_url: str, index: int = 0, **changes: Any) -> dict[str, Any]:
    """A valid ``POST /v1/connections`` body for the harness venue's account ``index``."""
    body: dict[str, Any] = {
        "broker": "sim",
        "label": f"Sim {venue_account_id(index)}",
        "base_url": base_url,
        "credentials": venue_credentials(index),
    }
    return body | changes


async def link_via_api(c: httpx.AsyncClient, base_url: str, index: int = 0, **changes: Any) -> dict[str, Any]:
    """Link the venue account ``index`` through ``POST /v1/connections``; returns the 201 body
    (``{"connection": ..., "account": ...}``)."""
    response = await c.post("/v1/connections", json=link_body(base_url, index, **changes))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str, *, attempts: int = 200) -> T:
    """Poll ``probe`` until it returns something other than None (bounded: ``attempts`` x 50 ms).

    Bounded by a count of polls, not by asserting on elapsed time, so a slow machine only waits longer.
    """
    for _ in range(attempts):
        result = await probe()
        if result is not None:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


async def ledger_caught_up(app: Litestar, account_id: str) -> None:
    """Wait until the ledger has booked a linked account's opening balance (every currency the broker
    reported) and every fill stored for it, nudging the poster rather than waiting for its sweep.

    The poster books them in the background, so a test that compares two snapshots of the store
    around a refused request takes its first one after this, or a booking may land between them and
    look like a write the refused request made.
    """
    database: Database = app.state.db
    poster: LedgerPoster = app.state.ledger_poster

    async def booked() -> bool | None:
        await poster.run_once()
        async with database.session() as s:
            currencies = (await s.scalars(select(BalanceRow.currency).where(BalanceRow.account_id == account_id))).all()
            fills = (await s.scalars(select(FillRow.id).where(FillRow.account_id == account_id))).all()
            keys = [opening_key(account_id, c) for c in currencies] + [fill_key(f) for f in fills]
            posted = await LedgerRepository(s).entries_by_key(keys)
        return (bool(currencies) and len(posted) == len(keys)) or None

    await eventually(booked, f"the ledger to book {account_id}'s opening balance and fills")


def numbers_in(value: object, path: str = "$") -> list[str]:
    """JSON paths of every number in a decoded JSON document (booleans are not numbers).

    The API sends decimals as strings; a money or quantity value sent as a JSON number would be
    read as a binary float by most clients.
    """
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return []
    if isinstance(value, int | float):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in numbers_in(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in numbers_in(v, f"{path}[{i}]")]
    raise TypeError(f"not a decoded JSON value at {path}: {value!r}")


async def link_account(app: Litestar, email: str, name: str) -> tuple[str, str]:
    """Give a user a connection and an account directly in the store; returns (connection id, account id).

    For tests that need an account but no live broker: the account is there, its connection is not
    up (no credentials, no adapter). :func:`link_via_api` links a real one.
    """
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


async def grant_role(app: Litestar, email: str, role: Role) -> None:
    """Give an existing user a role directly in the store (an admin's ``PATCH /v1/admin/users/{id}``
    does the same through the API); e.g. ``provider`` to publish strategies."""
    database: Database = app.state.db
    async with database.session() as s:
        user = (await s.execute(select(UserRow).where(UserRow.email == email))).scalar_one()
        await UserRepository(s).set_role(user.id, role, now=app.state.clock.now())
        await s.commit()


async def table_counts(app: Litestar) -> dict[str, int]:
    """Rows per table. ``vault_secrets`` counts broker credentials only: the TOTP secrets of users
    enrolled in MFA (``make_client(mfa=True)``) are counted apart, as ``vault_secrets:totp_secret``."""
    database: Database = app.state.db
    async with database.session() as s:
        counts: dict[str, int] = {
            t.name: (await s.execute(select(func.count()).select_from(t))).scalar_one()
            for t in Base.metadata.sorted_tables
        }
        totp = select(func.count()).select_from(VaultSecretRow).where(VaultSecretRow.purpose == TOTP_SECRET_PURPOSE)
        counts["vault_secrets:totp_secret"] = (await s.execute(totp)).scalar_one()
    counts["vault_secrets"] -= counts["vault_secrets:totp_secret"]
    return counts


async def snapshot(app: Litestar) -> tuple[dict[str, int], list[tuple[str, ...]]]:
    """Row counts of every table plus the columns a write would change: enough to see any write.

    Besides users and accounts: connections (status, credentials), vault entries, orders (status,
    fills), fills, positions and balances, so a refused command that cancelled, revoked or booked
    something would show.
    """
    database: Database = app.state.db
    async with database.session() as s:
        rows: list[tuple[str, ...]] = [
            ("user", u.id, u.email, u.display_name, u.role, str(u.is_active)) for u in await s.scalars(select(UserRow))
        ]
        rows += [("account", a.id, a.name) for a in await s.scalars(select(AccountRow))]
        rows += [
            ("connection", c.id, c.label, c.status, str(c.credentials_ref))
            for c in await s.scalars(select(BrokerConnectionRow))
        ]
        rows += [("secret", v.id, v.owner_id, v.purpose) for v in await s.scalars(select(VaultSecretRow))]
        rows += [
            ("order", o.id, o.client_order_id, o.status, str(o.filled_qty), str(o.venue_order_id))
            for o in await s.scalars(select(OrderRow))
        ]
        rows += [("fill", f.account_id, f.trade_id, str(f.qty)) for f in await s.scalars(select(FillRow))]
        rows += [
            ("position", p.account_id, p.symbol, str(p.qty), str(p.realized_pnl))
            for p in await s.scalars(select(PositionRow))
        ]
        rows += [
            ("balance", b.account_id, b.currency, str(b.cash), str(b.equity))
            for b in await s.scalars(select(BalanceRow))
        ]
    return await table_counts(app), sorted(rows)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Check a problem+json response's status and code; returns the problem."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    problem: dict[str, Any] = response.json()
    assert (problem["status"], problem["code"]) == (status, code), problem
    return problem
