"""Hand-checked fee scenarios on SQLite and PostgreSQL: every figure is derived in a comment.

The world: a provider and a follower (USD accounts at the ``sim`` broker), a strategy, and a
subscription with a start equity of 10000 USD. Copy fills are fills of orders the subscription's
copy intents placed (same follower account and client order id); the open copy is marked at prices
the test sets (the ``marks`` source the server fills with live quotes).
"""

# ruff: noqa: F811 - the store's session fixtures are imported by name, and tests take them by that name

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from brokerlink.domain.copy import Strategy, Subscription, SubscriptionStatus
from brokerlink.domain.enums import AssetClass, Side
from brokerlink.domain.models import Account, Fill, Instrument
from brokerlink.kit.clock import ManualClock
from brokerlink.kit.errors import InvalidInput
from brokerlink.kit.ids import new_id
from brokerlink.ledger import chart
from brokerlink.ledger.fee_equity import subscription_equity
from brokerlink.ledger.fee_periods import parse_period
from brokerlink.ledger.fee_task import run_once
from brokerlink.ledger.fees import (
    FeeConfig,
    FeeTerms,
    accrue_period,
    high_water_mark,
    record_flow,
    set_schedule,
    settle_period,
    settle_subscription,
)
from brokerlink.ledger.journal import balance, trial_balance
from brokerlink.store.db import Database
from brokerlink.store.models_fees import AccrualKind, FeeKind, FlowKind, VolumeBasis
from brokerlink.store.repositories.copy_intents import CopyIntentRepository
from brokerlink.store.repositories.fees import FeeRepository
from brokerlink.store.repositories.fills import FillRepository
from brokerlink.store.repositories.instruments import InstrumentRepository
from brokerlink.store.repositories.strategies import StrategyRepository
from brokerlink.store.repositories.subscriptions import SubscriptionRepository
from tests.store.conftest import (  # noqa: F401 - fixtures: SQLite and PostgreSQL sessions
    _drop_databases_at_exit,
    database_url,
    engine,
    server_url,
    session,
    sessions,
)
from tests.store.copy_factories import intent, strategy, subscription
from tests.store.factories import make_account

D = Decimal
CONFIG = FeeConfig()  # limits 50% / 5% / 10 per lot / 100 per million, platform share 20%, monthly


def at(month: int, day: int = 1, hour: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def after_end(key: str) -> datetime:
    """Five minutes after the period ``key`` ended: when the settlement runs."""
    return parse_period("monthly", key).end + timedelta(minutes=5)


@dataclass
class World:
    provider: Account
    follower: Account
    strategy: Strategy
    subscription: Subscription
    prices: dict[str, Decimal] = field(default_factory=dict)

    def marks(self) -> Callable[[str, str, Decimal], Decimal | None]:
        return lambda _account, symbol, _qty: self.prices.get(symbol)


INSTRUMENTS = [
    Instrument(
        symbol="XYZ", venue_symbol="XYZ", asset_class=AssetClass.EQUITY, base="XYZ", quote="USD",
        tick_size=D("0.01"), qty_step=D("0.01"), min_qty=D("0.01"),
    ),
    Instrument(
        symbol="EUR/USD", venue_symbol="EURUSD", asset_class=AssetClass.FX, base="EUR", quote="USD",
        tick_size=D("0.00001"), qty_step=D("0.01"), min_qty=D("0.01"), contract_size=D(100000),
    ),
]  # fmt: skip


async def make_world(
    session: AsyncSession, terms: FeeTerms, *, terms_at: datetime, created_at: datetime, start_equity: str = "10000"
) -> World:
    """A strategy whose terms are set at ``terms_at`` (before anyone follows: in force at once), then a
    subscription created at ``created_at``."""
    provider = await make_account(session)
    follower = await make_account(session)
    await InstrumentRepository(session).upsert_many("sim", INSTRUMENTS, now=terms_at)
    stg = strategy(provider, created_at=terms_at, updated_at=terms_at)
    await StrategyRepository(session).add(stg)
    await set_schedule(session, stg, terms, config=CONFIG, now=terms_at)
    sub = subscription(stg, follower, start_equity=D(start_equity), created_at=created_at, updated_at=created_at)
    await SubscriptionRepository(session).add(sub)
    return World(provider=provider, follower=follower, strategy=stg, subscription=sub)


async def copy_fill(  # noqa: PLR0917 - reads like the fill it makes
    session: AsyncSession, world: World, symbol: str, side: Side, qty: str, price: str, *, ts: datetime
) -> None:
    """A fill of a copy order of the world's subscription."""
    cid = new_id("cp")
    await CopyIntentRepository(session).add(
        intent(world.subscription, None, client_order_id=cid, symbol=symbol, side=side, qty=D(qty))
    )
    await manual_fill(session, world, symbol, side=side, qty=qty, price=price, ts=ts, client_order_id=cid)


async def manual_fill(
    session: AsyncSession,
    world: World,
    symbol: str,
    *,
    side: Side,
    qty: str,
    price: str,
    ts: datetime,
    client_order_id: str | None = None,
) -> None:
    """A fill in the follower's account; without a copy intent's client order id it is the follower's own trade."""
    fill = Fill(
        trade_id=new_id("trd"), order_id=None, client_order_id=client_order_id or new_id("own"),
        account_id=world.follower.id, symbol=symbol, side=side, qty=D(qty), price=D(price), ts=ts,
    )  # fmt: skip
    assert await FillRepository(session).add_if_new(fill)


async def settle(session: AsyncSession, world: World, key: str) -> dict[FeeKind, Decimal]:
    lines = await settle_subscription(
        session, world.subscription, parse_period("monthly", key), config=CONFIG, now=after_end(key),
        marks=world.marks(),
    )  # fmt: skip
    return {line.kind: line.amount for line in lines}


async def hwm(session: AsyncSession, world: World) -> Decimal:
    return (await high_water_mark(session, world.subscription, now=at(1, year=2030))).high_water_mark


async def assert_books_balance(session: AsyncSession) -> None:
    assert all(total == 0 for total in (await trial_balance(session)).values())


PERFORMANCE_20 = FeeTerms(performance_pct=D(20))


async def test_high_water_mark_across_a_loss_and_a_recovery(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        world = await make_world(session, PERFORMANCE_20, terms_at=at(9), created_at=at(9, 20))
        await copy_fill(session, world, "XYZ", Side.BUY, "100", "100", ts=at(9, 21))
        # The follower's own trade in the same account: never part of the subscription's equity.
        await manual_fill(session, world, "XYZ", side=Side.BUY, qty="50", price="90", ts=at(9, 22))

        # September ends at 110: equity 10000 + 100 x (110 - 100) = 11000; 20% of 11000 - 10000 = 200.00.
        world.prices["XYZ"] = D(110)
        assert (await settle(session, world, "2026-09"))[FeeKind.PERFORMANCE] == D("200.00")
        assert await hwm(session, world) == D(11000)
        await session.commit()

    # Paused, and read back in a new session (a restart): the mark is stored, not recomputed.
    async with sessions() as session:
        await SubscriptionRepository(session).set_status(
            world.subscription.id, SubscriptionStatus.PAUSED, now=at(10, 2)
        )
        await session.commit()
    async with sessions() as session:
        assert await hwm(session, world) == D(11000)
        # October ends at 95: equity 9500 < 11000, no fee, the mark stays.
        world.prices["XYZ"] = D(95)
        assert (await settle(session, world, "2026-10"))[FeeKind.PERFORMANCE] == 0
        assert await hwm(session, world) == D(11000)
        await SubscriptionRepository(session).set_status(
            world.subscription.id, SubscriptionStatus.ACTIVE, now=at(11, 2)
        )
        # November recovers to 108: equity 10800, still below the old mark 11000: no fee.
        world.prices["XYZ"] = D(108)
        assert (await settle(session, world, "2026-11"))[FeeKind.PERFORMANCE] == 0
        assert await hwm(session, world) == D(11000)
        # December ends at 115: equity 11500; 20% of 11500 - 11000 = 100.00; the mark moves to 11500.
        world.prices["XYZ"] = D(115)
        assert (await settle(session, world, "2026-12"))[FeeKind.PERFORMANCE] == D("100.00")
        assert await hwm(session, world) == D(11500)

        # Ledger: the follower paid 200 + 100 = 300; the provider earned 80% = 240, the platform 20% = 60.
        follower, provider = world.follower.user_id, world.provider.user_id
        assert await balance(session, chart.fee_expense(follower, "performance"), "USD") == D(300)
        assert await balance(session, chart.fees_payable(follower), "USD") == D(300)
        assert await balance(session, chart.fee_income(provider, "performance"), "USD") == D(240)
        assert await balance(session, chart.fees_receivable(provider), "USD") == D(240)
        assert await balance(session, chart.platform_fee_income("performance"), "USD") == D(60)
        await assert_books_balance(session)


async def test_withdrawal_in_the_middle_and_a_deposit(session: AsyncSession) -> None:
    world = await make_world(session, PERFORMANCE_20, terms_at=at(9), created_at=at(9, 20))
    await copy_fill(session, world, "XYZ", Side.BUY, "100", "100", ts=at(9, 21))
    world.prices["XYZ"] = D(110)
    assert (await settle(session, world, "2026-09"))[FeeKind.PERFORMANCE] == D("200.00")  # mark 11000
    world.prices["XYZ"] = D(95)
    assert (await settle(session, world, "2026-10"))[FeeKind.PERFORMANCE] == 0  # equity 9500

    # 15 November at 95: equity 9500; withdrawing 1900 is 20% of it, so the mark 11000 keeps 80% = 8800.
    flow = await record_flow(
        session, world.subscription, FlowKind.WITHDRAWAL, D(1900), reference="wd-1", occurred_at=at(11, 15),
        now=at(11, 15), marks=world.marks(),
    )  # fmt: skip
    assert (flow.equity_before, flow.hwm_before, flow.hwm_after) == (D(9500), D(11000), D("8800.00"))
    # The same withdrawal reported again changes nothing.
    again = await record_flow(
        session, world.subscription, FlowKind.WITHDRAWAL, D(1900), reference="wd-1", occurred_at=at(11, 15),
        now=at(11, 16), marks=world.marks(),
    )  # fmt: skip
    assert again.id == flow.id
    assert await hwm(session, world) == D("8800.00")

    # November ends at 120: equity 10000 - 1900 + 100 x 20 = 10100; 20% of 10100 - 8800 = 260.00.
    # (Without the proportional cut the mark would be 11000 and there would be no fee.)
    world.prices["XYZ"] = D(120)
    assert (await settle(session, world, "2026-11"))[FeeKind.PERFORMANCE] == D("260.00")
    assert await hwm(session, world) == D(10100)

    # 10 December: a deposit of 2000 raises the mark to 12100 (new money is not a gain).
    flow = await record_flow(
        session, world.subscription, FlowKind.DEPOSIT, D(2000), reference="dp-1", occurred_at=at(12, 10),
        now=at(12, 10), marks=world.marks(),
    )  # fmt: skip
    assert (flow.equity_before, flow.hwm_after) == (D(10100), D(12100))
    # December ends at 125: capital 10000 - 1900 + 2000 = 10100, unrealized 100 x (125 - 100) = 2500,
    # equity 12600;
    # 20% of 12600 - 12100 = 100.00 (without the deposit's raise it would be 20% of 2500 = 500).
    world.prices["XYZ"] = D(125)
    valued = await subscription_equity(session, world.subscription, at=at(1, year=2027), marks=world.marks())
    assert valued.equity == D(12600)
    assert (await settle(session, world, "2026-12"))[FeeKind.PERFORMANCE] == D("100.00")
    assert await hwm(session, world) == D(12600)
    await assert_books_balance(session)


async def test_management_fee_accrues_daily_and_a_raise_waits_for_the_next_period(session: AsyncSession) -> None:
    world = await make_world(session, FeeTerms(management_pct=D(2)), terms_at=at(10), created_at=at(10))
    # Raised to 4% on 15 November, with a follower: it takes effect on 1 December, not at once.
    raised = await set_schedule(session, world.strategy, FeeTerms(management_pct=D(4)), config=CONFIG, now=at(11, 15))
    assert raised.effective_from == at(12)

    nov = parse_period("monthly", "2026-11")
    assert await accrue_period(session, nov, config=CONFIG, now=after_end("2026-11")) == 30
    assert await accrue_period(session, nov, config=CONFIG, now=after_end("2026-11")) == 0  # idempotent per day
    accruals = await FeeRepository(session).list_accruals(world.subscription.id, "2026-11")
    # A day: 10000 x 2% / 365 = 0.547945205... -> 0.54794520 (8 places, down).
    assert {a.amount for a in accruals} == {D("0.54794520")}

    # November: 30 x 0.54794520 = 16.4383560 -> 16.43 (down); platform 20% = 3.286 -> 3.28, provider 13.15.
    lines = await settle_subscription(
        session, world.subscription, nov, config=CONFIG, now=after_end("2026-11"), marks=world.marks()
    )
    management = next(line for line in lines if line.kind is FeeKind.MANAGEMENT)
    assert (management.amount, management.provider_amount, management.platform_amount) == (
        D("16.43"), D("13.15"), D("3.28"),
    )  # fmt: skip
    # December at 4%: a day is 10000 x 4% / 365 = 1.09589041...; 31 x 1.09589041 = 33.97260271 -> 33.97.
    assert (await settle(session, world, "2026-12"))[FeeKind.MANAGEMENT] == D("33.97")
    # October (settled late, at 2%): 31 x 0.54794520 = 16.98630120 -> 16.98.
    assert (await settle(session, world, "2026-10"))[FeeKind.MANAGEMENT] == D("16.98")

    follower, provider = world.follower.user_id, world.provider.user_id
    # 16.43 + 33.97 + 16.98 = 67.38; platform 3.28 + 6.79 (20% of 33.97 = 6.794) + 3.39 (3.396) = 13.46.
    assert await balance(session, chart.fee_expense(follower, "management"), "USD") == D("67.38")
    assert await balance(session, chart.platform_fee_income("management"), "USD") == D("13.46")
    assert await balance(session, chart.fee_income(provider, "management"), "USD") == D("53.92")
    await assert_books_balance(session)


async def test_a_stopped_subscription_accrues_only_while_it_lived(session: AsyncSession) -> None:
    world = await make_world(session, FeeTerms(management_pct=D(2)), terms_at=at(10), created_at=at(11, 10, 12))
    stopped = await SubscriptionRepository(session).set_status(
        world.subscription.id, SubscriptionStatus.STOPPED, now=at(11, 20, 9)
    )
    assert stopped is not None
    world.subscription = stopped
    # Live at the end of 10 ... 19 November (created at noon on the 10th, stopped on the 20th at 09:00): 10 days.
    # 10 x 0.54794520 = 5.4794520 -> 5.47.
    assert (await settle(session, world, "2026-11"))[FeeKind.MANAGEMENT] == D("5.47")


async def test_volume_fee_per_lot(session: AsyncSession) -> None:
    world = await make_world(session, FeeTerms(volume_fee=D(3)), terms_at=at(11), created_at=at(11))
    await copy_fill(session, world, "XYZ", Side.BUY, "2.5", "100", ts=at(11, 3))
    await copy_fill(session, world, "XYZ", Side.SELL, "1.25", "101", ts=at(11, 4))
    await manual_fill(
        session, world, "XYZ", side=Side.BUY, qty="10", price="100", ts=at(11, 5)
    )  # the follower's own: no fee
    await copy_fill(session, world, "XYZ", Side.SELL, "1", "99", ts=at(12, 1, 1))  # December's
    # 2.5 x 3 + 1.25 x 3 = 7.5 + 3.75 = 11.25
    assert (await settle(session, world, "2026-11"))[FeeKind.VOLUME] == D("11.25")
    assert (await settle(session, world, "2026-12"))[FeeKind.VOLUME] == D("3.00")
    await assert_books_balance(session)


async def test_volume_fee_per_million(session: AsyncSession) -> None:
    terms = FeeTerms(volume_fee=D(25), volume_basis=VolumeBasis.MILLION)
    world = await make_world(session, terms, terms_at=at(11), created_at=at(11))
    await copy_fill(session, world, "EUR/USD", Side.BUY, "1.5", "1.1", ts=at(11, 3))
    await copy_fill(session, world, "EUR/USD", Side.SELL, "0.7", "1.2", ts=at(11, 4))
    # 1.5 x 100000 x 1.1 = 165000 -> 0.165 x 25 = 4.125; 0.7 x 100000 x 1.2 = 84000 -> 0.084 x 25 = 2.1.
    # 4.125 + 2.1 = 6.225 -> 6.22 (down); platform 20% = 1.244 -> 1.24, provider 4.98.
    world.prices["EUR/USD"] = D("1.2")
    lines = await settle_subscription(
        session, world.subscription, parse_period("monthly", "2026-11"), config=CONFIG, now=after_end("2026-11"),
        marks=world.marks(),
    )  # fmt: skip
    volume = next(line for line in lines if line.kind is FeeKind.VOLUME)
    assert (volume.amount, volume.provider_amount, volume.platform_amount) == (D("6.22"), D("4.98"), D("1.24"))
    await assert_books_balance(session)


async def test_settling_twice_is_settling_once(session: AsyncSession) -> None:
    terms = FeeTerms(performance_pct=D(20), management_pct=D(2), volume_fee=D(3))
    world = await make_world(session, terms, terms_at=at(11), created_at=at(11))
    await copy_fill(session, world, "XYZ", Side.BUY, "10", "100", ts=at(11, 3))
    world.prices["XYZ"] = D(150)
    nov = parse_period("monthly", "2026-11")
    first = await settle_period(session, nov, config=CONFIG, now=after_end("2026-11"), marks=world.marks())
    # Performance: equity 10000 + 10 x 50 = 10500, 20% of 500 = 100.00.
    # Management at 2%: 1 and 2 November on 10000 (0.54794520 a day), 3 ... 30 November (28 days) on
    # 10500 (10500 x 0.02 / 365 = 0.575342465... -> 0.57534246): 1.09589040 + 16.10958888 = 17.20547928 -> 17.20.
    # Volume: 10 x 3 = 30.00. Total 147.20.
    assert (first.subscriptions, first.lines, first.charged) == (1, 3, {"USD": D("147.20")})
    books = await trial_balance(session)
    expense = await balance(session, chart.fee_expense(world.follower.user_id, "management"), "USD")
    assert expense == D("17.20")

    # The price moves and the settlement runs again (a second server, a retry): nothing changes.
    world.prices["XYZ"] = D(200)
    second = await settle_period(session, nov, config=CONFIG, now=after_end("2026-11") + timedelta(hours=1))
    assert (second.lines, second.charged) == (0, {})
    assert await trial_balance(session) == books
    assert await balance(session, chart.fee_expense(world.follower.user_id, "management"), "USD") == expense
    assert await hwm(session, world) == D(10500)
    lines = await FeeRepository(session).settlements_of(world.subscription.id, "2026-11")
    assert {kind: line.amount for kind, line in lines.items()} == {
        FeeKind.PERFORMANCE: D("100.00"), FeeKind.MANAGEMENT: D("17.20"), FeeKind.VOLUME: D("30.00"),
    }  # fmt: skip
    # Each charged line has its balanced entry; the idempotency key names kind, subscription and period.
    assert all(line.entry_id is not None for line in lines.values())
    await assert_books_balance(session)


async def test_an_unfinished_period_is_not_settled(session: AsyncSession) -> None:
    world = await make_world(session, PERFORMANCE_20, terms_at=at(11), created_at=at(11))
    nov = parse_period("monthly", "2026-11")
    with pytest.raises(InvalidInput) as caught:
        await settle_subscription(session, world.subscription, nov, config=CONFIG, now=at(11, 30, 23))
    assert caught.value.extra["field"] == "period"


async def test_the_server_task_accrues_and_settles_the_period_that_ended(database_url: str) -> None:
    database = Database(database_url)
    try:
        async with database.session() as db:
            world = await make_world(db, FeeTerms(management_pct=D(2)), terms_at=at(11), created_at=at(11))
            await db.commit()
        # Ten minutes into December: November has ended. 30 x 0.54794520 = 16.4383560 -> 16.43.
        clock = ManualClock(at(12) + timedelta(minutes=10))
        first = await run_once(database, clock, CONFIG)
        assert (first.settlement.period, first.settlement.lines, first.settlement.charged) == (
            "2026-11", 3, {"USD": D("16.43")},
        )  # fmt: skip
        # Two days later: 1 and 2 December accrued; November is not settled again.
        clock.advance(timedelta(days=2))
        second = await run_once(database, clock, CONFIG)
        assert (second.accrued, second.settlement.lines) == (2, 0)
        async with database.session() as db:
            accruals = await FeeRepository(db).list_accruals(world.subscription.id, "2026-12")
            assert [a.source for a in accruals] == ["2026-12-01", "2026-12-02"]
            await assert_books_balance(db)
    finally:
        await database.dispose()


async def test_two_settlers_at_once_charge_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as db:
        terms = FeeTerms(performance_pct=D(20), management_pct=D(2))
        world = await make_world(db, terms, terms_at=at(11), created_at=at(11))
        await copy_fill(db, world, "XYZ", Side.BUY, "10", "100", ts=at(11, 1, 1))
        await db.commit()
    world.prices["XYZ"] = D(150)
    nov = parse_period("monthly", "2026-11")

    async def settler() -> tuple[int, int]:
        async with sessions() as db:
            report = await settle_period(db, nov, config=CONFIG, now=after_end("2026-11"), marks=world.marks())
            await db.commit()
            return report.lines, report.skipped

    # Two servers' fee tasks (or a task and an operator) settling November at the same moment.
    results = await asyncio.gather(settler(), settler())
    assert sorted(lines for lines, _ in results) == [0, 3]
    async with sessions() as db:
        # Performance: 20% of 10 x 50 = 100.00. Management: 30 days on 10500 (the copy is filled on
        # 1 November at 01:00, before the first day ends): 30 x 0.57534246 = 17.2602738 -> 17.26.
        expense = chart.fee_expense(world.follower.user_id, "performance")
        assert await balance(db, expense, "USD") == D("100.00")
        assert await balance(db, chart.fee_expense(world.follower.user_id, "management"), "USD") == D("17.26")
        management = await FeeRepository(db).list_accruals(world.subscription.id, "2026-11", AccrualKind.MANAGEMENT)
        assert len(management) == 30
        await assert_books_balance(db)
