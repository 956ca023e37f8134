"""The sim venue's REST API (ADR 0006) driven in-process with a ManualClock and no background loop.

EURUSD in the FX set starts at mid 1.08500 with an 8-tick spread: the market maker quotes
1.08496 / 1.08504 with 2.00 lots at the top and 3.00, 4.50, ... lots one tick further out each.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from brokerlink.brokers.sim.gate import RateLimitRule
from brokerlink.brokers.sim.venue import AccountConfig, Venue, VenueConfig, create_venue_app
from brokerlink.brokers.sim.wire import sign
from brokerlink.kit.clock import ManualClock

ACCOUNTS = (
    AccountConfig(account_id="acct-1", api_key="key-1", api_secret="secret-1"),
    AccountConfig(account_id="acct-2", api_key="key-2", api_secret="secret-2"),
    AccountConfig(account_id="poor", api_key="key-poor", api_secret="secret-poor", cash=Decimal(1000)),
)
K1 = {"x-sim-api-key": "key-1"}
K2 = {"x-sim-api-key": "key-2"}
Client = AsyncTestClient[Any]


def make_venue(**overrides: Any) -> Venue:
    settings: dict[str, Any] = {
        "accounts": ACCOUNTS,
        "background": False,
        "mode": "test",
        "rate_limits": (RateLimitRule(10_000, 60),),
    }
    return Venue(VenueConfig(**(settings | overrides)), clock=ManualClock())


@pytest.fixture
async def venue_client() -> AsyncIterator[tuple[Venue, Client]]:
    venue = make_venue()
    async with AsyncTestClient(create_venue_app(venue=venue)) as client:
        yield venue, client


@pytest.fixture
async def client(venue_client: tuple[Venue, Client]) -> Client:
    return venue_client[1]


async def place(client: Client, headers: dict[str, str] = K1, **fields: str) -> httpx.Response:
    body = {"symbol": "EURUSD", "side": "buy", "type": "limit", "tif": "gtc"} | fields
    return await client.post("/api/v1/orders", json=body, headers=headers)


# --- auth and rate limits ---------------------------------------------------------------------------


async def test_missing_or_unknown_key_is_401_with_rate_headers(client: Client) -> None:
    for headers in ({}, {"x-sim-api-key": "nope"}):
        r = await client.get("/api/v1/account", headers=headers)
        assert r.status_code == 401
        assert r.json() == {"code": "auth_failed", "message": "unknown or missing API key"}
        assert "x-ratelimit-limit" in r.headers


async def test_signed_mode_checks_signature_and_receive_window() -> None:
    venue = make_venue(signed=True)
    async with AsyncTestClient(create_venue_app(venue=venue)) as client:
        ts = venue.now_ms()
        body = (
            b'{"client_order_id":"s1","symbol":"EURUSD","side":"buy","qty":"1","type":"limit","limit_price":"1.08400"}'
        )

        def headers(ts: int, signature: str) -> dict[str, str]:
            return K1 | {"x-sim-timestamp": str(ts), "x-sim-signature": signature, "content-type": "application/json"}

        good = sign("secret-1", ts, "POST", "/api/v1/orders", body)
        r = await client.post("/api/v1/orders", content=body, headers=headers(ts, good))
        assert r.status_code == 201, r.text
        r = await client.get("/api/v1/account", headers=headers(ts, good))
        assert r.json()["code"] == "bad_signature"
        query_sig = sign("secret-1", ts, "GET", "/api/v1/fills?since_id=0", b"")
        assert (await client.get("/api/v1/fills?since_id=0", headers=headers(ts, query_sig))).status_code == 200
        stale = ts - 6_000
        r = await client.get(
            "/api/v1/account", headers=headers(stale, sign("secret-1", stale, "GET", "/api/v1/account", b""))
        )
        assert r.status_code == 401
        assert r.json()["code"] == "timestamp_outside_recv_window"
        assert (await client.get("/api/v1/account", headers=K1)).json()["code"] == "bad_signature"


async def test_rate_limit_refuses_with_429_and_retry_after() -> None:
    venue = make_venue(rate_limits=(RateLimitRule(2, 60),))
    async with AsyncTestClient(create_venue_app(venue=venue)) as client:
        first = await client.get("/api/v1/account", headers=K1)
        assert first.headers["x-ratelimit-limit"] == "2"
        assert first.headers["x-ratelimit-remaining"] == "1"
        assert (await client.get("/api/v1/account", headers=K1)).status_code == 200
        refused = await client.get("/api/v1/account", headers=K1)
        assert refused.status_code == 429
        assert refused.json()["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["x-ratelimit-remaining"] == "0"
        # Per key: another key still gets through.
        assert (await client.get("/api/v1/account", headers=K2)).status_code == 200


# --- reference data -------------------------------------------------------------------------------


async def test_instruments_quote_and_depth(client: Client) -> None:
    instruments = {i["symbol"]: i for i in (await client.get("/api/v1/instruments", headers=K1)).json()}
    assert instruments["EURUSD"] | {} == {
        "symbol": "EURUSD",
        "base": "EUR",
        "quote": "USD",
        "asset_class": "fx",
        "tick_size": "0.00001",
        "qty_step": "0.01",
        "min_qty": "0.01",
        "max_qty": "100",
        "min_notional": "0",
        "contract_size": "100000",
        "tradable": True,
    }
    quote = (await client.get("/api/v1/quotes/EURUSD", headers=K1)).json()
    assert (quote["bid"], quote["ask"], quote["bid_size"], quote["ask_size"]) == ("1.08496", "1.08504", "2.00", "2.00")
    depth = (await client.get("/api/v1/depth/EURUSD?levels=2", headers=K1)).json()
    assert depth["bids"] == [["1.08496", "2.00"], ["1.08495", "3.00"]]
    assert depth["asks"] == [["1.08504", "2.00"], ["1.08505", "3.00"]]
    assert depth["last_update_id"] == 20  # ten levels a side, one update each
    assert (await client.get("/api/v1/quotes/NOPE", headers=K1)).status_code == 404
    assert (await client.get("/api/v1/depth/EURUSD?levels=0", headers=K1)).status_code == 400


async def test_step_recenters_the_market_maker(venue_client: tuple[Venue, Client]) -> None:
    venue, client = venue_client
    before = (await client.get("/api/v1/depth/EURUSD", headers=K1)).json()
    venue.step(timedelta(hours=6))
    after = (await client.get("/api/v1/depth/EURUSD", headers=K1)).json()
    quote = (await client.get("/api/v1/quotes/EURUSD", headers=K1)).json()
    assert after["last_update_id"] > before["last_update_id"]
    assert after["bids"][0] != before["bids"][0]
    assert [quote["bid"], quote["bid_size"]] == after["bids"][0]
    assert [quote["ask"], quote["ask_size"]] == after["asks"][0]
    assert len(after["bids"]) == len(after["asks"]) == 10
    assert Decimal(quote["ask"]) - Decimal(quote["bid"]) == Decimal("0.00008")


# --- order lifecycle ------------------------------------------------------------------------------


async def test_market_order_walks_the_ladder_and_books_the_account(client: Client) -> None:
    r = await place(client, client_order_id="m1", type="market", qty="3")
    assert r.status_code == 201, r.text
    order = r.json()
    assert (order["status"], order["filled_qty"], order["avg_fill_price"]) == ("filled", "3.00", "1.08504333333")
    fills = (await client.get("/api/v1/fills", headers=K1)).json()
    assert [(f["qty"], f["price"], f["commission"], f["liquidity"]) for f in fills["fills"]] == [
        ("2.00", "1.08504", "7.60", "taker"),  # 217,008 notional * 35 per million = 7.59528
        ("1.00", "1.08505", "3.80", "taker"),  # 108,505 * 35e-6 = 3.797675
    ]
    assert fills["next_since_id"] == fills["fills"][-1]["id"]
    positions = (await client.get("/api/v1/positions", headers=K1)).json()
    assert positions == [
        {
            "position_id": "EURUSD",
            "symbol": "EURUSD",
            "qty": "3.00",
            "avg_price": "1.08504333333",
            "unrealized_pnl": "-25.00",  # marked at the bid: (1.08496 - 1.0850433..) * 300,000
            "realized_pnl": "0.00",
        }
    ]
    account = (await client.get("/api/v1/account", headers=K1)).json()
    assert account["cash"] == "99988.60"
    assert account["equity"] == "99963.60"
    assert account["margin_used"] == "10849.60"  # 300,000 * 1.08496 / 30
    depth = (await client.get("/api/v1/depth/EURUSD?levels=2", headers=K1)).json()
    assert depth["asks"] == [["1.08505", "2.00"], ["1.08506", "4.50"]]


async def test_limit_rests_then_partially_fills_as_maker(client: Client) -> None:
    r = await place(client, client_order_id="l1", qty="1", limit_price="1.08500")
    assert r.json()["status"] == "new"
    depth = (await client.get("/api/v1/depth/EURUSD?levels=1", headers=K1)).json()
    assert depth["bids"] == [["1.08500", "1.00"]]
    taker = await place(client, K2, client_order_id="t1", side="sell", type="market", qty="0.4")
    assert taker.json()["avg_fill_price"] == "1.08500"
    mine = (await client.get("/api/v1/orders/by-client-id/l1", headers=K1)).json()
    assert (mine["status"], mine["filled_qty"]) == ("partially_filled", "0.40")
    fill = (await client.get("/api/v1/fills", headers=K1)).json()["fills"][0]
    assert (fill["liquidity"], fill["commission"], fill["side"]) == ("maker", "1.52", "buy")  # 43,400 * 35e-6
    other = (await client.get("/api/v1/positions", headers=K2)).json()
    assert other[0]["qty"] == "-0.40"
    assert [o["client_order_id"] for o in (await client.get("/api/v1/orders", headers=K1)).json()] == ["l1"]


async def test_cancel_amend_and_lookups(client: Client) -> None:
    placed = (await place(client, client_order_id="a1", qty="1", limit_price="1.08490")).json()
    by_id = (await client.get(f"/api/v1/orders/{placed['order_id']}", headers=K1)).json()
    assert by_id == placed
    assert (await client.get(f"/api/v1/orders/{placed['order_id']}", headers=K2)).status_code == 404
    assert (await client.get("/api/v1/orders/by-client-id/a1", headers=K2)).json()["code"] == "unknown_order"

    smaller = await client.patch("/api/v1/orders/by-client-id/a1", json={"qty": "0.5"}, headers=K1)
    assert smaller.status_code == 200, smaller.text
    assert smaller.json()["qty"] == "0.50"
    repriced = (
        await client.patch("/api/v1/orders/by-client-id/a1", json={"limit_price": "1.08491"}, headers=K1)
    ).json()
    assert repriced["limit_price"] == "1.08491"
    off_grid = await client.patch("/api/v1/orders/by-client-id/a1", json={"limit_price": "1.084915"}, headers=K1)
    assert off_grid.status_code == 400
    assert "tick size 0.00001" in off_grid.json()["message"]
    crossing = (
        await client.patch("/api/v1/orders/by-client-id/a1", json={"limit_price": "1.08504"}, headers=K1)
    ).json()
    assert crossing["status"] == "filled"

    await place(client, client_order_id="c1", qty="1", limit_price="1.08480")
    canceled = (await client.delete("/api/v1/orders/by-client-id/c1", headers=K1)).json()
    assert canceled["status"] == "canceled"
    again = await client.delete("/api/v1/orders/by-client-id/c1", headers=K1)
    assert again.status_code == 400
    assert again.json()["code"] == "invalid_order"
    assert (await client.delete("/api/v1/orders/by-client-id/zz", headers=K1)).status_code == 404
    assert (await client.patch("/api/v1/orders/by-client-id/c1", json={"qty": "2"}, headers=K1)).status_code == 400
    everything = (await client.get("/api/v1/orders?status=all", headers=K1)).json()
    assert [o["status"] for o in everything] == ["filled", "canceled"]


async def test_cancel_all_optionally_per_symbol(client: Client) -> None:
    await place(client, client_order_id="e1", qty="1", limit_price="1.08400")
    await place(client, client_order_id="e2", qty="1", limit_price="1.08401")
    await place(client, client_order_id="g1", symbol="GBPUSD", qty="1", limit_price="1.26000")
    canceled = (await client.delete("/api/v1/orders?symbol=EURUSD", headers=K1)).json()
    assert sorted(o["client_order_id"] for o in canceled) == ["e1", "e2"]
    assert [o["client_order_id"] for o in (await client.get("/api/v1/orders", headers=K1)).json()] == ["g1"]
    assert [o["client_order_id"] for o in (await client.delete("/api/v1/orders", headers=K1)).json()] == ["g1"]
    assert (await client.get("/api/v1/orders", headers=K1)).json() == []


async def test_fok_and_ioc(client: Client) -> None:
    fok = (await place(client, client_order_id="f1", qty="3", limit_price="1.08504", tif="fok")).json()
    assert (fok["status"], fok["filled_qty"]) == ("canceled", "0")
    fok = (await place(client, client_order_id="f2", qty="3", limit_price="1.08505", tif="fok")).json()
    assert (fok["status"], fok["filled_qty"]) == ("filled", "3.00")
    ioc = (await place(client, client_order_id="i1", qty="3", limit_price="1.08505", tif="ioc")).json()
    assert (ioc["status"], ioc["filled_qty"]) == ("canceled", "2.00")  # the 2.00 left at 1.08505 only


async def test_stop_order_triggers_on_a_trade(client: Client) -> None:
    stop = (await place(client, client_order_id="s1", type="stop", qty="1", stop_price="1.08505")).json()
    assert stop["status"] == "new"
    await place(client, K2, client_order_id="x", type="market", qty="3")  # trades 1.08504 then 1.08505
    done = (await client.get("/api/v1/orders/by-client-id/s1", headers=K1)).json()
    assert (done["status"], done["avg_fill_price"]) == ("filled", "1.08505")


async def test_fills_page_by_increasing_id(client: Client) -> None:
    await place(client, client_order_id="m1", type="market", qty="9.5")  # 2 + 3 + 4.5: three fills
    page = (await client.get("/api/v1/fills?limit=2", headers=K1)).json()
    ids = [f["id"] for f in page["fills"]]
    assert len(ids) == 2
    assert ids == sorted(ids)
    rest = (await client.get(f"/api/v1/fills?since_id={page['next_since_id']}", headers=K1)).json()
    assert [f["qty"] for f in page["fills"] + rest["fills"]] == ["2.00", "3.00", "4.50"]
    end = (await client.get(f"/api/v1/fills?since_id={rest['next_since_id']}", headers=K1)).json()
    assert end == {"fills": [], "next_since_id": None}
    assert (await client.get("/api/v1/fills", headers=K2)).json()["fills"] == []
    assert (await client.get("/api/v1/fills?limit=0", headers=K1)).status_code == 400
    assert (await client.get("/api/v1/fills?since_id=x", headers=K1)).status_code == 400


async def test_duplicate_client_order_id_is_409_per_account(client: Client) -> None:
    assert (await place(client, client_order_id="d1", qty="1", limit_price="1.08400")).status_code == 201
    dup = await place(client, client_order_id="d1", qty="2", limit_price="1.08300")
    assert dup.status_code == 409
    assert dup.json()["code"] == "duplicate_client_order_id"
    assert (await place(client, K2, client_order_id="d1", qty="1", limit_price="1.08400")).status_code == 201


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"qty": "0.015", "limit_price": "1.08400"}, "qty step 0.01"),
        ({"qty": "1", "limit_price": "1.084001"}, "tick size 0.00001"),
        ({"qty": "0", "limit_price": "1.08400"}, "must be positive"),
        ({"qty": "101", "limit_price": "1.08400"}, "maximum qty 100"),
        ({"qty": "1"}, "needs a limit_price"),
        ({"qty": "1", "type": "market", "limit_price": "1.08400"}, "takes no limit_price"),
        ({"qty": "1", "symbol": "NOPE", "limit_price": "1"}, "unknown symbol"),
        ({"qty": "lots", "limit_price": "1.08400"}, "Invalid decimal"),
        ({"qty": "1", "limit_price": "1.08400", "owner": "x"}, "unknown field"),
    ],
)
async def test_invalid_orders_are_400(client: Client, fields: dict[str, Any], fragment: str) -> None:
    r = await place(client, client_order_id="bad", **fields)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_order"
    assert fragment in r.json()["message"]


async def test_insufficient_funds_is_422() -> None:
    venue = make_venue()
    async with AsyncTestClient(create_venue_app(venue=venue)) as client:
        r = await place(client, {"x-sim-api-key": "key-poor"}, client_order_id="big", type="market", qty="1")
        assert r.status_code == 422  # 100,000 * 1.08504 / 30 = 3,616.80 of margin against 1,000 cash
        assert r.json()["code"] == "insufficient_funds"
        assert (await client.get("/api/v1/orders?status=all", headers={"x-sim-api-key": "key-poor"})).json() == []


async def test_min_notional_on_crypto() -> None:
    venue = make_venue(instrument_set="crypto")
    async with AsyncTestClient(create_venue_app(venue=venue)) as client:
        r = await place(client, client_order_id="tiny", symbol="BTCUSDT", qty="0.00001", limit_price="60000.0")
        assert r.status_code == 400
        assert "minimum notional 5" in r.json()["message"]
        ok = await place(client, client_order_id="ok", symbol="BTCUSDT", qty="0.0001", limit_price="60000.0")
        assert ok.status_code == 201


async def test_day_orders_expire_at_the_session_boundary(venue_client: tuple[Venue, Client]) -> None:
    venue, client = venue_client
    await place(client, client_order_id="day", qty="1", limit_price="1.08400", tif="day")
    await place(client, client_order_id="gtc", qty="1", limit_price="1.08400")
    assert isinstance(venue.clock, ManualClock)
    venue.clock.advance(timedelta(hours=11, minutes=59))  # 12:00 -> 23:59, same day
    venue.step()
    assert (await client.get("/api/v1/orders/by-client-id/day", headers=K1)).json()["status"] == "new"
    venue.clock.advance(timedelta(minutes=2))  # past midnight UTC
    venue.step()
    assert (await client.get("/api/v1/orders/by-client-id/day", headers=K1)).json()["status"] == "expired"
    assert (await client.get("/api/v1/orders/by-client-id/gtc", headers=K1)).json()["status"] == "new"


async def test_control_api_is_absent_in_normal_mode() -> None:
    venue = make_venue(mode="normal")
    async with AsyncTestClient(create_venue_app(venue=venue)) as client:
        assert (await client.get("/_control/faults")).status_code == 404
