"""API rate limits (SECURITY 26, 27): per user, per IP, route weights, the order-velocity cap, headers.

Each test runs the real app with limits lowered through its settings, on the memory storage.
Limits are per hour, so nothing here depends on how fast the machine is: a window never moves
during a test. The same limits across two processes sharing Redis: test_ratelimit_redis.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar, WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.middleware import DefineMiddleware
from litestar.status_codes import WS_1008_POLICY_VIOLATION
from litestar.testing import TestClient
from litestar.types import ASGIApp, Receive, Scope, Send

from brokerlink.api.ratelimit import (
    ORDER_PLACEMENT,
    ROUTE_WEIGHTS,
    RateLimiter,
    RateLimitMiddleware,
)
from brokerlink.app.factory import create_app
from brokerlink.config import Settings
from brokerlink.kit.clock import ManualClock
from brokerlink.kit.ratelimits import InProcessStorage
from brokerlink.security.principal import Principal
from tests.api.support import MARKET_ORDER, PASSWORD, assert_problem, link_account, running, with_csrf

GENEROUS = {
    "rate_limit_user": "10000/hour",
    "rate_limit_client": "10000/hour",
    "rate_limit_ip": "10000/hour",
    "rate_limit_orders": "10000/hour",
}
Serve = Callable[..., Awaitable[Litestar]]
Connect = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def serve(settings: Settings, clock: ManualClock) -> AsyncIterator[Serve]:
    """``await serve(rate_limit_user="3/hour")``: the app with these limits (others generous), running."""
    stack: list[Any] = []

    async def start(**limits: Any) -> Litestar:
        app = create_app(settings.model_copy(update=GENEROUS | limits), clock=clock, configure_logs=False)
        cm = running(app)
        await cm.__aenter__()
        stack.append(cm)
        return app

    yield start
    for cm in reversed(stack):
        await cm.__aexit__(None, None, None)


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """``await connect(app, ip=..., email=...)``: a client from that IP, signed up as ``email`` if given."""
    opened: list[httpx.AsyncClient] = []

    async def make(app: Litestar, *, ip: str = "127.0.0.1", email: str | None = None) -> httpx.AsyncClient:
        c = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(ip, 50000)),  # type: ignore[arg-type]
            base_url="https://testserver.local",
        )
        opened.append(c)
        if email is not None:
            await with_csrf(c)
            body = {"email": email, "password": PASSWORD, "display_name": email.split("@")[0]}
            response = await c.post("/v1/auth/register", json=body)
            assert response.status_code == 201, response.text
        return c

    yield make
    for c in opened:
        await c.aclose()


def remaining(response: httpx.Response) -> int:
    return int(response.headers["ratelimit-remaining"])


async def test_ratelimit_per_user_refuses_past_the_limit_and_leaves_others_alone(
    serve: Serve, connect: Connect
) -> None:
    app = await serve(rate_limit_user="3/hour")
    alice = await connect(app, email="alice@example.com")
    bob = await connect(app, email="bob@example.com")  # the same IP: users are counted apart
    for left in (2, 1, 0):
        r = await alice.get("/v1/me")
        assert r.status_code == 200, r.text
        assert remaining(r) == left
    refused = await alice.get("/v1/me")
    assert_problem(refused, 429, "rate_limited")
    assert (await bob.get("/v1/me")).status_code == 200


async def test_ratelimit_per_ip_for_anonymous_requests(serve: Serve, connect: Connect) -> None:
    app = await serve(rate_limit_ip="4/hour")
    here = await connect(app, ip="192.0.2.10")
    there = await connect(app, ip="192.0.2.11")
    for _ in range(4):
        assert (await here.get("/v1/auth/csrf")).status_code == 200
    assert_problem(await here.get("/v1/auth/csrf"), 429, "rate_limited")
    assert (await there.get("/v1/auth/csrf")).status_code == 200
    # Pages are limited the same way: an anonymous page view is the IP's too.
    assert (await here.get("/login", headers={"accept": "text/html"})).status_code == 429


async def test_ratelimit_headers_and_429_with_retry_after(serve: Serve, connect: Connect) -> None:
    app = await serve(rate_limit_user="2/hour")
    alice = await connect(app, email="alice@example.com")
    ok = await alice.get("/v1/me")
    assert ok.headers["ratelimit-limit"] == "2"
    assert ok.headers["ratelimit-remaining"] == "1"
    assert 0 < int(ok.headers["ratelimit-reset"]) <= 3600
    assert "retry-after" not in ok.headers
    await alice.get("/v1/me")
    refused = await alice.get("/v1/me")
    problem = assert_problem(refused, 429, "rate_limited")
    assert problem["status"] == 429
    assert refused.headers["ratelimit-limit"] == "2"
    assert refused.headers["ratelimit-remaining"] == "0"
    retry_after = refused.headers["retry-after"]
    assert retry_after.isdigit()
    assert 1 <= int(retry_after) <= 3600
    assert refused.headers["ratelimit-reset"] == retry_after
    assert refused.headers["x-content-type-options"] == "nosniff"  # the refusal is hardened like any response


async def test_ratelimit_route_weights(serve: Serve, connect: Connect) -> None:
    app = await serve(rate_limit_user="20/hour")
    alice = await connect(app, email="alice@example.com")
    assert remaining(await alice.get("/v1/me")) == 19
    # An order placement weighs more than a read, whatever the handler then answers (here: no such account).
    placed = await alice.post("/v1/accounts/acc_nothere/orders", json=MARKET_ORDER)
    assert placed.status_code == 404
    assert remaining(placed) == 19 - ROUTE_WEIGHTS[ORDER_PLACEMENT]
    assert remaining(await alice.get("/v1/accounts")) == 19 - ROUTE_WEIGHTS[ORDER_PLACEMENT] - 1


async def test_ratelimit_weight_above_a_small_limit_takes_the_whole_limit(serve: Serve, connect: Connect) -> None:
    app = await serve(rate_limit_user="3/hour")
    alice = await connect(app, email="alice@example.com")
    first = await alice.post("/v1/accounts/acc_nothere/orders", json=MARKET_ORDER)
    assert first.status_code == 404
    assert remaining(first) == 0
    assert_problem(await alice.get("/v1/me"), 429, "rate_limited")


async def test_ratelimit_order_velocity_cap_per_user_and_account(serve: Serve, connect: Connect) -> None:
    app = await serve(rate_limit_orders="2/hour")
    alice = await connect(app, email="alice@example.com")
    bob = await connect(app, email="bob@example.com")
    _, account = await link_account(app, "alice@example.com", "main")
    _, other = await link_account(app, "alice@example.com", "spare")
    # A stranger posting to Alice's account is refused by the handler and spends only his own cap.
    for _ in range(2):
        assert (await bob.post(f"/v1/accounts/{account}/orders", json=MARKET_ORDER)).status_code == 404
    assert_problem(await bob.post(f"/v1/accounts/{account}/orders", json=MARKET_ORDER), 429, "rate_limited")
    # Attempts count, whatever the broker then says (this account's connection is not up).
    for n in range(2):
        attempt = await alice.post(f"/v1/accounts/{account}/orders", json=MARKET_ORDER | {"client_order_id": f"v{n}"})
        assert attempt.status_code != 429, attempt.text
        assert attempt.headers["ratelimit-limit"] == "2"
        assert remaining(attempt) == 1 - n
    refused = await alice.post(f"/v1/accounts/{account}/orders", json=MARKET_ORDER | {"client_order_id": "v2"})
    assert_problem(refused, 429, "rate_limited")
    assert int(refused.headers["retry-after"]) >= 1
    assert (await alice.get(f"/v1/accounts/{account}/orders")).status_code == 200  # reads are not capped
    # The cap is per account: Alice's other account still takes order attempts.
    assert (await alice.post(f"/v1/accounts/{other}/orders", json=MARKET_ORDER)).status_code != 429


async def test_ratelimit_exempts_health_probes(serve: Serve, connect: Connect) -> None:
    app = await serve(rate_limit_ip="2/hour")
    c = await connect(app)
    for _ in range(5):
        for path in ("/healthz", "/readyz"):
            r = await c.get(path)
            assert r.status_code == 200, r.text
            assert "ratelimit-remaining" not in r.headers


async def test_ratelimit_disabled_sets_no_headers_and_refuses_nothing(serve: Serve, connect: Connect) -> None:
    app = await serve(rate_limit_ip="1/hour", rate_limit_enabled=False)
    c = await connect(app)
    for _ in range(3):
        r = await c.get("/v1/auth/csrf")
        assert r.status_code == 200
        assert "ratelimit-limit" not in r.headers


def test_ratelimit_memory_storage_by_default(tmp_path: Path) -> None:
    limiter = RateLimiter.from_settings(Settings(data_dir=tmp_path))
    assert isinstance(limiter.storage, InProcessStorage)
    assert [str(i) for i in limiter.user.items] == ["50 per 1 second", "1500 per 1 minute"]


@pytest.mark.parametrize(
    "change",
    [{"rate_limit_user": "lots"}, {"rate_limit_orders": ""}, {"rate_limit_backend": "redis", "redis_url": None}],
    ids=["bad-notation", "empty", "redis-without-url"],
)
def test_ratelimit_misconfiguration_fails_at_startup(settings: Settings, change: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        create_app(settings.model_copy(update=change), clock=ManualClock(), configure_logs=False)


# WebSockets: the stream is a later issue; a bare app with the middleware shows the caps.


def as_user(user_id: str) -> Callable[[ASGIApp], ASGIApp]:
    """A middleware factory that makes every connection ``user_id``'s, as the session middleware would."""

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            scope["user"] = Principal(kind="user", user_id=user_id)
            await app(scope, receive, send)

        return middleware

    return factory


def ws_app(settings: Settings) -> Litestar:
    limiter = RateLimiter.from_settings(settings)

    @websocket("/ws")
    async def echo(socket: WebSocket[Any, Any, Any]) -> None:
        await socket.accept()
        rate = limiter.message_rate()
        while True:
            text = await socket.receive_text()
            if not await rate.admit(socket):
                return
            await socket.send_text(text)

    return Litestar(
        route_handlers=[echo],
        middleware=[as_user("usr_ws"), DefineMiddleware(RateLimitMiddleware, limiter=limiter)],
        on_shutdown=[limiter.close],
    )


def test_ratelimit_websocket_connections_per_principal_are_capped(settings: Settings) -> None:
    app = ws_app(settings.model_copy(update={"rate_limit_ws_connections": 2}))
    with TestClient(app) as client:
        with client.websocket_connect("/ws") as one, client.websocket_connect("/ws") as two:
            for ws in (one, two):
                ws.send_text("hi")
                assert ws.receive_text() == "hi"
            with client.websocket_connect("/ws") as third, pytest.raises(WebSocketDisconnect) as closed:
                third.receive_text()
            assert closed.value.code == WS_1008_POLICY_VIOLATION
            assert "too many connections" in str(closed.value.detail)
        # Both closed: their slots come back as the server side ends each handler (bounded retries).
        for _ in range(100):
            with client.websocket_connect("/ws") as again, client.websocket_connect("/ws") as and_again:
                try:
                    again.send_text("a")
                    and_again.send_text("b")
                    if (again.receive_text(), and_again.receive_text()) == ("a", "b"):
                        break
                except WebSocketDisconnect:
                    continue
        else:
            raise AssertionError("connection slots were not released")


def test_ratelimit_websocket_message_flood_is_closed_with_1008(settings: Settings) -> None:
    app = ws_app(settings.model_copy(update={"rate_limit_ws_messages": "3/hour"}))
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        for n in range(3):
            ws.send_text(str(n))
            assert ws.receive_text() == str(n)
        ws.send_text("one too many")
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == WS_1008_POLICY_VIOLATION
        # A new connection has a budget of its own.
        with client.websocket_connect("/ws") as fresh:
            fresh.send_text("x")
            assert fresh.receive_text() == "x"


async def test_ratelimit_message_rate_counts_per_connection(settings: Settings) -> None:
    limiter = RateLimiter.from_settings(settings.model_copy(update={"rate_limit_ws_messages": "2/hour"}))
    try:
        first, second = limiter.message_rate(), limiter.message_rate()
        assert [await first.allow() for _ in range(3)] == [True, True, False]
        assert await second.allow()
    finally:
        await limiter.close()
