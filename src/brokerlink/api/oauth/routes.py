"""The authorization server's routes: metadata, JWKS, PAR, token, introspection, revocation (ADR 0023).

None of them uses the session cookie (``exclude_from_auth``) or CSRF tokens (``exclude_from_csrf``):
clients authenticate with a signed assertion in the body. None sends CORS headers (SECURITY.md 11):
these are server-to-server endpoints, and the app's CORS allow-list does not cover them.

Failed client authentications count like failed sign-ins (SECURITY.md 29): against the client and
the IP address in the login lockout, with an audit record and an ``auth_failure`` observation
(which the alert rules watch). A locked-out client or IP gets 429 before its assertion is checked.

Every POST writes exactly one audit record (actor ``client:<id>``, or anonymous when no client
could be named), except introspection, which changes nothing and records only failed
authentications. Revocations are published on the bus after the transaction committed (a
background task runs after the session dependency's commit).
"""

from __future__ import annotations

from typing import Any, Literal

from litestar import Request, Response, Router, get, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State

from brokerlink import observe
from brokerlink.api.audit import ANONYMOUS, audit_after, audited
from brokerlink.api.auth.lockout import ip_subject, lockout_of
from brokerlink.api.deps import AppClock, AppSettings, DbSession
from brokerlink.api.oauth.adapter import FormError, dpop_header, oauth_request, to_response
from brokerlink.api.ratelimit import client_ip
from brokerlink.bus.base import EventBus
from brokerlink.kit.errors import RateLimited
from brokerlink.security.audit import Actor
from brokerlink.security.oauth.revocation import TokensRevoked, publish_revocation
from brokerlink.security.oauth.runtime import AuthorizationRuntime
from brokerlink.security.oauth.server import HttpRequest
from brokerlink.security.oauth.service import Outcome, claimed_client

__all__ = ["oauth_routes"]

OPEN = {"exclude_from_auth": True, "exclude_from_csrf": True}
"""No session cookie, no CSRF token: the client proves itself with its assertion."""
Endpoint = Literal["par", "token", "introspect", "revoke"]


def runtime_of(state: State) -> AuthorizationRuntime:
    """The app's authorization server (started with the app's services)."""
    runtime: AuthorizationRuntime = state.oauth
    return runtime


def client_subject(client_id: str) -> str:
    """The lockout subject of a client (as an account is for a user)."""
    return f"client:{client_id[:64]}"


def _actor(client_id: str | None) -> Actor:
    return Actor(kind="client", id=client_id) if client_id else ANONYMOUS


async def _publish(bus: EventBus, revoked: list[TokensRevoked]) -> None:
    for message in revoked:
        await publish_revocation(bus, message)


class _Call:
    """One POST to an OAuth endpoint: lockout before, bookkeeping after."""

    def __init__(
        self, request: Request[Any, Any, Any], settings: AppSettings, endpoint: Endpoint, http: HttpRequest
    ) -> None:
        self.request = request
        self.endpoint = endpoint
        self.action = f"oauth.{endpoint}"
        self.lockout = lockout_of(request.app.state, settings)
        self.ip = ip_subject(request)
        self.client_id = claimed_client(http)
        self.subject = client_subject(self.client_id) if self.client_id else None

    async def check_lockout(self) -> None:
        try:
            await self.lockout.check(self.subject, self.ip)
        except RateLimited:
            observe.auth_failure(
                principal=self.subject or "client:unknown", ip=client_ip(self.request.scope), reason="locked_out"
            )
            audit_after(
                self.request,
                actor=_actor(self.client_id),
                action=self.action,
                target=self.subject or "client:unknown",
                outcome="denied",
            )
            raise

    async def finish(self, db: DbSession, clock: AppClock, outcome: Outcome, *, record: bool = True) -> Response[Any]:
        response = outcome.response
        if outcome.client_failed:
            await self.lockout.failed(self.subject, self.ip)
            observe.auth_failure(
                principal=self.subject or "client:unknown", ip=client_ip(self.request.scope), reason="client_assertion"
            )
            record = True
        elif response.status < 400 and self.subject is not None:
            await self.lockout.succeeded(self.subject)
        if record:
            await audited(
                self.request,
                db,
                action=self.action,
                target=outcome.target or self.subject or "client:unknown",
                now=clock.now(),
                actor=_actor(self.client_id),
                outcome="success" if response.status < 400 else "failure",
                details={"status": response.status, "error": response.error or ""},
            )
        background = None
        if outcome.revoked:
            background = BackgroundTask(_publish, self.request.app.state.bus, outcome.revoked)
        return to_response(response, background)


async def _form(request: Request[Any, Any, Any], db: DbSession, clock: AppClock, url: str, action: str) -> HttpRequest:
    try:
        return await oauth_request(request, url)
    except FormError:
        await audited(
            request, db, action=action, target="client:unknown", now=clock.now(), actor=ANONYMOUS, outcome="failure"
        )
        raise


@get(
    "/.well-known/oauth-authorization-server",
    opt=OPEN,
    summary="Authorization server metadata (RFC 8414)",
    tags=["oauth"],
    security=[],
)
async def server_metadata(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """What clients need to know: endpoints, PAR required, S256, private_key_jwt, DPoP algorithms."""
    runtime = runtime_of(request.app.state)
    return Response(runtime.metadata, headers={"Cache-Control": "public, max-age=300"})


@get("/oauth/jwks", opt=OPEN, summary="The keys access tokens are signed with", tags=["oauth"], security=[])
async def jwks(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """The authorization server's public JWK Set."""
    runtime = runtime_of(request.app.state)
    return Response(
        runtime.key.public_jwks(),
        headers={"Cache-Control": "public, max-age=300"},
        media_type="application/jwk-set+json",
    )


async def _handle(
    request: Request[Any, Any, Any],
    db: DbSession,
    settings: AppSettings,
    clock: AppClock,
    endpoint: Endpoint,
) -> Response[Any]:
    runtime = runtime_of(request.app.state)
    urls = runtime.endpoints
    url = {"par": urls.par, "token": urls.token, "introspect": urls.introspect, "revoke": urls.revoke}[endpoint]
    try:
        http = await _form(request, db, clock, url, f"oauth.{endpoint}")
    except FormError as exc:
        return to_response(exc.response)
    call = _Call(request, settings, endpoint, http)
    await call.check_lockout()
    service = runtime.service
    if endpoint == "par":
        outcome = await service.push(db, http, dpop_header(request))
    elif endpoint == "token":
        outcome = await service.token(db, http, dpop_header(request))
    elif endpoint == "introspect":
        outcome = await service.introspect(db, http)
    else:
        outcome = await service.revoke(db, http)
    return await call.finish(db, clock, outcome, record=endpoint != "introspect")


@post("/oauth/par", opt=OPEN, summary="Push an authorization request (RFC 9126)", tags=["oauth"], security=[])
async def pushed_authorization(
    request: Request[Any, Any, Any], db: DbSession, settings: AppSettings, clock: AppClock
) -> Response[Any]:
    """Form: the authorization request (``response_type=code``, ``redirect_uri``, ``scope``, ``state``,
    ``code_challenge`` and ``code_challenge_method=S256``, optional ``dpop_jkt``) and the client
    assertion. Answers 201 ``{request_uri, expires_in}``."""
    return await _handle(request, db, settings, clock, "par")


@post("/oauth/token", opt=OPEN, summary="Exchange a grant for tokens", tags=["oauth"], security=[])
async def token(
    request: Request[Any, Any, Any], db: DbSession, settings: AppSettings, clock: AppClock
) -> Response[Any]:
    """Form: ``grant_type`` (``authorization_code``, ``refresh_token`` or ``client_credentials``), its
    parameters and the client assertion; header ``DPoP``: a proof for this request (required)."""
    return await _handle(request, db, settings, clock, "token")


@post(
    "/oauth/introspect",
    opt={**OPEN, "audit": False},
    summary="Introspect a token (RFC 7662)",
    tags=["oauth"],
    security=[],
)
async def introspect(
    request: Request[Any, Any, Any], db: DbSession, settings: AppSettings, clock: AppClock
) -> Response[Any]:
    """Form: ``token`` (one of the calling client's) and the client assertion."""
    return await _handle(request, db, settings, clock, "introspect")


@post("/oauth/revoke", opt=OPEN, summary="Revoke a token (RFC 7009)", tags=["oauth"], security=[])
async def revoke(
    request: Request[Any, Any, Any], db: DbSession, settings: AppSettings, clock: AppClock
) -> Response[Any]:
    """Form: ``token`` and the client assertion. A refresh token takes every token of its grant with it."""
    return await _handle(request, db, settings, clock, "revoke")


oauth_routes = Router(
    path="/",
    route_handlers=[server_metadata, jwks, pushed_authorization, token, introspect, revoke],
)
