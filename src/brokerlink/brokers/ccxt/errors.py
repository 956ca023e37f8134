"""ccxt's error hierarchy onto the protocol's three kinds of failure (:mod:`brokerlink.brokers.base`).

========================================================  =====================================================
ccxt                                                       brokerlink
========================================================  =====================================================
``AuthenticationError`` (``PermissionDenied``,             ``OrderRefused(AUTH)``: the links service marks the
``AccountSuspended``), ``InvalidNonce`` (timestamp         link revoked on it
outside the receive window: the signed request was
refused)
``InsufficientFunds``                                      ``OrderRefused(INSUFFICIENT_FUNDS)``
``DuplicateOrderId``                                       ``OrderRefused(DUPLICATE_CLIENT_ORDER_ID)``
``OrderNotFound``                                          ``OrderRefused(UNKNOWN_ORDER)`` (lookups turn it into
                                                           ``None`` first)
``MarketClosed``                                           ``OrderRefused(MARKET_CLOSED)``
``NotSupported``                                           ``OrderRefused(NOT_SUPPORTED)``
``InvalidOrder``, ``BadSymbol``, ``BadRequest``,           ``OrderRefused(INVALID_ORDER)``
``ArgumentsRequired``, any other ``ExchangeError``
``DDoSProtection``, ``RateLimitExceeded`` (HTTP 429/418)   ``BrokerRateLimited`` with the ``Retry-After``
``NetworkError`` (``RequestTimeout``,                      a command that may have reached the exchange:
``ExchangeNotAvailable``, a 5xx answer), ``BadResponse``,  ``OutcomeUnknown``; a read, or a command that never
``OperationFailed``                                        left (no connection): ``TransientBrokerError``
========================================================  =====================================================
"""

from __future__ import annotations

import socket

import aiohttp
from ccxt.base import errors as ccxt_errors  # type: ignore[import-untyped]

from brokerlink.brokers.base import (
    BrokerError,
    BrokerRateLimited,
    OrderRefused,
    OutcomeUnknown,
    RefusalReason,
    TransientBrokerError,
)
from brokerlink.brokers.ccxt.exchange import RateLimitedAnswer

_REFUSALS: tuple[tuple[type[BaseException], RefusalReason], ...] = (
    (ccxt_errors.AuthenticationError, RefusalReason.AUTH),
    (ccxt_errors.InsufficientFunds, RefusalReason.INSUFFICIENT_FUNDS),
    (ccxt_errors.DuplicateOrderId, RefusalReason.DUPLICATE_CLIENT_ORDER_ID),
    (ccxt_errors.OrderNotFound, RefusalReason.UNKNOWN_ORDER),
    (ccxt_errors.MarketClosed, RefusalReason.MARKET_CLOSED),
    (ccxt_errors.NotSupported, RefusalReason.NOT_SUPPORTED),
    (ccxt_errors.InvalidOrder, RefusalReason.INVALID_ORDER),
    (ccxt_errors.BadRequest, RefusalReason.INVALID_ORDER),
    (ccxt_errors.ArgumentsRequired, RefusalReason.INVALID_ORDER),
)


def never_sent(exc: BaseException) -> bool:
    """Whether the request failed before any byte reached the exchange (no connection, no DNS answer)."""
    cause = exc.__cause__
    return isinstance(cause, aiohttp.ClientConnectorError | socket.gaierror)


def translate(exc: BaseException, *, client_order_id: str | None = None) -> BrokerError:  # noqa: PLR0911 - one per kind
    """The protocol's error for a ccxt failure. ``client_order_id``: the request was a command for that
    order, so a failure after sending is an unknown outcome, not a transient one."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, BrokerError):
        return exc
    if isinstance(exc, RateLimitedAnswer):
        retry_ms = None if exc.retry_after_s is None else max(1, round(exc.retry_after_s * 1000))
        return BrokerRateLimited(detail, retry_after_ms=retry_ms)
    if isinstance(exc, ccxt_errors.DDoSProtection | ccxt_errors.RateLimitExceeded):
        return BrokerRateLimited(detail)
    if isinstance(exc, ccxt_errors.InvalidNonce):
        return OrderRefused(RefusalReason.AUTH, detail)
    if isinstance(exc, ccxt_errors.OnMaintenance):
        return TransientBrokerError(detail)
    if isinstance(exc, ccxt_errors.OperationFailed):  # network errors, 5xx, unreadable answers
        if client_order_id is not None and not never_sent(exc):
            return OutcomeUnknown(client_order_id, detail)
        return TransientBrokerError(detail)
    for kind, reason in _REFUSALS:
        if isinstance(exc, kind):
            return OrderRefused(reason, detail)
    if isinstance(exc, ccxt_errors.ExchangeError):
        return OrderRefused(RefusalReason.INVALID_ORDER, detail)
    if isinstance(exc, TimeoutError | aiohttp.ClientError | OSError):
        if client_order_id is not None and not isinstance(exc, aiohttp.ClientConnectorError):
            return OutcomeUnknown(client_order_id, detail)
        return TransientBrokerError(detail)
    raise exc
