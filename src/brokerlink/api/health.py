"""Liveness and readiness probes (public)."""

from __future__ import annotations

import msgspec
from litestar import Response, get
from litestar.datastructures import State
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from brokerlink import __version__
from brokerlink.api.schemas import ResponseBody
from brokerlink.bus.base import EventBus
from brokerlink.logs import get_logger
from brokerlink.store.db import Database

_log = get_logger("brokerlink.health")


class Health(ResponseBody, kw_only=True):
    """Probe result."""

    status: str
    version: str
    checks: dict[str, str] = msgspec.field(default_factory=dict)


@get("/healthz", opt={"exclude_from_auth": True}, tags=["health"], summary="Liveness")
async def healthz() -> Health:
    """The process is up and serving requests."""
    return Health(status="ok", version=__version__)


@get("/readyz", opt={"exclude_from_auth": True}, tags=["health"], summary="Readiness")
async def readyz(state: State) -> Response[Health]:
    """The database and the bus answer. 503 with the failing check named otherwise."""
    checks: dict[str, str] = {}
    database: Database = state.db
    bus: EventBus = state.bus
    for name, probe in (("database", database.ping), ("bus", bus.ping)):
        ok = await probe()
        if not ok:
            _log.warning("readiness_check_failed", check=name)
        checks[name] = "ok" if ok else "failing"
    ready = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ready else "unavailable", version=__version__, checks=checks)
    return Response(body, status_code=HTTP_200_OK if ready else HTTP_503_SERVICE_UNAVAILABLE)
