"""After a reconnect, venue fills older than the order-history retention are not stored again.

Retention purges old fills (ADR 0017), but a venue keeps reporting its whole fill history. Without a
horizon, the catch-up after a reconnect would store a purged fill as new, and the copy engine would
copy a provider's old trade again.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

from brokerlink.brokers.base import OrderRequest
from brokerlink.bus.memory import MemoryEventBus
from brokerlink.domain.enums import OrderType, Side
from brokerlink.engine.links.service import BrokerLinks
from brokerlink.kit.clock import ManualClock, SystemClock
from brokerlink.security.vault import Vault
from brokerlink.store.db import Database
from brokerlink.store.repositories.fills import FillRepository
from tests.contract.harness import SimHarness
from tests.links_fixtures import LinksFactory, new_link


async def _trade_ids(database: Database, account_id: str) -> set[str]:
    async with database.session() as session:
        return set(await FillRepository(session).trade_ids(account_id))


async def _live_within(links: BrokerLinks, account_id: str) -> None:
    for _ in range(200):  # bounded: 10 s
        if links.is_live(account_id):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the link did not come back")


async def test_a_fill_older_than_the_horizon_is_not_caught_up_and_a_newer_one_is(  # noqa: PLR0917 - fixtures
    make_links: LinksFactory, venue: SimHarness, database: Database, bus: MemoryEventBus, vault: Vault, user_id: str
) -> None:
    first = make_links()
    account = await first.link(user_id, new_link(venue))
    await first.stop()
    outside = venue.adapter()  # a trade at the venue while brokerlink is away
    await outside.connect()
    try:
        await outside.submit(
            OrderRequest(client_order_id="elsewhere-1", symbol="EUR/USD", side=Side.BUY, qty=Decimal("0.10"),
                         type=OrderType.MARKET)
        )  # fmt: skip
        for _ in range(200):
            if (await outside.fills_since(None)).fills:
                break
            await asyncio.sleep(0.05)
        venue_fills = (await outside.fills_since(None)).fills
    finally:
        await outside.close()
    assert venue_fills, "the venue filled the order"

    # Two days on, with a one-day horizon: the fill is from before it, and stays out.
    later = ManualClock(SystemClock().now() + timedelta(days=2))
    horizon_links = BrokerLinks(database, bus, vault, later, retry_max_s=0.2, fill_horizon_days=1)
    try:
        await horizon_links.start()
        await _live_within(horizon_links, account.id)
    finally:
        await horizon_links.stop()
    assert await _trade_ids(database, account.id) == set()

    # Without a horizon (the default) the same catch-up stores it: the check above can fail.
    unbounded = make_links()
    await unbounded.start()
    await _live_within(unbounded, account.id)
    assert await _trade_ids(database, account.id) == {f.trade_id for f in venue_fills}
