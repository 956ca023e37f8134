"""The Alpaca client: errors onto the protocol's three kinds, and the rate-limit headers read on every answer.

Answers come from httpx's in-memory transport (a fake *HTTP server*, not a fake of our code): each
test states exactly what Alpaca answers and checks what the client makes of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import msgspec
import pytest

from brokerlink.brokers.alpaca.client import ALPACA_LIMITS, AlpacaClient, error_for, retry_after_s
from brokerlink.brokers.alpaca.wire import Account
from brokerlink.brokers.base import (
    BrokerRateLimited,
    OrderRefused,
    OutcomeUnknown,
    RefusalReason,
    TransientBrokerError,
)

ACCOUNT = {"id": "u-1", "account_number": "PA1", "status": "ACTIVE", "cash": "10"}


def _response(status: int, body: object = None, headers: dict[str, str] | None = None) -> httpx.Response:
    content = msgspec.json.encode(body) if body is not None else b""
    return httpx.Response(status, content=content, headers=headers, request=httpx.Request("GET", "http://x"))


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (401, {"code": 40110000, "message": "request is not authorized"}, RefusalReason.AUTH),
        (403, {"code": 40310000, "message": "insufficient buying power"}, RefusalReason.INSUFFICIENT_FUNDS),
        (403, {"message": "insufficient qty available for order"}, RefusalReason.INSUFFICIENT_FUNDS),
        (403, {"message": "forbidden"}, RefusalReason.AUTH),
        (404, {"code": 40410000, "message": "order not found"}, RefusalReason.UNKNOWN_ORDER),
        (422, {"code": 40010001, "message": "client_order_id must be unique"}, RefusalReason.DUPLICATE_CLIENT_ORDER_ID),
        (422, {"code": 40010001, "message": "qty must be > 0"}, RefusalReason.INVALID_ORDER),
        (400, {"message": "request body format is invalid"}, RefusalReason.INVALID_ORDER),
    ],
)
def test_refusals(status: int, body: object, reason: RefusalReason) -> None:
    for command_id in (None, "c-1"):
        error = error_for(_response(status, body), command_id)
        assert isinstance(error, OrderRefused)
        assert error.reason is reason


def test_a_5xx_is_an_unknown_outcome_for_a_command_and_transient_for_a_read() -> None:
    answer = _response(500, {"code": 50010000, "message": "internal server error"})
    command = error_for(answer, "c-1")
    assert isinstance(command, OutcomeUnknown)
    assert command.client_order_id == "c-1"
    assert isinstance(error_for(answer, None), TransientBrokerError)
    assert isinstance(error_for(_response(502, None), None), TransientBrokerError), "a body that is not JSON"


def test_retry_after_comes_from_the_reset_time() -> None:
    now = 1_700_000_000.0
    assert retry_after_s({"x-ratelimit-reset": str(int(now) + 7)}, now=now) == 7
    assert retry_after_s({"x-ratelimit-reset": str(int(now) - 5)}, now=now) == 1, "at least a second"
    assert retry_after_s({"x-ratelimit-reset": str(int(now) + 3600)}, now=now) == 60, "at most a minute"
    assert retry_after_s({"retry-after": "3", "x-ratelimit-reset": str(int(now) + 30)}, now=now) == 3
    assert retry_after_s({}, now=now) == 1


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> AlpacaClient:
    return AlpacaClient(
        "https://paper-api.alpaca.markets",
        key_id="PK1",
        secret_key="s3cret",
        limits=ALPACA_LIMITS,
        transport=httpx.MockTransport(handler),
    )


async def test_every_request_carries_the_key_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=ACCOUNT)

    client = _client(handler)
    account = await client.get("/v2/account", Account)
    await client.close()
    assert account.account_number == "PA1"
    assert seen[0].headers["APCA-API-KEY-ID"] == "PK1"
    assert seen[0].headers["APCA-API-SECRET-KEY"] == "s3cret"
    assert "s3cret" not in repr(client)


async def test_a_429_pauses_the_key_until_the_reset_and_says_when() -> None:
    reset = int(time.time()) + 5

    def handler(_: httpx.Request) -> httpx.Response:
        headers = {"X-Ratelimit-Limit": "200", "X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": str(reset)}
        return httpx.Response(429, json={"code": 42910000, "message": "rate limit exceeded"}, headers=headers)

    client = _client(handler)
    with pytest.raises(BrokerRateLimited) as info:
        await client.get("/v2/account", Account)
    assert info.value.retry_after_ms is not None
    assert 3_000 <= info.value.retry_after_ms <= 6_000
    delay = client.limiter.delay(client._bucket)
    assert delay is not None
    assert delay > 3, "the key waits out the reset before its next request"
    assert client.limiter.delay("another-key") == 0, "other keys are not held up"
    await client.close()


async def test_the_advertised_limit_lowers_ours_and_an_empty_window_pauses() -> None:
    calls = 0

    def handler(_: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        remaining = "0" if calls == 2 else "9"
        reset = str(int(time.time()) + 4)
        headers = {"X-Ratelimit-Limit": "10", "X-Ratelimit-Remaining": remaining, "X-Ratelimit-Reset": reset}
        return httpx.Response(200, json=ACCOUNT, headers=headers)

    client = _client(handler)
    await client.get("/v2/account", Account)
    assert client.limiter.limits.per_account[0].amount == 9, "90% of the advertised 10 a minute"
    assert client.limiter.delay(client._bucket) == 0
    await client.get("/v2/account", Account)
    delay = client.limiter.delay(client._bucket)
    assert delay is not None
    assert delay > 2, "nothing left in the window: wait for its reset rather than spend a request on a 429"
    assert client.last_rate_limit["x-ratelimit-limit"] == "10"
    await client.close()


async def test_network_failures() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def drop(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    with pytest.raises(TransientBrokerError):
        await _client(refuse).command("POST", "/v2/orders", Account, client_order_id="c-1")
    with pytest.raises(OutcomeUnknown):
        await _client(drop).command("POST", "/v2/orders", Account, client_order_id="c-1")
    with pytest.raises(TransientBrokerError):
        await _client(drop).get("/v2/account", Account)


async def test_an_unreadable_answer_to_a_command_is_an_unknown_outcome() -> None:
    client = _client(lambda _: httpx.Response(200, content=b"<html>"))
    with pytest.raises(OutcomeUnknown):
        await client.command("POST", "/v2/orders", Account, client_order_id="c-1")
    with pytest.raises(TransientBrokerError):
        await client.get("/v2/account", Account)
