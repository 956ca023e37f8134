"""The browser side of third-party access: ``/authorize``, the consent page and the connected-apps page.

``GET /authorize?client_id=&request_uri=`` accepts only a pushed request (SECURITY.md 1, 5): an
unknown, expired, used or other client's ``request_uri`` gets an error page and no code. A good
one is consumed at once and the browser is sent to ``/consents/request/{par_id}`` with a cookie
scoped to that path, an HMAC of the request's id: only the browser that came through
``/authorize`` can open that page (an id copied out of a URL is not enough). That page needs a
session like every other page, so a browser that is not signed in goes through ``/login`` (and the
MFA step) and comes back to it, with the request already safe from expiry (ADR 0024).

The page opens an ``awaiting`` consent for the signed-in user and shows it at ``/consents/{id}``:
the app, what it asks in plain words, a checkbox per account, and a code field: approving needs
MFA (a user without it is told to enrol first). Approve and decline answer the app with a 303 to
its redirect URI carrying ``iss`` (SECURITY.md 6). ``/consents`` lists the user's consents with
revoke buttons.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
from litestar import Request, get, post
from litestar.datastructures import Cookie
from litestar.params import Parameter, QueryParameter
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_303_SEE_OTHER
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink import __version__
from brokerlink.api.audit import audited, unchanged
from brokerlink.api.auth.mfa import check_code, needs_mfa
from brokerlink.api.consents.common import finish_ended, issuer_of, require_user
from brokerlink.api.deps import AppClock, AppSettings, CurrentPrincipal, DbSession, Links
from brokerlink.api.guards import require_form_body
from brokerlink.api.hardening import FORM_ACTION_STATE_KEY
from brokerlink.config import Settings
from brokerlink.kit.clock import Clock
from brokerlink.kit.errors import Conflict, InvalidInput, NotFound, RateLimited
from brokerlink.security.audit import Actor
from brokerlink.security.oauth.clients import ClientRepository
from brokerlink.security.oauth.consents import Consent, ConsentService, InvalidAuthorizationRequest
from brokerlink.security.oauth.scopes import describe
from brokerlink.security.principal import Principal
from brokerlink.security.totp import InvalidMfaCode, MfaService
from brokerlink.security.vault import Vault
from brokerlink.store.models_oauth import ConsentStatus
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.users import UserRepository

PUBLIC = {"exclude_from_auth": True}
BINDING_COOKIE = "brokerlink_authz"
REQUEST_PAGE = "/consents/request"
NOTICES = {"revoked": "Access revoked: the app's tokens stopped working at once.", "ended": "That consent had ended."}
MAX_PARAM = 512
MAX_LISTED = 200
PathId = Annotated[str, Parameter(max_length=40)]


def _binding(settings: Settings, par_id: str) -> str:
    """The value of the cookie that ties a pushed request to the browser that brought it to /authorize."""
    key = settings.effective_secret_key.encode()
    return hmac.new(key, b"brokerlink-authorize:" + par_id.encode(), hashlib.sha256).hexdigest()


def _error_page(message: str, status: int = 400, *, user: object = None) -> Template:
    context = {"error": message, "user": user, "version": __version__}
    return Template(template_name="authorize_error.html", context=context, status_code=status)


@get("/authorize", opt=PUBLIC, include_in_schema=False)
async def authorize(  # noqa: PLR0917 - Litestar injects by name
    request: Request[Any, Any, Any],
    db: DbSession,
    settings: AppSettings,
    clock: AppClock,
    client_id: Annotated[str, QueryParameter(max_length=MAX_PARAM)] = "",
    request_uri: Annotated[str, QueryParameter(max_length=MAX_PARAM)] = "",
) -> Template | Redirect:
    """Take the app's pushed request and send the browser on to the consent page (via sign-in if needed)."""
    try:
        pushed = await ConsentService(db, clock).take_request(client_id=client_id, request_uri=request_uri)
    except InvalidAuthorizationRequest as exc:
        return _error_page(exc.detail)
    await audited(
        request, db, action="oauth.authorize", target=pushed.id, now=clock.now(),
        actor=Actor(kind="client", id=pushed.client_id), details={"scope": " ".join(pushed.scopes)},
    )  # fmt: skip
    path = f"{REQUEST_PAGE}/{pushed.id}"
    cookie = Cookie(
        key=BINDING_COOKIE,
        value=_binding(settings, pushed.id),
        path=path,
        max_age=settings.oauth_consent_decision_seconds,
        httponly=True,
        secure=settings.cookie_secure,
        samesite="lax",
    )
    return Redirect(path=path, status_code=HTTP_303_SEE_OTHER, cookies=[cookie])


@get(f"{REQUEST_PAGE}/{{par_id:str}}", include_in_schema=False)
async def consent_request(  # noqa: PLR0917 - Litestar injects by name
    request: Request[Any, Any, Any],
    par_id: PathId,
    principal: CurrentPrincipal,
    db: DbSession,
    settings: AppSettings,
    clock: AppClock,
) -> Template | Redirect:
    """Open (or reopen) the awaiting consent for the request this browser brought, then show it."""
    require_user(principal)
    user = await UserRepository(db).get(principal.user_id)
    binding = request.cookies.get(BINDING_COOKIE, "")
    if not hmac.compare_digest(binding, _binding(settings, par_id)):
        return _error_page("This link was not opened from the app in this browser, or it is too old.", user=user)
    window = timedelta(seconds=settings.oauth_consent_decision_seconds)
    try:
        consent, created = await ConsentService(db, clock).open(
            par_id, user_id=principal.user_id, decision_window=window
        )
    except InvalidAuthorizationRequest as exc:
        return _error_page(exc.detail, user=user)
    if created:
        await audited(
            request, db, action="consent.request", target=consent.id, now=clock.now(),
            details={"client_id": consent.client_id, "scope": " ".join(consent.scopes)},
        )  # fmt: skip
    return Redirect(path=f"/consents/{consent.id}", status_code=HTTP_303_SEE_OTHER)


async def _page(
    request: Request[Any, Any, Any],
    db: AsyncSession,
    clock: Clock,
    principal: Principal,
    consent: Consent,
    *,
    error: str | None = None,
    selected: list[str] | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Template:
    client = await ClientRepository(db).get(consent.client_id)
    return_host = ""
    if consent.status is ConsentStatus.AWAITING:
        with contextlib.suppress(Conflict):
            target = urlsplit((await ConsentService(db, clock).request_of(consent)).redirect_uri)
            return_host = target.netloc
            # The answer is a redirect from this page's form to the app: the page's CSP must allow it.
            request.scope.setdefault("state", {})[FORM_ACTION_STATE_KEY] = f"{target.scheme}://{target.netloc}"
    context = {
        "user": await UserRepository(db).get(principal.user_id),
        "consent": consent,
        "client_name": client.name if client is not None else consent.client_id,
        "scopes": describe(consent.scopes),
        "accounts": await AccountRepository(db).list_with_connections(principal.user_id),
        "selected": set(selected if selected is not None else consent.account_ids),
        "mfa_enrolled": await needs_mfa(db, principal.user_id),
        "return_host": return_host,
        "error": error,
        "version": __version__,
    }
    return Template(template_name="consent.html", context=context, status_code=status, headers=headers)


@get("/consents/{consent_id:str}", include_in_schema=False)
async def consent_page(
    request: Request[Any, Any, Any],
    consent_id: PathId,
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
) -> Template:
    """The consent: the decision form while it awaits an answer, its status afterwards. Another user's is a 404."""
    require_user(principal)
    consent, ended = await ConsentService(db, clock).for_user(consent_id, principal.user_id)
    await finish_ended(request, db, [ended] if ended is not None else [])
    return await _page(request, db, clock, principal, consent)


class _Decision(msgspec.Struct, frozen=True, kw_only=True):
    decision: str
    account_ids: list[str]
    code: str


async def _decision_form(request: Request[Any, Any, Any]) -> _Decision:
    form = await request.form()
    accounts = [str(v)[:40] for v in form.getall("account_ids", [])]
    return _Decision(
        decision=str(form.get("decision", ""))[:16], account_ids=accounts, code=str(form.get("code", ""))[:64]
    )


@post("/consents/{consent_id:str}/decision", include_in_schema=False, before_request=require_form_body)
async def consent_decision(  # noqa: PLR0917 - Litestar injects by name
    request: Request[Any, Any, Any],
    consent_id: PathId,
    principal: CurrentPrincipal,
    db: DbSession,
    settings: AppSettings,
    clock: AppClock,
    links: Links,
) -> Template | Redirect:
    """Approve (with the accounts chosen and an MFA code) or decline; either way the app gets its answer."""
    require_user(principal)
    form = await _decision_form(request)
    service = ConsentService(db, clock)
    consent, ended = await service.for_user(consent_id, principal.user_id)
    if ended is not None:
        await finish_ended(request, db, [ended])
        return await _page(request, db, clock, principal, ended.consent, error="This request has expired.", status=409)
    if consent.status is not ConsentStatus.AWAITING:
        unchanged(request)
        return await _page(
            request, db, clock, principal, consent, error="This request was already answered.", status=409
        )
    issuer = issuer_of(settings)
    if form.decision == "decline":
        decision = await service.reject(consent.id, user_id=principal.user_id)
        await audited(
            request, db, action="consent.reject", target=consent.id, now=clock.now(),
            details={"client_id": consent.client_id},
        )  # fmt: skip
        return Redirect(path=decision.redirect(issuer), status_code=HTTP_303_SEE_OTHER)
    if form.decision != "approve":
        unchanged(request)
        return await _page(request, db, clock, principal, consent, error="Choose Allow or Decline.", status=400)
    return await _approve(request, db, settings, clock, links.vault, principal, consent, form)


async def _approve(  # noqa: PLR0917 - one decision's inputs
    request: Request[Any, Any, Any],
    db: AsyncSession,
    settings: Settings,
    clock: Clock,
    vault: Vault,
    principal: Principal,
    consent: Consent,
    form: _Decision,
) -> Template | Redirect:
    service = ConsentService(db, clock)
    user = await UserRepository(db).get(principal.user_id)
    if user is None:
        raise NotFound("user not found")
    if not await needs_mfa(db, user.id):
        unchanged(request)
        message = "Approving needs two-step verification: set up an authenticator first."
        return await _page(request, db, clock, principal, consent, error=message, status=403)
    try:
        # The accounts first: a typo there should not spend the user's code.
        chosen = await service.check_accounts(consent, form.account_ids)
    except InvalidInput as exc:
        unchanged(request)
        return await _page(
            request, db, clock, principal, consent, error=exc.detail, selected=form.account_ids, status=422
        )
    try:
        await check_code(request, MfaService(db, vault, clock), settings, user, form.code)
    except (InvalidMfaCode, RateLimited) as exc:
        # check_code has queued the refused attempt's audit record.
        status = 429 if isinstance(exc, RateLimited) else 422
        return await _page(
            request,
            db,
            clock,
            principal,
            consent,
            error=exc.detail,
            selected=chosen,
            status=status,
            headers=exc.headers,
        )
    valid_for = timedelta(days=settings.oauth_consent_days)
    decision = await service.approve(consent.id, user_id=user.id, account_ids=chosen, valid_for=valid_for)
    await audited(
        request, db, action="consent.approve", target=consent.id, now=clock.now(),
        details={"client_id": consent.client_id, "scope": " ".join(consent.scopes), "accounts": len(chosen)},
    )  # fmt: skip
    return Redirect(path=decision.redirect(issuer_of(settings)), status_code=HTTP_303_SEE_OTHER)


# --- the connected-apps page ------------------------------------------------------------------


class _Row(msgspec.Struct, frozen=True, kw_only=True):
    consent: Consent
    client_name: str
    scopes: list[tuple[str, str]]
    accounts: list[str]


@get("/consents", include_in_schema=False)
async def consents_page(
    request: Request[Any, Any, Any],
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    notice: Annotated[str, QueryParameter(max_length=16)] = "",
) -> Template:
    """Every app the user answered, what each may do on which accounts, with a revoke button."""
    require_user(principal)
    page, ended = await ConsentService(db, clock).page_for_user(principal.user_id, limit=MAX_LISTED, after=None)
    await finish_ended(request, db, ended)
    names = {a.id: a.name for a in await AccountRepository(db).list_for_user(principal.user_id)}
    clients = ClientRepository(db)
    rows = []
    for consent in page.items:
        client = await clients.get(consent.client_id)
        rows.append(
            _Row(
                consent=consent,
                client_name=client.name if client is not None else consent.client_id,
                scopes=describe(consent.scopes),
                accounts=[names.get(a, a) for a in consent.account_ids],
            )
        )
    context = {
        "user": await UserRepository(db).get(principal.user_id),
        "items": rows,
        "notice": NOTICES.get(notice),
        "version": __version__,
    }
    return Template(template_name="consents.html", context=context)


@post("/consents/{consent_id:str}/revoke", include_in_schema=False, before_request=require_form_body)
async def consent_revoke(
    request: Request[Any, Any, Any],
    consent_id: PathId,
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
) -> Redirect:
    """Revoke a consent: its tokens stop working at once."""
    require_user(principal)
    ended = await ConsentService(db, clock).revoke(consent_id, user_id=principal.user_id)
    if ended.action is None:
        unchanged(request)
    await finish_ended(request, db, [ended])
    notice = "revoked" if ended.action == "consent.revoke" else "ended"
    return Redirect(path=f"/consents?notice={notice}", status_code=HTTP_303_SEE_OTHER)


consent_pages = [authorize, consent_request, consent_page, consent_decision, consents_page, consent_revoke]
"""The routes the app mounts (``# APP ROUTES issue 5 H5b`` in app/factory.py)."""
