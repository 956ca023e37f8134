"""Trading through a linked account over the REST API, against a real sim venue on loopback.

Balances, instruments and quotes come from the broker; orders are checked against its rules,
stored, sent and followed until they end; fills and positions are booked from its events. Every
decimal travels as a JSON string. Another user's account and orders answer 404.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from litestar import Litestar

from brokerlink.kit.ids import new_id
from tests.api.support import (
    MARKET_ORDER,
    RESTING_ORDER,
    ClientFactory,
    assert_problem,
    eventually,
    ledger_caught_up,
    link_via_api,
    numbers_in,
    snapshot,
)
from tests.contract.harness import SimHarness


@pytest.fixture
def app(venue: SimHarness, app: Litestar) -> Litestar:
    """The app, started after the venue its links reach (so its links close before the venue stops)."""
    return app


@pytest.fixture
async def account_id(app: Litestar, alice: httpx.AsyncClient, venue: SimHarness) -> str:
    """Alice's account at the venue (``SIM-CONF-1``), linked through the API, its opening balance booked."""
    linked = await link_via_api(alice, venue.base_url, 1)
    account: str = linked["account"]["id"]
    await ledger_caught_up(app, account)
    return account


async def get_json(c: httpx.AsyncClient, url: str, status: int = 200) -> Any:
    """GET ``url``; the body, after checking the status and that it holds no JSON number."""
    response = await c.get(url)
    assert response.status_code == status, response.text
    body = response.json()
    assert numbers_in(body) == [], f"decimals must be strings: {url}"
    return body


async def order_when(c: httpx.AsyncClient, order_id: str, status: str) -> dict[str, Any]:
    """The order, once it has reached ``status`` (bounded poll)."""

    async def probe() -> dict[str, Any] | None:
        order: dict[str, Any] = await get_json(c, f"/v1/orders/{order_id}")
        return order if order["status"] == status else None

    return await eventually(probe, f"order {order_id} to be {status}")


def is_decimal_string(value: object) -> bool:
    return isinstance(value, str) and Decimal(value).is_finite()


async def test_balances_are_the_brokers_in_decimal_strings(alice: httpx.AsyncClient, account_id: str) -> None:
    balances = (await get_json(alice, f"/v1/accounts/{account_id}/balances"))["data"]
    assert [b["currency"] for b in balances] == ["USD"]
    usd = balances[0]
    for field in ("cash", "equity", "buying_power", "margin_used"):
        assert is_decimal_string(usd[field]), field
    assert Decimal(usd["cash"]) == Decimal(100_000)  # the venue's opening balance
    assert Decimal(usd["equity"]) == Decimal(100_000)


async def test_instruments_carry_the_brokers_rules_as_decimal_strings(
    alice: httpx.AsyncClient, account_id: str
) -> None:
    instruments = (await get_json(alice, f"/v1/accounts/{account_id}/instruments"))["data"]
    by_symbol = {i["symbol"]: i for i in instruments}
    eurusd = by_symbol["EUR/USD"]
    assert (eurusd["venue_symbol"], eurusd["base"], eurusd["quote"], eurusd["asset_class"]) == (
        "EURUSD",
        "EUR",
        "USD",
        "fx",
    )
    assert eurusd["tradable"] is True
    assert (eurusd["qty_step"], eurusd["min_qty"]) == ("0.01", "0.01")
    assert Decimal(eurusd["max_qty"]) == 100
    for field in ("tick_size", "qty_step", "min_qty", "max_qty", "min_notional", "contract_size"):
        assert is_decimal_string(eurusd[field]), field
    assert Decimal(eurusd["tick_size"]) > 0


async def test_quotes_for_two_symbols_come_back_in_the_order_asked(alice: httpx.AsyncClient, account_id: str) -> None:
    quotes = (await get_json(alice, f"/v1/accounts/{account_id}/quotes?symbols=GBP/USD,EUR/USD"))["data"]
    assert [q["symbol"] for q in quotes] == ["GBP/USD", "EUR/USD"]  # canonical, not the venue's GBPUSD
    for quote in quotes:
        for field in ("bid", "ask", "bid_size", "ask_size"):
            assert is_decimal_string(quote[field]), field
        assert Decimal(0) < Decimal(quote["bid"]) <= Decimal(quote["ask"])
        assert quote["ts"]


@pytest.mark.parametrize(
    ("symbols", "field"),
    [
        ("EUR/USD,XAU/XAG", "symbol"),
        ("EURUSD", "symbol"),  # the venue's spelling is not a symbol here
        (",".join(f"S{i:02d}/USD" for i in range(51)), "symbols"),
        (" , ", "symbols"),
    ],
)
async def test_bad_quote_requests_are_a_422(
    alice: httpx.AsyncClient, account_id: str, symbols: str, field: str
) -> None:
    problem = assert_problem(
        await alice.get(f"/v1/accounts/{account_id}/quotes?symbols={symbols}"), 422, "invalid_input"
    )
    assert problem["field"] == field


async def test_a_market_order_fills_and_books_fills_and_a_marked_position(
    alice: httpx.AsyncClient, account_id: str
) -> None:
    # Following EUR/USD quotes lets positions be marked to the market.
    await get_json(alice, f"/v1/accounts/{account_id}/quotes?symbols=EUR/USD")
    placed = await alice.post(f"/v1/accounts/{account_id}/orders", json=MARKET_ORDER | {"client_order_id": "mkt-1"})
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert numbers_in(order) == []
    assert (order["symbol"], order["side"], order["qty"], order["type"], order["tif"]) == (
        "EUR/USD",
        "buy",
        "0.10",
        "market",
        "gtc",
    )
    assert (order["client_order_id"], order["account_id"]) == ("mkt-1", account_id)

    filled = await order_when(alice, order["id"], "filled")
    assert Decimal(filled["filled_qty"]) == Decimal("0.10")
    assert is_decimal_string(filled["avg_fill_price"])
    assert filled["venue_order_id"]

    fills = (await get_json(alice, f"/v1/accounts/{account_id}/fills"))["data"]
    assert fills
    assert {f["order_id"] for f in fills} == {order["id"]}
    assert {f["client_order_id"] for f in fills} == {"mkt-1"}
    assert sum(Decimal(f["qty"]) for f in fills) == Decimal("0.10")
    assert all(is_decimal_string(f["price"]) and is_decimal_string(f["fee"]) for f in fills)

    listed = (await get_json(alice, f"/v1/accounts/{account_id}/orders"))["data"]
    assert [o["id"] for o in listed] == [order["id"]]

    async def marked_position() -> dict[str, Any] | None:
        positions = (await get_json(alice, f"/v1/accounts/{account_id}/positions"))["data"]
        ready = [p for p in positions if p["qty"] == "0.10" and p["mark_price"] is not None]
        return ready[0] if ready else None

    position = await eventually(marked_position, "the marked EUR/USD position")
    assert position["symbol"] == "EUR/USD"
    for field in ("avg_price", "realized_pnl", "mark_price", "unrealized_pnl"):
        assert is_decimal_string(position[field]), field
    assert Decimal(position["avg_price"]) == Decimal(filled["avg_fill_price"])
    instruments = (await get_json(alice, f"/v1/accounts/{account_id}/instruments"))["data"]
    contract_size = Decimal(next(i["contract_size"] for i in instruments if i["symbol"] == "EUR/USD"))
    qty, avg, mark = (Decimal(position[f]) for f in ("qty", "avg_price", "mark_price"))
    assert Decimal(position["unrealized_pnl"]) == (mark - avg) * qty * contract_size  # a long marks at the bid


async def test_client_order_id_makes_placing_idempotent(alice: httpx.AsyncClient, account_id: str) -> None:
    body = RESTING_ORDER | {"client_order_id": "idem-1"}
    first = await alice.post(f"/v1/accounts/{account_id}/orders", json=body)
    assert first.status_code == 201, first.text
    again = await alice.post(f"/v1/accounts/{account_id}/orders", json=body)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert numbers_in(again.json()) == []

    different = await alice.post(f"/v1/accounts/{account_id}/orders", json=body | {"qty": "0.20"})
    problem = assert_problem(different, 409, "conflict")
    assert (problem["field"], problem["order_id"]) == ("client_order_id", first.json()["id"])
    listed = (await get_json(alice, f"/v1/accounts/{account_id}/orders"))["data"]
    assert [o["id"] for o in listed] == [first.json()["id"]]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"qty": "0.105"}, "qty"),  # off the 0.01 step
        ({"qty": "0.001"}, "qty"),  # below the minimum
        ({"qty": "1000"}, "qty"),  # above the maximum
        ({"symbol": "XAU/XAG"}, "symbol"),
        ({"type": "limit"}, "limit_price"),  # a limit order needs a price
        ({"type": "limit", "limit_price": "1.000001"}, "limit_price"),  # off the tick
    ],
)
async def test_orders_off_the_brokers_rules_are_a_422_and_store_nothing(
    app: Litestar, alice: httpx.AsyncClient, account_id: str, change: dict[str, str], field: str
) -> None:
    before = await snapshot(app)
    r = await alice.post(f"/v1/accounts/{account_id}/orders", json=MARKET_ORDER | change)
    problem = assert_problem(r, 422, "invalid_input")
    assert problem["field"] == field
    assert field in problem["detail"]
    assert await snapshot(app) == before


async def test_a_resting_limit_order_is_cancelled_once(alice: httpx.AsyncClient, account_id: str) -> None:
    placed = await alice.post(f"/v1/accounts/{account_id}/orders", json=RESTING_ORDER)
    assert placed.status_code == 201, placed.text
    assert placed.json()["limit_price"] == "0.50000"
    order = await order_when(alice, placed.json()["id"], "new")
    assert order["filled_qty"] == "0"

    cancelled = await alice.delete(f"/v1/orders/{order['id']}")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "canceled"
    assert numbers_in(cancelled.json()) == []
    assert (await get_json(alice, f"/v1/orders/{order['id']}"))["status"] == "canceled"

    again = await alice.delete(f"/v1/orders/{order['id']}")
    assert "canceled" in assert_problem(again, 409, "conflict")["detail"]
    assert (await get_json(alice, f"/v1/accounts/{account_id}/fills"))["data"] == []


async def test_another_user_gets_404_for_the_account_and_its_orders(
    app: Litestar, make_client: ClientFactory, alice: httpx.AsyncClient, account_id: str
) -> None:
    """SECURITY.md 19: exactly like a missing account or order, and nothing changes."""
    bob = await make_client("bob@example.com", "Bob")
    placed = await alice.post(f"/v1/accounts/{account_id}/orders", json=RESTING_ORDER)
    assert placed.status_code == 201, placed.text
    order_id = (await order_when(alice, placed.json()["id"], "new"))["id"]
    missing_account, missing_order = new_id("acc"), new_id("ord")
    before = await snapshot(app)

    subresources = ["balances", "positions", "instruments", "quotes?symbols=EUR/USD", "orders", "fills"]
    attempts: list[tuple[str, str, str, dict[str, str] | None]] = [
        ("GET", f"/v1/accounts/{account_id}/{sub}", f"/v1/accounts/{missing_account}/{sub}", None)
        for sub in subresources
    ]
    attempts += [
        ("POST", f"/v1/accounts/{account_id}/orders", f"/v1/accounts/{missing_account}/orders", MARKET_ORDER),
        ("GET", f"/v1/orders/{order_id}", f"/v1/orders/{missing_order}", None),
        ("DELETE", f"/v1/orders/{order_id}", f"/v1/orders/{missing_order}", None),
    ]
    for method, theirs_url, missing_url, body in attempts:
        theirs = await bob.request(method, theirs_url, json=body)
        missing = await bob.request(method, missing_url, json=body)
        assert theirs.status_code == missing.status_code == 404, (method, theirs_url, theirs.text)
        assert theirs.json()["code"] == "not_found"
        assert theirs.json()["detail"] == missing.json()["detail"], (method, theirs_url)
    assert await snapshot(app) == before
    assert (await get_json(alice, f"/v1/orders/{order_id}"))["status"] == "new"
