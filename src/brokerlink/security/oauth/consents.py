"""Consents: a user's answer to an app's pushed authorization request, and its life afterwards (ADR 0024).

The flow (SECURITY.md 1, 5, 6, 22, 23):

1. ``/authorize`` takes a pushed request (:meth:`ConsentService.take_request`): it must exist, belong
   to the client named in the query, be unexpired and unused; it is marked used at once, so a
   request URI opens at most one consent page.
2. The signed-in user's consent page opens an ``awaiting`` consent for it
   (:meth:`ConsentService.open`), with the scopes the app asked for and no accounts yet.
3. Approving (MFA checked by the caller) makes it ``authorised`` with the accounts chosen, sets its
   expiry and issues a code (random, only its SHA-256 stored, 60 s, single use) that copies the
   redirect URI, scopes, PKCE challenge and DPoP key binding from the pushed request. Declining
   makes it ``rejected``.
4. Revoking makes it ``revoked`` and revokes its tokens in the same transaction. A consent past its
   ``expires_at`` is ``expired``: it is marked so (and its tokens revoked) whenever it is looked
   at; the resource server refuses it by its ``expires_at`` in any case.

Nothing here commits: callers commit, then publish :attr:`Ended.revocation` (after the commit, so
no process drops a token that is still valid in the database).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

import msgspec
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.kit.clock import Clock
from brokerlink.kit.errors import BrokerlinkError, Conflict, InvalidInput, NotFound
from brokerlink.kit.ids import new_id
from brokerlink.security.oauth.clients import ClientRepository, OAuthClient
from brokerlink.security.oauth.revocation import TokensRevoked
from brokerlink.security.oauth.scopes import ACCOUNT_SCOPES, SCOPES
from brokerlink.store.models_oauth import ConsentStatus, OAuthCodeRow, OAuthConsentRow, OAuthParRow
from brokerlink.store.repositories._common import FRESH, Page, fetch_page, rowcount
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.oauth_tokens import OAuthTokenRepository

__all__ = [
    "CODE_TTL",
    "REQUEST_URI_PREFIX",
    "AuthorizationRequest",
    "Consent",
    "ConsentRepository",
    "ConsentService",
    "Decision",
    "Ended",
    "InvalidAuthorizationRequest",
    "hash_secret",
    "redirect_with",
]

REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
CODE_TTL = timedelta(seconds=60)
"""Authorization codes live at most 60 s (FAPI 2.0)."""
LIVE = (ConsentStatus.AWAITING, ConsentStatus.AUTHORISED)
MAX_ACCOUNTS = 200


def hash_secret(value: str) -> str:
    """The SHA-256 hex digest under which request URIs, codes and tokens are stored."""
    return hashlib.sha256(value.encode()).hexdigest()


def redirect_with(uri: str, params: Mapping[str, str | None]) -> str:
    """``uri`` with ``params`` (those not None) added to its query; its own query is kept as it is."""
    parts = urlsplit(uri)
    extra = urlencode([(k, v) for k, v in params.items() if v is not None])
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


class InvalidAuthorizationRequest(BrokerlinkError):
    """``/authorize`` was called without a valid pushed request: shown as an error page, never redirected
    (the redirect URI of an unverified request is not to be trusted)."""

    status = 400
    code = "invalid_request_uri"
    title = "Invalid authorization request"


class AuthorizationRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A pushed authorization request as stored by ``/oauth/par`` (already validated there)."""

    id: str
    client_id: str
    redirect_uri: str
    scopes: list[str]
    state: str | None
    code_challenge: str
    code_challenge_method: str
    dpop_jkt: str | None
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None

    @classmethod
    def of_row(cls, row: OAuthParRow) -> AuthorizationRequest:
        """Decode a stored row (``params`` is the JSON object of ADR 0023's shared format)."""
        params = json.loads(row.params)
        asked = set(str(params.get("scope") or "").split())
        state = params.get("state")
        return cls(
            id=row.id,
            client_id=row.client_id,
            redirect_uri=str(params["redirect_uri"]),
            scopes=[s for s in SCOPES if s in asked],
            state=str(state) if state is not None else None,
            code_challenge=str(params["code_challenge"]),
            code_challenge_method=str(params.get("code_challenge_method", "S256")),
            dpop_jkt=row.dpop_jkt,
            created_at=row.created_at,
            expires_at=row.expires_at,
            used_at=row.used_at,
        )


class Consent(msgspec.Struct, frozen=True, kw_only=True):
    """A user's consent for one client."""

    id: str
    client_id: str
    user_id: str
    scopes: list[str]
    account_ids: list[str]
    status: ConsentStatus
    par_id: str | None
    created_at: datetime
    decided_at: datetime | None
    expires_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of_row(cls, row: OAuthConsentRow) -> Consent:
        """Decode a stored row."""
        return cls(
            id=row.id,
            client_id=row.client_id,
            user_id=row.user_id,
            scopes=list(json.loads(row.scopes)),
            account_ids=list(json.loads(row.account_ids)),
            status=ConsentStatus(row.status),
            par_id=row.par_id,
            created_at=row.created_at,
            decided_at=row.decided_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
        )


class Ended(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of ending a consent: what it is now, what changed, and the tokens revoked."""

    consent: Consent
    action: Literal["consent.revoke", "consent.expire"] | None
    """The audit action of the change, or None when nothing changed (it had already ended)."""
    token_ids: list[str]
    at: datetime

    @property
    def revocation(self) -> TokensRevoked | None:
        """The message to publish after the commit (None when no token was revoked)."""
        if not self.token_ids:
            return None
        reason = "consent_revoked" if self.action == "consent.revoke" else "consent_expired"
        return TokensRevoked(token_ids=self.token_ids, consent_id=self.consent.id, reason=reason, at=self.at)


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """A decided consent and where the browser goes next."""

    consent: Consent
    request: AuthorizationRequest
    code: str | None
    """The authorization code (approval only); only its hash is stored."""

    def redirect(self, issuer: str) -> str:
        """The authorization response (RFC 9207: ``iss`` in every one, errors included)."""
        if self.code is not None:
            params = {"code": self.code, "state": self.request.state, "iss": issuer}
        else:
            params = {"error": "access_denied", "state": self.request.state, "iss": issuer}
        return redirect_with(self.request.redirect_uri, params)


class ConsentRepository:
    """Queries on ``oauth_consents``, and the pushed requests and codes they connect. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def par_by_uri_hash(self, uri_hash: str) -> OAuthParRow | None:
        """The pushed request stored under this request URI hash."""
        stmt = select(OAuthParRow).where(OAuthParRow.request_uri_hash == uri_hash)
        return (await self.session.scalars(stmt, execution_options=FRESH)).one_or_none()

    async def par(self, par_id: str) -> OAuthParRow | None:
        """The pushed request with this id."""
        return await self.session.get(OAuthParRow, par_id, populate_existing=True)

    async def mark_par_used(self, par_id: str, now: datetime) -> bool:
        """Mark the request used; False if it already was (another browser got there first)."""
        result = await self.session.execute(
            update(OAuthParRow).where(OAuthParRow.id == par_id, OAuthParRow.used_at.is_(None)).values(used_at=now)
        )
        return rowcount(result) > 0

    async def add(self, consent: Consent) -> None:
        """Insert a consent."""
        self.session.add(
            OAuthConsentRow(
                id=consent.id,
                client_id=consent.client_id,
                user_id=consent.user_id,
                scopes=json.dumps(consent.scopes),
                account_ids=json.dumps(consent.account_ids),
                status=consent.status.value,
                par_id=consent.par_id,
                created_at=consent.created_at,
                decided_at=consent.decided_at,
                expires_at=consent.expires_at,
                revoked_at=consent.revoked_at,
            )
        )
        await self.session.flush()

    async def get(self, consent_id: str) -> Consent | None:
        """The consent with this id, whoever it belongs to."""
        row = await self.session.get(OAuthConsentRow, consent_id, populate_existing=True)
        return Consent.of_row(row) if row is not None else None

    async def get_by_par(self, par_id: str) -> Consent | None:
        """The consent opened for this pushed request, if any."""
        stmt = select(OAuthConsentRow).where(OAuthConsentRow.par_id == par_id).order_by(OAuthConsentRow.id).limit(1)
        row = (await self.session.scalars(stmt, execution_options=FRESH)).one_or_none()
        return Consent.of_row(row) if row is not None else None

    async def page_for_user(
        self, user_id: str, *, limit: int, after: str | None, status: ConsentStatus | None = None
    ) -> Page[Consent]:
        """The user's consents, newest first."""
        stmt = select(OAuthConsentRow).where(OAuthConsentRow.user_id == user_id)
        if status is not None:
            stmt = stmt.where(OAuthConsentRow.status == status.value)
        return await fetch_page(
            self.session, stmt, OAuthConsentRow.id, Consent.of_row, limit=limit, after=after, descending=True
        )

    async def due_ids(self, user_id: str, now: datetime) -> list[str]:
        """The user's awaiting or authorised consents whose time is up."""
        stmt = select(OAuthConsentRow.id).where(
            OAuthConsentRow.user_id == user_id,
            OAuthConsentRow.status.in_([s.value for s in LIVE]),
            OAuthConsentRow.expires_at <= now,
        )
        return list((await self.session.scalars(stmt)).all())

    async def transition(
        self, consent_id: str, *, from_: Sequence[ConsentStatus], to: ConsentStatus, **values: object
    ) -> bool:
        """Move the consent to ``to`` if it is in one of ``from_``; False if it was not (someone else moved it)."""
        result = await self.session.execute(
            update(OAuthConsentRow)
            .where(OAuthConsentRow.id == consent_id, OAuthConsentRow.status.in_([s.value for s in from_]))
            .values(status=to.value, **values)
        )
        return rowcount(result) > 0

    async def add_code(self, code_hash: str, consent: Consent, request: AuthorizationRequest, now: datetime) -> str:
        """Store an authorization code (its hash) for an approved consent; returns the code row's id."""
        row = OAuthCodeRow(
            id=new_id("oac"),
            code_hash=code_hash,
            client_id=consent.client_id,
            user_id=consent.user_id,
            consent_id=consent.id,
            redirect_uri=request.redirect_uri,
            scopes=json.dumps(consent.scopes),
            code_challenge=request.code_challenge,
            dpop_jkt=request.dpop_jkt,
            created_at=now,
            expires_at=now + CODE_TTL,
            used_at=None,
        )
        self.session.add(row)
        await self.session.flush()
        return row.id


class ConsentService:
    """Opening, deciding, listing, revoking and expiring consents. Flushes; the caller commits."""

    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self.session = session
        self.clock = clock
        self.consents = ConsentRepository(session)
        self.clients = ClientRepository(session)

    # --- the authorization request ---------------------------------------------------------------

    async def take_request(self, *, client_id: str, request_uri: str) -> AuthorizationRequest:
        """Consume the pushed request ``request_uri`` of ``client_id`` (SECURITY.md 1 and 5).

        Refused, and nothing issued: no ``request_uri`` (a plain authorization request is not
        accepted), an unknown one, one pushed by another client, an expired one, or one already
        used. It is marked used before this returns.
        """
        if not request_uri:
            raise InvalidAuthorizationRequest("request_uri is required: the app must push its request to /oauth/par")
        if not client_id:
            raise InvalidAuthorizationRequest("client_id is required")
        row = None
        if request_uri.startswith(REQUEST_URI_PREFIX) and len(request_uri) <= 512:
            row = await self.consents.par_by_uri_hash(hash_secret(request_uri))
        # Another client's request is reported as unknown: it says nothing about what exists.
        if row is None or row.client_id != client_id:
            raise InvalidAuthorizationRequest("the request_uri is unknown")
        now = self.clock.now()
        if row.used_at is not None:
            raise InvalidAuthorizationRequest("the request_uri was already used: the app must push a new request")
        if row.expires_at <= now:
            raise InvalidAuthorizationRequest("the request_uri has expired: the app must push a new request")
        await self._active_client(client_id)
        if not await self.consents.mark_par_used(row.id, now):
            raise InvalidAuthorizationRequest("the request_uri was already used: the app must push a new request")
        row.used_at = now
        return AuthorizationRequest.of_row(row)

    async def open(self, par_id: str, *, user_id: str, decision_window: timedelta) -> tuple[Consent, bool]:
        """The awaiting consent for a request ``/authorize`` took, and whether it is new: created for
        ``user_id`` on the first visit, the same one on later visits (a reload). Another user's is a 404."""
        existing = await self.consents.get_by_par(par_id)
        if existing is not None:
            if existing.user_id != user_id:
                raise NotFound("consent request not found")
            return existing, False
        row = await self.consents.par(par_id)
        if row is None or row.used_at is None:
            raise NotFound("consent request not found")
        now = self.clock.now()
        deadline = row.used_at + decision_window
        if deadline <= now:
            raise InvalidAuthorizationRequest("this request is too old: return to the app and start again")
        await self._active_client(row.client_id)
        request = AuthorizationRequest.of_row(row)
        consent = Consent(
            id=new_id("cns"),
            client_id=row.client_id,
            user_id=user_id,
            scopes=request.scopes,
            account_ids=[],
            status=ConsentStatus.AWAITING,
            par_id=row.id,
            created_at=now,
            decided_at=None,
            expires_at=deadline,
            revoked_at=None,
        )
        await self.consents.add(consent)
        return consent, True

    async def request_of(self, consent: Consent) -> AuthorizationRequest:
        """The pushed request a consent answers."""
        row = await self.consents.par(consent.par_id) if consent.par_id else None
        if row is None:
            raise Conflict("this consent has no authorization request to answer")
        return AuthorizationRequest.of_row(row)

    async def check_accounts(self, consent: Consent, account_ids: Sequence[str]) -> list[str]:
        """The accounts chosen for ``consent``, checked: the user's own (422 ``account_ids`` otherwise),
        at least one when an account scope is asked; duplicates dropped, order kept."""
        chosen = list(dict.fromkeys(account_ids))
        owned = {a.id for a in await AccountRepository(self.session).list_for_user(consent.user_id)}
        if len(chosen) > MAX_ACCOUNTS or not set(chosen) <= owned:
            raise InvalidInput("choose among your own accounts", extra={"field": "account_ids"})
        if ACCOUNT_SCOPES.intersection(consent.scopes) and not chosen:
            raise InvalidInput("choose at least one account to share", extra={"field": "account_ids"})
        return chosen

    async def approve(
        self, consent_id: str, *, user_id: str, account_ids: Sequence[str], valid_for: timedelta
    ) -> Decision:
        """Authorise an awaiting consent for ``account_ids`` (the user's own; at least one when an
        account scope is asked) and issue the code. MFA is the caller's to check first."""
        consent, ended = await self.for_user(consent_id, user_id)
        self._still_awaiting(consent, ended)
        request = await self.request_of(consent)
        chosen = await self.check_accounts(consent, account_ids)
        await self._active_client(consent.client_id)
        now = self.clock.now()
        moved = await self.consents.transition(
            consent.id,
            from_=[ConsentStatus.AWAITING],
            to=ConsentStatus.AUTHORISED,
            account_ids=json.dumps(chosen),
            decided_at=now,
            expires_at=now + valid_for,
        )
        if not moved:
            raise Conflict("this request was already answered")
        approved = await self._get(consent.id)
        code = secrets.token_urlsafe(32)
        await self.consents.add_code(hash_secret(code), approved, request, now)
        return Decision(consent=approved, request=request, code=code)

    async def reject(self, consent_id: str, *, user_id: str) -> Decision:
        """Decline an awaiting consent: the app gets ``access_denied``."""
        consent, ended = await self.for_user(consent_id, user_id)
        self._still_awaiting(consent, ended)
        request = await self.request_of(consent)
        moved = await self.consents.transition(
            consent.id, from_=[ConsentStatus.AWAITING], to=ConsentStatus.REJECTED, decided_at=self.clock.now()
        )
        if not moved:
            raise Conflict("this request was already answered")
        return Decision(consent=await self._get(consent.id), request=request, code=None)

    # --- after the decision ----------------------------------------------------------------------

    async def for_user(self, consent_id: str, user_id: str) -> tuple[Consent, Ended | None]:
        """The user's consent (404 for anyone else's), marked expired first if its time is up."""
        consent = await self.consents.get(consent_id)
        if consent is None or consent.user_id != user_id:
            raise NotFound("consent not found")
        ended = await self.expire_if_due(consent)
        return (ended.consent if ended is not None else consent), ended

    async def page_for_user(
        self, user_id: str, *, limit: int, after: str | None, status: ConsentStatus | None = None
    ) -> tuple[Page[Consent], list[Ended]]:
        """The user's consents, newest first, after marking those whose time is up as expired."""
        expired = await self.expire_due(user_id)
        page = await self.consents.page_for_user(user_id, limit=limit, after=after, status=status)
        return page, expired

    async def expire_due(self, user_id: str) -> list[Ended]:
        """Mark every consent of the user whose time is up as expired (revoking their tokens)."""
        ended: list[Ended] = []
        for consent_id in await self.consents.due_ids(user_id, self.clock.now()):
            consent = await self.consents.get(consent_id)
            if consent is not None:
                result = await self.expire_if_due(consent)
                if result is not None:
                    ended.append(result)
        return ended

    async def expire_if_due(self, consent: Consent) -> Ended | None:
        """If an awaiting or authorised consent is past ``expires_at``: mark it expired and revoke its tokens."""
        now = self.clock.now()
        if consent.status not in LIVE or consent.expires_at > now:
            return None
        if not await self.consents.transition(consent.id, from_=LIVE, to=ConsentStatus.EXPIRED):
            return None
        token_ids = await OAuthTokenRepository(self.session).revoke(now=now, consent_id=consent.id)
        return Ended(consent=await self._get(consent.id), action="consent.expire", token_ids=token_ids, at=now)

    async def revoke(self, consent_id: str, *, user_id: str) -> Ended:
        """Revoke the user's consent and every token issued under it (SECURITY.md 22).

        Revoking a consent that already ended changes nothing (``action`` None); one whose time was
        up is recorded as expired, not revoked.
        """
        consent, ended = await self.for_user(consent_id, user_id)
        if ended is not None:
            return ended
        now = self.clock.now()
        if consent.status not in LIVE or not await self.consents.transition(
            consent.id, from_=LIVE, to=ConsentStatus.REVOKED, revoked_at=now
        ):
            # Tokens are revoked whatever the status says: a consent that has ended has no live tokens.
            stray = await OAuthTokenRepository(self.session).revoke(now=now, consent_id=consent.id)
            return Ended(consent=await self._get(consent.id), action=None, token_ids=stray, at=now)
        token_ids = await OAuthTokenRepository(self.session).revoke(now=now, consent_id=consent.id)
        return Ended(consent=await self._get(consent.id), action="consent.revoke", token_ids=token_ids, at=now)

    # --- helpers ---------------------------------------------------------------------------------

    async def _get(self, consent_id: str) -> Consent:
        consent = await self.consents.get(consent_id)
        if consent is None:  # pragma: no cover - the caller just wrote it
            raise NotFound("consent not found")
        return consent

    async def _active_client(self, client_id: str) -> OAuthClient:
        client = await self.clients.get(client_id)
        if client is None or not client.active:
            raise InvalidAuthorizationRequest("this app is no longer registered")
        return client

    @staticmethod
    def _still_awaiting(consent: Consent, ended: Ended | None) -> None:
        if ended is not None:
            raise Conflict("this request has expired: return to the app and start again")
        if consent.status is not ConsentStatus.AWAITING:
            raise Conflict(f"this request was already answered ({consent.status.value})")
