"""``create_oanda_venue_app``: the OANDA test venue as a Litestar ASGI app.

REST and both streams are served on one port (OANDA uses two hosts, ``api-`` and ``stream-``; the
adapter's ``stream_url`` option points at the same one). The fault-injection ``/_control`` API is
the sim venue's, mounted in test and demo mode only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from litestar import Litestar
from litestar.datastructures import State

from brokerlink.brokers.oanda.venue.commands import OandaError
from brokerlink.brokers.oanda.venue.config import OandaVenueConfig
from brokerlink.brokers.oanda.venue.core import OandaCore
from brokerlink.brokers.oanda.venue.rest import error_response, v3_router
from brokerlink.brokers.sim.gate import WireError
from brokerlink.brokers.sim.venue.faults import control_router
from brokerlink.brokers.sim.venue.rest import wire_error_response
from brokerlink.kit.clock import Clock

SHUTDOWN_CLOSE_CODE = 1001


def create_oanda_venue_app(
    config: OandaVenueConfig | None = None, *, core: OandaCore | None = None, clock: Clock | None = None
) -> Litestar:
    """The venue's ASGI app; ``app.state.venue`` is its :class:`OandaCore`."""
    the_core = core or OandaCore(config or OandaVenueConfig(), clock=clock)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        task = asyncio.create_task(the_core.run()) if the_core.config.background else None
        try:
            yield
        finally:
            the_core.hub.close_all(SHUTDOWN_CLOSE_CODE, "venue shutting down")
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task

    handlers: list[object] = [v3_router()]
    if the_core.config.control_enabled:
        handlers.append(control_router())
    return Litestar(
        route_handlers=handlers,  # type: ignore[arg-type]
        exception_handlers={OandaError: error_response, WireError: wire_error_response},
        lifespan=[lifespan],
        state=State({"venue": the_core}),
        openapi_config=None,
        debug=False,
    )
