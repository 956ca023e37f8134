"""``Deprecation`` and ``Sunset`` headers for a route on its way out (docs/api-versioning.md).

A deprecated route keeps working until its sunset; meanwhile every successful response says so,
machine-readably, and the OpenAPI document marks the operation ``deprecated`` and lists the
headers::

    @get("/v1/old", **deprecated(since=datetime(2026, 1, 5, tzinfo=UTC),
                                 sunset=datetime(2026, 7, 6, tzinfo=UTC),
                                 link="https://docs.example.com/changelog#old"))

* ``Deprecation: @<unix seconds>`` (RFC 9745: a structured-field date, when it was deprecated);
* ``Sunset: <HTTP-date>`` (RFC 8594: when it stops answering);
* ``Link: <url>; rel="deprecation"`` when there is a page that says what to use instead.

The policy's minimum notice (:data:`MIN_NOTICE`) is enforced here, so a route cannot be given a
shorter life by mistake. Error responses (problem details) do not carry the headers.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any, Final

from litestar.datastructures import ResponseHeader

MIN_NOTICE: Final = timedelta(days=180)
"""How long a deprecated route or field keeps working before its sunset, at least."""


def deprecated(*, since: datetime, sunset: datetime, link: str | None = None) -> dict[str, Any]:
    """Route decorator keywords that mark the route deprecated and send the headers (module docstring)."""
    for name, value in (("since", since), ("sunset", sunset)):
        if value.utcoffset() != timedelta(0):
            raise ValueError(f"{name} must be a timezone-aware UTC datetime")
    if sunset - since < MIN_NOTICE:
        raise ValueError(f"a sunset must come at least {MIN_NOTICE.days} days after the deprecation")
    headers = [
        ResponseHeader(
            name="Deprecation",
            value=f"@{int(since.timestamp())}",
            description="RFC 9745: this operation is deprecated since this date (a Unix time).",
        ),
        ResponseHeader(
            name="Sunset",
            value=format_datetime(sunset, usegmt=True),
            description="RFC 8594: this operation stops answering after this date.",
        ),
    ]
    if link is not None:
        headers.append(
            ResponseHeader(
                name="Link",
                value=f'<{link}>; rel="deprecation"; type="text/html"',
                description="What to use instead.",
            )
        )
    return {"deprecated": True, "response_headers": headers}
