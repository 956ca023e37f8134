"""The tamper-evident audit trail (issue 6 item 2; SECURITY.md 33-34; ADR 0016): :func:`record`.

Every state change worth auditing calls :func:`record` with the session of the transaction that
makes the change. The record is written in that transaction (executed, never committed), so it
exists exactly when the change does: a rollback takes both away (SECURITY.md 33).

Each record carries a sequence number (gapless, from 1) and ``hash`` = SHA-256 of the RFC 8785
canonical JSON of its fields, ``prev_hash`` (the previous record's ``hash``; the first record's is
:data:`GENESIS_HASH`) included. Changing, removing or reordering any record therefore breaks the
chain from that record on; :mod:`brokerlink.security.audit_verify` finds where. Truncating the end
leaves a valid shorter chain, which is why the head is signed at intervals
(:mod:`brokerlink.security.audit_checkpoint`).

Concurrency: the one-row ``audit_head`` holds the chain's end, and 0007's ``AFTER INSERT`` trigger
moves it with each record. On PostgreSQL a writer reads it ``FOR UPDATE``: the row lock is held
until its transaction ends, so concurrent writers queue there and never take the same sequence or
chain to the same hash. The price: audited transactions on PostgreSQL serialize from their
``record`` call to their commit, so record late in a transaction and keep what follows short; take
other global locks (the event log's) before, never after, the audit record. On SQLite the record
is one ``INSERT ... SELECT ... WHERE`` the head still is what this process last wrote (a cached
guess), which runs under the database's write lock; a stale guess inserts nothing and the head is
read again. One statement per record keeps the trail's cost low (bench/audit.py, ADR 0016).

Details are for ids and small facts, never secrets: keys that look like one (``password``,
``token``, ``secret``, ``key``, ...) are refused with :class:`ValueError`, unless they name an id
(``token_id``, ``key_id``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.store.repositories._common import dialect_name
from brokerlink.store.repositories.audit import GENESIS_HASH, AuditRepository, StoredRecord

__all__ = [
    "GENESIS_HASH",
    "Actor",
    "AuditContext",
    "DetailValue",
    "Entry",
    "canonical_details",
    "canonical_json",
    "record",
    "record_hash",
    "record_many",
]

DetailValue = str | int | bool | None

MAX_DETAILS = 32
MAX_DETAIL_TEXT = 1000
_ACTION_RE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
_DETAIL_KEY_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_SECRET_WORD_RE = re.compile(r"pass(word|wd|phrase)|pwd|secret|token|key|credential|private|otp|cookie")
_ID_SUFFIX_RE = re.compile(r"_ids?$")
_MAX_SAFE_INT = 2**53 - 1  # RFC 8785 numbers are IEEE doubles: larger integers would not round-trip

# SQLite only: the chain's end as this process last wrote it, per engine, so the common case is one
# statement. Only a guess: the INSERT re-checks it against the head row under the write lock, and a
# stale guess (another process wrote, or our transaction rolled back) costs one re-read.
_heads: dict[int, tuple[int, str]] = {}


class Actor(msgspec.Struct, frozen=True, kw_only=True):
    """Who did it: a signed-in user (``usr_...``), an API client (its client id), or the system itself
    (a name such as ``copy_engine`` or ``retention``)."""

    kind: Literal["user", "client", "system"]
    id: str


class AuditContext(msgspec.Struct, frozen=True, kw_only=True):
    """Where the request came from, when there was one."""

    request_id: str | None = None
    source_ip: str | None = None


def _text(name: str, value: str | None, limit: int, *, optional: bool = False) -> None:
    if value is None:
        if optional:
            return
        raise ValueError(f"audit {name} is required")
    if not value or len(value) > limit:
        raise ValueError(f"audit {name} must be 1 to {limit} characters")


_CANONICAL = msgspec.json.Encoder(order="sorted")


def canonical_json(value: object) -> bytes:
    """RFC 8785 (JCS) canonical JSON of the values audit records hold: objects with ASCII keys,
    strings, integers within 2^53, booleans and null.

    For those, JCS is keys sorted, no whitespace, and JSON.stringify's string escaping, which is
    exactly what msgspec writes (a hypothesis test compares it with the reference implementation,
    the ``rfc8785`` package). Floats, which JCS formats its own way, never occur here. msgspec is
    about 30 times faster, and the copy engine records one per order of a fan-out.
    """
    return _CANONICAL.encode(value)


def canonical_details(details: Mapping[str, DetailValue] | None) -> str:
    """The details as canonical JSON text, after refusing secret-looking keys and oversized values."""
    if not details:
        return "{}"
    if len(details) > MAX_DETAILS:
        raise ValueError(f"audit details hold at most {MAX_DETAILS} entries")
    for name, value in details.items():
        if not isinstance(name, str) or not _DETAIL_KEY_RE.fullmatch(name):
            raise ValueError(f"audit detail key {name!r} must be snake_case, 1-64 characters")
        if _SECRET_WORD_RE.search(name) and not _ID_SUFFIX_RE.search(name):
            # Callers pass ids, never credentials; a key like this is a bug about to leak one.
            raise ValueError(f"audit detail key {name!r} looks like a secret; record ids, never credentials")
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int):
            if abs(value) > _MAX_SAFE_INT:
                raise ValueError(f"audit detail {name!r}: integers are limited to +-(2**53 - 1)")
        elif isinstance(value, str):
            if len(value) > MAX_DETAIL_TEXT:
                raise ValueError(f"audit detail {name!r} is longer than {MAX_DETAIL_TEXT} characters")
        else:
            raise TypeError(f"audit detail {name!r} must be a str, int, bool or None, not {type(value).__name__}")
    return canonical_json(dict(details)).decode()


def _timestamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def record_hash(stored: StoredRecord, details: Mapping[str, DetailValue] | None = None) -> str:
    """SHA-256 (hex) of the RFC 8785 canonical JSON of a record's fields, ``prev_hash`` included.

    ``details`` enters as the object it encodes, so the hash is over one canonical document. The
    version field lets a later format change hash differently without ambiguity. ``details``, when
    given, is ``stored.details`` already decoded (the writer has it; the verifier does not).
    """
    document: dict[str, Any] = {
        "v": 1,
        "seq": stored.seq,
        "at": _timestamp(stored.at),
        "actor_kind": stored.actor_kind,
        "actor_id": stored.actor_id,
        "action": stored.action,
        "target": stored.target,
        "outcome": stored.outcome,
        "request_id": stored.request_id,
        "source_ip": stored.source_ip,
        "details": msgspec.json.decode(stored.details) if details is None else dict(details),
        "prev_hash": stored.prev_hash,
    }
    return hashlib.sha256(canonical_json(document)).hexdigest()


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One record for :func:`record_many`: the same fields :func:`record` takes."""

    actor: Actor
    action: str
    target: str
    outcome: Literal["success", "failure", "denied"] = "success"
    context: AuditContext | None = None
    details: Mapping[str, DetailValue] | None = None


def _checked(entry: Entry, now: datetime) -> tuple[StoredRecord, Mapping[str, DetailValue]]:
    """The entry as a record still to be chained (``seq``, ``prev_hash`` and ``hash`` unset), after the checks."""
    actor, action, outcome = entry.actor, entry.action, entry.outcome
    if actor.kind not in ("user", "client", "system"):
        raise ValueError(f"audit actor kind {actor.kind!r} is not user, client or system")
    _text("actor id", actor.id, 64)
    if not _ACTION_RE.fullmatch(action) or len(action) > 64:
        raise ValueError(f"audit action {action!r} must be dotted lowercase words, e.g. 'order.place'")
    _text("target", entry.target, 200)
    if outcome not in ("success", "failure", "denied"):
        raise ValueError(f"audit outcome {outcome!r} is not success, failure or denied")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("audit time must be timezone-aware")
    context = entry.context or AuditContext()
    _text("request id", context.request_id, 64, optional=True)
    _text("source ip", context.source_ip, 64, optional=True)
    stored = StoredRecord(
        seq=0,
        at=now.astimezone(UTC),
        actor_kind=actor.kind,
        actor_id=actor.id,
        action=action,
        target=entry.target,
        outcome=outcome,
        request_id=context.request_id,
        source_ip=context.source_ip,
        details=canonical_details(entry.details),
        prev_hash="",
        hash="",
    )
    return stored, entry.details or {}


async def record(
    session: AsyncSession,
    *,
    actor: Actor,
    action: str,
    target: str,
    now: datetime,
    outcome: Literal["success", "failure", "denied"] = "success",
    context: AuditContext | None = None,
    details: Mapping[str, DetailValue] | None = None,
) -> int:
    """Append one record in the caller's transaction (executed, not committed); returns its sequence.

    ``action`` is dotted lowercase (``auth.login``, ``connection.link``, ``order.place``);
    ``target`` names the object acted on (an id, or ``user:<email>`` before there is one);
    ``now`` comes from the caller's clock. Raises :class:`ValueError` for a malformed argument,
    including a detail key that looks like a secret.
    """
    entry = Entry(actor=actor, action=action, target=target, outcome=outcome, context=context, details=details)
    unchained, raw_details = _checked(entry, now)
    repository = AuditRepository(session)
    postgres = dialect_name(session) == "postgresql"
    cache_key = id(session.get_bind())
    head = None if postgres else _heads.get(cache_key)
    for _ in range(3):
        if head is None:
            head = await repository.read_head(lock=postgres)
            if head is None:  # no head row: a create_all schema, or tables emptied by TRUNCATE
                await repository.create_head()
                continue
        prev_seq, prev_hash = head
        stored = msgspec.structs.replace(unchained, seq=prev_seq + 1, prev_hash=prev_hash)
        digest = record_hash(stored, raw_details)
        values = {**msgspec.structs.asdict(stored), "hash": digest}
        if await repository.append_after(values, prev_seq=prev_seq, prev_hash=prev_hash):
            if not postgres:
                _heads[cache_key] = (stored.seq, digest)
            return stored.seq
        head = None  # another writer moved the head since we last saw it: read it again (now under the lock)
    raise RuntimeError("the audit chain head kept moving; is the head trigger of migration 0007 missing?")


async def record_many(session: AsyncSession, entries: Sequence[Entry], *, now: datetime) -> list[int]:
    """Append several records in the caller's transaction, in order, with one batched statement.

    For a transaction that changes many things at once (the copy engine's fan-out: one order per
    follower). The records chain exactly as if :func:`record` had been called for each. Call it
    after the transaction has written something (on SQLite that holds the write lock): the head is
    read fresh, not from the cache, so nothing moves it before the batch lands. A head that moved
    anyway raises, and the caller's transaction must roll back.
    """
    if not entries:
        return []
    checked = [_checked(entry, now) for entry in entries]
    repository = AuditRepository(session)
    postgres = dialect_name(session) == "postgresql"
    head = await repository.read_head(lock=postgres)
    if head is None:
        await repository.create_head()
        head = await repository.read_head(lock=postgres)
        if head is None:  # pragma: no cover - create_head inserts it
            raise RuntimeError("the audit head row is missing and could not be created")
    rows: list[dict[str, Any]] = []
    seq, prev_hash = head
    for unchained, raw_details in checked:
        stored = msgspec.structs.replace(unchained, seq=seq + 1, prev_hash=prev_hash)
        digest = record_hash(stored, raw_details)
        rows.append({**msgspec.structs.asdict(stored), "hash": digest, "prev_seq": seq, "head_hash": prev_hash})
        seq, prev_hash = stored.seq, digest
    if not await repository.append_chained(rows, expect=(seq, prev_hash)):
        raise RuntimeError("the audit chain head moved during a batch; the transaction must be retried")
    if not postgres:
        _heads[id(session.get_bind())] = (seq, prev_hash)
    return [row["seq"] for row in rows]
