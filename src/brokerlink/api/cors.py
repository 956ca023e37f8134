"""CORS: strict on the API (``/v1``), absent everywhere else (SECURITY 11, ADR 0026).

Browsers let a page on another origin read an API response only when the response names that
origin. Here only the origins an operator lists (``cors_allowed_origins``, exact ``scheme://host[:port]``,
none by default) are named, never ``*``, and only they are told credentials are allowed. A request
from any other origin gets no CORS header at all, so the browser keeps the response from the page;
a preflight from it is not answered as one (it reaches the app like any other request, which
authenticates it or refuses it).

Nothing outside ``/v1/`` ever gets a CORS header: the pages, the authorization server's browser
endpoint ``/authorize`` and its back-channel endpoints ``/oauth/*`` (token, PAR, introspection,
revocation). A third-party app talks to those from its server, or by redirecting the user's browser,
never by a script reading their responses, and a CORS header there would only help a malicious page.

Raw ASGI, wrapping the whole handler like the hardening middleware: a preflight must be answered for
any ``/v1`` path before routing and authentication (a preflight carries no credentials), and a
response of any status (401, 404, 429) must carry the headers for the calling page to read it.
"""

from __future__ import annotations

from collections.abc import Iterable

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

API_PREFIX = "/v1/"
ALLOWED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
ALLOWED_HEADERS = (
    "authorization",
    "content-type",
    "dpop",
    "idempotency-key",
    "if-match",
    "if-none-match",
    "x-csrf-token",
    "x-request-id",
)
EXPOSED_HEADERS = (
    "dpop-nonce",
    "etag",
    "idempotent-replayed",
    "location",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "retry-after",
    "www-authenticate",
    "x-request-id",
)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


def _with_vary(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Add ``Origin`` to ``Vary``, so a cache never serves one origin's answer to another."""
    for i, (name, value) in enumerate(headers):
        if name.lower() == b"vary":
            if b"origin" not in value.lower():
                headers[i] = (name, value + b", Origin")
            return headers
    headers.append((b"vary", b"Origin"))
    return headers


class CorsMiddleware:
    """CORS headers on ``/v1/`` responses for the allowed origins only; preflights answered for them."""

    def __init__(self, app: ASGIApp, *, allowed_origins: Iterable[str], max_age_seconds: int) -> None:
        self.app = app
        self.origins = frozenset(origin.lower().encode("latin-1") for origin in allowed_origins)
        self.max_age = str(max_age_seconds).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or not self.origins or not scope.get("path", "").startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        origin = _header(scope, b"origin")
        if origin is None or origin.lower() not in self.origins:
            # Not a cross-origin call we allow: no CORS header; the response still varies by Origin.
            await self.app(scope, receive, self._vary(send))
            return
        if scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method") is not None:
            await self._preflight(origin, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if not h[0].lower().startswith(b"access-control-")]
                headers += [
                    (b"access-control-allow-origin", origin),
                    (b"access-control-allow-credentials", b"true"),
                    (b"access-control-expose-headers", ", ".join(EXPOSED_HEADERS).encode()),
                ]
                message = {**message, "headers": _with_vary(headers)}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _vary(self, send: Send) -> Send:
        async def send_with_vary(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": _with_vary(list(message.get("headers", [])))}
            await send(message)

        return send_with_vary

    async def _preflight(self, origin: bytes, send: Send) -> None:
        """Answer a preflight from an allowed origin with what the API accepts; the browser compares."""
        headers = _with_vary(
            [
                (b"access-control-allow-origin", origin),
                (b"access-control-allow-credentials", b"true"),
                (b"access-control-allow-methods", ", ".join(ALLOWED_METHODS).encode()),
                (b"access-control-allow-headers", ", ".join(ALLOWED_HEADERS).encode()),
                (b"access-control-max-age", self.max_age),
                (b"content-length", b"0"),
            ]
        )
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
