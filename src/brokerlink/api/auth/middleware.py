"""Session authentication: every route needs a principal unless it opts out with ``exclude_from_auth``.

The database session opened to resolve the cookie is kept for the rest of the request: the
handler's ``db`` dependency reuses it, so an authenticated request pays for one connection
checkout and one transaction, not two.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import Receive, Scope, Send
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.config import Settings
from brokerlink.kit.clock import Clock
from brokerlink.security.sessions import SessionService
from brokerlink.security.totp import MfaPending
from brokerlink.store.db import Database
from brokerlink.store.models import SessionRow

REQUEST_DB_SESSION = "brokerlink.db_session"
REQUEST_SESSION_MFA = "brokerlink.session_mfa"
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
        connection.scope["state"][REQUEST_SESSION_MFA] = mfa
        connection.scope["state"]["user_id"] = principal.user_id  # for the access log
        return AuthenticationResult(user=principal, auth=principal.session_id)
