"""Helpers shared by the repositories: cursor pages and dialect-specific INSERT ... ON CONFLICT."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import Select, Table, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.util.typing import TupleAny

T = TypeVar("T")
R = TypeVar("R")

MAX_PAGE = 500

# Reads with this option overwrite rows the session already holds. Needed wherever a table is also
# written by core INSERT ... ON CONFLICT / UPDATE statements, which bypass the identity map.
FRESH = {"populate_existing": True}


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list ordered by id. ``next_after`` is the cursor for the next page, None on the last."""

    items: Sequence[T]
    next_after: str | None


def check_limit(limit: int) -> None:
    """Refuse page sizes outside 1..MAX_PAGE (a caller bug, or a request the API should have refused)."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")


def dialect_name(session: AsyncSession) -> str:
    """``"sqlite"`` or ``"postgresql"``: the database behind the session."""
    return session.get_bind().dialect.name


def upsert_insert(session: AsyncSession, table: Any) -> sqlite.Insert | postgresql.Insert:
    """An INSERT for ``table`` that supports ON CONFLICT, in the session's dialect.

    Both dialects spell ``on_conflict_do_nothing`` / ``on_conflict_do_update`` and ``excluded`` the
    same way, so callers write one statement for both.
    """
    name = dialect_name(session)
    if name == "sqlite":
        return sqlite.insert(table)
    if name == "postgresql":
        return postgresql.insert(table)
    raise ValueError(f"unsupported database dialect {name!r}: brokerlink runs on sqlite and postgresql")


def rowcount(result: Result[*TupleAny]) -> int:
    """Rows matched by an UPDATE or DELETE (``session.execute`` types every result as a plain Result)."""
    return int(cast("CursorResult[*TupleAny]", result).rowcount)


def in_period(stmt: Select[Any], column: Any, since: datetime | None, until: datetime | None) -> Select[Any]:
    """``stmt`` narrowed to rows whose ``column`` falls in [since, until): the lists' time filter (docs/adr/0033)."""
    if since is not None:
        stmt = stmt.where(column >= since)
    if until is not None:
        stmt = stmt.where(column < until)
    return stmt


async def fetch_page(
    session: AsyncSession,
    stmt: Select[R],
    id_column: InstrumentedAttribute[str],
    convert: Callable[[R], T],
    *,
    limit: int,
    after: str | None,
    descending: bool,
) -> Page[T]:
    """Run ``stmt`` (rows of one entity) as a cursor page over ``id_column``.

    Ids are ULIDs, so id order is creation order to the millisecond (ids made in the same
    millisecond have a fixed but arbitrary order). ``after`` is the previous page's ``next_after``;
    one extra row is fetched to know whether another page exists without a COUNT.
    """
    check_limit(limit)
    if after is not None:
        stmt = stmt.where(id_column < after if descending else id_column > after)
    stmt = stmt.order_by(id_column.desc() if descending else id_column.asc()).limit(limit + 1)
    rows = list((await session.execute(stmt, execution_options=FRESH)).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    next_after = str(getattr(rows[-1], id_column.key)) if more else None
    return Page(items=[convert(row) for row in rows], next_after=next_after)


async def insert_rows(session: AsyncSession, model: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` into ``model``'s table as one executemany through Core, all or none.

    A copy fan-out writes hundreds of rows per kind; the ORM's bulk path costs several times more
    per row than the driver's ``executemany``. Pending ORM changes are flushed first, so the rows
    land after anything the session already holds (foreign keys).
    """
    if rows:
        await session.flush()
        connection = await session.connection()
        await connection.execute(insert(cast("Table", model.__table__)), list(rows))
