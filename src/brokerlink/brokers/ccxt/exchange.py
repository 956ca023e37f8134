"""The one module that touches ccxt's untyped objects: building an exchange, and hooks into it.

ccxt has no type information, so everything it returns is ``Any`` here and becomes typed data in
:mod:`brokerlink.brokers.ccxt.mapping` and :mod:`brokerlink.brokers.ccxt.markets`. Three hooks go into
the exchange class (a subclass made per exchange id):

* ``handle_errors`` sees every HTTP answer first, with its status and headers: a 429/418 becomes
  :class:`RateLimitedAnswer` carrying ``Retry-After``, a 5xx :class:`ServerErrorAnswer` (the request
  reached the exchange: its outcome is unknown), and the rate-limit headers of every answer are
  passed to ``on_headers`` (Binance's ``X-MBX-USED-WEIGHT-1M``).
* ``handle_message`` runs after ccxt has parsed a WebSocket message into its caches
  (``exchange.orders``, ``exchange.myTrades``) and sets ``on_message``: the adapter reads the caches
  then, so an update is never left waiting for the next one.
* ``base_url`` re-hosts every URL of ``urls['api']`` (REST and WebSocket) on one origin, keeping the
  paths: how ccxt's Binance class is pointed at the test venue (``http://127.0.0.1:PORT``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import ccxt.async_support as ccxt_async  # type: ignore[import-untyped]
import ccxt.pro as ccxt_pro  # type: ignore[import-untyped]
from ccxt.base.errors import DDoSProtection, ExchangeNotAvailable  # type: ignore[import-untyped]

Exchange = Any
"""A ccxt exchange instance (untyped)."""


class RateLimitedAnswer(DDoSProtection):  # type: ignore[misc]
    """HTTP 429 or 418: the exchange's rate limit; ``retry_after_s`` from its ``Retry-After`` header."""

    def __init__(self, message: str, retry_after_s: float | None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ServerErrorAnswer(ExchangeNotAvailable):  # type: ignore[misc]
    """HTTP 5xx: the request reached the exchange, which failed; whether it took effect is unknown."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


EXCHANGE_OPTIONS: Mapping[str, Mapping[str, object]] = {
    "binance": {
        # Spot only, and nothing that needs the sapi/margin endpoints to load markets.
        "fetchMarkets": {"types": ["spot"]},
        "fetchCurrencies": False,
        "fetchMargins": False,
        "fetchOpenOrders": {"warnWithoutSymbol": False},
        "defaultType": "spot",
    },
}
"""Options set per exchange id before anything is loaded."""


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except ValueError:
                return None
    return None


def exchange_class(exchange_id: str, *, pro: bool) -> type:
    """The ccxt class of ``exchange_id`` (ccxt.pro's when ``pro``), with brokerlink's hooks."""
    module = ccxt_pro if pro else ccxt_async
    base: Any = getattr(module, exchange_id, None)
    if base is None or not isinstance(base, type):
        raise ValueError(f"ccxt does not know the exchange {exchange_id!r}")
    parent: Any = base  # untyped ccxt class

    def handle_errors(  # noqa: PLR0917 - ccxt's signature
        self: Any,
        code: int,
        reason: str,
        url: str,
        method: str,
        headers: Mapping[str, str] | None,
        body: str | None,
        response: object,
        request_headers: object,
        request_body: object,
    ) -> object:
        hook: Callable[[Mapping[str, str]], None] | None = getattr(self, "brokerlink_on_headers", None)
        if headers and hook is not None:
            hook(headers)
        # A WebSocket error passes the exchange's own error code here (negative on Binance), never an HTTP status.
        if code in (418, 429):
            raise RateLimitedAnswer(f"{self.id} {code} {reason} {body}", _retry_after(headers or {}))
        if isinstance(code, int) and 500 <= code < 600:
            raise ServerErrorAnswer(f"{self.id} {code} {reason} {body}", code)
        return parent.handle_errors(
            self, code, reason, url, method, headers, body, response, request_headers, request_body
        )

    def handle_message(self: Any, client: Any, message: Any) -> object:
        result = parent.handle_message(self, client, message)
        hook: Callable[[], None] | None = getattr(self, "brokerlink_on_message", None)
        if hook is not None:
            hook()
        return result

    attrs: dict[str, object] = {"handle_errors": handle_errors}
    if pro:
        attrs["handle_message"] = handle_message
    return type(f"Brokerlink_{exchange_id}", (base,), attrs)


def rehost(urls: object, base_url: str) -> object:
    """Every URL string in ``urls`` (nested dicts) moved to ``base_url``'s origin, path kept (``wss`` -> ``ws``
    for an ``http`` origin)."""
    target = urlsplit(base_url)
    secure = target.scheme == "https"
    if isinstance(urls, dict):
        return {key: rehost(value, base_url) for key, value in urls.items()}
    if isinstance(urls, str) and "://" in urls:
        parts = urlsplit(urls)
        websocket = parts.scheme in {"ws", "wss"}
        scheme = ("wss" if secure else "ws") if websocket else target.scheme
        return urlunsplit((scheme, target.netloc, parts.path, parts.query, parts.fragment))
    return urls


def create_exchange(
    exchange_id: str,
    *,
    api_key: str,
    secret: str,
    password: str | None = None,
    base_url: str | None = None,
    pro: bool = True,
    options: Mapping[str, object] | None = None,
    timeout_ms: int = 10_000,
) -> Exchange:
    """A configured exchange instance. ``base_url`` (empty: ccxt's own URLs) re-hosts the API (see module doc).

    ccxt's own throttle is off: brokerlink's shared limiter paces requests per endpoint
    (:mod:`brokerlink.brokers.limits`), and two throttles would only add their delays.
    """
    cls = exchange_class(exchange_id, pro=pro)
    config: dict[str, object] = {
        "apiKey": api_key,
        "secret": secret,
        "enableRateLimit": False,
        "timeout": timeout_ms,
        "options": {**EXCHANGE_OPTIONS.get(exchange_id, {}), **(options or {})},
    }
    if password:
        config["password"] = password
    exchange = cls(config)
    if base_url:
        exchange.urls["api"] = rehost(exchange.urls["api"], base_url)
    return exchange


def has(exchange: Exchange, feature: str) -> bool:
    """Whether ccxt says the exchange supports ``feature`` (``has`` values: True, False, None, ``"emulated"``)."""
    return bool(exchange.has.get(feature))
