"""The ledger over the REST API on the running app: owner-scoped balances, postings and entries,
the admin-only trial balance, and an account's reconciliation."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import select

from brokerlink.domain.enums import Role
from brokerlink.domain.models import Balance
from brokerlink.ledger import chart, journal
from brokerlink.ledger.poster import LedgerPoster
from brokerlink.store.db import Database
from brokerlink.store.models import UserRow
from brokerlink.store.repositories.positions import BalanceRepository
from brokerlink.store.repositories.users import UserRepository
from tests.api.support import ClientFactory, assert_problem, eventually, link_account

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


async def _user_id(app: Litestar, email: str) -> str:
    database: Database = app.state.db
    async with database.session() as s:
        return str((await s.execute(select(UserRow.id).where(UserRow.email == email))).scalar_one())


async def _opened(app: Litestar, account_id: str, cash: str) -> None:
    """The broker reports ``cash`` for the account; the app's poster opens it in the ledger."""
    database: Database = app.state.db
    async with database.session() as s:
        await BalanceRepository(s).upsert(
            Balance(
                account_id=account_id,
                currency="USD",
                cash=Decimal(cash),
                equity=Decimal(cash),
                buying_power=Decimal(cash),
                margin_used=Decimal(0),
                ts=T0,
            )
        )
        await s.commit()
    poster: LedgerPoster = app.state.ledger_poster

    async def opened() -> bool:
        await poster.run_once()
        async with database.session() as s:
            return await journal.balance(s, chart.cash(account_id), "USD") == Decimal(cash)

    await eventually(opened, "the opening balance")


@pytest.fixture
async def alice(make_client: ClientFactory) -> httpx.AsyncClient:
    return await make_client("alice@example.com", "Alice")


@pytest.fixture
async def bob(make_client: ClientFactory) -> httpx.AsyncClient:
    return await make_client("bob@example.com", "Bob")


async def test_balances_postings_and_entries_are_the_callers_only(
    app: Litestar,
    alice: httpx.AsyncClient,
    bob: httpx.AsyncClient,
) -> None:
    _, account_id = await link_account(app, "alice@example.com", "Alice")
    await _opened(app, account_id, "500.00")
    cash = chart.cash(account_id)

    response = await alice.get("/v1/ledger/balances")
    assert response.status_code == 200, response.text
    balances: list[dict[str, Any]] = response.json()["data"]
    assert {(b["account"], b["balance"]) for b in balances} == {
        (cash, "500.00"),
        (chart.opening_balance(account_id), "500.00"),
    }
    assert (await alice.get("/v1/ledger/balances", params={"at": "2026-11-01T00:00:00Z"})).json()["data"] == []

    postings = (await alice.get("/v1/ledger/postings", params={"account": cash})).json()
    assert [(p["debit"], p["credit"], p["kind"]) for p in postings["data"]] == [("500.00", "0", "opening")]
    page = (await alice.get("/v1/ledger/postings", params={"limit": 1})).json()
    assert len(page["data"]) == 1
    assert page["next_after"] is not None
    rest = (await alice.get("/v1/ledger/postings", params={"after": page["next_after"]})).json()
    assert len(rest["data"]) == 1
    assert rest["next_after"] is None

    entries = (await alice.get("/v1/ledger/entries")).json()["data"]
    assert [e["kind"] for e in entries] == ["opening"]
    entry = (await alice.get(f"/v1/ledger/entries/{entries[0]['id']}")).json()
    assert {leg["account"] for leg in entry["legs"]} == {cash, chart.opening_balance(account_id)}

    # Bob sees none of it: an empty book, and 404 for Alice's account code and entry.
    assert (await bob.get("/v1/ledger/balances")).json()["data"] == []
    assert (await bob.get("/v1/ledger/entries")).json()["data"] == []
    assert_problem(await bob.get("/v1/ledger/postings", params={"account": cash}), 404, "not_found")
    assert_problem(await bob.get(f"/v1/ledger/entries/{entries[0]['id']}"), 404, "not_found")
    assert_problem(
        await alice.get("/v1/ledger/postings", params={"account": "Assets:cash"}), 422, "invalid_account_code"
    )


async def test_trial_balance_is_for_admins(
    app: Litestar,
    alice: httpx.AsyncClient,
    make_client: ClientFactory,
) -> None:
    _, account_id = await link_account(app, "alice@example.com", "Alice")
    await _opened(app, account_id, "42.00")
    assert_problem(await alice.get("/v1/ledger/trial-balance"), 403, "forbidden")
    ops = await make_client("ops@example.com", "Ops")
    database: Database = app.state.db
    async with database.session() as s:
        assert await UserRepository(s).set_role(await _user_id(app, "ops@example.com"), Role.ADMIN, now=T0)
        await s.commit()
    body = (await ops.get("/v1/ledger/trial-balance")).json()
    assert body == {"at": None, "totals": {"USD": "0.00"}, "balanced": True}


async def test_account_reconciliation_is_owner_scoped(
    app: Litestar,
    alice: httpx.AsyncClient,
    bob: httpx.AsyncClient,
) -> None:
    _, account_id = await link_account(app, "alice@example.com", "Alice")
    await _opened(app, account_id, "1000.00")

    response = await alice.get(f"/v1/accounts/{account_id}/ledger/reconciliation")
    assert response.status_code == 200, response.text
    [item] = response.json()["data"]
    assert (item["status"], item["broker_cash"], item["ledger_cash"], item["unexplained"]) == (
        "ok",
        "1000.00",
        "1000.00",
        "0.00",
    )
    assert_problem(await bob.get(f"/v1/accounts/{account_id}/ledger/reconciliation"), 404, "not_found")
    assert_problem(await alice.get("/v1/accounts/acc_nope/ledger/reconciliation"), 404, "not_found")
