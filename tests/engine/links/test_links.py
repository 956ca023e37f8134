"""Linking, trading and recovery through BrokerLinks, against a real sim venue on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import select

from brokerlink.brokers.base import OrderRefused, OrderRequest, TransientBrokerError
from brokerlink.bus.memory import MemoryEventBus
from brokerlink.domain.enums import ConnectionState, OrderStatus, OrderType, Side, TimeInForce
from brokerlink.domain.models import Order, Position
from brokerlink.engine.links.ingest import ACCOUNT_TOPIC
from brokerlink.engine.links.orders import OrderTicket, cancel_order, place_order
from brokerlink.engine.links.recovery import NEVER_SENT
from brokerlink.kit.clock import SystemClock
from brokerlink.kit.errors import Conflict, InvalidInput
from brokerlink.kit.ids import new_id
from brokerlink.store.db import Database
from brokerlink.store.models import BrokerConnectionRow, VaultSecretRow
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.connections import ConnectionRepository
from brokerlink.store.repositories.events import EventRepository
from brokerlink.store.repositories.fills import FillRepository
from brokerlink.store.repositories.orders import OrderRepository
from brokerlink.store.repositories.positions import BalanceRepository, PositionRepository
from tests.contract.harness import SimHarness
from tests.links_fixtures import API_KEY, LinksFactory, new_link

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str, *, attempts: int = 200) -> T:
    """Poll ``probe`` until it returns something (bounded: ``attempts`` x 50 ms)."""
    for _ in range(attempts):
        result = await probe()
        if result is not None and result is not False:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def stored_order(database: Database, order_id: str) -> Order:
    async with database.session() as session:
        order = await OrderRepository(session).get_by_id(order_id)
    assert order is not None
    return order


async def test_link_stores_connection_account_and_sealed_credentials(
    make_links: LinksFactory, venue: SimHarness, database: Database, user_id: str, tmp_path: Path
) -> None:
    links = make_links()
    account = await links.link(user_id, new_link(venue))

    assert account.venue_account_id == "SIM-CONF"  # learned from the venue: the user did not type it
    assert account.currency == "USD"
    async with database.session() as session:
        connection = await ConnectionRepository(session).get_for_user(user_id, account.connection_id)
        assert connection is not None
        assert connection.status == ConnectionState.CONNECTED
        assert connection.credentials_ref is not None
        secret = (await session.execute(select(VaultSecretRow))).scalar_one()
        assert secret.owner_id == connection.id
        assert API_KEY.encode() not in secret.ciphertext
        balances = await BalanceRepository(session).list_for_account(account.id)
        assert [b.currency for b in balances] == ["USD"]
    assert links.is_live(account.id)
    # SECURITY.md 35: the database files hold no plaintext of the credentials.
    await links.stop()
    await database.dispose()
    contents = await asyncio.to_thread(lambda: {p: p.read_bytes() for p in tmp_path.glob("links.db*")})
    assert contents
    for path, content in contents.items():
        assert API_KEY.encode() not in content, path


async def test_refused_credentials_store_nothing(
    make_links: LinksFactory, venue: SimHarness, database: Database, user_id: str
) -> None:
    with pytest.raises(OrderRefused) as refused:
        await make_links().link(user_id, new_link(venue, credentials={"api_key": "wrong-key"}))
    assert refused.value.status == 422
    async with database.session() as session:
        assert (await session.execute(select(BrokerConnectionRow))).first() is None
        assert (await session.execute(select(VaultSecretRow))).first() is None


async def test_unreachable_broker_stores_nothing(make_links: LinksFactory, database: Database, user_id: str) -> None:
    link = new_link(SimHarness("http://127.0.0.1:9"))  # discard port: nothing listens
    with pytest.raises(TransientBrokerError):
        await make_links().link(user_id, link)
    async with database.session() as session:
        assert (await session.execute(select(BrokerConnectionRow))).first() is None


@pytest.mark.parametrize(
    "base_url", ["http://169.254.169.254/latest", "http://10.0.0.1:8100", "file:///etc/passwd", "ftp://127.0.0.1"]
)
async def test_only_allowed_endpoints_are_linked(
    make_links: LinksFactory, venue: SimHarness, user_id: str, base_url: str
) -> None:
    with pytest.raises(InvalidInput, match="base_url"):
        await make_links().link(user_id, new_link(venue, base_url=base_url))


async def test_unknown_broker_and_duplicate_links_are_refused(
    make_links: LinksFactory, venue: SimHarness, user_id: str
) -> None:
    links = make_links()
    with pytest.raises(InvalidInput, match="broker"):
        await links.link(user_id, new_link(venue, broker="nosuchbroker"))
    await links.link(user_id, new_link(venue))
    with pytest.raises(Conflict, match="already linked"):
        await links.link(user_id, new_link(venue, label="Again"))


async def test_market_order_fills_and_books_fill_position_and_events(
    make_links: LinksFactory, venue: SimHarness, database: Database, user_id: str, bus: MemoryEventBus
) -> None:
    links = make_links()
    account = await links.link(user_id, new_link(venue))
    consumer = bus.consumer(ACCOUNT_TOPIC, "test", "reader")
    ticket = OrderTicket(symbol="EUR/USD", side=Side.BUY, qty=Decimal("0.10"), client_order_id="t-1")

    order, created = await place_order(links, account.id, ticket)
    assert created

    async def filled() -> Order | None:
        current = await stored_order(database, order.id)
        return current if current.status is OrderStatus.FILLED else None

    done = await eventually(filled, "the order to fill")
    assert done.filled_qty == Decimal("0.10")
    assert done.venue_order_id is not None
    async with database.session() as session:
        fills = await FillRepository(session).list_for_order(order.id)
        assert sum(f.qty for f in fills) == Decimal("0.10")
        assert all(f.account_id == account.id for f in fills)
    async with database.session() as session:
        position = await eventually(
            lambda: _position(database, account.id, "EUR/USD"), "the position update"
        )  # fmt: skip
        assert position.qty == Decimal("0.10")
        logged = await EventRepository(session).read_since(0, 100, topic=ACCOUNT_TOPIC)
    types = {e.type for e in logged}
    assert {"order_accepted", "order_filled"} <= types
    messages = await consumer.read(max_count=100, block_ms=100)
    assert {m.key for m in messages} == {account.id}
    assert len(messages) == len(logged)

    # The same client order id and parameters: the same order, not a second one.
    again, created_again = await place_order(links, account.id, ticket)
    assert (again.id, created_again) == (order.id, False)
    with pytest.raises(Conflict, match="different order"):
        await place_order(links, account.id, OrderTicket(symbol="EUR/USD", side=Side.SELL, qty=Decimal("0.10"),
                                                         client_order_id="t-1"))  # fmt: skip


async def _position(database: Database, account_id: str, symbol: str) -> Position | None:
    async with database.session() as session:
        return await PositionRepository(session).get(account_id, symbol)


async def test_orders_are_checked_against_the_instrument_rules(
    make_links: LinksFactory, venue: SimHarness, database: Database, user_id: str
) -> None:
    links = make_links()
    account = await links.link(user_id, new_link(venue))
    with pytest.raises(InvalidInput, match="quantity step"):
        await place_order(links, account.id, OrderTicket(symbol="EUR/USD", side=Side.BUY, qty=Decimal("0.105")))
    with pytest.raises(InvalidInput, match="symbol"):
        await place_order(links, account.id, OrderTicket(symbol="XAU/XAG", side=Side.BUY, qty=Decimal(1)))
    with pytest.raises(InvalidInput, match="limit_price"):
        await place_order(
            links, account.id, OrderTicket(symbol="EUR/USD", side=Side.BUY, qty=Decimal("0.10"), type=OrderType.LIMIT)
        )
    async with database.session() as session:
        page = await OrderRepository(session).list_for_account(account.id)
    assert list(page.items) == []  # nothing invalid was stored


async def test_refused_order_is_stored_rejected_with_the_reason(
    make_links: LinksFactory, venue: SimHarness, database: Database, user_id: str
) -> None:
    links = make_links()
    account = await links.link(user_id, new_link(venue))
    huge = OrderTicket(symbol="EUR/USD", side=Side.BUY, qty=Decimal("99.00"), client_order_id="too-big")
    with pytest.raises(OrderRefused):
        await place_order(links, account.id, huge)
    async with database.session() as session:
        order = await OrderRepository(session).get_by_client_order_id(account.id, "too-big")
    assert order is not None
    assert order.status is OrderStatus.REJECTED
    assert order.reject_reason


async def test_resting_limit_order_is_canceled(
    make_links: LinksFactory, venue: SimHarness, database: Database, user_id: str
) -> None:
    links = make_links()
    account = await links.link(user_id, new_link(venue))
    ticket = OrderTicket(
        symbol="EUR/USD", side=Side.BUY, qty=Decimal("0.10"), type=OrderType.LIMIT, limit_price=Decimal("0.50000")
    )
    order, _ = await place_order(links, account.id, ticket)
    assert order.status is OrderStatus.NEW  # the broker's acknowledgement arrived within the wait
    canceled = await cancel_order(links, user_id, order.id)
    assert canceled.status is OrderStatus.CANCELED
    with pytest.raises(Conflict, match="nothing to cancel"):
        await cancel_order(links, user_id, order.id)


async def test_restart_reconnects_and_catches_up_from_the_venue(
    make_links: LinksFactory, venue: SimHarness, database: Database, user_id: str
) -> None:
    """While brokerlink is down: a resting order is canceled at the venue, an order sent just before
    the crash fills there, and one never got sent. The next start reconciles all three."""
    first = make_links()
    account = await first.link(user_id, new_link(venue))
    resting, _ = await place_order(
        first,
        account.id,
        OrderTicket(symbol="EUR/USD", side=Side.SELL, qty=Decimal("0.10"), type=OrderType.LIMIT,
                    limit_price=Decimal("5.00000"), tif=TimeInForce.GTC),
    )  # fmt: skip
    await first.stop()

    now = SystemClock().now()
    sent = Order(id=new_id("ord"), client_order_id="sent-before-crash", account_id=account.id, symbol="EUR/USD",
                 side=Side.BUY, qty=Decimal("0.20"), type=OrderType.MARKET, tif=TimeInForce.GTC,
                 created_at=now, updated_at=now)  # fmt: skip
    unsent = Order(id=new_id("ord"), client_order_id="never-sent", account_id=account.id, symbol="EUR/USD",
                   side=Side.BUY, qty=Decimal("0.20"), type=OrderType.MARKET, tif=TimeInForce.GTC,
                   created_at=now, updated_at=now)  # fmt: skip
    async with database.session() as session:
        await OrderRepository(session).add(sent)
        await OrderRepository(session).add(unsent)
        await session.commit()
    outside = venue.adapter()  # the venue acts while brokerlink is away
    await outside.connect()
    try:
        await outside.cancel(resting.client_order_id)
        await outside.submit(OrderRequest(client_order_id="sent-before-crash", symbol="EUR/USD", side=Side.BUY,
                                          qty=Decimal("0.20"), type=OrderType.MARKET))  # fmt: skip
        await eventually(
            lambda: _venue_status(outside, "sent-before-crash", OrderStatus.FILLED), "the venue fill"
        )  # fmt: skip
    finally:
        await outside.close()

    second = make_links()
    await second.start()
    await eventually(lambda: _is_live(second, account.id), "the link to come back")
    assert (await stored_order(database, resting.id)).status is OrderStatus.CANCELED
    caught_up = await stored_order(database, sent.id)
    assert (caught_up.status, caught_up.filled_qty) == (OrderStatus.FILLED, Decimal("0.20"))
    async with database.session() as session:
        assert sum(f.qty for f in await FillRepository(session).list_for_order(sent.id)) == Decimal("0.20")
    never = await stored_order(database, unsent.id)
    assert (never.status, never.reject_reason) == (OrderStatus.REJECTED, NEVER_SENT)
    async with database.session() as session:
        listing = await AccountRepository(session).list_with_connections(user_id)
    assert listing[0].connection_status is ConnectionState.CONNECTED


async def _venue_status(adapter: object, client_order_id: str, status: OrderStatus) -> bool:
    from brokerlink.brokers.base import BrokerAdapter

    assert isinstance(adapter, BrokerAdapter)
    order = await adapter.order(client_order_id=client_order_id)
    return order is not None and order.status is status


async def _is_live(links: object, account_id: str) -> bool:
    from brokerlink.engine.links.service import BrokerLinks

    assert isinstance(links, BrokerLinks)
    return links.is_live(account_id)


async def test_unlink_forgets_credentials_and_keeps_history(
    make_links: LinksFactory, venue: SimHarness, database: Database, user_id: str
) -> None:
    links = make_links()
    account = await links.link(user_id, new_link(venue))
    await place_order(links, account.id, OrderTicket(symbol="EUR/USD", side=Side.BUY, qty=Decimal("0.10")))
    await links.unlink(user_id, account.connection_id)
    assert not links.is_live(account.id)
    async with database.session() as session:
        assert (await session.execute(select(VaultSecretRow))).first() is None
        connection = await ConnectionRepository(session).get_by_id(account.connection_id)
        assert connection is not None
        assert (connection.status, connection.credentials_ref) == (ConnectionState.REVOKED, None)
        assert (await OrderRepository(session).list_for_account(account.id)).items  # history kept

    fresh = await links.link(user_id, new_link(venue, label="Relinked"))  # the venue account is free again
    await links.unlink(user_id, fresh.connection_id)
    async with database.session() as session:
        assert await ConnectionRepository(session).get_by_id(fresh.connection_id) is None  # no history: gone
