"""Authentication: every route needs a principal unless it opts out with ``exclude_from_auth``.

Two ways in. A first-party user's session cookie; or a third-party app's DPoP-bound access token
(``Authorization: DPoP <token>`` with a ``DPoP`` proof, checked by
:class:`~brokerlink.security.oauth.resource.ResourceServer`, ADR 0025). A request that carries an
``Authorization`` header, or an ``access_token`` in its query string, is judged by the token alone
(the query-string token is refused, SECURITY.md 16); anything else by the cookie.

Once the principal is known, :func:`~brokerlink.api.scopes.check_route` refuses what it may not call
at all: an app on a first-party route or without the route's scope, a non-staff user under
``/v1/admin``.

The database session opened to resolve the cookie or the token is kept for the rest of the request:
the handler's ``db`` dependency reuses it, so an authenticated request pays for one connection
checkout and one transaction, not two.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from litestar.config.csrf import CSRFConfig
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.middleware.csrf import CSRFMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink import observe
from brokerlink.api.ratelimit import client_ip
from brokerlink.api.scopes import check_route
from brokerlink.config import Settings
from brokerlink.kit.clock import Clock
from brokerlink.kit.errors import NotAuthenticated
from brokerlink.security.oauth.resource import STATE_KEY as RESOURCE_STATE_KEY
from brokerlink.security.oauth.resource import ConsentInactive, ResourceServer
from brokerlink.security.principal import Principal
from brokerlink.security.sessions import SessionService
from brokerlink.security.totp import MfaPending
from brokerlink.store.db import Database
from brokerlink.store.models import SessionRow

REQUEST_DB_SESSION = "brokerlink.db_session"
REQUEST_SESSION_MFA = "brokerlink.session_mfa"
REQUEST_TOKEN_ID = "brokerlink.token_id"  # noqa: S105 - a scope key, not a secret
"""Scope state key: the id of the access token that authenticated the request (token requests only)."""
REQUEST_TOKEN_EXPIRES = "brokerlink.token_expires_at"  # noqa: S105 - a scope key, not a secret
MFA_CHALLENGE_OPT = "mfa_challenge"
"""Route ``opt`` key: a session held at the MFA step of its sign-in may call this route (and no other)."""


class SessionMfa(msgspec.Struct, frozen=True):
    """The MFA state of the request's session: held at the MFA step, and when it last verified MFA."""

    pending: bool
    verified_at: datetime | None


def session_mfa(scope: Scope) -> SessionMfa | None:
    """The MFA state of the session that authenticated this request, if a session did."""
    mfa = scope.get("state", {}).get(REQUEST_SESSION_MFA)
    return mfa if isinstance(mfa, SessionMfa) else None


def request_token_expiry(scope: Scope) -> datetime | None:
    """When the access token that authenticated this request ends, if a token did."""
    expires_at = scope.get("state", {}).get(REQUEST_TOKEN_EXPIRES)
    return expires_at if isinstance(expires_at, datetime) else None


def request_token_id(scope: Scope) -> str | None:
    """The id of the access token that authenticated this request, if a token did."""
    token_id = scope.get("state", {}).get(REQUEST_TOKEN_ID)
    return token_id if isinstance(token_id, str) else None


_TOKEN_SCHEMES = (b"dpop ", b"bearer ")


def presents_token(scope: Scope) -> bool:
    """Whether the request offers an access token: an ``Authorization: DPoP|Bearer ...`` header, or
    an ``access_token`` query parameter (refused later). Another scheme (a proxy's Basic) is not ours."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization" and value[:7].lower().startswith(_TOKEN_SCHEMES):
            return True
    query: bytes = scope.get("query_string", b"")
    return b"access_token" in query and any(name == "access_token" for name, _ in parse_qsl(query.decode("latin-1")))


def request_db_session(scope: Scope) -> AsyncSession | None:
    """The database session the authentication step opened for this request, if any."""
    session = scope.get("state", {}).get(REQUEST_DB_SESSION)
    return session if isinstance(session, AsyncSession) else None


class SessionAuthMiddleware(AbstractAuthenticationMiddleware):
    """Resolve the session cookie to a :class:`~brokerlink.security.principal.Principal`."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            db = scope.get("state", {}).pop(REQUEST_DB_SESSION, None)
            if isinstance(db, AsyncSession):
                try:
                    # Still open only if no handler took charge of it (a route without ``db``, or a
                    # refused request): keep what authentication wrote (last-seen, idle revocation).
                    if db.in_transaction():
                        await db.commit()
                finally:
                    await db.close()

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        result = await (self._token(connection) if presents_token(connection.scope) else self._session(connection))
        if connection.scope["type"] == ScopeType.WEBSOCKET:
            # The session authentication opened lives as long as the request, which for a socket is
            # hours: one pooled connection per open socket (PostgreSQL's pool runs dry at 20). Keep
            # what authentication wrote and give it back now; socket handlers open their own.
            db = connection.scope["state"].pop(REQUEST_DB_SESSION, None)
            if isinstance(db, AsyncSession):
                try:
                    if db.in_transaction():
                        await db.commit()
                finally:
                    await db.close()
        return result

    async def _session(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        state = connection.app.state
        settings: Settings = state.settings
        token = connection.cookies.get(settings.session_cookie)
        if not token:
            raise NotAuthorizedException
        database: Database = state.db
        clock: Clock = state.clock
        db = database.sessionmaker()
        connection.scope.setdefault("state", {})[REQUEST_DB_SESSION] = db
        principal = await SessionService(db, settings, clock).resolve(token)
        if principal is None:
            raise NotAuthorizedException
        # Already in the session's identity map (resolve loaded it): no second query.
        row = await db.get(SessionRow, principal.session_id) if principal.session_id else None
        mfa = SessionMfa(pending=bool(row and row.mfa_pending), verified_at=row.mfa_at if row else None)
        handler = connection.scope.get("route_handler")
        if mfa.pending and not (handler is not None and handler.opt.get(MFA_CHALLENGE_OPT)):
            raise MfaPending("finish signing in: send a TOTP or recovery code to POST /v1/auth/mfa")
        connection.scope["state"]["user_id"] = principal.user_id  # for the access log
        _check_route(connection, principal)
        connection.scope["state"][REQUEST_SESSION_MFA] = mfa
        return AuthenticationResult(user=principal, auth=principal.session_id)

    async def _token(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        state = connection.app.state
        scope = connection.scope
        server: ResourceServer | None = state.get(RESOURCE_STATE_KEY)
        if server is None:
            raise NotAuthenticated("access tokens are not accepted here")
        database: Database = state.db
        db = database.sessionmaker()
        scope.setdefault("state", {})[REQUEST_DB_SESSION] = db
        try:
            authenticated = await server.authenticate(
                db,
                # A WebSocket handshake is a GET (RFC 9449: its proof names GET and the http(s) URL).
                method=str(scope.get("method", "GET")),
                path=scope["path"],
                headers=scope.get("headers", ()),
                query_string=scope.get("query_string", b""),
            )
        except (NotAuthenticated, ConsentInactive) as exc:
            observe.auth_failure(principal="access_token", ip=client_ip(scope), reason=exc.code)
            raise
        principal = authenticated.principal
        scope["state"]["user_id"] = principal.user_id  # for the access log
        _check_route(connection, principal)
        scope["state"][REQUEST_TOKEN_ID] = authenticated.token_id
        scope["state"][REQUEST_TOKEN_EXPIRES] = authenticated.expires_at
        return AuthenticationResult(user=principal, auth=authenticated.token_id)


def _check_route(connection: ASGIConnection[Any, Any, Any, Any], principal: Principal) -> None:
    handler = connection.scope.get("route_handler")
    template = connection.scope.get("path_template") or connection.scope["path"]
    websocket = connection.scope["type"] == ScopeType.WEBSOCKET
    check_route(principal, handler.opt if handler is not None else {}, template, websocket=websocket)


class TokenAwareCSRFMiddleware(CSRFMiddleware):
    """Litestar's CSRF check (double-submit cookie), skipped for requests an access token authenticated.

    CSRF rides on cookies the browser adds by itself; a request authenticated by a DPoP-bound token
    in the Authorization header, with no session cookie, cannot be forged that way, and third-party
    apps have no CSRF cookie to echo. A request that also carries the session cookie is checked as
    always. Registered after the authentication middleware, so the principal is known here.
    """

    def __init__(self, app: ASGIApp, config: CSRFConfig, session_cookie: str) -> None:
        super().__init__(app, config)
        self.session_cookie = session_cookie
        self._cookie_name = session_cookie.encode("latin-1")

    def _has_session_cookie(self, scope: Scope) -> bool:
        # Most token requests carry no Cookie header at all: look before parsing any.
        for name, value in scope.get("headers", ()):
            if name == b"cookie" and self._cookie_name in value:
                return self.session_cookie in ASGIConnection(scope).cookies
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if request_token_id(scope) is not None and not self._has_session_cookie(scope):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
