"""Signed checkpoints of the audit chain, their off-host export, and the server's periodic task.

A checkpoint is a signed statement "the chain up to sequence N hashes to H" (Ed25519 over the
canonical JSON of kind, sequence, head hash, time and key id). Hash chaining alone cannot show that
records were cut from the *end* of the trail: what remains is a valid, shorter chain. A checkpoint
can: it names a sequence and hash that must still be there. Two kinds:

* ``head``: the chain's end, signed every ``audit_checkpoint_every_s`` by the server (and on demand
  with ``brokerlink audit checkpoint``).
* ``anchor``: written by the retention purge before it deletes: the chain's new start, i.e. the
  last purged record's sequence and hash, which is what the first kept record's ``prev_hash`` must
  be. Verification starts from the latest anchor, and the database lets records at or below it go.

Each checkpoint is also appended, as one JSON line, to ``audit_checkpoint_export`` when that is set
(a file on another disk or a mount that is shipped off the host): an attacker who rewrites the
database and its checkpoints cannot rewrite those copies, and ``brokerlink audit verify
--checkpoints FILE`` checks the trail against them too.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.kit.ids import new_id
from brokerlink.security.audit import canonical_json
from brokerlink.security.audit_sign import AuditSigner
from brokerlink.store.models_audit import AuditCheckpointKind, AuditCheckpointRow
from brokerlink.store.repositories.audit import AuditRepository

__all__ = ["Checkpoint", "append_export", "checkpoint", "checkpoint_message", "read_checkpoints"]

_PURPOSE = "brokerlink.audit.checkpoint.v1"


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True, tag="checkpoint", tag_field="type"):
    """A signed checkpoint, as stored and as exported (a JSON line with ``"type": "checkpoint"``)."""

    kind: Literal["head", "anchor"]
    sequence: int
    head_hash: str
    at: datetime
    key_id: str
    signature: str

    @classmethod
    def of(cls, row: AuditCheckpointRow) -> Checkpoint:
        """From a stored row."""
        kind: Literal["head", "anchor"] = "anchor" if row.kind == AuditCheckpointKind.ANCHOR else "head"
        return cls(
            kind=kind,
            sequence=row.sequence,
            head_hash=row.head_hash,
            at=row.created_at,
            key_id=row.key_id,
            signature=row.signature,
        )

    def message(self) -> bytes:
        """The bytes the signature covers."""
        return checkpoint_message(
            kind=self.kind, sequence=self.sequence, head_hash=self.head_hash, at=self.at, key_id=self.key_id
        )


def checkpoint_message(*, kind: str, sequence: int, head_hash: str, at: datetime, key_id: str) -> bytes:
    """Canonical JSON (RFC 8785) of what a checkpoint states, with a purpose string for domain separation."""
    return canonical_json(
        {
            "purpose": _PURPOSE,
            "kind": kind,
            "sequence": sequence,
            "head_hash": head_hash,
            "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
            "key_id": key_id,
        }
    )


class _Line(msgspec.Struct):
    type: str | None = None


def append_export(path: Path, point: Checkpoint) -> None:
    """Append ``point`` as one JSON line to ``path`` (created 0600), fsynced: an off-host copy survives a crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as fh:
        fh.write(msgspec.json.encode(point) + b"\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_checkpoints(path: Path) -> list[Checkpoint]:
    """The checkpoints in a JSON-lines file (an export, or ``brokerlink audit export`` output); other lines are skipped.

    Raises :class:`ValueError` naming the line of a checkpoint that does not parse.
    """
    points: list[Checkpoint] = []
    decoder = msgspec.json.Decoder(Checkpoint)
    kinds = msgspec.json.Decoder(_Line)
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            stripped = line.strip()
            if not stripped:
                continue
            try:
                if kinds.decode(stripped).type != "checkpoint":
                    continue
                points.append(decoder.decode(stripped))
            except msgspec.DecodeError as exc:
                raise ValueError(f"{path}:{number}: not a valid checkpoint line: {exc}") from None
    return points


async def checkpoint(
    session: AsyncSession,
    signer: AuditSigner,
    now: datetime,
    *,
    kind: Literal["head", "anchor"] = "head",
    sequence: int | None = None,
    head_hash: str | None = None,
    export_to: Path | None = None,
) -> Checkpoint:
    """Sign and store a checkpoint of the chain's current end (or of ``sequence``/``head_hash`` when given).

    Stored in the caller's transaction. With ``export_to`` the checkpoint is also appended there;
    that copy stays a true statement even if the caller then rolls back, since it names records
    that were already committed.
    """
    repository = AuditRepository(session)
    if sequence is None or head_hash is None:
        sequence, head_hash = await repository.head()
    at = now.astimezone(UTC)
    key_id = signer.key_id
    signature = signer.sign(checkpoint_message(kind=kind, sequence=sequence, head_hash=head_hash, at=at, key_id=key_id))
    row = AuditCheckpointRow(
        id=new_id("achk"),
        kind=kind,
        sequence=sequence,
        head_hash=head_hash,
        created_at=at,
        key_id=key_id,
        signature=signature,
    )
    await repository.add_checkpoint(row)
    point = Checkpoint(kind=kind, sequence=sequence, head_hash=head_hash, at=at, key_id=key_id, signature=signature)
    if export_to is not None:
        await asyncio.to_thread(append_export, export_to, point)
    return point
