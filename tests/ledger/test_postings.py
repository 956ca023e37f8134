"""Postings from broker activity, against a REAL sim venue on loopback (SQLite and PostgreSQL).

Trades go through the links service like a user's would; the poster reads the stored fills and
posts them; ledger cash must then equal the broker-reported cash to the unit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import TypeVar

import pytest
from sqlalchemy import func, select

from brokerlink import observe
from brokerlink.brokers.sim.venue import VenueConfig
from brokerlink.brokers.sim.venue.config import AccountConfig
from brokerlink.bus.memory import MemoryEventBus
from brokerlink.domain.enums import OrderStatus, Side
from brokerlink.domain.models import Account, Balance, Fill
from brokerlink.engine.links.orders import OrderTicket, place_order
from brokerlink.engine.links.service import BrokerLinks
from brokerlink.kit.clock import SystemClock
from brokerlink.ledger import chart, journal
from brokerlink.ledger.poster import LedgerPoster
from brokerlink.ledger.postings import AccountBook, apply_fill
from brokerlink.ledger.reconcile import Reconciliation, reconcile_account, reconcile_all
from brokerlink.store.db import Database
from brokerlink.store.models_ledger import JournalEntryRow, PostingRow
from brokerlink.store.repositories.orders import OrderRepository
from brokerlink.store.repositories.positions import BalanceRepository
from tests.contract.harness import SimHarness, free_port, start_venue, stop_venue
from tests.links_fixtures import LinksFactory, new_link
from tests.store.conftest import (  # noqa: F401 - the storage contract fixtures, on both backends
    _drop_databases_at_exit,
    database_url,
    server_url,
)

T = TypeVar("T")
D = Decimal


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:  # noqa: F811 - the imported fixture
    """The links fixtures' database, on both backends (overrides tests.links_fixtures.database)."""
    db = Database(database_url)
    yield db
    await db.dispose()


@pytest.fixture
async def crypto_venue() -> AsyncIterator[SimHarness]:
    """A crypto venue with one USDT account (the quote currency of its instruments)."""
    config = VenueConfig(
        instrument_set="crypto",
        seed=5,
        mode="test",
        tick_interval_s=0.05,
        heartbeat_interval_s=1.0,
        accounts=(
            AccountConfig(account_id="SIM-CRYPTO", api_key="crypto-key", api_secret="crypto-secret", currency="USDT"),
        ),
    )
    port = free_port()
    server, task = await start_venue(config, port)
    harness = SimHarness(f"http://127.0.0.1:{port}")
    try:
        yield harness
    finally:
        await harness.aclose()
        await stop_venue(server, task)


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str, *, attempts: int = 200) -> T:
    """Poll ``probe`` until it returns something truthy (bounded: ``attempts`` x 50 ms)."""
    for _ in range(attempts):
        result = await probe()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def trade(links: BrokerLinks, database: Database, account: Account, symbol: str, *, side: Side, qty: str) -> None:
    """A market order, waited for until it is filled and the broker's balance reflects it."""
    async with database.session() as session:
        before = await BalanceRepository(session).get(account.id, account.currency)
    order, _ = await place_order(links, account.id, OrderTicket(symbol=symbol, side=side, qty=D(qty)))

    async def filled() -> bool:
        async with database.session() as session:
            current = await OrderRepository(session).get_by_id(order.id)
        return current is not None and current.status is OrderStatus.FILLED

    await eventually(filled, f"{side} {qty} {symbol} to fill")

    async def refreshed() -> Balance | None:
        async with database.session() as session:
            after = await BalanceRepository(session).get(account.id, account.currency)
        return after if after is not None and (before is None or after.ts > before.ts) else None

    await eventually(refreshed, "the balance refresh after the fill")


async def settled(database: Database, poster: LedgerPoster, account_id: str) -> list[Reconciliation]:
    """Post, then reconcile until ledger cash matches the (possibly still refreshing) broker cash."""

    async def probe() -> list[Reconciliation] | None:
        await poster.run_once()
        async with database.session() as session:
            result = await reconcile_account(session, account_id)
        return result if result and all(r.status == "ok" for r in result) else None

    return await eventually(probe, "ledger cash to reconcile with the broker's")


async def counts(database: Database) -> tuple[int, int]:
    async with database.session() as session:
        entries = (await session.execute(select(func.count()).select_from(JournalEntryRow))).scalar_one()
        postings = (await session.execute(select(func.count()).select_from(PostingRow))).scalar_one()
    return int(entries), int(postings)


async def test_fx_margin_account_reconciles_to_the_unit_and_replay_changes_nothing(
    make_links: LinksFactory, venue: SimHarness, database: Database, user_id: str
) -> None:
    links = make_links()
    account = await links.link(user_id, new_link(venue))
    poster = LedgerPoster(database, SystemClock(), batch=2)
    await trade(links, database, account, "EUR/USD", side=Side.BUY, qty="0.30")
    await trade(links, database, account, "EUR/USD", side=Side.SELL, qty="0.10")  # partial close: realizes P&L
    await trade(links, database, account, "EUR/USD", side=Side.SELL, qty="0.40")  # flips short
    await trade(links, database, account, "EUR/USD", side=Side.BUY, qty="0.20")  # closes

    [result] = await settled(database, poster, account.id)
    async with database.session() as session:
        broker = await BalanceRepository(session).get(account.id, "USD")
        assert broker is not None
        cash = await journal.balance(session, chart.cash(account.id), "USD")
        commissions = await journal.balance(session, chart.commissions(account.id), "USD")
        opening = await journal.balance(session, chart.opening_balance(account.id), "USD")
        pnl = await journal.balance(session, chart.realized_pnl(account.id), "USD")
        assert await journal.trial_balance(session) == {"USD": D(0)}
        mine = await journal.balances(session, owner_id=user_id)
    assert cash == broker.cash == result.broker_cash
    assert opening == D(100_000)  # the venue account's starting cash
    assert commissions > 0  # FX pays 35 per million of notional per fill
    assert cash == opening + pnl - commissions
    assert pnl != 0  # the market moved between the trades (at least the spread was crossed)
    assert {b.owner_id for b in mine} == {user_id}

    # A crash replay: a new poster starts from nothing and posts everything again; nothing changes.
    state = await counts(database)
    await LedgerPoster(database, SystemClock(), batch=3).run_once()
    await poster.run_once()
    assert await counts(database) == state
    async with database.session() as session:
        assert await journal.balance(session, chart.cash(account.id), "USD") == cash


async def test_crypto_account_reconciles_with_commissions_in_the_quote_currency(
    make_links: LinksFactory, crypto_venue: SimHarness, database: Database, user_id: str
) -> None:
    links = make_links()
    link = new_link(crypto_venue, label="Sim crypto", credentials={"api_key": "crypto-key"})
    account = await links.link(user_id, link)
    assert account.currency == "USDT"
    poster = LedgerPoster(database, SystemClock())
    await trade(links, database, account, "BTC/USDT", side=Side.BUY, qty="0.01000")
    await trade(links, database, account, "ETH/USDT", side=Side.BUY, qty="0.50000")
    await trade(links, database, account, "BTC/USDT", side=Side.SELL, qty="0.01000")

    [result] = await settled(database, poster, account.id)
    async with database.session() as session:
        fees = await journal.balance(session, chart.commissions(account.id), "USDT")
        entries = await journal.entries(session, owner_id=user_id)
    assert result.ledger_cash == result.broker_cash
    assert fees > 0  # 5 bp taker on every fill
    assert [e.kind for e in entries] == ["opening", "fill", "fill", "fill"]


async def test_reconciliation_flags_an_unexplained_difference_and_reports_drift(
    make_links: LinksFactory, venue: SimHarness, database: Database, user_id: str
) -> None:
    links = make_links()
    account = await links.link(user_id, new_link(venue))
    poster = LedgerPoster(database, SystemClock())
    await trade(links, database, account, "EUR/USD", side=Side.BUY, qty="0.10")
    await settled(database, poster, account.id)

    # Inject a difference nothing explains: a posting the broker never saw (an unconfirmed "deposit").
    async with database.session() as session:
        await journal.post(
            session,
            journal.Entry(
                idempotency_key="injected",
                correlation_id="test",
                kind="test",
                description="injected",
                occurred_at=datetime(2000, 1, 1, tzinfo=UTC),  # before the broker's balance time
                legs=(
                    journal.Leg(account=chart.cash(account.id), currency="USD", debit=D("12.34"), owner_id=user_id),
                    journal.Leg(
                        account=chart.owner_capital(account.id), currency="USD", credit=D("12.34"), owner_id=user_id
                    ),
                ),
            ),
            now=datetime.now(UTC),
        )
        await session.commit()
    seen: list[observe.Observation] = []
    remove = observe.add_listener(lambda o: seen.append(o) if o.kind == "ledger_drift" else None)
    try:
        results = await reconcile_all(database, user_id=user_id)
    finally:
        remove()
    [result] = results
    assert result.status == "unexplained"
    assert result.unexplained == D("-12.34")
    assert [(o.labels["account_id"], o.labels["currency"], o.labels["unexplained"]) for o in seen] == [
        (account.id, "USD", "-12.34")
    ]


async def test_unposted_fills_and_later_postings_explain_a_difference(
    make_links: LinksFactory, venue: SimHarness, database: Database, user_id: str, bus: MemoryEventBus
) -> None:
    links = make_links()
    account = await links.link(user_id, new_link(venue))
    poster = LedgerPoster(database, SystemClock())
    await settled(database, poster, account.id)  # opened, no fills yet
    await trade(links, database, account, "EUR/USD", side=Side.BUY, qty="0.10")  # stored, not posted

    async with database.session() as session:
        [result] = await reconcile_account(session, account.id)
    assert result.status == "explained"
    assert result.unexplained == 0
    assert [u.cash_effect for u in result.unposted_fills] == [result.difference]
    assert result.difference < 0  # the commission

    # The bus wakes a started poster: the fill gets posted without waiting for the sweep period.
    woken = LedgerPoster(database, SystemClock(), bus=bus, every_s=3600)
    await woken.start()
    try:
        await trade(links, database, account, "EUR/USD", side=Side.SELL, qty="0.10")
        await settled(database, woken, account.id)
    finally:
        await woken.stop()


def test_cash_settlement_pays_the_notional_and_books_cost_and_pnl() -> None:
    """Spot (cash-settled) accounts: a buy moves cash into holdings at cost; a sell realizes the difference."""
    book = AccountBook(account_id="acc_1", owner_id="usr_1", currency="USD", settlement="cash")
    ts = datetime(2026, 11, 2, tzinfo=UTC)

    def fill(side: Side, qty: str, price: str, fee: str) -> Fill:
        return Fill(
            trade_id=f"{side}{qty}{price}",
            order_id=None,
            client_order_id=None,
            account_id="acc_1",
            symbol="BTC/USD",
            side=side,
            qty=D(qty),
            price=D(price),
            fee=D(fee),
            fee_currency="USD",
            ts=ts,
        )

    def amounts(entry: journal.Entry | None) -> dict[str, Decimal]:
        assert entry is not None
        journal.validate(entry)
        totals: dict[str, Decimal] = {}
        for leg in entry.legs:
            if leg.account != chart.commissions("acc_1"):
                totals[leg.account] = totals.get(leg.account, D(0)) + leg.debit - leg.credit
        return totals

    bought = amounts(apply_fill(book, "fil_1", fill(Side.BUY, "2", "100", "0.10"), None))
    assert bought == {chart.cash("acc_1"): D("-200.10"), chart.positions_at_cost("acc_1"): D(200)}
    sold = amounts(apply_fill(book, "fil_2", fill(Side.SELL, "0.5", "130", "0"), None))
    assert sold == {
        chart.cash("acc_1"): D("65.0"),
        chart.positions_at_cost("acc_1"): D(-50),
        chart.realized_pnl("acc_1"): D(-15),
    }


def test_margin_realized_pnl_carries_the_rounding_remainder() -> None:
    """Each fill posts round(cumulative) - posted so far: three gains of a third of a cent post 0.00, 0.01, 0.00."""
    book = AccountBook(account_id="acc_1", owner_id="usr_1", currency="USD")
    ts = datetime(2026, 11, 2, tzinfo=UTC)
    posted = []
    for i, (side, price) in enumerate([(Side.BUY, "1"), (Side.SELL, "1.0033"), (Side.BUY, "1"), (Side.SELL, "1.0033")]):
        entry = apply_fill(
            book,
            f"fil_{i}",
            Fill(
                trade_id=str(i),
                order_id=None,
                client_order_id=None,
                account_id="acc_1",
                symbol="X/USD",
                side=side,
                qty=D(1),
                price=D(price),
                ts=ts,
            ),
            None,
        )
        posted.append(journal.natural(chart.cash("acc_1"), *_sides(entry, chart.cash("acc_1"))))
    assert posted == [D(0), D(0), D(0), D("0.01")]  # 0.0033 rounds to 0.00; 0.0066 to 0.01


def _sides(entry: journal.Entry | None, account: str) -> tuple[Decimal, Decimal]:
    if entry is None:
        return D(0), D(0)
    return (
        sum((leg.debit for leg in entry.legs if leg.account == account), D(0)),
        sum((leg.credit for leg in entry.legs if leg.account == account), D(0)),
    )
