"""``create_venue_app``: the sim venue as a Litestar ASGI app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from litestar import Litestar
from litestar.datastructures import State

from brokerlink.brokers.sim.gate import WireError
from brokerlink.brokers.sim.venue.config import VenueConfig
from brokerlink.brokers.sim.venue.faults import control_router
from brokerlink.brokers.sim.venue.rest import api_router, wire_error_response
from brokerlink.brokers.sim.venue.state import Venue
from brokerlink.brokers.sim.venue.ws import ws_endpoint
from brokerlink.kit.clock import Clock

SHUTDOWN_CLOSE_CODE = 1001


def create_venue_app(
    config: VenueConfig | None = None, *, venue: Venue | None = None, clock: Clock | None = None
) -> Litestar:
    """The venue's ASGI app; ``app.state.venue`` is its :class:`Venue`.

    Give a ``venue`` to drive it from a test (``Venue(config, clock=ManualClock())``), or a ``config``
    (and optionally a ``clock``) to build one. The market data loop runs in the lifespan when
    ``config.background`` is set; the ``/_control`` API is mounted only in test and demo mode.
    """
    if venue is None:
        venue = Venue(config or VenueConfig(), clock=clock)
    the_venue = venue

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        task = asyncio.create_task(the_venue.run()) if the_venue.config.background else None
        try:
            yield
        finally:
            the_venue.hub.close_all(SHUTDOWN_CLOSE_CODE, "venue shutting down")
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task

    handlers: list[object] = [api_router(), ws_endpoint]
    if venue.config.control_enabled:
        handlers.append(control_router())
    return Litestar(
        route_handlers=handlers,  # type: ignore[arg-type]
        exception_handlers={WireError: wire_error_response},
        lifespan=[lifespan],
        state=State({"venue": venue}),
        openapi_config=None,
        debug=False,
    )
