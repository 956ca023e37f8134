"""The sim venue's WebSocket (``/ws``): auth, channels with per-channel seq, depth diffs, trade updates,
heartbeats, lifetime and slow consumers.

Litestar's sync TestClient runs the app (and so the venue) on one event loop in a portal thread; the
test reaches the venue only through that loop (``portal.call``), as the real server would.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import TestClient
from litestar.testing.websocket_test_session import WebSocketTestSession

from brokerlink.brokers.sim.gate import RateLimitRule
from brokerlink.brokers.sim.venue import AccountConfig, Venue, VenueConfig, create_venue_app
from brokerlink.brokers.sim.wire import sign
from brokerlink.kit.clock import ManualClock

ACCOUNTS = (
    AccountConfig(account_id="acct-1", api_key="key-1", api_secret="secret-1"),
    AccountConfig(account_id="acct-2", api_key="key-2", api_secret="secret-2"),
)
K1 = {"x-sim-api-key": "key-1"}
K2 = {"x-sim-api-key": "key-2"}
WAIT = 5.0  # seconds a receive may block before the test fails (never reached when things work)


def make_client(**overrides: Any) -> tuple[Venue, TestClient[Any]]:
    settings: dict[str, Any] = {
        "accounts": ACCOUNTS,
        "background": False,
        "mode": "test",
        "rate_limits": (RateLimitRule(10_000, 60),),
    }
    venue = Venue(VenueConfig(**(settings | overrides)), clock=ManualClock())
    return venue, TestClient(create_venue_app(venue=venue))


@pytest.fixture
def venue_client() -> Iterator[tuple[Venue, TestClient[Any]]]:
    venue, client = make_client()
    with client:
        yield venue, client


def login(ws: WebSocketTestSession, key: str = "key-1") -> None:
    ws.send_json({"op": "auth", "api_key": key})
    assert ws.receive_json(timeout=WAIT) == {"op": "auth", "status": "ok", "expires_in": 86400}


def subscribe(ws: WebSocketTestSession, *channels: str) -> None:
    ws.send_json({"op": "subscribe", "channels": list(channels)})
    reply = ws.receive_json(timeout=WAIT)
    assert reply["op"] == "subscribe"
    assert set(channels) <= set(reply["channels"])


def receive_until(ws: WebSocketTestSession, done: Any, limit: int = 200) -> list[dict[str, Any]]:
    """Messages up to and including the first for which ``done(msg)`` holds (at most ``limit``)."""
    seen: list[dict[str, Any]] = []
    for _ in range(limit):
        seen.append(ws.receive_json(timeout=WAIT))
        if done(seen[-1]):
            return seen
    raise AssertionError(f"condition not met in {limit} messages: {seen[-3:]}")


def drain_until_closed(ws: WebSocketTestSession, limit: int) -> tuple[WebSocketDisconnect, list[dict[str, Any]]]:
    """Read until the server closes (at most ``limit`` messages): the close and what came before it."""
    seen: list[dict[str, Any]] = []
    for _ in range(limit):
        try:
            seen.append(ws.receive_json(timeout=WAIT))
        except WebSocketDisconnect as closed:
            return closed, seen
    raise AssertionError(f"still open after {limit} messages")


def market(client: TestClient[Any], coid: str, qty: str, headers: dict[str, str] = K1, side: str = "buy") -> None:
    body = {"client_order_id": coid, "symbol": "EURUSD", "side": side, "qty": qty, "type": "market"}
    r = client.post("/api/v1/orders", json=body, headers=headers)
    assert r.status_code == 201, r.text


def test_bad_auth_closes_4001(venue_client: tuple[Venue, TestClient[Any]]) -> None:
    _, client = venue_client
    for first in ({"op": "auth", "api_key": "wrong"}, {"op": "subscribe", "channels": []}):
        with client.websocket_connect("/ws") as ws:
            ws.send_json(first)
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json(timeout=WAIT)
            assert closed.value.code == 4001


def test_signed_auth() -> None:
    venue, client = make_client(signed=True)
    with client, client.websocket_connect("/ws") as ws:
        ts = venue.now_ms()
        ws.send_json({"op": "auth", "api_key": "key-1", "ts": ts, "signature": sign("secret-1", ts, "GET", "/ws", b"")})
        assert ws.receive_json(timeout=WAIT)["status"] == "ok"
    with client, client.websocket_connect("/ws") as ws:
        ws.send_json({"op": "auth", "api_key": "key-1", "ts": ts, "signature": "00"})
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json(timeout=WAIT)
        assert (closed.value.code, closed.value.detail) == (4001, "signature does not match")


def test_quotes_and_trades_with_per_channel_seq(venue_client: tuple[Venue, TestClient[Any]]) -> None:
    venue, client = venue_client
    with client.websocket_connect("/ws") as ws:
        login(ws)
        subscribe(ws, "quotes:EURUSD", "trades:EURUSD")
        market(client, "m1", "3")
        got = receive_until(ws, lambda m: m.get("ch") == "quotes:EURUSD")
        trades = [m for m in got if m["ch"] == "trades:EURUSD"]
        assert [(m["seq"], m["data"]["price"], m["data"]["size"], m["data"]["aggressor"]) for m in trades] == [
            (1, "1.08504", "2.00", "buy"),
            (2, "1.08505", "1.00", "buy"),
        ]
        assert got[-1]["seq"] == 1
        assert (got[-1]["data"]["ask"], got[-1]["data"]["ask_size"]) == ("1.08505", "2.00")
        client.blocking_portal.call(venue.step)
        after = receive_until(ws, lambda m: m.get("ch") == "quotes:EURUSD")
        assert after[-1]["seq"] > 1
        ws.send_json({"op": "unsubscribe", "channels": ["quotes:EURUSD", "trades:EURUSD"]})
        assert receive_until(ws, lambda m: m.get("op") == "unsubscribe")[-1]["channels"] == []
        ws.send_json({"op": "subscribe", "channels": ["quotes:NOPE", "bogus"]})
        assert ws.receive_json(timeout=WAIT) == {"op": "error", "message": "unknown channels: quotes:NOPE, bogus"}


def _apply(book: dict[str, Decimal], levels: list[list[str]]) -> None:
    for price, qty in levels:
        if Decimal(qty) == 0:
            book.pop(price, None)
        else:
            book[price] = Decimal(qty)


def test_depth_snapshot_plus_diffs_reproduces_the_book(venue_client: tuple[Venue, TestClient[Any]]) -> None:
    venue, client = venue_client
    with client.websocket_connect("/ws") as ws:
        login(ws)
        subscribe(ws, "depth:EURUSD")
        snapshot = client.get("/api/v1/depth/EURUSD", headers=K1).json()
        market(client, "m1", "3")
        client.post(
            "/api/v1/orders",
            json={
                "client_order_id": "l1",
                "symbol": "EURUSD",
                "side": "sell",
                "qty": "1",
                "type": "limit",
                "limit_price": "1.08510",
            },
            headers=K1,
        )
        client.blocking_portal.call(venue.step)
        final = client.get("/api/v1/depth/EURUSD", headers=K1).json()
        diffs = receive_until(ws, lambda m: m["data"]["u"] == final["last_update_id"])
        bids = {p: Decimal(q) for p, q in snapshot["bids"]}
        asks = {p: Decimal(q) for p, q in snapshot["asks"]}
        last = snapshot["last_update_id"]
        for message in diffs:
            diff = message["data"]
            if diff["u"] <= last:
                continue
            assert diff["U"] == last + 1, "no gap without the fault"
            _apply(bids, diff["bids"])
            _apply(asks, diff["asks"])
            last = diff["u"]
        assert [m["seq"] for m in diffs] == list(range(1, len(diffs) + 1))
        assert bids == {p: Decimal(q) for p, q in final["bids"]}
        assert asks == {p: Decimal(q) for p, q in final["asks"]}


def test_trade_updates_only_for_the_own_account(venue_client: tuple[Venue, TestClient[Any]]) -> None:
    _, client = venue_client
    with client.websocket_connect("/ws") as mine, client.websocket_connect("/ws") as theirs:
        login(mine)
        login(theirs, "key-2")
        subscribe(mine, "trade_updates")
        subscribe(theirs, "trade_updates")
        market(client, "m1", "3")
        got = receive_until(mine, lambda m: m["data"]["event"] == "fill")
        assert [(m["seq"], m["data"]["event"]) for m in got] == [(1, "new"), (2, "partial_fill"), (3, "fill")]
        fill = got[-1]["data"]
        assert (fill["qty"], fill["price"], fill["commission"], fill["position_qty"]) == (
            "1.00",
            "1.08505",
            "3.80",
            "3.00",
        )
        assert fill["order"]["client_order_id"] == "m1"
        assert fill["execution_id"] == client.get("/api/v1/fills", headers=K1).json()["fills"][1]["execution_id"]
        theirs.send_json({"op": "ping"})
        assert theirs.receive_json(timeout=WAIT)["op"] == "pong"  # nothing of acct-1's was queued before it


def test_heartbeat_timeout_closes_4002() -> None:
    _, client = make_client(heartbeat_interval_s=0.05)
    with client, client.websocket_connect("/ws") as ws:
        ws.send_json({"op": "auth", "api_key": "key-1"})
        closed, seen = drain_until_closed(ws, 50)
        assert closed.code == 4002
        assert sum(m.get("op") == "ping" for m in seen) >= 2


def test_answered_pings_keep_the_connection() -> None:
    _, client = make_client(heartbeat_interval_s=0.2)
    with client, client.websocket_connect("/ws") as ws:
        login(ws)
        for _ in range(5):
            ping = ws.receive_json(timeout=WAIT)
            assert ping["op"] == "ping"
            ws.send_json({"op": "pong"})
        ws.send_json({"op": "ping"})
        assert receive_until(ws, lambda m: m["op"] == "pong")[-1]["op"] == "pong"


def test_lifetime_closes_4000() -> None:
    _, client = make_client(connection_lifetime_s=0.2)
    with client, client.websocket_connect("/ws") as ws:
        ws.send_json({"op": "auth", "api_key": "key-1"})
        assert ws.receive_json(timeout=WAIT)["expires_in"] == 1
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json(timeout=WAIT)
        assert (closed.value.code, closed.value.detail) == (4000, "lifetime reached")


def test_slow_consumer_is_closed_not_waited_for() -> None:
    venue, client = make_client(ws_queue_size=3)
    with client, client.websocket_connect("/ws") as ws:
        login(ws)
        subscribe(ws, *(f"quotes:{s}" for s in venue.symbols))
        client.blocking_portal.call(venue.step)  # eight quotes at once into a queue of three
        closed, seen = drain_until_closed(ws, 20)
        assert closed.code == 4008
        assert "slow consumer" in closed.detail
        assert len(seen) <= 3
    assert len(venue.hub) == 0
