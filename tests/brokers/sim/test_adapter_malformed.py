"""A trade update the adapter cannot read must not end its stream, nor lose the fill it carried.

The adapter drops the connection, reconnects, and recovers the fill from the venue's reports.
Real venue on loopback (tests/contract/harness.py); bounded waits, no wall-clock asserts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from brokerlink.brokers.base import OrderRequest
from brokerlink.brokers.sim import adapter as adapter_module
from brokerlink.brokers.sim.adapter import SimAdapter
from brokerlink.domain.enums import OrderType, Side
from brokerlink.domain.events import DomainEvent, OrderFilled
from tests.contract.harness import sim_venue

pytestmark = pytest.mark.e2e


@pytest.fixture
async def adapter() -> AsyncIterator[SimAdapter]:
    async with sim_venue() as venue:
        sim = venue.adapter()
        assert isinstance(sim, SimAdapter)
        await sim.connect()
        try:
            yield sim
        finally:
            await sim.close()


async def test_an_unreadable_trade_update_reconnects_and_the_fill_is_recovered(
    adapter: SimAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = adapter_module.mapping.trade_update_event
    broken = {"left": 1}

    def unreadable_once(*args: Any, **kwargs: Any) -> DomainEvent:
        if broken["left"]:
            broken["left"] -= 1
            raise ValueError("garbled by the network")
        return real(*args, **kwargs)

    monkeypatch.setattr(adapter_module.mapping, "trade_update_event", unreadable_once)
    request = OrderRequest(
        client_order_id="garbled-1", symbol="EUR/USD", side=Side.BUY, qty=Decimal("0.10"), type=OrderType.MARKET
    )
    await adapter.submit(request)

    filled = Decimal(0)
    events = adapter.events()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(10):  # bounds the wait; the assertions below say what must have happened
            async for event in events:
                if isinstance(event, OrderFilled) and event.client_order_id == "garbled-1":
                    filled += event.last_qty
                    if filled == request.qty:
                        break
    assert broken["left"] == 0, "the broken message was not exercised"
    assert adapter.reconnects >= 1, "an unreadable message must drop the connection, not be skipped"
    assert filled == request.qty, "the fill was lost"
