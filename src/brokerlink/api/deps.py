"""Request-scoped dependencies: the database session (the request is the commit boundary) and the principal."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.api.auth.middleware import request_db_session
from brokerlink.config import Settings
from brokerlink.engine.copy.service import CopyEngine
from brokerlink.engine.links.service import BrokerLinks
from brokerlink.kit.clock import Clock
from brokerlink.kit.errors import NotAuthenticated
from brokerlink.security.principal import Principal
from brokerlink.store.db import Database


async def provide_db_session(state: State, request: Request[Any, Any, Any]) -> AsyncGenerator[AsyncSession, None]:
    """One session per request. Services only flush; this commits if the handler returned, else rolls back.

    Litestar runs this cleanup after the response is built and before it is sent, so a failed
    commit still turns into an error response rather than a success that did not persist. On an
    authenticated route the session is the one authentication opened (it closes it afterwards).
    """
    shared = request_db_session(request.scope)
    if shared is not None:
        try:
            yield shared
        except BaseException:
            await shared.rollback()
            raise
        else:
            await shared.commit()
        return
    database: Database = state.db
    async with database.sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


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
