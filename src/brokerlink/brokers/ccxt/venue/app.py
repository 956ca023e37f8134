"""``create_binance_venue_app``: the Binance spot test venue as a Litestar ASGI app, on the sim venue core."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from decimal import Decimal

from litestar import Litestar
from litestar.datastructures import State

from brokerlink.brokers.ccxt.venue.gate import Gate, Key
from brokerlink.brokers.ccxt.venue.rest import api_router, binance_error_response
from brokerlink.brokers.ccxt.venue.spot import SpotVenue
from brokerlink.brokers.ccxt.venue.ws import UserStream, listen_key_stream, ws_api
from brokerlink.brokers.sim.gate import WireError
from brokerlink.brokers.sim.venue.config import AccountConfig, VenueConfig
from brokerlink.brokers.sim.venue.faults import control_router
from brokerlink.brokers.sim.venue.state import Venue
from brokerlink.kit.clock import Clock

SHUTDOWN_CLOSE_CODE = 1001

DEFAULT_ACCOUNTS = (
    AccountConfig(
        account_id="binance-1",
        api_key="binance-key-1",
        api_secret="binance-secret-1",  # noqa: S106 - a loopback demo key
        cash=Decimal(1_000_000),
        currency="USDT",
    ),
)
"""One demo account with 1,000,000 USDT, so ``brokerlink venue-binance`` works without a config file."""


def default_config(**changes: object) -> VenueConfig:
    """A venue config for Binance spot: the ``crypto`` instrument set (BTCUSDT, ETHUSDT, ...), USDT accounts."""
    values: dict[str, object] = {"instrument_set": "crypto", "accounts": DEFAULT_ACCOUNTS}
    values.update(changes)
    return VenueConfig(**values)  # type: ignore[arg-type]


class BinanceVenue:
    """The venue's parts: the sim core (matching, accounts, faults, hub), Binance spot on top, the gate."""

    def __init__(self, config: VenueConfig, *, clock: Clock | None = None) -> None:
        if config.instrument_set != "crypto":
            raise ValueError("the Binance spot venue trades the crypto instrument set")
        self.core = Venue(config, clock=clock)
        self.spot = SpotVenue(self.core)
        keys = {a.api_key: Key(key=a.api_key, secret=a.api_secret, account_id=a.account_id) for a in config.accounts}
        self.gate = Gate(keys, now_ms=self.core.now_ms, skew_ms=self.core.faults.skew_ms)
        self.listen_keys: dict[str, str] = {}
        self.streams: set[UserStream] = set()

    def close_listen_key(self, listen_key: str) -> None:
        """End the streams of a closed listen key."""
        for stream in [s for s in self.streams if s.listen_key == listen_key]:
            stream.close(1000, "listen key closed")


def create_binance_venue_app(config: VenueConfig | None = None, *, clock: Clock | None = None) -> Litestar:
    """The venue's ASGI app; ``app.state.binance`` is its :class:`BinanceVenue`, ``app.state.venue`` the sim core.

    The sim core's ``/_control`` API (faults, market steps) is mounted in test and demo mode.
    """
    venue = BinanceVenue(config or default_config(), clock=clock)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        task = asyncio.create_task(venue.core.run()) if venue.core.config.background else None
        try:
            yield
        finally:
            venue.core.hub.close_all(SHUTDOWN_CLOSE_CODE, "venue shutting down")
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task

    handlers: list[object] = [api_router(), ws_api, listen_key_stream]
    if venue.core.config.control_enabled:
        handlers.append(control_router())
    return Litestar(
        route_handlers=handlers,  # type: ignore[arg-type]
        exception_handlers={WireError: binance_error_response},
        lifespan=[lifespan],
        state=State({"binance": venue, "venue": venue.core}),
        openapi_config=None,
        debug=False,
    )
