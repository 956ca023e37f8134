"""Users and login sessions."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from brokerlink.domain.enums import Role
from brokerlink.kit.ids import is_id
from brokerlink.store.models import SessionRow, UserRow
from brokerlink.store.repositories.sessions import SessionRepository
from brokerlink.store.repositories.users import UserRepository
from tests.store.factories import NOW, make_user

LATER = NOW + timedelta(hours=1)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def test_create_and_read_a_user(session: AsyncSession) -> None:
    users = UserRepository(session)
    user = await users.create(
        email="  Alice@Example.COM ", display_name="Alice", password_hash="h", now=NOW, role=Role.ADMIN
    )
    assert is_id(user.id, "usr")
    assert user.email == "alice@example.com"
    assert (user.role, user.is_active, user.created_at, user.last_login_at) == ("admin", True, NOW, None)
    assert await users.get(user.id) is user
    found = await users.get_by_email("ALICE@example.com")
    assert found is not None
    assert found.id == user.id
    assert await users.get_by_email("bob@example.com") is None
    assert await users.get("usr_01ARZ3NDEKTSV4RRFFQ69G5FAV") is None
    assert await users.count() == 1


async def test_user_changes_go_through_the_repository(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        users = UserRepository(session)
        user = await make_user(session)
        assert await users.set_password_hash(user.id, "new-hash", now=LATER)
        assert await users.record_login(user.id, now=LATER)
        assert await users.set_role(user.id, Role.AUDITOR, now=LATER)
        assert await users.set_active(user.id, False, now=LATER)
        assert await users.set_display_name(user.id, "Renamed", now=LATER)
        assert not await users.record_login("usr_01ARZ3NDEKTSV4RRFFQ69G5FAV", now=LATER)
        await session.commit()
    async with sessions() as session:
        stored = await session.get(UserRow, user.id)
    assert stored is not None
    assert (stored.password_hash, stored.role, stored.is_active, stored.display_name) == (
        "new-hash",
        "auditor",
        False,
        "Renamed",
    )
    assert stored.last_login_at == LATER
    assert stored.updated_at == LATER
    assert stored.created_at == NOW


async def test_email_is_unique_whatever_the_case(session: AsyncSession) -> None:
    await make_user(session, "carol@example.com")
    with pytest.raises(IntegrityError):
        await make_user(session, "CAROL@example.com")


async def test_role_must_be_a_known_role(session: AsyncSession) -> None:
    with pytest.raises(ValueError, match="superuser"):
        await UserRepository(session).create(
            email="x@example.com",
            display_name="X",
            password_hash="h",
            now=NOW,
            role="superuser",  # type: ignore[arg-type]
        )


async def test_database_refuses_an_unknown_role(session: AsyncSession) -> None:
    session.add(
        UserRow(
            id="usr_x",
            email="x@example.com",
            display_name="X",
            password_hash="h",
            role="superuser",
            is_active=True,
            created_at=NOW,
            updated_at=NOW,
        )
    )
    with pytest.raises(IntegrityError):
        await session.flush()


async def test_session_lifecycle(session: AsyncSession) -> None:
    user = await make_user(session)
    repo = SessionRepository(session)
    row = await repo.create(
        token_hash=token_hash("tok"), user_id=user.id, now=NOW, expires_at=NOW + timedelta(hours=8), ip="127.0.0.1"
    )
    assert is_id(row.id, "ses")
    assert (row.created_at, row.last_seen_at, row.revoked_at) == (NOW, NOW, None)

    active = await repo.get_active(token_hash("tok"), LATER)
    assert active is not None
    assert active.id == row.id
    assert await repo.get_active(token_hash("other"), LATER) is None
    # Expired at exactly expires_at.
    assert await repo.get_active(token_hash("tok"), NOW + timedelta(hours=8)) is None

    assert await repo.touch(row.id, LATER)
    assert (await repo.get(row.id)).last_seen_at == LATER  # type: ignore[union-attr]

    assert await repo.revoke(row.id, LATER)
    assert not await repo.revoke(row.id, LATER)  # already revoked
    assert await repo.get_active(token_hash("tok"), LATER) is None
    assert not await repo.touch("ses_01ARZ3NDEKTSV4RRFFQ69G5FAV", LATER)


async def test_only_token_hashes_are_accepted(session: AsyncSession) -> None:
    user = await make_user(session)
    with pytest.raises(ValueError, match="SHA-256"):
        await SessionRepository(session).create(token_hash="raw-token", user_id=user.id, now=NOW, expires_at=LATER)


async def test_user_agent_is_cut_to_the_column(session: AsyncSession) -> None:
    user = await make_user(session)
    row = await SessionRepository(session).create(
        token_hash=token_hash("t"), user_id=user.id, now=NOW, expires_at=LATER, user_agent="x" * 2000
    )
    assert row.user_agent == "x" * 512


async def test_revoke_all_for_user_and_purge(session: AsyncSession) -> None:
    alice, bob = await make_user(session), await make_user(session)
    repo = SessionRepository(session)
    day, five_minutes = NOW + timedelta(days=1), NOW + timedelta(minutes=5)
    a1 = await repo.create(token_hash=token_hash("a1"), user_id=alice.id, now=NOW, expires_at=day)
    a2 = await repo.create(token_hash=token_hash("a2"), user_id=alice.id, now=NOW, expires_at=day)
    a3 = await repo.create(token_hash=token_hash("a3"), user_id=alice.id, now=NOW, expires_at=day)
    b1 = await repo.create(token_hash=token_hash("b1"), user_id=bob.id, now=NOW, expires_at=day)
    expired = await repo.create(token_hash=token_hash("b2"), user_id=bob.id, now=NOW, expires_at=five_minutes)

    assert {s.id for s in await repo.list_active_for_user(alice.id, LATER)} == {a1.id, a2.id, a3.id}
    assert await repo.revoke_all_for_user(alice.id, LATER, except_session_id=a3.id) == 2
    # Rows already loaded in the session follow the bulk update.
    assert a1.revoked_at == LATER
    assert a3.revoked_at is None
    assert await repo.revoke_all_for_user(alice.id, LATER) == 1
    assert await repo.get_active(token_hash("b1"), LATER) is not None

    # Purged: revoked (a1, a2, a3) and expired (b2); kept: b1.
    assert await repo.purge_expired(LATER) == 4
    assert await repo.get(b1.id) is not None
    assert await repo.get(expired.id) is None


async def test_sessions_go_with_their_user(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        user = await make_user(session)
        row = await SessionRepository(session).create(
            token_hash=token_hash("t"), user_id=user.id, now=NOW, expires_at=LATER
        )
        await session.commit()
    async with sessions() as session:
        await session.delete(await session.get(UserRow, user.id))
        await session.commit()
    async with sessions() as session:
        assert await session.get(SessionRow, row.id) is None
