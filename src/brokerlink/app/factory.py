"""``create_app()``: the one place the pieces are wired together."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from litestar import Litestar, Router
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig

from brokerlink import __version__
from brokerlink.api.accounts.discover import discover_routes
from brokerlink.api.accounts.routes import accounts_router, connections_router
from brokerlink.api.admin.alerts import admin_alerts_router
from brokerlink.api.admin.audit import audit_router
from brokerlink.api.admin.brokers import admin_brokers_router
from brokerlink.api.admin.users import admin_users_router
from brokerlink.api.auth.lockout import STATE_KEY as LOCKOUT_STATE_KEY
from brokerlink.api.auth.lockout import LoginLockout
from brokerlink.api.auth.mfa import mfa_router
from brokerlink.api.auth.middleware import SessionAuthMiddleware, TokenAwareCSRFMiddleware
from brokerlink.api.auth.routes import auth_router, me
from brokerlink.api.consents.clients import admin_clients_router
from brokerlink.api.consents.routes import consents_router
from brokerlink.api.copy.reconcile import reconciliation_router
from brokerlink.api.copy.routes import strategies_router, subscriptions_router
from brokerlink.api.cors import CorsMiddleware
from brokerlink.api.deps import (
    provide_clock,
    provide_copy,
    provide_db_session,
    provide_links,
    provide_principal,
    provide_settings,
)
from brokerlink.api.guards import require_json_body
from brokerlink.api.hardening import HardeningMiddleware
from brokerlink.api.health import healthz, readyz
from brokerlink.api.ledger.fees import FEE_ROUTERS
from brokerlink.api.ledger.routes import account_ledger_router, ledger_router
from brokerlink.api.ledger.stats import stats_router
from brokerlink.api.metrics import metrics
from brokerlink.api.oauth.routes import oauth_routes
from brokerlink.api.openapi import PublishedOpenAPIConfig, openapi_document
from brokerlink.api.problems import EXCEPTION_HANDLERS
from brokerlink.api.ratelimit import RateLimiter, RateLimitMiddleware
from brokerlink.api.trading.routes import account_trading_router, orders_router
from brokerlink.api.webhooks import webhooks_router  # issue 8 webhooks
from brokerlink.app import litestar_fixes
from brokerlink.app.demo_bot import DemoBot
from brokerlink.app.middleware import RequestContextMiddleware
from brokerlink.app.services import start_services
from brokerlink.bus.base import EventBus
from brokerlink.bus.factory import create_bus
from brokerlink.config import Settings
from brokerlink.engine.copy.service import CopyEngine
from brokerlink.engine.links.service import LOOPBACK_HOSTS, BrokerLinks
from brokerlink.kit.clock import Clock, SystemClock
from brokerlink.kit.tasks import bounded
from brokerlink.logs import configure_logging, get_logger
from brokerlink.security.vault import Vault
from brokerlink.store.db import Database
from brokerlink.store.migrate import upgrade
from brokerlink.stream.admin import admin_stream as admin_stream_route
from brokerlink.stream.asyncapi import asyncapi_json
from brokerlink.stream.public import public_stream as public_stream_route
from brokerlink.web import WEB_DIR
from brokerlink.web.consent import consent_pages
from brokerlink.web.routes import web_routes

_log = get_logger("brokerlink.app")

SHUTDOWN_STEP_S = 10.0
"""How long one shutdown step may take before it is logged as stuck and cancelled."""


def _step_name(stop: Callable[[], Awaitable[object]]) -> str:
    """A service's name for the shutdown log: ``WebhookDispatcher.stop`` -> ``WebhookDispatcher``."""
    owner = getattr(stop, "__self__", None)
    return type(owner).__name__ if owner is not None else getattr(stop, "__qualname__", repr(stop))


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    bus: EventBus | None = None,
    configure_logs: bool = True,
) -> Litestar:
    """Build the ASGI application. Tests pass their own settings, clock and bus; servers pass nothing."""
    litestar_fixes.install()
    settings = settings or Settings()
    clock = clock or SystemClock()
    if configure_logs:
        configure_logging(settings.log_level, settings.log_format)
    rate_limiter = RateLimiter.from_settings(settings)
    lockout = LoginLockout.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if settings.auto_migrate:
            await upgrade(settings.effective_database_url)
        database = Database.from_settings(settings)
        event_bus = bus or create_bus(settings)
        vault = Vault.from_settings(settings)
        links = BrokerLinks(
            database, event_bus, vault, clock,
            fill_horizon_days=settings.retention_orders_days,
            allowed_hosts=LOOPBACK_HOSTS | frozenset(h.lower() for h in settings.broker_hosts),
        )  # fmt: skip
        app.state.db = database
        app.state.bus = event_bus
        app.state.links = links
        await links.start()
        copy_engine = CopyEngine(
            database,
            event_bus,
            links,
            clock,
            reconcile_every_s=settings.copy_reconcile_every_s,
            reconcile_repair=settings.copy_reconcile_repair,
        )
        app.state.copy_engine = copy_engine
        await copy_engine.start()
        bot = None
        if settings.demo_bot_email:
            bot = DemoBot(links, settings.demo_bot_email, interval_s=settings.demo_bot_interval_s)
            bot.start()
        services = await start_services(
            app.state, settings, database=database, bus=event_bus, vault=vault, links=links, clock=clock
        )
        if settings.gc_freeze:
            # What start-up built (modules, routes, the ORM's mappers, caches) lives as long as the
            # process; frozen, a full collection no longer walks it (ADR 0038).
            gc.collect()
            gc.freeze()
        _log.info("started", version=__version__, database=database.dialect, bus=settings.bus_backend)
        try:
            yield
        finally:
            # Each step gets SHUTDOWN_STEP_S: one that hangs is logged with where it (and every other
            # task) waits, cancelled, and the rest still stop; the process exits either way.
            steps: list[tuple[str, Callable[[], Awaitable[object]]]] = []
            if bot is not None:
                steps.append(("demo_bot", bot.stop))
            steps += [(_step_name(stop), stop) for stop in reversed(services)]
            steps += [("copy_engine", copy_engine.stop), ("links", links.stop)]
            if bus is None:
                steps.append(("bus", event_bus.close))
            steps += [("database", database.dispose), ("rate_limiter", rate_limiter.close), ("lockout", lockout.close)]
            stuck = [name for name, stop in steps if not await bounded(name, stop(), timeout_s=SHUTDOWN_STEP_S)]
            _log.info("stopped", stuck=stuck or None)

    v1 = Router(
        path="/v1",
        route_handlers=[
            auth_router,
            me,
            mfa_router,
            accounts_router,
            account_trading_router,
            connections_router,
            orders_router,
            strategies_router,
            subscriptions_router,
            reconciliation_router,
            audit_router,
            admin_alerts_router,
            admin_stream_route,
            ledger_router,
            account_ledger_router,
            *FEE_ROUTERS,
            stats_router,
            *discover_routes,
            consents_router,
            admin_clients_router,
            public_stream_route,
            admin_users_router,
            webhooks_router,
            admin_brokers_router,
        ],
        before_request=require_json_body,
    )
    app = Litestar(
        route_handlers=[
            healthz,
            readyz,
            openapi_document,
            # ROUTES issue 8 H8d (specs: /asyncapi.json)
            asyncapi_json,
            metrics,
            v1,
            *web_routes,
            oauth_routes,
            *consent_pages,
            create_static_files_router(
                path="/static", directories=[WEB_DIR / "static"], opt={"exclude_from_auth": True}
            ),
        ],
        lifespan=[lifespan],
        state=State({"settings": settings, "clock": clock, "rate_limiter": rate_limiter, LOCKOUT_STATE_KEY: lockout}),
        dependencies={
            "db": Provide(provide_db_session),
            "principal": Provide(provide_principal, sync_to_thread=False),
            "settings": Provide(provide_settings, sync_to_thread=False),
            "clock": Provide(provide_clock, sync_to_thread=False),
            "links": Provide(provide_links, sync_to_thread=False),
            "copy_engine": Provide(provide_copy, sync_to_thread=False),
        },
        middleware=[
            DefineMiddleware(SessionAuthMiddleware, exclude_from_auth_key="exclude_from_auth"),
            DefineMiddleware(RateLimitMiddleware, limiter=rate_limiter),  # after auth: it keys by the principal
            # Innermost, where Litestar's own csrf_config put it; skipped for token-authenticated requests.
            DefineMiddleware(
                TokenAwareCSRFMiddleware,
                config=CSRFConfig(
                    secret=settings.effective_secret_key,
                    cookie_name="brokerlink_csrf",
                    header_name="x-csrf-token",
                    cookie_secure=settings.cookie_secure,
                    cookie_samesite="strict",
                    cookie_httponly=False,  # the dashboard's scripts read it to echo it in the header
                ),
                session_cookie=settings.session_cookie,
            ),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        template_config=TemplateConfig(directory=Path(WEB_DIR / "templates"), engine=JinjaTemplateEngine),
        openapi_config=PublishedOpenAPIConfig(
            title="brokerlink API",
            version=__version__,
            description="One secure API over many broker accounts, with copy trading built in.",
            path="/docs",
            render_plugins=[SwaggerRenderPlugin(path="/")],
            components=Components(
                security_schemes={
                    "session": SecurityScheme(type="apiKey", name=settings.session_cookie, security_scheme_in="cookie")
                }
            ),
            security=[{"session": []}],
        ),
        debug=False,
        logging_config=None,  # logging is ours (brokerlink.logs); the problem handler logs unexpected errors
    )
    # Litestar's middleware runs only for matched routes; these two must also cover 404s and 405s,
    # so they wrap the whole ASGI handler instead.
    app.asgi_handler = RequestContextMiddleware(
        HardeningMiddleware(
            CorsMiddleware(  # issue 5 H5d: CORS on /v1 only (api/cors.py)
                app.asgi_handler,
                allowed_origins=settings.cors_allowed_origins,
                max_age_seconds=settings.cors_max_age_seconds,
            ),
            max_body_bytes=settings.max_body_bytes,
        )
    )
    return app
