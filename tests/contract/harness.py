"""Venues for the conformance suite: each adapter under test comes with a harness that runs its venue
as a real server on 127.0.0.1 and injects faults through the venue's control API.

The suite (test_adapter_conformance.py) sees only :class:`VenueHarness` and the adapter protocol,
so the Alpaca, OANDA and CCXT adapters join by adding a harness here, not by editing the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any, Protocol

import httpx
import msgspec
import uvicorn

from brokerlink.brokers.backoff import Backoff
from brokerlink.brokers.base import AdapterConfig, BrokerAdapter, Credentials, OrderBookView
from brokerlink.brokers.sim.adapter import SimAdapter, StreamSettings
from brokerlink.brokers.sim.venue import VenueConfig, create_venue_app
from brokerlink.brokers.sim.venue.config import AccountConfig
from brokerlink.brokers.sim.venue.faults import FaultPatch
from brokerlink.brokers.sim.wire import API_PREFIX, HEADER_API_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP, DepthBody, sign

FAULTS = ["none", "latency", "drop_connections", "fail_after_accept", "duplicate_events", "reorder_events"]
"""Faults every order test runs under (parametrized)."""
DEDICATED_FAULTS = ["depth_gap", "reject_next", "clock_skew_ms", "rate_limit_next"]
"""Faults with a test of their own: they change what the right outcome is (a resync, a refusal)."""
ALL_FAULTS = FAULTS + DEDICATED_FAULTS

_API_KEY = "conf-key"
_API_SECRET = "conf-secret"


class VenueHarness(Protocol):
    """What the suite needs from a venue: an adapter bound to a funded account, and faults."""

    symbol: str
    """A liquid instrument to trade (canonical symbol)."""
    small_qty: str
    """A quantity the account can always afford, on the instrument's grid."""
    injectable_faults: tuple[str, ...]
    """Every fault setting the venue's control API accepts (the suite checks it exercises them all)."""

    def adapter(self) -> BrokerAdapter: ...

    async def depth_snapshot(self) -> OrderBookView:
        """The venue's full book of :attr:`symbol` now, as the venue itself reports it."""
        ...

    async def set_faults(self, **faults: Any) -> None: ...

    async def clear_faults(self) -> None: ...

    async def advance(self) -> None:
        """Let the venue's market move (one market-data step)."""
        ...


VenueFactory = Callable[[], contextlib.AbstractAsyncContextManager[VenueHarness]]
"""Starts a venue on loopback and stops it on exit (the suite's ``venue`` fixture runs one per test)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SimHarness:
    """The sim venue under uvicorn on a loopback port, in this process's event loop."""

    symbol = "EUR/USD"
    venue_symbol = "EURUSD"
    small_qty = "0.10"
    injectable_faults = tuple(FaultPatch.__struct_fields__)

    def __init__(self, base_url: str, *, signed: bool = False) -> None:
        self.base_url = base_url
        self.signed = signed
        self._control = httpx.AsyncClient(base_url=base_url, timeout=10)

    def adapter(self) -> BrokerAdapter:
        values = {"api_key": _API_KEY}
        if self.signed:
            values["api_secret"] = _API_SECRET
        config = AdapterConfig(
            account_id="acc_conformance",
            venue_account_id="SIM-CONF",
            base_url=self.base_url,
            credentials=Credentials(values=values),
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

    async def depth_snapshot(self) -> OrderBookView:
        path = f"{API_PREFIX}/depth/{self.venue_symbol}"
        headers = {HEADER_API_KEY: _API_KEY}
        if self.signed:
            ts = time.time_ns() // 1_000_000
            headers |= {HEADER_TIMESTAMP: str(ts), HEADER_SIGNATURE: sign(_API_SECRET, ts, "GET", path, b"")}
        response = await self._control.get(path, headers=headers)
        response.raise_for_status()
        body = msgspec.json.decode(response.content, type=DepthBody)
        return OrderBookView(
            symbol=self.symbol,
            bids=[(Decimal(p), Decimal(q)) for p, q in body.bids],
            asks=[(Decimal(p), Decimal(q)) for p, q in body.asks],
            update_id=body.last_update_id,
            resyncs=0,
        )

    async def aclose(self) -> None:
        await self._control.aclose()


@contextlib.asynccontextmanager
async def sim_venue(*, signed: bool = False, extra_accounts: int = 0) -> AsyncIterator[SimHarness]:
    """Run the sim venue (test mode, fast ticks and heartbeats) on a free loopback port.

    ``signed`` starts it in signed mode: every request must carry an HMAC signature and a timestamp
    inside the receive window, and the harness's adapters get the API secret.
    ``extra_accounts`` adds that many more funded accounts, ``SIM-CONF-1`` ... with the API keys
    ``conf-key-1`` ... and secrets ``conf-secret-1`` ..., so several users or links can share a venue
    (the harness's own adapters always trade ``SIM-CONF``).
    """
    extra = tuple(
        AccountConfig(account_id=f"SIM-CONF-{i}", api_key=f"{_API_KEY}-{i}", api_secret=f"{_API_SECRET}-{i}")
        for i in range(1, extra_accounts + 1)
    )
    config = VenueConfig(
        instrument_set="fx",
        seed=11,
        mode="test",
        signed=signed,
        tick_interval_s=0.05,
        heartbeat_interval_s=1.0,
        accounts=(AccountConfig(account_id="SIM-CONF", api_key=_API_KEY, api_secret=_API_SECRET), *extra),
    )
    port = free_port()
    server, task = await start_venue(config, port)
    harness = SimHarness(f"http://127.0.0.1:{port}", signed=signed)
    try:
        yield harness
    finally:
        await harness.aclose()
        await stop_venue(server, task)


async def start_venue(
    config: VenueConfig, port: int, *, graceful_s: float = 2
) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """Serve a sim venue with ``config`` on 127.0.0.1:``port`` in this event loop; returns once it listens."""
    server = uvicorn.Server(
        uvicorn.Config(
            create_venue_app(config),
            host="127.0.0.1",
            port=port,
            log_config=None,
            lifespan="on",
            # Uvicorn otherwise waits without limit for open connections to finish at shutdown.
            timeout_graceful_shutdown=graceful_s,
        )
    )
    task = asyncio.create_task(server.serve())
    for _ in range(200):  # bounded: 10 s
        if server.started:
            return server, task
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    raise AssertionError("the sim venue did not start")


async def stop_venue(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    """Stop a venue :func:`start_venue` started (bounded: 10 s)."""
    server.should_exit = True
    await asyncio.wait_for(task, timeout=10)
