"""Helpers of the authorization server tests: test clients with keys, client assertions, DPoP proofs,
and the rows the consent flow would have written (clients, consents, codes), inserted directly."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from joserfc import jwk, jws
from joserfc.errors import SecurityWarning
from litestar import Litestar

from brokerlink.kit.clock import ManualClock
from brokerlink.kit.ids import new_id
from brokerlink.store.db import Database
from brokerlink.store.models_oauth import OAuthClientRow, OAuthCodeRow, OAuthConsentRow

ISSUER = "https://testserver.local"
TOKEN_URL = ISSUER + "/oauth/token"
PAR_URL = ISSUER + "/oauth/par"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REDIRECT = "https://app.example/callback"
LOOPBACK_REDIRECT = "http://127.0.0.1:8765/callback"
HTTP_REDIRECT = "http://app.example/callback"


def generate(kty: str, crv_or_size: str | int) -> jwk.Key:
    """A fresh private key (joserfc's EdDSA deprecation warning is not the point here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return jwk.generate_key(kty, crv_or_size, private=True)  # type: ignore[call-overload,no-any-return]


def sign(header: Mapping[str, Any], claims: Mapping[str, Any], key: jwk.Key | None) -> str:
    """A compact JWS; ``key`` None with ``alg: none`` gives an unsigned token."""
    if key is None:

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        return f"{b64(json.dumps(dict(header)).encode())}.{b64(json.dumps(dict(claims)).encode())}."
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return jws.serialize_compact(dict(header), json.dumps(dict(claims)), key, algorithms=[header["alg"]])


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass
class Dpop:
    """A client's DPoP key and the proofs it makes."""

    clock: ManualClock
    key: jwk.Key = field(default_factory=lambda: generate("EC", "P-256"))

    @property
    def jkt(self) -> str:
        return self.key.thumbprint()

    def proof(self, url: str = TOKEN_URL, *, method: str = "POST", nonce: str | None = None) -> str:
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(12),
            "htm": method,
            "htu": url,
            "iat": int(self.clock.now().timestamp()),
        }
        if nonce is not None:
            claims["nonce"] = nonce
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.key.as_dict(private=False)}
        return sign(header, claims, self.key)


@dataclass
class TestClient:
    """A registered OAuth client: its id, its signing key and the clock its assertions are dated by."""

    __test__ = False  # not a pytest class

    id: str
    key: jwk.Key
    alg: str
    clock: ManualClock

    def assertion(self, *, key: jwk.Key | str | None = "own", **claims: Any) -> str:
        """A client assertion; ``claims`` override (None: remove) the defaults; ``alg`` among them sets the header."""
        now = int(self.clock.now().timestamp())
        alg = claims.pop("alg", self.alg)
        body: dict[str, Any] = {
            "iss": self.id,
            "sub": self.id,
            "aud": TOKEN_URL,
            "iat": now,
            "exp": now + 60,
            "jti": secrets.token_urlsafe(16),
        }
        for name, value in claims.items():
            if value is None:
                body.pop(name, None)
            else:
                body[name] = value
        signing_key = self.key if key == "own" else key
        assert not isinstance(signing_key, str)
        return sign({"alg": alg, "typ": "JWT"}, body, signing_key)

    def form(self, assertion: str | None = None, **params: str) -> dict[str, str]:
        """A form for an authenticated request."""
        return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion or self.assertion(), **params}


async def create_client(
    db: Database,
    clock: ManualClock,
    *,
    alg: str = "ES256",
    scopes: tuple[str, ...] = ("accounts:read", "balances:read", "orders:read"),
    grant_types: tuple[str, ...] = ("authorization_code", "refresh_token", "client_credentials"),
    redirect_uris: tuple[str, ...] = (REDIRECT, LOOPBACK_REDIRECT, HTTP_REDIRECT),
    jwks_uri: str | None = None,
) -> TestClient:
    """Insert an ``oauth_clients`` row (what an admin's registration writes) with a fresh key."""
    key = {"ES256": lambda: generate("EC", "P-256"), "EdDSA": lambda: generate("OKP", "Ed25519"),
           "PS256": lambda: generate("RSA", 2048)}[alg]()  # fmt: skip
    client_id = new_id("cli")
    public = {**key.as_dict(private=False), "use": "sig"}
    async with db.session() as session:
        session.add(
            OAuthClientRow(
                id=client_id,
                name="Test app",
                redirect_uris=json.dumps(list(redirect_uris)),
                jwks=None if jwks_uri else json.dumps({"keys": [public]}),
                jwks_uri=jwks_uri,
                scopes=json.dumps(list(scopes)),
                grant_types=json.dumps(list(grant_types)),
                created_by=None,
                created_at=clock.now(),
                updated_at=clock.now(),
                disabled_at=None,
            )
        )
        await session.commit()
    return TestClient(client_id, key, alg, clock)


@dataclass
class IssuedCode:
    code: str
    code_id: str
    consent_id: str
    verifier: str
    redirect_uri: str


async def issue_code(
    db: Database,
    clock: ManualClock,
    client: TestClient,
    user_id: str,
    *,
    scopes: tuple[str, ...] = ("accounts:read", "balances:read"),
    redirect_uri: str = REDIRECT,
    dpop_jkt: str | None = None,
) -> IssuedCode:
    """What consent approval writes: an authorised consent and a 60 s code (the code's hash only)."""
    verifier = secrets.token_urlsafe(48)
    code = secrets.token_urlsafe(32)
    now = clock.now()
    consent_id, code_id = new_id("cns"), new_id("cod")
    async with db.session() as session:
        session.add(
            OAuthConsentRow(
                id=consent_id, client_id=client.id, user_id=user_id, scopes=json.dumps(list(scopes)),
                account_ids="[]", status="authorised", par_id=None, created_at=now, decided_at=now,
                expires_at=now + timedelta(days=90), revoked_at=None,
            )
        )  # fmt: skip
        await session.flush()
        session.add(
            OAuthCodeRow(
                id=code_id, code_hash=sha256_hex(code), client_id=client.id, user_id=user_id, consent_id=consent_id,
                redirect_uri=redirect_uri, scopes=json.dumps(list(scopes)), code_challenge=s256(verifier),
                dpop_jkt=dpop_jkt, created_at=now, expires_at=now + timedelta(seconds=60), used_at=None,
            )
        )  # fmt: skip
        await session.commit()
    return IssuedCode(code, code_id, consent_id, verifier, redirect_uri)


def code_form(client: TestClient, issued: IssuedCode, **changes: str) -> dict[str, str]:
    form = {
        "grant_type": "authorization_code",
        "code": issued.code,
        "redirect_uri": issued.redirect_uri,
        "code_verifier": issued.verifier,
    }
    return client.form(**(form | changes))


async def post_token(http: httpx.AsyncClient, form: Mapping[str, str], dpop: Dpop | None) -> httpx.Response:
    headers = {"DPoP": dpop.proof()} if dpop is not None else {}
    return await http.post("/oauth/token", data=dict(form), headers=headers)


def oauth_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    """Assert an OAuth error answer (RFC 6749 section 5.2); returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["error"] == error, body
    assert response.headers.get("cache-control") == "no-store"
    return body


def app_db(app: Litestar) -> Database:
    database: Database = app.state.db
    return database
