"""Statistics, equity curves and statements (ADR 0022).

- ``GET /v1/strategies/{id}/stats`` and ``/equity``: your strategy, or anyone's public or unlisted
  one, exactly as ``GET /v1/strategies/{id}`` decides (someone else's private strategy is a 404).
  Others see the provider's curve only as a growth index (what one unit became, flows neutralised),
  never the provider's account amounts; the provider sees both.
- ``GET /v1/subscriptions/{id}/stats`` and ``/equity``: the follower's own subscription only (404 otherwise).
- ``GET /v1/accounts/{id}/statements?period=YYYY-MM&format=csv|pdf``: the owner's account only, as an
  attachment.

Ratios are fractions as strings (``"0.12500000"`` is 12.5%); money is a Decimal string.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Literal

from litestar import Response, Router, get
from litestar.params import Parameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.api.deps import CurrentPrincipal, DbSession
from brokerlink.api.paging import invalid_filter
from brokerlink.api.schemas import ResponseBody
from brokerlink.api.scopes import needs
from brokerlink.domain.copy import Strategy, StrategyVisibility, Subscription
from brokerlink.kit.errors import InvalidInput, NotFound
from brokerlink.ledger import stats_load
from brokerlink.ledger.statements import build_statement, to_csv, to_pdf
from brokerlink.security.principal import Principal
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.stats import StatsRepository
from brokerlink.store.repositories.strategies import StrategyRepository
from brokerlink.store.repositories.subscriptions import SubscriptionRepository

StrategyId = Annotated[str, Parameter(description="Strategy id (stg_...)", max_length=40)]
SubscriptionId = Annotated[str, Parameter(description="Subscription id (sub_...)", max_length=40)]
AccountId = Annotated[str, Parameter(description="Account id (acc_...)", max_length=40)]
Since = Annotated[datetime | None, Parameter(description="From this time (inclusive, with a time zone)")]
Until = Annotated[datetime | None, Parameter(description="Up to this time (inclusive, with a time zone)")]
Interval = Annotated[
    str | None,
    Parameter(description="Thin the curve to the last sample per bucket: 30s, 15m, 1h, 1d", max_length=12),
]
Period = Annotated[str, Parameter(description="The month, YYYY-MM (UTC)", max_length=7)]
Format = Annotated[Literal["csv", "pdf"], QueryParameter(name="format", description="csv or pdf")]

_INTERVAL = re.compile(r"([1-9]\d{0,5})([smhd])")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class StrategyStatsResponse(ResponseBody, kw_only=True):
    """A strategy's statistics (ADR 0022): returns and drawdowns on its provider's account, trades, following."""

    strategy_id: str
    since: datetime | None
    until: datetime | None
    samples: int
    currency: str | None
    time_weighted_return: Decimal | None
    max_drawdown_equity: Decimal | None
    max_drawdown_balance: Decimal | None
    sharpe: Decimal | None
    sortino: Decimal | None
    periods_per_year: int
    trades: int
    win_rate: Decimal | None
    profit_factor: Decimal | None
    average_holding_seconds: int | None
    followers: int
    assets_under_copy: Decimal


class SubscriptionStatsResponse(ResponseBody, kw_only=True):
    """A subscription's statistics and its tracking difference against the provider over the same period."""

    subscription_id: str
    strategy_id: str
    since: datetime | None
    until: datetime | None
    samples: int
    currency: str | None
    time_weighted_return: Decimal | None
    provider_time_weighted_return: Decimal | None
    tracking_difference: Decimal | None
    max_drawdown_equity: Decimal | None
    max_drawdown_balance: Decimal | None
    sharpe: Decimal | None
    sortino: Decimal | None
    periods_per_year: int
    trades: int
    win_rate: Decimal | None
    profit_factor: Decimal | None
    average_holding_seconds: int | None


class EquityPoint(ResponseBody, kw_only=True):
    """One point of a curve. ``index``: one unit at the first point grown to this one, flows neutralised.
    ``equity``, ``cash`` and ``net_flow`` are the account's amounts, shown to its owner only."""

    ts: datetime
    index: Decimal
    equity: Decimal | None = None
    cash: Decimal | None = None
    net_flow: Decimal | None = None


class EquityCurve(ResponseBody, kw_only=True):
    """A time series, oldest first."""

    currency: str | None
    points: list[EquityPoint]


def _aware(value: datetime | None, field: str) -> datetime | None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise invalid_filter(field, "needs a time zone (e.g. 2026-11-01T00:00:00Z)")
    return value


def _interval(value: str | None) -> timedelta | None:
    if value is None:
        return None
    match = _INTERVAL.fullmatch(value)
    if match is None:
        raise InvalidInput("interval must be a number and a unit: 30s, 15m, 1h, 1d", extra={"field": "interval"})
    return timedelta(**{_UNIT[match.group(2)]: int(match.group(1))})


async def _visible_strategy(db: AsyncSession, principal: Principal, strategy_id: str) -> tuple[Strategy, bool]:
    strategy = await StrategyRepository(db).get_visible(principal.user_id, strategy_id)
    if strategy is None:
        raise NotFound("strategy not found")
    mine = strategy.provider_user_id == principal.user_id and principal.can_reach_account(strategy.account_id)
    if not mine and strategy.visibility is StrategyVisibility.PRIVATE:
        raise NotFound("strategy not found")  # the provider's own, but outside the principal's grant
    return strategy, mine


async def _own_subscription(db: AsyncSession, principal: Principal, subscription_id: str) -> Subscription:
    subscription = await SubscriptionRepository(db).get_for_user(principal.user_id, subscription_id)
    if subscription is None or not principal.can_reach_account(subscription.account_id):
        raise NotFound("subscription not found")
    return subscription


async def _curve(
    db: AsyncSession,
    series: str,
    *,
    since: datetime | None,
    until: datetime | None,
    interval: str | None,
    amounts: bool,
) -> EquityCurve:
    points = await stats_load.curve(
        db, series, since=_aware(since, "since"), until=_aware(until, "until"), interval=_interval(interval)
    )
    currency = None
    if points and amounts:
        currency = (await _series_currency(db, series)) or None
    return EquityCurve(
        currency=currency,
        points=[
            EquityPoint(ts=p.ts, index=index, equity=p.equity, cash=p.cash, net_flow=p.net_flow)
            if amounts
            else EquityPoint(ts=p.ts, index=index)
            for p, index in points
        ],
    )


async def _series_currency(db: AsyncSession, series: str) -> str | None:
    latest = (await StatsRepository(db).latest_many([series])).get(series)
    return None if latest is None else latest.currency


@get("/strategies/{strategy_id:str}/stats", summary="A strategy's statistics", opt=needs("copy:read"))
async def strategy_stats(
    strategy_id: StrategyId, principal: CurrentPrincipal, db: DbSession, since: Since = None, until: Until = None
) -> StrategyStatsResponse:
    """Time-weighted return, drawdowns, Sharpe and Sortino, trades, followers and assets under copy,
    measured on the provider's account since the strategy started (or ``since``)."""
    strategy, _ = await _visible_strategy(db, principal, strategy_id)
    found = await stats_load.strategy_stats(db, strategy, since=_aware(since, "since"), until=_aware(until, "until"))
    return StrategyStatsResponse.of(found)


@get("/strategies/{strategy_id:str}/equity", summary="A strategy's equity curve", opt=needs("copy:read"))
async def strategy_equity(  # noqa: PLR0917 - injected parameters
    strategy_id: StrategyId,
    principal: CurrentPrincipal,
    db: DbSession,
    since: Since = None,
    until: Until = None,
    interval: Interval = None,
) -> EquityCurve:
    """The provider account's curve since the strategy started: a growth index for everyone, amounts
    for the provider."""
    strategy, mine = await _visible_strategy(db, principal, strategy_id)
    since = _aware(since, "since")
    start = strategy.created_at if since is None else max(since, strategy.created_at)
    return await _curve(db, strategy.account_id, since=start, until=until, interval=interval, amounts=mine)


@get("/subscriptions/{subscription_id:str}/stats", summary="A subscription's statistics", opt=needs("copy:read"))
async def subscription_stats(
    subscription_id: SubscriptionId,
    principal: CurrentPrincipal,
    db: DbSession,
    since: Since = None,
    until: Until = None,
) -> SubscriptionStatsResponse:
    """Your subscription's statistics, and its tracking difference: your time-weighted return minus the
    provider's over the same period."""
    subscription = await _own_subscription(db, principal, subscription_id)
    strategy = await StrategyRepository(db).get_by_id(subscription.strategy_id)
    if strategy is None:  # pragma: no cover - a subscription goes with its strategy
        raise NotFound("subscription not found")
    found = await stats_load.subscription_stats(
        db, subscription, strategy, since=_aware(since, "since"), until=_aware(until, "until")
    )
    return SubscriptionStatsResponse.of(found)


@get("/subscriptions/{subscription_id:str}/equity", summary="A subscription's equity curve", opt=needs("copy:read"))
async def subscription_equity(  # noqa: PLR0917 - injected parameters
    subscription_id: SubscriptionId,
    principal: CurrentPrincipal,
    db: DbSession,
    since: Since = None,
    until: Until = None,
    interval: Interval = None,
) -> EquityCurve:
    """Your subscription's curve: amounts and growth index."""
    subscription = await _own_subscription(db, principal, subscription_id)
    return await _curve(db, subscription.id, since=since, until=until, interval=interval, amounts=True)


@get(
    "/accounts/{account_id:str}/statements",
    summary="An account's monthly statement",
    media_type="application/octet-stream",
    opt=needs("ledger:read"),
)
async def account_statement(
    account_id: AccountId, principal: CurrentPrincipal, db: DbSession, period: Period, fmt: Format = "csv"
) -> Response[bytes]:
    """Opening and closing cash and equity, every cash posting, trade and fee of the month, as CSV or
    as a PDF with an equity chart; downloaded as an attachment."""
    principal.require_account(account_id)
    account = await AccountRepository(db).get_for_user(principal.user_id, account_id)
    if account is None:
        raise NotFound("account not found")
    statement = await build_statement(db, account, period)
    if fmt == "pdf":
        body, media_type = to_pdf(statement), "application/pdf"
    else:
        body, media_type = to_csv(statement).encode(), "text/csv; charset=utf-8"
    filename = f"statement-{account.id}-{statement.period}.{fmt}"
    return Response(body, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


stats_router = Router(
    path="/",
    route_handlers=[
        strategy_stats,
        strategy_equity,
        subscription_stats,
        subscription_equity,
        account_statement,
    ],
    tags=["statistics"],
)
