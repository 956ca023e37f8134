"""The event log: append, read in order, and the database's refusal of UPDATE and DELETE."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import msgspec
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from brokerlink.kit.ids import is_id
from brokerlink.store.repositories.events import EventRepository
from tests.store.factories import NOW


class Filled(msgspec.Struct, frozen=True):
    order_id: str
    qty: Decimal


async def test_append_and_read_since(session: AsyncSession) -> None:
    repo = EventRepository(session)
    assert await repo.last_seq() == 0
    first = await repo.append(
        topic="orders", key="acc_1", event_type="filled", payload=Filled("o1", Decimal("0.1")), now=NOW
    )
    second = await repo.append(topic="quotes", key="EUR/USD", event_type="quote", payload={"bid": "1.1"}, now=NOW)
    third = await repo.append(topic="orders", key="acc_1", event_type="canceled", payload=["x"], now=NOW)

    assert is_id(first.id, "evt")
    assert first.seq < second.seq < third.seq
    assert await repo.last_seq() == third.seq
    assert await repo.read_since(0) == [first, second, third]
    assert await repo.read_since(first.seq) == [second, third]
    assert await repo.read_since(0, limit=2) == [first, second]
    assert await repo.read_since(0, topic="orders") == [first, third]
    assert await repo.read_since(third.seq) == []
    assert await repo.get(second.id) == second

    assert first.decode(Filled) == Filled("o1", Decimal("0.1"))  # Decimals travel as exact strings
    assert second.decode() == {"bid": "1.1"}
    assert first.created_at == NOW


@pytest.mark.parametrize(
    "statement",
    ["UPDATE event_log SET topic = 'rewritten'", "DELETE FROM event_log"],
    ids=["update", "delete"],
)
async def test_the_database_refuses_changes_to_events(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], statement: str
) -> None:
    async with sessions() as session:
        await EventRepository(session).append(topic="t", key="k", event_type="e", payload={}, now=NOW)
        await session.commit()
    async with engine.connect() as conn:
        with pytest.raises(IntegrityError, match="append-only"):
            await conn.execute(text(statement))
        await conn.rollback()
    async with sessions() as session:
        assert len(await EventRepository(session).read_since(0)) == 1


async def test_wholesale_emptying_is_refused(engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
    # PostgreSQL's TRUNCATE skips row triggers (a statement trigger catches it); SQLite's equivalent
    # is an unqualified DELETE, whose truncate optimization SQLite turns off when triggers exist.
    async with sessions() as session:
        await EventRepository(session).append(topic="t", key="k", event_type="e", payload={}, now=NOW)
        await session.commit()
    statement = "TRUNCATE event_log" if engine.dialect.name == "postgresql" else "DELETE FROM event_log"
    async with engine.connect() as conn:
        with pytest.raises(IntegrityError, match="append-only"):
            await conn.execute(text(statement))
        await conn.rollback()


async def test_a_second_appender_waits_for_the_first_to_commit(sessions: async_sessionmaker[AsyncSession]) -> None:
    # What makes read_since safe: an event with a higher seq never becomes visible before a lower one.
    async with sessions() as first, sessions() as second:
        early = await EventRepository(first).append(topic="t", key="k", event_type="early", payload={}, now=NOW)
        late_task = asyncio.create_task(
            EventRepository(second).append(topic="t", key="k", event_type="late", payload={}, now=NOW)
        )
        await asyncio.sleep(0.3)
        assert not late_task.done()
        await first.commit()
        late = await late_task
        await second.commit()
    assert late.seq > early.seq


async def test_read_limit_is_checked(session: AsyncSession) -> None:
    with pytest.raises(ValueError, match="limit"):
        await EventRepository(session).read_since(0, limit=0)
