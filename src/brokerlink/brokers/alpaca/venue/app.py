"""``create_alpaca_venue_app``: the Alpaca test venue as one Litestar ASGI app.

One app serves what Alpaca spreads over several hosts: the Trading API and its ``/stream``
(``paper-api.alpaca.markets``), the latest-quote REST paths (``data.alpaca.markets``) and the market
data streams (``stream.data.alpaca.markets``). Point the adapter's ``base_url`` at it; market data
follows (see :func:`brokerlink.brokers.alpaca.adapter.market_data_urls`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from litestar import Litestar
from litestar.datastructures import State

from brokerlink.brokers.alpaca.venue.control import control_router
from brokerlink.brokers.alpaca.venue.orders import AlpacaError
from brokerlink.brokers.alpaca.venue.rest import alpaca_error_response, trading_router
from brokerlink.brokers.alpaca.venue.state import AlpacaVenue
from brokerlink.brokers.alpaca.venue.streams import STREAM_HANDLERS
from brokerlink.brokers.sim.gate import RateLimitRule
from brokerlink.brokers.sim.venue.config import AccountConfig, VenueConfig
from brokerlink.kit.clock import Clock

SHUTDOWN_CLOSE_CODE = 1001
ALPACA_VENUE_LIMITS = (RateLimitRule(200, 60),)
"""What the venue enforces per API key: Alpaca's documented 200 requests a minute."""


def default_config(**changes: object) -> VenueConfig:
    """A venue config with Alpaca's limits and one paper account (key ``PKVENUE0001``); ``changes`` override."""
    accounts = (AccountConfig(account_id="PA3VENUE0001", api_key="PKVENUE0001", api_secret="venue-secret-0001"),)  # noqa: S106 - a test venue's key
    values: dict[str, object] = {"accounts": accounts, "rate_limits": ALPACA_VENUE_LIMITS, **changes}
    return VenueConfig(**values)  # type: ignore[arg-type]


def create_alpaca_venue_app(
    config: VenueConfig | None = None, *, venue: AlpacaVenue | None = None, clock: Clock | None = None
) -> Litestar:
    """The venue's ASGI app; ``app.state.venue`` is its :class:`AlpacaVenue`.

    The market data loop runs in the lifespan when ``config.background`` is set; the ``/_control``
    API is mounted only in test and demo mode.
    """
    the_venue = venue or AlpacaVenue(config or default_config(), clock=clock)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        async def run() -> None:
            while True:
                await asyncio.sleep(the_venue.config.tick_interval_s)
                the_venue.step()

        task = asyncio.create_task(run()) if the_venue.config.background else None
        try:
            yield
        finally:
            the_venue.close_connections(SHUTDOWN_CLOSE_CODE, "venue shutting down")
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task

    handlers: list[object] = [trading_router(), *STREAM_HANDLERS]
    if the_venue.config.control_enabled:
        handlers.append(control_router())
    return Litestar(
        route_handlers=handlers,  # type: ignore[arg-type]
        exception_handlers={AlpacaError: alpaca_error_response},
        lifespan=[lifespan],
        state=State({"venue": the_venue}),
        openapi_config=None,
        debug=False,
    )
