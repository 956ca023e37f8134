"""``/v1/me/mfa`` (enrol, confirm, status, disable TOTP), ``POST /v1/auth/mfa``, and the step-up guard.

Sign-in with MFA is two steps. The password starts a session held at the MFA step
(``mfa_pending``, short-lived, reaching nothing but ``POST /v1/auth/mfa``); a TOTP or recovery
code there replaces it with a full session (a new token: the privilege changed) stamped with
``mfa_at``. A full session may call ``POST /v1/auth/mfa`` again at any time to refresh ``mfa_at``:
that is the step-up that :func:`require_recent_mfa` asks for before sensitive actions.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, Router, delete, get, post
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT
from litestar.types import Guard
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink import observe
from brokerlink.api.audit import audit_after, audited, user_actor
from brokerlink.api.auth.cookies import sign_in
from brokerlink.api.auth.lockout import account_subject, ip_subject, lockout_of
from brokerlink.api.auth.middleware import MFA_CHALLENGE_OPT, SessionMfa, request_db_session, session_mfa
from brokerlink.api.auth.schemas import UserResponse
from brokerlink.api.deps import AppClock, AppSettings, CurrentPrincipal, DbSession, Links
from brokerlink.api.ratelimit import client_ip
from brokerlink.api.schemas import RequestBody, ResponseBody
from brokerlink.config import Settings
from brokerlink.kit.clock import Clock
from brokerlink.kit.errors import InvalidInput, NotFound, RateLimited
from brokerlink.security.principal import Principal
from brokerlink.security.sessions import IssuedSession
from brokerlink.security.totp import (
    DIGITS,
    PERIOD_S,
    InvalidMfaCode,
    MfaEnrollmentRequired,
    MfaRequired,
    MfaService,
)
from brokerlink.store.models import UserRow
from brokerlink.store.repositories.mfa import ACTIVE, MfaRepository
from brokerlink.store.repositories.users import UserRepository

NO_STORE = {"Cache-Control": "no-store"}
"""Responses that carry a secret or recovery codes must not sit in any cache."""
MfaCode = Annotated[str, msgspec.Meta(min_length=6, max_length=64, examples=["123456"])]


class MfaCodeRequest(RequestBody, kw_only=True):
    """A current TOTP code (6 digits) or an unused recovery code (``ABCD-EFGH-IJKL-MNOP``)."""

    code: MfaCode


class TotpEnrolmentResponse(ResponseBody, kw_only=True):
    """What an authenticator app needs. Shown once: the secret is never returned again."""

    otpauth_uri: str
    qr_svg: str
    secret: str
    digits: int = DIGITS
    period: int = PERIOD_S
    algorithm: Literal["SHA1"] = "SHA1"


class RecoveryCodesResponse(ResponseBody, kw_only=True):
    """The new recovery codes, each usable once. Shown once: only their hashes are kept."""

    recovery_codes: list[str]


class MfaStatusResponse(ResponseBody, kw_only=True):
    """Whether the user has MFA, how many recovery codes are left, and when this session last verified it."""

    enrolled: bool
    pending: bool
    enrolled_at: datetime | None
    recovery_codes_left: int
    session_verified_at: datetime | None


class MfaChallengeResponse(ResponseBody, kw_only=True):
    """The password was right; the sign-in now waits for ``POST /v1/auth/mfa`` until ``expires_at``."""

    mfa_required: Literal[True]
    """Always true; required, so the document tells this answer from a session (``oneOf``)."""
    methods: list[str] = msgspec.field(default_factory=lambda: ["totp", "recovery_code"])
    expires_at: datetime


class MfaVerifiedResponse(ResponseBody, kw_only=True):
    """The session after a passed MFA check."""

    user: UserResponse
    expires_at: datetime
    mfa_at: datetime
    method: Literal["totp", "recovery_code"]
    recovery_codes_left: int | None = None


# --- helpers shared with the pages ----------------------------------------------------------


async def start_mfa_challenge(db: AsyncSession, settings: Settings, clock: Clock, issued: IssuedSession) -> datetime:
    """Hold a just-started session at the MFA step; returns when the step expires."""
    expires_at = min(issued.expires_at, clock.now() + timedelta(seconds=settings.mfa_challenge_seconds))
    await MfaRepository(db).mark_session_pending(issued.session_id, expires_at=expires_at)
    return expires_at


async def needs_mfa(db: AsyncSession, user_id: str) -> bool:
    """Whether signing in as this user takes an MFA step."""
    return await MfaRepository(db).get(user_id, ACTIVE) is not None


def mfa_is_recent(mfa: SessionMfa | None, settings: Settings, clock: Clock, max_age: timedelta | None = None) -> bool:
    """Whether the session verified MFA within ``max_age`` (default ``mfa_step_up_seconds``)."""
    if mfa is None or mfa.verified_at is None:
        return False
    limit = max_age if max_age is not None else timedelta(seconds=settings.mfa_step_up_seconds)
    return clock.now() - mfa.verified_at <= limit


async def check_code(
    request: Request[Any, Any, Any], service: MfaService, settings: Settings, user: UserRow, code: str
) -> Literal["totp", "recovery_code"]:
    """Verify a code under the sign-in lockout: a locked account or IP is refused before checking,
    a wrong code counts as a failed sign-in, a right one clears the account's count."""
    lockout = lockout_of(request.app.state, settings)
    subjects = (account_subject(user.email), ip_subject(request))
    try:
        await lockout.check(*subjects)
    except RateLimited:
        observe.auth_failure(principal=user.email, ip=client_ip(request.scope), reason="locked_out")
        audit_after(request, actor=user_actor(user.id), action="auth.mfa", target=user.id, outcome="denied")
        raise
    try:
        verified = await service.verify(user.id, code)
    except InvalidMfaCode:
        await lockout.failed(*subjects)
        audit_after(request, actor=user_actor(user.id), action="auth.mfa", target=user.id, outcome="failure")
        observe.auth_failure(principal=user.email, ip=client_ip(request.scope), reason="mfa_code")
        raise
    await lockout.succeeded(subjects[0])
    observe.auth_success(principal=user.email, ip=client_ip(request.scope), method="mfa")
    return verified.method


# --- the step-up guard ----------------------------------------------------------------------


def require_recent_mfa(
    max_age: timedelta | None = None, *, enrolment_optional: Callable[[Settings], bool] | None = None
) -> Guard:
    """A route guard: 403 ``mfa_required`` unless this session verified MFA within ``max_age``
    (default: the ``mfa_step_up_seconds`` setting, 10 minutes).

    A user without MFA enrolled gets 403 ``mfa_enrollment_required``, unless
    ``enrolment_optional(settings)`` says that MFA is optional for them on this route (then the
    route runs without a check). Only first-party sessions can pass: a third-party token has no
    session to have verified anything.
    """

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        state = connection.app.state
        settings: Settings = state.settings
        clock: Clock = state.clock
        principal = connection.scope.get("user")
        db = request_db_session(connection.scope)
        if not isinstance(principal, Principal) or principal.session_id is None or db is None:
            raise MfaRequired("this action needs a signed-in session that verified MFA recently")
        if await MfaRepository(db).get(principal.user_id, ACTIVE) is None:
            if enrolment_optional is not None and enrolment_optional(settings):
                return
            raise MfaEnrollmentRequired("this action needs MFA: enrol an authenticator at POST /v1/me/mfa/totp")
        if not mfa_is_recent(session_mfa(connection.scope), settings, clock, max_age):
            raise MfaRequired("this action needs a recent MFA check: verify a code at POST /v1/auth/mfa, then retry")

    return guard


# --- routes -----------------------------------------------------------------------------------


async def _user(db: AsyncSession, principal: Principal) -> UserRow:
    user = await UserRepository(db).get(principal.user_id)
    if user is None:
        raise NotFound("user not found")
    return user


@post(
    "/mfa",
    status_code=HTTP_200_OK,
    opt={MFA_CHALLENGE_OPT: True},
    summary="Verify a TOTP or recovery code (second sign-in step, or step-up)",
)
async def verify_mfa(  # noqa: PLR0917 - Litestar injects by name
    request: Request[Any, Any, Any],
    data: JSONBody[MfaCodeRequest],
    principal: CurrentPrincipal,
    db: DbSession,
    settings: AppSettings,
    clock: AppClock,
    links: Links,
) -> Response[MfaVerifiedResponse]:
    """At the MFA step of a sign-in: finish it (a new full session). In a full session: refresh its
    MFA time for the actions that need a recent check. A wrong code is a 401 ``invalid_mfa_code`` and
    counts towards the sign-in lockout; a recovery code is spent."""
    user = await _user(db, principal)
    mfa = session_mfa(request.scope)
    if not (mfa is not None and mfa.pending) and not await needs_mfa(db, user.id):
        raise MfaEnrollmentRequired("there is no authenticator to check: enrol one at POST /v1/me/mfa/totp")
    service = MfaService(db, links.vault, clock)
    method = await check_code(request, service, settings, user, data.code)
    left = (await service.status(user.id)).recovery_codes_left if method == "recovery_code" else None
    cookies = []
    session_id = principal.session_id
    expires_at: datetime | None = None
    if mfa is not None and mfa.pending:
        # The session's privilege changes: a new token, and the one that only knew the password ends.
        issued, cookie = await sign_in(request, db, settings, clock, user)
        session_id, expires_at = issued.session_id, issued.expires_at
        cookies.append(cookie)
    if session_id is None:
        raise MfaRequired("only a signed-in session can verify MFA")
    await MfaRepository(db).mark_session_verified(session_id, clock.now())
    await audited(request, db, action="auth.mfa", target=user.id, now=clock.now(), details={"method": method})
    if expires_at is None:
        expires_at = (await MfaRepository(db).session_expiry(session_id)) or clock.now()
    body = MfaVerifiedResponse(
        user=UserResponse.of(user), expires_at=expires_at, mfa_at=clock.now(), method=method, recovery_codes_left=left
    )
    return Response(body, cookies=cookies, headers=NO_STORE)


@get("/", summary="MFA status")
async def mfa_status(request: Request[Any, Any, Any], principal: CurrentPrincipal, db: DbSession) -> MfaStatusResponse:
    """Whether TOTP is enrolled (or an enrolment is waiting), and how many recovery codes are left."""
    repo = MfaRepository(db)
    active = await repo.get(principal.user_id, ACTIVE)
    pending = await repo.get(principal.user_id, "pending")
    mfa = session_mfa(request.scope)
    return MfaStatusResponse(
        enrolled=active is not None,
        pending=pending is not None,
        enrolled_at=active.confirmed_at if active is not None else None,
        recovery_codes_left=await repo.count_unused_recovery_codes(active.id) if active is not None else 0,
        session_verified_at=mfa.verified_at if mfa is not None else None,
    )


@post("/totp", status_code=HTTP_201_CREATED, summary="Start enrolling a TOTP authenticator")
async def start_totp(  # noqa: PLR0917 - Litestar injects by name
    request: Request[Any, Any, Any],
    principal: CurrentPrincipal,
    db: DbSession,
    settings: AppSettings,
    clock: AppClock,
    links: Links,
) -> Response[TotpEnrolmentResponse]:
    """A new secret as an ``otpauth://`` URI, a QR code (SVG) and base32 text, shown this once.
    Nothing is active until ``POST /v1/me/mfa/totp/confirm``. Replacing an active authenticator
    needs a recent MFA check (403 ``mfa_required``)."""
    user = await _user(db, principal)
    if await needs_mfa(db, user.id) and not mfa_is_recent(session_mfa(request.scope), settings, clock):
        raise MfaRequired("replacing your authenticator needs a recent MFA check: POST /v1/auth/mfa first")
    enrolment = await MfaService(db, links.vault, clock).start(user.id, account=user.email, issuer=settings.mfa_issuer)
    await audited(request, db, action="mfa.totp_start", target=user.id, now=clock.now())
    body = TotpEnrolmentResponse(otpauth_uri=enrolment.uri, qr_svg=enrolment.qr_svg, secret=enrolment.secret)
    return Response(body, status_code=HTTP_201_CREATED, headers=NO_STORE)


@post("/totp/confirm", status_code=HTTP_200_OK, summary="Confirm TOTP enrolment with a current code")
async def confirm_totp(  # noqa: PLR0917 - Litestar injects by name
    request: Request[Any, Any, Any],
    data: JSONBody[MfaCodeRequest],
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    links: Links,
) -> Response[RecoveryCodesResponse]:
    """Activate the authenticator (and replace a previous one); returns 10 single-use recovery codes,
    shown this once. The check counts as this session's MFA verification."""
    try:
        codes = await MfaService(db, links.vault, clock).confirm(principal.user_id, data.code)
    except InvalidMfaCode as exc:
        raise InvalidInput(exc.detail, extra={"field": "code"}) from None
    if principal.session_id is not None:
        await MfaRepository(db).mark_session_verified(principal.session_id, clock.now())
    await audited(request, db, action="mfa.totp_enable", target=principal.user_id, now=clock.now())
    return Response(RecoveryCodesResponse(recovery_codes=codes), headers=NO_STORE)


@delete("/totp", status_code=HTTP_204_NO_CONTENT, summary="Turn TOTP off")
async def disable_totp(  # noqa: PLR0917 - Litestar injects by name
    request: Request[Any, Any, Any],
    data: JSONBody[MfaCodeRequest],
    principal: CurrentPrincipal,
    db: DbSession,
    settings: AppSettings,
    clock: AppClock,
    links: Links,
) -> None:
    """Needs a current TOTP code or a recovery code (a wrong one is a 422 and counts towards the
    sign-in lockout). The authenticator, its sealed secret and its recovery codes are deleted."""
    user = await _user(db, principal)
    service = MfaService(db, links.vault, clock)
    if not await needs_mfa(db, user.id):
        raise NotFound("no authenticator is enrolled")
    try:
        await check_code(request, service, settings, user, data.code)
    except InvalidMfaCode as exc:
        raise InvalidInput(exc.detail, extra={"field": "code"}) from None
    await service.disable_verified(user.id)
    await audited(request, db, action="mfa.totp_disable", target=user.id, now=clock.now())


mfa_router = Router(path="/me/mfa", route_handlers=[mfa_status, start_totp, confirm_totp, disable_totp], tags=["auth"])
