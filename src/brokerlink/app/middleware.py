"""Pure ASGI middleware: request ids with the access log, and security headers.

Written against raw ASGI rather than Litestar's middleware classes because they sit on every
request's hot path and touch only headers.
"""

from __future__ import annotations

import re
import secrets
import time

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from brokerlink.api.problems import API_PATH_PREFIXES
from brokerlink.logs import get_logger

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_access_log = get_logger("brokerlink.access")

_COMMON_HEADERS: list[tuple[bytes, bytes]] = [
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]
# Pages get a strict CSP. The API docs page loads its renderer from a CDN, so it gets a looser one.
_PAGE_CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
_DOCS_CSP = (
    b"default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    b"font-src https://fonts.gstatic.com; img-src 'self' data: https://cdn.jsdelivr.net; "
    b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
_API_CSP = b"default-src 'none'; frame-ancestors 'none'"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class RequestContextMiddleware:
    """Give every request an id (the client's ``X-Request-ID`` if sane), echo it, and write one access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Only HTTP and WebSocket scopes get here: Litestar handles lifespan before its ASGI handler.
        given = _header(scope, b"x-request-id")
        request_id = given if given and _REQUEST_ID_RE.match(given) else "req_" + secrets.token_hex(12)
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter_ns()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if scope["type"] == ScopeType.HTTP:
                _access_log.info(
                    "request",
                    method=scope.get("method"),
                    path=scope.get("path"),
                    status=status,
                    duration_us=(time.perf_counter_ns() - started) // 1000,
                    user_id=scope.get("state", {}).get("user_id"),
                )
            structlog.contextvars.clear_contextvars()


class SecurityHeadersMiddleware:
    """Set HSTS, no-sniff, frame denial, a referrer policy and a CSP on every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        is_api = path.startswith(API_PATH_PREFIXES)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] != b"content-security-policy"]
                headers.extend(_COMMON_HEADERS)
                if path.startswith("/docs"):
                    headers.append((b"content-security-policy", _DOCS_CSP))
                elif is_api:
                    headers.append((b"content-security-policy", _API_CSP))
                else:
                    headers.append((b"content-security-policy", _PAGE_CSP))
                if is_api and not any(h[0] == b"cache-control" for h in headers):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_wrapper)
