"""``/v1/auth``: register, sign in, sign out, CSRF token; ``/v1/me``."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT
from litestar.utils.scope.state import ScopeState

from brokerlink import observe
from brokerlink.api.audit import audit_sign_out, audited, sign_in_refused, user_actor
from brokerlink.api.auth.cookies import sign_in, sign_out
from brokerlink.api.auth.lockout import account_subject, ip_subject, lockout_of
from brokerlink.api.auth.mfa import MfaChallengeResponse, needs_mfa, start_mfa_challenge, verify_mfa
from brokerlink.api.auth.middleware import MFA_CHALLENGE_OPT
from brokerlink.api.auth.schemas import CsrfResponse, LoginRequest, RegisterRequest, SessionResponse, UserResponse
from brokerlink.api.deps import AppClock, AppSettings, CurrentPrincipal, DbSession
from brokerlink.api.ratelimit import client_ip
from brokerlink.kit.errors import Forbidden, InvalidCredentials, NotFound, RateLimited
from brokerlink.security.users import UserService
from brokerlink.store.models import UserRow
from brokerlink.store.repositories.users import UserRepository

PUBLIC = {"exclude_from_auth": True}


async def _signed_in(
    request: Request[Any, Any, Any], db: DbSession, settings: AppSettings, clock: AppClock, user: UserRow
) -> Response[SessionResponse]:
    issued, cookie = await sign_in(request, db, settings, clock, user)
    return Response(SessionResponse(user=UserResponse.of(user), expires_at=issued.expires_at), cookies=[cookie])


@post("/register", status_code=HTTP_201_CREATED, opt=PUBLIC, summary="Create an account and sign in")
async def register(
    request: Request[Any, Any, Any],
    data: JSONBody[RegisterRequest],
    db: DbSession,
    settings: AppSettings,
    clock: AppClock,
) -> Response[SessionResponse]:
    """Create a user with the ``user`` role and start a session (cookie)."""
    if not settings.allow_registration:
        raise Forbidden("registration is closed on this server")
    user = await UserService(db, clock).register(
        email=data.email, password=data.password, display_name=data.display_name
    )
    await audited(request, db, action="auth.register", target=user.id, now=clock.now(), actor=user_actor(user.id))
    response = await _signed_in(request, db, settings, clock, user)
    response.status_code = HTTP_201_CREATED
    return response


@post("/login", status_code=HTTP_200_OK, opt=PUBLIC, summary="Sign in")
async def login(
    request: Request[Any, Any, Any], data: JSONBody[LoginRequest], db: DbSession, settings: AppSettings, clock: AppClock
) -> Response[SessionResponse | MfaChallengeResponse]:
    """Check email and password and start a session (cookie). Failure is always the same 401.

    A user with MFA gets a session held at the MFA step instead (``mfa_required: true``): it reaches
    nothing but ``POST /v1/auth/mfa``. Repeated failures lock the account and the IP out for a while
    (429 with ``Retry-After``), checked before the password is.
    """
    lockout = lockout_of(request.app.state, settings)
    account, ip = account_subject(data.email), ip_subject(request)
    try:
        await lockout.check(account, ip)
    except RateLimited:
        observe.auth_failure(principal=data.email, ip=client_ip(request.scope), reason="locked_out")
        sign_in_refused(request, data.email, outcome="denied")
        raise
    try:
        user = await UserService(db, clock).authenticate(data.email, data.password)
    except InvalidCredentials:
        await lockout.failed(account, ip)
        sign_in_refused(request, data.email, outcome="failure")
        observe.auth_failure(principal=data.email, ip=client_ip(request.scope), reason="password")
        raise
    mfa_step = await needs_mfa(db, user.id)
    await audited(
        request, db, action="auth.login", target=user.id, now=clock.now(), actor=user_actor(user.id),
        details={"mfa_pending": mfa_step},
    )  # fmt: skip
    if mfa_step:
        issued, cookie = await sign_in(request, db, settings, clock, user)
        expires_at = await start_mfa_challenge(db, settings, clock, issued)
        return Response(MfaChallengeResponse(mfa_required=True, expires_at=expires_at), cookies=[cookie])
    await lockout.succeeded(account)
    observe.auth_success(principal=data.email, ip=client_ip(request.scope), method="password")
    response = await _signed_in(request, db, settings, clock, user)
    return Response(response.content, cookies=response.cookies)


@post("/logout", status_code=HTTP_204_NO_CONTENT, opt={MFA_CHALLENGE_OPT: True}, summary="Sign out")
async def logout(
    request: Request[Any, Any, Any], db: DbSession, settings: AppSettings, clock: AppClock
) -> Response[None]:
    """End the current session and clear its cookie."""
    await audit_sign_out(request, db, clock)
    cookie = await sign_out(request, db, settings, clock)
    return Response(None, status_code=HTTP_204_NO_CONTENT, cookies=[cookie])


@get("/csrf", opt=PUBLIC, summary="Get a CSRF token")
async def csrf_token(request: Request[Any, Any, Any]) -> CsrfResponse:
    """The token to echo in ``X-CSRF-Token`` on POST, PUT, PATCH and DELETE made with the session cookie."""
    token = ScopeState.from_scope(request.scope).csrf_token
    if not isinstance(token, str):  # only when the CSRF middleware is not installed
        raise NotFound("CSRF protection is not enabled")
    return CsrfResponse(csrf_token=token)


@get("/me", summary="The signed-in user", tags=["auth"])
async def me(principal: CurrentPrincipal, db: DbSession) -> UserResponse:
    """The user behind the current session."""
    user = await UserRepository(db).get(principal.user_id)
    if user is None:
        raise NotFound("user not found")
    return UserResponse.of(user)


auth_router = Router(path="/auth", route_handlers=[register, login, logout, csrf_token, verify_mfa], tags=["auth"])
