"""Column types that keep money exact and time in UTC on both SQLite and PostgreSQL.

Neither database does this by itself: SQLite has no decimal type (a ``NUMERIC`` column silently
becomes a binary ``REAL``) and keeps no time zone; PostgreSQL has both, but a naive datetime would
be read in the server's time zone. These decorators make the two behave the same, and refuse the
inputs (floats, naive datetimes) that would make them differ.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, Numeric, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from brokerlink.kit.money import MoneyError


def canonical_decimal(value: Decimal) -> Decimal:
    """The form in which a Decimal is stored, identical on both databases.

    Two things PostgreSQL ``NUMERIC`` cannot represent are normalized, and SQLite is made to agree:
    a negative zero becomes zero (keeping its scale: ``-0.00`` -> ``0.00``), and a positive
    exponent is written out (``1E+5`` -> ``100000``). Everything else - value, sign and scale
    (``1.50`` stays ``1.50``) - is kept. Builds the result from digits, so no context rounds it.
    """
    if value.is_zero() and value.is_signed():
        value = value.copy_abs()
    sign, digits, exponent = value.as_tuple()
    if isinstance(exponent, int) and exponent > 0:
        value = Decimal((sign, digits + (0,) * exponent, 0))
    return value


class DecimalType(TypeDecorator[Decimal]):
    """An exact Decimal column: unconstrained ``NUMERIC`` on PostgreSQL, fixed-point ``TEXT`` on SQLite.

    Accepts only ``Decimal`` (and ``int``) values; floats, booleans, strings, NaN and infinities are
    refused before they reach the database. What comes back equals what went in after
    :func:`canonical_decimal`, digit for digit, including the scale. Because SQLite holds text,
    never compare, sort or sum these columns in SQL; do the arithmetic in Python.
    """

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        # TEXT, not NUMERIC: SQLite's NUMERIC affinity would store 0.1 as a binary float.
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Text())
        return dialect.type_descriptor(Numeric(asdecimal=True))

    def process_bind_param(self, value: object, dialect: Dialect) -> Decimal | str | None:
        if value is None:
            return None
        if isinstance(value, (bool, float)):
            raise MoneyError(f"{type(value).__name__} refused for a decimal column; pass a Decimal")
        if isinstance(value, int):
            value = Decimal(value)
        if not isinstance(value, Decimal):
            raise TypeError(f"a decimal column takes Decimal values, not {type(value).__name__}")
        if not value.is_finite():
            raise MoneyError(f"not a finite number: {value!r}")
        value = canonical_decimal(value)
        if dialect.name == "sqlite":
            # Fixed-point, never scientific notation: readable in the sqlite3 shell, and exact.
            return format(value, "f")
        return value

    def process_result_value(self, value: object, dialect: Dialect) -> Decimal | None:  # noqa: ARG002 (SQLAlchemy's signature)
        if value is None:
            return None
        if isinstance(value, Decimal):
            # asyncpg decodes NUMERIC 100000 (scale 0) as Decimal("1E+5"); write it out again.
            return canonical_decimal(value)
        if isinstance(value, str):
            return Decimal(value)
        # A float here means a column was created without TEXT affinity: fail loudly, never round.
        raise TypeError(f"decimal column returned {type(value).__name__}; the column type is wrong")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp: ``timestamptz`` on PostgreSQL, UTC text on SQLite.

    Naive datetimes are refused on the way in (their meaning depends on where the code runs);
    aware ones are converted to UTC. Values always come back aware, in UTC. SQLite's text form
    (``YYYY-MM-DD HH:MM:SS.ffffff``) has fixed width, so SQL comparisons and ordering stay correct.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: object, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"a datetime column takes datetime values, not {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime refused; pass a timezone-aware UTC datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: object, dialect: Dialect) -> datetime | None:  # noqa: ARG002 (SQLAlchemy's signature)
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"datetime column returned {type(value).__name__}")
        if value.tzinfo is None:
            # SQLite keeps no zone; everything written through this type was UTC.
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
