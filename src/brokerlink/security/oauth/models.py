"""What Authlib's synchronous core sees: clients, codes and tokens loaded before it runs, and what it leaves to store.

Authlib's grants and endpoints call their storage hooks synchronously (``query_client``,
``query_authorization_code``, ``save_token``...), while brokerlink's storage is async SQLAlchemy.
So a request runs in three steps (ADR 0023): the service loads everything the request can need
into a :class:`Exchange` (async), runs Authlib's logic on it (sync, no I/O), then writes what the
exchange collected (async, in the request's transaction). The exchange travels in a context
variable, which is how the hooks Authlib calls without a request argument find it.

The model classes implement Authlib's mixins over plain, frozen values: they never touch the database.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, TokenMixin  # type: ignore[import-untyped]
from joserfc import jwk

from brokerlink.security.outbound import LOOPBACK_HOSTS

__all__ = [
    "PRIVATE_KEY_JWT",
    "AuthCode",
    "Exchange",
    "IssuedToken",
    "NewPar",
    "NewToken",
    "OAuthClient",
    "ResourceOwner",
    "StoredToken",
    "current",
    "redirect_uri_acceptable",
    "running",
]

PRIVATE_KEY_JWT = "private_key_jwt"


def redirect_uri_acceptable(uri: str) -> bool:  # noqa: PLR0911 - one answer per rule
    """https, or http to a loopback address (native apps, RFC 8252 section 7.3); no fragment, no credentials."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    if not host or parts.fragment or parts.username is not None or parts.password is not None:
        return False
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, eq=False)
class OAuthClient(ClientMixin):  # type: ignore[misc]
    """A registered client, as Authlib asks about it. Authenticates with ``private_key_jwt`` only."""

    id: str
    name: str
    redirect_uris: tuple[str, ...]
    scopes: frozenset[str]
    grant_types: frozenset[str]
    keys: jwk.KeySet | None = None

    def get_client_id(self) -> str:
        return self.id

    def get_default_redirect_uri(self) -> str | None:
        # Never defaulted: FAPI 2.0 wants redirect_uri in every request (SECURITY.md 4).
        return None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The scope when every name in it is allowed to this client ("" for none), else None (invalid_scope)."""
        names = (scope or "").split()
        if not set(names) <= self.scopes:
            return None
        return " ".join(names)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris and redirect_uri_acceptable(redirect_uri)

    def check_client_secret(self, client_secret: str) -> bool:  # noqa: ARG002 - no secrets: private_key_jwt only
        return False

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:  # noqa: ARG002 - same for every endpoint
        return method == PRIVATE_KEY_JWT

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass(frozen=True)
class ResourceOwner:
    """The user a code or a refresh token was issued for (Authlib's ``user``)."""

    id: str

    def get_user_id(self) -> str:
        return self.id


@dataclass(frozen=True, eq=False)
class AuthCode(AuthorizationCodeMixin):  # type: ignore[misc]
    """An authorization code row, as loaded (``used``/``expired`` decided against the request's ``now``)."""

    id: str
    client_id: str
    user_id: str
    consent_id: str
    redirect_uri: str
    scope: str
    code_challenge: str
    dpop_jkt: str | None
    expires_at: datetime
    used: bool
    consent_live: bool
    """Its consent is authorised and unexpired (a consent revoked before redemption issues nothing)."""

    code_challenge_method = "S256"

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass(frozen=True, eq=False)
class StoredToken(TokenMixin):  # type: ignore[misc]
    """An access or refresh token row, with its liveness decided at load time."""

    id: str
    kind: str
    client_id: str
    user_id: str | None
    consent_id: str | None
    code_id: str | None
    scope: str
    jkt: str | None
    created_at: datetime
    expires_at: datetime
    expired: bool
    revoked: bool
    """Revoked itself, or its consent is no longer authorised (revoked, expired), or its client is disabled."""

    def check_client(self, client: ClientMixin) -> bool:
        return bool(client.get_client_id() == self.client_id)

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int((self.expires_at - self.created_at).total_seconds())

    def is_expired(self) -> bool:
        return self.expired

    def is_revoked(self) -> bool:
        return self.revoked


@dataclass(frozen=True)
class NewToken:
    """A token to store (the hash of ``value``, never the value)."""

    id: str
    kind: str
    value: str
    client_id: str
    user_id: str | None
    consent_id: str | None
    code_id: str | None
    parent_id: str | None
    scope: str
    jkt: str | None
    expires_at: datetime


@dataclass(frozen=True)
class IssuedToken:
    """What the token generator made for one response, before ``save_token`` knows its context."""

    access_id: str
    access_token: str
    access_expires_at: datetime
    refresh_id: str | None
    refresh_token: str | None
    refresh_expires_at: datetime | None


@dataclass(frozen=True)
class NewPar:
    """A validated pushed authorization request to store."""

    id: str
    request_uri: str
    client_id: str
    params: dict[str, str | None]
    dpop_jkt: str | None
    expires_at: datetime


@dataclass
class Exchange:
    """One request's loaded state (inputs) and what Authlib's logic decided (outputs)."""

    now: datetime
    clients: dict[str, OAuthClient] = field(default_factory=dict)
    code: AuthCode | None = None
    refresh: StoredToken | None = None
    presented: StoredToken | None = None
    """The token sent to introspection or revocation, when it exists."""
    consent_expires_at: datetime | None = None
    dpop_jkt: str | None = None
    """The key of the DPoP proof that came with the request (verified before the core runs)."""
    # outputs
    assertions: list[tuple[str, str, int]] = field(default_factory=list)
    """(client id, jti, exp) of every client assertion that verified: checked against replay afterwards."""
    authenticated: OAuthClient | None = None
    issued: IssuedToken | None = None
    new_tokens: list[NewToken] = field(default_factory=list)
    redeemed_code: AuthCode | None = None
    revoke: StoredToken | None = None
    par: NewPar | None = None
    error: str | None = None
    """The OAuth error code the response carries, if any (``invalid_client`` counts as a failed sign-in)."""


_current: ContextVar[Exchange | None] = ContextVar("brokerlink_oauth_exchange", default=None)


def current() -> Exchange:
    """The exchange of the request being handled (only inside :func:`running`)."""
    exchange = _current.get()
    if exchange is None:
        raise RuntimeError("no OAuth exchange is running")
    return exchange


@contextlib.contextmanager
def running(exchange: Exchange) -> Iterator[Exchange]:
    """Make ``exchange`` the current one while Authlib's synchronous logic runs."""
    token = _current.set(exchange)
    try:
        yield exchange
    finally:
        _current.reset(token)
