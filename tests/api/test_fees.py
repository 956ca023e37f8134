"""Fees over REST on the running app: the provider's schedule within limits, owner-only access, the
follower's fee position, settlement by an admin, and both sides' invoices.

The app's clock stands at 2026-01-05 12:00 (sessions expire if it moves a month), so the scenarios
live in November 2025, a period that has ended. Strategies and subscriptions are stored directly
(their own routes need linked broker accounts, tested elsewhere); everything fee-related goes
through the API.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import select

from brokerlink.config import Settings
from brokerlink.domain.copy import Strategy, Subscription
from brokerlink.domain.enums import AssetClass, Role, Side
from brokerlink.domain.models import Fill, Instrument
from brokerlink.kit.clock import ManualClock
from brokerlink.kit.ids import new_id
from brokerlink.ledger.fees import FeeConfig, FeeTerms, set_schedule
from brokerlink.ledger.journal import trial_balance
from brokerlink.store.db import Database
from brokerlink.store.models import UserRow
from brokerlink.store.repositories.copy_intents import CopyIntentRepository
from brokerlink.store.repositories.fills import FillRepository
from brokerlink.store.repositories.instruments import InstrumentRepository
from brokerlink.store.repositories.strategies import StrategyRepository
from brokerlink.store.repositories.subscriptions import SubscriptionRepository
from brokerlink.store.repositories.users import UserRepository
from tests.api.support import ClientFactory, assert_problem
from tests.store.copy_factories import intent, strategy, subscription
from tests.store.factories import make_account

D = Decimal


def at(month: int, day: int = 1, year: int = 2025) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"fee_task_every_s": 86400.0})  # the background run only at start


async def _user_id(c: httpx.AsyncClient) -> str:
    response = await c.get("/v1/me")
    assert response.status_code == 200, response.text
    user_id: str = response.json()["id"]
    return user_id


async def _strategy(app: Litestar, provider: httpx.AsyncClient) -> Strategy:
    database: Database = app.state.db
    async with database.session() as session:
        account = await make_account(session, await _user_id(provider))
        stg = strategy(account, created_at=at(9), updated_at=at(9))
        await StrategyRepository(session).add(stg)
        await session.commit()
    return stg


async def _follow(app: Litestar, stg: Strategy, follower: httpx.AsyncClient) -> Subscription:
    """Bob follows from 1 November 2025 with 10000 USD, and copies a buy of 100 XYZ at 100 on the 2nd."""
    database: Database = app.state.db
    async with database.session() as session:
        account = await make_account(session, await _user_id(follower))
        await InstrumentRepository(session).upsert(
            "sim",
            Instrument(
                symbol="XYZ", venue_symbol="XYZ", asset_class=AssetClass.EQUITY, base="XYZ", quote="USD",
                tick_size=D("0.01"), qty_step=D("0.01"), min_qty=D("0.01"),
            ),
            now=at(9),
        )  # fmt: skip
        sub = subscription(stg, account, start_equity=D(10000), created_at=at(11), updated_at=at(11))
        await SubscriptionRepository(session).add(sub)
        for cid, side, qty, price, ts in [
            (new_id("cp"), Side.BUY, "100", "100", at(11, 2)),
            # Bob's own trade, not a copy: its price is the last one known for XYZ on 29 November, so
            # without a live quote the copy is marked at 110 (equity 11000), but its P&L is not the copy's.
            (None, Side.BUY, "1", "110", at(11, 29)),
        ]:
            if cid is not None:
                await CopyIntentRepository(session).add(intent(sub, None, client_order_id=cid, symbol="XYZ", side=side))
            fill = Fill(
                trade_id=new_id("trd"), order_id=None, client_order_id=cid or new_id("own"), account_id=account.id,
                symbol="XYZ", side=side, qty=D(qty), price=D(price), ts=ts,
            )  # fmt: skip
            await FillRepository(session).add_if_new(fill)
        await session.commit()
    return sub


async def _make_admin(app: Litestar, email: str) -> None:
    database: Database = app.state.db
    async with database.session() as session:
        user = (await session.execute(select(UserRow).where(UserRow.email == email))).scalar_one()
        assert await UserRepository(session).set_role(user.id, Role.ADMIN, now=app.state.clock.now())
        await session.commit()


async def test_the_provider_sets_fees_within_the_limits(
    app: Litestar, alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    stg = await _strategy(app, alice)
    response = await alice.get(f"/v1/strategies/{stg.id}/fees")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["current"], body["next"]) == (None, None)
    assert body["limits"]["max_performance_pct"] == "50"

    # Nobody follows yet: the terms are in force at once.
    terms = {"performance_pct": "20", "management_pct": "2", "volume_fee": "3", "volume_basis": "lot"}
    response = await alice.put(f"/v1/strategies/{stg.id}/fees", json=terms)
    assert response.status_code == 200, response.text
    current = response.json()["current"]
    assert (current["performance_pct"], current["management_pct"], current["volume_fee"]) == ("20", "2", "3")
    assert current["volume_currency"] == "USD"  # the strategy account's currency

    for field, body_ in [
        ("performance_pct", {"performance_pct": "50.01"}),
        ("management_pct", {"management_pct": "6"}),
        ("volume_fee", {"volume_fee": "11"}),
        ("volume_fee", {"volume_fee": "101", "volume_basis": "million"}),
        ("performance_pct", {"performance_pct": "-1"}),
    ]:
        problem = assert_problem(await alice.put(f"/v1/strategies/{stg.id}/fees", json=body_), 422, "invalid_input")
        assert problem["field"] == field
    response = await alice.put(f"/v1/strategies/{stg.id}/fees", json={"performance_pct": "20", "role": "admin"})
    assert response.status_code == 422  # unknown fields are refused

    # Someone else's strategy: 404, reading or writing, exactly like a missing one.
    assert_problem(await bob.get(f"/v1/strategies/{stg.id}/fees"), 404, "not_found")
    assert_problem(await bob.put(f"/v1/strategies/{stg.id}/fees", json=terms), 404, "not_found")
    assert_problem(await alice.get("/v1/strategies/stg_missing/fees"), 404, "not_found")
    # Refused changes changed nothing.
    assert (await alice.get(f"/v1/strategies/{stg.id}/fees")).json()["current"]["performance_pct"] == "20"


async def test_a_change_with_followers_waits_for_the_next_period(
    app: Litestar, alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    stg = await _strategy(app, alice)
    database: Database = app.state.db
    async with database.session() as session:  # 2% a year since 1 October 2025 (no followers then)
        await set_schedule(session, stg, FeeTerms(management_pct=D(2)), config=FeeConfig(), now=at(10))
        await session.commit()
    sub = await _follow(app, stg, bob)

    # Raised to 3% on 5 January 2026 with a follower: in force on 1 February, January stays at 2%.
    body = (await alice.put(f"/v1/strategies/{stg.id}/fees", json={"management_pct": "3"})).json()
    assert body["current"]["management_pct"] == "2"
    assert (body["next"]["management_pct"], body["next"]["effective_from"]) == ("3", "2026-02-01T00:00:00Z")
    view = (await bob.get(f"/v1/subscriptions/{sub.id}/fees")).json()
    assert (view["period"], view["terms"]["management_pct"], view["next_terms"]["management_pct"]) == (
        "2026-01", "2", "3",
    )  # fmt: skip


async def test_settlement_and_both_sides_invoices(
    app: Litestar, clock: ManualClock, alice: httpx.AsyncClient, bob: httpx.AsyncClient, make_client: ClientFactory
) -> None:
    stg = await _strategy(app, alice)
    database: Database = app.state.db
    async with database.session() as session:  # 20% performance fee since 1 October 2025 (no followers then)
        await set_schedule(session, stg, FeeTerms(performance_pct=D(20)), config=FeeConfig(), now=at(10))
        await session.commit()
    sub = await _follow(app, stg, bob)
    ops = await make_client("ops@example.com", "Ops")
    await _make_admin(app, "ops@example.com")

    # Only admins settle; a period that has not ended is refused.
    assert_problem(await alice.post("/v1/admin/fees/settle", params={"period": "2025-11"}), 403, "forbidden")
    problem = assert_problem(
        await ops.post("/v1/admin/fees/settle", params={"period": "2026-01"}), 422, "invalid_input"
    )
    assert problem["field"] == "period"

    # November: the copy marked at 110 -> equity 10000 + 100 x 10 = 11000; 20% of 1000 = 200.00.
    response = await ops.post("/v1/admin/fees/settle", params={"period": "2025-11"})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "period": "2025-11", "subscriptions": 1, "lines": 3, "charged": {"USD": "200.00"}, "skipped": 0,
    }  # fmt: skip
    again = (await ops.post("/v1/admin/fees/settle", params={"period": "2025-11"})).json()
    assert (again["lines"], again["charged"]) == (0, {})

    [bill] = (await bob.get("/v1/invoices")).json()["data"]
    assert (bill["period"], bill["role"], bill["currency"], bill["total"]) == ("2025-11", "follower", "USD", "200.00")
    # Lines of fees the strategy does not charge at all (management, volume: rate 0) are left out.
    assert [line["kind"] for line in bill["lines"]] == ["performance"]
    performance = _line(bill["lines"], "performance")
    assert (performance["amount"], performance["hwm_before"], performance["hwm_after"], performance["equity"]) == (
        "200.00", "10000", "11000", "11000",
    )  # fmt: skip
    assert "above the high-water mark 10000" in performance["detail"]
    # The provider: 200.00 less the platform's 20% (40.00) = 160.00 receivable.
    [statement] = (await alice.get("/v1/invoices", params={"period": "2025-11"})).json()["data"]
    assert (statement["role"], statement["total"]) == ("provider", "160.00")
    performance = _line(statement["lines"], "performance")
    assert (performance["amount"], performance["gross"], performance["platform_amount"]) == (
        "160.00", "200.00", "40.00",
    )  # fmt: skip
    assert (await ops.get("/v1/invoices")).json()["data"] == []

    # The follower's fee position: the mark moved to 11000 and survives; nobody else sees it.
    view = (await bob.get(f"/v1/subscriptions/{sub.id}/fees")).json()
    assert (view["high_water_mark"], view["equity"], view["performance_estimate"]) == ("11000", "11000", "0.00")
    assert_problem(await alice.get(f"/v1/subscriptions/{sub.id}/fees"), 404, "not_found")

    # A broker-confirmed withdrawal (admins record them): 2200 of the equity 11000 is 20%, so the mark
    # 11000 keeps 80% = 8800. Recorded twice under one reference, it counts once.
    flow = {"subscription_id": sub.id, "kind": "withdrawal", "amount": "2200", "reference": "wd-77"}
    assert_problem(await alice.post("/v1/admin/fees/flows", json=flow), 403, "forbidden")
    first = await ops.post("/v1/admin/fees/flows", json=flow)
    assert first.status_code == 200, first.text
    recorded = first.json()
    assert (recorded["equity_before"], recorded["hwm_before"], recorded["hwm_after"]) == ("11000", "11000", "8800.00")
    assert (await ops.post("/v1/admin/fees/flows", json=flow)).json()["id"] == recorded["id"]
    missing = {**flow, "subscription_id": "sub_missing"}
    assert_problem(await ops.post("/v1/admin/fees/flows", json=missing), 404, "not_found")
    clock.advance(timedelta(seconds=1))  # equity at t counts the flows before t
    view = (await bob.get(f"/v1/subscriptions/{sub.id}/fees")).json()
    assert (view["high_water_mark"], view["equity"], view["capital"]) == ("8800.00", "8800", "7800")

    async with database.session() as session:
        assert all(total == 0 for total in (await trial_balance(session)).values())


def _line(lines: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(line for line in lines if line["kind"] == kind)
