"""Venues for the conformance suite: each adapter under test comes with a harness that runs its venue
as a real server on 127.0.0.1 and injects faults through the venue's control API.

The suite (test_adapter_conformance.py) sees only :class:`VenueHarness` and the adapter protocol,
so the Alpaca, OANDA and CCXT adapters join by adding a harness here, not by editing the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any, Protocol

import httpx
import uvicorn

from brokerlink.brokers.base import AdapterConfig, BrokerAdapter, Credentials
from brokerlink.brokers.sim.adapter import Backoff, SimAdapter, StreamSettings
from brokerlink.brokers.sim.venue import VenueConfig, create_venue_app
from brokerlink.brokers.sim.venue.config import AccountConfig

FAULTS = ["none", "latency", "drop_connections", "fail_after_accept", "duplicate_events", "reorder_events"]


class VenueHarness(Protocol):
    """What the suite needs from a venue: an adapter bound to a funded account, and faults."""

    symbol: str
    """A liquid instrument to trade (canonical symbol)."""
    small_qty: str
    """A quantity the account can always afford, on the instrument's grid."""

    def adapter(self) -> BrokerAdapter: ...

    async def set_faults(self, **faults: Any) -> None: ...

    async def clear_faults(self) -> None: ...

    async def advance(self) -> None:
        """Let the venue's market move (one market-data step)."""
        ...


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SimHarness:
    """The sim venue under uvicorn on a loopback port, in this process's event loop."""

    symbol = "EUR/USD"
    small_qty = "0.10"

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._control = httpx.AsyncClient(base_url=base_url, timeout=10)

    def adapter(self) -> BrokerAdapter:
        config = AdapterConfig(
            account_id="acc_conformance",
            venue_account_id="SIM-CONF",
            base_url=self.base_url,
            credentials=Credentials(values={"api_key": "conf-key"}),
        )
        stream = StreamSettings(backoff=Backoff(base_s=0.05, cap_s=0.5), stall_after_s=5.0, connect_timeout_s=5.0)
        return SimAdapter(config, stream=stream, seed=7)

    async def set_faults(self, **faults: Any) -> None:
        response = await self._control.post("/_control/faults", json=faults)
        response.raise_for_status()

    async def clear_faults(self) -> None:
        (await self._control.delete("/_control/faults")).raise_for_status()

    async def advance(self) -> None:
        await asyncio.sleep(0.1)  # the venue's market-data loop ticks every 0.05 s

    async def aclose(self) -> None:
        await self._control.aclose()


@contextlib.asynccontextmanager
async def sim_venue() -> AsyncIterator[SimHarness]:
    """Run the sim venue (test mode, fast ticks and heartbeats) on a free loopback port."""
    config = VenueConfig(
        instrument_set="fx",
        seed=11,
        mode="test",
        tick_interval_s=0.05,
        heartbeat_interval_s=1.0,
        accounts=(AccountConfig(account_id="SIM-CONF", api_key="conf-key", api_secret="conf-secret"),),
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_venue_app(config),
            host="127.0.0.1",
            port=port,
            log_config=None,
            lifespan="on",
            # Uvicorn otherwise waits without limit for open connections to finish at shutdown.
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
        raise AssertionError("the sim venue did not start")
    harness = SimHarness(f"http://127.0.0.1:{port}")
    try:
        yield harness
    finally:
        await harness.aclose()
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
