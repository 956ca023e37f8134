"""The sim adapter's HTTP client: every venue answer lands in the right error kind; requests are signed."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import msgspec
import pytest

from brokerlink.brokers.base import BrokerRateLimited, OrderRefused, OutcomeUnknown, RefusalReason, TransientBrokerError
from brokerlink.brokers.sim import client as client_module
from brokerlink.brokers.sim.client import SimClient
from brokerlink.brokers.sim.wire import AmendOrder, signature_matches

Handler = Callable[[httpx.Request], httpx.Response]


def error(status: int, code: str, headers: dict[str, str] | None = None) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"code": code, "message": f"{code} happened"}, headers=headers)

    return handle


def raising(exc: Exception) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        raise exc

    return handle


def client(handler: Handler, secret: str | None = None) -> SimClient:
    return SimClient("http://venue.test", api_key="k", api_secret=secret, transport=httpx.MockTransport(handler))


async def command(c: SimClient) -> object:
    return await c.command("PATCH", "/orders/by-client-id/c-1", dict, body=AmendOrder(qty=None), client_order_id="c-1")


@pytest.mark.parametrize(
    ("status", "code", "reason"),
    [
        (401, "auth_failed", RefusalReason.AUTH),
        (401, "timestamp_outside_recv_window", RefusalReason.AUTH),
        (400, "invalid_order", RefusalReason.INVALID_ORDER),
        (404, "unknown_order", RefusalReason.UNKNOWN_ORDER),
        (409, "duplicate_client_order_id", RefusalReason.DUPLICATE_CLIENT_ORDER_ID),
        (422, "insufficient_funds", RefusalReason.INSUFFICIENT_FUNDS),
        (422, "market_closed", RefusalReason.MARKET_CLOSED),
    ],
)
async def test_definitive_refusals(status: int, code: str, reason: RefusalReason) -> None:
    c = client(error(status, code))
    with pytest.raises(OrderRefused) as info:
        await command(c)
    assert info.value.reason is reason
    assert code in info.value.detail
    await c.close()


async def test_rate_limited_carries_retry_after() -> None:
    c = client(error(429, "rate_limited", {"Retry-After": "2"}))
    with pytest.raises(BrokerRateLimited) as info:
        await c.get("/account", dict)
    assert info.value.retry_after_ms == 2000
    await c.close()


async def test_503_is_transient_for_commands_and_reads() -> None:
    c = client(error(503, "unavailable"))
    with pytest.raises(TransientBrokerError) as read:
        await c.get("/account", dict)
    with pytest.raises(TransientBrokerError) as cmd:
        await command(c)
    assert not isinstance(read.value, OutcomeUnknown)
    assert not isinstance(cmd.value, OutcomeUnknown)
    await c.close()


async def test_a_500_after_a_command_is_an_unknown_outcome_but_a_failed_read_is_transient() -> None:
    c = client(error(500, "internal"))
    with pytest.raises(OutcomeUnknown) as info:
        await command(c)
    assert info.value.client_order_id == "c-1"
    with pytest.raises(TransientBrokerError):
        await c.get("/orders", dict)
    await c.close()


async def test_timeout_after_sending_is_unknown_but_a_refused_connection_is_not() -> None:
    timed_out = client(raising(httpx.ReadTimeout("slow")))
    with pytest.raises(OutcomeUnknown):
        await command(timed_out)
    never_sent = client(raising(httpx.ConnectError("refused")))
    with pytest.raises(TransientBrokerError) as info:
        await command(never_sent)
    assert not isinstance(info.value, OutcomeUnknown)
    await timed_out.close()
    await never_sent.close()


async def test_garbage_error_bodies_still_map_by_status() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, content=b"<html>bad gateway</html>")

    c = client(handle)
    with pytest.raises(OutcomeUnknown):
        await command(c)
    await c.close()


async def test_signed_requests_carry_a_signature_the_venue_can_check() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    c = client(handle, secret="s3cret")
    await c.command("POST", "/orders", dict, body=AmendOrder(qty=None), client_order_id="c-1")
    await c.get("/fills", dict, params={"since_id": 7, "limit": 10})
    for request in seen:
        path = request.url.raw_path.decode()
        assert signature_matches(
            "s3cret",
            request.headers["x-sim-signature"],
            timestamp_ms=int(request.headers["x-sim-timestamp"]),
            method=request.method,
            path_with_query=path,
            body=request.content,
        ), path
    assert seen[1].url.raw_path.decode() == "/api/v1/fills?since_id=7&limit=10"
    assert json.loads(seen[0].content) == msgspec.to_builtins(AmendOrder(qty=None))
    await c.close()


async def test_pacing_waits_for_the_window_when_nothing_is_left(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(client_module.asyncio, "sleep", fake_sleep)
    headers = {"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "3"}

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={}, headers=headers)

    c = client(handle)
    await c.get("/account", dict)
    assert slept == []
    await c.get("/account", dict)
    assert len(slept) == 1
    assert 2.5 < slept[0] <= 3.0
    assert c.last_rate_limit["x-ratelimit-limit"] == "20"
    await c.close()
