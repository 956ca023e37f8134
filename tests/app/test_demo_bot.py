"""The demo's provider bot trades through the normal order path against a real sim venue."""

from __future__ import annotations

from decimal import Decimal

from brokerlink.app.demo_bot import DemoBot
from brokerlink.domain.enums import OrderStatus
from brokerlink.store.db import Database
from brokerlink.store.repositories.orders import OrderRepository
from tests.contract.harness import SimHarness
from tests.links_fixtures import LinksFactory, new_link


async def test_the_bot_opens_adds_closes_and_reverses_with_valid_orders(
    make_links: LinksFactory, venue: SimHarness, database: Database, user_id: str
) -> None:
    links = make_links()
    account = await links.link(user_id, new_link(venue))
    bot = DemoBot(links, "trader@example.com", interval_s=1.0, seed=3)
    for _ in range(12):
        assert await bot.step()
    async with database.session() as session:
        orders = (await OrderRepository(session).list_for_account(account.id, limit=50)).items
    assert len(orders) == 12
    assert all(o.status is not OrderStatus.REJECTED for o in orders), [o.reject_reason for o in orders]
    assert len({o.side for o in orders}) == 2
    assert all(o.qty > Decimal(0) for o in orders)


async def test_the_bot_does_nothing_without_a_connected_account(make_links: LinksFactory, user_id: str) -> None:
    bot = DemoBot(make_links(), "trader@example.com", interval_s=1.0, seed=3)
    assert not await bot.step()
    assert not await DemoBot(make_links(), "nobody@example.com", interval_s=1.0).step()
