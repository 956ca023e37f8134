"""Pure ASGI middleware: request ids, the access log and the request observation (security headers:
``api/hardening.py``).

Written against raw ASGI rather than Litestar's middleware classes because they sit on every
request's hot path and touch only headers. It wraps the whole ASGI handler, so it sees the 404s,
405s and 401s that Litestar's own middleware (which runs only for matched routes) never does.
"""

from __future__ import annotations

import logging
import re
import secrets
import time

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from brokerlink import observe
from brokerlink.logs import get_logger
from brokerlink.security.principal import Principal
from brokerlink.stream.connections import SERVER_SEND

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_access_log = get_logger("brokerlink.access")
_access_level = logging.getLogger("brokerlink.access")
"""Asked before the line is built: structlog drops a line below the level only after binding it (~5 µs)."""
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods counted under their own name; any other is ``OTHER`` (a client can send any token)."""


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
        if scope["type"] == ScopeType.WEBSOCKET:  # /v1/stream writes its frames here, past HTTP-only wrappers
            scope["state"][SERVER_SEND] = send
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
                elapsed_ns = time.perf_counter_ns() - started
                if _access_level.isEnabledFor(logging.INFO):
                    _access_log.info(
                        "request",
                        method=scope.get("method"),
                        path=scope.get("path"),
                        status=status,
                        duration_us=elapsed_ns // 1000,
                        user_id=scope.get("state", {}).get("user_id"),
                    )
                _observe(scope, status, elapsed_ns / 1e9)
            structlog.contextvars.clear_contextvars()


def _observe(scope: Scope, status: int, duration_s: float) -> None:
    """Report the request by route template: Litestar sets ``path_template`` once a route matched,
    so a 404 (no route) is counted under one label rather than under every path anyone tries."""
    method = str(scope.get("method", ""))
    principal = scope.get("user")
    observe.http_request(
        route=scope.get("path_template") or observe.UNMATCHED_ROUTE,
        method=method if method in _METHODS else "OTHER",
        status=status,
        duration_s=duration_s,
        client_id=principal.client_id if isinstance(principal, Principal) and principal.kind == "client" else None,
    )
