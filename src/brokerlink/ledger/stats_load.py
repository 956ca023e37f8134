"""Statistics of strategies and subscriptions, loaded from the store and computed by :mod:`brokerlink.ledger.stats`.

A strategy is measured on its provider's account from the strategy's creation on; a subscription on
its own snapshot series (its follower account while the subscription is live) and on the follower
fills of its own copy orders. Callers check who may see what; nothing here knows about principals.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.copy import LIVE_SUBSCRIPTION_STATUSES, Strategy, Subscription
from brokerlink.domain.enums import AssetClass
from brokerlink.domain.models import Fill
from brokerlink.ledger import stats
from brokerlink.store.repositories.stats import EquitySnapshot, StatsRepository
from brokerlink.store.repositories.subscriptions import SubscriptionRepository

_ZERO = Decimal(0)


class Performance(msgspec.Struct, frozen=True, kw_only=True):
    """The statistics every series has (ADR 0022 defines each). Ratios are fractions (0.1 = 10%)."""

    since: datetime | None
    """The first sample measured; None without samples."""
    until: datetime | None
    samples: int
    currency: str | None
    time_weighted_return: Decimal | None
    max_drawdown_equity: Decimal | None
    max_drawdown_balance: Decimal | None
    sharpe: Decimal | None
    sortino: Decimal | None
    periods_per_year: int
    """Annualisation of Sharpe and Sortino: 252, or 365 for an account that trades only crypto."""
    trades: int
    """Closed round trips."""
    win_rate: Decimal | None
    profit_factor: Decimal | None
    average_holding_seconds: int | None


class StrategyStats(Performance, frozen=True, kw_only=True):
    """A strategy's statistics, on its provider's account, with its following."""

    strategy_id: str
    followers: int
    """Subscriptions not stopped (active, paused or close-only)."""
    assets_under_copy: Decimal
    """The followers' subscription equity summed, at each one's latest sample."""


class SubscriptionStats(Performance, frozen=True, kw_only=True):
    """A subscription's statistics, and how closely it tracks its strategy."""

    subscription_id: str
    strategy_id: str
    provider_time_weighted_return: Decimal | None
    """The provider's TWR over the same samples' period."""
    tracking_difference: Decimal | None
    """Follower TWR minus provider TWR over the same period (negative: the follower did worse)."""


def periods_per_year(asset_classes: Sequence[str]) -> int:
    """365 when every instrument traded is crypto (markets that never close), else 252 trading days."""
    if asset_classes and all(a == AssetClass.CRYPTO.value for a in asset_classes):
        return stats.CALENDAR_DAYS
    return stats.TRADING_DAYS


def performance(
    samples: Sequence[EquitySnapshot],
    fills: Sequence[Fill],
    contract_sizes: dict[str, Decimal],
    *,
    periods: int = stats.TRADING_DAYS,
) -> Performance:
    """Every common statistic of one series and its fills (pure)."""
    trips = stats.round_trips(fills, contract_sizes)
    twr = stats.time_weighted_return(samples)
    holding = stats.average_holding(trips)
    returns = stats.daily_returns(samples)
    return Performance(
        since=samples[0].ts if samples else None,
        until=samples[-1].ts if samples else None,
        samples=len(samples),
        currency=samples[-1].currency if samples else None,
        time_weighted_return=None if twr is None else stats.ratio(twr),
        max_drawdown_equity=stats.ratio(stats.max_drawdown(samples, "equity")) if samples else None,
        max_drawdown_balance=stats.ratio(stats.max_drawdown(samples, "cash")) if samples else None,
        sharpe=stats.sharpe(returns, periods_per_year=periods),
        sortino=stats.sortino(returns, periods_per_year=periods),
        periods_per_year=periods,
        trades=len(trips),
        win_rate=stats.win_rate(trips),
        profit_factor=stats.profit_factor(trips),
        average_holding_seconds=None if holding is None else int(holding // timedelta(seconds=1)),
    )


async def _terms(repo: StatsRepository, account_id: str, fills: Sequence[Fill]) -> tuple[dict[str, Decimal], int]:
    broker = await repo.broker_of(account_id)
    if broker is None:
        return {}, stats.TRADING_DAYS
    terms = await repo.instrument_terms(broker, {f.symbol for f in fills})
    sizes = {symbol: term[0] for symbol, term in terms.items()}
    return sizes, periods_per_year([term[2] for term in terms.values()])


async def strategy_stats(
    session: AsyncSession, strategy: Strategy, *, since: datetime | None = None, until: datetime | None = None
) -> StrategyStats:
    """A strategy's statistics from its start (or ``since``, if later) to ``until``."""
    repo = StatsRepository(session)
    start = strategy.created_at if since is None else max(since, strategy.created_at)
    samples = await repo.series(strategy.account_id, since=start, until=until)
    fills = await repo.fills_for_account(strategy.account_id, since=start, until=until)
    sizes, periods = await _terms(repo, strategy.account_id, fills)
    followers = await SubscriptionRepository(session).list_for_strategy(strategy.id, LIVE_SUBSCRIPTION_STATUSES)
    latest = await repo.latest_many(s.id for s in followers)
    common = performance(samples, fills, sizes, periods=periods)
    return StrategyStats(
        **msgspec.structs.asdict(common),
        strategy_id=strategy.id,
        followers=len(followers),
        assets_under_copy=sum((s.equity for s in latest.values()), _ZERO),
    )


async def subscription_stats(
    session: AsyncSession,
    subscription: Subscription,
    strategy: Strategy,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> SubscriptionStats:
    """A subscription's statistics over its samples (within ``since``/``until``), and its tracking difference."""
    repo = StatsRepository(session)
    samples = await repo.series(subscription.id, since=since, until=until)
    fills = [
        f
        for f in await repo.fills_for_subscription(subscription.id)
        if (since is None or f.ts >= since) and (until is None or f.ts < until)
    ]
    sizes, periods = await _terms(repo, subscription.account_id, fills)
    common = performance(samples, fills, sizes, periods=periods)
    provider_twr: Decimal | None = None
    tracking: Decimal | None = None
    if len(samples) >= 2:
        provider = await repo.series(strategy.account_id, since=samples[0].ts, until=samples[-1].ts)
        twr = stats.time_weighted_return(provider)
        provider_twr = None if twr is None else stats.ratio(twr)
        if provider_twr is not None and common.time_weighted_return is not None:
            tracking = stats.ratio(common.time_weighted_return - provider_twr)
    return SubscriptionStats(
        **msgspec.structs.asdict(common),
        subscription_id=subscription.id,
        strategy_id=strategy.id,
        provider_time_weighted_return=provider_twr,
        tracking_difference=tracking,
    )


async def curve(
    session: AsyncSession,
    series: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    interval: timedelta | None = None,
) -> list[tuple[stats.Point, Decimal]]:
    """A series' equity curve (thinned to ``interval``), each point with its flow-neutral growth index."""
    samples = await StatsRepository(session).series(series, since=since, until=until)
    points = stats.equity_curve(samples, interval)
    return list(zip(points, stats.growth_index(points), strict=True))
