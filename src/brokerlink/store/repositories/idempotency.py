"""Idempotency keys: claim a key for a request, keep its first response, replay it (ADR 0026).

The unique index on ``(owner, key_hash)`` is what makes a key single-use under concurrency: of two
requests inserting the same key at once, the database lets exactly one in (``ON CONFLICT DO
NOTHING``), so exactly one runs. Flushes, never commits: the caller owns the transaction, and must
commit a claim before it runs the request (the claim is what other requests see).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

import msgspec
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.kit.ids import new_id
from brokerlink.store.models_idempotency import IdempotencyKeyRow
from brokerlink.store.repositories._common import rowcount, upsert_insert


class StoredResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The first response to a request, as a retry gets it again."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """What a request made with a key may do.

    ``run``: the key is this request's (``row_id``); run it and :meth:`IdempotencyRepository.complete`
    or :meth:`~IdempotencyRepository.release` the row. ``replay``: an identical request finished;
    answer with ``response``. ``mismatch``: the key was used for a different request. ``busy``: an
    identical request is still running.
    """

    outcome: Literal["run", "replay", "mismatch", "busy"]
    row_id: str | None = None
    response: StoredResponse | None = None


class IdempotencyRepository:
    """Queries on ``idempotency_keys``. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim(
        self, *, owner: str, key_hash: str, request_hash: str, now: datetime, lease: timedelta, ttl: timedelta
    ) -> Claim:
        """Claim ``key_hash`` for ``owner``'s request ``request_hash``, or say why not.

        An expired key is forgotten first (the key starts over). A request that claimed a key and
        neither completed nor released it within ``lease`` (its process died) gives it up to the next.
        """
        await self.session.execute(
            delete(IdempotencyKeyRow).where(
                IdempotencyKeyRow.owner == owner,
                IdempotencyKeyRow.key_hash == key_hash,
                IdempotencyKeyRow.expires_at <= now,
            )
        )
        row_id = new_id("idk")
        insert = (
            upsert_insert(self.session, IdempotencyKeyRow.__table__)
            .values(
                id=row_id,
                owner=owner,
                key_hash=key_hash,
                request_hash=request_hash,
                status=None,
                response_headers=None,
                response_body=None,
                created_at=now,
                locked_until=now + lease,
                expires_at=now + ttl,
            )
            .on_conflict_do_nothing(index_elements=["owner", "key_hash"])
        )
        if rowcount(await self.session.execute(insert)) == 1:
            return Claim(outcome="run", row_id=row_id)
        stmt = select(IdempotencyKeyRow).where(IdempotencyKeyRow.owner == owner, IdempotencyKeyRow.key_hash == key_hash)
        row = (await self.session.execute(stmt.execution_options(populate_existing=True))).scalar_one()
        if row.request_hash != request_hash:
            return Claim(outcome="mismatch")
        if row.status is not None:
            return Claim(outcome="replay", response=_stored(row))
        if row.locked_until is not None and row.locked_until <= now:
            taken = await self.session.execute(
                update(IdempotencyKeyRow)
                .where(
                    IdempotencyKeyRow.id == row.id,
                    IdempotencyKeyRow.status.is_(None),
                    IdempotencyKeyRow.locked_until <= now,
                )
                .values(locked_until=now + lease)
            )
            if rowcount(taken) == 1:
                return Claim(outcome="run", row_id=row.id)
        return Claim(outcome="busy")

    async def complete(self, row_id: str, response: StoredResponse) -> None:
        """Keep ``response`` as the answer to every retry of the claimed request."""
        await self.session.execute(
            update(IdempotencyKeyRow)
            .where(IdempotencyKeyRow.id == row_id)
            .values(
                status=response.status,
                response_headers=msgspec.json.encode(response.headers).decode(),
                response_body=response.body,
                locked_until=None,
            )
        )

    async def release(self, row_id: str) -> None:
        """Give the key up unanswered (the request failed in a way a retry may fix): the next request runs."""
        await self.session.execute(
            delete(IdempotencyKeyRow).where(IdempotencyKeyRow.id == row_id, IdempotencyKeyRow.status.is_(None))
        )

    async def get(self, owner: str, key_hash: str) -> IdempotencyKeyRow | None:
        """The row of ``owner``'s key, whatever its state."""
        stmt = select(IdempotencyKeyRow).where(IdempotencyKeyRow.owner == owner, IdempotencyKeyRow.key_hash == key_hash)
        return (await self.session.execute(stmt)).scalar_one_or_none()


def _stored(row: IdempotencyKeyRow) -> StoredResponse:
    headers = msgspec.json.decode(row.response_headers or "[]", type=list[tuple[str, str]])
    return StoredResponse(status=row.status or 0, headers=headers, body=row.response_body or b"")
