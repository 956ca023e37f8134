"""Lists: one set of query parameters, one envelope, one set of errors, on every ``/v1`` list (ADR 0033).

Every list answers ``{"data": [...], "next_after": <cursor or null>}``, newest first unless a list
says otherwise (an account's balances by currency, positions and instruments by symbol). Pages are
cut by cursor, never by offset: ``limit`` (1 to the list's cap, :data:`MAX_LIMIT` or
:data:`SMALL_LIMIT` for heavy items) and ``after``, the previous page's ``next_after``. A list whose
items have a time takes ``since`` (inclusive) and ``until`` (exclusive), RFC 3339 with an offset;
one whose items have a symbol takes ``symbol``. Filters narrow the pages, the cursor keeps working
across them.

A cursor that cannot be one of the list's (``after=ord_...`` on a list of fills) is a 422
``invalid_cursor``; a time without an offset, or ``since`` not before ``until``, a 422
``invalid_filter``. (A value that does not parse at all is refused the same way by
:func:`brokerlink.api.problems.translate`.) Each names the parameter in ``errors``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from litestar.params import Parameter

from brokerlink.kit.errors import InvalidInput

__all__ = [
    "CURSOR_PARAMS",
    "FILTER_PARAMS",
    "MAX_LIMIT",
    "SMALL_LIMIT",
    "After",
    "InvalidCursor",
    "InvalidFilter",
    "Limit",
    "Since",
    "SmallLimit",
    "Symbol",
    "TimeRange",
    "Until",
    "checked_symbol",
    "id_cursor",
    "invalid_cursor",
    "invalid_filter",
    "key_cursor",
    "page_of",
    "query_problem",
    "time_range",
]

T = TypeVar("T")

MAX_LIMIT = 500
"""The cap of most lists (``limit`` above it is a 422)."""
SMALL_LIMIT = 100
"""The cap of lists whose items are heavy (webhook deliveries carry their attempts)."""

Limit = Annotated[int, Parameter(description=f"Page size, 1 to {MAX_LIMIT}", ge=1, le=MAX_LIMIT)]
SmallLimit = Annotated[int, Parameter(description=f"Page size, 1 to {SMALL_LIMIT}", ge=1, le=SMALL_LIMIT)]
After = Annotated[
    str | None,
    Parameter(description="Cursor: the next_after of the previous page (omit for the first page)", max_length=200),
]
Since = Annotated[
    datetime | None,
    Parameter(description="Only items at or after this time: RFC 3339 with an offset, e.g. 2026-01-02T03:04:05Z"),
]
Until = Annotated[
    datetime | None,
    Parameter(description="Only items before this time (exclusive): RFC 3339 with an offset"),
]
Symbol = Annotated[
    str | None,
    Parameter(
        description="Only items in this instrument (canonical symbol, e.g. EUR/USD)",
        min_length=1,
        max_length=64,
    ),
]

CURSOR_PARAMS = frozenset({"after"})
"""Query parameters that are cursors (a value Litestar cannot parse there is an ``invalid_cursor``)."""
FILTER_PARAMS = frozenset({"since", "until", "at", "symbol", "status", "kind", "event_type", "rule"})
"""Query parameters that filter a list (a value Litestar cannot parse there is an ``invalid_filter``)."""

_ID_BODY = re.compile(r"[0-9A-Za-z]{1,60}")
_KEY = re.compile(r"[\x21-\x7e]{1,200}")


class InvalidCursor(InvalidInput):
    """``after`` is not a cursor of this list: pass the ``next_after`` of its previous page, unchanged."""

    code = "invalid_cursor"
    title = "Invalid cursor"


class InvalidFilter(InvalidInput):
    """A filter's value is malformed or the filters contradict each other (``since`` not before ``until``)."""

    code = "invalid_filter"
    title = "Invalid filter"


def _errors(field: str, message: str) -> dict[str, Any]:
    return {"errors": [{"field": field, "source": "query", "message": message}]}


def invalid_cursor(message: str, field: str = "after") -> InvalidCursor:
    """A 422 ``invalid_cursor`` naming the query parameter."""
    return InvalidCursor(f"{field}: {message}", extra=_errors(field, message))


def invalid_filter(field: str, message: str) -> InvalidFilter:
    """A 422 ``invalid_filter`` naming the query parameter."""
    return InvalidFilter(f"{field}: {message}", extra=_errors(field, message))


def id_cursor(after: str | None, prefix: str | Sequence[str]) -> str | None:
    """``after`` if it is an id of the list's kind (``prefix``, e.g. ``"ord"``), else 422 ``invalid_cursor``."""
    if after is None:
        return None
    prefixes = (prefix,) if isinstance(prefix, str) else tuple(prefix)
    head, sep, body = after.partition("_")
    if not sep or head not in prefixes or not _ID_BODY.fullmatch(body):
        expected = f"the next_after of its previous page, {prefixes[0]}_..."
        raise invalid_cursor(f"not a cursor of this list (expected {expected})")
    return after


def key_cursor(after: str | None) -> str | None:
    """``after`` if it can be a key of a list ordered by a name (a currency, a symbol), else 422."""
    if after is None:
        return None
    if not _KEY.fullmatch(after):
        raise invalid_cursor("not a cursor of this list (expected the next_after of its previous page)")
    return after


@dataclass(frozen=True, slots=True)
class TimeRange:
    """``since`` (inclusive) and ``until`` (exclusive), both UTC; None is unbounded."""

    since: datetime | None = None
    until: datetime | None = None

    def contains(self, at: datetime) -> bool:
        """Whether ``at`` falls in the range."""
        moment = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
        return (self.since is None or moment >= self.since) and (self.until is None or moment < self.until)

    @property
    def unbounded(self) -> bool:
        """Whether neither end is set."""
        return self.since is None and self.until is None


def time_range(since: datetime | None, until: datetime | None) -> TimeRange:
    """The range the query asks for, in UTC; 422 ``invalid_filter`` without an offset or when empty."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.utcoffset() is None:
            raise invalid_filter(name, "give a time with an offset, e.g. 2026-01-02T03:04:05Z")
    start = since.astimezone(UTC) if since is not None else None
    end = until.astimezone(UTC) if until is not None else None
    if start is not None and end is not None and start >= end:
        raise invalid_filter("until", "must be after since")
    return TimeRange(since=start, until=end)


def page_of(
    items: Sequence[T], key: Callable[[T], str], *, limit: int, after: str | None, descending: bool = False
) -> tuple[list[T], str | None]:
    """One page of a list held in memory (a few dozen balances, positions or instruments), by ``key``.

    The same cursor rule as the stored lists: ``after`` is the key of the last item of the previous
    page; ``next_after`` is None on the last page.
    """
    ordered = sorted(items, key=key, reverse=descending)
    if after is not None:
        ordered = [i for i in ordered if (key(i) < after if descending else key(i) > after)]
    page = ordered[:limit]
    return page, key(page[-1]) if len(ordered) > limit else None


def query_problem(errors: list[dict[str, str]]) -> type[InvalidInput]:
    """The problem class for Litestar's validation ``errors`` when all of them are about the query's
    cursor (``invalid_cursor``) or filters (``invalid_filter``); plain ``invalid_input`` otherwise."""
    fields = {e.get("field") for e in errors if e.get("source") == "query"}
    if not fields or len(fields) != len(errors):
        return InvalidInput
    if fields <= CURSOR_PARAMS:
        return InvalidCursor
    if fields <= FILTER_PARAMS:
        return InvalidFilter
    return InvalidInput


def checked_symbol(symbol: str | None) -> str | None:
    """The ``symbol`` filter stripped, or 422 ``invalid_filter`` when blank."""
    if symbol is None:
        return None
    stripped = symbol.strip()
    if not stripped:
        raise invalid_filter("symbol", "must not be blank")
    return stripped
