"""Dashboard pages: sign-in, registration and the accounts overview.

Forms post with the CSRF token Litestar puts in ``csrf_input``; a page that needs a session
redirects to ``/login`` (the problem handler does it for any HTML request without a principal).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlencode

import msgspec
from litestar import Request, get, post
from litestar.params import QueryParameter, URLEncodedBody
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_303_SEE_OTHER

from brokerlink import __version__, observe
from brokerlink.api.audit import audit_sign_out, audited, sign_in_refused, unchanged, user_actor
from brokerlink.api.auth.cookies import sign_in, sign_out
from brokerlink.api.auth.lockout import account_subject, ip_subject, lockout_of
from brokerlink.api.auth.mfa import needs_mfa, start_mfa_challenge
from brokerlink.api.auth.middleware import MFA_CHALLENGE_OPT
from brokerlink.api.deps import AppClock, AppSettings, CurrentPrincipal, DbSession
from brokerlink.api.guards import require_form_body
from brokerlink.api.ratelimit import client_ip
from brokerlink.domain.models import Balance, Order, Position
from brokerlink.kit.errors import BrokerlinkError, InvalidCredentials, RateLimited
from brokerlink.security.users import UserService
from brokerlink.store.repositories.accounts import AccountListing, AccountRepository
from brokerlink.store.repositories.orders import OrderRepository
from brokerlink.store.repositories.positions import BalanceRepository, PositionRepository
from brokerlink.store.repositories.users import UserRepository
from brokerlink.web.mfa import mfa_pages

PUBLIC = {"exclude_from_auth": True}
DASHBOARD_ORDERS = 20
"""Recent orders shown per account (the API pages through the rest)."""


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


def plain(value: Decimal | None) -> str:
    """A decimal as the dashboard shows it: exact, no exponent, trailing zeros trimmed to two places.

    The store keeps a fixed scale (``1.08503000000``); the digits that matter are all still shown.
    ``static/dashboard.js`` formats the API's strings the same way.
    """
    if value is None:
        return "—"
    text = f"{value:f}"
    if "." not in text:
        return text
    whole, fraction = text.split(".")
    return f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"


class AccountPanel(msgspec.Struct, frozen=True, kw_only=True):
    """One account on the dashboard with what the store last heard from its broker."""

    account: AccountListing
    balances: list[Balance]
    positions: list[Position]
    orders: list[Order]


@get("/", include_in_schema=False)
async def dashboard(principal: CurrentPrincipal, db: DbSession) -> Template:
    """The signed-in user's accounts across brokers, with balances, positions and recent orders.

    Rendered from the store so the page is complete without scripts; ``static/dashboard.js`` then
    adds live quotes, marks and the order ticket through the ``/v1`` API.
    """
    user = await UserRepository(db).get(principal.user_id)
    listings = await AccountRepository(db).list_with_connections(principal.user_id)
    panels = []
    for listing in listings:
        if not principal.can_reach_account(listing.id):
            continue
        orders = await OrderRepository(db).list_for_account(listing.id, limit=DASHBOARD_ORDERS, descending=True)
        panels.append(
            AccountPanel(
                account=listing,
                balances=await BalanceRepository(db).list_for_account(listing.id),
                positions=await PositionRepository(db).list_for_account(listing.id),
                orders=list(orders.items),
            )
        )
    context = {
        "user": user,
        "panels": panels,
        "plain": plain,
        "recent_orders": DASHBOARD_ORDERS,
        "version": __version__,
    }
    return Template(template_name="dashboard.html", context=context)


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
    lockout = lockout_of(request.app.state, settings)
    account, ip = account_subject(data.email), ip_subject(request)
    try:
        await lockout.check(account, ip)
        try:
            user = await UserService(db, clock).authenticate(data.email, data.password)
        except InvalidCredentials:
            await lockout.failed(account, ip)
            raise
    except (InvalidCredentials, RateLimited) as exc:
        locked = isinstance(exc, RateLimited)
        reason = "locked_out" if locked else "password"
        observe.auth_failure(principal=data.email, ip=client_ip(request.scope), reason=reason)
        sign_in_refused(request, data.email, outcome="denied" if locked else "failure")
        context = {
            "next": safe_next(data.next),
            "email": data.email,
            "error": exc.detail,
            "version": __version__,
            "allow_registration": settings.allow_registration,
        }
        if isinstance(exc, RateLimited):
            return Template(template_name="login.html", context=context, status_code=429, headers=exc.headers)
        # 200, not 401: a 401 must carry WWW-Authenticate, and a cookie form has no such scheme.
        return Template(template_name="login.html", context=context)
    issued, cookie = await sign_in(request, db, settings, clock, user)
    mfa_step = await needs_mfa(db, user.id)
    await audited(
        request, db, action="auth.login", target=user.id, now=clock.now(), actor=user_actor(user.id),
        details={"mfa_pending": mfa_step},
    )  # fmt: skip
    if mfa_step:
        await start_mfa_challenge(db, settings, clock, issued)
        target = "/login/mfa?" + urlencode({"next": safe_next(data.next)})
        return Redirect(path=target, status_code=HTTP_303_SEE_OTHER, cookies=[cookie])
    await lockout.succeeded(account)
    observe.auth_success(principal=data.email, ip=client_ip(request.scope), method="password")
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
        unchanged(request)
        return Redirect(path="/login", status_code=HTTP_303_SEE_OTHER)
    try:
        user = await UserService(db, clock).register(
            email=data.email, password=data.password, display_name=data.display_name
        )
    except BrokerlinkError as exc:
        if exc.status >= 500:
            raise
        context = {"email": data.email, "display_name": data.display_name, "error": exc.detail, "version": __version__}
        unchanged(request)
        return Template(template_name="register.html", context=context, status_code=exc.status)
    await audited(request, db, action="auth.register", target=user.id, now=clock.now(), actor=user_actor(user.id))
    _, cookie = await sign_in(request, db, settings, clock, user)
    return Redirect(path="/", status_code=HTTP_303_SEE_OTHER, cookies=[cookie])


@post("/logout", opt={MFA_CHALLENGE_OPT: True}, include_in_schema=False, before_request=require_form_body)
async def logout_submit(
    request: Request[Any, Any, Any], db: DbSession, settings: AppSettings, clock: AppClock
) -> Redirect:
    """End the session and return to the sign-in page."""
    await audit_sign_out(request, db, clock)
    cookie = await sign_out(request, db, settings, clock)
    return Redirect(path="/login", status_code=HTTP_303_SEE_OTHER, cookies=[cookie])


web_routes = [dashboard, login_page, login_submit, register_page, register_submit, logout_submit, *mfa_pages]
