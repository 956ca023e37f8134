"""OANDA v20's HTTP side: the bearer token, the shared rate limiter, and answers mapped onto the
protocol's three error kinds.

* 401 / 403 (``{"errorMessage": "Insufficient authorization to perform request."}``): the token is
  wrong or revoked -> :class:`OrderRefused` ``auth`` (the links service marks the link revoked).
* 429: over the limit -> :class:`BrokerRateLimited`. OANDA documents no ``Retry-After``; one is
  read when present, otherwise the pause is one second, the window of the 120 requests/s limit.
* 400 / 404 with an ``errorCode`` or a reject transaction's ``rejectReason``: a definitive refusal,
  its reason mapped (:data:`REFUSALS`); an unknown order (404) is ``unknown_order``.
* A command (new order, replace, cancel, position close) that was sent and then timed out, lost its
  connection or got a 5xx other than 503 may have taken effect -> :class:`OutcomeUnknown`; a read
  failing the same way is merely transient.

Every request, the streams' connections included, first takes a slot of the endpoint's limiter
(:func:`~brokerlink.brokers.limits.limiter_for`): OANDA counts requests per client IP, so the rule
is per endpoint, shared by every account of the process (docs/adr/0012).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import TypeVar

import httpx
import msgspec

from brokerlink.brokers.base import (
    BrokerRateLimited,
    OrderRefused,
    OutcomeUnknown,
    RefusalReason,
    TransientBrokerError,
)
from brokerlink.brokers.limits import BrokerLimiter, BrokerLimits, RateRule, limiter_for
from brokerlink.brokers.oanda.wire import API_PREFIX, HEADER_DATETIME_FORMAT, ErrorBody

T = TypeVar("T")
KIND = "oanda"

OANDA_LIMITS = BrokerLimits(per_endpoint=(RateRule(120, 1.0).under(0.9),))
"""Just under OANDA's documented 120 requests per second per client IP (a 429 beyond it)."""

DEFAULT_RETRY_AFTER_MS = 1_000

REFUSALS: Mapping[str, RefusalReason] = {
    "CLIENT_ORDER_ID_ALREADY_EXISTS": RefusalReason.DUPLICATE_CLIENT_ORDER_ID,
    "CLIENT_TRADE_ID_ALREADY_EXISTS": RefusalReason.DUPLICATE_CLIENT_ORDER_ID,
    "INSUFFICIENT_MARGIN": RefusalReason.INSUFFICIENT_FUNDS,
    "INSUFFICIENT_FUNDS": RefusalReason.INSUFFICIENT_FUNDS,
    "MARKET_HALTED": RefusalReason.MARKET_CLOSED,
    "INSTRUMENT_NOT_TRADEABLE": RefusalReason.MARKET_CLOSED,
    "ORDER_DOESNT_EXIST": RefusalReason.UNKNOWN_ORDER,
    "NO_SUCH_ORDER": RefusalReason.UNKNOWN_ORDER,
    "ORDER_IDENTIFIER_INCONSISTENCY": RefusalReason.UNKNOWN_ORDER,
    "CLOSEOUT_POSITION_DOESNT_EXIST": RefusalReason.INVALID_ORDER,
}
"""``errorCode`` / ``rejectReason`` values with a refusal reason of their own; any other is ``invalid_order``."""


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every client (building one costs tens of milliseconds)."""
    return httpx.create_ssl_context()


class OandaClient:
    """A client of one account's REST and streaming endpoints. One per adapter; :meth:`close` it."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str,
        stream_url: str | None = None,
        limits: BrokerLimits = OANDA_LIMITS,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        headers = {
            "Authorization": f"Bearer {token}",
            HEADER_DATETIME_FORMAT: "RFC3339",
            "Accept": "application/json",
        }
        self._http = httpx.AsyncClient(
            base_url=self._base_url, timeout=timeout_s, transport=transport, headers=headers, verify=_tls_context()
        )
        # Streams stay open for hours: no read timeout (heartbeats are watched by the adapter instead).
        self._stream = httpx.AsyncClient(
            base_url=(stream_url or base_url).rstrip("/"),
            timeout=httpx.Timeout(timeout_s, read=None),
            transport=transport,
            headers=headers,
            verify=_tls_context(),
        )
        self._limits = limits
        # A digest names the token's bucket without keeping the token in it.
        self._limit_key = hashlib.sha256(token.encode()).hexdigest()[:16]
        self._limiter: BrokerLimiter | None = None

    @property
    def limiter(self) -> BrokerLimiter:
        """The endpoint's limiter (looked up in the running loop at first use)."""
        if self._limiter is None:
            self._limiter = limiter_for(KIND, self._base_url, self._limits)
        return self._limiter

    async def close(self) -> None:
        """Close both connection pools."""
        await self._http.aclose()
        await self._stream.aclose()

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        limiter = self.limiter
        async with limiter.slot(self._limit_key):
            try:
                yield
            except BrokerRateLimited as exc:
                limiter.penalize((exc.retry_after_ms or DEFAULT_RETRY_AFTER_MS) / 1000)
                raise

    async def get(self, path: str, type_: type[T], *, params: Mapping[str, str] | None = None) -> T:
        """GET and decode; a failure is definitive or transient (reads are safe to repeat)."""
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
        params: Mapping[str, str] | None = None,
        body: msgspec.Struct | None = None,
        command_id: str | None,
    ) -> T:
        content = msgspec.json.encode(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        async with self._slot():
            try:
                response = await self._http.request(
                    method, API_PREFIX + path, params=params, content=content, headers=headers
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # The request never left: nothing happened, whatever kind of request it was.
                raise TransientBrokerError(f"OANDA unreachable: {type(exc).__name__}") from exc
            except httpx.HTTPError as exc:
                if command_id is not None:
                    raise OutcomeUnknown(command_id, f"no answer after sending ({type(exc).__name__})") from exc
                raise TransientBrokerError(f"no answer from OANDA ({type(exc).__name__})") from exc
            if response.is_success:
                try:
                    return msgspec.json.decode(response.content, type=type_)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    if command_id is not None:
                        raise OutcomeUnknown(command_id, "unreadable answer to a command") from exc
                    raise TransientBrokerError(f"unreadable answer from OANDA: {exc}") from exc
            raise error_for(response.status_code, response.content, response.headers, command_id)

    @contextlib.asynccontextmanager
    async def stream(self, path: str, *, params: Mapping[str, str] | None = None) -> AsyncIterator[httpx.Response]:
        """Open a streaming endpoint (chunked NDJSON); the response's lines are read by the caller."""
        async with self._slot():
            request = self._stream.build_request("GET", API_PREFIX + path, params=params)
            try:
                response = await self._stream.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise TransientBrokerError(f"OANDA stream unreachable: {type(exc).__name__}") from exc
            if not response.is_success:
                content = await response.aread()
                await response.aclose()
                raise error_for(response.status_code, content, response.headers, None)
        try:
            yield response
        finally:
            await response.aclose()


def error_for(  # noqa: PLR0911 - one error per kind of answer
    status: int, content: bytes, headers: Mapping[str, str], command_id: str | None
) -> Exception:
    """The protocol error for an OANDA error answer (see the module docstring)."""
    try:
        body = msgspec.json.decode(content, type=ErrorBody)
    except (msgspec.DecodeError, msgspec.ValidationError):
        body = ErrorBody(error_message=content[:200].decode(errors="replace"))
    message = body.error_message or f"OANDA answered {status}"
    if status == 429:
        return BrokerRateLimited(message, retry_after_ms=_retry_after_ms(headers))
    if status in (401, 403):
        return OrderRefused(RefusalReason.AUTH, message)
    if status == 503:
        return TransientBrokerError(message, retry_after_ms=_retry_after_ms(headers))
    if status >= 500:
        if command_id is not None:
            return OutcomeUnknown(command_id, f"OANDA answered {status} after receiving the command")
        return TransientBrokerError(f"OANDA answered {status}: {message}")
    reject = body.order_reject_transaction or body.order_cancel_reject_transaction
    code = body.error_code or (reject.reject_reason if reject is not None else None)
    if code is not None and code in REFUSALS:
        return OrderRefused(REFUSALS[code], f"{code}: {message}")
    if status == 404:
        return OrderRefused(RefusalReason.UNKNOWN_ORDER, f"{code or 'not found'}: {message}")
    if status == 405:
        return OrderRefused(RefusalReason.NOT_SUPPORTED, message)
    return OrderRefused(RefusalReason.INVALID_ORDER, f"{code}: {message}" if code else message)


def _retry_after_ms(headers: Mapping[str, str]) -> int:
    value = (headers.get("retry-after") or "").strip()
    if value.isdigit():
        return max(1, int(value)) * 1000
    return DEFAULT_RETRY_AFTER_MS
