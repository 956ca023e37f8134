"""First-party login sessions. No domain struct: this repository returns :class:`SessionRow` objects.

Only the SHA-256 (hex) of the cookie token is ever stored or looked up; :meth:`create` refuses
anything that is not shaped like one, so a raw token cannot be stored by mistake.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import bindparam, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.kit.ids import new_id
from brokerlink.store.models import SessionRow
from brokerlink.store.repositories._common import rowcount

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# Built once: building a select costs more than running it (~150 µs); this runs on every request.
_ACTIVE = select(SessionRow).where(
    SessionRow.token_hash == bindparam("token_hash"),
    SessionRow.revoked_at.is_(None),
    SessionRow.expires_at > bindparam("now"),
)
_USER_AGENT_MAX = 512  # the column's length; longer agents are cut, not refused


class SessionRepository:
    """Queries on ``sessions``. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(
        self,
        *,
        token_hash: str,
        user_id: str,
        now: datetime,
        expires_at: datetime,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> SessionRow:
        """Open a session whose cookie token hashes to ``token_hash`` (lowercase SHA-256 hex)."""
        if not _SHA256_HEX.match(token_hash):
            raise ValueError("token_hash must be the lowercase hex SHA-256 of the token, never the token")
        row = SessionRow(
            id=new_id("ses"),
            token_hash=token_hash,
            user_id=user_id,
            created_at=now,
            expires_at=expires_at,
            last_seen_at=now,
            revoked_at=None,
            ip=ip,
            user_agent=user_agent[:_USER_AGENT_MAX] if user_agent else None,
        )
        self.session.add(row)
        await self.session.flush()
        return row

    async def get_active(self, token_hash: str, now: datetime) -> SessionRow | None:
        """The session for this token hash if it is neither revoked nor expired at ``now``."""
        params = {"token_hash": token_hash, "now": now}
        return (await self.session.execute(_ACTIVE, params)).scalar_one_or_none()

    async def get(self, session_id: str) -> SessionRow | None:
        """The session with this id, whatever its state."""
        return await self.session.get(SessionRow, session_id)

    async def list_active_for_user(self, user_id: str, now: datetime) -> list[SessionRow]:
        """A user's open sessions, newest first (for a "where you are signed in" page)."""
        stmt = (
            select(SessionRow)
            .where(SessionRow.user_id == user_id, SessionRow.revoked_at.is_(None), SessionRow.expires_at > now)
            .order_by(SessionRow.id.desc())
        )
        return list((await self.session.execute(stmt)).scalars())

    async def touch(self, session_id: str, now: datetime) -> bool:
        """Record activity on a session (for the idle timeout). Returns whether it exists."""
        row = await self.session.get(SessionRow, session_id)
        if row is None:
            return False
        row.last_seen_at = now
        await self.session.flush()
        return True

    async def revoke(self, session_id: str, now: datetime) -> bool:
        """End one session. Returns whether an open session was revoked (False if already revoked)."""
        row = await self.session.get(SessionRow, session_id)
        if row is None or row.revoked_at is not None:
            return False
        row.revoked_at = now
        await self.session.flush()
        return True

    async def revoke_all_for_user(self, user_id: str, now: datetime, *, except_session_id: str | None = None) -> int:
        """End every open session of a user (password change, "sign out everywhere"); returns how many."""
        stmt = update(SessionRow).where(SessionRow.user_id == user_id, SessionRow.revoked_at.is_(None))
        if except_session_id is not None:
            stmt = stmt.where(SessionRow.id != except_session_id)
        # "fetch" also updates rows already loaded in this session, so callers never see a stale state.
        stmt = stmt.values(revoked_at=now).execution_options(synchronize_session="fetch")
        return rowcount(await self.session.execute(stmt))

    async def purge_expired(self, now: datetime) -> int:
        """Delete sessions that can never be used again (expired, or revoked); returns how many."""
        stmt = (
            delete(SessionRow)
            .where(or_(SessionRow.expires_at <= now, SessionRow.revoked_at.is_not(None)))
            .execution_options(synchronize_session="fetch")
        )
        return rowcount(await self.session.execute(stmt))
