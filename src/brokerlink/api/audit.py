"""Auditing requests: who acted, from where, and the rule that every state-changing request leaves a record.

Handlers record what they change with :func:`audited`, in the request's transaction (the request is
the commit boundary, :func:`brokerlink.api.deps.provide_db_session`), so the record exists exactly
when the change does. When the change happens in a service's own transaction (placing an order, linking
a broker), the handler passes a :func:`stamp` to the service, which records in *that* transaction.

Failures are different: a refused sign-in changes nothing and its transaction rolls back, yet the
attempt must be on record. :func:`audit_after` queues such a record; the session dependency writes it
after the rollback, in a transaction of its own (SECURITY.md 33: a rolled-back change leaves no
record, but the refusal is itself recorded).

The session dependency also checks the rule: a POST, PUT, PATCH or DELETE that succeeded must have
recorded exactly one thing (a repeat that changed nothing says so with :func:`unchanged`; routes
that never change state opt out with ``opt={"audit": False}``). A miss is logged as an error, and in
the test environment fails the request, so every API test checks the wiring of the routes it calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import msgspec
from litestar import Request
from litestar.types import Scope
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.api.ratelimit import client_ip
from brokerlink.engine.audit import Stamp
from brokerlink.kit.clock import Clock
from brokerlink.security.audit import Actor, AuditContext, DetailValue, record
from brokerlink.security.principal import Principal

ANONYMOUS = Actor(kind="user", id="anonymous")
"""The actor of a sign-in attempt that did not prove who it is."""
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
NOT_AUDITED = {"audit": False}
"""Route ``opt`` for a mutating route that changes no state (e.g. a dry run)."""
_STATE_KEY = "brokerlink.audit"


class Deferred(msgspec.Struct, frozen=True, kw_only=True):
    """A record to write whatever becomes of the request's own transaction."""

    actor: Actor
    action: str
    target: str
    outcome: Literal["success", "failure", "denied"]
    details: Mapping[str, DetailValue] | None = None


class _RequestAudit:
    __slots__ = ("deferred", "recorded")

    def __init__(self) -> None:
        self.recorded = 0
        self.deferred: list[Deferred] = []


def _state(scope: Scope) -> _RequestAudit:
    state = scope.setdefault("state", {})
    current = state.get(_STATE_KEY)
    if not isinstance(current, _RequestAudit):
        current = _RequestAudit()
        state[_STATE_KEY] = current
    return current


def actor_of(principal: Principal) -> Actor:
    """The audit actor for a principal: the app for a client acting under a consent, else the user."""
    if principal.kind == "client" and principal.client_id:
        return Actor(kind="client", id=principal.client_id)
    return Actor(kind="user", id=principal.user_id)


def context_of(scope: Scope) -> AuditContext:
    """Request id and source address of the request ``scope`` belongs to."""
    request_id = scope.get("state", {}).get("request_id")
    return AuditContext(request_id=request_id if isinstance(request_id, str) else None, source_ip=client_ip(scope))


def _actor(request: Request[Any, Any, Any], actor: Actor | None) -> Actor:
    if actor is not None:
        return actor
    principal = request.scope.get("user")
    if not isinstance(principal, Principal):
        raise TypeError("no signed-in principal to audit as; pass the actor")
    return actor_of(principal)


def stamp(request: Request[Any, Any, Any], actor: Actor | None = None) -> Stamp:
    """The actor and context a service needs to record a change it makes in its own transaction.

    Taking a stamp counts as recording: the service records with it whenever it changes anything.
    """
    _state(request.scope).recorded += 1
    return Stamp(actor=_actor(request, actor), context=context_of(request.scope))


async def audited(
    request: Request[Any, Any, Any],
    db: AsyncSession,
    *,
    action: str,
    target: str,
    now: datetime,
    actor: Actor | None = None,
    outcome: Literal["success", "failure", "denied"] = "success",
    details: Mapping[str, DetailValue] | None = None,
) -> int:
    """Record ``action`` on ``target`` in the request's transaction; returns the record's sequence."""
    seq = await record(
        db,
        actor=_actor(request, actor),
        action=action,
        target=target,
        now=now,
        outcome=outcome,
        context=context_of(request.scope),
        details=details,
    )
    _state(request.scope).recorded += 1
    return seq


def unchanged(request: Request[Any, Any, Any]) -> None:
    """Declare that this state-changing request changed nothing (an idempotent repeat), so there is
    nothing to record."""
    _state(request.scope).recorded += 1


def audit_after(
    request: Request[Any, Any, Any],
    *,
    actor: Actor,
    action: str,
    target: str,
    outcome: Literal["success", "failure", "denied"],
    details: Mapping[str, DetailValue] | None = None,
) -> None:
    """Queue a record (a refused attempt) that must be written even though the request rolls back."""
    _state(request.scope).deferred.append(
        Deferred(actor=actor, action=action, target=target, outcome=outcome, details=details)
    )


def user_actor(user_id: str) -> Actor:
    """The actor for a user who just proved who they are (before the request has a principal)."""
    return Actor(kind="user", id=user_id)


def sign_in_refused(request: Request[Any, Any, Any], email: str, *, outcome: Literal["failure", "denied"]) -> None:
    """Record a refused password sign-in (wrong credentials: ``failure``; locked out: ``denied``).

    The target names the email tried (cut to the record's limit), since there may be no such user.
    """
    audit_after(request, actor=ANONYMOUS, action="auth.login", target="user:" + email[:190], outcome=outcome)


async def audit_sign_out(request: Request[Any, Any, Any], db: AsyncSession, clock: Clock) -> None:
    """Record a sign-out (of the session the request carries; without one nothing changes)."""
    principal = request.scope.get("user")
    if not isinstance(principal, Principal) or principal.session_id is None:
        unchanged(request)
        return
    await audited(request, db, action="auth.logout", target=principal.session_id, now=clock.now())


async def write_deferred(scope: Scope, db: AsyncSession, now: datetime) -> int:
    """Write the queued records in ``db``'s current transaction; returns how many. The caller commits."""
    state = _state(scope)
    pending, state.deferred = state.deferred, []
    context = context_of(scope)
    for item in pending:
        await record(
            db,
            actor=item.actor,
            action=item.action,
            target=item.target,
            now=now,
            outcome=item.outcome,
            context=context,
            details=item.details,
        )
    state.recorded += len(pending)
    return len(pending)


def has_deferred(scope: Scope) -> bool:
    """Whether records are queued for after the request's transaction."""
    return bool(_state(scope).deferred)


def records_amiss(request: Request[Any, Any, Any]) -> int | None:
    """For a state-changing request that did not record exactly one thing: how many it recorded.
    ``None`` when all is well (or the request is not a state change)."""
    if request.method not in MUTATING_METHODS:
        return None
    handler = request.scope.get("route_handler")
    if handler is not None and handler.opt.get("audit", True) is False:
        return None
    recorded = _state(request.scope).recorded
    return None if recorded == 1 else recorded
