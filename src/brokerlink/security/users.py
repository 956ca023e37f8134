"""First-party users: registration and password authentication."""

from __future__ import annotations

import re

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.enums import Role
from brokerlink.kit.clock import Clock
from brokerlink.kit.errors import Conflict, InvalidCredentials, InvalidInput
from brokerlink.security.passwords import check_password_policy, hash_password, needs_rehash, verify_password
from brokerlink.store.models import UserRow
from brokerlink.store.repositories.users import UserRepository
from brokerlink.store.repositories.users import normalize_email as stored_email

# Deliberately simple: one @, something on each side, a dot in the domain. Deliverability is the
# mail server's job; this only catches typos and junk at the boundary.
_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")


def normalize_email(email: str) -> str:
    """Trim and lowercase an email (as stored), refusing anything that is not shaped like one."""
    email = stored_email(email)
    if len(email) > 254 or not _EMAIL_RE.match(email):
        raise InvalidInput("email is not a valid address", extra={"field": "email"})
    return email


class UserService:
    """Registration and login. Flushes; the caller's boundary commits."""

    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self.session = session
        self.clock = clock
        self.users = UserRepository(session)

    async def register(self, *, email: str, password: str, display_name: str, role: Role = Role.USER) -> UserRow:
        """Create a user. Refuses a taken email with 409 and a weak password with 422."""
        email = normalize_email(email)
        display_name = display_name.strip()
        if not 1 <= len(display_name) <= 100:
            raise InvalidInput("display_name must be 1-100 characters", extra={"field": "display_name"})
        check_password_policy(password, email=email)
        if await self.users.get_by_email(email) is not None:
            raise Conflict("an account with this email already exists", extra={"field": "email"})
        try:
            return await self.users.create(
                email=email,
                display_name=display_name,
                password_hash=hash_password(password),
                role=role,
                now=self.clock.now(),
            )
        except IntegrityError as exc:  # lost a race with a concurrent registration of the same email
            raise Conflict("an account with this email already exists", extra={"field": "email"}) from exc

    async def authenticate(self, email: str, password: str) -> UserRow:
        """The user with these credentials. Any failure is the same 401, in about the same time."""
        try:
            email = normalize_email(email)
        except InvalidInput:
            email = ""
        user = await self.users.get_by_email(email) if email else None
        ok = verify_password(user.password_hash if user else None, password)
        if user is None or not ok or not user.is_active:
            raise InvalidCredentials("email or password is incorrect")
        if needs_rehash(user.password_hash):
            await self.users.set_password_hash(user.id, hash_password(password), now=self.clock.now())
        await self.users.record_login(user.id, now=self.clock.now())
        return user
