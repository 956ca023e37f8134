"""What each route asks of a principal: the OAuth scope a third-party app needs, and staff roles.

Every ``/v1`` route says, in its ``opt``, whether an app acting under a consent may call it and
with which scope (:func:`needs`, e.g. ``opt=needs("orders:write")``), or that it is for the user
themself only (:func:`first_party`). Routes under :data:`FIRST_PARTY_PREFIXES` (sign-in, MFA,
linking brokers, consents, administration) are first-party by their place, whatever they declare.
A route that says nothing is refused to apps too: forgetting fails closed, and a test walks the
route table so that nothing is forgotten (``tests/api/test_scopes.py``).

:func:`check_route` runs once per request, in the authentication middleware, right after the
principal is known (HTTP and WebSocket alike):

- an app's principal on a first-party route: 403 ``first_party_only``;
- an app's principal without the route's scope: 403 ``insufficient_scope`` with a
  ``WWW-Authenticate: DPoP error="insufficient_scope"`` challenge naming it (RFC 6750 section 3.1);
- anyone but an admin under ``/v1/admin`` (auditors: its audit routes only): 403, before the body
  is read, so a non-admin learns nothing from validation errors.

Object-level checks (the account, order or subscription is the user's and inside the consent's
accounts) stay in the handlers, next to the query that finds the object.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from brokerlink.domain.enums import Role
from brokerlink.kit.errors import Forbidden
from brokerlink.security.dpop import ALLOWED_ALGORITHMS
from brokerlink.security.oauth.scopes import SCOPES
from brokerlink.security.principal import Principal

SCOPE_OPT = "scope"
"""Route ``opt`` key: the scope an app needs to call the route."""
FIRST_PARTY_OPT = "first_party"
"""Route ``opt`` key: only the user themself (a session), never an app."""
PER_MESSAGE = "per-message"
"""The ``scope`` of a route whose handler checks scopes itself, per message (the WebSocket stream)."""
FIRST_PARTY_PREFIXES: tuple[str, ...] = ("/v1/admin", "/v1/auth", "/v1/me", "/v1/consents", "/v1/connections")
"""Paths an app never reaches: sign-in, the user's profile and MFA, consents, broker links, administration."""
STAFF_PREFIX = "/v1/admin"
AUDITOR_PREFIXES: tuple[str, ...] = ("/v1/admin/audit",)
"""The part of administration auditors may use too (reading the audit trail); the rest is admins'."""


def needs(scope: str, **opt: Any) -> dict[str, Any]:
    """Route ``opt`` for a route an app may call with ``scope`` (plus any other ``opt`` entries)."""
    if scope != PER_MESSAGE and scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    return {SCOPE_OPT: scope, **opt}


def first_party(**opt: Any) -> dict[str, Any]:
    """Route ``opt`` for a route only the user themself may call (plus any other ``opt`` entries)."""
    return {FIRST_PARTY_OPT: True, **opt}


class InsufficientScope(Forbidden):
    """The app's token lacks the scope the route needs (SECURITY.md 21)."""

    code = "insufficient_scope"
    title = "Insufficient scope"

    def __init__(self, scope: str) -> None:
        challenge = (
            f'DPoP algs="{" ".join(ALLOWED_ALGORITHMS)}", error="insufficient_scope", '
            f'error_description="this call needs the {scope} scope", scope="{scope}"'
        )
        super().__init__(
            f"this call needs the {scope} scope", headers={"WWW-Authenticate": challenge}, extra={"scope": scope}
        )


class FirstPartyOnly(Forbidden):
    """Third-party apps may not call this route at all (sign-in, MFA, linking, consents, admin)."""

    code = "first_party_only"
    title = "Not available to third-party apps"


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


@lru_cache(maxsize=1024)  # pure; route templates are few (an unmatched path is its own key, hence the bound)
def is_first_party_path(path: str) -> bool:
    """Whether the route template ``path`` is first-party by its place."""
    return any(_under(path, prefix) for prefix in FIRST_PARTY_PREFIXES)


def required_scope(opt: Mapping[str, Any], path: str) -> str | None:
    """The scope an app needs for a route with this ``opt`` and template, or None: apps may not call it."""
    if opt.get(FIRST_PARTY_OPT) or is_first_party_path(path):
        return None
    scope = opt.get(SCOPE_OPT)
    return scope if isinstance(scope, str) else None


def check_route(principal: Principal, opt: Mapping[str, Any], path: str, *, websocket: bool = False) -> None:
    """Refuse the principal a route it may not call at all (module docstring); object checks come later.

    The staff check is for HTTP routes: the admin WebSocket accepts and then closes a non-admin with
    1008 and a reason (a refused handshake tells a browser nothing)."""
    if principal.kind == "client":
        scope = required_scope(opt, path)
        if scope is None:
            raise FirstPartyOnly("third-party apps cannot call this route")
        if scope != PER_MESSAGE and not principal.has_scope(scope):
            raise InsufficientScope(scope)
    if not websocket and _under(path, STAFF_PREFIX) and not _staff_may(principal.role, path):
        raise Forbidden("this route is for administrators")


def _staff_may(role: Role, path: str) -> bool:
    if role is Role.ADMIN:
        return True
    return role is Role.AUDITOR and any(_under(path, prefix) for prefix in AUDITOR_PREFIXES)


def require_roles(*roles: Role) -> Any:
    """A route guard: 403 unless the principal has one of ``roles`` (a first-party user's role)."""
    allowed = frozenset(roles)

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = connection.scope.get("user")
        if not isinstance(principal, Principal) or principal.kind != "user" or principal.role not in allowed:
            raise Forbidden("this action needs one of the roles: " + ", ".join(sorted(allowed)))

    return guard
