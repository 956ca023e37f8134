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

from brokerlink.api.paging import query_problem
from brokerlink.kit.errors import (
    BrokerlinkError,
    ClientError,
    Forbidden,
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
PROBLEM_CODES: dict[str, str] = {
    # generic, by status
    "malformed_request": "400: the request could not be parsed (bad JSON, wrong content type)",
    "page_size_too_large": "400: a page size beyond what any list allows",
    "not_authenticated": "401: no valid session or access token",
    "invalid_credentials": "401: sign-in failed (which part was wrong is not said)",
    "invalid_token": "401: the access token is invalid, expired or revoked",
    "invalid_dpop_proof": "401: the DPoP proof is missing or invalid",
    "use_dpop_nonce": "401: retry with the server's DPoP nonce",
    "mfa_pending": "401: signed in with the password; the MFA step is next",
    "invalid_mfa_code": "401: the MFA code is wrong",
    "forbidden": "403: the principal may not do this",
    "insufficient_scope": "403: the app's token lacks the scope named in the problem",
    "first_party_only": "403: apps may not call this route",
    "consent_inactive": "403: the consent behind the token has ended",
    "mfa_required": "403: verify MFA again first (step-up)",
    "mfa_enrollment_required": "403: enrol in MFA first",
    "not_found": "404: no such object, or not yours (never said which)",
    "method_not_allowed": "405: the route exists, not with this method",
    "conflict": "409: the request conflicts with the object's state (the detail says how)",
    "payload_too_large": "413: the body exceeds the server's limit",
    "unsupported_media_type": "415: the body is not in a media type the route accepts",
    "invalid_input": "422: the request parsed but its content is invalid; errors names each field",
    "rate_limited": "429: too many requests; Retry-After says when to come back",
    "client_error": "4xx: another refusal of the HTTP layer, with its own status",
    "internal_error": "500: an unexpected error; request_id identifies it in the logs",
    "unavailable": "503: a dependency is unavailable right now; retry later",
    # lists, idempotency, preconditions (ADR 0033)
    "invalid_cursor": "422: after is not the next_after of this list's previous page",
    "invalid_filter": "422: a filter (since, until, symbol...) is malformed or contradicts another",
    "idempotency_key_reused": "422: this Idempotency-Key was used for a different request",
    "idempotency_key_in_use": "409: a request with this Idempotency-Key is still running",
    "precondition_failed": "412: If-Match names a version the object is no longer at",
    "precondition_required": "428: this change needs If-Match with the ETag last read",
    # trading and brokers
    "broker_error": "502: the broker answered with an error",
    "broker_refused": "422: the broker refused the order (the detail says why)",
    "broker_rate_limited": "429: the broker's rate limit; retry after Retry-After",
    "broker_unavailable": "503: the broker cannot be reached now; nothing was sent",
    "broker_outcome_unknown": "504: sent, but the broker's answer was lost; the order is looked up",
    "insufficient_funds": "409: the account cannot pay for the order",
    "invalid_transition": "409: the order cannot move to that state",
    "overfill": "409: a fill beyond the order's quantity",
    "event_mismatch": "409: a broker event that does not match the order",
    "invalid_tick_file": "422: a market-data replay file is malformed",
    # copy trading
    "stale_version": "409: the subscription changed meanwhile; read it again",
    # ledger
    "invalid_account_code": "422: not a ledger account code",
    "invalid_entry": "422: a journal entry that breaks the ledger's rules",
    "unbalanced_entry": "422: a journal entry whose debits and credits differ",
    "idempotency_conflict": "409: a journal entry's idempotency key was used for other legs",
    # third-party access and webhooks
    "invalid_request_uri": "400: the authorization request is unknown, used or expired",
    "consent_ended": "409: the consent an app's webhook endpoint was registered under has ended",
    "webhook_endpoint_limit": "409: as many webhook endpoints as allowed already",
    "webhook_endpoint_disabled": "409: enable the webhook endpoint first",
    # administration
    "own_admin_role": "409: an admin cannot take away their own admin role",
    "alert_resolved": "409: a resolved alert cannot be acknowledged",
    "vault_error": "500: a stored secret could not be read (never shown in detail)",
}
"""Every ``code`` a problem may carry, with what it means (stable: clients branch on them; ADR 0033).

``tests/api/test_error_codes.py`` checks that this lists exactly the codes of every error class."""
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
        source = item.get("source", "body")
        # Litestar gives a ParamType member for parameters; its value is the word ("query", "header").
        errors.append({"field": key, "source": str(getattr(source, "value", source)), "message": message})
    return errors


def translate(exc: Exception) -> BrokerlinkError | None:
    """Map a Litestar or library exception onto our hierarchy; None for unexpected errors (500)."""
    if isinstance(exc, BrokerlinkError):
        return exc
    if isinstance(exc, ValidationException):
        errors = _field_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid input"
        # A list's cursor or filter that does not parse gets the code a wrong one gets (api/paging.py).
        return query_problem(errors)(detail, extra={"errors": errors})
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
