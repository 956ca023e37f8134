"""The append-only event log: ``append`` and ``read_since``. Returns frozen :class:`EventRecord` objects.

``seq`` orders the log, and a reader that has seen everything up to ``seq`` N asks for what comes
after N. That only works if a committed event can never appear *behind* one a reader has already
passed. On SQLite writers are serialized anyway. On PostgreSQL two transactions could take seq 11
and 12 and commit 12 first; a reader would then skip 11 forever. So appends on PostgreSQL take a
transaction-scoped advisory lock: appenders queue until the previous appender commits, and seq
order is commit order. Keep transactions that append short, and append late in them.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.kit.ids import new_id
from brokerlink.store.models import EventRow
from brokerlink.store.repositories._common import check_limit, dialect_name

# Arbitrary constant naming "the event log append lock" among PostgreSQL advisory locks.
_APPEND_LOCK_KEY = 0x62726B6C_65766C67  # "brklevlg"


class EventRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One stored event. ``payload`` is its JSON text; decode it with the type you expect."""

    seq: int
    id: str
    topic: str
    key: str
    type: str
    payload: str
    created_at: datetime

    def decode(self, into: builtins.type[Any] = object) -> Any:
        """The payload decoded from JSON, optionally into a msgspec type (``into=MyEvent``)."""
        return msgspec.json.decode(self.payload, type=into)


def _record(row: EventRow) -> EventRecord:
    return EventRecord(
        seq=row.seq,
        id=row.id,
        topic=row.topic,
        key=row.key,
        type=row.type,
        payload=row.payload,
        created_at=row.created_at,
    )


class EventRepository:
    """Queries on ``event_log``. Flushes, never commits; the database refuses UPDATE and DELETE."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def append(self, *, topic: str, key: str, event_type: str, payload: object, now: datetime) -> EventRecord:
        """Append an event; ``payload`` is anything msgspec encodes to JSON (structs, dicts, Decimals).

        The record comes back with its ``seq``.
        """
        if dialect_name(self.session) == "postgresql":
            await self.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _APPEND_LOCK_KEY})
        row = EventRow(
            id=new_id("evt"),
            topic=topic,
            key=key,
            type=event_type,
            payload=msgspec.json.encode(payload).decode(),
            created_at=now,
        )
        self.session.add(row)
        await self.session.flush()
        record = _record(row)
        # Nothing may change a stored event; keeping the row out of the session means no one can try.
        self.session.expunge(row)
        return record

    async def read_since(self, seq: int, limit: int = 100, *, topic: str | None = None) -> list[EventRecord]:
        """Events with ``seq`` greater than ``seq`` (0: from the start), oldest first, at most ``limit``."""
        check_limit(limit)
        stmt = select(EventRow).where(EventRow.seq > seq)
        if topic is not None:
            stmt = stmt.where(EventRow.topic == topic)
        stmt = stmt.order_by(EventRow.seq).limit(limit)
        rows = list((await self.session.execute(stmt)).scalars())
        records = [_record(row) for row in rows]
        for row in rows:
            self.session.expunge(row)
        return records

    async def get(self, event_id: str) -> EventRecord | None:
        """The event with this id."""
        row = (await self.session.execute(select(EventRow).where(EventRow.id == event_id))).scalar_one_or_none()
        if row is None:
            return None
        self.session.expunge(row)
        return _record(row)

    async def last_seq(self) -> int:
        """The newest ``seq`` (0 when the log is empty): where a new reader starts to get only new events."""
        return int((await self.session.execute(select(func.coalesce(func.max(EventRow.seq), 0)))).scalar_one())
