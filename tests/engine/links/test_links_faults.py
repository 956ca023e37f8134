"""BrokerLinks under the sim venue's injected faults: an order is placed once and booked once."""

from __future__ import annotations

from decimal import Decimal

from brokerlink.domain.enums import ConnectionState, OrderStatus, Side
from brokerlink.domain.models import Order
from brokerlink.engine.links.orders import OrderTicket, place_order
from brokerlink.engine.links.service import BrokerLinks
from brokerlink.store.db import Database
from brokerlink.store.repositories.connections import ConnectionRepository
from brokerlink.store.repositories.fills import FillRepository
from tests.contract.harness import SimHarness, sim_venue
from tests.engine.links.test_links import eventually, stored_order
from tests.links_fixtures import API_KEY, API_SECRET, LinksFactory, new_link

QTY = Decimal("0.10")


async def _filled(database: Database, order_id: str) -> Order | None:
    order = await stored_order(database, order_id)
    return order if order.status is OrderStatus.FILLED else None


async def _fill_total(database: Database, order_id: str) -> Decimal:
    async with database.session() as session:
        return sum((f.qty for f in await FillRepository(session).list_for_order(order_id)), Decimal(0))


async def test_unknown_outcome_is_resolved_by_lookup_not_by_resending(
    make_links: LinksFactory, venue: SimHarness, database: Database, user_id: str
) -> None:
    links = make_links()
    account = await links.link(user_id, new_link(venue))
    await venue.set_faults(fail_after_accept=1)  # the venue takes the order, then answers 5xx
    order, created = await place_order(
        links, account.id, OrderTicket(symbol="EUR/USD", side=Side.BUY, qty=QTY, client_order_id="unknown-1")
    )
    assert created
    await eventually(lambda: _filled(database, order.id), "the order to fill")
    assert await _fill_total(database, order.id) == QTY
    at_venue = await links.live(account.id).adapter.open_orders()
    assert all(o.client_order_id != "unknown-1" for o in at_venue)
    # Exactly one order at the venue: a resend would have been refused as a duplicate or filled twice.
    assert (await links.live(account.id).adapter.positions())[0].qty == QTY


async def test_duplicated_events_book_each_fill_once(
    make_links: LinksFactory, venue: SimHarness, database: Database, user_id: str
) -> None:
    links = make_links()
    account = await links.link(user_id, new_link(venue))
    await venue.set_faults(duplicate_events=1.0)
    order, _ = await place_order(links, account.id, OrderTicket(symbol="EUR/USD", side=Side.BUY, qty=QTY))
    await eventually(lambda: _filled(database, order.id), "the order to fill")
    assert await _fill_total(database, order.id) == QTY


async def _status(database: Database, connection_id: str) -> ConnectionState:
    async with database.session() as session:
        row = await ConnectionRepository(session).get_by_id(connection_id)
    assert row is not None
    return ConnectionState(row.status)


async def test_a_dropped_stream_degrades_the_connection_until_it_is_back(
    make_links: LinksFactory, database: Database, user_id: str
) -> None:
    async with sim_venue(signed=True) as venue:
        await _degrade_and_recover(make_links(), venue, database, user_id)


async def _degrade_and_recover(links: BrokerLinks, venue: SimHarness, database: Database, user_id: str) -> None:
    account = await links.link(user_id, new_link(venue, credentials={"api_key": API_KEY, "api_secret": API_SECRET}))
    # Signed requests outside the receive window are refused: reconnects fail while the clock is skewed.
    await venue.set_faults(clock_skew_ms=120_000, drop_connections=True)

    async def degraded() -> bool:
        return await _status(database, account.connection_id) is ConnectionState.DEGRADED

    await eventually(degraded, "the connection to show degraded")
    assert not links.is_live(account.id)
    await venue.clear_faults()

    async def connected() -> bool:
        return await _status(database, account.connection_id) is ConnectionState.CONNECTED

    await eventually(connected, "the connection to come back")
    order, _ = await place_order(links, account.id, OrderTicket(symbol="EUR/USD", side=Side.BUY, qty=QTY))
    await eventually(lambda: _filled(database, order.id), "an order after the reconnect to fill")
