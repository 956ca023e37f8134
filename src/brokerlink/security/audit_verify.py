"""Verification of the audit trail, and the retention purge that keeps it verifiable.

:func:`verify` walks the chain from its start (genesis, or the latest signed *anchor* a purge left)
and stops at the first record that is wrong, naming its sequence:

* a sequence missing from the run: a record was deleted (``record 7 is missing``);
* a ``prev_hash`` that is not the previous record's ``hash``: a record was removed, inserted or
  swapped with another;
* a ``hash`` that is not the SHA-256 of the record's contents: the record was edited;
* a signed checkpoint that the chain does not pass through: the records since the previous good
  checkpoint were rewritten (hashes recomputed, which the chain alone cannot show);
* a checkpoint beyond the chain's end: records were cut off the end (truncation).

Every checkpoint's Ed25519 signature is checked first, against the given public keys; checkpoints
may also come from outside the database (the off-host export), so rewriting the database's own
checkpoints does not help an attacker either.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink import observe
from brokerlink.logs import get_logger
from brokerlink.security.audit import GENESIS_HASH, record_hash
from brokerlink.security.audit_checkpoint import Checkpoint, checkpoint
from brokerlink.security.audit_sign import AuditSigner, verify_signature
from brokerlink.store.models_audit import AuditCheckpointKind
from brokerlink.store.repositories.audit import AuditRepository, StoredRecord

__all__ = ["AuditIntegrityError", "VerifyResult", "purge_before", "verify"]

_log = get_logger("brokerlink.security.audit")


class VerifyResult(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`verify` found. ``first_bad_sequence`` and ``reason`` are set exactly when ``ok`` is false."""

    ok: bool
    records_checked: int
    checkpoints_checked: int
    start_sequence: int
    """The sequence the walk started after: 0, or the latest purge anchor's."""
    head_sequence: int
    """The last sequence checked (the chain's end when ``ok``)."""
    head_hash: str
    """The hash at ``head_sequence`` (what a later ``resume_from`` starts from)."""
    first_bad_sequence: int | None = None
    reason: str | None = None


class AuditIntegrityError(Exception):
    """The trail does not verify, so an operation that would destroy evidence (a purge) is refused."""

    def __init__(self, result: VerifyResult) -> None:
        super().__init__(f"audit trail does not verify at sequence {result.first_bad_sequence}: {result.reason}")
        self.result = result


class _Broken(Exception):
    """Raised inside the walk at the first problem; :func:`verify` turns it into its result."""

    def __init__(self, sequence: int, reason: str) -> None:
        super().__init__(reason)
        self.sequence = sequence
        self.reason = reason


class _Walk:
    """Where the walk stands: its start, how far it got, what it counted."""

    def __init__(self) -> None:
        self.start = 0
        self.head = 0
        self.head_hash = GENESIS_HASH
        self.records = 0
        self.checkpoints = 0

    def begin(self, start: int, start_hash: str, checkpoints: int) -> None:
        self.start = self.head = start
        self.head_hash = start_hash
        self.checkpoints = checkpoints

    def result(self, broken: _Broken | None = None) -> VerifyResult:
        return VerifyResult(
            ok=broken is None,
            records_checked=self.records,
            checkpoints_checked=self.checkpoints,
            start_sequence=self.start,
            head_sequence=self.head,
            head_hash=self.head_hash,
            first_bad_sequence=None if broken is None else broken.sequence,
            reason=None if broken is None else broken.reason,
        )


def _check_signatures(points: Iterable[Checkpoint], public_keys: Mapping[str, Ed25519PublicKey]) -> None:
    for point in points:
        key = public_keys.get(point.key_id)
        if key is None:
            raise _Broken(point.sequence, f"the checkpoint at {point.sequence} is signed by unknown key {point.key_id}")
        if not verify_signature(key, point.signature, point.message()):
            raise _Broken(point.sequence, f"the checkpoint at {point.sequence} has an invalid signature")


def _check_record(stored: StoredRecord, *, expected_seq: int, prev_hash: str) -> None:
    if stored.seq != expected_seq:
        raise _Broken(expected_seq, f"record {expected_seq} is missing (the next record is {stored.seq})")
    if stored.prev_hash != prev_hash:
        raise _Broken(
            stored.seq,
            f"record {stored.seq} does not chain to record {stored.seq - 1}:"
            " a record was changed, removed or reordered",
        )
    if record_hash(stored) != stored.hash:
        raise _Broken(stored.seq, f"record {stored.seq} does not match its hash: its contents were altered")


async def verify(
    session: AsyncSession,
    *,
    public_keys: Mapping[str, Ed25519PublicKey],
    external_checkpoints: Iterable[Checkpoint] | None = None,
    resume_from: tuple[int, str] | None = None,
) -> VerifyResult:
    """Walk the trail and its checkpoints; the first problem found is reported (and observed).

    ``public_keys`` maps key ids to the keys checkpoints may be signed with; a checkpoint under any
    other key id fails. ``external_checkpoints`` (e.g. from the off-host export) are checked like
    the stored ones. Reads in batches; memory does not grow with the trail.

    ``resume_from``: a ``(sequence, hash)`` that this caller verified before (the periodic task's
    last head). Only what follows it is walked, and the record there must still carry that hash, so
    a rewrite reaching past it is still caught; an edit before it (hashes left alone) is left to the
    next full verification.
    """
    walk = _Walk()
    try:
        await _walk(AuditRepository(session), walk, public_keys, external_checkpoints, resume_from)
    except _Broken as broken:
        observe.audit_verify_failed(sequence=broken.sequence, reason=broken.reason)
        _log.warning("audit verification failed", sequence=broken.sequence, reason=broken.reason)
        return walk.result(broken)
    return walk.result()


async def _walk(
    repository: AuditRepository,
    walk: _Walk,
    public_keys: Mapping[str, Ed25519PublicKey],
    external_checkpoints: Iterable[Checkpoint] | None,
    resume_from: tuple[int, str] | None,
) -> None:
    points = [Checkpoint.of(row) for row in await repository.checkpoints()]
    points.extend(external_checkpoints or ())
    points.sort(key=lambda p: (p.sequence, p.at))
    # The walk starts at the latest purge anchor (or genesis), or later where the caller resumes.
    anchors = [p for p in points if p.kind == AuditCheckpointKind.ANCHOR.value]
    start, running = (anchors[-1].sequence, anchors[-1].head_hash) if anchors else (0, GENESIS_HASH)
    resumed = resume_from is not None and resume_from[0] > start
    if resume_from is not None and resumed:
        start, running = resume_from
        points = [p for p in points if p.sequence >= start]
    walk.begin(start, running, len(points))
    if resumed:
        kept = await repository.get(start)
        if kept is None or kept.hash != running:
            raise _Broken(
                start, f"record {start} no longer has the hash verified before: the trail was rewritten or cut"
            )
    _check_signatures(points, public_keys)
    signed: dict[int, set[str]] = defaultdict(set)
    for point in points:
        if point.sequence >= start:
            signed[point.sequence].add(point.head_hash)
    if signed.get(start, {running}) != {running}:
        raise _Broken(start + 1, f"signed checkpoints disagree about the chain at {start}")

    last_good = start
    async for stored in repository.walk(after=start):
        _check_record(stored, expected_seq=walk.head + 1, prev_hash=running)
        running = stored.hash
        walk.records += 1
        walk.head, walk.head_hash = stored.seq, stored.hash
        hashes = signed.get(stored.seq)
        if hashes is not None:
            if hashes != {stored.hash}:
                raise _Broken(
                    last_good + 1,
                    f"the chain does not pass through the signed checkpoint at {stored.seq}: records"
                    f" {last_good + 1} to {stored.seq} were rewritten",
                )
            last_good = stored.seq

    beyond = [p.sequence for p in points if p.sequence > walk.head]
    if beyond:
        top = max(beyond)
        raise _Broken(
            walk.head + 1,
            f"records {walk.head + 1} to {top} are missing: the trail was truncated below the signed checkpoint at"
            f" {top}",
        )


async def purge_before(
    session: AsyncSession,
    *,
    cutoff: datetime,
    signer: AuditSigner,
    now: datetime,
    public_keys: Mapping[str, Ed25519PublicKey] | None = None,
    export_to: Path | None = None,
    batch: int = 1000,
) -> int:
    """Delete the records older than ``cutoff`` (a prefix of the chain), keeping the rest verifiable.

    Only a prefix can go: the purge stops before the first record at or after ``cutoff``, even if
    later ones are older (clocks of different writers). First the whole trail is verified (a purge
    must not launder tampering: :class:`AuditIntegrityError` if it fails), then a signed *anchor*
    checkpoint is written: the last purged record's sequence and hash, which the first kept record
    chains to. The database allows deletes at or below it only (0007's triggers). Everything runs in
    the caller's transaction; returns how many records went.
    """
    repository = AuditRepository(session)
    anchor = await repository.latest_checkpoint(AuditCheckpointKind.ANCHOR)
    start = 0 if anchor is None else anchor.sequence
    first_kept = await repository.first_at_or_after(cutoff)
    head, _ = await repository.head()
    last_purged = head if first_kept is None else first_kept - 1
    if last_purged <= start:
        return 0
    result = await verify(session, public_keys=public_keys or signer.public_keys())
    if not result.ok:
        raise AuditIntegrityError(result)
    last = await repository.get(last_purged)
    if last is None:  # pragma: no cover - verify just walked it
        raise AuditIntegrityError(result)
    await checkpoint(session, signer, now, kind="anchor", sequence=last.seq, head_hash=last.hash, export_to=export_to)
    deleted = await repository.delete_through(last_purged, after=start, batch=batch)
    _log.info("audit records purged", through=last_purged, deleted=deleted)
    return deleted
