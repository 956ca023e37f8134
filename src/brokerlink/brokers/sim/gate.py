"""The venue's front door: API-key (optionally HMAC-signed) authentication and rate limits.

Rate limits are declared as data (:data:`DEFAULT_RATE_LIMITS`) and enforced per API key with the
``limits`` library's moving window, the way real venues publish and enforce theirs; every answer
carries ``X-RateLimit-*`` headers so clients can pace themselves before they are refused. The counts
live in :class:`~brokerlink.kit.ratelimits.InProcessStorage` with the synchronous strategy: a hit
never leaves the event loop's thread (the library's asynchronous memory storage sent a sweep of
every API key to a thread on most hits).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

import msgspec
from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.strategies import MovingWindowRateLimiter

from brokerlink.brokers.sim.wire import (
    DEFAULT_RECV_WINDOW_MS,
    HEADER_API_KEY,
    HEADER_RECV_WINDOW,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    MAX_RECV_WINDOW_MS,
    ErrorCode,
    signature_matches,
)
from brokerlink.kit.ratelimits import InProcessStorage


class WireError(Exception):
    """An error the venue answers with ``{"code", "message"}`` and an HTTP status."""

    def __init__(self, status: int, code: ErrorCode, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """A credential pair and the venue account it trades."""

    key: str
    secret: str
    account_id: str

    def __repr__(self) -> str:
        return f"ApiKey(key={self.key[:4]}..., account_id={self.account_id})"


class RateLimitRule(msgspec.Struct, frozen=True):
    """``limit`` requests per ``per_seconds`` (1 or 60), per API key."""

    limit: int
    per_seconds: int

    def item(self) -> RateLimitItem:
        """The ``limits`` library's form of this rule."""
        if self.per_seconds == 1:
            return RateLimitItemPerSecond(self.limit)
        if self.per_seconds == 60:
            return RateLimitItemPerMinute(self.limit)
        raise ValueError("rate limit windows are 1 or 60 seconds")


DEFAULT_RATE_LIMITS: tuple[RateLimitRule, ...] = (RateLimitRule(20, 1), RateLimitRule(600, 60))


class RateDecision(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one request against the limits, with the headers that describe it."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    retry_after_s: int | None

    def headers(self) -> dict[str, str]:
        """``X-RateLimit-*`` (and ``Retry-After`` when refused)."""
        out = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_s),
        }
        if self.retry_after_s is not None:
            out["Retry-After"] = str(self.retry_after_s)
        return out


class Gate:
    """Authenticates requests and applies the rate limits.

    ``skew_ms`` shifts the venue's clock for the receive-window check: the fault injector uses it
    to make a client's signed requests arrive "from the future" or "from the past".
    """

    def __init__(
        self,
        keys: Mapping[str, ApiKey],
        *,
        signed: bool = False,
        rate_limits: tuple[RateLimitRule, ...] = DEFAULT_RATE_LIMITS,
        now_ms: Callable[[], int] | None = None,
        skew_ms: Callable[[], int] = lambda: 0,
    ) -> None:
        self.keys = dict(keys)
        self.signed = signed
        self.rate_limits = rate_limits
        self._items = [rule.item() for rule in rate_limits]
        self._limiter = MovingWindowRateLimiter(InProcessStorage())
        self._now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)
        self._skew_ms = skew_ms

    def authenticate(self, headers: Mapping[str, str], method: str, path_with_query: str, body: bytes) -> ApiKey:
        """The API key behind a request, or :class:`WireError` 401 saying what was wrong."""
        key = self.keys.get(headers.get(HEADER_API_KEY, ""))
        if key is None:
            raise WireError(401, ErrorCode.AUTH_FAILED, "unknown or missing API key")
        if not self.signed:
            return key
        try:
            timestamp = int(headers.get(HEADER_TIMESTAMP, ""))
            window = int(headers.get(HEADER_RECV_WINDOW, str(DEFAULT_RECV_WINDOW_MS)))
        except ValueError:
            raise WireError(401, ErrorCode.BAD_SIGNATURE, "timestamp and receive window must be integers") from None
        if not 0 < window <= MAX_RECV_WINDOW_MS:
            raise WireError(401, ErrorCode.BAD_SIGNATURE, f"receive window must be 1-{MAX_RECV_WINDOW_MS} ms")
        if abs(self._now_ms() + self._skew_ms() - timestamp) > window:
            raise WireError(401, ErrorCode.TIMESTAMP_OUTSIDE_RECV_WINDOW, "timestamp outside the receive window")
        signature = headers.get(HEADER_SIGNATURE, "")
        ok = signature_matches(
            key.secret, signature, timestamp_ms=timestamp, method=method, path_with_query=path_with_query, body=body
        )
        if not ok:
            raise WireError(401, ErrorCode.BAD_SIGNATURE, "signature does not match")
        return key

    def admit(self, api_key: str) -> RateDecision:
        """Count one request for ``api_key`` against every rule; the tightest rule describes the answer."""
        tightest: RateDecision | None = None
        for rule, item in zip(self.rate_limits, self._items, strict=True):
            allowed = self._limiter.hit(item, api_key)
            stats = self._limiter.get_window_stats(item, api_key)
            reset_s = max(0, math.ceil(stats.reset_time - time.time()))
            decision = RateDecision(
                allowed=allowed,
                limit=rule.limit,
                remaining=max(0, stats.remaining),
                reset_s=reset_s,
                retry_after_s=None if allowed else max(1, reset_s),
            )
            if not allowed:
                return decision
            if tightest is None or decision.remaining < tightest.remaining:
                tightest = decision
        if tightest is None:  # no rules configured: unlimited
            return RateDecision(allowed=True, limit=0, remaining=0, reset_s=0, retry_after_s=None)
        return tightest
