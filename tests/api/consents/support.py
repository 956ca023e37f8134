"""Helpers for the consent and client tests: clients, pushed requests and tokens written straight to the store.

The authorization server's own endpoints (PAR, token) are built and tested apart; these tests put
the rows those endpoints would write in place, in the shared formats of ADR 0023.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta
from typing import Any

import httpx
from joserfc import jwk
from litestar import Litestar
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.enums import Role
from brokerlink.kit.ids import new_id
from brokerlink.security.oauth.clients import ClientDraft, ClientRepository
from brokerlink.security.oauth.consents import REQUEST_URI_PREFIX, hash_secret
from brokerlink.store.db import Database
from brokerlink.store.models import UserRow
from brokerlink.store.models_oauth import OAuthParRow, OAuthTokenRow, TokenKind
from brokerlink.store.repositories.users import UserRepository

REDIRECT = "https://tracker.example/callback"
ISSUER = "https://testserver.local"
"""The test clients' base URL: DPoP proofs and client assertions name URLs under it."""
ALLOWED_JWKS_HOST = "keys.partner.test"
"""On the test app's ``oauth_jwks_uri_allowed_hosts``."""
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def public_jwk() -> dict[str, Any]:
    """A fresh ES256 public key as a JWK."""
    key = jwk.ECKey.generate_key("P-256")
    return dict(key.as_dict(private=False))


def jwks() -> dict[str, Any]:
    """A key set with one fresh ES256 public key."""
    return {"keys": [public_jwk()]}


async def store_client(
    session: AsyncSession, *, name: str = "Tracker", scopes: list[str] | None = None, now: datetime
) -> str:
    """A registered client (ES256 key, https redirect); returns its id."""
    draft = ClientDraft(
        name=name,
        redirect_uris=[REDIRECT],
        jwks=jwks(),
        scopes=scopes or ["accounts:read", "balances:read", "orders:read", "orders:write"],
        grant_types=["authorization_code", "refresh_token"],
    )
    return (await ClientRepository(session).add(draft, created_by=None, now=now)).id


async def store_request(
    session: AsyncSession,
    client_id: str,
    *,
    now: datetime,
    scope: str = "accounts:read balances:read",
    state: str | None = "st-123",
    redirect_uri: str = REDIRECT,
    expires_in: int = 90,
    dpop_jkt: str | None = "jkt-of-the-apps-key",
) -> str:
    """A pushed authorization request as /oauth/par stores it; returns the request_uri the app holds."""
    request_uri = REQUEST_URI_PREFIX + secrets.token_urlsafe(24)
    params = {
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
    }
    session.add(
        OAuthParRow(
            id=new_id("par"),
            request_uri_hash=hash_secret(request_uri),
            client_id=client_id,
            params=json.dumps(params),
            dpop_jkt=dpop_jkt,
            created_at=now,
            expires_at=now + timedelta(seconds=expires_in),
            used_at=None,
        )
    )
    await session.flush()
    return request_uri


async def store_token(
    session: AsyncSession, *, client_id: str, consent_id: str | None, user_id: str | None, now: datetime
) -> str:
    """A live access token row under ``consent_id``; returns its id."""
    token_id = new_id("tok")
    session.add(
        OAuthTokenRow(
            id=token_id,
            kind=TokenKind.ACCESS.value,
            token_hash=hash_secret(secrets.token_urlsafe(32)),
            client_id=client_id,
            user_id=user_id,
            consent_id=consent_id,
            code_id=None,
            parent_id=None,
            scopes=json.dumps(["accounts:read"]),
            jkt="jkt",
            created_at=now,
            expires_at=now + timedelta(minutes=5),
            revoked_at=None,
        )
    )
    await session.flush()
    return token_id


async def in_store(app: Litestar, work: Any) -> Any:
    """Run ``await work(session)`` in a transaction of the app's database, committed."""
    database: Database = app.state.db
    async with database.session() as session:
        result = await work(session)
        await session.commit()
    return result


async def new_client(app: Litestar, **kwargs: Any) -> str:
    """Register a client in the app's store; returns its id."""
    now = app.state.clock.now()
    result: str = await in_store(app, lambda s: store_client(s, now=now, **kwargs))
    return result


async def push(app: Litestar, client_id: str, **kwargs: Any) -> str:
    """Store a pushed request for ``client_id``; returns its request_uri."""
    now = app.state.clock.now()
    result: str = await in_store(app, lambda s: store_request(s, client_id, now=now, **kwargs))
    return result


async def user_id_of(app: Litestar, email: str) -> str:
    """The id of the user with this email."""

    async def find(session: AsyncSession) -> str:
        return (await session.execute(select(UserRow.id).where(UserRow.email == email))).scalar_one()

    result: str = await in_store(app, find)
    return result


async def make_admin(app: Litestar, email: str) -> None:
    """Give the user the admin role."""
    user_id = await user_id_of(app, email)
    now = app.state.clock.now()
    await in_store(app, lambda s: UserRepository(s).set_role(user_id, Role.ADMIN, now=now))


async def follow_to_consent(c: httpx.AsyncClient, client_id: str, request_uri: str) -> str:
    """Drive the browser from /authorize to the consent page; returns the consent id."""
    first = await c.get("/authorize", params={"client_id": client_id, "request_uri": request_uri})
    assert first.status_code == 303, first.text
    opened = await c.get(first.headers["location"])
    assert opened.status_code == 303, opened.text
    location = opened.headers["location"]
    assert location.startswith("/consents/cns_"), location
    return location.removeprefix("/consents/")
