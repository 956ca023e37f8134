"""Third-party access for resource-server tests, without the authorization server: rows and keys.

:func:`grant` writes an ``oauth_clients`` row, an authorised consent and an access token straight
into the store (as the token endpoint would) and returns the token; :class:`AppKey` is the app's
DPoP key and signs real ES256 proofs for each request. The token is a JWT shaped like RFC 9068's,
signed with a throwaway key: the resource server authenticates it by its hash, not its signature.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from joserfc import jwk, jws, jwt
from litestar import Litestar
from sqlalchemy import select

from brokerlink.kit.ids import new_id
from brokerlink.security.dpop import access_token_hash
from brokerlink.security.oauth.resource import token_hash
from brokerlink.store.db import Database
from brokerlink.store.models import UserRow
from brokerlink.store.models_oauth import OAuthClientRow, OAuthConsentRow, OAuthTokenRow

ORIGIN = "https://testserver.local"
"""The tests' public origin (``resource_origin``), the base URL of :func:`~tests.api.support.asgi_client`."""
ALL_READ = ("accounts:read", "balances:read", "positions:read", "orders:read", "copy:read", "ledger:read")


def new_key() -> jwk.ECKey:
    """A fresh P-256 key."""
    return jwk.ECKey.generate_key("P-256")


@dataclass
class AppKey:
    """A third-party app's DPoP key: signs one proof per request."""

    key: jwk.ECKey

    @classmethod
    def generate(cls) -> AppKey:
        return cls(new_key())

    @property
    def jkt(self) -> str:
        return self.key.thumbprint()

    def proof(
        self, method: str, url: str, *, token: str | None, now: datetime, jti: str | None = None, **claims: Any
    ) -> str:
        """A DPoP proof for ``method url`` (``url`` absolute or a path under :data:`ORIGIN`)."""
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.key.as_dict(private=False)}
        body: dict[str, Any] = {
            "jti": jti or secrets.token_urlsafe(16),
            "htm": method,
            "htu": url if "://" in url else ORIGIN + url,
            "iat": int(now.timestamp()),
        }
        if token is not None:
            body["ath"] = access_token_hash(token)
        body.update(claims)
        return jws.serialize_compact(header, json.dumps(body), self.key, algorithms=["ES256"])

    def headers(self, method: str, url: str, token: str, now: datetime, **claims: Any) -> dict[str, str]:
        """``Authorization`` and ``DPoP`` for one request."""
        return {"Authorization": f"DPoP {token}", "DPoP": self.proof(method, url, token=token, now=now, **claims)}


@dataclass
class Grant:
    """What :func:`grant` wrote: the token and the ids around it."""

    token: str
    token_id: str
    client_id: str
    consent_id: str | None
    user_id: str | None
    key: AppKey


async def user_id(app: Litestar, email: str) -> str:
    database: Database = app.state.db
    async with database.session() as s:
        found: str = (await s.execute(select(UserRow.id).where(UserRow.email == email))).scalar_one()
        return found


async def grant(
    app: Litestar,
    *,
    email: str | None,
    scopes: tuple[str, ...] | list[str],
    account_ids: list[str] | None = None,
    key: AppKey | None = None,
    consent_status: str = "authorised",
    consent_expires_in: timedelta = timedelta(days=90),
    token_expires_in: timedelta = timedelta(minutes=5),
    client_id: str | None = None,
) -> Grant:
    """Register a client (unless ``client_id`` names one), record the user's consent and issue an
    access token bound to ``key``; ``email=None`` makes a client-credentials token (no user, no consent)."""
    database: Database = app.state.db
    now: datetime = app.state.clock.now()
    key = key or AppKey.generate()
    uid = await user_id(app, email) if email is not None else None
    async with database.session() as s:
        if client_id is None:
            client_id = new_id("cli")
            s.add(
                OAuthClientRow(
                    id=client_id, name="Tracker", redirect_uris=json.dumps(["https://app.example/cb"]),
                    jwks=json.dumps({"keys": []}), jwks_uri=None, scopes=json.dumps(list(scopes)),
                    grant_types=json.dumps(["authorization_code", "refresh_token"]), created_by=None,
                    created_at=now, updated_at=now, disabled_at=None,
                )
            )  # fmt: skip
            await s.flush()
        consent_id = None
        if uid is not None:
            consent_id = new_id("cns")
            s.add(
                OAuthConsentRow(
                    id=consent_id, client_id=client_id, user_id=uid, scopes=json.dumps(list(scopes)),
                    account_ids=json.dumps(account_ids or []), status=consent_status, par_id=None,
                    created_at=now, decided_at=now, expires_at=now + consent_expires_in, revoked_at=None,
                )
            )  # fmt: skip
            await s.flush()
        token_id = new_id("tok")
        signing = new_key()
        claims = {
            "iss": ORIGIN, "sub": uid or client_id, "aud": ORIGIN, "client_id": client_id,
            "scope": " ".join(scopes), "jti": token_id, "iat": int(now.timestamp()),
            "exp": int((now + token_expires_in).timestamp()), "cnf": {"jkt": key.jkt},
        }  # fmt: skip
        token = jwt.encode({"alg": "ES256", "typ": "at+jwt"}, claims, signing, algorithms=["ES256"])
        s.add(
            OAuthTokenRow(
                id=token_id, kind="access", token_hash=token_hash(token), client_id=client_id, user_id=uid,
                consent_id=consent_id, code_id=None, parent_id=None, scopes=json.dumps(list(scopes)), jkt=key.jkt,
                created_at=now, expires_at=now + token_expires_in, revoked_at=None,
            )
        )  # fmt: skip
        await s.commit()
    return Grant(token=token, token_id=token_id, client_id=client_id, consent_id=consent_id, user_id=uid, key=key)


async def call(
    client: httpx.AsyncClient, g: Grant, method: str, path: str, now: datetime, **kwargs: Any
) -> httpx.Response:
    """``method path`` as the app holding ``g``: its token and a fresh proof (``path`` may carry a query)."""
    headers = g.key.headers(method, path.split("?", 1)[0], g.token, now)
    headers.update(kwargs.pop("headers", {}))
    return await client.request(method, path, headers=headers, **kwargs)
