"""Tables for third-party access (issue 5): OAuth clients, consents, pushed authorization requests,
authorization codes and tokens.

Imported at the end of :mod:`brokerlink.store.models`, so ``Base.metadata`` is complete.

Secrets are never stored: request URIs, codes and tokens are kept as the SHA-256 of the value the
client holds (``*_hash``), so a database dump grants nothing. Lists (redirect URIs, scopes, account
ids) are JSON arrays in ``Text`` columns: they are read whole and never queried inside.

The lifecycle (ADR 0023):

* an admin registers a client (``oauth_clients``);
* the client pushes its authorization request (``oauth_par_requests``, single use, < 600 s);
* the signed-in user sees the consent page; the consent (``oauth_consents``) is ``awaiting`` until
  they approve (``authorised``, with MFA) or decline (``rejected``);
* approval issues a code (``oauth_codes``, single use, 60 s);
* the code is exchanged for an access token and a refresh token (``oauth_tokens``, ``kind``),
  both bound to the client and, when DPoP is used, to the key thumbprint ``jkt``;
* revoking the consent revokes every token issued under it (``consent_id``); a code redeemed twice
  revokes every token issued from it (``code_id``).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from brokerlink.store.models import ENUM, ID, Base, one_of

__all__ = [
    "ConsentStatus",
    "OAuthClientRow",
    "OAuthCodeRow",
    "OAuthConsentRow",
    "OAuthParRow",
    "OAuthTokenRow",
    "TokenKind",
]

HASH = String(64)
"""A hex SHA-256."""


class ConsentStatus(StrEnum):
    """Where a consent stands (the open-banking consent states)."""

    AWAITING = "awaiting"
    AUTHORISED = "authorised"
    REJECTED = "rejected"
    REVOKED = "revoked"
    EXPIRED = "expired"


class TokenKind(StrEnum):
    """What an ``oauth_tokens`` row is."""

    ACCESS = "access"
    REFRESH = "refresh"


class OAuthClientRow(Base):
    """A third-party application registered by an admin.

    It authenticates with ``private_key_jwt`` only: its public keys are ``jwks`` (a JSON Web Key Set
    given at registration) or fetched from ``jwks_uri`` (checked against SSRF at registration and at
    each fetch). ``scopes`` bounds what any consent may grant it.
    """

    __tablename__ = "oauth_clients"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    redirect_uris: Mapped[str] = mapped_column(Text)
    """JSON array of exact redirect URIs (https, or http on a loopback address for native apps)."""
    jwks: Mapped[str | None] = mapped_column(Text)
    """JSON Web Key Set (public keys only), or ``None`` when ``jwks_uri`` is used."""
    jwks_uri: Mapped[str | None] = mapped_column(String(2048))
    scopes: Mapped[str] = mapped_column(Text)
    """JSON array of the scopes this client may ask for."""
    grant_types: Mapped[str] = mapped_column(Text)
    """JSON array: ``authorization_code``, ``refresh_token``, ``client_credentials``."""
    created_by: Mapped[str | None] = mapped_column(ID, ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    disabled_at: Mapped[datetime | None]


class OAuthConsentRow(Base):
    """A user's consent for one client: what it may do (``scopes``) and on which accounts."""

    __tablename__ = "oauth_consents"
    __table_args__ = (
        one_of("status", ConsentStatus),
        Index("ix_oauth_consents_user_id_status", "user_id", "status"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    client_id: Mapped[str] = mapped_column(ID, ForeignKey("oauth_clients.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"))
    scopes: Mapped[str] = mapped_column(Text)
    """JSON array of granted scopes."""
    account_ids: Mapped[str] = mapped_column(Text)
    """JSON array of the account ids the consent covers (chosen on the consent page)."""
    status: Mapped[str] = mapped_column(ENUM)
    par_id: Mapped[str | None] = mapped_column(ID)
    """The pushed authorization request this consent answers (its redirect URI, state, PKCE challenge)."""
    created_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class OAuthParRow(Base):
    """A pushed authorization request (RFC 9126): the client's parameters, referenced by a request URI."""

    __tablename__ = "oauth_par_requests"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    request_uri_hash: Mapped[str] = mapped_column(HASH, unique=True)
    client_id: Mapped[str] = mapped_column(ID, ForeignKey("oauth_clients.id", ondelete="CASCADE"), index=True)
    params: Mapped[str] = mapped_column(Text)
    """JSON object of the validated authorization parameters."""
    dpop_jkt: Mapped[str | None] = mapped_column(String(64))
    """The DPoP key thumbprint the code must be redeemed with (``dpop_jkt`` parameter or PAR's DPoP proof)."""
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class OAuthCodeRow(Base):
    """An authorization code: single use, at most 60 s old, bound to client, redirect URI and PKCE challenge."""

    __tablename__ = "oauth_codes"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    code_hash: Mapped[str] = mapped_column(HASH, unique=True)
    client_id: Mapped[str] = mapped_column(ID, ForeignKey("oauth_clients.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"))
    consent_id: Mapped[str] = mapped_column(ID, ForeignKey("oauth_consents.id", ondelete="CASCADE"), index=True)
    redirect_uri: Mapped[str] = mapped_column(Text)
    scopes: Mapped[str] = mapped_column(Text)
    code_challenge: Mapped[str] = mapped_column(String(128))
    """The PKCE S256 challenge (``plain`` is never accepted)."""
    dpop_jkt: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class OAuthTokenRow(Base):
    """An access or refresh token, stored as the SHA-256 of the token the client holds.

    ``user_id`` and ``consent_id`` are ``None`` for client-credentials tokens (the client's own
    resources). ``jkt`` binds the token to a DPoP key. ``code_id`` is the code it was issued from,
    and ``parent_id`` the refresh token an access token was refreshed with, so reuse of a code or
    revocation of a refresh token finds every descendant.
    """

    __tablename__ = "oauth_tokens"
    __table_args__ = (one_of("kind", TokenKind),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    kind: Mapped[str] = mapped_column(ENUM)
    token_hash: Mapped[str] = mapped_column(HASH, unique=True)
    client_id: Mapped[str] = mapped_column(ID, ForeignKey("oauth_clients.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str | None] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    consent_id: Mapped[str | None] = mapped_column(ID, ForeignKey("oauth_consents.id", ondelete="CASCADE"), index=True)
    code_id: Mapped[str | None] = mapped_column(ID, index=True)
    parent_id: Mapped[str | None] = mapped_column(ID, index=True)
    scopes: Mapped[str] = mapped_column(Text)
    jkt: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
