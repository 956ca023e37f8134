"""Fault injection through ``/_control/faults``: each fault and what a client sees of it on the wire."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import AsyncTestClient, TestClient
from litestar.testing.websocket_test_session import WebSocketTestSession

from brokerlink.brokers.sim.gate import RateLimitRule
from brokerlink.brokers.sim.venue import AccountConfig, Venue, VenueConfig, create_venue_app
from brokerlink.brokers.sim.wire import sign
from brokerlink.kit.clock import ManualClock

ACCOUNTS = (AccountConfig(account_id="acct-1", api_key="key-1", api_secret="secret-1"),)
K1 = {"x-sim-api-key": "key-1"}
WAIT = 5.0


def make_venue(**overrides: Any) -> Venue:
    settings: dict[str, Any] = {
        "accounts": ACCOUNTS,
        "background": False,
        "mode": "test",
        "rate_limits": (RateLimitRule(10_000, 60),),
    }
    sleep = overrides.pop("sleep", _no_sleep)
    return Venue(VenueConfig(**(settings | overrides)), clock=ManualClock(), sleep=sleep)


async def _no_sleep(_: float) -> None:
    return None


@pytest.fixture
def venue_client() -> Iterator[tuple[Venue, TestClient[Any]]]:
    venue = make_venue()
    with TestClient(create_venue_app(venue=venue)) as client:
        yield venue, client


def set_faults(client: TestClient[Any], **faults: Any) -> dict[str, Any]:
    r = client.post("/_control/faults", json=faults)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def order(client: TestClient[Any], coid: str, **fields: str) -> Any:
    body = {"client_order_id": coid, "symbol": "EURUSD", "side": "buy", "qty": "3", "type": "market"} | fields
    return client.post("/api/v1/orders", json=body, headers=K1)


def connect(ws: WebSocketTestSession, *channels: str) -> None:
    ws.send_json({"op": "auth", "api_key": "key-1"})
    assert ws.receive_json(timeout=WAIT)["status"] == "ok"
    ws.send_json({"op": "subscribe", "channels": list(channels)})
    assert ws.receive_json(timeout=WAIT)["op"] == "subscribe"


def events(ws: WebSocketTestSession, count: int) -> list[tuple[int, str]]:
    got = [ws.receive_json(timeout=WAIT) for _ in range(count)]
    return [(m["seq"], m["data"]["event"]) for m in got]


def test_control_api_shows_sets_and_resets(venue_client: tuple[Venue, TestClient[Any]]) -> None:
    _, client = venue_client
    assert client.get("/_control/faults").json()["latency_ms"] == 0
    assert set_faults(client, latency_ms=5, reject_next=1)["reject_next"] == 1
    assert client.get("/_control/faults").json()["latency_ms"] == 5
    assert client.post("/_control/faults", json={"nonsense": 1}).status_code == 400
    assert client.post("/_control/faults", json={"duplicate_events": 2}).status_code == 400
    assert client.delete("/_control/faults").json()["latency_ms"] == 0


async def test_latency_is_added_before_each_response() -> None:
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    venue = make_venue(sleep=record)
    async with AsyncTestClient(create_venue_app(venue=venue)) as client:
        assert (await client.get("/api/v1/account", headers=K1)).status_code == 200
        assert slept == []
        await client.post("/_control/faults", json={"latency_ms": 250})
        assert (await client.get("/api/v1/account", headers=K1)).status_code == 200
        assert (await client.get("/api/v1/orders", headers=K1)).status_code == 200
        assert slept == [0.25, 0.25]


def test_drop_connections_closes_every_websocket(venue_client: tuple[Venue, TestClient[Any]]) -> None:
    _, client = venue_client
    with client.websocket_connect("/ws") as one, client.websocket_connect("/ws") as two:
        connect(one, "trade_updates")
        connect(two, "quotes:EURUSD")
        set_faults(client, drop_connections=True)
        for ws in (one, two):
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json(timeout=WAIT)
            assert closed.value.code == 1012
    assert client.get("/_control/faults").json().get("drop_connections") is None  # an action, not a setting


def test_fail_after_accept_executes_then_answers_500(venue_client: tuple[Venue, TestClient[Any]]) -> None:
    _, client = venue_client
    set_faults(client, fail_after_accept=1)
    r = order(client, "u1")
    assert r.status_code == 500
    assert r.json()["code"] == "internal"
    looked_up = client.get("/api/v1/orders/by-client-id/u1", headers=K1).json()
    assert looked_up["status"] == "filled"  # the outcome the client could not see
    assert order(client, "u1").status_code == 409  # resubmitting blindly is refused
    assert order(client, "u2").status_code == 201


def test_reject_next_refuses_n_orders(venue_client: tuple[Venue, TestClient[Any]]) -> None:
    _, client = venue_client
    set_faults(client, reject_next=2)
    for coid in ("r1", "r2"):
        r = order(client, coid)
        assert r.status_code == 400
        assert r.json() == {"code": "invalid_order", "message": "order refused (injected fault: reject_next)"}
    assert order(client, "r3").status_code == 201
    assert client.get("/api/v1/orders/by-client-id/r1", headers=K1).status_code == 404


def test_duplicate_events_sends_trade_updates_twice(venue_client: tuple[Venue, TestClient[Any]]) -> None:
    _, client = venue_client
    with client.websocket_connect("/ws") as ws:
        connect(ws, "trade_updates")
        set_faults(client, duplicate_events=1.0)
        order(client, "d1")
        assert events(ws, 6) == [
            (1, "new"),
            (2, "new"),
            (3, "partial_fill"),
            (4, "partial_fill"),
            (5, "fill"),
            (6, "fill"),
        ]


def test_reorder_events_swaps_trade_updates(venue_client: tuple[Venue, TestClient[Any]]) -> None:
    venue, client = venue_client
    with client.websocket_connect("/ws") as ws:
        connect(ws, "trade_updates")
        set_faults(client, reorder_events=1.0)
        order(client, "o1")
        assert events(ws, 2) == [(1, "partial_fill"), (2, "new")]  # the fill report overtakes the ack
        client.blocking_portal.call(venue.step)  # the last held-back message goes out at the next tick
        assert events(ws, 1) == [(3, "fill")]


def test_depth_gap_skips_update_ids(venue_client: tuple[Venue, TestClient[Any]]) -> None:
    _, client = venue_client
    with client.websocket_connect("/ws") as ws:
        connect(ws, "depth:EURUSD")
        last = client.get("/api/v1/depth/EURUSD", headers=K1).json()["last_update_id"]
        set_faults(client, depth_gap=1)
        order(client, "g1")  # its diff is swallowed
        order(client, "g2")
        diff = ws.receive_json(timeout=WAIT)
        assert diff["seq"] == 1
        assert diff["data"]["U"] > last + 1  # a gap: the client must resync from a snapshot
        assert client.get("/_control/faults").json()["depth_gap"] == 0


def test_clock_skew_moves_the_receive_window() -> None:
    venue = make_venue(signed=True)
    with TestClient(create_venue_app(venue=venue)) as client:

        def account() -> Any:
            ts = venue.now_ms()
            headers = K1 | {
                "x-sim-timestamp": str(ts),
                "x-sim-signature": sign("secret-1", ts, "GET", "/api/v1/account", b""),
            }
            return client.get("/api/v1/account", headers=headers)

        assert account().status_code == 200
        set_faults(client, clock_skew_ms=10_000)
        skewed = account()
        assert skewed.status_code == 401
        assert skewed.json()["code"] == "timestamp_outside_recv_window"
        client.delete("/_control/faults")
        assert account().status_code == 200


def test_control_step_and_session_end(venue_client: tuple[Venue, TestClient[Any]]) -> None:
    _, client = venue_client
    before = client.get("/api/v1/depth/EURUSD", headers=K1).json()["last_update_id"]
    assert client.post("/_control/step", json={"steps": 3, "dt_ms": 3_600_000}).json() == {"steps": 3}
    assert client.get("/api/v1/depth/EURUSD", headers=K1).json()["last_update_id"] > before
    order(client, "day", type="limit", tif="day", qty="1", limit_price="1.00000")
    assert client.post("/_control/session/end").json() == {"expired": 1}
    assert client.get("/api/v1/orders/by-client-id/day", headers=K1).json()["status"] == "expired"
