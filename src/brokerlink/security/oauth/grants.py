"""Authlib's grants and client authentication, narrowed to the FAPI 2.0 profile (ADR 0023).

* Client authentication is ``private_key_jwt`` only (:class:`PrivateKeyJwt`): PS256, ES256 or
  EdDSA; ``iss`` = ``sub`` = the client id; ``aud`` the issuer, the token endpoint or the PAR
  endpoint; ``exp`` required and at most ``max_lifetime_s`` ahead; ``iat`` required and at most
  ``leeway_s`` ahead; ``jti`` required and refused when seen before (SECURITY.md 9). The replay
  check needs the async replay store, so the assertion's ``jti`` is collected here and checked by
  the service before anything is stored or returned.
* PKCE is required of every client and S256 only (:class:`S256CodeChallenge`, SECURITY.md 3, 7).
* Authorization codes are redeemed once, by their client, within their lifetime, with the
  redirect URI and verifier they were issued for and the DPoP key given at PAR (SECURITY.md 7, 15).
* Refresh tokens are bound to the client and the DPoP key and are not rotated (SECURITY.md 12).
* Client credentials give a token for the client's own resources: no user, no consent, and none
  of the user-data scopes.

Every grant reads what it needs from the current :class:`~brokerlink.security.oauth.models.Exchange`
and writes its decisions back there; nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import warnings
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, ClassVar

from authlib.oauth2.rfc6749 import (  # type: ignore[import-untyped]
    ClientMixin,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.grants import (  # type: ignore[import-untyped]
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
    RefreshTokenGrant,
)
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion  # type: ignore[import-untyped]
from authlib.oauth2.rfc7636 import CodeChallenge, create_s256_code_challenge  # type: ignore[import-untyped]
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator  # type: ignore[import-untyped]
from joserfc import jwt
from joserfc.errors import JoseError, SecurityWarning

from brokerlink.kit.ids import new_id
from brokerlink.security.dpop import ALLOWED_ALGORITHMS
from brokerlink.security.oauth.models import (
    PRIVATE_KEY_JWT,
    AuthCode,
    IssuedToken,
    NewToken,
    OAuthClient,
    ResourceOwner,
    StoredToken,
    current,
)
from brokerlink.security.oauth.signing import SIGNING_ALG, SigningKey

__all__ = [
    "ASSERTION_ALGORITHMS",
    "CLIENT_CREDENTIALS_SCOPES",
    "CodeGrant",
    "OwnResourcesGrant",
    "PrivateKeyJwt",
    "RefreshGrant",
    "S256CodeChallenge",
    "TokenIssuer",
    "token_hash",
]

ASSERTION_ALGORITHMS: tuple[str, ...] = ALLOWED_ALGORITHMS
"""PS256, ES256, EdDSA: FAPI 2.0's list (never RS256, HMAC or ``none``)."""

CLIENT_CREDENTIALS_SCOPES: frozenset[str] = frozenset()
"""Scopes a client may hold for itself. Every scope offered today reads or acts on a user's data,
which needs the user's consent, so a client-credentials token carries none."""


def token_hash(value: str) -> str:
    """How request URIs, codes and tokens are stored: the hex SHA-256 of the whole value."""
    return hashlib.sha256(value.encode()).hexdigest()


def _timestamp(exchange_now: Any) -> int:
    return int(exchange_now.timestamp())


# --- client authentication ---------------------------------------------------------------------


class PrivateKeyJwt(JWTBearerClientAssertion):  # type: ignore[misc]
    """``private_key_jwt`` (RFC 7523 section 2.2) with the checks of SECURITY.md 9."""

    CLIENT_AUTH_METHOD = PRIVATE_KEY_JWT

    def __init__(self, audiences: Sequence[str], *, leeway_s: int, max_lifetime_s: int) -> None:
        super().__init__(validate_jti=True, leeway=leeway_s)
        self.audiences = list(audiences)
        self.max_lifetime_s = max_lifetime_s

    def __call__(self, query_client: Callable[[str], OAuthClient | None], request: OAuth2Request) -> Any:
        data = request.form
        if data.get("client_assertion_type") == self.CLIENT_ASSERTION_TYPE and data.get("client_assertion"):
            headers, claims = self.extract_assertion(data["client_assertion"])
            # Refused before any key is looked up: the algorithm alone decides (SECURITY.md 9).
            if headers.get("alg") not in ASSERTION_ALGORITHMS:
                raise InvalidClientError(description="client assertion alg must be PS256, ES256 or EdDSA")
            given = data.get("client_id")
            if given is not None and given != claims.get("sub"):
                raise InvalidClientError(description="client_id does not match the assertion")
        return super().__call__(query_client, request)

    def get_audiences(self) -> list[str]:
        return self.audiences

    def resolve_client_public_key(self, client: OAuthClient) -> Any:
        if client.keys is None:
            raise InvalidClientError(description="the client's keys are not available")
        return client.keys

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        try:
            with warnings.catch_warnings():
                # RFC 9864 deprecates the name "EdDSA" (for "Ed25519"); FAPI 2.0 still lists it.
                warnings.simplefilter("ignore", SecurityWarning)
                token = jwt.decode(assertion, resolve_key, algorithms=list(ASSERTION_ALGORITHMS))
        except JoseError as exc:
            raise InvalidClientError(description="client assertion signature does not verify") from exc
        self.verify_claims(token.claims)
        return dict(token.claims)

    def verify_claims(self, claims: dict[str, Any]) -> None:
        exchange = current()
        now = _timestamp(exchange.now)
        registry = jwt.JWTClaimsRegistry(
            now=now,
            leeway=self.leeway,
            iss={"essential": True},
            sub={"essential": True},
            aud={"essential": True, "values": self.audiences},
            exp={"essential": True},
            iat={"essential": True},
            jti={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise InvalidClientError(description=f"client assertion {exc.error}: {exc.description}") from exc
        if claims["sub"] != claims["iss"]:
            raise InvalidClientError(description="client assertion iss and sub must be the client id")
        if claims["exp"] > now + self.max_lifetime_s:
            raise InvalidClientError(description="client assertion expires too far ahead")
        jti = claims["jti"]
        if not isinstance(jti, str) or not 0 < len(jti) <= 256:
            raise InvalidClientError(description="client assertion jti must be a string of 1 to 256 characters")
        exchange.assertions.append((claims["sub"], jti, int(claims["exp"])))


# --- PKCE --------------------------------------------------------------------------------------


class S256CodeChallenge(CodeChallenge):  # type: ignore[misc]
    """PKCE, required of every client, S256 only: Authlib's default method is ``plain``, refused here."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]
    CODE_CHALLENGE_METHODS: ClassVar[dict[str, Callable[[str, str], bool]]] = {
        "S256": lambda verifier, challenge: hmac.compare_digest(
            create_s256_code_challenge(verifier).encode(), challenge.encode()
        )
    }

    def __init__(self) -> None:
        super().__init__(required=True)

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("code_challenge is required (PKCE with S256)")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)

    def get_authorization_code_challenge_method(self, authorization_code: AuthCode) -> str:  # noqa: ARG002
        return "S256"


# --- grants ------------------------------------------------------------------------------------


class CodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    """The authorization code grant over the loaded code (issued by the consent flow, redeemed here)."""

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [PRIVATE_KEY_JWT]
    RESPONSE_TYPES: ClassVar[set[str]] = {"code"}

    def __init__(self, request: OAuth2Request, server: Any) -> None:
        super().__init__(request, server)
        self.register_hook("after_validate_token_request", _check_code_binding)

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:  # noqa: ARG002 - Authlib's hook
        """Never reached: this server does not run Authlib's authorization endpoint. Codes are issued
        when the user approves a consent (:mod:`brokerlink.security.oauth.consents`); this grant only
        redeems them at the token endpoint."""
        raise RuntimeError("authorization codes are issued by the consent flow, never by this grant")

    def query_authorization_code(self, code: str, client: ClientMixin) -> AuthCode | None:  # noqa: ARG002 - loaded by hash
        exchange = current()
        found = exchange.code
        if found is None or found.used or found.client_id != client.get_client_id():
            return None
        if found.expires_at <= exchange.now or not found.consent_live:
            return None
        return found

    def delete_authorization_code(self, authorization_code: AuthCode) -> None:
        current().redeemed_code = authorization_code

    def authenticate_user(self, authorization_code: AuthCode) -> ResourceOwner:
        return ResourceOwner(authorization_code.user_id)


def _check_code_binding(grant: CodeGrant, _result: object) -> None:
    """The DPoP key of the token request is the one the client named at PAR (SECURITY.md 15)."""
    code: AuthCode = grant.request.authorization_code
    proof_jkt = current().dpop_jkt
    if code.dpop_jkt is not None and (proof_jkt is None or not hmac.compare_digest(code.dpop_jkt, proof_jkt)):
        raise InvalidGrantError("the DPoP key differs from the dpop_jkt of the authorization request")


class RefreshGrant(RefreshTokenGrant):  # type: ignore[misc]
    """Refresh: bound to its client and DPoP key; issues an access token only (no rotation, FAPI 2.0)."""

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [PRIVATE_KEY_JWT]
    INCLUDE_NEW_REFRESH_TOKEN = False

    def authenticate_refresh_token(self, refresh_token: str) -> StoredToken | None:  # noqa: ARG002 - loaded by hash
        found = current().refresh
        if found is None or found.expired or found.revoked:
            return None
        return found

    def _validate_request_token(self, client: ClientMixin) -> StoredToken:
        token: StoredToken = super()._validate_request_token(client)
        proof_jkt = current().dpop_jkt
        if token.jkt is not None and (proof_jkt is None or not hmac.compare_digest(token.jkt, proof_jkt)):
            raise InvalidGrantError("the DPoP key differs from the refresh token's")
        return token

    def authenticate_user(self, refresh_token: StoredToken) -> ResourceOwner | None:
        return ResourceOwner(refresh_token.user_id) if refresh_token.user_id else None

    def revoke_old_credential(self, refresh_token: StoredToken) -> None:
        """Not rotated: FAPI 2.0 keeps the refresh token (its binding to client and key protects it)."""


class OwnResourcesGrant(ClientCredentialsGrant):  # type: ignore[misc]
    """Client credentials: a token about the client itself, with none of the user-data scopes."""

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [PRIVATE_KEY_JWT]

    def validate_requested_scope(self) -> None:
        requested = set((self.request.payload.scope or "").split())
        if not requested <= CLIENT_CREDENTIALS_SCOPES:
            raise InvalidScopeError("client credentials give no access to user data: ask the user's consent")


# --- tokens ------------------------------------------------------------------------------------


class TokenIssuer(JWTBearerTokenGenerator):  # type: ignore[misc]
    """Access tokens as RFC 9068 JWTs (``typ: at+jwt``, ES256, ``cnf.jkt``), refresh tokens opaque.

    Authlib's generator stamps ``iat``/``exp`` from the system clock; these come from the
    exchange's ``now`` (the injected clock), and ``jti`` is the token's row id.
    """

    def __init__(self, issuer: str, key: SigningKey, *, access_s: int, refresh_s: int) -> None:
        super().__init__(issuer, alg=SIGNING_ALG, expires_generator=access_s)
        self.key = key
        self.access_s = access_s
        self.refresh_s = refresh_s

    def get_jwks(self) -> Any:
        return self.key.key

    def generate(  # noqa: PLR0917 - Authlib's signature
        self,
        grant_type: str,  # noqa: ARG002 - one lifetime for every grant
        client: OAuthClient,
        user: ResourceOwner | None = None,
        scope: str | None = None,
        expires_in: int | None = None,  # noqa: ARG002 - the configured lifetime always
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        exchange = current()
        scope = self.get_allowed_scope(client, scope)
        access_id = new_id("tok")
        access = self._access_token(access_id, client, user, scope or "")
        token: dict[str, Any] = {
            "access_token": access,
            "token_type": "DPoP",
            "expires_in": self.access_s,
            "scope": scope or "",
        }
        refresh_id = refresh = None
        if include_refresh_token:
            refresh_id, refresh = new_id("tok"), secrets.token_urlsafe(32)
            token["refresh_token"] = refresh
        refresh_expires = exchange.now + timedelta(seconds=self.refresh_s)
        if exchange.consent_expires_at is not None:
            refresh_expires = min(refresh_expires, exchange.consent_expires_at)
        exchange.issued = IssuedToken(
            access_id=access_id,
            access_token=access,
            access_expires_at=exchange.now + timedelta(seconds=self.access_s),
            refresh_id=refresh_id,
            refresh_token=refresh,
            refresh_expires_at=refresh_expires if refresh else None,
        )
        return token

    def _access_token(self, jti: str, client: OAuthClient, user: ResourceOwner | None, scope: str) -> str:
        exchange = current()
        now = _timestamp(exchange.now)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user.get_user_id() if user else client.get_client_id(),
            "aud": self.issuer,
            "client_id": client.get_client_id(),
            "scope": scope,
            "jti": jti,
            "iat": now,
            "exp": now + self.access_s,
        }
        if exchange.dpop_jkt is not None:
            claims["cnf"] = {"jkt": exchange.dpop_jkt}
        header = {"alg": SIGNING_ALG, "typ": "at+jwt", "kid": self.key.kid}
        return jwt.encode(header, claims, self.key.key, algorithms=[SIGNING_ALG])


def save_token(token: dict[str, Any], request: OAuth2Request) -> None:
    """Authlib's ``save_token``: turn what the generator issued into rows to store (by the service)."""
    exchange = current()
    issued = exchange.issued
    if issued is None:  # pragma: no cover - the generator always runs first
        raise RuntimeError("save_token without an issued token")
    client: OAuthClient = request.client
    code: AuthCode | None = request.authorization_code
    parent: StoredToken | None = request.refresh_token
    user_id = request.user.get_user_id() if request.user else None
    consent_id = code.consent_id if code else parent.consent_id if parent else None
    code_id = code.id if code else parent.code_id if parent else None
    common = {
        "client_id": client.id,
        "user_id": user_id,
        "consent_id": consent_id,
        "code_id": code_id,
        "scope": token.get("scope", ""),
        "jkt": exchange.dpop_jkt,
    }
    exchange.new_tokens.append(
        NewToken(
            id=issued.access_id,
            kind="access",
            value=issued.access_token,
            parent_id=parent.id if parent else None,
            expires_at=issued.access_expires_at,
            **common,
        )
    )
    if issued.refresh_token and issued.refresh_id and issued.refresh_expires_at:
        exchange.new_tokens.append(
            NewToken(
                id=issued.refresh_id,
                kind="refresh",
                value=issued.refresh_token,
                parent_id=None,
                expires_at=issued.refresh_expires_at,
                **common,
            )
        )
