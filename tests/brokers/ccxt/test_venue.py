"""The Binance spot test venue: Binance's signing rules (checked against its documented example), weights,
filters, spot balances and ``newClientOrderId`` reuse, over the real ASGI app."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import httpx
import msgspec
import pytest

from brokerlink.brokers.ccxt.venue import create_binance_venue_app, default_config
from brokerlink.brokers.ccxt.venue.gate import Gate, Key
from brokerlink.brokers.ccxt.venue.spot import BinanceError
from brokerlink.brokers.ccxt.venue.wire import AccountInfo, MyTrade, NewOrderResult, OrderQuery
from brokerlink.brokers.sim.venue.config import AccountConfig

# The key pair and request of rest-api.md, "SIGNED Endpoint Examples for POST /api/v3/order".
DOC_KEY = Key(
    key="vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A",
    secret="NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j",
    account_id="doc",
)
DOC_TS = 1_499_827_319_559
DOC_BODY = (
    "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
)


def doc_gate(now_ms: int = DOC_TS + 100, skew: int = 0) -> Gate:
    return Gate({DOC_KEY.key: DOC_KEY}, now_ms=lambda: now_ms, skew_ms=lambda: skew)


def binance_code(fn: Any, *args: Any) -> int:
    with pytest.raises(BinanceError) as info:
        fn(*args)
    return info.value.binance_code


def test_the_documented_signatures_verify_and_anything_else_does_not() -> None:
    headers = {"x-mbx-apikey": DOC_KEY.key}
    body = DOC_BODY + "&signature=c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    key, params = doc_gate().signed(headers, "", body)
    assert key == DOC_KEY
    assert params["quantity"] == "1"
    # Example 3: query string and body, signed as their concatenation (no "&" between them).
    query = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC"
    mixed = "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
    signature = "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"
    assert doc_gate().signed(headers, query, f"{mixed}&signature={signature}")[1]["symbol"] == "LTCBTC"
    tampered = body.replace("quantity=1", "quantity=2")
    assert binance_code(doc_gate().signed, headers, "", tampered) == -1022
    assert binance_code(doc_gate().signed, {"x-mbx-apikey": "unknown"}, "", body) == -2015
    assert binance_code(doc_gate().signed, {}, "", body) == -2014


def test_timestamps_outside_the_receive_window_are_refused() -> None:
    headers = {"x-mbx-apikey": DOC_KEY.key}
    body = DOC_BODY + "&signature=c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    assert binance_code(doc_gate(now_ms=DOC_TS + 5_001).signed, headers, "", body) == -1021  # too old
    assert binance_code(doc_gate(now_ms=DOC_TS - 1_000).signed, headers, "", body) == -1021  # ahead of the server
    assert binance_code(doc_gate(skew=120_000).signed, headers, "", body) == -1021  # the clock-skew fault


def test_websocket_api_requests_are_signed_over_sorted_parameters() -> None:
    params: dict[str, str | int | bool] = {"apiKey": DOC_KEY.key, "timestamp": DOC_TS}
    payload = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    params["signature"] = hmac.new(DOC_KEY.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    assert doc_gate().ws_signed(params) == DOC_KEY
    assert binance_code(doc_gate().ws_signed, {**params, "timestamp": DOC_TS + 1}) == -1022


def test_request_weight_is_counted_per_minute_with_retry_after() -> None:
    gate = Gate({}, now_ms=lambda: 60_000 * 10 + 45_000, weight_limit=30)
    assert gate.spend("1.2.3.4", 20) == (20, None)
    assert gate.spend("1.2.3.4", 20) == (40, 15)  # over: come back when the minute turns
    assert gate.spend("5.6.7.8", 20) == (20, None)  # per IP


KEY, SECRET = "venuekey", "venue-secret"


class Client:
    """Signed requests to the venue app, in process."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def call(self, method: str, path: str, **params: str) -> httpx.Response:
        query = urlencode({**params, "timestamp": str(time.time_ns() // 1_000_000)})
        signature = hmac.new(SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
        url = f"/api/v3/{path}?{query}&signature={signature}"
        return await self.http.request(method, url, headers={"X-MBX-APIKEY": KEY})

    async def ok(self, method: str, path: str, **params: str) -> Any:
        response = await self.call(method, path, **params)
        assert response.status_code == 200, response.text
        assert int(response.headers["X-MBX-USED-WEIGHT-1M"]) > 0
        return response.content

    async def refused(self, method: str, path: str, **params: str) -> tuple[int, int, str]:
        response = await self.call(method, path, **params)
        body = response.json()
        return response.status_code, body["code"], body["msg"]


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    account = AccountConfig(account_id="A", api_key=KEY, api_secret=SECRET, cash=Decimal(100_000), currency="USDT")
    app = create_binance_venue_app(default_config(mode="test", background=False, accounts=(account,)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://venue") as http:
        yield Client(http)


def limit(coid: str, price: str = "100.00", qty: str = "1", side: str = "BUY") -> dict[str, str]:
    return {
        "symbol": "ETHUSDT",
        "side": side,
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": qty,
        "price": price,
        "newClientOrderId": coid,
    }


async def test_client_order_ids_are_unique_among_open_orders_only(client: Client) -> None:
    placed = msgspec.json.decode(await client.ok("POST", "order", **limit("c-1")), type=NewOrderResult)
    assert placed.status == "NEW"
    assert await client.refused("POST", "order", **limit("c-1")) == (400, -2010, "Duplicate order sent.")
    await client.ok("DELETE", "order", symbol="ETHUSDT", origClientOrderId="c-1")
    again = msgspec.json.decode(await client.ok("POST", "order", **limit("c-1")), type=NewOrderResult)
    assert again.order_id != placed.order_id, "documented: the id may be used again once its order is done"
    found = msgspec.json.decode(
        await client.ok("GET", "order", symbol="ETHUSDT", origClientOrderId="c-1"), type=OrderQuery
    )
    assert (found.order_id, found.status) == (again.order_id, "NEW")
    assert await client.refused("DELETE", "order", symbol="ETHUSDT", origClientOrderId="nope") == (
        400,
        -2011,
        "Unknown order sent.",
    )
    assert (await client.refused("GET", "order", symbol="ETHUSDT", origClientOrderId="nope"))[1] == -2013


async def test_filters_and_parameters_are_checked_as_binance_does(client: Client) -> None:
    assert (await client.refused("POST", "order", **limit("a", price="100.001")))[2] == "Filter failure: PRICE_FILTER"
    assert (await client.refused("POST", "order", **limit("b", qty="0.000001")))[2] == "Filter failure: LOT_SIZE"
    assert (await client.refused("POST", "order", **limit("c", price="1.00", qty="1")))[2] == "Filter failure: NOTIONAL"
    assert (await client.refused("POST", "order", **{**limit("d"), "symbol": "NOPE"}))[1] == -1121
    market = {"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET", "quantity": "1", "timeInForce": "GTC"}
    assert (await client.refused("POST", "order", **market))[1] == -1106
    no_price = {k: v for k, v in limit("e").items() if k != "price"}
    assert (await client.refused("POST", "order", **no_price))[1] == -1102


async def test_spot_balances_follow_fills_and_locks(client: Client) -> None:
    sell = {"symbol": "ETHUSDT", "side": "SELL", "type": "MARKET", "quantity": "1", "newClientOrderId": "s-1"}
    assert await client.refused("POST", "order", **sell) == (
        400,
        -2010,
        "Account has insufficient balance for requested action.",
    )
    buy = {"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET", "quantity": "2", "newClientOrderId": "b-1"}
    bought = msgspec.json.decode(await client.ok("POST", "order", **buy), type=NewOrderResult)
    assert bought.status == "FILLED"
    assert bought.fills
    assert sum(Decimal(f.qty) for f in bought.fills) == 2
    await client.ok("POST", "order", **limit("rest", price="100.00", qty="1"))
    info = msgspec.json.decode(await client.ok("GET", "account"), type=AccountInfo)
    balances = {b.asset: (Decimal(b.free), Decimal(b.locked)) for b in info.balances}
    assert balances["ETH"] == (Decimal(2), Decimal(0))
    spent = sum(Decimal(f.qty) * Decimal(f.price) + Decimal(f.commission) for f in bought.fills)
    free, locked = balances["USDT"]
    assert locked == Decimal(100)
    assert abs(free + locked - (Decimal(100_000) - spent)) < Decimal("0.01")  # cash posts to the cent
    trades = msgspec.json.decode(await client.ok("GET", "myTrades", symbol="ETHUSDT"), type=list[MyTrade])
    assert [t.order_id for t in trades] == [bought.order_id] * len(bought.fills)
    assert all(t.is_buyer and not t.is_maker for t in trades)


async def test_the_rate_limit_fault_is_a_binance_429(client: Client) -> None:
    await client.http.post("/_control/faults", json={"rate_limit_next": 1})
    response = await client.call("GET", "account")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert response.json()["code"] == -1003
    await client.ok("GET", "account")
