"""The Alpaca test venue for the conformance suite: Alpaca's wire format over the sim venue core.

The venue honours the fault settings that make sense for Alpaca (see
:data:`~brokerlink.brokers.alpaca.venue.control.INJECTABLE_FAULTS`): no ``depth_gap`` (no depth
stream with update ids) and no ``clock_skew_ms`` (requests are not signed). The suite trades
``BTC/USD``: crypto trades around the clock with ``gtc`` and ``ioc`` and fractional quantities,
which the suite's orders need (Alpaca takes fractional stock orders as ``day`` orders only).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn

from brokerlink.brokers.alpaca.adapter import AlpacaAdapter, StreamSettings
from brokerlink.brokers.alpaca.venue import create_alpaca_venue_app, default_config
from brokerlink.brokers.alpaca.venue.control import INJECTABLE_FAULTS
from brokerlink.brokers.backoff import Backoff
from brokerlink.brokers.base import AdapterConfig, BrokerAdapter, Credentials, OrderBookView
from brokerlink.brokers.sim.venue.config import AccountConfig, VenueConfig
from tests.contract.harness import free_port

KEY_ID = "PKCONFORMANCE0001"
SECRET = "conformance-secret"
ACCOUNT = "PA3CONF0001"


class AlpacaHarness:
    """The Alpaca venue under uvicorn on a loopback port, in this process's event loop."""

    symbol = "BTC/USD"
    small_qty = "0.1"
    injectable_faults = INJECTABLE_FAULTS

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._control = httpx.AsyncClient(base_url=base_url, timeout=10)

    def adapter(self, *, key_id: str = KEY_ID, secret: str = SECRET, venue_account_id: str = ACCOUNT) -> BrokerAdapter:
        config = AdapterConfig(
            account_id="acc_conformance",
            venue_account_id=venue_account_id,
            base_url=self.base_url,
            credentials=Credentials(values={"api_key": key_id, "api_secret": secret}),
        )
        stream = StreamSettings(backoff=Backoff(base_s=0.05, cap_s=0.5), connect_timeout_s=5.0, ping_interval_s=5.0)
        return AlpacaAdapter(config, stream=stream, seed=7)

    async def set_faults(self, **faults: Any) -> None:
        (await self._control.post("/_control/faults", json=faults)).raise_for_status()

    async def clear_faults(self) -> None:
        (await self._control.delete("/_control/faults")).raise_for_status()

    async def advance(self) -> None:
        await asyncio.sleep(0.1)  # the venue's market data loop ticks every 0.05 s

    async def depth_snapshot(self) -> OrderBookView:
        raise AssertionError("Alpaca has no depth stream: the suite asks only adapters with capabilities.depth")

    async def aclose(self) -> None:
        await self._control.aclose()


def conformance_config(**changes: Any) -> VenueConfig:
    """The venue in test mode with fast ticks and one funded paper account."""
    values: dict[str, Any] = {
        "seed": 11,
        "mode": "test",
        "tick_interval_s": 0.05,
        "accounts": (AccountConfig(account_id=ACCOUNT, api_key=KEY_ID, api_secret=SECRET),),
        **changes,
    }
    return default_config(**values)


@contextlib.asynccontextmanager
async def alpaca_venue(**changes: Any) -> AsyncIterator[AlpacaHarness]:
    """Run the Alpaca test venue on a free loopback port (``changes`` adjust its config)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_alpaca_venue_app(conformance_config(**changes)),
            host="127.0.0.1",
            port=port,
            log_config=None,
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
    )
    task = asyncio.create_task(server.serve())
    for _ in range(200):  # bounded: 10 s
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the Alpaca venue did not start")
    harness = AlpacaHarness(f"http://127.0.0.1:{port}")
    try:
        yield harness
    finally:
        await harness.aclose()
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
