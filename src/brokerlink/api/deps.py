"""Request-scoped dependencies: the database session (the request is the commit boundary) and the principal."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.api.audit import has_deferred, records_amiss, write_deferred
from brokerlink.api.auth.middleware import request_db_session
from brokerlink.config import Settings
from brokerlink.engine.copy.service import CopyEngine
from brokerlink.engine.links.service import BrokerLinks
from brokerlink.kit.clock import Clock
from brokerlink.kit.errors import NotAuthenticated
from brokerlink.logs import get_logger
from brokerlink.security.principal import Principal
from brokerlink.store.db import Database

_log = get_logger("brokerlink.api")


async def provide_db_session(state: State, request: Request[Any, Any, Any]) -> AsyncGenerator[AsyncSession, None]:
    """One session per request. Services only flush; this commits if the handler returned, else rolls back.

    Litestar runs this cleanup after the response is built and before it is sent, so a failed
    commit still turns into an error response rather than a success that did not persist. On an
    authenticated route the session is the one authentication opened (it closes it afterwards).

    Auditing (:mod:`brokerlink.api.audit`): records queued with ``audit_after`` are written either
    way (after a rollback, in a transaction of their own), and a state-changing request that
    recorded nothing is caught here.
    """
    shared = request_db_session(request.scope)
    if shared is not None:
        try:
            yield shared
        except BaseException:
            await _rolled_back(state, request, shared)
            raise
        else:
            await _commit(state, request, shared)
        return
    database: Database = state.db
    async with database.sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await _rolled_back(state, request, session)
            raise
        else:
            await _commit(state, request, session)


async def _commit(state: State, request: Request[Any, Any, Any], session: AsyncSession) -> None:
    clock: Clock = state.clock
    settings: Settings = state.settings
    try:
        if has_deferred(request.scope):
            await write_deferred(request.scope, session, clock.now())
        _check_recorded(request, strict=settings.environment == "test")
    except BaseException:
        await session.rollback()
        raise
    await session.commit()


def _check_recorded(request: Request[Any, Any, Any], *, strict: bool) -> None:
    recorded = records_amiss(request)
    if recorded is None:
        return
    handler = request.scope.get("route_handler")
    name = getattr(handler, "handler_name", None)
    _log.error("audit_records_amiss", method=request.method, handler=name, recorded=recorded)
    if strict:
        raise AuditRecordMissing(f"{request.method} {request.url.path} wrote {recorded} audit records, not one")


async def _rolled_back(state: State, request: Request[Any, Any, Any], session: AsyncSession) -> None:
    await session.rollback()
    if not has_deferred(request.scope):
        return
    clock: Clock = state.clock
    try:
        await write_deferred(request.scope, session, clock.now())
        await session.commit()
    except Exception:  # noqa: BLE001 - the request's own error is the one to report; this one is logged
        await session.rollback()
        _log.exception("audit_deferred_write_failed")


class AuditRecordMissing(RuntimeError):
    """A state-changing request did not record exactly one audit record (a wiring bug; see api/audit.py)."""


def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    """The authenticated principal (set by the session middleware)."""
    user = request.scope.get("user")
    if not isinstance(user, Principal):
        raise NotAuthenticated
    return user


def provide_settings(state: State) -> Settings:
    """The app's settings."""
    settings: Settings = state.settings
    return settings


def provide_links(state: State) -> BrokerLinks:
    """The running broker links (adapters of every linked account)."""
    links: BrokerLinks = state.links
    return links


def provide_copy(state: State) -> CopyEngine:
    """The copy engine (for commands whose intents it dispatches at once)."""
    engine: CopyEngine = state.copy_engine
    return engine


def provide_clock(state: State) -> Clock:
    """The app's clock (a manual one in tests)."""
    clock: Clock = state.clock
    return clock


# Handler parameter types. Litestar injects by parameter name and wants that marked explicitly.
DbSession = NamedDependency[AsyncSession]
CurrentPrincipal = NamedDependency[Principal]
AppSettings = NamedDependency[Settings]
AppClock = NamedDependency[Clock]
Links = NamedDependency[BrokerLinks]
Copy = NamedDependency[CopyEngine]
