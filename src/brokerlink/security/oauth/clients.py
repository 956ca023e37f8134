"""Third-party clients registered by admins: validation, storage and disabling (SECURITY.md 30, ADR 0024).

A client authenticates with ``private_key_jwt`` only, so registration is about its public keys and
where it may send users back:

* ``redirect_uris``: exact strings compared as strings (no normalisation, no wildcards), ``https``,
  or ``http`` on a loopback host for native apps (RFC 8252: ``127.0.0.1``, ``[::1]``, ``localhost``);
  never a fragment.
* ``jwks`` (public keys able to verify PS256, ES256 or EdDSA; RSA at least 2048 bits) *or*
  ``jwks_uri``: ``https`` on a public address (:func:`brokerlink.security.outbound.check_public_url`),
  unless its host is on the ``oauth_jwks_uri_allowed_hosts`` list; loopback only when
  ``oauth_jwks_allow_loopback`` says so (tests, demos).
* ``scopes`` a subset of :data:`~brokerlink.security.oauth.scopes.SCOPES`; ``grant_types`` a subset of
  :data:`GRANT_TYPES`.

Every input problem is reported at once, as a 422 whose ``errors`` name each bad field. Disabling a
client revokes all of its live tokens in the same transaction; the caller publishes the
revocation after the commit (:func:`brokerlink.security.oauth.revocation.publish_revocation`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import msgspec
from joserfc import jwk
from joserfc.errors import JoseError
from joserfc.util import urlsafe_b64decode
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.config import Settings
from brokerlink.kit.clock import Clock
from brokerlink.kit.errors import InvalidInput, NotFound
from brokerlink.kit.ids import new_id
from brokerlink.security.dpop import RSA_MAX_BITS, RSA_MIN_BITS
from brokerlink.security.oauth.scopes import SCOPES, UnknownScopeError, parse_scopes
from brokerlink.security.outbound import MAX_URL, Resolver, UnsafeURL, check_public_url, resolve
from brokerlink.store.models_oauth import OAuthClientRow, OAuthTokenRow
from brokerlink.store.repositories._common import FRESH, Page, fetch_page, rowcount
from brokerlink.store.repositories.oauth_tokens import OAuthTokenRepository

__all__ = [
    "ALGORITHMS",
    "DEFAULT_GRANT_TYPES",
    "GRANT_TYPES",
    "ClientChanges",
    "ClientDraft",
    "ClientPolicy",
    "ClientRegistry",
    "ClientRepository",
    "Disabled",
    "OAuthClient",
    "check_jwks",
    "check_redirect_uri",
]

GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
DEFAULT_GRANT_TYPES = ("authorization_code", "refresh_token")
ALGORITHMS = ("PS256", "ES256", "EdDSA")
"""Client assertion algorithms (FAPI 2.0); a registered key must be able to verify one of them."""
LOOPBACK_REDIRECT_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
MAX_REDIRECT_URIS = 10
MAX_KEYS = 10
MAX_JWKS_BYTES = 32 * 1024
MAX_NAME = 200
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k", "r", "t"})
_ALG_FOR_KEY = {("EC", "P-256"): "ES256", ("OKP", "Ed25519"): "EdDSA", ("RSA", None): "PS256"}


class OAuthClient(msgspec.Struct, frozen=True, kw_only=True):
    """A registered client, its JSON columns decoded."""

    id: str
    name: str
    redirect_uris: list[str]
    jwks: dict[str, Any] | None
    jwks_uri: str | None
    scopes: list[str]
    grant_types: list[str]
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    disabled_at: datetime | None

    @property
    def active(self) -> bool:
        """Whether the client may still be used (not disabled)."""
        return self.disabled_at is None

    @classmethod
    def of_row(cls, row: OAuthClientRow) -> OAuthClient:
        """Decode a stored row."""
        return cls(
            id=row.id,
            name=row.name,
            redirect_uris=list(json.loads(row.redirect_uris)),
            jwks=json.loads(row.jwks) if row.jwks else None,
            jwks_uri=row.jwks_uri,
            scopes=list(json.loads(row.scopes)),
            grant_types=list(json.loads(row.grant_types)),
            created_by=row.created_by,
            created_at=row.created_at,
            updated_at=row.updated_at,
            disabled_at=row.disabled_at,
        )


class ClientDraft(msgspec.Struct, kw_only=True):
    """What an admin gives to register a client (checked by :meth:`ClientRegistry.create`)."""

    name: str
    redirect_uris: list[str] = msgspec.field(default_factory=list)
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    scopes: list[str] = msgspec.field(default_factory=list)
    grant_types: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_GRANT_TYPES))


class ClientChanges(msgspec.Struct, kw_only=True):
    """A partial update; ``None`` leaves a field as it is. Giving ``jwks`` drops ``jwks_uri`` and vice versa."""

    name: str | None = None
    redirect_uris: list[str] | None = None
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    scopes: list[str] | None = None
    grant_types: list[str] | None = None


class ClientPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How strictly ``jwks_uri`` is checked (from the settings; tests loosen it)."""

    allow_loopback: bool = False
    allowed_hosts: frozenset[str] = frozenset()
    resolver: Resolver = resolve

    @classmethod
    def from_settings(cls, settings: Settings, *, resolver: Resolver = resolve) -> ClientPolicy:
        """The policy the settings describe."""
        return cls(
            allow_loopback=settings.oauth_jwks_allow_loopback,
            allowed_hosts=frozenset(h.lower().strip("[]") for h in settings.oauth_jwks_uri_allowed_hosts),
            resolver=resolver,
        )


class Disabled(msgspec.Struct, frozen=True, kw_only=True):
    """A client that was just disabled and the ids of the tokens that died with it."""

    client: OAuthClient
    token_ids: list[str]
    changed: bool


# --- validation ---------------------------------------------------------------------------------------


class _Errors:
    """Field errors collected across a whole request, raised together as one 422."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.items.append({"field": field, "source": "body", "message": message})

    def raise_any(self) -> None:
        if self.items:
            detail = "; ".join(f"{e['field']}: {e['message']}" for e in self.items)
            raise InvalidInput(detail, extra={"errors": self.items})


def _has_control(text: str) -> bool:
    return any(ord(c) < 33 or ord(c) == 127 for c in text)


def check_redirect_uri(uri: str) -> str:
    """``uri`` if it is an acceptable redirect URI, else ``ValueError`` saying why.

    Exact strings: what is registered is what must be sent at PAR, byte for byte.
    """
    if not uri or len(uri) > MAX_URL:
        raise ValueError(f"must be 1 to {MAX_URL} characters")
    if _has_control(uri) or "\\" in uri:
        raise ValueError("must not contain spaces, control characters or backslashes")
    if "#" in uri:
        raise ValueError("must not have a fragment")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError("is not a valid URL") from None
    host = (parts.hostname or "").lower()
    if not host or not parts.netloc:
        raise ValueError("must be an absolute URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials")
    if "*" in parts.netloc:
        raise ValueError("must not contain wildcards")
    if parts.scheme == "https":
        return uri
    if parts.scheme == "http":
        if host in LOOPBACK_REDIRECT_HOSTS:
            return uri
        raise ValueError("http is allowed only on a loopback host (127.0.0.1, [::1], localhost)")
    raise ValueError("must use https (or http on a loopback host)")


def _b64_bits(value: object) -> int:
    if not isinstance(value, str):
        raise ValueError("RSA modulus is malformed")  # noqa: TRY004 - reported to the admin as a field error
    try:
        return int.from_bytes(urlsafe_b64decode(value.encode("ascii")), "big").bit_length()
    except (ValueError, TypeError):
        raise ValueError("RSA modulus is malformed") from None


def _check_key(data: object) -> None:
    if not isinstance(data, dict):
        raise ValueError("each key must be a JSON object")  # noqa: TRY004 - reported as a field error
    if _PRIVATE_MEMBERS & data.keys():
        raise ValueError("keys must be public keys only (no private or symmetric members)")
    kty, crv = data.get("kty"), data.get("crv")
    expected = _ALG_FOR_KEY.get((str(kty), None if kty == "RSA" else str(crv)))
    if expected is None:
        raise ValueError("keys must be RSA, EC P-256 or OKP Ed25519 (for PS256, ES256, EdDSA)")
    if kty == "RSA" and not RSA_MIN_BITS <= _b64_bits(data.get("n")) <= RSA_MAX_BITS:
        raise ValueError(f"RSA keys must have {RSA_MIN_BITS} to {RSA_MAX_BITS} bits")
    alg = data.get("alg")
    if alg is not None and alg != expected:
        raise ValueError(f"a {kty} key may only declare alg {expected}")
    if data.get("use", "sig") != "sig":
        raise ValueError("keys must be for signatures (use=sig)")
    ops = data.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or set(ops) - {"verify"}):
        raise ValueError("key_ops may only contain verify")
    try:
        key = jwk.import_key(data)
    except (JoseError, ValueError, TypeError, KeyError):
        raise ValueError("not a valid JSON Web Key") from None
    if key.is_private:
        raise ValueError("keys must be public keys only")


def check_jwks(jwks: Mapping[str, Any]) -> dict[str, Any]:
    """``jwks`` if it is a key set a client may authenticate with, else ``ValueError`` saying why."""
    keys = jwks.get("keys")
    if set(jwks) != {"keys"} or not isinstance(keys, list) or not keys:
        raise ValueError('must be {"keys": [...]} with at least one key')
    if len(keys) > MAX_KEYS:
        raise ValueError(f"at most {MAX_KEYS} keys")
    if len(json.dumps(jwks)) > MAX_JWKS_BYTES:
        raise ValueError(f"larger than {MAX_JWKS_BYTES} bytes")
    kids = [k.get("kid") for k in keys if isinstance(k, dict) and k.get("kid") is not None]
    if len(kids) != len(set(kids)):
        raise ValueError("key ids (kid) must be unique")
    for index, key in enumerate(keys):
        try:
            _check_key(key)
        except ValueError as exc:
            raise ValueError(f"key {index}: {exc}") from None
    return {"keys": [dict(k) for k in keys]}


async def _check_jwks_uri(uri: str, policy: ClientPolicy) -> str:
    try:
        parts = urlsplit(uri)
        host = (parts.hostname or "").lower()
    except ValueError:
        raise UnsafeURL("jwks_uri: not a valid URL", extra={"field": "jwks_uri"}) from None
    if host and host in policy.allowed_hosts:
        # Allow-listed: the address check is waived, nothing else is.
        if parts.scheme != "https" or parts.fragment or parts.username or parts.password or len(uri) > MAX_URL:
            raise UnsafeURL("jwks_uri: must be https, without credentials or fragment", extra={"field": "jwks_uri"})
        return uri
    return await check_public_url(uri, allow_loopback=policy.allow_loopback, resolver=policy.resolver, field="jwks_uri")


def _check_scopes(scopes: Sequence[str], errors: _Errors) -> list[str]:
    try:
        chosen = parse_scopes(scopes)
    except UnknownScopeError as exc:
        errors.add("scopes", f"unknown scopes: {' '.join(exc.unknown)} (known: {' '.join(SCOPES)})")
        return []
    if not chosen:
        errors.add("scopes", "at least one scope is required")
    return [s for s in SCOPES if s in chosen]


def _check_grant_types(grant_types: Sequence[str], redirect_uris: Sequence[str], errors: _Errors) -> list[str]:
    unknown = sorted(set(grant_types) - set(GRANT_TYPES))
    if unknown:
        errors.add("grant_types", f"unknown grant types: {' '.join(unknown)} (known: {' '.join(GRANT_TYPES)})")
        return []
    chosen = [g for g in GRANT_TYPES if g in grant_types]
    if not chosen:
        errors.add("grant_types", "at least one grant type is required")
    if "refresh_token" in chosen and "authorization_code" not in chosen:
        errors.add("grant_types", "refresh_token needs authorization_code")
    if "authorization_code" in chosen and not redirect_uris:
        errors.add("redirect_uris", "authorization_code needs at least one redirect URI")
    return chosen


async def validate(draft: ClientDraft, policy: ClientPolicy) -> ClientDraft:
    """The draft with every field checked and normalised, or one 422 naming every bad field."""
    errors = _Errors()
    name = draft.name.strip()
    if not name or len(name) > MAX_NAME or _has_control(name.replace(" ", "")):
        errors.add("name", f"must be 1 to {MAX_NAME} printable characters")
    redirect_uris: list[str] = []
    if len(draft.redirect_uris) > MAX_REDIRECT_URIS:
        errors.add("redirect_uris", f"at most {MAX_REDIRECT_URIS} redirect URIs")
    for index, uri in enumerate(draft.redirect_uris):
        try:
            check_redirect_uri(uri)
        except ValueError as exc:
            errors.add(f"redirect_uris[{index}]", str(exc))
        else:
            if uri not in redirect_uris:
                redirect_uris.append(uri)
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    if (draft.jwks is None) == (draft.jwks_uri is None):
        errors.add("jwks", "give exactly one of jwks and jwks_uri")
    elif draft.jwks is not None:
        try:
            jwks = check_jwks(draft.jwks)
        except ValueError as exc:
            errors.add("jwks", str(exc))
    elif draft.jwks_uri is not None:
        try:
            jwks_uri = await _check_jwks_uri(draft.jwks_uri.strip(), policy)
        except UnsafeURL as exc:
            errors.add("jwks_uri", exc.detail.removeprefix("jwks_uri: "))
    scopes = _check_scopes(draft.scopes, errors)
    grant_types = _check_grant_types(draft.grant_types, redirect_uris, errors)
    errors.raise_any()
    return ClientDraft(
        name=name, redirect_uris=redirect_uris, jwks=jwks, jwks_uri=jwks_uri, scopes=scopes, grant_types=grant_types
    )


# --- storage ------------------------------------------------------------------------------------------


class ClientRepository:
    """Queries on ``oauth_clients``. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, draft: ClientDraft, *, created_by: str | None, now: datetime) -> OAuthClient:
        """Insert a validated client."""
        row = OAuthClientRow(
            id=new_id("app"),
            name=draft.name,
            redirect_uris=json.dumps(draft.redirect_uris),
            jwks=json.dumps(draft.jwks) if draft.jwks is not None else None,
            jwks_uri=draft.jwks_uri,
            scopes=json.dumps(draft.scopes),
            grant_types=json.dumps(draft.grant_types),
            created_by=created_by,
            created_at=now,
            updated_at=now,
            disabled_at=None,
        )
        self.session.add(row)
        await self.session.flush()
        return OAuthClient.of_row(row)

    async def get(self, client_id: str) -> OAuthClient | None:
        """The client with this id (disabled or not), or None."""
        row = await self.session.get(OAuthClientRow, client_id, populate_existing=True)
        return OAuthClient.of_row(row) if row is not None else None

    async def page(self, *, limit: int, after: str | None, include_disabled: bool) -> Page[OAuthClient]:
        """Clients in registration order."""
        stmt = select(OAuthClientRow)
        if not include_disabled:
            stmt = stmt.where(OAuthClientRow.disabled_at.is_(None))
        return await fetch_page(
            self.session, stmt, OAuthClientRow.id, OAuthClient.of_row, limit=limit, after=after, descending=False
        )

    async def list_all(self) -> list[OAuthClient]:
        """Every client, in registration order (the CLI's listing)."""
        rows = await self.session.scalars(select(OAuthClientRow).order_by(OAuthClientRow.id), execution_options=FRESH)
        return [OAuthClient.of_row(r) for r in rows]

    async def replace(self, client_id: str, draft: ClientDraft, *, now: datetime) -> None:
        """Store a validated draft over the client's registration."""
        await self.session.execute(
            update(OAuthClientRow)
            .where(OAuthClientRow.id == client_id)
            .values(
                name=draft.name,
                redirect_uris=json.dumps(draft.redirect_uris),
                jwks=json.dumps(draft.jwks) if draft.jwks is not None else None,
                jwks_uri=draft.jwks_uri,
                scopes=json.dumps(draft.scopes),
                grant_types=json.dumps(draft.grant_types),
                updated_at=now,
            )
        )

    async def disable(self, client_id: str, *, now: datetime) -> bool:
        """Mark the client disabled; False if it already was (or does not exist)."""
        result = await self.session.execute(
            update(OAuthClientRow)
            .where(OAuthClientRow.id == client_id, OAuthClientRow.disabled_at.is_(None))
            .values(disabled_at=now, updated_at=now)
        )
        return rowcount(result) > 0

    async def live_token_ids(self, client_id: str) -> list[str]:
        """Ids of the client's tokens that are not revoked (expired ones included: revoking is harmless)."""
        stmt = select(OAuthTokenRow.id).where(OAuthTokenRow.client_id == client_id, OAuthTokenRow.revoked_at.is_(None))
        return list((await self.session.scalars(stmt)).all())


class ClientRegistry:
    """Registering, changing and disabling clients (admins, through the API or the CLI)."""

    def __init__(self, session: AsyncSession, clock: Clock, policy: ClientPolicy) -> None:
        self.session = session
        self.clock = clock
        self.policy = policy
        self.clients = ClientRepository(session)

    async def create(self, draft: ClientDraft, *, created_by: str | None) -> OAuthClient:
        """Validate and store a new client (422 naming every bad field)."""
        checked = await validate(draft, self.policy)
        return await self.clients.add(checked, created_by=created_by, now=self.clock.now())

    async def get(self, client_id: str) -> OAuthClient:
        """The client, or 404."""
        client = await self.clients.get(client_id)
        if client is None:
            raise NotFound("client not found")
        return client

    async def update(self, client_id: str, changes: ClientChanges) -> OAuthClient:
        """Apply a partial update; the result is validated as a whole."""
        current = await self.get(client_id)
        draft = ClientDraft(
            name=changes.name if changes.name is not None else current.name,
            redirect_uris=changes.redirect_uris if changes.redirect_uris is not None else current.redirect_uris,
            jwks=current.jwks,
            jwks_uri=current.jwks_uri,
            scopes=changes.scopes if changes.scopes is not None else current.scopes,
            grant_types=changes.grant_types if changes.grant_types is not None else current.grant_types,
        )
        if changes.jwks is not None or changes.jwks_uri is not None:
            draft.jwks, draft.jwks_uri = changes.jwks, changes.jwks_uri
        checked = await validate(draft, self.policy)
        await self.clients.replace(client_id, checked, now=self.clock.now())
        return await self.get(client_id)

    async def disable(self, client_id: str) -> Disabled:
        """Disable the client and revoke all its tokens, in the session's transaction."""
        await self.get(client_id)
        now = self.clock.now()
        changed = await self.clients.disable(client_id, now=now)
        token_ids: list[str] = []
        live = await self.clients.live_token_ids(client_id)
        if live:
            token_ids = await OAuthTokenRepository(self.session).revoke(now=now, token_ids=live)
        return Disabled(client=await self.get(client_id), token_ids=token_ids, changed=changed or bool(token_ids))
