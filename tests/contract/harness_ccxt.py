"""The conformance suite's CCXT venue: ccxt's Binance class against the Binance spot test venue on loopback.

The harness trades ETH/USDT: the suite's resting limit order is a buy at 0.5, and Binance's NOTIONAL
filter (at least 5 USDT) needs 10 ETH for that, so :attr:`CcxtHarness.small_qty` is 10. The account
starts with 10,000,000 USDT and no ETH (a spot account: what it sells it must have bought).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import uvicorn
from litestar import Litestar

from brokerlink.brokers.backoff import Backoff
from brokerlink.brokers.base import AdapterConfig, BrokerAdapter, Credentials, OrderBookView
from brokerlink.brokers.ccxt.adapter import CcxtAdapter, StreamSettings
from brokerlink.brokers.ccxt.venue import create_binance_venue_app, default_config
from brokerlink.brokers.sim.venue.config import AccountConfig
from tests.contract.harness import free_port, stop_venue

API_KEY = "ccxtconfkey"
API_SECRET = "ccxt-conf-secret"


class CcxtHarness:
    """The Binance spot test venue under uvicorn, and ccxt adapters bound to its funded account."""

    symbol = "ETH/USDT"
    venue_symbol = "ETHUSDT"
    small_qty = "10"
    injectable_faults = (
        "latency_ms",
        "drop_connections",
        "fail_after_accept",
        "duplicate_events",
        "reorder_events",
        "reject_next",
        "rate_limit_next",
        "clock_skew_ms",
    )

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._control = httpx.AsyncClient(base_url=base_url, timeout=10)

    def adapter(self, **options: str) -> BrokerAdapter:
        config = AdapterConfig(
            account_id="acc_conformance_ccxt",
            venue_account_id="",
            base_url=self.base_url,
            credentials=Credentials(values={"exchange": "binance", "api_key": API_KEY, "api_secret": API_SECRET}),
            options=options,
        )
        stream = StreamSettings(backoff=Backoff(base_s=0.05, cap_s=0.5), connect_timeout_s=5.0, settle_s=0.1)
        return CcxtAdapter(config, stream=stream, seed=7)

    async def set_faults(self, **faults: Any) -> None:
        (await self._control.post("/_control/faults", json=faults)).raise_for_status()

    async def clear_faults(self) -> None:
        (await self._control.delete("/_control/faults")).raise_for_status()

    async def advance(self) -> None:
        await asyncio.sleep(0.1)  # the venue's market-data loop ticks every 0.05 s

    async def depth_snapshot(self) -> OrderBookView:
        raise AssertionError("the CCXT adapter keeps no order book (capabilities.depth is false)")

    async def aclose(self) -> None:
        await self._control.aclose()


async def start_venue_app(app: Litestar, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """Serve ``app`` on 127.0.0.1:``port`` in this event loop; returns once it listens (bounded: 10 s)."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on", timeout_graceful_shutdown=2)
    )
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            return server, task
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    raise AssertionError("the Binance spot test venue did not start")


@contextlib.asynccontextmanager
async def ccxt_venue(*, extra_accounts: int = 0) -> AsyncIterator[CcxtHarness]:
    """Run the Binance spot test venue (test mode, fast ticks) on a free loopback port.

    ``extra_accounts`` adds funded accounts ``BINANCE-CONF-1`` ... with keys ``ccxtconfkey1`` ... and
    secrets ``ccxt-conf-secret-1`` ..., for tests that link several users to one venue.
    """
    accounts = [
        AccountConfig(
            account_id="BINANCE-CONF", api_key=API_KEY, api_secret=API_SECRET, cash=Decimal(10_000_000), currency="USDT"
        ),
        *(
            AccountConfig(
                account_id=f"BINANCE-CONF-{i}",
                api_key=f"{API_KEY}{i}",
                api_secret=f"{API_SECRET}-{i}",
                cash=Decimal(10_000_000),
                currency="USDT",
            )
            for i in range(1, extra_accounts + 1)
        ),
    ]
    config = default_config(seed=11, mode="test", tick_interval_s=0.05, accounts=tuple(accounts))
    port = free_port()
    server, task = await start_venue_app(create_binance_venue_app(config), port)
    harness = CcxtHarness(f"http://127.0.0.1:{port}")
    try:
        yield harness
    finally:
        await harness.aclose()
        await stop_venue(server, task)
