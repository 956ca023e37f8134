"""The resources issue 8 adds to REST v1: an order's fills, instruments paged and filtered with the
broker's rules, and the administrators' view of broker kinds and their links.

One test against a real sim venue on loopback (a market order fills there); the admin view needs
no venue.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
from litestar import Litestar

from brokerlink.domain.enums import Role
from tests.api.support import (
    MARKET_ORDER,
    RESTING_ORDER,
    ClientFactory,
    assert_problem,
    eventually,
    grant_role,
    link_account,
    link_via_api,
    numbers_in,
)
from tests.contract.harness import SimHarness


async def _json(c: httpx.AsyncClient, url: str, *, counts: bool = False, **params: str) -> Any:
    response = await c.get(url, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    if not counts:
        assert numbers_in(body) == [], url  # decimals travel as strings (counts are integers)
    return body


async def test_order_fills_and_instruments_at_a_real_venue(
    venue: SimHarness, app: Litestar, make_client: ClientFactory
) -> None:
    alice = await make_client("alice@example.com", "Alice", mfa=True)
    bob = await make_client("bob@example.com", "Bob")
    account = (await link_via_api(alice, venue.base_url, 1))["account"]["id"]

    every = (await _json(alice, f"/v1/accounts/{account}/instruments"))["data"]
    symbols = [i["symbol"] for i in every]
    assert symbols == sorted(symbols)
    assert len(symbols) >= 2
    first = await _json(alice, f"/v1/accounts/{account}/instruments", limit="1")
    second = await _json(alice, f"/v1/accounts/{account}/instruments", limit="1", after=first["next_after"])
    assert [i["symbol"] for i in first["data"] + second["data"]] == symbols[:2]
    (eurusd,) = (await _json(alice, f"/v1/accounts/{account}/instruments", symbol="EUR/USD"))["data"]
    for rule in ("tick_size", "qty_step", "min_qty", "min_notional", "contract_size"):
        assert Decimal(eurusd[rule]) >= 0, rule

    placed = await alice.post(f"/v1/accounts/{account}/orders", json=MARKET_ORDER)
    assert placed.status_code == 201, placed.text
    order = placed.json()["id"]
    resting = (await alice.post(f"/v1/accounts/{account}/orders", json=RESTING_ORDER)).json()["id"]

    async def filled() -> list[dict[str, Any]] | None:
        data: list[dict[str, Any]] = (await _json(alice, f"/v1/orders/{order}/fills"))["data"]
        return data or None

    fills = await eventually(filled, "the market order's fill")
    assert {f["order_id"] for f in fills} == {order}
    assert sum(Decimal(f["qty"]) for f in fills) == Decimal(MARKET_ORDER["qty"])
    assert (await _json(alice, f"/v1/orders/{resting}/fills")) == {"data": [], "next_after": None}
    account_fills = (await _json(alice, f"/v1/accounts/{account}/fills", symbol="EUR/USD"))["data"]
    assert {f["trade_id"] for f in fills} <= {f["trade_id"] for f in account_fills}
    assert_problem(await bob.get(f"/v1/orders/{order}/fills"), 404, "not_found")
    assert_problem(await bob.get(f"/v1/accounts/{account}/instruments"), 404, "not_found")


async def test_admins_see_broker_kinds_and_their_links(app: Litestar, make_client: ClientFactory) -> None:
    admin = await make_client("ops@example.com", "Ops")
    await grant_role(app, "ops@example.com", Role.ADMIN)
    user = await make_client("pat@example.com", "Pat")
    await link_account(app, "pat@example.com", "One")
    await link_account(app, "pat@example.com", "Two")
    kinds = (await _json(admin, "/v1/admin/brokers", counts=True))["data"]
    by_kind = {k["kind"]: k for k in kinds}
    assert {"sim", "alpaca", "oanda"} <= set(by_kind)
    sim = by_kind["sim"]
    assert sim["total"] == 2
    assert sum(sim["connections"].values()) == 2
    assert set(sim["connections"]) == {"connecting", "connected", "degraded", "disconnected", "revoked"}
    assert sim["credential_fields"]
    assert by_kind["alpaca"]["total"] == 0
    paged = await _json(admin, "/v1/admin/brokers", counts=True, limit="1")
    assert len(paged["data"]) == 1
    assert paged["next_after"] == paged["data"][0]["kind"]
    assert (await _json(admin, "/v1/admin/brokers/sim", counts=True)) == sim
    assert_problem(await admin.get("/v1/admin/brokers/nosuch"), 404, "not_found")
    assert_problem(await user.get("/v1/admin/brokers"), 403, "forbidden")
