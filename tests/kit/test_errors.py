"""kit.errors: one hierarchy, HTTP statuses, RFC 9457 problem details."""

from __future__ import annotations

import pytest

from brokerlink.kit.errors import (
    PROBLEM_TYPE_PREFIX,
    BrokerlinkError,
    Conflict,
    Forbidden,
    InvalidCredentials,
    InvalidInput,
    MalformedRequest,
    MethodNotAllowed,
    NotAuthenticated,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
    UnsupportedMediaType,
)


@pytest.mark.parametrize(
    ("cls", "status", "code"),
    [
        (BrokerlinkError, 500, "internal_error"),
        (MalformedRequest, 400, "malformed_request"),
        (InvalidInput, 422, "invalid_input"),
        (NotAuthenticated, 401, "not_authenticated"),
        (InvalidCredentials, 401, "invalid_credentials"),
        (Forbidden, 403, "forbidden"),
        (NotFound, 404, "not_found"),
        (MethodNotAllowed, 405, "method_not_allowed"),
        (Conflict, 409, "conflict"),
        (PayloadTooLarge, 413, "payload_too_large"),
        (UnsupportedMediaType, 415, "unsupported_media_type"),
        (Unavailable, 503, "unavailable"),
    ],
)
def test_status_and_code(cls: type[BrokerlinkError], status: int, code: str) -> None:
    error = cls()
    assert error.status == status
    assert error.code == code
    assert error.detail == cls.title  # no detail: the title stands in
    assert isinstance(error, BrokerlinkError)
    assert str(error) == cls.title


def test_invalid_credentials_is_a_not_authenticated() -> None:
    assert issubclass(InvalidCredentials, NotAuthenticated)


def test_to_problem_renders_rfc9457_members() -> None:
    error = NotFound("order ord_1 not found", extra={"resource": "order"})
    assert error.to_problem("/v1/orders/ord_1") == {
        "type": PROBLEM_TYPE_PREFIX + "not_found",
        "title": "Not found",
        "status": 404,
        "detail": "order ord_1 not found",
        "code": "not_found",
        "instance": "/v1/orders/ord_1",
        "resource": "order",
    }
    assert "instance" not in error.to_problem()


def test_extra_members_cannot_override_standard_ones() -> None:
    error = Conflict("dup", extra={"status": 200, "code": "ok", "field": "client_order_id"})
    problem = error.to_problem()
    assert problem["status"] == 409
    assert problem["code"] == "conflict"
    assert problem["field"] == "client_order_id"


def test_headers_and_extra_are_copied() -> None:
    headers = {"X-Test": "1"}
    error = Unavailable(headers=headers)
    headers["X-Test"] = "2"
    assert error.headers == {"X-Test": "1"}


def test_rate_limited_sets_retry_after_and_keeps_other_headers() -> None:
    error = RateLimited("slow down", retry_after=30, headers={"RateLimit-Remaining": "0"})
    assert error.status == 429
    assert error.retry_after == 30
    assert error.headers == {"RateLimit-Remaining": "0", "Retry-After": "30"}
    assert error.detail == "slow down"
