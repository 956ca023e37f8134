"""Idempotency keys in the store (SQLite and PostgreSQL): one claim per key, even when requests race."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from brokerlink.store.repositories.idempotency import Claim, IdempotencyRepository, StoredResponse
from tests.store.factories import NOW

LEASE = timedelta(seconds=60)
TTL = timedelta(hours=24)
RESPONSE = StoredResponse(status=201, headers=[("content-type", "application/json")], body=b'{"id": "ord_1"}')


async def claim(
    sessions: async_sessionmaker[AsyncSession],
    key: str = "k" * 64,
    request: str = "r" * 64,
    *,
    at: timedelta = timedelta(),
) -> Claim:
    async with sessions() as s:
        result = await IdempotencyRepository(s).claim(
            owner="user:usr_1", key_hash=key, request_hash=request, now=NOW + at, lease=LEASE, ttl=TTL
        )
        await s.commit()
        return result


async def test_a_key_is_claimed_once_then_replayed(sessions: async_sessionmaker[AsyncSession]) -> None:
    first = await claim(sessions)
    assert first.outcome == "run"
    assert first.row_id is not None
    assert (await claim(sessions)).outcome == "busy"
    assert (await claim(sessions, request="x" * 64)).outcome == "mismatch"
    async with sessions() as s:
        await IdempotencyRepository(s).complete(first.row_id, RESPONSE)
        await s.commit()
    again = await claim(sessions)
    assert (again.outcome, again.response) == ("replay", RESPONSE)
    other_owner = None
    async with sessions() as s:
        other_owner = await IdempotencyRepository(s).claim(
            owner="user:usr_2", key_hash="k" * 64, request_hash="r" * 64, now=NOW, lease=LEASE, ttl=TTL
        )
    assert other_owner.outcome == "run"


async def test_racing_claims_admit_exactly_one(sessions: async_sessionmaker[AsyncSession]) -> None:
    outcomes = await asyncio.gather(*(claim(sessions, key="race" + "0" * 60) for _ in range(5)))
    assert sorted(c.outcome for c in outcomes) == ["busy"] * 4 + ["run"]


async def test_a_released_key_runs_again_and_a_dead_claim_is_taken_over(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    first = await claim(sessions)
    assert first.row_id is not None
    async with sessions() as s:
        await IdempotencyRepository(s).release(first.row_id)
        await s.commit()
    second = await claim(sessions)
    assert second.outcome == "run"
    assert (await claim(sessions, at=LEASE - timedelta(seconds=1))).outcome == "busy"
    taken = await claim(sessions, at=LEASE)
    assert (taken.outcome, taken.row_id) == ("run", second.row_id)


async def test_an_expired_key_starts_over(sessions: async_sessionmaker[AsyncSession]) -> None:
    first = await claim(sessions)
    assert first.row_id is not None
    async with sessions() as s:
        await IdempotencyRepository(s).complete(first.row_id, RESPONSE)
        await s.commit()
    fresh = await claim(sessions, request="other" + "0" * 59, at=TTL)
    assert fresh.outcome == "run"
    assert fresh.row_id != first.row_id
