"""MFA pages: the MFA step of signing in, and the account security page (enrol, confirm, turn off TOTP).

The same services as ``/v1/me/mfa`` and ``/v1/auth/mfa``; forms post with the CSRF token as the
other pages do. The secret and the recovery codes appear on the one response that creates them
(marked ``no-store``) and on no later page. Outcomes that are not a page of their own redirect back
to the security page with a ``notice`` key; only the fixed messages below are ever shown for it.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, get, post
from litestar.params import QueryParameter, URLEncodedBody
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_303_SEE_OTHER, HTTP_429_TOO_MANY_REQUESTS

from brokerlink import __version__
from brokerlink.api.audit import audited, unchanged
from brokerlink.api.auth.cookies import sign_in
from brokerlink.api.auth.mfa import NO_STORE, check_code, mfa_is_recent, needs_mfa
from brokerlink.api.auth.middleware import MFA_CHALLENGE_OPT, session_mfa
from brokerlink.api.deps import AppClock, AppSettings, CurrentPrincipal, DbSession, Links
from brokerlink.api.guards import require_form_body
from brokerlink.kit.errors import Conflict, NotFound, RateLimited
from brokerlink.security.totp import InvalidMfaCode, MfaService
from brokerlink.store.repositories.mfa import PENDING, MfaRepository
from brokerlink.store.repositories.users import UserRepository

SECURITY_PAGE = "/account/security"
NOTICES = {
    "bad_code": "That code did not match. Check the time on your device and try the next code.",
    "bad_confirm": "That code did not match, so set-up was cancelled: start again, and check the time on your device.",
    "no_enrolment": "There is no set-up waiting for a code: start again.",
    "not_enrolled": "Two-step verification is not on.",
    "step_up": "Enter a code from your authenticator first: replacing it needs a recent check.",
    "locked": "Too many wrong codes: wait a few minutes and try again.",
    "disabled": "Two-step verification is off. Your authenticator and recovery codes no longer work.",
}


class MfaLoginForm(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The MFA step of signing in (and the step-up check)."""

    code: Annotated[str, msgspec.Meta(max_length=64)] = ""
    next: Annotated[str, msgspec.Meta(max_length=512)] = "/"
    csrf_token: str = msgspec.field(name="_csrf_token", default="")


class MfaCodeForm(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A TOTP or recovery code confirming an enrolment or turning MFA off."""

    code: Annotated[str, msgspec.Meta(max_length=64)] = ""
    csrf_token: str = msgspec.field(name="_csrf_token", default="")


def _safe_next(target: str) -> str:
    # The same rule as the sign-in form (brokerlink.web.routes.safe_next), without importing the pages module.
    if not target.startswith("/") or target.startswith("//") or "\\" in target or any(ord(c) < 32 for c in target):
        return "/"
    return target


def _back(notice: str) -> Redirect:
    return Redirect(path=f"{SECURITY_PAGE}?notice={notice}", status_code=HTTP_303_SEE_OTHER)


@get("/login/mfa", opt={MFA_CHALLENGE_OPT: True}, include_in_schema=False)
async def mfa_login_page(
    request: Request[Any, Any, Any],
    principal: CurrentPrincipal,
    db: DbSession,
    next_path: Annotated[str, QueryParameter(name="next", max_length=512)] = "/",
) -> Template | Redirect:
    """The code form: the second step of signing in, or a fresh check for a signed-in user with MFA."""
    mfa = session_mfa(request.scope)
    pending = mfa is not None and mfa.pending
    if not pending and not await needs_mfa(db, principal.user_id):
        return Redirect(path=_safe_next(next_path), status_code=HTTP_303_SEE_OTHER)
    context = {"next": _safe_next(next_path), "error": None, "pending": pending, "version": __version__}
    return Template(template_name="login_mfa.html", context=context)


@post("/login/mfa", opt={MFA_CHALLENGE_OPT: True}, include_in_schema=False, before_request=require_form_body)
async def mfa_login_submit(  # noqa: PLR0917 - Litestar injects by name
    request: Request[Any, Any, Any],
    data: URLEncodedBody[MfaLoginForm],
    principal: CurrentPrincipal,
    db: DbSession,
    settings: AppSettings,
    clock: AppClock,
    links: Links,
) -> Template | Redirect:
    """Check the code; at the sign-in step swap the session for a full one, then go where the user was headed."""
    target = _safe_next(data.next)
    mfa = session_mfa(request.scope)
    pending = mfa is not None and mfa.pending
    user = await UserRepository(db).get(principal.user_id)
    if user is None:
        raise NotFound("user not found")
    if not pending and not await needs_mfa(db, user.id):
        unchanged(request)
        return Redirect(path=target, status_code=HTTP_303_SEE_OTHER)
    try:
        method = await check_code(request, MfaService(db, links.vault, clock), settings, user, data.code)
    except (InvalidMfaCode, RateLimited) as exc:
        context = {"next": target, "error": exc.detail, "pending": pending, "version": __version__}
        if isinstance(exc, RateLimited):
            return Template(
                template_name="login_mfa.html", context=context, status_code=HTTP_429_TOO_MANY_REQUESTS,
                headers=exc.headers,
            )  # fmt: skip
        return Template(template_name="login_mfa.html", context=context)
    cookies = []
    session_id = principal.session_id
    if pending:
        issued, cookie = await sign_in(request, db, settings, clock, user)
        session_id = issued.session_id
        cookies.append(cookie)
    if session_id is not None:
        await MfaRepository(db).mark_session_verified(session_id, clock.now())
    await audited(request, db, action="auth.mfa", target=user.id, now=clock.now(), details={"method": method})
    return Redirect(path=target, status_code=HTTP_303_SEE_OTHER, cookies=cookies)


@get(SECURITY_PAGE, include_in_schema=False)
async def security_page(  # noqa: PLR0917 - Litestar injects by name
    request: Request[Any, Any, Any],
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    links: Links,
    notice: Annotated[str, QueryParameter(max_length=32)] = "",
) -> Template:
    """Two-step verification: whether it is on, recovery codes left, and the buttons to set it up or turn it off."""
    user = await UserRepository(db).get(principal.user_id)
    status = await MfaService(db, links.vault, clock).status(principal.user_id)
    mfa = session_mfa(request.scope)
    context = {
        "user": user,
        "status": status,
        "verified_at": mfa.verified_at if mfa is not None else None,
        "notice": NOTICES.get(notice),
        "notice_is_error": notice not in {"disabled", ""},
        "version": __version__,
    }
    return Template(template_name="account_security.html", context=context)


@post(f"{SECURITY_PAGE}/totp", include_in_schema=False, before_request=require_form_body)
async def enrol_submit(  # noqa: PLR0917 - Litestar injects by name
    request: Request[Any, Any, Any],
    principal: CurrentPrincipal,
    db: DbSession,
    settings: AppSettings,
    clock: AppClock,
    links: Links,
) -> Template | Redirect:
    """Start enrolling: the QR code, the secret as text and the confirm form, on this response only."""
    user = await UserRepository(db).get(principal.user_id)
    if user is None:
        raise NotFound("user not found")
    if await needs_mfa(db, user.id) and not mfa_is_recent(session_mfa(request.scope), settings, clock):
        unchanged(request)
        return Redirect(path=f"/login/mfa?next={SECURITY_PAGE}", status_code=HTTP_303_SEE_OTHER)
    enrolment = await MfaService(db, links.vault, clock).start(user.id, account=user.email, issuer=settings.mfa_issuer)
    await audited(request, db, action="mfa.totp_start", target=user.id, now=clock.now())
    context = {"user": user, "enrolment": enrolment, "error": None, "version": __version__}
    return Template(template_name="account_mfa_enrol.html", context=context, headers=NO_STORE)


@post(f"{SECURITY_PAGE}/totp/confirm", include_in_schema=False, before_request=require_form_body)
async def confirm_submit(  # noqa: PLR0917 - Litestar injects by name
    request: Request[Any, Any, Any],
    data: URLEncodedBody[MfaCodeForm],
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    links: Links,
) -> Template | Redirect:
    """Confirm with a code: the recovery codes on this response only; a wrong code goes back to the start."""
    service = MfaService(db, links.vault, clock)
    try:
        codes = await service.confirm(principal.user_id, data.code)
    except Conflict:
        unchanged(request)
        return _back("no_enrolment")
    except InvalidMfaCode:
        # Nothing is active yet and the pending secret cannot be shown again: start over.
        pending = await MfaRepository(db).get(principal.user_id, PENDING)
        if pending is not None:
            await service.discard_pending(principal.user_id)
        await audited(
            request, db, action="mfa.totp_enable", target=principal.user_id, now=clock.now(), outcome="failure"
        )
        return _back("bad_confirm")
    if principal.session_id is not None:
        await MfaRepository(db).mark_session_verified(principal.session_id, clock.now())
    await audited(request, db, action="mfa.totp_enable", target=principal.user_id, now=clock.now())
    user = await UserRepository(db).get(principal.user_id)
    context = {"user": user, "codes": codes, "version": __version__}
    return Template(template_name="account_recovery_codes.html", context=context, headers=NO_STORE)


@post(f"{SECURITY_PAGE}/totp/disable", include_in_schema=False, before_request=require_form_body)
async def disable_submit(  # noqa: PLR0917 - Litestar injects by name
    request: Request[Any, Any, Any],
    data: URLEncodedBody[MfaCodeForm],
    principal: CurrentPrincipal,
    db: DbSession,
    settings: AppSettings,
    clock: AppClock,
    links: Links,
) -> Redirect:
    """Turn two-step verification off with a current code or a recovery code."""
    user = await UserRepository(db).get(principal.user_id)
    if user is None:
        raise NotFound("user not found")
    if not await needs_mfa(db, user.id):
        unchanged(request)
        return _back("not_enrolled")
    service = MfaService(db, links.vault, clock)
    try:
        await check_code(request, service, settings, user, data.code)
    except InvalidMfaCode:
        return _back("bad_code")
    except RateLimited:
        return _back("locked")
    await service.disable_verified(user.id)
    await audited(request, db, action="mfa.totp_disable", target=user.id, now=clock.now())
    return _back("disabled")


mfa_pages = [mfa_login_page, mfa_login_submit, security_page, enrol_submit, confirm_submit, disable_submit]
