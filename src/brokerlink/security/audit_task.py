"""The server's periodic audit checkpoint (``audit_checkpoint_every_s``; ADR 0016).

Every interval the task verifies the trail and, if it is intact and its head moved since the last
checkpoint, signs a new head checkpoint (and appends it to ``audit_checkpoint_export``). It
verifies first because signing the head of a chain someone has rewritten would vouch for the
rewrite; a failed verification signs nothing and is observed (``observe.audit_verify_failed``),
which is what the alert rule listens for.

The first round after start walks the whole trail; later rounds resume from the head the previous
round verified (``verify(resume_from=...)``): they walk only the new records and check the old head
still carries its hash, so any rewrite reaching the new records is caught at once. An edit deeper in
the past (hashes left alone) waits for the next full walk: a server restart, ``brokerlink audit
verify`` or ``GET /v1/admin/audit/verify``.
"""

from __future__ import annotations

from pathlib import Path

from brokerlink.kit.clock import Clock
from brokerlink.kit.periodic import Periodic
from brokerlink.logs import get_logger
from brokerlink.security.audit_checkpoint import Checkpoint, checkpoint
from brokerlink.security.audit_sign import AuditSigner
from brokerlink.security.audit_verify import verify
from brokerlink.store.db import Database
from brokerlink.store.repositories.audit import AuditRepository

__all__ = ["AuditCheckpointer"]

_log = get_logger("brokerlink.security.audit")


class AuditCheckpointer:
    """The server's periodic checkpoint: every ``every_s`` seconds, verify, then sign the head if it moved.

    A failure is logged and retried at the next tick; it never stops the server. ``every_s`` = 0
    disables it (:meth:`start` does nothing).
    """

    def __init__(
        self, database: Database, signer: AuditSigner, clock: Clock, *, every_s: float, export_to: Path | None
    ) -> None:
        self.database = database
        self.signer = signer
        self.clock = clock
        self.every_s = every_s
        self.export_to = export_to
        self.schedule = Periodic("audit_checkpoint", every_s, self._run_once)
        self._verified: tuple[int, str] | None = None

    def start(self) -> None:
        """Start the schedule (no-op when disabled or already running; the first round after one period)."""
        self.schedule.start()

    async def stop(self) -> None:
        """Stop the schedule and wait for it."""
        await self.schedule.stop()

    async def tick(self) -> Checkpoint | None:
        """One round: a new head checkpoint, or None when the trail does not verify or has not moved."""
        async with self.database.session() as session:
            result = await verify(session, public_keys=self.signer.public_keys(), resume_from=self._verified)
            if not result.ok:  # observed and logged by verify; never sign over a broken chain
                self._verified = None  # the next round walks everything again
                return None
            # Sign exactly what was verified, not a head that a writer may have moved since.
            sequence, head_hash = self._verified = (result.head_sequence, result.head_hash)
            if sequence == 0:  # an empty trail: nothing to vouch for
                return None
            latest = await AuditRepository(session).latest_checkpoint()
            if latest is not None and latest.sequence == sequence and latest.head_hash == head_hash:
                return None
            point = await checkpoint(
                session, self.signer, self.clock.now(), sequence=sequence, head_hash=head_hash, export_to=self.export_to
            )
            await session.commit()
            return point

    async def _run_once(self) -> None:
        point = await self.tick()
        if point is not None:
            _log.info("audit checkpoint", sequence=point.sequence, key_id=point.key_id)
