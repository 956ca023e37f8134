"""The test venue's front door, as Binance spot documents it: request weight, API keys, signatures.

* **Request weight** is counted per client IP in fixed one-minute windows; every answer carries
  ``X-MBX-USED-WEIGHT-1M``, and a request over :data:`~brokerlink.brokers.ccxt.venue.spot.
  REQUEST_WEIGHT_PER_MINUTE` is answered 429 ``-1003`` with ``Retry-After`` (seconds to the next window).
* **SIGNED endpoints** (TRADE, USER_DATA) need ``X-MBX-APIKEY``, a ``timestamp`` inside the receive window
  (``timestamp < serverTime + 1000`` and ``serverTime - timestamp <= recvWindow``, default 5000, at most
  60000: ``-1021`` otherwise) and ``signature``: the hex HMAC-SHA256 of ``totalParams`` (the query string
  concatenated with the body, without the signature) under the secret (``-1022`` when it does not match).
  An unknown key is ``-2015``, a malformed one ``-2014``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from brokerlink.brokers.ccxt.venue.spot import REQUEST_WEIGHT_PER_MINUTE, BinanceError
from brokerlink.brokers.ccxt.venue.wire import DEFAULT_RECV_WINDOW_MS, MAX_RECV_WINDOW_MS

_KEY_FORMAT = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


@dataclass(frozen=True, slots=True)
class Key:
    """An API key, its secret and the account it trades."""

    key: str
    secret: str
    account_id: str

    def __repr__(self) -> str:
        return f"Key(key={self.key[:4]}..., account_id={self.account_id})"


def split_signature(raw: str) -> tuple[str, str | None]:
    """``raw`` (``a=1&b=2&signature=...``) without its ``signature`` pair, and the signature."""
    kept: list[str] = []
    signature: str | None = None
    for pair in raw.split("&") if raw else []:
        name, _, value = pair.partition("=")
        if name == "signature":
            signature = value
        else:
            kept.append(pair)
    return "&".join(kept), signature


def hmac_hex(secret: str, payload: str) -> str:
    """Lowercase hex HMAC-SHA256 of ``payload`` under ``secret``."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


class Gate:
    """Authenticates and counts requests; ``now_ms`` is the venue clock, ``skew_ms`` the clock-skew fault."""

    def __init__(
        self,
        keys: Mapping[str, Key],
        *,
        now_ms: Callable[[], int],
        skew_ms: Callable[[], int] = lambda: 0,
        weight_limit: int = REQUEST_WEIGHT_PER_MINUTE,
    ) -> None:
        self.keys = dict(keys)
        self._now_ms = now_ms
        self._skew_ms = skew_ms
        self.weight_limit = weight_limit
        self._windows: dict[str, tuple[int, int]] = {}  # ip -> (minute, weight used)

    def spend(self, ip: str, weight: int) -> tuple[int, int | None]:
        """Count ``weight`` for ``ip``: the weight used this minute, and ``Retry-After`` seconds when over."""
        now = self._now_ms()
        minute = now // 60_000
        start, used = self._windows.get(ip, (minute, 0))
        if start != minute:
            used = 0
        used += weight
        self._windows[ip] = (minute, used)
        if used > self.weight_limit:
            return used, max(1, -(-((minute + 1) * 60_000 - now) // 1000))
        return used, None

    def api_key(self, headers: Mapping[str, str]) -> Key:
        """The key of an ``X-MBX-APIKEY`` header (USER_STREAM and SIGNED endpoints)."""
        presented = headers.get("x-mbx-apikey", "")
        if not presented:
            raise BinanceError(401, -2014, "API-key format invalid.")
        if not _KEY_FORMAT.match(presented):
            raise BinanceError(401, -2014, "API-key format invalid.")
        key = self.keys.get(presented)
        if key is None:
            raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        return key

    def signed(self, headers: Mapping[str, str], query: str, body: str) -> tuple[Key, dict[str, str]]:
        """Check a SIGNED request; its key and its parameters (the query string wins over the body)."""
        key = self.api_key(headers)
        query_rest, query_sig = split_signature(query)
        body_rest, body_sig = split_signature(body)
        params = dict(parse_qsl(body_rest, keep_blank_values=True))
        params.update(parse_qsl(query_rest, keep_blank_values=True))
        self.check_window(params)
        signature = query_sig or body_sig
        if not signature:
            raise BinanceError(
                400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed."
            )
        expected = hmac_hex(key.secret, query_rest + body_rest)
        if not hmac.compare_digest(expected, signature.lower()):
            raise BinanceError(400, -1022, "Signature for this request is not valid.")
        return key, params

    def check_window(self, params: Mapping[str, str | int | bool]) -> None:
        """``timestamp`` and ``recvWindow`` against the venue clock (shifted by the skew fault)."""
        try:
            timestamp = int(params["timestamp"])
        except KeyError:
            raise BinanceError(
                400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
            ) from None
        except ValueError:
            raise BinanceError(400, -1100, "Illegal characters found in parameter 'timestamp'.") from None
        try:
            window = int(params.get("recvWindow", DEFAULT_RECV_WINDOW_MS))
        except ValueError:
            raise BinanceError(400, -1100, "Illegal characters found in parameter 'recvWindow'.") from None
        if not 0 < window <= MAX_RECV_WINDOW_MS:
            raise BinanceError(400, -1131, "recvWindow must be less than 60000")
        server = self._now_ms() + self._skew_ms()
        if timestamp >= server + 1000:
            raise BinanceError(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if server - timestamp > window:
            raise BinanceError(400, -1021, "Timestamp for this request is outside of the recvWindow.")

    def ws_signed(self, params: Mapping[str, str | int | bool]) -> Key:
        """A WebSocket API request signed over its parameters sorted by name (``apiKey``... without ``signature``)."""
        api_key = str(params.get("apiKey", ""))
        key = self.api_key({"x-mbx-apikey": api_key})
        self.check_window(params)
        payload = "&".join(
            f"{name}={_ws_value(value)}" for name, value in sorted(params.items()) if name != "signature"
        )
        if not hmac.compare_digest(hmac_hex(key.secret, payload), str(params.get("signature", "")).lower()):
            raise BinanceError(400, -1022, "Signature for this request is not valid.")
        return key


def _ws_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
