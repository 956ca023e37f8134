"""Reading an account's holdings (``recovery.sync_holdings``): a slow read never undoes a newer one.

A link's recovery at connect and the re-read after each burst of fills both read the venue's
positions and store them, flattening stored positions the venue no longer reports. Two of them at
once used to interleave: a read taken before a fill, answered late, found the position the other
had stored since, took it for one the venue no longer held, and flattened it (seen as the copy
engine finding no provider position, hence no entry price, for a follower who had just joined).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal

from brokerlink.domain.events import DomainEvent
from brokerlink.domain.models import Account, Balance, Position
from brokerlink.engine.links.ingest import ingest
from brokerlink.engine.links.live import LiveAccount
from brokerlink.engine.links.recovery import sync_holdings
from brokerlink.kit.clock import SystemClock
from brokerlink.store.db import Database
from brokerlink.store.repositories.positions import PositionRepository
from tests.contract.harness import SimHarness
from tests.links_fixtures import LinksFactory, new_link

EURUSD = "EUR/USD"


class _Venue:
    """What ``sync_holdings`` asks an adapter: the first positions read waits for ``release``, and
    answers what the venue held when it was asked (nothing); later reads answer at once (0.30)."""

    def __init__(self, account_id: str) -> None:
        self.account_id = account_id
        self.release = asyncio.Event()
        self.asked = asyncio.Event()
        self.reads = 0

    async def balance(self) -> Balance:
        return Balance(
            account_id=self.account_id, currency="USD", cash=Decimal(10_000), equity=Decimal(10_000),
            buying_power=Decimal(10_000), ts=SystemClock().now(),
        )  # fmt: skip

    async def positions(self) -> list[Position]:
        self.reads += 1
        if self.reads == 1:
            self.asked.set()
            await self.release.wait()
            return []
        return [Position(account_id=self.account_id, symbol=EURUSD, qty=Decimal("0.30"), avg_price=Decimal("1.085"))]


async def _held(database: Database, account_id: str) -> Decimal:
    async with database.session() as session:
        position = await PositionRepository(session).get(account_id, EURUSD)
    return Decimal(0) if position is None else position.qty


async def _linked(make_links: LinksFactory, venue: SimHarness, user_id: str) -> Account:
    links = make_links()
    try:
        return await links.link(user_id, new_link(venue))
    finally:
        await links.stop()  # nothing else reads this account's holdings now


async def test_a_read_answered_late_does_not_flatten_what_a_later_read_stored(
    make_links: LinksFactory, venue: SimHarness, database: Database, user_id: str
) -> None:
    account = await _linked(make_links, venue, user_id)
    fake = _Venue(account.id)
    live = LiveAccount(account, broker="sim", adapter=fake, instruments=[])  # type: ignore[arg-type]
    clock = SystemClock()

    async def apply(_live: LiveAccount, event: DomainEvent) -> None:
        async with database.session() as session:
            await ingest(session, event, now=clock.now())
            await session.commit()

    slow = asyncio.create_task(sync_holdings(database, live, clock=clock, apply=apply))  # e.g. recovery at connect
    await fake.asked.wait()
    fresh = asyncio.create_task(sync_holdings(database, live, clock=clock, apply=apply))  # the re-read after a fill
    for _ in range(50):  # let the fresh read run as far as it can while the slow one is out
        await asyncio.sleep(0)
    fake.release.set()
    await asyncio.gather(slow, fresh)
    assert fake.reads == 2
    assert await _held(database, account.id) == Decimal("0.30")


async def test_reads_one_after_another_still_flatten_what_the_venue_no_longer_holds(
    make_links: LinksFactory, venue: SimHarness, database: Database, user_id: str
) -> None:
    account = await _linked(make_links, venue, user_id)
    clock = SystemClock()
    now: datetime = clock.now()
    async with database.session() as session:
        await PositionRepository(session).upsert(
            Position(account_id=account.id, symbol=EURUSD, qty=Decimal("0.10"), avg_price=Decimal("1.08")), now=now
        )
        await session.commit()
    fake = _Venue(account.id)
    fake.release.set()  # the first read answers at once: the venue holds nothing
    live = LiveAccount(account, broker="sim", adapter=fake, instruments=[])  # type: ignore[arg-type]

    async def apply(_live: LiveAccount, event: DomainEvent) -> None:
        async with database.session() as session:
            await ingest(session, event, now=clock.now())
            await session.commit()

    await sync_holdings(database, live, clock=clock, apply=apply)
    assert await _held(database, account.id) == 0


async def test_holdings_settled_waits_for_a_pending_reread_and_never_cancels_it(
    make_links: LinksFactory, venue: SimHarness, user_id: str
) -> None:
    """``BrokerLinks.holdings_settled``: at once with no re-read pending; else until it is done, or
    until the timeout, leaving a re-read that outlasts it running."""
    links = make_links()
    try:
        account = await links.link(user_id, new_link(venue))
        live = links.live(account.id)
        await live.stop_refresh()
        await links.holdings_settled(account.id)  # nothing pending
        release = asyncio.Event()

        async def reread() -> None:
            await release.wait()

        live.refresh = asyncio.create_task(reread())
        waiting = asyncio.create_task(links.holdings_settled(account.id))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not waiting.done()  # waits while the re-read is pending
        release.set()
        await waiting
        assert live.refresh.done()

        release.clear()
        live.refresh = asyncio.create_task(reread())
        await links.holdings_settled(account.id, timeout_s=0.01)  # gives up waiting...
        assert not live.refresh.done()  # ...and the re-read goes on
        release.set()
        await live.refresh
        await links.holdings_settled("acc_not_live")  # an account not connected here: nothing to wait for
    finally:
        await links.stop()
