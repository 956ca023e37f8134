"""Data retention: delete what the operator's policy no longer wants kept, in small transactions.

Policies are per data kind, in days, 0 = keep forever (settings ``retention_*_days``; ADR 0017):

``sessions``
    Sessions that expired, or were revoked, more than N days ago. Live sessions are never touched.
``orders``
    Terminal orders (filled, canceled, expired, rejected) last updated more than N days ago, with
    their fills, and fills of no stored order (placed elsewhere) older than N days. An order is kept
    while a copy intent that is still in flight, or whose copy link is still open, points at it.
``copy``
    Copy events older than N days, and processed copy signals: older than N days, with no intent
    still in flight and no open link pointing at them through an intent.
``events``
    Event log rows older than N days. The log is append-only by triggers; see :func:`_purge_events`.
``idempotency_keys``
    Idempotency keys past their own expiry (``idempotency_ttl_seconds``, ADR 0026), whatever the policy.
``audit``
    The audit trail, through :func:`brokerlink.security.audit.purge_before`, which deletes the old
    records and writes a signed checkpoint that becomes the chain's new start. Last, so that what the
    other kinds deleted is audited before the audit horizon moves.

Nothing brokerlink stores is market data (quotes and bars are fetched from the venue on request and
never written), so there is no market-data kind.

Every kind is deleted in batches of at most ``batch_size`` rows, each batch its own transaction, so
a purge never holds the write lock (SQLite) or row locks (PostgreSQL) for long, and an interrupted
purge has lost nothing and simply continues next time. Any table, including ones added after this
module, whose foreign key points at a row keeps that row (:func:`_unreferenced`): retention never
deletes something another record still names, it waits until that record is gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import msgspec
from sqlalchemy import ColumnElement, Table, and_, delete, exists, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.config import Settings
from brokerlink.domain.copy import IntentStatus, LinkStatus
from brokerlink.domain.enums import OrderStatus
from brokerlink.kit.clock import Clock
from brokerlink.kit.periodic import Periodic
from brokerlink.logs import get_logger
from brokerlink.security.audit import Actor, record
from brokerlink.security.audit_sign import AuditSigner
from brokerlink.security.audit_verify import purge_before
from brokerlink.store.db import Database
from brokerlink.store.models import (
    Base,
    CopyEventRow,
    CopyIntentRow,
    CopyLinkRow,
    CopySignalRow,
    EventRow,
    FillRow,
    OrderRow,
    SessionRow,
)
from brokerlink.store.models_idempotency import IdempotencyKeyRow

RETENTION_ACTOR = Actor(kind="system", id="retention")
"""The audit actor of the scheduled purge and of ``brokerlink retention purge``."""

_log = get_logger("brokerlink.retention")

Kind = Literal["sessions", "orders", "fills", "copy_events", "copy_signals", "events", "idempotency_keys", "audit"]
KINDS: tuple[Kind, ...] = (
    "sessions", "orders", "fills", "copy_events", "copy_signals", "events", "idempotency_keys", "audit",
)  # fmt: skip
"""Every count a purge reports, in the order it deletes them (audit last)."""

_TERMINAL_ORDERS = tuple(status.value for status in OrderStatus if status.is_terminal)
_IN_FLIGHT_INTENTS = (IntentStatus.PENDING.value, IntentStatus.SENT.value, IntentStatus.ACKNOWLEDGED.value)

# The event log's append-only triggers, as migration 0001 creates them. Only the row-level DELETE
# trigger is dropped and re-created (PostgreSQL keeps its function and its TRUNCATE trigger).
_EVENT_TRIGGER_OFF = {
    "postgresql": "DROP TRIGGER event_log_append_only ON event_log",
    "sqlite": "DROP TRIGGER event_log_no_delete",
}
_EVENT_TRIGGER_ON = {
    "postgresql": (
        "CREATE TRIGGER event_log_append_only BEFORE UPDATE OR DELETE ON event_log"
        " FOR EACH ROW EXECUTE FUNCTION event_log_append_only()"
    ),
    "sqlite": (
        "CREATE TRIGGER event_log_no_delete BEFORE DELETE ON event_log"
        " BEGIN SELECT RAISE(ABORT, 'event_log is append-only: DELETE refused'); END"
    ),
}


class RetentionPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Days to keep each data kind (0 = forever) and the rows per transaction."""

    sessions_days: int = 0
    orders_days: int = 0
    events_days: int = 0
    copy_days: int = 0
    audit_days: int = 0
    batch_size: int = 1000

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        """The policy the ``retention_*`` settings describe."""
        return cls(
            sessions_days=settings.retention_sessions_days,
            orders_days=settings.retention_orders_days,
            events_days=settings.retention_events_days,
            copy_days=settings.retention_copy_days,
            audit_days=settings.retention_audit_days,
            batch_size=settings.retention_batch_size,
        )


class PurgeReport(msgspec.Struct, frozen=True, kw_only=True):
    """What a purge deleted (or, dry, would delete), per kind; kinds kept forever are absent from ``cutoffs``."""

    dry_run: bool
    counts: dict[str, int]
    cutoffs: dict[str, datetime]

    @property
    def total(self) -> int:
        """Rows deleted (or that would be) in all."""
        return sum(self.counts.values())


async def purge(
    database: Database,
    clock: Clock,
    policy: RetentionPolicy,
    *,
    dry_run: bool = False,
    audit_signer: AuditSigner | None = None,
    audit_export: Path | None = None,
) -> PurgeReport:
    """Delete (or with ``dry_run`` count) everything the policy has expired, kind by kind, in batches.

    ``audit_signer`` signs the checkpoint the audit purge writes; without one the audit kind is
    skipped (with a warning) whatever its policy says, because an unsigned new start would leave the
    chain unverifiable.
    """
    now = clock.now()
    counts: dict[str, int] = dict.fromkeys(KINDS, 0)
    cutoffs: dict[str, datetime] = {}

    def cutoff(kind: str, days: int) -> datetime | None:
        if days <= 0:
            return None
        cutoffs[kind] = now - timedelta(days=days)
        return cutoffs[kind]

    batch = policy.batch_size
    if (at := cutoff("sessions", policy.sessions_days)) is not None:
        counts["sessions"] = await _purge_rows(
            database, _table(SessionRow), _expired_sessions(at), batch, dry_run, now=now
        )
    if (at := cutoff("orders", policy.orders_days)) is not None:
        counts["orders"], counts["fills"] = await _purge_orders(database, at, batch, dry_run, now)
    if (at := cutoff("copy", policy.copy_days)) is not None:
        counts["copy_events"] = await _purge_rows(
            database, _table(CopyEventRow), [CopyEventRow.created_at < at], batch, dry_run, now=now
        )
        counts["copy_signals"] = await _purge_rows(
            database, _table(CopySignalRow), _processed_signals(at), batch, dry_run, now=now
        )
    if (at := cutoff("events", policy.events_days)) is not None:
        counts["events"] = await _purge_events(database, at, batch, dry_run, now)
    # Idempotency keys carry their own expiry (``idempotency_ttl_seconds``): always purged once past it.
    counts["idempotency_keys"] = await _purge_rows(
        database, _table(IdempotencyKeyRow), [IdempotencyKeyRow.expires_at <= now], batch, dry_run, now=now
    )
    if (at := cutoff("audit", policy.audit_days)) is not None:
        counts["audit"] = await _purge_audit(
            database, at, now=now, signer=audit_signer, dry_run=dry_run, export_to=audit_export
        )
    report = PurgeReport(dry_run=dry_run, counts=counts, cutoffs=cutoffs)
    _log.info("retention_purge", dry_run=dry_run, total=report.total, **counts)
    return report


# --- predicates ----------------------------------------------------------------------------------------


def _table(row_type: type[Base]) -> Table:
    table = row_type.__table__
    if not isinstance(table, Table):  # pragma: no cover - every mapped class here has a Table
        raise TypeError(f"{row_type.__name__} is not mapped to a table")
    return table


def _unreferenced(table: Table, *, handled: Sequence[tuple[str, str]] = ()) -> list[ColumnElement[bool]]:
    """``NOT EXISTS`` for every foreign key in the schema that points at ``table``, except ``handled`` ones.

    ``handled`` names ``(table, column)`` references the caller deals with itself (a ``SET NULL`` it
    is fine to trigger, or a reference it filters more precisely). Every other reference, including
    those of tables added later, keeps the row: deleting it would fail (``RESTRICT``), cascade into
    records whose owners did not ask for it, or silently orphan them.
    """
    return [
        ~exists().where(fk.parent == fk.column)
        for other in Base.metadata.tables.values()
        for fk in other.foreign_keys
        if fk.column.table is table and (other.name, fk.parent.name) not in handled
    ]


def _expired_sessions(at: datetime) -> list[ColumnElement[bool]]:
    return [
        or_(SessionRow.expires_at < at, SessionRow.revoked_at < at),
        *_unreferenced(_table(SessionRow)),
    ]


def _still_wanted_by_copy(intent_column: Any, row_column: Any) -> ColumnElement[bool]:
    """Some intent that names the row is in flight, or belongs to a copy link that is still open."""
    open_link = exists().where(CopyLinkRow.id == CopyIntentRow.link_id, CopyLinkRow.status == LinkStatus.OPEN.value)
    return exists().where(
        intent_column == row_column,
        or_(CopyIntentRow.status.in_(_IN_FLIGHT_INTENTS), open_link),
    )


def _expired_orders(at: datetime) -> list[ColumnElement[bool]]:
    return [
        OrderRow.status.in_(_TERMINAL_ORDERS),
        OrderRow.updated_at < at,
        ~_still_wanted_by_copy(CopyIntentRow.order_id, OrderRow.id),
        *_unreferenced(_table(OrderRow), handled=[("fills", "order_id"), ("copy_intents", "order_id")]),
    ]


def _expired_loose_fills(at: datetime) -> list[ColumnElement[bool]]:
    return [FillRow.order_id.is_(None), FillRow.ts < at, *_unreferenced(_table(FillRow))]


def _processed_signals(at: datetime) -> list[ColumnElement[bool]]:
    return [
        CopySignalRow.created_at < at,
        ~_still_wanted_by_copy(CopyIntentRow.signal_id, CopySignalRow.id),
        *_unreferenced(_table(CopySignalRow), handled=[("copy_intents", "signal_id"), ("copy_events", "signal_id")]),
    ]


# --- batched deletes -----------------------------------------------------------------------------------


async def _count(database: Database, table: Table, where: Sequence[ColumnElement[bool]]) -> int:
    async with database.session() as session:
        stmt = select(func.count()).select_from(table).where(and_(*where))
        return int((await session.execute(stmt)).scalar_one())


async def _delete_batch(session: AsyncSession, table: Table, where: Sequence[ColumnElement[bool]], limit: int) -> int:
    """Delete up to ``limit`` rows matching ``where``, oldest ids first; returns how many."""
    key = table.c.id
    ids = list((await session.execute(select(key).where(and_(*where)).order_by(key).limit(limit))).scalars())
    if not ids:
        return 0
    # The predicate again: a row that stopped matching between the two statements stays.
    await session.execute(delete(table).where(key.in_(ids), *where).execution_options(synchronize_session=False))
    return len(ids)


async def _purge_rows(
    database: Database, table: Table, where: Sequence[ColumnElement[bool]], batch: int, dry_run: bool, *, now: datetime
) -> int:
    if dry_run:
        return await _count(database, table, where)
    total = 0
    while True:
        async with database.session() as session:
            deleted = await _delete_batch(session, table, where, batch)
            await _recorded(session, table.name, deleted, now)
            await session.commit()
        total += deleted
        if deleted < batch:
            return total
        await asyncio.sleep(0)  # let the server's other work in between batches


async def _purge_orders(database: Database, at: datetime, batch: int, dry_run: bool, now: datetime) -> tuple[int, int]:
    """Expired orders with their fills (one batch of orders and their fills per transaction), then loose fills."""
    orders_where = _expired_orders(at)
    loose_where = _expired_loose_fills(at)
    if dry_run:
        async with database.session() as session:
            expired = select(OrderRow.id).where(and_(*orders_where))
            fills_stmt = select(func.count()).select_from(FillRow).where(FillRow.order_id.in_(expired))
            order_fills = int((await session.execute(fills_stmt)).scalar_one())
        orders = await _count(database, _table(OrderRow), orders_where)
        return orders, order_fills + await _count(database, _table(FillRow), loose_where)
    orders = fills = 0
    while True:
        async with database.session() as session:
            ids = list(
                (
                    await session.execute(
                        select(OrderRow.id).where(and_(*orders_where)).order_by(OrderRow.id).limit(batch)
                    )
                ).scalars()
            )
            if ids:
                fills_where = [FillRow.order_id.in_(ids), *_unreferenced(_table(FillRow))]
                result = await session.execute(
                    delete(FillRow).where(*fills_where).execution_options(synchronize_session=False)
                )
                fills += _rowcount(result)
                result = await session.execute(
                    delete(OrderRow)
                    .where(OrderRow.id.in_(ids), *orders_where)
                    .execution_options(synchronize_session=False)
                )
                orders += _rowcount(result)
                await _recorded(session, "orders", len(ids), now)
            await session.commit()
        if len(ids) < batch:
            break
        await asyncio.sleep(0)
    return orders, fills + await _purge_rows(database, _table(FillRow), loose_where, batch, dry_run=False, now=now)


async def _purge_events(database: Database, at: datetime, batch: int, dry_run: bool, now: datetime) -> int:
    """Delete old event log rows: the one sanctioned way around its append-only triggers.

    Each batch is one transaction that drops the row-level DELETE trigger, deletes, and re-creates
    the trigger before committing. DDL is transactional on both databases, so no other transaction
    ever sees the log without its trigger: on PostgreSQL ``DROP TRIGGER`` takes an exclusive lock on
    ``event_log`` until the commit (appenders wait for one batch), and on SQLite writers are
    serialized anyway. If anything fails, the rollback restores the trigger with the rows. The rows
    go strictly oldest first (by ``seq``), so readers following the log from a recent position are
    unaffected; a reader resuming from a position older than the horizon finds the log starting later.
    """
    where = [EventRow.created_at < at]
    if dry_run:
        return await _count(database, _table(EventRow), where)
    dialect = database.dialect
    total = 0
    while True:
        async with database.session() as session:
            seqs = list(
                (
                    await session.execute(select(EventRow.seq).where(*where).order_by(EventRow.seq).limit(batch))
                ).scalars()
            )
            if seqs:
                await session.execute(text(_EVENT_TRIGGER_OFF[dialect]))
                result = await session.execute(
                    delete(EventRow)
                    .where(EventRow.seq <= seqs[-1], *where)
                    .execution_options(synchronize_session=False)
                )
                await session.execute(text(_EVENT_TRIGGER_ON[dialect]))
                total += _rowcount(result)
                await _recorded(session, "event_log", _rowcount(result), now)
            await session.commit()
        if len(seqs) < batch:
            return total
        await asyncio.sleep(0)


async def _purge_audit(
    database: Database,
    at: datetime,
    *,
    now: datetime,
    signer: AuditSigner | None,
    dry_run: bool,
    export_to: Path | None,
) -> int:
    """The audit kind, through the audit trail's own purge: it verifies the chain, writes a signed anchor
    checkpoint (the chain's new start) and deletes the prefix, in one transaction. A dry run counts nothing
    here (the audit trail offers no count), and reports 0."""
    if signer is None:
        _log.warning("retention_audit_skipped", reason="no checkpoint signer configured")
        return 0
    if dry_run:
        return 0
    async with database.session() as session:
        deleted = await purge_before(session, cutoff=at, signer=signer, now=now, export_to=export_to)
        await session.commit()
    return int(deleted)


async def _recorded(session: AsyncSession, table: str, rows: int, now: datetime) -> None:
    """The audit record of one purge batch, in the batch's transaction (nothing deleted, nothing recorded)."""
    if rows:
        await record(
            session, actor=RETENTION_ACTOR, action="retention.purge", target=f"table:{table}", now=now,
            details={"rows": rows},
        )  # fmt: skip


def _rowcount(result: object) -> int:
    count = getattr(result, "rowcount", 0)
    return int(count) if isinstance(count, int) and count > 0 else 0


class RetentionService:
    """The scheduled purge: one :func:`purge` every ``every_s`` seconds (0 disables); a failed run is logged."""

    def __init__(
        self,
        database: Database,
        clock: Clock,
        policy: RetentionPolicy,
        *,
        every_s: float,
        audit_signer: AuditSigner | None = None,
        audit_export: Path | None = None,
    ) -> None:
        self.audit_export = audit_export
        self.database = database
        self.clock = clock
        self.policy = policy
        self.every_s = every_s
        self.audit_signer = audit_signer
        self.schedule = Periodic("retention_purge", every_s, self._run_once)

    async def _run_once(self) -> None:
        await purge(
            self.database, self.clock, self.policy, audit_signer=self.audit_signer, audit_export=self.audit_export
        )

    @property
    def runs(self) -> int:
        """Scheduled purges run so far."""
        return self.schedule.runs

    def start(self) -> None:
        """Start the schedule (nothing when disabled; the first purge after one period)."""
        self.schedule.start()

    async def stop(self) -> None:
        """Stop the schedule; a batch in progress is rolled back, and the next run continues where this stopped."""
        await self.schedule.stop()

    @classmethod
    def from_settings(
        cls, settings: Settings, database: Database, clock: Clock, *, audit_signer: AuditSigner | None = None
    ) -> RetentionService:
        """The service the settings describe."""
        return cls(
            database,
            clock,
            RetentionPolicy.from_settings(settings),
            every_s=settings.retention_purge_every_s,
            audit_signer=audit_signer if audit_signer is not None else AuditSigner.from_settings(settings),
            audit_export=settings.audit_checkpoint_export,
        )
