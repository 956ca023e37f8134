"""Dashboard pages: sign-in, registration and the accounts overview.

Forms post with the CSRF token Litestar puts in ``csrf_input``; a page that needs a session
redirects to ``/login`` (the problem handler does it for any HTML request without a principal).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, get, post
from litestar.params import QueryParameter, URLEncodedBody
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_303_SEE_OTHER

from brokerlink import __version__
from brokerlink.api.auth.cookies import sign_in, sign_out
from brokerlink.api.deps import AppClock, AppSettings, CurrentPrincipal, DbSession
from brokerlink.api.guards import require_form_body
from brokerlink.kit.errors import BrokerlinkError, InvalidCredentials
from brokerlink.security.users import UserService
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.users import UserRepository

PUBLIC = {"exclude_from_auth": True}


class LoginForm(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The sign-in form (the CSRF field is checked by the middleware before this is parsed)."""

    email: Annotated[str, msgspec.Meta(max_length=254)] = ""
    password: Annotated[str, msgspec.Meta(max_length=1024)] = ""
    next: Annotated[str, msgspec.Meta(max_length=512)] = "/"
    csrf_token: str = msgspec.field(name="_csrf_token", default="")


class RegisterForm(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The registration form."""

    email: Annotated[str, msgspec.Meta(max_length=254)] = ""
    password: Annotated[str, msgspec.Meta(max_length=1024)] = ""
    display_name: Annotated[str, msgspec.Meta(max_length=100)] = ""
    csrf_token: str = msgspec.field(name="_csrf_token", default="")


def safe_next(target: str) -> str:
    """Only same-site paths: ``//evil.example`` and ``https://...`` would turn login into an open redirect."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target or any(ord(c) < 32 for c in target):
        return "/"
    return target


@get("/", include_in_schema=False)
async def dashboard(principal: CurrentPrincipal, db: DbSession) -> Template:
    """The signed-in user's accounts across brokers."""
    user = await UserRepository(db).get(principal.user_id)
    accounts = await AccountRepository(db).list_with_connections(principal.user_id)
    return Template(
        template_name="dashboard.html", context={"user": user, "accounts": accounts, "version": __version__}
    )


@get("/login", opt=PUBLIC, include_in_schema=False)
async def login_page(
    settings: AppSettings, next_path: Annotated[str, QueryParameter(name="next", max_length=512)] = "/"
) -> Template:
    """The sign-in form."""
    context: dict[str, object] = {
        "next": safe_next(next_path),
        "email": "",
        "error": None,
        "version": __version__,
        "allow_registration": settings.allow_registration,
    }
    return Template(template_name="login.html", context=context)


@post("/login", opt=PUBLIC, include_in_schema=False, before_request=require_form_body)
async def login_submit(
    request: Request[Any, Any, Any],
    data: URLEncodedBody[LoginForm],
    db: DbSession,
    settings: AppSettings,
    clock: AppClock,
) -> Template | Redirect:
    """Check the credentials; on success set the session cookie and go where the user was headed."""
    try:
        user = await UserService(db, clock).authenticate(data.email, data.password)
    except InvalidCredentials as exc:
        context = {
            "next": safe_next(data.next),
            "email": data.email,
            "error": exc.detail,
            "version": __version__,
            "allow_registration": settings.allow_registration,
        }
        # 200, not 401: a 401 must carry WWW-Authenticate, and a cookie form has no such scheme.
        return Template(template_name="login.html", context=context)
    _, cookie = await sign_in(request, db, settings, clock, user)
    return Redirect(path=safe_next(data.next), status_code=HTTP_303_SEE_OTHER, cookies=[cookie])


@get("/register", opt=PUBLIC, include_in_schema=False)
async def register_page(settings: AppSettings) -> Template | Redirect:
    """The registration form (or back to sign-in when registration is closed)."""
    if not settings.allow_registration:
        return Redirect(path="/login", status_code=HTTP_303_SEE_OTHER)
    context = {"email": "", "display_name": "", "error": None, "version": __version__}
    return Template(template_name="register.html", context=context)


@post("/register", opt=PUBLIC, include_in_schema=False, before_request=require_form_body)
async def register_submit(
    request: Request[Any, Any, Any],
    data: URLEncodedBody[RegisterForm],
    db: DbSession,
    settings: AppSettings,
    clock: AppClock,
) -> Template | Redirect:
    """Create the account and sign in; show what was wrong otherwise."""
    if not settings.allow_registration:
        return Redirect(path="/login", status_code=HTTP_303_SEE_OTHER)
    try:
        user = await UserService(db, clock).register(
            email=data.email, password=data.password, display_name=data.display_name
        )
    except BrokerlinkError as exc:
        if exc.status >= 500:
            raise
        context = {"email": data.email, "display_name": data.display_name, "error": exc.detail, "version": __version__}
        return Template(template_name="register.html", context=context, status_code=exc.status)
    _, cookie = await sign_in(request, db, settings, clock, user)
    return Redirect(path="/", status_code=HTTP_303_SEE_OTHER, cookies=[cookie])


@post("/logout", include_in_schema=False, before_request=require_form_body)
async def logout_submit(
    request: Request[Any, Any, Any], db: DbSession, settings: AppSettings, clock: AppClock
) -> Redirect:
    """End the session and return to the sign-in page."""
    cookie = await sign_out(request, db, settings, clock)
    return Redirect(path="/login", status_code=HTTP_303_SEE_OTHER, cookies=[cookie])


web_routes = [dashboard, login_page, login_submit, register_page, register_submit, logout_submit]
