"""The session cookie, set and cleared the same way by the API and the pages."""

from __future__ import annotations

from litestar.datastructures import Cookie

from brokerlink.config import Settings
from brokerlink.security.sessions import IssuedSession


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
