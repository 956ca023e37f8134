"""A broker revoking the credentials of a linked account (issue 7; SECURITY.md 25): the holder
revokes the API key at the broker while brokerlink is connected. The link is marked revoked, no
order goes to it any more, and the account holder is told on the account's event stream (which
feeds their WebSocket and webhooks). A refusal that passes is not a revocation: that case is
tests/engine/links/test_links_faults.py's degrade-and-recover under clock skew, whose signed
requests are refused while the clock is off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest

from brokerlink.bus.memory import MemoryEventBus
from brokerlink.domain.enums import ConnectionState, Side
from brokerlink.domain.events import ConnectionChanged, decode_event
from brokerlink.engine.links.ingest import ACCOUNT_TOPIC
from brokerlink.engine.links.orders import OrderTicket, place_order
from brokerlink.engine.links.service import BrokerLinks
from brokerlink.kit.clock import SystemClock
from brokerlink.kit.errors import Unavailable
from brokerlink.security.vault import Vault
from brokerlink.store.db import Database
from brokerlink.store.repositories.connections import ConnectionRepository
from tests.contract.harness import SimHarness
from tests.links_fixtures import API_KEY, new_link


@pytest.fixture
async def links(database: Database, bus: MemoryEventBus, vault: Vault) -> AsyncIterator[BrokerLinks]:
    """A links service that revokes after two refusals in a row over 0.2 s (the default: 3 over 30 s)."""
    service = BrokerLinks(
        database, bus, vault, SystemClock(), retry_max_s=0.2, revoke_after_refusals=2, revoke_after_s=0.2
    )
    yield service
    await service.stop()


async def test_a_key_revoked_at_the_broker_revokes_the_link_stops_orders_and_tells_the_holder(
    links: BrokerLinks, database: Database, bus: MemoryEventBus, venue: SimHarness, user_id: str
) -> None:
    account = await links.link(user_id, new_link(venue))
    consumer = bus.consumer(ACCOUNT_TOPIC, "test-holder", "t1", start="latest")
    await consumer.read(max_count=1)  # the group exists from here on: later events reach it

    async with httpx.AsyncClient(base_url=venue.base_url) as control:
        revoked = await control.post("/_control/keys/revoke", json={"api_key": API_KEY})
    assert revoked.json() == {"revoked": True}

    async def status() -> ConnectionState | None:
        async with database.session() as session:
            row = await ConnectionRepository(session).get_by_id(account.connection_id)
        return None if row is None else ConnectionState(row.status)

    for _ in range(200):  # bounded: 10 s
        if await status() is ConnectionState.REVOKED:
            break
        await asyncio.sleep(0.05)
    assert await status() is ConnectionState.REVOKED

    with pytest.raises(Unavailable):  # nothing more is sent to a revoked link
        await place_order(links, account.id, OrderTicket(symbol="EUR/USD", side=Side.BUY, qty=Decimal("0.10")))

    told: list[ConnectionChanged] = []
    for _ in range(100):  # bounded
        for message in await consumer.read(max_count=50, block_ms=50):
            event = decode_event(message.payload)
            if isinstance(event, ConnectionChanged) and event.state is ConnectionState.REVOKED:
                told.append(event)
        if told:
            break
    assert [e.account_id for e in told] == [account.id]
    assert told[0].reason is not None
    assert "link the account again" in told[0].reason
