"""The OANDA v20 test venue for the conformance suite: served by uvicorn on a loopback port, in the
test's event loop, with fast ticks and heartbeats.

The venue honours the sim's fault settings that make sense for v20 (see :attr:`OandaHarness.injectable_faults`):
it has no depth stream (no ``depth_gap``) and no signed requests (no ``clock_skew_ms``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn

from brokerlink.brokers.backoff import Backoff
from brokerlink.brokers.base import AdapterConfig, Credentials, OrderBookView
from brokerlink.brokers.oanda.adapter import OandaAdapter, StreamSettings
from brokerlink.brokers.oanda.venue import OandaAccountConfig, OandaCore, OandaVenueConfig, create_oanda_venue_app
from tests.contract.harness import free_port

TOKEN = "conf-oanda-token"
ACCOUNT = "101-004-1435156-001"


class OandaHarness:
    """An OANDA test venue on loopback and adapters bound to its funded netting account."""

    symbol = "EUR/USD"
    venue_symbol = "EUR_USD"
    small_qty = "1000"
    injectable_faults = (
        "latency_ms",
        "fail_after_accept",
        "duplicate_events",
        "reorder_events",
        "reject_next",
        "rate_limit_next",
        "drop_connections",
    )

    def __init__(self, base_url: str, core: OandaCore) -> None:
        self.base_url = base_url
        self.core = core
        self._control = httpx.AsyncClient(base_url=base_url, timeout=10)

    def adapter(self, *, account: str = ACCOUNT, token: str = TOKEN) -> OandaAdapter:
        config = AdapterConfig(
            account_id="acc_conformance",
            venue_account_id=account,
            base_url=self.base_url,
            credentials=Credentials(values={"token": token}),
        )
        stream = StreamSettings(backoff=Backoff(base_s=0.05, cap_s=0.5), stall_after_s=5.0, connect_timeout_s=5.0)
        return OandaAdapter(config, stream=stream, seed=7)

    async def set_faults(self, **faults: Any) -> None:
        (await self._control.post("/_control/faults", json=faults)).raise_for_status()

    async def clear_faults(self) -> None:
        (await self._control.delete("/_control/faults")).raise_for_status()

    async def advance(self) -> None:
        await asyncio.sleep(0.1)  # the venue's market-data loop ticks every 0.05 s

    async def depth_snapshot(self) -> OrderBookView:
        raise AssertionError("OANDA has no depth stream: the suite asks only adapters with capabilities.depth")

    async def aclose(self) -> None:
        await self._control.aclose()


@contextlib.asynccontextmanager
async def oanda_venue(*, accounts: tuple[OandaAccountConfig, ...] = ()) -> AsyncIterator[OandaHarness]:
    """Run the OANDA test venue (test mode: fast ticks and heartbeats, the control API) on a free port.

    Its first account, ``101-004-1435156-001`` (netting, 100,000 USD), is reached with the token
    ``conf-oanda-token``; ``accounts`` adds more (hedging ones, other tokens).
    """
    config = OandaVenueConfig(
        seed=11,
        mode="test",
        tick_interval_s=0.05,
        heartbeat_interval_s=0.5,
        accounts=(OandaAccountConfig(account_id=ACCOUNT, token=TOKEN, alias="conformance"), *accounts),
    )
    core = OandaCore(config)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_oanda_venue_app(core=core),
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
        raise AssertionError("the OANDA venue did not start")
    harness = OandaHarness(f"http://127.0.0.1:{port}", core)
    try:
        yield harness
    finally:
        await harness.aclose()
        core.hub.close_all(1001, "venue shutting down")  # open streams end now, not at the graceful timeout
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
