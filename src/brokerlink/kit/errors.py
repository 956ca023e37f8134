"""The one error hierarchy. Each error knows its HTTP status and renders as RFC 9457 problem details.

Services raise these; the API layer has exactly one handler that turns them into
``application/problem+json`` responses. ``code`` is stable and documented: clients branch on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

PROBLEM_TYPE_PREFIX = "urn:brokerlink:problem:"


class BrokerlinkError(Exception):
    """Base of every error brokerlink raises on purpose."""

    status: int = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.detail = detail or self.title
        self.headers: dict[str, str] = dict(headers or {})
        self.extra: dict[str, Any] = dict(extra or {})
        super().__init__(self.detail)

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        """Render as an RFC 9457 problem details object (extension members after the standard ones)."""
        problem: dict[str, Any] = {
            "type": PROBLEM_TYPE_PREFIX + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance is not None:
            problem["instance"] = instance
        for key, value in self.extra.items():
            problem.setdefault(key, value)
        return problem


class MalformedRequest(BrokerlinkError):
    """The request could not be parsed at all (bad JSON, wrong content type)."""

    status = 400
    code = "malformed_request"
    title = "Malformed request"


class InvalidInput(BrokerlinkError):
    """The request parsed but its content is invalid (wrong types, unknown fields, bad values).

    Every 422 has one shape: ``errors``, a list of ``{field, source, message}``. A check in a
    handler or service that names one ``field`` gets that list made for it.
    """

    status = 422
    code = "invalid_input"
    title = "Invalid input"

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        """The problem, with ``errors`` listing the named ``field`` when the raiser gave no list."""
        problem = super().to_problem(instance)
        field = self.extra.get("field")
        if "errors" not in problem and isinstance(field, str):
            problem["errors"] = [{"field": field, "source": "body", "message": self.detail}]
        return problem


class NotAuthenticated(BrokerlinkError):
    """No valid principal for a route that requires one."""

    status = 401
    code = "not_authenticated"
    title = "Authentication required"


class InvalidCredentials(NotAuthenticated):
    """Login failed. Deliberately says nothing about which part was wrong."""

    code = "invalid_credentials"
    title = "Invalid credentials"


class Forbidden(BrokerlinkError):
    """The principal is known but may not do this."""

    status = 403
    code = "forbidden"
    title = "Forbidden"


class NotFound(BrokerlinkError):
    """The object does not exist, or exists but belongs to someone else (never reveal which)."""

    status = 404
    code = "not_found"
    title = "Not found"


class MethodNotAllowed(BrokerlinkError):
    """The route exists but not with this method."""

    status = 405
    code = "method_not_allowed"
    title = "Method not allowed"


class Conflict(BrokerlinkError):
    """The request conflicts with the current state (duplicate, wrong state for the transition)."""

    status = 409
    code = "conflict"
    title = "Conflict"


class PayloadTooLarge(BrokerlinkError):
    """The request body exceeds the configured limit."""

    status = 413
    code = "payload_too_large"
    title = "Payload too large"


class UnsupportedMediaType(BrokerlinkError):
    """The request body is not in a media type the route accepts."""

    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


class RateLimited(BrokerlinkError):
    """Too many requests; ``Retry-After`` says when to come back."""

    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, detail: str | None = None, *, retry_after: int, **kwargs: Any) -> None:
        headers = dict(kwargs.pop("headers", None) or {})
        headers["Retry-After"] = str(retry_after)
        super().__init__(detail, headers=headers, **kwargs)
        self.retry_after = retry_after


class ClientError(BrokerlinkError):
    """Any other 4xx the HTTP layer raises (406, 408, ...), with the status it came with."""

    code = "client_error"
    title = "Client error"

    def __init__(self, status: int, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.status = status


class Unavailable(BrokerlinkError):
    """A dependency (database, bus, broker) is not available right now."""

    status = 503
    code = "unavailable"
    title = "Service unavailable"
