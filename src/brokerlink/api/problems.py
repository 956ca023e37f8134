"""The one place errors become responses: RFC 9457 ``application/problem+json``.

Our own :class:`~brokerlink.kit.errors.BrokerlinkError` carries its status and code. Litestar's
exceptions are translated into ours first, so clients see one vocabulary: malformed JSON is 400
``malformed_request``, a body that parses but breaks its schema is 422 ``invalid_input`` with the
offending fields, and anything unexpected is a 500 that says nothing about the internals.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from litestar import Request, Response
from litestar.exceptions import (
    ClientException,
    HTTPException,
    MethodNotAllowedException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.status_codes import HTTP_303_SEE_OTHER

from brokerlink.kit.errors import (
    BrokerlinkError,
    ClientError,
    Forbidden,
    InvalidInput,
    MalformedRequest,
    MethodNotAllowed,
    NotAuthenticated,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    UnsupportedMediaType,
)
from brokerlink.logs import get_logger
from brokerlink.security.totp import MfaPending

PROBLEM_MEDIA_TYPE = "application/problem+json"
API_PATH_PREFIXES = ("/v1/", "/openapi", "/healthz", "/readyz")
"""Paths that are API, not pages: JSON errors, no redirects to the login page, no caching."""
_log = get_logger("brokerlink.errors")


def _field_errors(exc: ValidationException) -> list[dict[str, str]]:
    """Turn Litestar's validation details into ``[{field, source, message}]`` without echoing input values."""
    errors: list[dict[str, str]] = []
    extra: Any = exc.extra
    for item in extra if isinstance(extra, list) else []:
        if not isinstance(item, dict):
            continue
        key = str(item.get("key", ""))
        message = str(item.get("message", "invalid value"))
        if message == f"'{key}'":  # msgspec's wording when the whole body is missing
            message = "a request body is required"
        errors.append({"field": key, "source": str(item.get("source", "body")), "message": message})
    return errors


def translate(exc: Exception) -> BrokerlinkError | None:
    """Map a Litestar or library exception onto our hierarchy; None for unexpected errors (500)."""
    if isinstance(exc, BrokerlinkError):
        return exc
    if isinstance(exc, ValidationException):
        errors = _field_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid input"
        return InvalidInput(detail, extra={"errors": errors})
    mapped: BrokerlinkError | None = None
    if isinstance(exc, NotAuthorizedException):
        mapped = NotAuthenticated()
    elif isinstance(exc, PermissionDeniedException):
        mapped = Forbidden(str(exc.detail) if exc.detail and exc.detail != "Forbidden" else None)
    elif isinstance(exc, NotFoundException):
        mapped = NotFound()
    elif isinstance(exc, MethodNotAllowedException):
        mapped = MethodNotAllowed(headers=exc.headers)
    elif isinstance(exc, HTTPException) and exc.status_code == 413:
        mapped = PayloadTooLarge("the request body is larger than this server accepts")
    elif isinstance(exc, HTTPException) and exc.status_code == 415:
        mapped = UnsupportedMediaType(str(exc.detail))
    elif isinstance(exc, HTTPException) and exc.status_code == 429:
        retry = (exc.headers or {}).get("Retry-After", "1")
        mapped = RateLimited(retry_after=int(retry) if retry.isdigit() else 1)
    elif isinstance(exc, HTTPException) and exc.status_code == 403:
        # Litestar's CSRF middleware raises a bare 403.
        mapped = Forbidden(str(exc.detail) if exc.detail else None)
    elif isinstance(exc, ClientException):
        mapped = MalformedRequest(str(exc.detail) if exc.detail else None)
    elif isinstance(exc, HTTPException) and exc.status_code < 500:
        mapped = ClientError(exc.status_code, str(exc.detail))
    return mapped


def _wants_html(request: Request[Any, Any, Any]) -> bool:
    path = request.url.path
    if path.startswith(API_PATH_PREFIXES):
        return False
    return "text/html" in request.headers.get("accept", "")


def problem_response(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Render any exception as problem details (or, for a browser page needing login, a redirect)."""
    error = translate(exc)
    if error is None:
        _log.error("unhandled_error", path=request.url.path, exc_info=exc)
        error = BrokerlinkError("an unexpected error occurred; the request id identifies it in the logs")
    if isinstance(error, NotAuthenticated) and _wants_html(request):
        target = quote(request.url.path, safe="/")
        # A browser signed in with its password but not past the MFA step goes to that step.
        step = "/login/mfa" if isinstance(error, MfaPending) else "/login"
        return Response(content=None, status_code=HTTP_303_SEE_OTHER, headers={"Location": f"{step}?next={target}"})
    problem = error.to_problem(instance=request.url.path)
    request_id = request.scope.get("state", {}).get("request_id")
    if request_id:
        problem["request_id"] = request_id
    return Response(
        content=problem,
        status_code=error.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=error.headers,
    )


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    Exception: problem_response,
    HTTPException: problem_response,
    BrokerlinkError: problem_response,
}
