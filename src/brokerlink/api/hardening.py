"""Hardening at the edge: security headers, and refusing oversized bodies and pages before any work.

:class:`HardeningMiddleware` wraps the whole ASGI handler rather than sitting in Litestar's
middleware list, because that list runs only for matched routes and a 404 or 405 needs the same
headers. It is raw ASGI for the same reason as the request-context middleware: it is on every
request's hot path and touches only headers and the query string.

Why refuse here, before routing: a body announced larger than ``max_body_bytes`` is refused from
its ``Content-Length`` before authentication opens a database session or a handler reads it
(Litestar's ``request_max_body_size`` still guards bodies streamed without a length, when read).
A ``limit`` above :data:`~brokerlink.store.repositories._common.MAX_PAGE` on an API list is a 400
(``page_size_too_large``), not the 422 of invalid input: the request is well formed but asks for
more than the server hands out in one response (SECURITY 27). Each list route's own parameter
bound stays, documenting the maximum in the OpenAPI document.

500s: the one problem handler (``api/problems.py``) renders unexpected errors without their
message or traceback, and the app runs with ``debug=False``; test_hardening proves both.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from brokerlink.api.problems import API_PATH_PREFIXES, PROBLEM_MEDIA_TYPE
from brokerlink.kit.errors import BrokerlinkError, PayloadTooLarge
from brokerlink.store.repositories._common import MAX_PAGE

_COMMON_HEADERS: list[tuple[bytes, bytes]] = [
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]
# Pages get a strict CSP: the dashboard has no inline script or style (its one script is
# /static/dashboard.js). The API docs page loads its renderer from a CDN, so it gets a looser one.
PAGE_CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
DOCS_CSP = (
    b"default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    b"font-src https://fonts.gstatic.com; img-src 'self' data: https://cdn.jsdelivr.net; "
    b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
API_CSP = b"default-src 'none'; frame-ancestors 'none'"
FORM_ACTION_STATE_KEY = "brokerlink.csp_form_action"
"""Scope state: one more origin a page's forms may lead to. The consent page sets its app's redirect
origin there: browsers apply ``form-action`` to the redirect that answers the app (ADR 0024)."""
_ORIGIN = re.compile(rb"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?|http://\[::1\](:[0-9]{1,5})?")


def _page_csp(scope: Scope) -> bytes:
    extra = scope.get("state", {}).get(FORM_ACTION_STATE_KEY)
    origin = extra.encode("ascii", "replace") if isinstance(extra, str) else b""
    if not _ORIGIN.fullmatch(origin):
        return PAGE_CSP
    return PAGE_CSP.replace(b"form-action 'self'", b"form-action 'self' " + origin)


class PageSizeTooLarge(BrokerlinkError):
    """A list asked for more items per page than the server returns."""

    status = 400
    code = "page_size_too_large"
    title = "Page size too large"


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


def _oversized_body(scope: Scope, max_body_bytes: int) -> bool:
    length = _header(scope, b"content-length")
    return length is not None and length.isdigit() and int(length) > max_body_bytes


def _oversized_page(scope: Scope) -> bool:
    query = scope.get("query_string", b"")
    if b"limit" not in query:
        return False
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        # Only a well-formed number above the cap is ours; anything else is the route's 422.
        if name == "limit" and value.isdigit() and int(value) > MAX_PAGE:
            return True
    return False


class HardeningMiddleware:
    """Security headers on every HTTP response; 413 and 400 for oversized bodies and pages."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        is_api = path.startswith(API_PATH_PREFIXES)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] != b"content-security-policy"]
                headers.extend(_COMMON_HEADERS)
                if path.startswith("/docs"):
                    headers.append((b"content-security-policy", DOCS_CSP))
                elif is_api:
                    headers.append((b"content-security-policy", API_CSP))
                else:
                    headers.append((b"content-security-policy", _page_csp(scope)))
                if is_api and not any(h[0] == b"cache-control" for h in headers):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        error: BrokerlinkError | None = None
        if _oversized_body(scope, self.max_body_bytes):
            error = PayloadTooLarge("the request body is larger than this server accepts")
        elif is_api and _oversized_page(scope):
            error = PageSizeTooLarge(f"limit must be at most {MAX_PAGE}")
        if error is None:
            await self.app(scope, receive, send_with_headers)
        else:
            await _send_problem(scope, send_with_headers, error)


async def _send_problem(scope: Scope, send: Send, error: BrokerlinkError) -> None:
    """Answer with ``error`` as problem details, as the problem handler would, without running the app."""
    problem = error.to_problem(instance=scope.get("path", ""))
    request_id = scope.get("state", {}).get("request_id")
    if request_id:
        problem["request_id"] = request_id
    body = msgspec.json.encode(problem)
    headers = [(b"content-type", PROBLEM_MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]
    if isinstance(error, PayloadTooLarge):
        # The unread body may still be on the wire: the connection is not reused for a next request.
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
