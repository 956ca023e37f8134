"""OAuth 2.0 as brokerlink's authorization server speaks it (FAPI 2.0): the client's side.

* ``private_key_jwt`` client authentication (RFC 7523): an assertion signed with the app's key,
  PS256 (RSA), ES256 (P-256) or EdDSA (Ed25519), single use (``jti``), audience the issuer;
* pushed authorization requests (RFC 9126) with PKCE S256 (RFC 7636), ``state`` and ``dpop_jkt``;
  the browser goes to ``/authorize`` with the ``request_uri`` only;
* the redirect is checked for ``state`` and the issuer (``iss``, RFC 9207) before its code is used;
* the token endpoint with a DPoP proof (RFC 9449): authorization code, refresh token and client
  credentials grants; a ``use_dpop_nonce`` answer is retried once with the server's nonce.

Tokens travel only in the ``Authorization`` header of later requests, never in a URL.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import msgspec
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey, import_key

from brokerlink.client.dpop import DPoPKey, b64url
from brokerlink.client.errors import FlowError, OAuthError

__all__ = [
    "ASSERTION_TYPE",
    "SIGNING_ALGS",
    "Authorization",
    "ClientKey",
    "OAuthClient",
    "Tokens",
    "client_assertion",
    "load_private_key",
    "new_client_key",
    "pkce_pair",
]

ClientKey = ECKey | RSAKey | OKPKey
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SIGNING_ALGS = {"EC": "ES256", "RSA": "PS256", "OKP": "EdDSA"}
"""The algorithm for each kind of client key: brokerlink accepts only these three (FAPI 2.0)."""
_REFRESH_MARGIN_S = 30


def load_private_key(path: Path) -> ClientKey:
    """The client's private key: a JWK (JSON) or a PEM file, EC P-256, RSA or Ed25519."""
    data = path.read_bytes()
    key = import_key(json.loads(data)) if data.lstrip().startswith(b"{") else _import_pem(data)
    if not isinstance(key, ECKey | RSAKey | OKPKey) or not key.is_private:
        raise FlowError(f"{path}: not a private EC, RSA or OKP key")
    return key


def _import_pem(data: bytes) -> ClientKey:
    for kind in ("EC", "RSA", "OKP"):
        with contextlib.suppress(Exception):
            key = import_key(data, kind)
            if isinstance(key, ECKey | RSAKey | OKPKey):
                return key
    raise FlowError("the key file is neither a JWK nor a PEM private key")


def new_client_key(path: Path) -> dict[str, Any]:
    """Write a new P-256 private key (JWK, mode 600) to ``path``; returns the public key set to register."""
    key = ECKey.generate_key("P-256", private=True)
    private = key.as_dict(private=True) | {"kid": key.thumbprint(), "alg": "ES256", "use": "sig"}
    path.touch(mode=0o600, exist_ok=False)
    path.write_text(json.dumps(private))
    return {"keys": [{k: v for k, v in private.items() if k != "d"}]}


def client_assertion(client_id: str, key: ClientKey, audience: str, *, now: float, lifetime_s: int = 60) -> str:
    """A ``private_key_jwt`` client assertion (RFC 7523): signed by the client, single use (``jti``)."""
    issued = int(now)
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": issued,
        "exp": issued + lifetime_s,
        "jti": secrets.token_urlsafe(24),
    }
    header: dict[str, Any] = {"alg": SIGNING_ALGS[key.key_type], "typ": "JWT"}
    if key.kid:
        header["kid"] = key.kid
    with warnings.catch_warnings():
        # joserfc flags the "EdDSA" name as deprecated (RFC 9864 prefers "Ed25519"); FAPI 2.0 and
        # brokerlink's server name Ed25519 signatures "EdDSA", so that is what the header must say.
        warnings.filterwarnings("ignore", category=SecurityWarning, message="EdDSA")
        return jwt.encode(header, claims, key, algorithms=[header["alg"]])


def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)
    return verifier, b64url(hashlib.sha256(verifier.encode()).digest())


class Authorization(msgspec.Struct, kw_only=True):
    """A pushed request waiting for the user: where to send the browser, and what to check on return."""

    url: str
    state: str
    verifier: str
    redirect_uri: str


class Tokens(msgspec.Struct, kw_only=True):
    """What the token endpoint granted. ``obtained_at`` is seconds since the epoch (the client's clock)."""

    access_token: str
    token_type: str
    expires_in: int
    scope: str = ""
    refresh_token: str | None = None
    obtained_at: float = 0.0

    @property
    def expires_at(self) -> float:
        """When the access token ends (seconds since the epoch)."""
        return self.obtained_at + self.expires_in

    def expiring(self, now: float, margin_s: float = _REFRESH_MARGIN_S) -> bool:
        """Whether the access token ends within ``margin_s`` of ``now``."""
        return self.expires_in > 0 and now >= self.expires_at - margin_s


class _Metadata(msgspec.Struct, kw_only=True):
    issuer: str
    token_endpoint: str
    authorization_endpoint: str | None = None
    pushed_authorization_request_endpoint: str | None = None
    revocation_endpoint: str | None = None


class OAuthClient:
    """A registered app talking to brokerlink's authorization server.

    ``http`` is the app's HTTP client (its base URL does not matter: endpoints come from the
    metadata). ``clock`` gives seconds since the epoch for assertions (a test passes the server's).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        issuer: str,
        client_id: str,
        key: ClientKey,
        dpop: DPoPKey | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.http = http
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.key = key
        self.clock: Callable[[], float] = clock or (dpop.clock if dpop is not None else time.time)
        self.dpop = dpop if dpop is not None else DPoPKey(clock=self.clock)
        self._metadata: _Metadata | None = None

    # --- discovery ------------------------------------------------------------------------------

    async def metadata(self) -> _Metadata:
        """The server's metadata (RFC 8414), read once; it must name the expected issuer."""
        if self._metadata is None:
            response = await self.http.get(f"{self.issuer}/.well-known/oauth-authorization-server")
            _expect(response, 200, "metadata")
            metadata = msgspec.convert(response.json(), _Metadata)
            if metadata.issuer != self.issuer:
                raise FlowError(f"metadata names issuer {metadata.issuer!r}, expected {self.issuer!r}")
            self._metadata = metadata
        return self._metadata

    def assertion(self) -> str:
        """A fresh client assertion for this server."""
        return client_assertion(self.client_id, self.key, self.issuer, now=self.clock())

    def _authentication(self) -> dict[str, str]:
        return {
            "client_id": self.client_id,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(),
        }

    # --- authorization code ---------------------------------------------------------------------

    async def push_authorization_request(self, *, redirect_uri: str, scope: str) -> Authorization:
        """PAR with ``private_key_jwt``, PKCE S256, ``state`` and the DPoP key's thumbprint."""
        metadata = await self.metadata()
        if metadata.pushed_authorization_request_endpoint is None or metadata.authorization_endpoint is None:
            raise FlowError("the server does not offer pushed authorization requests")
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(16)
        form = {
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "dpop_jkt": self.dpop.jkt,
            **self._authentication(),
        }
        response = await self.http.post(metadata.pushed_authorization_request_endpoint, data=form)
        if response.status_code != 201:
            raise _oauth_error(response, "pushed authorization request")
        request_uri = response.json()["request_uri"]
        query = urlencode({"client_id": self.client_id, "request_uri": request_uri})
        return Authorization(
            url=f"{metadata.authorization_endpoint}?{query}", state=state, verifier=verifier, redirect_uri=redirect_uri
        )

    def read_callback(self, authorization: Authorization, redirected_to: str) -> str:
        """The code from the redirect, after checking ``state`` and ``iss`` (RFC 9207: no mix-up)."""
        params = {k: v[0] for k, v in parse_qs(urlsplit(redirected_to).query).items()}
        if params.get("state") != authorization.state:
            raise FlowError("the redirect's state does not match: not the answer to this request")
        if params.get("iss") != self.issuer:
            raise FlowError(f"the redirect's iss is {params.get('iss')!r}, expected {self.issuer!r}")
        if "error" in params:
            raise FlowError(f"authorization refused: {params['error']} {params.get('error_description', '')}".strip())
        if "code" not in params:
            raise FlowError("the redirect carries no code")
        return params["code"]

    async def exchange_code(self, authorization: Authorization, code: str) -> Tokens:
        """The code, its PKCE verifier and a client assertion for DPoP-bound tokens."""
        return await self._token(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": authorization.redirect_uri,
                "code_verifier": authorization.verifier,
            }
        )

    # --- other grants ---------------------------------------------------------------------------

    async def refresh(self, tokens: Tokens) -> Tokens:
        """New tokens for the refresh token (bound to this client; the server may rotate it)."""
        if tokens.refresh_token is None:
            raise FlowError("these tokens have no refresh token")
        fresh = await self._token({"grant_type": "refresh_token", "refresh_token": tokens.refresh_token})
        if fresh.refresh_token is None:  # not rotated: the old one stays good
            fresh.refresh_token = tokens.refresh_token
        return fresh

    async def client_credentials(self, scope: str = "") -> Tokens:
        """A token for the app itself (no user, no user data): the client credentials grant."""
        grant = {"grant_type": "client_credentials"}
        if scope:
            grant["scope"] = scope
        return await self._token(grant)

    async def revoke(self, token: str) -> None:
        """Revoke a token (RFC 7009); revoking a refresh token ends its grant."""
        metadata = await self.metadata()
        if metadata.revocation_endpoint is None:
            raise FlowError("the server does not offer token revocation")
        response = await self.http.post(metadata.revocation_endpoint, data={"token": token, **self._authentication()})
        if response.status_code != 200:
            raise _oauth_error(response, "revocation")

    async def _token(self, grant: dict[str, str]) -> Tokens:
        """The token endpoint with a DPoP proof; one retry when the server asks for its nonce."""
        endpoint = (await self.metadata()).token_endpoint
        for attempt in range(2):
            form = grant | self._authentication()
            response = await self.http.post(endpoint, data=form, headers={"DPoP": self.dpop.proof("POST", endpoint)})
            fresh_nonce = self.dpop.remember_nonce(endpoint, response.headers)
            nonce_asked = response.status_code in {400, 401} and _error(response) == "use_dpop_nonce"
            if attempt == 0 and nonce_asked and fresh_nonce:
                continue
            if response.status_code != 200:
                raise _oauth_error(response, "token request")
            body = response.json()
            if str(body.get("token_type", "")).lower() != "dpop":
                raise FlowError(f"expected a DPoP-bound token, got token_type {body.get('token_type')!r}")
            return Tokens(
                access_token=body["access_token"],
                token_type=body["token_type"],
                expires_in=int(body.get("expires_in", 0)),
                scope=body.get("scope", grant.get("scope", "")),
                refresh_token=body.get("refresh_token"),
                obtained_at=self.clock(),
            )
        raise OAuthError(400, "use_dpop_nonce", "the token endpoint kept asking for a new DPoP nonce")


def _error(response: httpx.Response) -> str | None:
    with contextlib.suppress(ValueError, AttributeError):
        error = response.json().get("error")
        return str(error) if error else None
    return None


def _oauth_error(response: httpx.Response, what: str) -> OAuthError:
    description = ""
    with contextlib.suppress(ValueError, AttributeError):
        description = str(response.json().get("error_description") or "")
    error = _error(response) or f"http_{response.status_code}"
    return OAuthError(response.status_code, error, description or f"{what}: HTTP {response.status_code}")


def _expect(response: httpx.Response, status: int, what: str) -> None:
    if response.status_code != status:
        raise FlowError(f"{what}: HTTP {response.status_code}: {response.text[:500]}")
