"""The authorization server's requests, end to end: load (async), decide (Authlib, sync), store (async).

Each entry point takes the request's session (the web boundary commits it) and an
:class:`~brokerlink.security.oauth.server.HttpRequest`, and returns an :class:`Outcome`: the
response, who tried to authenticate, and what must be published once the transaction committed.

Steps of every request (ADR 0023):

1. **Load**: the client named by the assertion's ``sub`` (and its keys: registered ``jwks``, or
   ``jwks_uri`` fetched through the SSRF check), and what the grant or endpoint will look at (the
   code, the refresh token or the presented token, by hash, with its consent). At the token
   endpoint, the DPoP proof is verified here (RFC 9449; errors answer 400 ``invalid_dpop_proof``).
2. **Decide**: Authlib's server runs on the loaded :class:`~brokerlink.security.oauth.models.Exchange`.
3. **Check and store**: the client assertions' ``jti`` against the replay store (a replay is
   ``invalid_client``, and nothing is stored); a code presented again revokes what it issued
   (whatever else the request got wrong); the code is marked used with a conditional update (the
   loser of two concurrent redemptions is a reuse); new tokens, PAR rows and revocations are written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from joserfc.errors import JoseError
from joserfc.jws import extract_compact
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.kit.clock import Clock
from brokerlink.logs import get_logger
from brokerlink.security.dpop import DpopError, NonceProvider, UseDpopNonce, verify_proof
from brokerlink.security.oauth.client_keys import ClientKeyError, ClientKeys
from brokerlink.security.oauth.grants import token_hash
from brokerlink.security.oauth.models import (
    AuthCode,
    Exchange,
    OAuthClient,
    StoredToken,
    running,
)
from brokerlink.security.oauth.revocation import OAuthTokenRepository, TokensRevoked
from brokerlink.security.oauth.server import (
    NO_STORE,
    BrokerlinkAuthorizationServer,
    HttpRequest,
    OAuthResponse,
)
from brokerlink.security.oauth.storage import AuthorizationStore, json_list
from brokerlink.security.replay import ReplayStore
from brokerlink.store.models_oauth import (
    ConsentStatus,
    OAuthConsentRow,
    OAuthParRow,
    OAuthTokenRow,
    TokenKind,
)

__all__ = ["ASSERTION_REPLAY_NAMESPACE", "AuthorizationService", "Outcome", "claimed_client"]

_log = get_logger("brokerlink.security.oauth")
ASSERTION_REPLAY_NAMESPACE = "client-assertion"


@dataclass
class Outcome:
    """What a request came to."""

    response: OAuthResponse
    client_id: str | None = None
    """The client the request claimed to be (the assertion's ``sub``), for the audit trail and lockout."""
    client_failed: bool = False
    """Client authentication was attempted and failed (counts like a failed sign-in, SECURITY.md 29)."""
    revoked: list[TokensRevoked] = field(default_factory=list)
    """Publish these once the transaction committed."""
    target: str | None = None
    """What the request changed (a token, PAR or code id), for the audit record."""


def _error(status: int, error: str, description: str, headers: Mapping[str, str] | None = None) -> OAuthResponse:
    merged = dict(NO_STORE)
    merged.update(headers or {})
    return OAuthResponse(status, {"error": error, "error_description": description}, tuple(merged.items()))


def claimed_client(request: HttpRequest) -> str | None:
    """The ``sub`` of the client assertion, unverified (only to know which client to load)."""
    assertion = request.first("client_assertion")
    if not assertion or len(assertion) > 16_384:
        return None
    try:
        claims = json.loads(extract_compact(assertion.encode("ascii")).payload)
    except (JoseError, ValueError, TypeError, UnicodeError):
        return None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return sub if isinstance(sub, str) and 0 < len(sub) <= 64 else None


def _consent_live(consent: OAuthConsentRow | None, now: datetime) -> bool:
    return consent is not None and consent.status == ConsentStatus.AUTHORISED and consent.expires_at > now


class AuthorizationService:
    """The authorization server's four POST endpoints over a session; see the module docstring."""

    def __init__(
        self,
        server: BrokerlinkAuthorizationServer,
        keys: ClientKeys,
        replay: ReplayStore,
        clock: Clock,
        *,
        nonce: NonceProvider | None = None,
        assertion_leeway_s: int = 10,
    ) -> None:
        self.server = server
        self.keys = keys
        self.replay = replay
        self.clock = clock
        self.nonce = nonce
        self.assertion_leeway_s = assertion_leeway_s

    # --- entry points ----------------------------------------------------------------------

    async def token(self, session: AsyncSession, request: HttpRequest, proof: str | None) -> Outcome:
        """``POST /oauth/token``: every grant needs a DPoP proof; the tokens are bound to its key."""
        db = self._store(session)
        exchange = Exchange(now=self.clock.now())
        client_id = await self._load_client(db, request, exchange)
        failed = self._dpop_failure(proof)
        if failed is not None:
            return Outcome(failed, client_id=client_id)
        try:
            assert proof is not None  # noqa: S101 - _dpop_failure returned None, so there is one
            verified = await verify_proof(
                proof, method="POST", url=self.server.endpoints.token, now=exchange.now,
                replay=self.replay, nonce=self.nonce,
            )  # fmt: skip
        except UseDpopNonce as exc:
            return Outcome(_error(400, exc.code, exc.reason, {"DPoP-Nonce": exc.nonce}), client_id=client_id)
        except DpopError as exc:
            return Outcome(_error(400, "invalid_dpop_proof", exc.reason), client_id=client_id)
        exchange.dpop_jkt = verified.jkt
        reused: AuthCode | None = None
        grant_type = request.first("grant_type")
        if grant_type == "authorization_code":
            reused = await self._load_code(db, request, exchange)
        elif grant_type == "refresh_token":
            await self._load_refresh(db, request, exchange)
        with running(exchange):
            response = self.server.token(request)
        outcome = await self._after(exchange, response, client_id)
        if reused is not None:
            outcome.revoked.append(await self._revoke_code(session, reused, exchange.now))
        if outcome.response.status == 200:
            await self._store_tokens(session, db, exchange, outcome)
        if self.nonce is not None:
            headers = dict(outcome.response.headers) | {"DPoP-Nonce": self.nonce.issue(exchange.now)}
            outcome.response = OAuthResponse(outcome.response.status, outcome.response.body, tuple(headers.items()))
        return outcome

    async def push(self, session: AsyncSession, request: HttpRequest, proof: str | None) -> Outcome:
        """``POST /oauth/par``: the validated request stored under a fresh request URI."""
        db = self._store(session)
        exchange = Exchange(now=self.clock.now())
        client_id = await self._load_client(db, request, exchange)
        dpop_jkt = request.first("dpop_jkt")
        if proof is not None:
            try:
                verified = await verify_proof(
                    proof, method="POST", url=self.server.endpoints.par, now=exchange.now, replay=self.replay
                )
            except DpopError as exc:
                return Outcome(_error(400, "invalid_dpop_proof", exc.reason), client_id=client_id)
            if dpop_jkt is not None and dpop_jkt != verified.jkt:
                return Outcome(
                    _error(400, "invalid_request", "dpop_jkt differs from the DPoP proof's key"), client_id=client_id
                )
            dpop_jkt = verified.jkt
        if dpop_jkt is not None and not (0 < len(dpop_jkt) <= 64):
            return Outcome(_error(400, "invalid_request", "dpop_jkt is not a key thumbprint"), client_id=client_id)
        exchange.dpop_jkt = dpop_jkt
        with running(exchange):
            response = self.server.push(request)
        outcome = await self._after(exchange, response, client_id)
        if outcome.response.status == 201 and exchange.par is not None:
            par = exchange.par
            await db.add_par(
                OAuthParRow(
                    id=par.id,
                    request_uri_hash=token_hash(par.request_uri),
                    client_id=par.client_id,
                    params=json.dumps(par.params, separators=(",", ":")),
                    dpop_jkt=par.dpop_jkt,
                    created_at=exchange.now,
                    expires_at=par.expires_at,
                    used_at=None,
                )
            )
            outcome.target = par.id
        return outcome

    async def introspect(self, session: AsyncSession, request: HttpRequest) -> Outcome:
        """``POST /oauth/introspect``: the client's own tokens; revoked, expired or consent-ended ones are inactive."""
        db = self._store(session)
        exchange = Exchange(now=self.clock.now())
        client_id = await self._load_client(db, request, exchange)
        await self._load_presented(db, request, exchange)
        with running(exchange):
            response = self.server.introspect(request)
        return await self._after(exchange, response, client_id)

    async def revoke(self, session: AsyncSession, request: HttpRequest) -> Outcome:
        """``POST /oauth/revoke`` (RFC 7009): a refresh token takes its whole grant with it."""
        db = self._store(session)
        exchange = Exchange(now=self.clock.now())
        client_id = await self._load_client(db, request, exchange)
        await self._load_presented(db, request, exchange, live_only=False)
        with running(exchange):
            response = self.server.revoke(request)
        outcome = await self._after(exchange, response, client_id)
        token = exchange.revoke
        if outcome.response.status == 200 and token is not None:
            repository = OAuthTokenRepository(db.session)
            code_id = token.code_id if token.kind == TokenKind.REFRESH else None
            ids = await repository.revoke(now=exchange.now, token_ids=[token.id], code_id=code_id)
            outcome.target = token.id
            outcome.revoked.append(
                TokensRevoked(token_ids=ids, consent_id=None, reason="revocation_endpoint", at=exchange.now)
            )
        return outcome

    # --- loading ---------------------------------------------------------------------------

    @staticmethod
    def _store(session: AsyncSession) -> AuthorizationStore:
        return AuthorizationStore(session)

    async def _load_client(self, db: AuthorizationStore, request: HttpRequest, exchange: Exchange) -> str | None:
        client_id = claimed_client(request)
        if client_id is None:
            return None
        row = await db.client(client_id)
        if row is None:
            return client_id
        try:
            keys = await self.keys.keys_for(jwks=row.jwks, jwks_uri=row.jwks_uri)
        except ClientKeyError as exc:
            _log.warning("oauth_client_keys_unavailable", client_id=client_id, reason=str(exc))
            keys = None
        exchange.clients[row.id] = OAuthClient(
            id=row.id,
            name=row.name,
            redirect_uris=tuple(json_list(row.redirect_uris)),
            scopes=frozenset(json_list(row.scopes)),
            grant_types=frozenset(json_list(row.grant_types)),
            keys=keys,
        )
        return client_id

    async def _load_code(self, db: AuthorizationStore, request: HttpRequest, exchange: Exchange) -> AuthCode | None:
        """Load the presented code; returns it when it was already used (a reuse, whatever happens next)."""
        value = request.first("code")
        if not value:
            return None
        row = await db.code(token_hash(value))
        if row is None:
            return None
        consent = await db.consent(row.consent_id)
        code = AuthCode(
            id=row.id,
            client_id=row.client_id,
            user_id=row.user_id,
            consent_id=row.consent_id,
            redirect_uri=row.redirect_uri,
            scope=" ".join(json_list(row.scopes)),
            code_challenge=row.code_challenge,
            dpop_jkt=row.dpop_jkt,
            expires_at=row.expires_at,
            used=row.used_at is not None,
            consent_live=_consent_live(consent, exchange.now),
        )
        exchange.code = code
        exchange.consent_expires_at = consent.expires_at if consent is not None else None
        return code if code.used else None

    async def _stored(self, db: AuthorizationStore, row: OAuthTokenRow, now: datetime) -> StoredToken:
        revoked = row.revoked_at is not None
        if row.consent_id is not None:
            revoked = revoked or not _consent_live(await db.consent(row.consent_id), now)
        if await db.client(row.client_id) is None:
            revoked = True
        return StoredToken(
            id=row.id,
            kind=row.kind,
            client_id=row.client_id,
            user_id=row.user_id,
            consent_id=row.consent_id,
            code_id=row.code_id,
            scope=" ".join(json_list(row.scopes)),
            jkt=row.jkt,
            created_at=row.created_at,
            expires_at=row.expires_at,
            expired=row.expires_at <= now,
            revoked=revoked,
        )

    async def _load_refresh(self, db: AuthorizationStore, request: HttpRequest, exchange: Exchange) -> None:
        value = request.first("refresh_token")
        if not value:
            return
        row = await db.token(token_hash(value))
        if row is None or row.kind != TokenKind.REFRESH:
            return
        exchange.refresh = await self._stored(db, row, exchange.now)
        if row.consent_id is not None:
            consent = await db.consent(row.consent_id)
            exchange.consent_expires_at = consent.expires_at if consent is not None else None

    async def _load_presented(
        self, db: AuthorizationStore, request: HttpRequest, exchange: Exchange, *, live_only: bool = True
    ) -> None:
        value = request.first("token")
        if not value:
            return
        row = await db.token(token_hash(value))
        if row is None or (live_only and row.revoked_at is not None):
            return
        exchange.presented = await self._stored(db, row, exchange.now)

    # --- checking and storing --------------------------------------------------------------

    @staticmethod
    def _dpop_failure(proof: str | None) -> OAuthResponse | None:
        if proof is None:
            return _error(400, "invalid_dpop_proof", "a DPoP proof is required at the token endpoint")
        return None

    async def _after(self, exchange: Exchange, response: OAuthResponse, client_id: str | None) -> Outcome:
        """Check the assertions' ``jti`` against replay; a replay turns any answer into ``invalid_client``."""
        for claimed, jti, exp in exchange.assertions:
            ttl = timedelta(seconds=max(exp - int(exchange.now.timestamp()), 0) + self.assertion_leeway_s + 1)
            if not await self.replay.first_use(
                ASSERTION_REPLAY_NAMESPACE, f"{claimed}:{jti}", ttl=ttl, now=exchange.now
            ):
                exchange.error = "invalid_client"
                exchange.new_tokens.clear()
                exchange.par = None
                exchange.revoke = None
                return Outcome(
                    _error(401, "invalid_client", "client assertion jti was already used"),
                    client_id=client_id,
                    client_failed=True,
                )
        return Outcome(response, client_id=client_id, client_failed=response.error == "invalid_client")

    async def _revoke_code(self, session: AsyncSession, code: AuthCode, now: datetime) -> TokensRevoked:
        """A code presented again: revoke everything issued from it (SECURITY.md 7)."""
        ids = await OAuthTokenRepository(session).revoke(now=now, code_id=code.id)
        _log.warning("oauth_code_reused", code_id=code.id, client_id=code.client_id, revoked=len(ids))
        return TokensRevoked(token_ids=ids, consent_id=code.consent_id, reason="code_reused", at=now)

    async def _store_tokens(
        self, session: AsyncSession, db: AuthorizationStore, exchange: Exchange, outcome: Outcome
    ) -> None:
        code = exchange.redeemed_code
        if code is not None and not await db.redeem_code(code.id, exchange.now):
            # Another request redeemed it between our read and our write: this one is the reuse.
            outcome.revoked.append(await self._revoke_code(session, code, exchange.now))
            outcome.response = _error(400, "invalid_grant", "the authorization code was already used")
            return
        for token in exchange.new_tokens:
            await db.add_token(
                OAuthTokenRow(
                    id=token.id,
                    kind=token.kind,
                    token_hash=token_hash(token.value),
                    client_id=token.client_id,
                    user_id=token.user_id,
                    consent_id=token.consent_id,
                    code_id=token.code_id,
                    parent_id=token.parent_id,
                    scopes=json.dumps(token.scope.split()),
                    jkt=token.jkt,
                    created_at=exchange.now,
                    expires_at=token.expires_at,
                    revoked_at=None,
                )
            )
        if exchange.new_tokens:
            outcome.target = exchange.new_tokens[0].id
