"""Request checks that run before a handler parses anything."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Request

from brokerlink.kit.errors import UnsupportedMediaType

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BeforeRequest = Callable[[Request[Any, Any, Any]], Awaitable[None]]


def body_media_types(*allowed: str, json_suffix: bool = False) -> BeforeRequest:
    """A before-request hook that refuses a body in any other media type with 415, instead of guessing."""
    accepted = frozenset(allowed)
    described = " or ".join(sorted(accepted))

    async def check(request: Request[Any, Any, Any]) -> None:
        if request.method not in _BODY_METHODS:
            return
        content_length = request.headers.get("content-length", "0")
        if content_length in ("", "0") and "transfer-encoding" not in request.headers:
            return
        media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type in accepted or (json_suffix and media_type.endswith("+json")):
            return
        raise UnsupportedMediaType(f"request bodies here must be {described}")

    return check


require_json_body = body_media_types("application/json", json_suffix=True)
require_form_body = body_media_types("application/x-www-form-urlencoded")
