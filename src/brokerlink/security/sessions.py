"""Server-side sessions for first-party users.

The cookie holds a random 256-bit token; the database holds only its SHA-256, so a leaked
database dump opens no sessions. A session ends at an absolute lifetime, after an idle period,
or when revoked (logout, or all of a user's sessions at once).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.config import Settings
from brokerlink.domain.enums import Role
from brokerlink.kit.clock import Clock
from brokerlink.security.principal import Principal
from brokerlink.store.models import UserRow
from brokerlink.store.repositories.sessions import SessionRepository
from brokerlink.store.repositories.users import UserRepository

# Writing last_seen on every request would turn every read into a write; a minute is precise enough
# for an idle timeout measured in tens of minutes.
_TOUCH_EVERY = timedelta(seconds=60)


def hash_token(token: str) -> str:
    """The stored form of a session token."""
    return hashlib.sha256(token.encode()).hexdigest()


class IssuedSession(msgspec.Struct, frozen=True):
    """A new session: the token goes into the cookie and nowhere else."""

    token: str
    session_id: str
    expires_at: datetime


class SessionService:
    """Start, resolve and end sessions. Flushes; the caller's boundary commits."""

    def __init__(self, session: AsyncSession, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.sessions = SessionRepository(session)
        self.users = UserRepository(session)

    async def start(self, user: UserRow, *, ip: str | None, user_agent: str | None) -> IssuedSession:
        """Open a session for ``user``."""
        token = secrets.token_urlsafe(32)
        now = self.clock.now()
        expires_at = now + timedelta(seconds=self.settings.session_ttl_seconds)
        row = await self.sessions.create(
            token_hash=hash_token(token),
            user_id=user.id,
            now=now,
            expires_at=expires_at,
            ip=ip,
            user_agent=(user_agent or "")[:300] or None,
        )
        return IssuedSession(token=token, session_id=row.id, expires_at=expires_at)

    async def resolve(self, token: str) -> Principal | None:
        """The principal for a cookie token, or None when it is unknown, expired, idle too long or revoked."""
        if not token or len(token) > 128:
            return None
        now = self.clock.now()
        row = await self.sessions.get_active(hash_token(token), now)
        if row is None:
            return None
        if now - row.last_seen_at > timedelta(seconds=self.settings.session_idle_seconds):
            await self.sessions.revoke(row.id, now)
            return None
        user = await self.users.get(row.user_id)
        if user is None or not user.is_active:
            return None
        if now - row.last_seen_at >= _TOUCH_EVERY:
            await self.sessions.touch(row.id, now)
        return Principal(kind="user", user_id=user.id, role=Role(user.role), session_id=row.id)

    async def end(self, token: str) -> None:
        """Revoke the session behind a token (logout). Unknown tokens are ignored."""
        row = await self.sessions.get_active(hash_token(token), self.clock.now())
        if row is not None:
            await self.sessions.revoke(row.id, self.clock.now())

    async def end_all(self, user_id: str) -> int:
        """Revoke every session of a user; returns how many were open."""
        return await self.sessions.revoke_all_for_user(user_id, self.clock.now())
