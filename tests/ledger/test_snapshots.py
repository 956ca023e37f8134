"""Equity snapshots: what a sample holds (cash, marked equity, flows since the previous sample), on
SQLite and PostgreSQL; and samples of a real sim venue account that move when its position moves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from brokerlink.bus.memory import MemoryEventBus
from brokerlink.domain.copy import CopyIntent, IntentAction, SubscriptionStatus
from brokerlink.domain.enums import AssetClass, Side, TimeInForce
from brokerlink.domain.models import Instrument, Quote
from brokerlink.engine.links.orders import OrderTicket, place_order
from brokerlink.kit.clock import ManualClock
from brokerlink.kit.ids import new_id
from brokerlink.ledger.fees import record_flow
from brokerlink.ledger.snapshots import EquitySampler, live_marks, take_snapshots
from brokerlink.store.db import Database
from brokerlink.store.models_fees import FlowKind
from brokerlink.store.models_stats import SnapshotKind
from brokerlink.store.repositories.copy_intents import CopyIntentRepository
from brokerlink.store.repositories.instruments import InstrumentRepository
from brokerlink.store.repositories.positions import BalanceRepository, PositionRepository
from brokerlink.store.repositories.stats import StatsRepository
from brokerlink.store.repositories.subscriptions import SubscriptionRepository
from tests.contract.harness import SimHarness
from tests.ledger.test_stats_support import (
    BACKENDS,
    add_fills,
    deposit,
    fill,
    make_account,
    make_strategy,
    make_subscription,
    set_balance,
    set_position,
    withdraw,
)
from tests.links_fixtures import LinksFactory, new_link
from tests.store.conftest import migrated_database

T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
D = Decimal
EURUSD = "EUR/USD"


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with migrated_database(request, tmp_path) as database:
        yield database


def quote(bid: str, ask: str) -> Quote:
    return Quote(symbol=EURUSD, bid=D(bid), ask=D(ask), bid_size=D(1), ask_size=D(1), ts=T0)


async def eurusd(database: Database, contract_size: str = "100000") -> None:
    instrument = Instrument(
        symbol=EURUSD, venue_symbol="EURUSD", asset_class=AssetClass.FX, base="EUR", quote="USD",
        tick_size=D("0.00001"), qty_step=D("0.01"), min_qty=D("0.01"), contract_size=D(contract_size),
    )  # fmt: skip
    async with database.session() as session:
        await InstrumentRepository(session).upsert("sim", instrument, now=T0)
        await session.commit()


async def test_samples_mark_positions_and_carry_the_flows_since_the_previous_sample(db: Database) -> None:  # noqa: PLR0915
    provider = await make_account(db, "provider@example.com", now=T0)
    follower = await make_account(db, "follower@example.com", now=T0)
    quitter = await make_account(db, "quitter@example.com", now=T0)
    strategy = await make_strategy(db, provider, now=T0)
    live = await make_subscription(db, strategy, follower, now=T0, start_equity="5000")
    stopped = await make_subscription(db, strategy, quitter, now=T0)
    async with db.session() as session:
        await SubscriptionRepository(session).set_status(stopped.id, SubscriptionStatus.STOPPED, now=T0)
        await session.commit()
    await eurusd(db)
    await set_balance(db, provider, "10000", "9990", now=T0)
    await set_balance(db, follower, "5000", now=T0)
    await set_balance(db, quitter, "7000", now=T0)
    await set_position(db, provider, EURUSD, "0.5", "1.10000", now=T0)  # long half a lot
    await set_position(db, follower, EURUSD, "-0.2", "1.10000", now=T0)  # short 0.2 lots: the follower's own
    # One copy: the subscription bought 0.1 lots at 1.10000 (its intent's client order id on the fill).
    async with db.session() as session:
        intent = CopyIntent(
            id=new_id("cpi"), subscription_id=live.id, signal_id=None, action=IntentAction.OPEN,
            follower_account_id=follower.id, client_order_id="copy-1", symbol=EURUSD, side=Side.BUY,
            qty=D("0.1"), tif=TimeInForce.IOC, created_at=T0, updated_at=T0,
        )  # fmt: skip
        await CopyIntentRepository(session).add(intent)
        await session.commit()
    await add_fills(
        db, [fill(follower, Side.BUY, "0.1", "1.10000", T0 - timedelta(minutes=1), client_order_id="copy-1")]
    )
    marks = {EURUSD: quote("1.10100", "1.10120")}

    async def mark(account_id: str, symbol: str) -> Quote | None:
        return marks.get(symbol)

    async with db.session() as session:
        written = await take_snapshots(session, now=T0, mark=mark)
        await session.commit()
    assert written == 4  # three accounts and the live subscription; not the stopped one
    async with db.session() as session:
        repo = StatsRepository(session)
        first = await repo.latest_many([provider.id, follower.id, quitter.id, live.id, stopped.id])
    assert set(first) == {provider.id, follower.id, quitter.id, live.id}
    # The long closes at the bid: 0.5 x (1.10100 - 1.10000) x 100000 = 50. The short at the ask:
    # -0.2 x (1.10120 - 1.10000) x 100000 = -24. By hand, not through the code's formula.
    assert (first[provider.id].cash, first[provider.id].equity) == (D(10000), D(10050))
    assert (first[follower.id].cash, first[follower.id].equity) == (D(5000), D(4976))
    assert first[quitter.id].equity == D(7000)
    # The subscription is its start equity plus its copy alone (not the follower's own short):
    # 5000 + 0.1 x (1.10100 - 1.10000) x 100000 = 5010; its cash leaves the open copy out.
    assert first[live.id].kind is SnapshotKind.SUBSCRIPTION
    assert (first[live.id].account_id, first[live.id].cash, first[live.id].equity) == (follower.id, D(5000), D(5010))
    assert all(s.net_flow == 0 for s in first.values())  # nothing before a first sample

    # Money moves between samples: the follower deposits 1000 and withdraws 300; a deposit after the
    # second sample belongs to the third. Without a quote the broker's own equity is used.
    await deposit(db, follower, "1000", at=T0 + timedelta(minutes=1))
    await withdraw(db, follower, "300", at=T0 + timedelta(minutes=2))
    await deposit(db, follower, "50", at=T0 + timedelta(minutes=10))
    await set_balance(db, follower, "5700", "5690", now=T0 + timedelta(minutes=3))
    async with db.session() as session:  # the follower also adds 200 to the subscription's capital
        await record_flow(
            session, live, FlowKind.DEPOSIT, D(200), reference="dep-1", occurred_at=T0 + timedelta(minutes=2), now=T0
        )
        await session.commit()
    marks.clear()  # no quote: the account falls back to the broker's equity, the copy to its last fill

    async with db.session() as session:
        await take_snapshots(session, now=T0 + timedelta(minutes=5), mark=mark)
        await take_snapshots(session, now=T0 + timedelta(minutes=5), mark=mark)  # the same instant: no duplicate
        await session.commit()
    async with db.session() as session:
        series = await StatsRepository(session).series(follower.id)
        sub_series = await StatsRepository(session).series(live.id)
    assert [(s.cash, s.equity, s.net_flow) for s in series] == [
        (D(5000), D(4976), D(0)),
        (D(5700), D(5690), D(700)),
    ]
    # The account's deposits are not the subscription's: only its own recorded 200 is its flow. The
    # copy, with no quote, is marked at the account's last fill price (1.10000): no unrealized P&L.
    assert [(s.equity, s.net_flow) for s in sub_series] == [(D(5010), D(0)), (D(5200), D(200))]


async def test_a_position_in_an_unknown_instrument_falls_back_to_the_brokers_equity(db: Database) -> None:
    account = await make_account(db, "a@example.com", now=T0)
    await set_balance(db, account, "1000", "1012.5", now=T0)
    await set_position(db, account, "XAU/USD", "1", "2000", now=T0)

    async def mark(account_id: str, symbol: str) -> Quote | None:
        return Quote(symbol=symbol, bid=D(1), ask=D(1), bid_size=D(1), ask_size=D(1), ts=T0)

    async with db.session() as session:
        await take_snapshots(session, now=T0, mark=mark)
        (only,) = await StatsRepository(session).series(account.id)
    assert only.equity == D("1012.5")


async def test_the_sampler_runs_in_the_background_and_stops(db: Database) -> None:
    account = await make_account(db, "a@example.com", now=T0)
    await set_balance(db, account, "1000", now=T0)
    sampler = EquitySampler(db, ManualClock(T0), every_s=0.01)
    sampler.start()
    try:
        for _ in range(200):  # bounded: 200 x 10 ms at most
            async with db.session() as session:
                if await StatsRepository(session).series(account.id):
                    break
            await asyncio.sleep(0.01)
    finally:
        await sampler.stop()
    async with db.session() as session:
        samples = await StatsRepository(session).series(account.id)
    assert [(s.ts, s.equity) for s in samples] == [(T0, D(1000))]  # the clock stood still: one sample


# --- a real sim venue account (SQLite: tests/links_fixtures.py) --------------------------------------


async def test_snapshots_of_a_sim_venue_account_move_when_its_position_moves(
    make_links: LinksFactory, database: Database, bus: MemoryEventBus, venue: SimHarness, user_id: str
) -> None:
    links = make_links()
    account = await links.link(user_id, new_link(venue))
    clock = ManualClock(datetime.now(UTC))
    seen: dict[str, Quote] = {}
    marks = live_marks(links.is_live, links.live)

    async def recording(account_id: str, symbol: str) -> Quote | None:
        found = await marks(account_id, symbol)
        if found is not None:
            seen[symbol] = found
        return found

    sampler = EquitySampler(database, clock, every_s=60, mark=recording)
    assert await sampler.sample() == 1
    async with database.session() as session:
        balance = (await BalanceRepository(session).list_for_account(account.id))[0]
        (flat,) = await StatsRepository(session).series(account.id)
    assert flat.cash == balance.cash
    assert flat.equity == balance.cash  # no position: nothing to mark
    reported_at = balance.ts

    await place_order(links, account.id, OrderTicket(symbol=EURUSD, side=Side.BUY, qty=D("0.50")))
    for _ in range(200):  # bounded: the fill, then the re-read of positions and balance
        async with database.session() as session:
            position = await PositionRepository(session).get(account.id, EURUSD)
            balance = (await BalanceRepository(session).list_for_account(account.id))[0]
        if position is not None and position.qty == D("0.50") and balance.ts > reported_at:
            break
        await asyncio.sleep(0.05)
    assert position is not None
    assert position.qty == D("0.50")
    clock.advance(timedelta(minutes=5))
    assert await sampler.sample() == 1
    async with database.session() as session:
        instrument = await InstrumentRepository(session).get("sim", EURUSD)
        balance = (await BalanceRepository(session).list_for_account(account.id))[0]
        position = await PositionRepository(session).get(account.id, EURUSD)
        moved = (await StatsRepository(session).series(account.id))[-1]
    assert instrument is not None
    assert position is not None
    assert EURUSD in seen, "the venue's quote was used to mark the position"
    expected = balance.cash + position.qty * (seen[EURUSD].bid - position.avg_price) * instrument.contract_size
    assert moved.ts == clock.now()
    assert moved.cash == balance.cash
    assert moved.equity == expected
    assert moved.equity != moved.cash  # the open position moves equity away from cash (at least the spread)
