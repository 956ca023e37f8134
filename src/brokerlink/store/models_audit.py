"""Tables for the audit trail (issue 6, ADR 0016): the hash-chained records, their signed checkpoints, the head.

Imported at the end of :mod:`brokerlink.store.models`, so ``Base.metadata`` is complete.

* ``audit_records`` is append-only: the migration installs triggers that refuse UPDATE always, and
  DELETE of any record above the latest *anchor* checkpoint (the retention purge writes that signed
  anchor first, then deletes what lies at or below it). ``seq`` is assigned by the writer under the
  head lock, so it is gapless; it is not an autoincrement.
* ``audit_checkpoints``: signed statements "the chain up to ``sequence`` hashes to ``head_hash``".
  Append-only too (UPDATE and DELETE refused).
* ``audit_head``: one row (``id`` = 1) holding the latest sequence and hash, moved by an ``AFTER
  INSERT`` trigger on ``audit_records``. Writers lock it (PostgreSQL: ``FOR UPDATE``) or check it in
  their INSERT (SQLite, under the write lock) to take the next sequence; it is a lock and a cache
  of the chain's end, never trusted by verification.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from brokerlink.store.models import ENUM, ID, Base, one_of

__all__ = ["AuditActorKind", "AuditCheckpointKind", "AuditCheckpointRow", "AuditHeadRow", "AuditOutcome",
           "AuditRecordRow"]  # fmt: skip

HASH = String(64)  # SHA-256, lowercase hex
SEQ = BigInteger().with_variant(Integer(), "sqlite")


class AuditActorKind(StrEnum):
    """Who acted: a signed-in user, an API client acting for a user, or brokerlink itself."""

    USER = "user"
    CLIENT = "client"
    SYSTEM = "system"


class AuditOutcome(StrEnum):
    """How the action ended: done, failed, or refused for want of permission."""

    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


class AuditCheckpointKind(StrEnum):
    """``head``: a periodic signature of the chain's end. ``anchor``: the chain's new start after a purge."""

    HEAD = "head"
    ANCHOR = "anchor"


class AuditRecordRow(Base):
    """One audit record. ``details`` is canonical JSON text (RFC 8785) of a small flat object."""

    __tablename__ = "audit_records"
    __table_args__ = (
        one_of("actor_kind", AuditActorKind),
        one_of("outcome", AuditOutcome),
        Index("ix_audit_records_at", "at"),
        Index("ix_audit_records_actor_id", "actor_id"),
    )

    seq: Mapped[int] = mapped_column(SEQ, primary_key=True, autoincrement=False)
    at: Mapped[datetime]
    actor_kind: Mapped[str] = mapped_column(ENUM)
    actor_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(ENUM)
    request_id: Mapped[str | None] = mapped_column(String(64))
    source_ip: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(HASH)
    hash: Mapped[str] = mapped_column(HASH)


class AuditCheckpointRow(Base):
    """A signed checkpoint: Ed25519 over (kind, sequence, head hash, time, key id); signature in base64."""

    __tablename__ = "audit_checkpoints"
    __table_args__ = (
        one_of("kind", AuditCheckpointKind),
        Index("ix_audit_checkpoints_kind_sequence", "kind", "sequence"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    kind: Mapped[str] = mapped_column(ENUM)
    sequence: Mapped[int] = mapped_column(SEQ)
    head_hash: Mapped[str] = mapped_column(HASH)
    created_at: Mapped[datetime]
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(128))


class AuditHeadRow(Base):
    """The chain's end (one row, ``id`` = 1): what the next record chains to. A lock and a cache only."""

    __tablename__ = "audit_head"
    __table_args__ = (CheckConstraint("id IN (1)", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(SEQ)
    hash: Mapped[str] = mapped_column(HASH)
