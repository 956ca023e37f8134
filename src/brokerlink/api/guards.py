"""Request checks that run before a /v1 handler parses anything."""

from __future__ import annotations

from typing import Any

from litestar import Request

from brokerlink.kit.errors import UnsupportedMediaType

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def require_json_body(request: Request[Any, Any, Any]) -> None:
    """Refuse a request body that is not JSON with 415, instead of guessing at it."""
    if request.method not in _BODY_METHODS:
        return
    has_body = request.headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in request.headers
    if not has_body:
        return
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType("request bodies must be application/json")
