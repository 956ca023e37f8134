"""Each statistic against a value computed independently here, by a different and simpler method
(by hand, by brute force, or with the ``statistics`` module on floats), from hand-made series.
Then the loaders on SQLite and PostgreSQL: strategy and subscription statistics from stored samples."""

from __future__ import annotations

import math
import statistics
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from brokerlink.domain.copy import CopyIntent, IntentAction, SubscriptionStatus
from brokerlink.domain.enums import Side, TimeInForce
from brokerlink.domain.models import Fill
from brokerlink.kit.ids import new_id
from brokerlink.ledger import stats
from brokerlink.ledger.stats import Point
from brokerlink.ledger.stats_load import periods_per_year, strategy_stats, subscription_stats
from brokerlink.store.db import Database
from brokerlink.store.models_stats import SnapshotKind
from brokerlink.store.repositories.copy_intents import CopyIntentRepository
from brokerlink.store.repositories.stats import EquitySnapshot, StatsRepository
from brokerlink.store.repositories.subscriptions import SubscriptionRepository
from tests.ledger.test_stats_support import (
    BACKENDS,
    add_fills,
    fill,
    make_account,
    make_strategy,
    make_subscription,
)
from tests.store.conftest import migrated_database

T0 = datetime(2026, 11, 2, 21, 0, tzinfo=UTC)
D = Decimal


def points(
    *values: str | tuple[str, str], step: timedelta = timedelta(days=1), cash: list[str] | None = None
) -> list[Point]:
    """Samples one ``step`` apart; a value ``(equity, flow)`` carries a flow; cash defaults to equity."""
    made = []
    for i, value in enumerate(values):
        equity, flow = value if isinstance(value, tuple) else (value, "0")
        made.append(Point(ts=T0 + i * step, cash=D(cash[i] if cash else equity), equity=D(equity), net_flow=D(flow)))
    return made


# --- time-weighted return --------------------------------------------------------------------------


def test_twr_neutralises_a_deposit_in_the_middle() -> None:
    # By hand: 1000 -> 1100 is +10%; then 900 is deposited and the account shows 2000, which is no
    # gain at all (1100 + 900); 2000 -> 2200 is +10% again. Chained: 1.1 x 1.0 x 1.1 - 1 = 0.21.
    # (The naive end over start, 2200 / 1000 - 1 = 1.2, would count the deposit as profit.)
    samples = points("1000", "1100", ("2000", "900"), "2200")
    assert stats.time_weighted_return(samples) == D("0.21")


def test_twr_neutralises_a_withdrawal() -> None:
    # 1000 -> 1200 is +20%; 700 withdrawn leaves 500, no loss; 500 -> 450 is -10%: 1.2 x 0.9 - 1 = 0.08.
    samples = points("1000", "1200", ("500", "-700"), "450")
    assert stats.time_weighted_return(samples) == D("0.08")


def test_twr_needs_two_samples() -> None:
    assert stats.time_weighted_return(points("1000")) is None
    assert stats.time_weighted_return([]) is None


# --- drawdown --------------------------------------------------------------------------------------


def brute_force_drawdown(values: list[Decimal]) -> Decimal:
    """Every (earlier, later) pair: the largest fall from an earlier value, as a fraction of it."""
    worst = Fraction(0)
    for i, high in enumerate(values):
        for low in values[i + 1 :]:
            if high > 0:
                worst = max(worst, (Fraction(high) - Fraction(low)) / Fraction(high))
    return D(worst.numerator) / D(worst.denominator)


def test_max_drawdown_of_a_known_curve_on_equity_and_on_cash() -> None:
    equity = ["100", "120", "90", "130", "104"]
    cash = ["100", "100", "80", "80", "100"]
    samples = points(*equity, cash=cash)
    # By hand: 120 -> 90 is 25% (130 -> 104 only 20%); cash 100 -> 80 is 20%.
    assert stats.max_drawdown(samples, "equity") == D("0.25")
    assert stats.max_drawdown(samples, "cash") == D("0.2")
    assert stats.max_drawdown(samples, "equity") == brute_force_drawdown([D(v) for v in equity])


def test_a_withdrawal_is_not_a_drawdown() -> None:
    # 100 -> 110, then 55 withdrawn: 55 left is no loss. Then 55 -> 44 is a real 20% fall.
    samples = points("100", "110", ("55", "-55"), "44")
    assert stats.max_drawdown(samples) == D("0.2")
    # The raw curve would claim 60% (110 -> 44).
    assert brute_force_drawdown([s.equity for s in samples]) == D("0.6")


def test_a_curve_that_never_falls_has_no_drawdown() -> None:
    assert stats.max_drawdown(points("100", "101", "150")) == 0


# --- Sharpe and Sortino ----------------------------------------------------------------------------

DAILY = ["10000", "10100", "10050", "10200", "10080", "10300", "10250", "10400", "10310", "10500"]


def float_returns(values: list[str], flows: dict[int, str] | None = None) -> list[float]:
    flows = flows or {}
    return [(float(values[i]) - float(flows.get(i, "0"))) / float(values[i - 1]) - 1 for i in range(1, len(values))]


def float_sharpe(returns: list[float], periods: int) -> float:
    return statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(periods)


def float_sortino(returns: list[float], periods: int) -> float:
    downside = math.sqrt(sum(min(0.0, r) ** 2 for r in returns) / len(returns))
    return statistics.mean(returns) / downside * math.sqrt(periods)


def test_sharpe_and_sortino_of_daily_returns_match_an_independent_float_computation() -> None:
    samples = points(*DAILY)
    returns = stats.daily_returns(samples)
    expected = float_returns(DAILY)
    assert [float(r) for r in returns] == pytest.approx(expected, rel=1e-12)
    sharpe = stats.sharpe(returns)
    sortino = stats.sortino(returns)
    assert sharpe is not None
    assert sortino is not None
    assert float(sharpe) == pytest.approx(float_sharpe(expected, 252), abs=1e-7)
    assert float(sortino) == pytest.approx(float_sortino(expected, 252), abs=1e-7)
    crypto = stats.sharpe(returns, periods_per_year=365)
    assert crypto is not None
    assert float(crypto) == pytest.approx(float_sharpe(expected, 365), abs=1e-7)


def test_daily_returns_use_each_days_last_sample_and_neutralise_flows() -> None:
    # Day closes 1000, 1050, 2100 (after a deposit of 1000), 2000. Intraday samples in between are noise.
    day = timedelta(days=1)
    samples = [
        Point(ts=T0, cash=D(1000), equity=D(1000), net_flow=D(500)),  # before the base: ignored
        Point(ts=T0 + day - timedelta(hours=20), cash=D(0), equity=D(700)),  # intraday, same UTC day as ...
        Point(ts=T0 + day, cash=D(0), equity=D(1050)),  # ... this close
        Point(ts=T0 + 2 * day - timedelta(hours=1), cash=D(0), equity=D(1500), net_flow=D(1000)),
        Point(ts=T0 + 2 * day, cash=D(0), equity=D(2100)),
        Point(ts=T0 + 3 * day, cash=D(0), equity=D(2000)),
    ]
    returns = [float(r) for r in stats.daily_returns(samples)]
    assert returns == pytest.approx(float_returns(["1000", "1050", "2100", "2000"], {2: "1000"}), rel=1e-12)


def test_sharpe_and_sortino_are_undefined_without_variation_or_downside() -> None:
    assert stats.sharpe([D("0.01"), D("0.01"), D("0.01")]) is None
    assert stats.sortino([D("0.01"), D("0.02")]) is None
    assert stats.sharpe([D("0.01")]) is None


def test_crypto_only_accounts_annualise_over_365_days() -> None:
    assert periods_per_year(["crypto"]) == 365
    assert periods_per_year(["crypto", "fx"]) == 252
    assert periods_per_year([]) == 252


# --- trades ----------------------------------------------------------------------------------------


def trade(side: Side, qty: str, price: str, minutes: int, fee: str = "0") -> Fill:
    return Fill(
        trade_id=f"t{minutes}", order_id=None, client_order_id=None, account_id="acc_x", symbol="EUR/USD",
        side=side, qty=D(qty), price=D(price), fee=D(fee), ts=T0 + timedelta(minutes=minutes),
    )  # fmt: skip


def test_round_trips_win_rate_profit_factor_and_holding_time_by_hand() -> None:
    fills = [
        trade(Side.BUY, "1", "1.10", 0, fee="0.1"),
        trade(Side.BUY, "1", "1.20", 10),  # average 1.15
        trade(Side.SELL, "2", "1.25", 30, fee="0.1"),  # flat: 2 x 0.10 x 100 - 0.2 = 19.8
        trade(Side.SELL, "1", "1.30", 40),  # short 1
        trade(Side.BUY, "3", "1.40", 100, fee="0.3"),  # closes the short: -0.10 x 100 - 0.1 = -10.1; long 2
        trade(Side.SELL, "2", "1.35", 160),  # flat: -0.05 x 2 x 100 - 0.2 = -10.2
        trade(Side.BUY, "1", "1.00", 200),  # still open: not a trade
    ]
    trips = stats.round_trips(fills, {"EUR/USD": D(100)})
    assert [t.pnl for t in trips] == [D("19.8"), D("-10.1"), D("-10.2")]
    assert [t.side for t in trips] == [Side.BUY, Side.SELL, Side.BUY]
    assert stats.win_rate(trips) == D("0.33333333")  # 1 of 3
    pf = Fraction(198, 10) / Fraction(203, 10)
    assert stats.profit_factor(trips) == (D(pf.numerator) / D(pf.denominator)).quantize(D("0.00000001"))
    # Held 30, 60 and 60 minutes: 50 on average.
    assert stats.average_holding(trips) == timedelta(minutes=50)


def test_no_trades_no_ratios() -> None:
    assert stats.win_rate([]) is None
    assert stats.profit_factor([]) is None
    assert stats.average_holding([]) is None
    winners = stats.round_trips([trade(Side.BUY, "1", "1", 0), trade(Side.SELL, "1", "2", 1)])
    assert stats.profit_factor(winners) is None  # no loss: undefined, not infinite
    assert stats.win_rate(winners) == 1


# --- curves ----------------------------------------------------------------------------------------


def test_equity_curve_keeps_the_last_sample_of_each_interval_with_the_flows_it_replaced() -> None:
    samples = points("100", ("150", "50"), "160", "170", ("100", "-80"), step=timedelta(minutes=25))
    # Buckets of an hour from the epoch: 21:00 and 21:25, 21:50 -> [21:00, 22:00); 22:15, 22:40 -> [22:00, 23:00).
    curve = stats.equity_curve(samples, timedelta(hours=1))
    assert [(p.ts, p.equity, p.net_flow) for p in curve] == [
        (T0 + timedelta(minutes=50), D(160), D(50)),
        (T0 + timedelta(minutes=100), D(100), D(-80)),
    ]
    # The thinned curve keeps the flows, so its growth index still neutralises the withdrawal.
    index = stats.growth_index(curve)
    assert index[-1] == (D(100) + D(80)) / D(160)


# --- loaders, on both databases --------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with migrated_database(request, tmp_path) as database:
        yield database


def snapshot(  # noqa: PLR0917 - a table row
    series: str,
    kind: SnapshotKind,
    account_id: str,
    i: int,
    equity: str,
    flow: str = "0",
    *,
    subscription_id: str | None = None,
) -> EquitySnapshot:
    return EquitySnapshot(
        series=series, kind=kind, account_id=account_id, subscription_id=subscription_id, currency="USD",
        cash=D(equity), equity=D(equity), net_flow=D(flow), ts=T0 + timedelta(days=i),
    )  # fmt: skip


async def test_strategy_and_subscription_statistics_from_stored_samples(db: Database) -> None:
    provider = await make_account(db, "provider@example.com", now=T0)
    alice = await make_account(db, "alice@example.com", now=T0)
    carol = await make_account(db, "carol@example.com", now=T0)
    strategy = await make_strategy(db, provider, now=T0)
    live = await make_subscription(db, strategy, alice, now=T0)
    stopped = await make_subscription(db, strategy, carol, now=T0)
    async with db.session() as session:
        await SubscriptionRepository(session).set_status(stopped.id, SubscriptionStatus.STOPPED, now=T0)
        repo = StatsRepository(session)
        acc, sub = SnapshotKind.ACCOUNT, SnapshotKind.SUBSCRIPTION
        # Provider: 1000 -> 1100 (+10%) -> 2000 with a 900 deposit (0%) -> 2200 (+10%): TWR 0.21.
        await repo.add_many([
            snapshot(provider.id, acc, provider.id, 0, "1000"),
            snapshot(provider.id, acc, provider.id, 1, "1100"),
            snapshot(provider.id, acc, provider.id, 2, "2000", "900"),
            snapshot(provider.id, acc, provider.id, 3, "2200"),
        ])  # fmt: skip
        # Alice from day 1: 500 -> 520 -> 546: +4% then +5%: TWR 0.092; the provider over days 1-3: 1.0 x 1.1 - 1 = 0.1.
        await repo.add_many([
            snapshot(live.id, sub, alice.id, 1, "500", subscription_id=live.id),
            snapshot(live.id, sub, alice.id, 2, "520", subscription_id=live.id),
            snapshot(live.id, sub, alice.id, 3, "546", subscription_id=live.id),
            snapshot(stopped.id, sub, carol.id, 3, "9999", subscription_id=stopped.id),
        ])  # fmt: skip
        await session.commit()
    await add_fills(db, [
        fill(provider, Side.BUY, "1", "1.10", T0 + timedelta(hours=1)),
        # A loss of 0.10 (contract size 1: no instrument stored).
        fill(provider, Side.SELL, "1", "1.00", T0 + timedelta(hours=3)),
        fill(provider, Side.BUY, "2", "1.00", T0 + timedelta(hours=4)),
        fill(provider, Side.SELL, "2", "1.20", T0 + timedelta(hours=5)),  # a gain of 0.40
    ])  # fmt: skip

    async with db.session() as session:
        found = await strategy_stats(session, strategy)
    assert found.time_weighted_return == D("0.21")
    assert found.samples == 4
    assert found.currency == "USD"
    assert found.max_drawdown_equity == 0
    assert found.trades == 2
    assert found.win_rate == D("0.5")
    assert found.profit_factor == D("4")  # 0.40 / 0.10
    assert found.average_holding_seconds == 3600 * 3 // 2  # 2 h and 1 h
    assert found.followers == 1  # the stopped subscription does not count
    assert found.assets_under_copy == D("546")  # Alice's latest subscription equity
    returns = float_returns(["1000", "1100", "2000", "2200"], {2: "900"})
    assert found.sharpe is not None
    assert float(found.sharpe) == pytest.approx(float_sharpe(returns, 252), abs=1e-7)

    # Alice's copies (their intents' client order ids on the fills) count as the subscription's trades;
    # her own trade in the same account does not.
    async with db.session() as session:
        for n in (1, 2):
            await CopyIntentRepository(session).add(
                CopyIntent(
                    id=new_id("cpi"), subscription_id=live.id, signal_id=None, action=IntentAction.OPEN,
                    follower_account_id=alice.id, client_order_id=f"copy-{n}", symbol="EUR/USD", side=Side.BUY,
                    qty=D(1), tif=TimeInForce.IOC, created_at=T0, updated_at=T0,
                )
            )  # fmt: skip
        await session.commit()
    await add_fills(db, [
        fill(alice, Side.BUY, "1", "1.00", T0 + timedelta(hours=1), client_order_id="copy-1"),
        fill(alice, Side.SELL, "1", "1.05", T0 + timedelta(hours=2), client_order_id="copy-2"),
        fill(alice, Side.BUY, "1", "1.05", T0 + timedelta(hours=3)),
        fill(alice, Side.SELL, "1", "1.00", T0 + timedelta(hours=4)),  # her own losing trade
    ])  # fmt: skip
    async with db.session() as session:
        mine = await subscription_stats(session, live, strategy)
    assert mine.time_weighted_return == D("0.092")
    assert mine.provider_time_weighted_return == D("0.1")
    assert mine.tracking_difference == D("-0.008")
    assert (mine.trades, mine.win_rate, mine.average_holding_seconds) == (1, D(1), 3600)
