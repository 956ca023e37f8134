"""The session cookie, started and ended the same way by the API and the pages."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import Cookie
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.config import Settings
from brokerlink.kit.clock import Clock
from brokerlink.security.sessions import IssuedSession, SessionService
from brokerlink.store.models import UserRow


def session_cookie(settings: Settings, issued: IssuedSession) -> Cookie:
    """HttpOnly, Secure (unless turned off for plain-HTTP development), SameSite=Lax."""
    return Cookie(
        key=settings.session_cookie,
        value=issued.token,
        max_age=settings.session_ttl_seconds,
        path="/",
        httponly=True,
        secure=settings.cookie_secure,
        samesite="lax",
    )


def clear_session_cookie(settings: Settings) -> Cookie:
    """A cookie that expires the session cookie in the browser."""
    return Cookie(
        key=settings.session_cookie,
        value="",
        max_age=0,
        path="/",
        httponly=True,
        secure=settings.cookie_secure,
        samesite="lax",
    )


async def sign_in(
    request: Request[Any, Any, Any], db: AsyncSession, settings: Settings, clock: Clock, user: UserRow
) -> tuple[IssuedSession, Cookie]:
    """Start a session for ``user`` and the cookie that carries it.

    A fresh token every time, and whatever session the browser had ends: no session fixation.
    """
    sessions = SessionService(db, settings, clock)
    old = request.cookies.get(settings.session_cookie)
    if old:
        await sessions.end(old)
    ip = request.client.host if request.client else None
    issued = await sessions.start(user, ip=ip, user_agent=request.headers.get("user-agent"))
    return issued, session_cookie(settings, issued)


async def sign_out(request: Request[Any, Any, Any], db: AsyncSession, settings: Settings, clock: Clock) -> Cookie:
    """End the request's session (if any) and return the cookie that clears it in the browser."""
    token = request.cookies.get(settings.session_cookie)
    if token:
        await SessionService(db, settings, clock).end(token)
    return clear_session_cookie(settings)
