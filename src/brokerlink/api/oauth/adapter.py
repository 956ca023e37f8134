"""The Litestar adapter of the authorization server (Authlib ships Flask and Django ones only).

Authlib's integrations implement ``create_oauth2_request`` (the framework's request as an
``OAuth2Request``) and ``handle_response`` (a status, body and headers as the framework's
response). Litestar reads a body asynchronously and Authlib reads its form synchronously, so the
adapter reads the form first, into the framework-neutral
:class:`~brokerlink.security.oauth.server.HttpRequest` the core's ``create_oauth2_request`` takes,
and turns the core's :class:`~brokerlink.security.oauth.server.OAuthResponse` into a Litestar
``Response``.

OAuth errors are JSON objects ``{"error", "error_description"}`` (RFC 6749 section 5.2), not
problem details: OAuth clients parse that shape. The request URL given to the core is built from
the issuer, never from the ``Host`` header a client chooses (DPoP's ``htu`` is checked against it).
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.background_tasks import BackgroundTask

from brokerlink.security.oauth.server import NO_STORE, HttpRequest, OAuthResponse

__all__ = ["FormError", "dpop_header", "oauth_request", "to_response"]

FORM = "application/x-www-form-urlencoded"


class FormError(Exception):
    """The request is not a form POST the core can read; carries the OAuth error response."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        body = {"error": "invalid_request", "error_description": description}
        self.response = OAuthResponse(400, body, NO_STORE)


async def oauth_request(request: Request[Any, Any, Any], url: str) -> HttpRequest:
    """The request as the core sees it: method, ``url`` (from the issuer), headers and the parsed form."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != FORM:
        raise FormError(f"the body must be {FORM}")
    form = await request.form()
    pairs: list[tuple[str, str]] = []
    for key, value in form.multi_items():
        if not isinstance(value, str):
            raise FormError("file uploads are not accepted")
        pairs.append((key, value))
    headers = {name.lower(): value for name, value in request.headers.items()}
    return HttpRequest(method=request.method, url=url, headers=headers, form=tuple(pairs))


def dpop_header(request: Request[Any, Any, Any]) -> str | None:
    """The ``DPoP`` header, None when absent; several (or a comma-joined list) are refused as malformed."""
    values = request.headers.getall("dpop", [])
    if not values:
        return None
    if len(values) > 1 or "," in values[0]:
        return "!"  # not a JWS: the proof check refuses it with its own reason
    value: str = values[0].strip()
    return value or None


def to_response(result: OAuthResponse, background: BackgroundTask | None = None) -> Response[dict[str, Any]]:
    """The core's answer as a Litestar JSON response."""
    return Response(
        content=result.body,
        status_code=result.status,
        headers=dict(result.headers),
        media_type="application/json",
        background=background,
    )
