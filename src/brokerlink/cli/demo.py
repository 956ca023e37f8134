"""Demo data: users to sign in as, with passwords generated once per data directory.

Passwords are random (the demo binds to 127.0.0.1, but a fixed password in a README is a habit
worth not teaching) and kept in ``data_dir/demo-credentials.json`` with owner-only permissions,
so every ``make demo`` prints the same ones.
"""

from __future__ import annotations

import json
import os
import secrets

import msgspec

from brokerlink.config import Settings
from brokerlink.domain.enums import Role
from brokerlink.engine.audit import CLI
from brokerlink.kit.clock import SystemClock
from brokerlink.security.audit import record
from brokerlink.security.passwords import hash_password, verify_password
from brokerlink.security.users import UserService
from brokerlink.store.db import Database
from brokerlink.store.repositories.users import UserRepository


class DemoCredential(msgspec.Struct, frozen=True):
    """A demo user to sign in as."""

    email: str
    password: str
    display_name: str
    role: Role
    description: str


_DEMO_USERS: tuple[tuple[str, str, Role, str], ...] = (
    ("alice@example.com", "Alice Trader", Role.USER, "follower: equity ratio"),
    ("pat@example.com", "Pat Provider", Role.PROVIDER, "strategy provider (a bot trades for Pat)"),
    ("admin@example.com", "Operator", Role.ADMIN, "operator"),
    ("bob@example.com", "Bob Fixed", Role.USER, "follower: fixed quantity"),
    ("carol@example.com", "Carol Contrarian", Role.USER, "follower: reversed direction"),
    ("dave@example.com", "Dave Careful", Role.USER, "follower: tight copy stop-loss"),
)


TRADERS = frozenset(
    {"alice@example.com", "pat@example.com", "bob@example.com", "carol@example.com", "dave@example.com"}
)
"""Demo users who get linked sim accounts (the operator trades nothing)."""
PROVIDER = "pat@example.com"


def _load_or_create_credentials(settings: Settings) -> list[DemoCredential]:
    path = settings.data_dir / "demo-credentials.json"
    stored = msgspec.json.decode(path.read_bytes(), type=list[DemoCredential]) if path.exists() else []
    known = {c.email for c in stored}
    creds = stored + [
        DemoCredential(email=e, password=secrets.token_urlsafe(12), display_name=n, role=r, description=d)
        for e, n, r, d in _DEMO_USERS
        if e not in known
    ]
    if len(creds) == len(stored):
        return creds
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(msgspec.to_builtins(creds), fh, indent=2)
    return creds


async def seed(settings: Settings) -> list[DemoCredential]:
    """Make sure the demo users exist and their passwords are the ones on file. Idempotent."""
    creds = _load_or_create_credentials(settings)
    clock = SystemClock()
    database = Database.from_settings(settings)
    try:
        async with database.session() as session:
            users = UserRepository(session)
            # The table above decides roles, also for users created by an older demo (pat became a provider).
            roles = {email: role for email, _, role, _ in _DEMO_USERS}
            for cred in creds:
                role = roles.get(cred.email, cred.role)
                existing = await users.get_by_email(cred.email)
                if existing is None:
                    await UserService(session, clock).register(
                        email=cred.email, password=cred.password, display_name=cred.display_name, role=role
                    )
                    continue
                if not verify_password(existing.password_hash, cred.password):
                    await users.set_password_hash(existing.id, hash_password(cred.password), now=clock.now())
                if existing.role != role.value:
                    await users.set_role(existing.id, role, now=clock.now())
            await session.commit()
    finally:
        await database.dispose()
    return creds


async def create_user(settings: Settings, *, email: str, password: str, display_name: str, role: Role) -> str:
    """Create one user (``brokerlink user create``); returns its id."""
    database = Database.from_settings(settings)
    try:
        clock = SystemClock()
        async with database.session() as session:
            user = await UserService(session, clock).register(
                email=email, password=password, display_name=display_name, role=role
            )
            # An operator's action at the host, not a signed-in user's: the actor is the CLI.
            await record(
                session, actor=CLI, action="user.create", target=user.id, now=clock.now(),
                details={"role": role.value},
            )  # fmt: skip
            await session.commit()
            return user.id
    finally:
        await database.dispose()
