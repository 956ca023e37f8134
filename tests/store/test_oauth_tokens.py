"""Revoking OAuth tokens by consent, by code and by token, with their descendants (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.bus.memory import MemoryEventBus
from brokerlink.kit.ids import new_id
from brokerlink.security.oauth.revocation import (
    REVOCATION_TOPIC,
    TokensRevoked,
    decode_revocation,
    publish_revocation,
)
from brokerlink.store.models_oauth import ConsentStatus, OAuthClientRow, OAuthConsentRow, OAuthTokenRow, TokenKind
from brokerlink.store.repositories.oauth_tokens import OAuthTokenRepository
from tests.store.factories import NOW, make_user


async def _grant(session: AsyncSession) -> tuple[str, str, str]:
    user = await make_user(session)
    client = OAuthClientRow(
        id=new_id("cli"),
        name="Tracker",
        redirect_uris=json.dumps(["https://app.example/cb"]),
        jwks=None,
        jwks_uri="https://app.example/jwks",
        scopes=json.dumps(["accounts:read"]),
        grant_types=json.dumps(["authorization_code", "refresh_token"]),
        created_by=None,
        created_at=NOW,
        updated_at=NOW,
        disabled_at=None,
    )
    session.add(client)
    await session.flush()
    consent = OAuthConsentRow(
        id=new_id("cns"),
        client_id=client.id,
        user_id=user.id,
        scopes=json.dumps(["accounts:read"]),
        account_ids="[]",
        status=ConsentStatus.AUTHORISED,
        par_id=None,
        created_at=NOW,
        decided_at=NOW,
        expires_at=NOW + timedelta(days=90),
        revoked_at=None,
    )
    session.add(consent)
    await session.flush()
    return user.id, client.id, consent.id


def _token(
    user_id: str, client_id: str, consent_id: str | None, *, kind: TokenKind, code_id: str | None, parent: str | None
) -> OAuthTokenRow:
    token_id = new_id("tok")
    return OAuthTokenRow(
        id=token_id,
        kind=kind,
        token_hash=token_id.ljust(64, "0")[:64],
        client_id=client_id,
        user_id=user_id,
        consent_id=consent_id,
        code_id=code_id,
        parent_id=parent,
        scopes='["accounts:read"]',
        jkt=None,
        created_at=NOW,
        expires_at=NOW + timedelta(minutes=5),
        revoked_at=None,
    )


async def _revoked(session: AsyncSession) -> set[str]:
    rows = await session.scalars(select(OAuthTokenRow.id).where(OAuthTokenRow.revoked_at.is_not(None)))
    return set(rows.all())


async def test_revoking_a_refresh_token_revokes_what_was_refreshed_with_it(session: AsyncSession) -> None:
    user_id, client_id, consent_id = await _grant(session)
    refresh = _token(user_id, client_id, consent_id, kind=TokenKind.REFRESH, code_id="code_1", parent=None)
    first = _token(user_id, client_id, consent_id, kind=TokenKind.ACCESS, code_id="code_1", parent=None)
    refreshed = _token(user_id, client_id, consent_id, kind=TokenKind.ACCESS, code_id="code_1", parent=refresh.id)
    other = _token(user_id, client_id, consent_id, kind=TokenKind.ACCESS, code_id="code_2", parent=None)
    session.add_all([refresh, first, refreshed, other])
    await session.flush()
    repo = OAuthTokenRepository(session)

    assert sorted(await repo.revoke(now=NOW, token_ids=[refresh.id])) == sorted([refresh.id, refreshed.id])
    assert await _revoked(session) == {refresh.id, refreshed.id}
    assert await repo.revoke(now=NOW, token_ids=[refresh.id]) == [], "a second revocation reports nothing"

    assert await repo.revoke(now=NOW, code_id="code_1") == [first.id]
    assert await repo.revoke(now=NOW, consent_id=consent_id) == [other.id]
    assert await _revoked(session) == {refresh.id, first.id, refreshed.id, other.id}


async def test_revoke_needs_a_criterion(session: AsyncSession) -> None:
    with pytest.raises(ValueError, match="needs"):
        await OAuthTokenRepository(session).revoke(now=NOW)


async def test_a_revocation_is_published_once_and_decodes_to_what_was_sent() -> None:
    async with MemoryEventBus() as bus:
        consumer = bus.consumer(REVOCATION_TOPIC, "test", "c1", start="earliest")
        await publish_revocation(bus, TokensRevoked(token_ids=[], reason="consent_revoked", at=NOW))
        sent = TokensRevoked(token_ids=["tok_1", "tok_2"], consent_id="cns_1", reason="consent_revoked", at=NOW)
        await publish_revocation(bus, sent)
        messages = await consumer.read(max_count=10)
    assert [decode_revocation(m.payload) for m in messages] == [sent], "nothing is published for no tokens"
