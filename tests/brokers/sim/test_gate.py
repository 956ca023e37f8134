"""The venue's authentication (plain and HMAC-signed) and its declared rate limits."""

from __future__ import annotations

import asyncio
import threading

import msgspec
import pytest

from brokerlink.brokers.sim.gate import ApiKey, Gate, RateLimitRule, WireError
from brokerlink.brokers.sim.wire import DepthDiff, ErrorCode, NewOrder, sign

KEY = ApiKey(key="key-1", secret="secret-1", account_id="SIM-1")
NOW = 1_767_614_400_000
BODY = b'{"client_order_id":"c-1"}'
PATH = "/api/v1/orders?x=1"


def signed_headers(ts: int = NOW, secret: str = "secret-1", **extra: str) -> dict[str, str]:
    headers = {
        "x-sim-api-key": "key-1",
        "x-sim-timestamp": str(ts),
        "x-sim-signature": sign(secret, ts, "POST", PATH, BODY),
    }
    return headers | extra


def gate(*, signed: bool = True, skew: int = 0) -> Gate:
    return Gate({KEY.key: KEY}, signed=signed, now_ms=lambda: NOW, skew_ms=lambda: skew)


def refused(g: Gate, headers: dict[str, str], body: bytes = BODY) -> ErrorCode:
    with pytest.raises(WireError) as info:
        g.authenticate(headers, "POST", PATH, body)
    assert info.value.status == 401
    return info.value.code


def test_plain_mode_needs_only_a_known_key() -> None:
    assert gate(signed=False).authenticate({"x-sim-api-key": "key-1"}, "GET", "/", b"") == KEY
    assert refused(gate(signed=False), {"x-sim-api-key": "other"}) is ErrorCode.AUTH_FAILED
    assert refused(gate(signed=False), {}) is ErrorCode.AUTH_FAILED


def test_signed_mode_accepts_a_correct_signature() -> None:
    assert gate().authenticate(signed_headers(), "POST", PATH, BODY) == KEY


def test_signed_mode_refuses_tampering_and_wrong_secrets() -> None:
    assert refused(gate(), signed_headers(), body=BODY + b" ") is ErrorCode.BAD_SIGNATURE
    assert refused(gate(), signed_headers(secret="nope")) is ErrorCode.BAD_SIGNATURE
    assert refused(gate(), signed_headers() | {"x-sim-timestamp": "soon"}) is ErrorCode.BAD_SIGNATURE
    assert refused(gate(), signed_headers(**{"x-sim-recv-window": "600000"})) is ErrorCode.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("offset", "window", "ok"),
    [(4_999, None, True), (5_001, None, False), (-5_001, None, False), (9_000, "10000", True)],
)
def test_receive_window(offset: int, window: str | None, ok: bool) -> None:
    extra = {"x-sim-recv-window": window} if window else {}
    headers = signed_headers(ts=NOW + offset, **extra)
    if ok:
        assert gate().authenticate(headers, "POST", PATH, BODY) == KEY
    else:
        assert refused(gate(), headers) is ErrorCode.TIMESTAMP_OUTSIDE_RECV_WINDOW


def test_injected_clock_skew_pushes_a_good_request_out_of_the_window() -> None:
    assert refused(gate(skew=6_000), signed_headers()) is ErrorCode.TIMESTAMP_OUTSIDE_RECV_WINDOW


def test_api_key_repr_hides_the_secret() -> None:
    assert "secret-1" not in repr(KEY)


def test_rate_limit_refuses_past_the_limit_with_headers() -> None:
    g = Gate({KEY.key: KEY}, rate_limits=(RateLimitRule(3, 60),))
    decisions = [g.admit("key-1") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions[:3]] == [2, 1, 0]
    first = decisions[0].headers()
    assert first["X-RateLimit-Limit"] == "3"
    assert 0 < int(first["X-RateLimit-Reset"]) <= 60
    assert "Retry-After" not in first
    last = decisions[3].headers()
    assert 1 <= int(last["Retry-After"]) <= 60
    assert (g.admit("another-key")).allowed, "limits are per API key"


async def test_counting_many_api_keys_leaves_the_loop_thread_alone() -> None:
    """``limits``' asynchronous memory storage sent a sweep of every key to ``asyncio.to_thread`` on most
    hits (a thread hop per key: a quarter of the venue's CPU with 101 keys). Counted in line now."""
    g = Gate({}, rate_limits=(RateLimitRule(1000, 1),))
    threads = {thread.ident for thread in threading.enumerate()}
    for _ in range(3):
        assert all(g.admit(f"key-{n}").allowed for n in range(101))
        await asyncio.sleep(0.01)  # whatever a hit scheduled gets its turn
    assert {thread.ident for thread in threading.enumerate()} <= threads  # none started
    assert g.admit("key-0").remaining == 1000 - 4


def test_the_tightest_rule_describes_the_answer() -> None:
    g = Gate({KEY.key: KEY}, rate_limits=(RateLimitRule(100, 60), RateLimitRule(2, 60)))
    d = g.admit("key-1")
    assert (d.limit, d.remaining) == (2, 1)


def test_wire_bodies_refuse_unknown_fields_and_keep_decimals_exact() -> None:
    raw = b'{"client_order_id":"c-1","symbol":"EURUSD","side":"buy","qty":"0.01","type":"market"}'
    order = msgspec.json.decode(raw, type=NewOrder)
    assert str(order.qty) == "0.01"
    with pytest.raises(msgspec.ValidationError, match="owner"):
        msgspec.json.decode(raw[:-1] + b',"owner":"x"}', type=NewOrder)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(raw.replace(b"c-1", b"bad id with spaces"), type=NewOrder)
    diff = msgspec.json.decode(b'{"U":5,"u":7,"bids":[["1.1","2"]],"asks":[]}', type=DepthDiff)
    assert (diff.first_update_id, diff.last_update_id) == (5, 7)
