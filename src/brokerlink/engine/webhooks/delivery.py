"""Attempting one webhook delivery, and deciding what comes next (ADR 0028).

**Schedule.** A failed attempt that may succeed later (a 5xx, 408, 429, a timeout, a refused
connection) is retried after an exponential backoff with full jitter (attempt ``n`` waits a uniform
time in ``[0, min(cap, base * 2**n)]``), as long as the next attempt falls inside the retry window
(``webhook_retry_window_s``, a day by default, from creation or the last replay). Times come from
the injected clock, so tests step through a day without waiting. Any other answer is final.

**Disabling.** A delivery that fails for the whole window, at an endpoint that has not answered
successfully since that window began, disables the endpoint, saying why; the user re-enables it.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta
from enum import StrEnum

import httpx
import msgspec

from brokerlink.brokers.backoff import Backoff
from brokerlink.engine.webhooks.signing import signed_headers
from brokerlink.engine.webhooks.targets import AllowList, check_target
from brokerlink.kit.errors import InvalidInput
from brokerlink.security.outbound import Resolver, resolve

__all__ = ["Attempt", "Next", "RetryPolicy", "Sender"]

_RETRYABLE = frozenset({408, 425, 429})


class Next(StrEnum):
    """What follows an attempt."""

    DONE = "done"
    RETRY = "retry"
    GIVE_UP = "give_up"
    """A final answer (a 4xx, a refused URL)."""
    EXHAUSTED = "exhausted"
    """Retryable, but the window is over."""


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How long and how often a delivery is tried (settings ``webhook_*``)."""

    window_s: float = 86_400.0
    backoff: Backoff = Backoff(base_s=5.0, cap_s=7_200.0)

    def after(
        self, attempt: int, *, retryable: bool, now: datetime, window_start: datetime, rng: random.Random
    ) -> tuple[Next, datetime | None]:
        """For a failed attempt number ``attempt`` (1-based): what next, and when."""
        if not retryable:
            return Next.GIVE_UP, None
        at = now + timedelta(seconds=self.backoff.delay(attempt - 1, rng))
        if at > window_start + timedelta(seconds=self.window_s):
            return Next.EXHAUSTED, None
        return Next.RETRY, at


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """One HTTP attempt's outcome."""

    status_code: int | None
    error: str | None
    retryable: bool
    duration_ms: int

    @property
    def ok(self) -> bool:
        """Whether the receiver accepted it (2xx)."""
        return self.error is None


class Sender:
    """Sends signed requests: checks the target, posts, classifies the answer. Never follows redirects."""

    def __init__(self, *, allow: AllowList, timeout_s: float, resolver: Resolver = resolve) -> None:
        self.allow = allow
        self.resolver = resolver
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), follow_redirects=False, trust_env=False)

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    async def attempt(self, url: str, secret: str, event_id: str, body: bytes, *, timestamp: int) -> Attempt:
        """POST ``body`` to ``url`` once, signed for ``event_id`` at ``timestamp``."""
        started = time.perf_counter()

        def done(status: int | None, error: str | None, *, retryable: bool) -> Attempt:
            ms = int((time.perf_counter() - started) * 1000)
            return Attempt(status_code=status, error=error, retryable=retryable, duration_ms=ms)

        try:
            await check_target(url, self.allow, resolver=self.resolver)
        except InvalidInput as exc:
            return done(None, f"refused target: {exc.detail}", retryable=False)
        try:
            response = await self._http.post(
                url, content=body, headers=signed_headers(secret, event_id, timestamp, body)
            )
        except httpx.HTTPError as exc:
            return done(None, f"{type(exc).__name__}: {exc}"[:500], retryable=True)
        status = response.status_code
        if 200 <= status < 300:
            return done(status, None, retryable=False)
        return done(status, f"HTTP {status}", retryable=status >= 500 or status in _RETRYABLE)
