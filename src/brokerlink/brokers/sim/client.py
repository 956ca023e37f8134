"""The sim adapter's HTTP side: signed requests, and the venue's answers mapped onto the protocol's error kinds.

The mapping is the one in docs/adr/0006-sim-wire-protocol.md. What matters most is which failures
are *unknown outcomes*: a command (new order, amend, cancel) that was sent and then timed out,
lost its connection, or got a 5xx other than 503 may have taken effect, so it raises
:class:`~brokerlink.brokers.base.OutcomeUnknown` and the caller looks the order up instead of resending.
A read that fails the same way simply raises a transient error: reading twice is harmless.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import Mapping
from typing import TypeVar
from urllib.parse import urlencode

import httpx
import msgspec

from brokerlink.brokers.base import (
    BrokerRateLimited,
    OrderRefused,
    OutcomeUnknown,
    RefusalReason,
    TransientBrokerError,
)
from brokerlink.brokers.sim.wire import (
    API_PREFIX,
    HEADER_API_KEY,
    HEADER_RECV_WINDOW,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    ErrorBody,
    ErrorCode,
    sign,
)

T = TypeVar("T")

_REFUSALS: Mapping[ErrorCode, RefusalReason] = {
    ErrorCode.AUTH_FAILED: RefusalReason.AUTH,
    ErrorCode.BAD_SIGNATURE: RefusalReason.AUTH,
    ErrorCode.TIMESTAMP_OUTSIDE_RECV_WINDOW: RefusalReason.AUTH,
    ErrorCode.INVALID_ORDER: RefusalReason.INVALID_ORDER,
    ErrorCode.UNKNOWN_ORDER: RefusalReason.UNKNOWN_ORDER,
    ErrorCode.DUPLICATE_CLIENT_ORDER_ID: RefusalReason.DUPLICATE_CLIENT_ORDER_ID,
    ErrorCode.INSUFFICIENT_FUNDS: RefusalReason.INSUFFICIENT_FUNDS,
    ErrorCode.MARKET_CLOSED: RefusalReason.MARKET_CLOSED,
}
_MAX_PACING_WAIT_S = 5.0


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every client: building one (loading the CA bundle) costs tens of
    milliseconds of CPU, which httpx would otherwise spend per client, that is per linked account."""
    return httpx.create_ssl_context()


class SimClient:
    """A thin client of the venue's REST API. One per adapter; closes its connection pool on :meth:`close`.

    Pacing: when the venue says no request is left in the current window (``X-RateLimit-Remaining:
    0``), the next request waits until the window resets (at most a few seconds) rather than
    spending a request on a certain 429.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str,
        api_secret: str | None = None,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=timeout_s, transport=transport, verify=_tls_context()
        )
        self._paused_until = 0.0
        self.last_rate_limit: dict[str, str] = {}

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def get(self, path: str, type_: type[T], *, params: Mapping[str, str | int] | None = None) -> T:
        """GET and decode; any failure is definitive or transient (reads are safe to repeat)."""
        return await self._call("GET", path, type_, params=params, command_id=None)

    async def command(
        self, method: str, path: str, type_: type[T], *, body: msgspec.Struct | None = None, client_order_id: str
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
        await self._pace()
        query = f"?{urlencode(params)}" if params else ""
        path_with_query = f"{API_PREFIX}{path}{query}"
        content = msgspec.json.encode(body) if body is not None else b""
        headers = {HEADER_API_KEY: self.api_key, "accept": "application/json"}
        if content:
            headers["content-type"] = "application/json"
        if self.api_secret is not None:
            timestamp = time.time_ns() // 1_000_000
            headers[HEADER_TIMESTAMP] = str(timestamp)
            headers[HEADER_RECV_WINDOW] = "5000"
            headers[HEADER_SIGNATURE] = sign(self.api_secret, timestamp, method, path_with_query, content)
        try:
            response = await self._http.request(method, path_with_query, content=content or None, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # The request never left: nothing happened, whatever kind of request it was.
            raise TransientBrokerError(f"venue unreachable: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            if command_id is not None:
                raise OutcomeUnknown(command_id, f"no answer after sending ({type(exc).__name__})") from exc
            raise TransientBrokerError(f"no answer from the venue ({type(exc).__name__})") from exc
        self._note_rate_limit(response)
        if response.is_success:
            try:
                return msgspec.json.decode(response.content, type=type_)
            except msgspec.DecodeError as exc:
                if command_id is not None:
                    raise OutcomeUnknown(command_id, "unreadable answer to a command") from exc
                raise TransientBrokerError("unreadable answer from the venue") from exc
        raise self._error(response, command_id)

    def _error(self, response: httpx.Response, command_id: str | None) -> Exception:
        code: ErrorCode | None = None
        message = response.reason_phrase
        try:
            error = msgspec.json.decode(response.content, type=ErrorBody)
            code, message = error.code, error.message
        except (msgspec.DecodeError, msgspec.ValidationError):
            pass
        if response.status_code == 429:
            return BrokerRateLimited(message, retry_after_ms=_retry_after_ms(response))
        if code is not None and code in _REFUSALS and response.status_code < 500:
            return OrderRefused(_REFUSALS[code], message)
        if response.status_code == 503:
            return TransientBrokerError(message, retry_after_ms=_retry_after_ms(response))
        if response.status_code >= 500 and command_id is not None:
            return OutcomeUnknown(command_id, f"venue answered {response.status_code} after receiving the command")
        if response.status_code >= 500:
            return TransientBrokerError(f"venue answered {response.status_code}")
        return OrderRefused(RefusalReason.INVALID_ORDER, f"venue answered {response.status_code}: {message}")

    def _note_rate_limit(self, response: httpx.Response) -> None:
        limit_headers = {k: v for k, v in response.headers.items() if k.lower().startswith("x-ratelimit-")}
        if not limit_headers:
            return
        self.last_rate_limit = limit_headers
        if response.headers.get("x-ratelimit-remaining") == "0":
            reset = response.headers.get("x-ratelimit-reset", "1")
            wait = min(float(reset) if reset.isdigit() else 1.0, _MAX_PACING_WAIT_S)
            self._paused_until = time.monotonic() + wait

    async def _pace(self) -> None:
        delay = self._paused_until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


def _retry_after_ms(response: httpx.Response) -> int | None:
    value = response.headers.get("retry-after")
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip()) * 1000
