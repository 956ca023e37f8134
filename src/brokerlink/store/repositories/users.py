"""Users. There is no domain struct for a user: this repository returns :class:`UserRow` objects.

Treat returned rows as read-only and change users through the methods here, so every change sets
``updated_at`` and goes through one place the audit trail can hook.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.enums import Role
from brokerlink.kit.ids import new_id
from brokerlink.store.models import UserRow
from brokerlink.store.repositories._common import Page, fetch_page


def normalize_email(email: str) -> str:
    """The stored form of an email: trimmed and lowercased, so uniqueness ignores case."""
    return email.strip().lower()


class UserRepository:
    """Queries on ``users``. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(
        self,
        *,
        email: str,
        display_name: str,
        password_hash: str,
        now: datetime,
        role: Role = Role.USER,
        is_active: bool = True,
    ) -> UserRow:
        """Insert a user. A taken email (in any letter case) raises ``IntegrityError`` at the flush."""
        row = UserRow(
            id=new_id("usr"),
            email=normalize_email(email),
            display_name=display_name,
            password_hash=password_hash,
            role=Role(role).value,
            is_active=is_active,
            created_at=now,
            updated_at=now,
            last_login_at=None,
        )
        self.session.add(row)
        await self.session.flush()
        return row

    async def get(self, user_id: str) -> UserRow | None:
        """The user with this id, or None."""
        return await self.session.get(UserRow, user_id)

    async def get_by_email(self, email: str) -> UserRow | None:
        """The user with this email (any letter case), or None."""
        stmt = select(UserRow).where(UserRow.email == normalize_email(email))
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def list_page(self, *, limit: int, after: str | None) -> Page[UserRow]:
        """Users oldest first, one cursor page (admin listing)."""
        return await fetch_page(
            self.session, select(UserRow), UserRow.id, lambda row: row, limit=limit, after=after, descending=False
        )

    async def count(self) -> int:
        """How many users exist (e.g. to make the first one an admin)."""
        return (await self.session.execute(select(func.count()).select_from(UserRow))).scalar_one()

    async def set_password_hash(self, user_id: str, password_hash: str, *, now: datetime) -> bool:
        """Replace a user's password hash. Returns whether the user exists."""
        return await self._update(user_id, now, password_hash=password_hash)

    async def record_login(self, user_id: str, *, now: datetime) -> bool:
        """Note a successful login. Returns whether the user exists."""
        return await self._update(user_id, now, last_login_at=now)

    async def set_active(self, user_id: str, active: bool, *, now: datetime) -> bool:
        """Enable or disable a user. Returns whether the user exists."""
        return await self._update(user_id, now, is_active=active)

    async def set_role(self, user_id: str, role: Role, *, now: datetime) -> bool:
        """Change a user's role. Returns whether the user exists."""
        return await self._update(user_id, now, role=Role(role).value)

    async def set_display_name(self, user_id: str, display_name: str, *, now: datetime) -> bool:
        """Rename a user. Returns whether the user exists."""
        return await self._update(user_id, now, display_name=display_name)

    async def _update(self, user_id: str, now: datetime, **values: object) -> bool:
        # Through the identity map, not a bulk UPDATE: a row the caller already holds stays current.
        row = await self.session.get(UserRow, user_id)
        if row is None:
            return False
        for name, value in values.items():
            setattr(row, name, value)
        row.updated_at = now
        await self.session.flush()
        return True
