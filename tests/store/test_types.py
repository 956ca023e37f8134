"""DecimalType and UTCDateTime: exact round trips on both databases, and refusal of lossy inputs.

"Exact" means: the value read back has the same sign, digits and exponent as what was written,
after :func:`canonical_decimal` - which only turns ``-0`` into ``0`` and writes out positive
exponents (``1E+5`` -> ``100000``), the two things PostgreSQL NUMERIC cannot represent. So a
scale like ``1.50`` survives, and ``str()`` of the value read equals ``str()`` of the value written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, select, text
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from brokerlink.kit.money import MoneyError
from brokerlink.store.types import DecimalType, UTCDateTime, canonical_decimal

_probe_metadata = MetaData()
probe = Table(
    "type_probe",
    _probe_metadata,
    Column("id", Integer, primary_key=True),
    Column("amount", DecimalType()),
    Column("at", UTCDateTime()),
)

DECIMALS = [
    "0.00000001",
    "1E-8",
    "123456789.123456789",
    "-42.5",
    "0",
    "-0.00000001",
    "100000",
    "1.50",
    "0.00",
    "100000000000000000000.000000000000000001",
    "-123456789012345678901234567890.123456789012345678901234567890",
    "1E+5",
    "1.2E+30",
    "-0",
    "-0.00",
]


@pytest.fixture
async def probe_engine(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    async with engine.begin() as conn:
        await conn.run_sync(_probe_metadata.create_all)
    yield engine
    # The PostgreSQL test database is shared by the run: leave it with only the real schema.
    async with engine.begin() as conn:
        await conn.run_sync(_probe_metadata.drop_all)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("-0", "0"),
        ("-0.00", "0.00"),
        ("1E+5", "100000"),
        ("1.2E+30", "1200000000000000000000000000000"),
        ("-1.50", "-1.50"),
        ("1E-8", "1E-8"),
    ],
)
def test_canonical_decimal(given: str, stored: str) -> None:
    assert canonical_decimal(Decimal(given)).as_tuple() == Decimal(stored).as_tuple()


@pytest.mark.parametrize("raw", DECIMALS)
async def test_decimal_round_trip_is_exact(probe_engine: AsyncEngine, raw: str) -> None:
    value = Decimal(raw)
    expected = canonical_decimal(value)
    async with probe_engine.begin() as conn:
        await conn.execute(insert(probe).values(id=1, amount=value))
        got = (await conn.execute(select(probe.c.amount))).scalar_one()
    assert isinstance(got, Decimal)
    assert got == value
    assert got.as_tuple() == expected.as_tuple()
    assert str(got) == str(expected)


async def test_decimal_storage_form(probe_engine: AsyncEngine) -> None:
    async with probe_engine.begin() as conn:
        await conn.execute(insert(probe).values(id=1, amount=Decimal("1E-8")))
        if conn.dialect.name == "sqlite":
            # TEXT in fixed-point notation, never REAL and never scientific notation.
            kind, stored = (await conn.execute(text("SELECT typeof(amount), amount FROM type_probe"))).one()
            assert (kind, stored) == ("text", "0.00000001")
        else:
            kind, stored, scale = (
                await conn.execute(text("SELECT pg_typeof(amount)::text, amount::text, scale(amount) FROM type_probe"))
            ).one()
            assert (kind, stored, scale) == ("numeric", "0.00000001", 8)


async def test_decimal_null_round_trips(probe_engine: AsyncEngine) -> None:
    async with probe_engine.begin() as conn:
        await conn.execute(insert(probe).values(id=1, amount=None))
        assert (await conn.execute(select(probe.c.amount))).scalar_one() is None


async def test_decimal_accepts_int(probe_engine: AsyncEngine) -> None:
    async with probe_engine.begin() as conn:
        await conn.execute(insert(probe).values(id=1, amount=7))
        got = (await conn.execute(select(probe.c.amount))).scalar_one()
    assert got.as_tuple() == Decimal(7).as_tuple()


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (0.1, MoneyError),
        (1.0, MoneyError),
        (True, MoneyError),
        (Decimal("NaN"), MoneyError),
        (Decimal("sNaN"), MoneyError),
        (Decimal("Infinity"), MoneyError),
        (Decimal("-Infinity"), MoneyError),
        ("1.5", TypeError),
    ],
    ids=repr,
)
async def test_decimal_refuses_lossy_or_untyped_values(probe_engine: AsyncEngine, bad: object, error: type) -> None:
    async with probe_engine.connect() as conn:
        with pytest.raises(StatementError) as caught:
            await conn.execute(insert(probe).values(id=1, amount=bad))
        assert isinstance(caught.value.orig, error)
        await conn.rollback()


@pytest.mark.parametrize(
    "when",
    [
        datetime(2026, 1, 5, 12, 0, 0, 123456, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 7, 1, 14, 30, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 7, 1, 2, 30, tzinfo=timezone(timedelta(hours=-9, minutes=-30))),
    ],
    ids=["utc-micro", "utc-edge", "plus-2", "minus-9h30"],
)
async def test_datetime_round_trip_is_aware_utc(probe_engine: AsyncEngine, when: datetime) -> None:
    async with probe_engine.begin() as conn:
        await conn.execute(insert(probe).values(id=1, at=when))
        got = (await conn.execute(select(probe.c.at))).scalar_one()
    assert got == when
    assert got.tzinfo is UTC
    assert got.utcoffset() == timedelta(0)
    assert got.replace(tzinfo=None) == when.astimezone(UTC).replace(tzinfo=None)


async def test_datetime_comparisons_in_sql_follow_time(probe_engine: AsyncEngine) -> None:
    base = datetime(2026, 1, 5, 12, tzinfo=UTC)
    values = [base + timedelta(microseconds=1), base + timedelta(days=300), base - timedelta(seconds=1), base]
    async with probe_engine.begin() as conn:
        await conn.execute(insert(probe), [{"id": i, "at": v} for i, v in enumerate(values)])
        later = (await conn.execute(select(probe.c.at).where(probe.c.at > base).order_by(probe.c.at))).scalars().all()
        # The same instant in another zone compares equal to its UTC form.
        elsewhere = base.astimezone(timezone(timedelta(hours=5)))
        same = await conn.execute(select(probe.c.id).where(probe.c.at == elsewhere))
    assert later == sorted(v for v in values if v > base)
    assert same.scalars().all() == [3]


async def test_datetime_refuses_naive_values(probe_engine: AsyncEngine) -> None:
    async with probe_engine.connect() as conn:
        with pytest.raises(StatementError) as caught:
            await conn.execute(insert(probe).values(id=1, at=datetime(2026, 1, 5, 12)))  # noqa: DTZ001
        assert isinstance(caught.value.orig, ValueError)
        assert "naive" in str(caught.value.orig)
        await conn.rollback()


async def test_datetime_refuses_non_datetimes(probe_engine: AsyncEngine) -> None:
    async with probe_engine.connect() as conn:
        with pytest.raises(StatementError) as caught:
            await conn.execute(insert(probe).values(id=1, at="2026-01-05T12:00:00Z"))
        assert isinstance(caught.value.orig, TypeError)
        await conn.rollback()
