"""The Alpaca adapter's HTTP side: key headers, the client-side rate limit, and errors mapped onto the
protocol's three kinds.

Every request first takes a slot of the endpoint's shared limiter (:mod:`brokerlink.brokers.limits`):
Alpaca allows 200 requests a minute per API key (HTTP 429 beyond), and the client stays just under
that. Every answer's ``X-Ratelimit-Limit`` / ``-Remaining`` / ``-Reset`` (a Unix time in seconds)
is read: an answer saying nothing is left pauses the key until the reset, and a limit lower than
the one configured replaces it (the venue knows this key's plan better than our defaults).

Which failures are *unknown outcomes*: a command (new order, replace, cancel) that was sent and then
timed out, lost its connection or got a 5xx may have taken effect, so it raises
:class:`~brokerlink.brokers.base.OutcomeUnknown` and the caller looks the order up by its client
order id. A read that fails the same way raises a transient error: reading twice is harmless.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import TypeVar
from urllib.parse import urlencode

import httpx
import msgspec

from brokerlink.brokers.alpaca.wire import HEADER_KEY_ID, HEADER_SECRET_KEY, ErrorBody, ErrorCode
from brokerlink.brokers.base import (
    BrokerRateLimited,
    OrderRefused,
    OutcomeUnknown,
    RefusalReason,
    TransientBrokerError,
)
from brokerlink.brokers.limits import BrokerLimiter, BrokerLimits, RateRule, limiter_for
from brokerlink.logs import get_logger

T = TypeVar("T")
_log = get_logger("brokerlink.brokers.alpaca")

ALPACA_RATE_LIMIT = RateRule(200, 60.0)
"""Alpaca's documented Trading API limit: 200 requests every minute per API key."""
ALPACA_LIMITS = BrokerLimits(per_account=(ALPACA_RATE_LIMIT.under(0.9),))
"""The client's limits: just under Alpaca's, so jitter between our count and theirs costs no 429."""
MAX_PAUSE_S = 60.0
"""Longest wait a rate-limit answer can impose (Alpaca's window is one minute)."""


def retry_after_s(headers: Mapping[str, str], *, now: float | None = None) -> float:
    """Seconds until Alpaca lets this key send again: ``Retry-After`` if given, else until
    ``X-Ratelimit-Reset`` (Unix seconds); at least 1, at most :data:`MAX_PAUSE_S`."""
    now = time.time() if now is None else now
    value = headers.get("retry-after", "").strip()
    if value.isdigit():
        return min(max(1.0, float(value)), MAX_PAUSE_S)
    reset = headers.get("x-ratelimit-reset", "").strip()
    if reset.isdigit():
        return min(max(1.0, int(reset) - now), MAX_PAUSE_S)
    return 1.0


class AlpacaClient:
    """A thin client of one Alpaca endpoint (the Trading API, or the Market Data API) for one API key.

    ``limits`` is looked up in the running loop at first use (:func:`limiter_for`), so every adapter
    of the same endpoint shares one limiter; the bucket is the key's (a digest, not the key).
    """

    def __init__(
        self,
        base_url: str,
        *,
        key_id: str,
        secret_key: str,
        limits: BrokerLimits,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.key_id = key_id
        self.secret_key = secret_key
        self._limits = limits
        self._limiter: BrokerLimiter | None = None
        self._bucket = hashlib.sha256(key_id.encode()).hexdigest()[:16]
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout_s,
            transport=transport,
            headers={HEADER_KEY_ID: key_id, HEADER_SECRET_KEY: secret_key, "accept": "application/json"},
        )
        self.last_rate_limit: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"AlpacaClient({self.base_url!r})"

    @property
    def limiter(self) -> BrokerLimiter:
        """The endpoint's limiter."""
        if self._limiter is None:
            self._limiter = limiter_for("alpaca", self.base_url, self._limits)
        return self._limiter

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def get(self, path: str, type_: type[T], *, params: Mapping[str, str | int] | None = None) -> T:
        """GET and decode; failures are definitive or transient (reads are safe to repeat)."""
        return await self._call("GET", path, type_, params=params, command_id=None)

    async def command(
        self,
        method: str,
        path: str,
        type_: type[T],
        *,
        body: msgspec.Struct | None = None,
        client_order_id: str,
    ) -> T:
        """A state-changing request about ``client_order_id``; failures after sending are unknown outcomes."""
        return await self._call(method, path, type_, body=body, command_id=client_order_id)

    async def _call(
        self,
        method: str,
        path: str,
        type_: type[T],
        *,
        params: Mapping[str, str | int] | None = None,
        body: msgspec.Struct | None = None,
        command_id: str | None,
    ) -> T:
        target = path + (f"?{urlencode(params)}" if params else "")
        content = msgspec.json.encode(body) if body is not None else None
        headers = {"content-type": "application/json"} if content else None
        limiter = self.limiter
        async with limiter.slot(self._bucket):
            try:
                response = await self._http.request(method, target, content=content, headers=headers)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                raise TransientBrokerError(f"Alpaca unreachable: {type(exc).__name__}") from exc
            except httpx.HTTPError as exc:
                if command_id is not None:
                    raise OutcomeUnknown(command_id, f"no answer after sending ({type(exc).__name__})") from exc
                raise TransientBrokerError(f"no answer from Alpaca ({type(exc).__name__})") from exc
            self._note_rate_limit(response, limiter)
            if response.status_code == 429:
                wait = retry_after_s(response.headers)
                limiter.penalize(wait, self._bucket)  # the key's limit, not every key's
                raise BrokerRateLimited(_message(response), retry_after_ms=math.ceil(wait * 1000))
        if response.is_success:
            if type_ is type(None) or not response.content:
                return None  # type: ignore[return-value]  # 204 No Content (cancel)
            try:
                return msgspec.json.decode(response.content, type=type_)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                if command_id is not None:
                    raise OutcomeUnknown(command_id, "unreadable answer to a command") from exc
                raise TransientBrokerError(f"unreadable answer from Alpaca: {exc}") from exc
        raise error_for(response, command_id)

    def _note_rate_limit(self, response: httpx.Response, limiter: BrokerLimiter) -> None:
        headers = response.headers
        limit, remaining = headers.get("x-ratelimit-limit", ""), headers.get("x-ratelimit-remaining", "")
        if not limit and not remaining:
            return
        self.last_rate_limit = {k: v for k, v in headers.items() if k.lower().startswith("x-ratelimit-")}
        if limit.isdigit() and int(limit) > 0:
            advertised = RateRule(int(limit), ALPACA_RATE_LIMIT.per_s).under(0.9)
            current = [rule.amount for rule in limiter.limits.per_account if rule.per_s == advertised.per_s]
            if current and advertised.amount < min(current):
                limiter.configure(BrokerLimits(per_endpoint=limiter.limits.per_endpoint, per_account=(advertised,)))
        if remaining == "0" and response.status_code != 429:
            limiter.penalize(retry_after_s(headers), self._bucket)


def _message(response: httpx.Response) -> str:
    try:
        return msgspec.json.decode(response.content, type=ErrorBody).message or response.reason_phrase
    except (msgspec.DecodeError, msgspec.ValidationError):
        return response.text[:200] or response.reason_phrase


def _is_duplicate(message: str) -> bool:
    text = message.lower().replace("_", " ")
    return "client order id" in text and "unique" in text


def error_for(response: httpx.Response, command_id: str | None) -> Exception:  # noqa: PLR0911 - one per kind
    """The protocol's error for an Alpaca error answer (429 is handled before, with the limiter)."""
    code: int | None = None
    message = response.reason_phrase
    try:
        error = msgspec.json.decode(response.content, type=ErrorBody)
        code, message = error.code, error.message or message
    except (msgspec.DecodeError, msgspec.ValidationError):
        message = response.text[:200] or message
    status = response.status_code
    if status == 401:
        return OrderRefused(RefusalReason.AUTH, f"Alpaca refused the API key: {message}")
    if status == 403:
        # Alpaca answers 403 both for missing funds or shares (code 40310000) and for keys without access.
        if code == ErrorCode.FORBIDDEN or "insufficient" in message.lower():
            return OrderRefused(RefusalReason.INSUFFICIENT_FUNDS, message)
        return OrderRefused(RefusalReason.AUTH, f"Alpaca denied access: {message}")
    if status == 404:
        return OrderRefused(RefusalReason.UNKNOWN_ORDER, message)
    if status in (400, 422):
        if _is_duplicate(message):
            return OrderRefused(RefusalReason.DUPLICATE_CLIENT_ORDER_ID, message)
        return OrderRefused(RefusalReason.INVALID_ORDER, message)
    if status >= 500 and command_id is not None:
        return OutcomeUnknown(command_id, f"Alpaca answered {status} after receiving the command")
    if status >= 500:
        return TransientBrokerError(f"Alpaca answered {status}: {message}")
    return OrderRefused(RefusalReason.INVALID_ORDER, f"Alpaca answered {status}: {message}")


def plain(value: Decimal) -> Decimal:
    """The same number written without an exponent (``1E+2`` -> ``100``), as Alpaca reads decimals."""
    return Decimal(format(value, "f"))
