"""Queries on the audit trail's tables. Flushes, never commits; the chain logic is in brokerlink.security.audit.

Statements that run on every audited write (:meth:`AuditRepository.read_head`,
:meth:`~AuditRepository.append_after`) are Core or text statements, not ORM units of work: they
are on the hot path of every state change, and each round trip to SQLite's thread counts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import msgspec
from sqlalchemy import Select, Table, bindparam, delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.store.models_audit import AuditCheckpointKind, AuditCheckpointRow, AuditHeadRow, AuditRecordRow
from brokerlink.store.repositories._common import check_limit, rowcount, upsert_insert
from brokerlink.store.types import UTCDateTime

GENESIS_HASH = "0" * 64
"""What the first record chains to (and what the migration seeds ``audit_head`` with)."""

_HEAD_ID = 1


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """Filters of a trail listing; ``None`` means "any". ``action_prefix`` matches ``auth.`` or ``auth.login``."""

    actor_id: str | None = None
    action_prefix: str | None = None
    target: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class StoredRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One audit record as stored (``details`` is its canonical JSON text)."""

    seq: int
    at: datetime
    actor_kind: str
    actor_id: str
    action: str
    target: str
    outcome: str
    request_id: str | None
    source_ip: str | None
    details: str
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class RecordPage:
    """One page of records, newest first; ``next_before`` is the cursor of the next page (None on the last)."""

    items: Sequence[StoredRecord]
    next_before: int | None


_RECORDS = cast("Table", AuditRecordRow.__table__)
_HEAD = cast("Table", AuditHeadRow.__table__)
_RECORD_COLUMNS = ", ".join(StoredRecord.__struct_fields__)
# Text, not a Core insert().from_select(): one fixed statement, compiled once, on the hot path of
# every audited change. Bound through the column types, so ``at`` is stored exactly as the ORM would.
_APPEND_AFTER = text(
    f"INSERT INTO audit_records ({_RECORD_COLUMNS}) "  # noqa: S608 (column names are constants)
    f"SELECT {', '.join(':' + name for name in StoredRecord.__struct_fields__)} "
    "WHERE EXISTS (SELECT 1 FROM audit_head WHERE id = 1 AND seq = :prev_seq AND hash = :head_hash)"
).bindparams(bindparam("at", type_=UTCDateTime()))
_COLUMNS = tuple(StoredRecord.__struct_fields__)


async def _records(session: AsyncSession, stmt: Select[Any]) -> list[StoredRecord]:
    # Core rows, not ORM entities: a long walk must not fill the caller's session's identity map.
    rows = (await session.execute(stmt)).mappings()
    return [StoredRecord(**{name: row[name] for name in _COLUMNS}) for row in rows]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class AuditRepository:
    """The audit tables' queries. UPDATE and DELETE of records are refused by the database (see 0007)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- the chain head (hot path) -----------------------------------------------------------

    async def read_head(self, *, lock: bool) -> tuple[int, str] | None:
        """The head row's ``(sequence, hash)``, or None when there is no head row.

        ``lock`` (PostgreSQL): ``SELECT ... FOR UPDATE``, held until the transaction ends, so
        concurrent writers queue here and never chain to the same record. SQLite has no row locks;
        there :meth:`append_after` re-checks the head under the database's write lock instead.
        """
        stmt = select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == _HEAD_ID)
        if lock:
            stmt = stmt.with_for_update()
        row = (await self.session.execute(stmt)).one_or_none()
        return None if row is None else (int(row[0]), str(row[1]))

    async def create_head(self) -> None:
        """Create the head row where it is missing (a schema made by ``create_all``, or emptied by TRUNCATE).

        It starts at the trail's last record, else at the latest purge anchor, else at genesis.
        ``ON CONFLICT DO NOTHING``: when two writers race here, the second waits and keeps the first's.
        """
        last = (
            await self.session.execute(
                select(AuditRecordRow.seq, AuditRecordRow.hash).order_by(AuditRecordRow.seq.desc()).limit(1)
            )
        ).one_or_none()
        if last is None:
            anchor = await self.latest_checkpoint(AuditCheckpointKind.ANCHOR)
            start = (0, GENESIS_HASH) if anchor is None else (anchor.sequence, anchor.head_hash)
        else:
            start = (int(last[0]), str(last[1]))
        stmt = upsert_insert(self.session, AuditHeadRow).values(id=_HEAD_ID, seq=start[0], hash=start[1])
        await self.session.execute(stmt.on_conflict_do_nothing(index_elements=["id"]))

    async def append_after(self, values: dict[str, Any], *, prev_seq: int, prev_hash: str) -> bool:
        """Insert one record if the chain still ends at ``(prev_seq, prev_hash)``; whether it was inserted.

        One statement: ``INSERT ... SELECT ... WHERE`` the head row still says so. On SQLite the
        statement runs under the write lock, so the check and the insert are atomic across
        processes; 0007's ``AFTER INSERT`` trigger moves the head to the new record in the same
        statement. False means another writer got there first: read the head again and retry.
        """
        result = await self.session.execute(_APPEND_AFTER, {**values, "prev_seq": prev_seq, "head_hash": prev_hash})
        return rowcount(result) == 1

    async def append_chained(self, rows: list[dict[str, Any]], *, expect: tuple[int, str]) -> bool:
        """Insert records already chained to the head (each row carries its own ``prev_seq`` and
        ``head_hash``) with one batched statement; whether the head then stands at ``expect``.

        The caller read the head in this transaction (under the lock on PostgreSQL, under the write
        lock it already holds on SQLite), so nothing can move it in between; the check after is a
        guard, and a False means the caller's transaction must not commit.
        """
        await self.session.execute(_APPEND_AFTER, rows)
        return await self.read_head(lock=False) == expect

    async def head(self) -> tuple[int, str]:
        """The last record's sequence and hash, from the records themselves (not the head row's cache).

        After a purge that removed every record, the latest anchor; with nothing at all, genesis.
        """
        last = (
            await self.session.execute(
                select(AuditRecordRow.seq, AuditRecordRow.hash).order_by(AuditRecordRow.seq.desc()).limit(1)
            )
        ).one_or_none()
        if last is not None:
            return int(last[0]), str(last[1])
        anchor = await self.latest_checkpoint(AuditCheckpointKind.ANCHOR)
        return (0, GENESIS_HASH) if anchor is None else (anchor.sequence, anchor.head_hash)

    # --- records ---------------------------------------------------------------------------

    async def get(self, seq: int) -> StoredRecord | None:
        """One record by sequence."""
        rows = await _records(self.session, select(_RECORDS).where(AuditRecordRow.seq == seq))
        return rows[0] if rows else None

    async def count(self) -> int:
        """How many records the trail holds."""
        return int((await self.session.execute(select(func.count()).select_from(AuditRecordRow))).scalar_one())

    async def walk(self, *, after: int, batch: int = 2000) -> AsyncIterator[StoredRecord]:
        """Every record with ``seq > after``, in sequence order, read in batches (keyset, bounded memory)."""
        while True:
            stmt = select(_RECORDS).where(AuditRecordRow.seq > after).order_by(AuditRecordRow.seq).limit(batch)
            rows = await _records(self.session, stmt)
            for row in rows:
                yield row
            if len(rows) < batch:
                return
            after = rows[-1].seq

    async def page(self, where: RecordFilter, *, limit: int, before: int | None) -> RecordPage:
        """One page of records matching ``where``, newest first; ``before`` is the previous page's cursor."""
        check_limit(limit)
        stmt = select(_RECORDS)
        if where.actor_id is not None:
            stmt = stmt.where(AuditRecordRow.actor_id == where.actor_id)
        if where.action_prefix is not None:
            stmt = stmt.where(AuditRecordRow.action.like(_escape_like(where.action_prefix) + "%", escape="\\"))
        if where.target is not None:
            stmt = stmt.where(AuditRecordRow.target == where.target)
        if where.outcome is not None:
            stmt = stmt.where(AuditRecordRow.outcome == where.outcome)
        if where.since is not None:
            stmt = stmt.where(AuditRecordRow.at >= where.since)
        if where.until is not None:
            stmt = stmt.where(AuditRecordRow.at < where.until)
        if before is not None:
            stmt = stmt.where(AuditRecordRow.seq < before)
        rows = await _records(self.session, stmt.order_by(AuditRecordRow.seq.desc()).limit(limit + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        return RecordPage(items=rows, next_before=rows[-1].seq if more else None)

    async def in_range(
        self, *, since: datetime | None, until: datetime | None, batch: int = 2000
    ) -> AsyncIterator[StoredRecord]:
        """Records with ``since <= at < until`` in sequence order (for export), in batches."""
        after = 0
        while True:
            stmt = select(_RECORDS).where(AuditRecordRow.seq > after)
            if since is not None:
                stmt = stmt.where(AuditRecordRow.at >= since)
            if until is not None:
                stmt = stmt.where(AuditRecordRow.at < until)
            rows = await _records(self.session, stmt.order_by(AuditRecordRow.seq).limit(batch))
            for row in rows:
                yield row
            if len(rows) < batch:
                return
            after = rows[-1].seq

    async def first_at_or_after(self, cutoff: datetime) -> int | None:
        """The lowest sequence whose time is at or after ``cutoff`` (None if every record is older)."""
        stmt = select(func.min(AuditRecordRow.seq)).where(AuditRecordRow.at >= cutoff)
        value = (await self.session.execute(stmt)).scalar_one_or_none()
        return None if value is None else int(value)

    async def delete_through(self, last_seq: int, *, after: int, batch: int) -> int:
        """Delete records ``after < seq <= last_seq`` in batches of ``batch``; returns how many went.

        The database allows it only at or below the latest anchor checkpoint (0007's triggers).
        """
        deleted = 0
        low = after
        while low < last_seq:
            high = min(low + batch, last_seq)
            result = await self.session.execute(delete(_RECORDS).where(_RECORDS.c.seq > low, _RECORDS.c.seq <= high))
            deleted += rowcount(result)
            low = high
        return deleted

    # --- checkpoints -----------------------------------------------------------------------

    async def add_checkpoint(self, row: AuditCheckpointRow) -> None:
        """Append a checkpoint."""
        self.session.add(row)
        await self.session.flush()

    async def checkpoints(self) -> list[AuditCheckpointRow]:
        """Every checkpoint, by sequence then time."""
        stmt = select(AuditCheckpointRow).order_by(AuditCheckpointRow.sequence, AuditCheckpointRow.created_at)
        return list((await self.session.execute(stmt)).scalars())

    async def checkpoints_in_range(self, *, since: datetime | None, until: datetime | None) -> list[AuditCheckpointRow]:
        """Checkpoints with ``since <= created_at < until``, oldest first."""
        stmt = select(AuditCheckpointRow)
        if since is not None:
            stmt = stmt.where(AuditCheckpointRow.created_at >= since)
        if until is not None:
            stmt = stmt.where(AuditCheckpointRow.created_at < until)
        return list((await self.session.execute(stmt.order_by(AuditCheckpointRow.created_at))).scalars())

    async def latest_checkpoint(self, kind: AuditCheckpointKind | None = None) -> AuditCheckpointRow | None:
        """The checkpoint with the highest sequence (of ``kind``, if given)."""
        stmt = select(AuditCheckpointRow)
        if kind is not None:
            stmt = stmt.where(AuditCheckpointRow.kind == kind.value)
        stmt = stmt.order_by(AuditCheckpointRow.sequence.desc(), AuditCheckpointRow.created_at.desc()).limit(1)
        return (await self.session.execute(stmt)).scalar_one_or_none()
