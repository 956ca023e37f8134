"""MFA state: TOTP authenticators (``mfa_totp``), recovery codes, and the MFA columns of ``sessions``.

No domain structs: this repository returns rows. It never sees a TOTP secret (the vault keeps it,
sealed) nor a recovery code (only a salted hash). The two single-use checks are conditional
UPDATEs (:meth:`MfaRepository.claim_step`, :meth:`MfaRepository.use_recovery_code`), so two
requests racing with the same code cannot both win, on SQLite or PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.kit.ids import new_id
from brokerlink.store.models import RecoveryCodeRow, SessionRow, TotpCredentialRow
from brokerlink.store.repositories._common import FRESH, rowcount

PENDING = "pending"
ACTIVE = "active"
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class MfaRepository:
    """Queries on ``mfa_totp``, ``mfa_recovery_codes`` and the MFA columns of ``sessions``. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- authenticators ----------------------------------------------------------------------

    async def get(self, user_id: str, status: str) -> TotpCredentialRow | None:
        """The user's authenticator in ``status`` (``pending`` or ``active``), if any."""
        stmt = select(TotpCredentialRow).where(TotpCredentialRow.user_id == user_id, TotpCredentialRow.status == status)
        return (await self.session.execute(stmt.execution_options(**FRESH))).scalar_one_or_none()

    async def list_for_user(self, user_id: str) -> list[TotpCredentialRow]:
        """Every authenticator of a user (pending and active)."""
        stmt = select(TotpCredentialRow).where(TotpCredentialRow.user_id == user_id).order_by(TotpCredentialRow.id)
        return list((await self.session.execute(stmt)).scalars())

    async def add_pending(self, *, totp_id: str, user_id: str, secret_id: str, now: datetime) -> TotpCredentialRow:
        """Insert a pending authenticator under ``totp_id`` (the vault sealed its secret for that id)."""
        row = TotpCredentialRow(
            id=totp_id,
            user_id=user_id,
            status=PENDING,
            secret_id=secret_id,
            last_step=None,
            created_at=now,
            confirmed_at=None,
        )
        self.session.add(row)
        await self.session.flush()
        return row

    async def activate(self, totp_id: str, *, step: int, now: datetime) -> None:
        """Make a pending authenticator the active one, remembering the step that confirmed it."""
        stmt = (
            update(TotpCredentialRow)
            .where(TotpCredentialRow.id == totp_id, TotpCredentialRow.status == PENDING)
            .values(status=ACTIVE, confirmed_at=now, last_step=step)
            .execution_options(synchronize_session="fetch")
        )
        if rowcount(await self.session.execute(stmt)) != 1:
            raise LookupError(f"no pending authenticator {totp_id}")

    async def claim_step(self, totp_id: str, step: int) -> bool:
        """Record ``step`` as used unless it (or a later one) already was. Returns whether this call won."""
        stmt = (
            update(TotpCredentialRow)
            .where(
                TotpCredentialRow.id == totp_id,
                or_(TotpCredentialRow.last_step.is_(None), TotpCredentialRow.last_step < step),
            )
            .values(last_step=step)
            .execution_options(synchronize_session="fetch")
        )
        return rowcount(await self.session.execute(stmt)) == 1

    async def delete(self, totp_id: str) -> bool:
        """Delete an authenticator and its recovery codes (the caller deletes its vault secret)."""
        await self.session.execute(
            delete(RecoveryCodeRow)
            .where(RecoveryCodeRow.totp_id == totp_id)
            .execution_options(synchronize_session="fetch")
        )
        stmt = delete(TotpCredentialRow).where(TotpCredentialRow.id == totp_id)
        return rowcount(await self.session.execute(stmt.execution_options(synchronize_session="fetch"))) > 0

    # --- recovery codes ----------------------------------------------------------------------

    async def add_recovery_codes(
        self, *, user_id: str, totp_id: str, hashes: Sequence[tuple[bytes, str]], now: datetime
    ) -> None:
        """Store ``(salt, sha256 hex)`` pairs as the authenticator's recovery codes."""
        for salt, code_hash in hashes:
            if not _SHA256_HEX.match(code_hash):
                raise ValueError("code_hash must be a lowercase SHA-256 hex digest, never the code")
            self.session.add(
                RecoveryCodeRow(
                    id=new_id("rec"),
                    user_id=user_id,
                    totp_id=totp_id,
                    salt=salt,
                    code_hash=code_hash,
                    created_at=now,
                    used_at=None,
                )
            )
        await self.session.flush()

    async def unused_recovery_codes(self, totp_id: str) -> list[RecoveryCodeRow]:
        """The authenticator's recovery codes not used yet."""
        stmt = (
            select(RecoveryCodeRow)
            .where(RecoveryCodeRow.totp_id == totp_id, RecoveryCodeRow.used_at.is_(None))
            .order_by(RecoveryCodeRow.id)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def count_unused_recovery_codes(self, totp_id: str) -> int:
        """How many recovery codes the authenticator has left."""
        stmt = (
            select(func.count())
            .select_from(RecoveryCodeRow)
            .where(RecoveryCodeRow.totp_id == totp_id, RecoveryCodeRow.used_at.is_(None))
        )
        return int((await self.session.execute(stmt)).scalar_one())

    async def use_recovery_code(self, code_id: str, now: datetime) -> bool:
        """Mark a recovery code used unless it already was. Returns whether this call won."""
        stmt = (
            update(RecoveryCodeRow)
            .where(RecoveryCodeRow.id == code_id, RecoveryCodeRow.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session="fetch")
        )
        return rowcount(await self.session.execute(stmt)) == 1

    # --- sessions ----------------------------------------------------------------------------

    async def mark_session_pending(self, session_id: str, *, expires_at: datetime) -> None:
        """Hold a fresh session at the MFA step, and end it early if the step is not completed."""
        row = await self.session.get(SessionRow, session_id)
        if row is None:
            raise LookupError(f"no session {session_id}")
        row.mfa_pending = True
        row.mfa_at = None
        row.expires_at = min(row.expires_at, expires_at)
        await self.session.flush()

    async def mark_session_verified(self, session_id: str, now: datetime) -> None:
        """Record that the session verified MFA at ``now`` (and is no longer held at the MFA step)."""
        row = await self.session.get(SessionRow, session_id)
        if row is None:
            raise LookupError(f"no session {session_id}")
        row.mfa_pending = False
        row.mfa_at = now
        await self.session.flush()

    async def session_expiry(self, session_id: str) -> datetime | None:
        """When the session ends at the latest (None if there is no such session)."""
        row = await self.session.get(SessionRow, session_id)
        return row.expires_at if row is not None else None

    async def forget_verifications(self, user_id: str) -> int:
        """Clear ``mfa_at`` on every session of a user (MFA was turned off); returns how many changed."""
        stmt = (
            update(SessionRow)
            .where(SessionRow.user_id == user_id, SessionRow.mfa_at.is_not(None))
            .values(mfa_at=None)
            .execution_options(synchronize_session="fetch")
        )
        return rowcount(await self.session.execute(stmt))
