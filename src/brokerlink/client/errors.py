"""The client's errors: RFC 9457 problems as typed exceptions, OAuth errors, stream failures.

Every error the client raises on purpose is a :class:`BrokerlinkClientError`. An HTTP answer that is
not a success becomes a :class:`ProblemError` (or the subclass for its status) carrying what the
server's problem details say: ``status``, the stable ``code`` clients branch on, ``type``, ``title``,
``detail``, the other members in ``extra``, and for a 429 the ``Retry-After`` seconds.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

__all__ = [
    "BrokerlinkClientError",
    "ConflictError",
    "FlowError",
    "ForbiddenError",
    "InvalidInputError",
    "NotAuthenticatedError",
    "NotFoundError",
    "OAuthError",
    "PreconditionFailedError",
    "PreconditionRequiredError",
    "ProblemError",
    "RateLimitedError",
    "ServerError",
    "StreamClosed",
    "StreamError",
    "problem_from_response",
]


class BrokerlinkClientError(Exception):
    """Base of every error this client raises on purpose."""


class FlowError(BrokerlinkClientError):
    """A step of the OAuth flow failed on the client's side (state or issuer mismatch, no code...)."""


class ProblemError(BrokerlinkClientError):
    """An API request answered with an error: the RFC 9457 problem details, as fields."""

    status_code: ClassVar[int | None] = None
    """The HTTP status a subclass stands for (None: any)."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        type: str = "about:blank",  # noqa: A002 - the RFC 9457 member's name
        title: str = "",
        instance: str | None = None,
        request_id: str | None = None,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.type = type
        self.title = title
        self.instance = instance
        self.request_id = request_id
        self.retry_after = retry_after
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        super().__init__(f"HTTP {status} {code}: {detail}")


class NotAuthenticatedError(ProblemError):
    """401: no valid session or token (``code`` says which check failed, e.g. ``invalid_dpop_proof``)."""

    status_code = 401


class ForbiddenError(ProblemError):
    """403: authenticated, but not allowed (``insufficient_scope``, a first-party route...)."""

    status_code = 403


class NotFoundError(ProblemError):
    """404: missing, or not yours (brokerlink answers both the same way)."""

    status_code = 404


class ConflictError(ProblemError):
    """409: the request conflicts with the object's state (an ended order, a key in use...)."""

    status_code = 409


class PreconditionFailedError(ProblemError):
    """412: ``If-Match`` names a version the object is no longer at; ``etag`` is the current one."""

    status_code = 412

    @property
    def etag(self) -> str | None:
        """The object's current ETag, when the server said."""
        value = self.extra.get("etag")
        return value if isinstance(value, str) else None


class PreconditionRequiredError(ProblemError):
    """428: the change needs ``If-Match``."""

    status_code = 428


class InvalidInputError(ProblemError):
    """422: the request broke a schema or a rule; ``errors`` names the fields."""

    status_code = 422

    @property
    def errors(self) -> list[dict[str, Any]]:
        """``[{field, source, message}]`` as the server listed them."""
        value = self.extra.get("errors")
        return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []


class RateLimitedError(ProblemError):
    """429: too many requests; ``retry_after`` is the number of seconds the server asks to wait."""

    status_code = 429


class ServerError(ProblemError):
    """5xx: the server failed or is unavailable (a 503 while a broker link is down)."""


_BY_STATUS: dict[int, type[ProblemError]] = {
    cls.status_code: cls
    for cls in (
        NotAuthenticatedError,
        ForbiddenError,
        NotFoundError,
        ConflictError,
        PreconditionFailedError,
        PreconditionRequiredError,
        InvalidInputError,
        RateLimitedError,
    )
    if cls.status_code is not None
}
_STANDARD = frozenset({"type", "title", "status", "detail", "instance", "code", "request_id"})


def _retry_after(response: httpx.Response) -> int | None:
    value = response.headers.get("retry-after", "").strip()
    return int(value) if value.isdigit() else None


def problem_from_response(response: httpx.Response) -> ProblemError:
    """The typed error for a failed response (problem+json, an OAuth error body, or anything else)."""
    body: Any = None
    try:
        body = response.json()
    except ValueError:
        body = None
    status = response.status_code
    kind = ServerError if status >= 500 else _BY_STATUS.get(status, ProblemError)
    headers = {k.lower(): v for k, v in response.headers.items()}
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        return kind(
            status,
            body["code"],
            str(body.get("detail") or body.get("title") or ""),
            type=str(body.get("type") or "about:blank"),
            title=str(body.get("title") or ""),
            instance=body.get("instance") if isinstance(body.get("instance"), str) else None,
            request_id=body.get("request_id") if isinstance(body.get("request_id"), str) else None,
            retry_after=_retry_after(response),
            headers=headers,
            extra={k: v for k, v in body.items() if k not in _STANDARD},
        )
    if isinstance(body, dict) and isinstance(body.get("error"), str):  # an OAuth endpoint's error
        return kind(
            status,
            body["error"],
            str(body.get("error_description") or ""),
            retry_after=_retry_after(response),
            headers=headers,
        )
    return kind(status, "http_error", response.text[:500], retry_after=_retry_after(response), headers=headers)


class OAuthError(BrokerlinkClientError):
    """The authorization server refused a request (RFC 6749 section 5.2: ``error`` and its description)."""

    def __init__(self, status: int, error: str, description: str = "") -> None:
        self.status = status
        self.error = error
        self.description = description
        super().__init__(f"{error}: {description}" if description else error)


class StreamError(BrokerlinkClientError):
    """The stream cannot go on (the handshake was refused, reconnecting gave up)."""


class StreamClosed(StreamError):
    """The server closed the stream for a reason reconnecting does not cure (1008: policy violation)."""

    def __init__(self, code: int | None, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"stream closed ({code}): {reason}" if reason else f"stream closed ({code})")
