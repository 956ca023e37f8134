"""Fees over REST: a provider's fee schedule, a follower's fee position, both sides' invoices, and settlement.

- ``GET/PUT /v1/strategies/{id}/fees``: the strategy's provider only (anyone else: 404, as for a
  strategy that does not exist). A PUT outside the platform's limits is a 422 naming the field; a
  change takes effect at the next settlement period when the strategy has followers (the response
  shows it under ``next``), at once otherwise.
- ``GET /v1/subscriptions/{id}/fees``: the follower only: the terms in force, the high-water mark,
  the subscription's equity and what has accrued this period.
- ``GET /v1/invoices``: the caller's invoice lines, as follower (what was charged and why) and as
  provider (what is receivable, net of the platform's share), grouped per period, role and currency.
- ``POST /v1/admin/fees/settle?period=2026-11``: admins only (403 otherwise); idempotent.
- ``POST /v1/admin/fees/flows``: admins only: a broker-confirmed deposit or withdrawal of a
  subscription's capital, which moves its high-water mark (idempotent per ``reference``).

The fee schedule carries an ETag; a PUT takes an optional ``If-Match`` (412 when it changed since).
Both admin POSTs take an ``Idempotency-Key``. Invoices are paged by cursor like every list.

Amounts are Decimals serialized as strings; percentages are percent (``"20"`` is 20%).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, Router, get, post, put
from litestar.params import JSONBody, Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.api.audit import audited
from brokerlink.api.deps import AppClock, AppSettings, CurrentPrincipal, DbSession, Links
from brokerlink.api.etags import ETAG_HEADER, IfMatch, check_if_match, content_tag, lock_if_matched, with_etag
from brokerlink.api.idempotency import IdempotencyKey, idempotent
from brokerlink.api.paging import After, Limit, key_cursor, page_of
from brokerlink.api.schemas import RequestBody, ResponseBody
from brokerlink.api.scopes import first_party, needs
from brokerlink.config import Settings
from brokerlink.domain.copy import Strategy, Subscription
from brokerlink.domain.enums import Role
from brokerlink.engine.links.service import BrokerLinks
from brokerlink.kit.errors import NotFound
from brokerlink.ledger.fee_equity import Marks
from brokerlink.ledger.fee_periods import parse_period, period_of, previous_period
from brokerlink.ledger.fees import (
    FeeConfig,
    FeeTerms,
    SettlementReport,
    record_flow,
    set_schedule,
    settle_period,
    subscription_fees,
)
from brokerlink.security.principal import Principal
from brokerlink.store.models import StrategyRow
from brokerlink.store.models_fees import FeeKind, FlowKind, VolumeBasis
from brokerlink.store.repositories.fees import FeeRepository, FeeSchedule, FeeSettlement
from brokerlink.store.repositories.strategies import StrategyRepository
from brokerlink.store.repositories.subscriptions import SubscriptionRepository

StrategyId = Annotated[str, Parameter(description="Strategy id (stg_...)", max_length=40)]
SubscriptionId = Annotated[str, Parameter(description="Subscription id (sub_...)", max_length=40)]
PeriodKey = Annotated[
    str | None, Parameter(description="Settlement period: 2026-11 (monthly) or 2026-Q4 (quarterly)", max_length=16)
]


def live_marks(links: BrokerLinks) -> Marks:
    """Marks from the live quotes: the bid for a long copy, the ask for a short one (what closing would get)."""

    def marks(account_id: str, symbol: str, qty: Decimal) -> Decimal | None:
        if not links.is_live(account_id):
            return None
        quote = links.live(account_id).quote(symbol)
        if quote is None:
            return None
        return quote.bid if qty > 0 else quote.ask

    return marks


# --- bodies ---------------------------------------------------------------------------------------


class FeeScheduleRequest(RequestBody, kw_only=True):
    """A strategy's fee terms. Percentages are percent; ``volume_fee`` is per lot or per million of
    notional (``volume_basis``) in ``volume_currency`` (default: the strategy account's currency)."""

    performance_pct: Decimal = Decimal(0)
    management_pct: Decimal = Decimal(0)
    """Percent per year, accrued daily (1/365 a day)."""
    volume_fee: Decimal = Decimal(0)
    volume_basis: VolumeBasis = VolumeBasis.LOT
    volume_currency: str | None = None


class FeeScheduleResponse(ResponseBody, kw_only=True):
    """Fee terms and when they take effect."""

    effective_from: datetime
    performance_pct: Decimal
    management_pct: Decimal
    volume_fee: Decimal
    volume_basis: VolumeBasis
    volume_currency: str

    @classmethod
    def render(cls, schedule: FeeSchedule | None) -> FeeScheduleResponse | None:
        """The response for a stored schedule (None stays None)."""
        return None if schedule is None else cls.of(schedule)


class FeeLimitsResponse(ResponseBody, kw_only=True):
    """The platform's limits and share."""

    max_performance_pct: Decimal
    max_management_pct: Decimal
    max_volume_per_lot: Decimal
    max_volume_per_million: Decimal
    platform_share_pct: Decimal
    settlement_period: str


class StrategyFeesResponse(ResponseBody, kw_only=True):
    """A strategy's fees: the terms in force now, a change waiting for the next period, and the limits."""

    strategy_id: str
    current: FeeScheduleResponse | None
    next: FeeScheduleResponse | None
    limits: FeeLimitsResponse


class SubscriptionFeesResponse(ResponseBody, kw_only=True):
    """A subscription's fee position now. ``equity`` is None when it cannot be valued (``equity_detail``)."""

    subscription_id: str
    period: str
    terms: FeeScheduleResponse | None
    next_terms: FeeScheduleResponse | None
    currency: str
    high_water_mark: Decimal
    equity: Decimal | None
    equity_detail: str
    capital: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    commissions: Decimal
    management_accrued: Decimal
    volume_accrued: Decimal
    performance_estimate: Decimal


class InvoiceLine(ResponseBody, kw_only=True):
    """One fee of one subscription in a period. For the follower ``amount`` is what was charged; for the
    provider ``amount`` is what is receivable (``gross`` minus ``platform_amount``)."""

    subscription_id: str
    strategy_id: str
    kind: FeeKind
    amount: Decimal
    gross: Decimal
    platform_amount: Decimal
    rate: Decimal
    equity: Decimal | None
    hwm_before: Decimal | None
    hwm_after: Decimal | None
    entry_id: str | None
    detail: str
    settled_at: datetime


class Invoice(ResponseBody, kw_only=True):
    """The caller's lines of one period, in one role and currency, and their total."""

    period: str
    role: Literal["follower", "provider"]
    currency: str
    total: Decimal
    lines: list[InvoiceLine]


class InvoiceList(ResponseBody, kw_only=True):
    """The caller's invoices, by period, then role and currency."""

    data: list[Invoice]
    next_after: str | None


class SettlementResponse(ResponseBody, kw_only=True):
    """What a settlement run did (lines settled before are not counted again)."""

    period: str
    subscriptions: int
    lines: int
    charged: dict[str, Decimal]
    skipped: int


# --- helpers --------------------------------------------------------------------------------------


def _config(settings: Settings) -> FeeConfig:
    return FeeConfig.from_settings(settings)


async def _own_strategy(db: AsyncSession, principal: Principal, strategy_id: str) -> Strategy:
    strategy = await StrategyRepository(db).get_for_user(principal.user_id, strategy_id)
    if strategy is None or not principal.can_reach_account(strategy.account_id):
        raise NotFound("strategy not found")
    return strategy


async def _own_subscription(db: AsyncSession, principal: Principal, subscription_id: str) -> Subscription:
    subscription = await SubscriptionRepository(db).get_for_user(principal.user_id, subscription_id)
    if subscription is None or not principal.can_reach_account(subscription.account_id):
        raise NotFound("subscription not found")
    return subscription


async def _strategy_fees(
    db: AsyncSession, strategy: Strategy, config: FeeConfig, now: datetime
) -> StrategyFeesResponse:
    repo = FeeRepository(db)
    return StrategyFeesResponse(
        strategy_id=strategy.id,
        current=FeeScheduleResponse.render(await repo.schedule_at(strategy.id, now)),
        next=FeeScheduleResponse.render(await repo.schedule_after(strategy.id, now)),
        limits=FeeLimitsResponse(
            max_performance_pct=config.max_performance_pct,
            max_management_pct=config.max_management_pct,
            max_volume_per_lot=config.max_volume_per_lot,
            max_volume_per_million=config.max_volume_per_million,
            platform_share_pct=config.platform_share_pct,
            settlement_period=config.period,
        ),
    )


# --- routes ---------------------------------------------------------------------------------------


def _tagged(body: StrategyFeesResponse) -> Response[StrategyFeesResponse]:
    return with_etag(body, content_tag(body))


@get("/{strategy_id:str}/fees", summary="A strategy's fee schedule", response_headers=ETAG_HEADER, opt=first_party())
async def get_strategy_fees(
    strategy_id: StrategyId, principal: CurrentPrincipal, db: DbSession, clock: AppClock, settings: AppSettings
) -> Response[StrategyFeesResponse]:
    """The terms in force, a change waiting for the next period, and the platform's limits, with their
    ETag. Provider only."""
    strategy = await _own_strategy(db, principal, strategy_id)
    return _tagged(await _strategy_fees(db, strategy, _config(settings), clock.now()))


@put(
    "/{strategy_id:str}/fees", summary="Set a strategy's fee schedule", response_headers=ETAG_HEADER, opt=first_party()
)
async def put_strategy_fees(  # noqa: PLR0917 - injected parameters
    request: Request[Any, Any, Any],
    strategy_id: StrategyId,
    data: JSONBody[FeeScheduleRequest],
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    settings: AppSettings,
    if_match: IfMatch = None,
) -> Response[StrategyFeesResponse]:
    """Replace the terms. With followers they apply from the next settlement period (shown as ``next``),
    so nobody's terms change mid-period; without, at once. 422 naming the field outside the limits.
    With ``If-Match``, only if the schedule is still at that ETag (412 otherwise)."""
    await lock_if_matched(db, if_match, StrategyRow, strategy_id)  # the schedule's owner row
    strategy = await _own_strategy(db, principal, strategy_id)
    config = _config(settings)
    current = await _strategy_fees(db, strategy, config, clock.now())
    check_if_match(if_match, content_tag(current), what="fee schedule")
    currency = data.volume_currency or await FeeRepository(db).account_currency(strategy.account_id) or "USD"
    terms = FeeTerms(
        performance_pct=data.performance_pct,
        management_pct=data.management_pct,
        volume_fee=data.volume_fee,
        volume_basis=data.volume_basis,
        volume_currency=currency,
    )
    now = clock.now()
    schedule = await set_schedule(db, strategy, terms, config=config, now=now)
    await audited(
        request, db, action="strategy.fees", target=strategy.id, now=now,
        details={
            "effective_from": schedule.effective_from.isoformat(),
            "performance_pct": str(terms.performance_pct),
            "management_pct": str(terms.management_pct),
            "volume_fee": f"{terms.volume_fee} {terms.volume_currency} per {terms.volume_basis.value}",
        },
    )  # fmt: skip
    return _tagged(await _strategy_fees(db, strategy, config, now))


@get("/{subscription_id:str}/fees", summary="A subscription's fees", opt=needs("ledger:read"))
async def get_subscription_fees(  # noqa: PLR0917 - injected parameters
    subscription_id: SubscriptionId,
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    settings: AppSettings,
    links: Links,
) -> SubscriptionFeesResponse:
    """The terms in force this period, the high-water mark, the subscription's equity, what has accrued
    this period and the performance fee if the period ended now. Follower only."""
    subscription = await _own_subscription(db, principal, subscription_id)
    view = await subscription_fees(db, subscription, config=_config(settings), now=clock.now(), marks=live_marks(links))
    return SubscriptionFeesResponse(
        subscription_id=subscription.id,
        period=view.period.key,
        terms=FeeScheduleResponse.render(view.terms),
        next_terms=FeeScheduleResponse.render(view.next_terms),
        currency=view.currency,
        high_water_mark=view.high_water_mark,
        equity=view.equity.equity,
        equity_detail=view.equity.detail,
        capital=view.equity.capital,
        realized_pnl=view.equity.realized_pnl,
        unrealized_pnl=view.equity.unrealized_pnl,
        commissions=view.equity.commissions,
        management_accrued=view.management_accrued,
        volume_accrued=view.volume_accrued,
        performance_estimate=view.performance_estimate,
    )


def _line(line: FeeSettlement, role: Literal["follower", "provider"]) -> InvoiceLine:
    return InvoiceLine(
        subscription_id=line.subscription_id,
        strategy_id=line.strategy_id,
        kind=line.kind,
        amount=line.amount if role == "follower" else line.provider_amount,
        gross=line.amount,
        platform_amount=line.platform_amount,
        rate=line.rate,
        equity=line.equity,
        hwm_before=line.hwm_before,
        hwm_after=line.hwm_after,
        entry_id=line.entry_id,
        detail=line.detail,
        settled_at=line.settled_at,
    )


@get("/", summary="My invoices", opt=first_party())
async def list_invoices(
    principal: CurrentPrincipal, db: DbSession, period: PeriodKey = None, limit: Limit = 50, after: After = None
) -> InvoiceList:
    """Invoice lines where you are the follower (charged) or the provider (receivable), by period, role
    and currency (oldest period first)."""
    cursor = key_cursor(after)
    grouped: dict[tuple[str, str, str], list[InvoiceLine]] = defaultdict(list)
    for line in await FeeRepository(db).invoice_lines(principal.user_id, period=period):
        if line.amount == 0 and line.rate == 0:
            continue  # a fee the strategy does not charge at all: nothing to explain
        if line.follower_user_id == principal.user_id:
            grouped[(line.period, "follower", line.currency)].append(_line(line, "follower"))
        if line.provider_user_id == principal.user_id:
            grouped[(line.period, "provider", line.currency)].append(_line(line, "provider"))
    invoices = [
        Invoice(
            period=key,
            role="follower" if role == "follower" else "provider",
            currency=currency,
            total=sum((line.amount for line in lines), Decimal(0)),
            lines=lines,
        )
        for (key, role, currency), lines in sorted(grouped.items())
    ]
    page, next_after = page_of(invoices, lambda i: f"{i.period}/{i.role}/{i.currency}", limit=limit, after=cursor)
    return InvoiceList(data=page, next_after=next_after)


@idempotent
@post("/settle", summary="Settle a fee period", status_code=200)
async def settle_fees(  # noqa: PLR0917 - injected parameters
    request: Request[Any, Any, Any],
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    settings: AppSettings,
    links: Links,
    period: PeriodKey = None,
    idempotency_key: IdempotencyKey = None,  # noqa: ARG001 - claimed by @idempotent before this runs
) -> SettlementResponse:
    """Settle every subscription for a finished period (default: the previous one). Admins only;
    idempotent: lines settled before are kept as they are. 422 for a period that has not ended."""
    principal.require_role(Role.ADMIN)
    config = _config(settings)
    now = clock.now()
    target = (
        parse_period(config.period, period)
        if period is not None
        else previous_period(config.period, period_of(config.period, now))
    )
    report: SettlementReport = await settle_period(db, target, config=config, now=now, marks=live_marks(links))
    await audited(
        request, db, action="fees.settle", target=f"period:{report.period}", now=now,
        details={"subscriptions": report.subscriptions, "lines": report.lines},
    )  # fmt: skip
    return SettlementResponse(
        period=report.period,
        subscriptions=report.subscriptions,
        lines=report.lines,
        charged=report.charged,
        skipped=report.skipped,
    )


class FlowRequest(RequestBody, kw_only=True):
    """A deposit into or withdrawal from a subscription's capital, as the broker confirmed it.

    ``reference`` is the idempotency key (the broker's transfer id): the same one again changes nothing.
    ``occurred_at`` defaults to now."""

    subscription_id: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    kind: FlowKind
    amount: Decimal
    reference: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    occurred_at: datetime | None = None


class FlowResponse(ResponseBody, kw_only=True):
    """A recorded flow and what it did to the high-water mark."""

    id: str
    subscription_id: str
    kind: FlowKind
    amount: Decimal
    currency: str
    reference: str
    occurred_at: datetime
    equity_before: Decimal
    hwm_before: Decimal
    hwm_after: Decimal


@idempotent
@post("/flows", summary="Record a subscription's deposit or withdrawal", status_code=200)
async def record_subscription_flow(  # noqa: PLR0917 - injected parameters
    request: Request[Any, Any, Any],
    data: JSONBody[FlowRequest],
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    links: Links,
    idempotency_key: IdempotencyKey = None,  # noqa: ARG001 - claimed by @idempotent before this runs
) -> FlowResponse:
    """Admins only: a deposit raises the subscription's high-water mark by the amount, a withdrawal of
    x% of its equity lowers it by x%. Not the follower's to declare: a withdrawal that did not happen
    would lower the fee. 404 for an unknown subscription, 409 when its equity cannot be valued."""
    principal.require_role(Role.ADMIN)
    subscription = await SubscriptionRepository(db).get_by_id(data.subscription_id)
    if subscription is None:
        raise NotFound("subscription not found")
    now = clock.now()
    flow = await record_flow(
        db, subscription, data.kind, data.amount, reference=data.reference,
        occurred_at=data.occurred_at or now, now=now, marks=live_marks(links),
    )  # fmt: skip
    await audited(
        request, db, action=f"fees.{data.kind.value}", target=subscription.id, now=now,
        details={"amount": str(data.amount), "reference": data.reference, "hwm_after": str(flow.hwm_after)},
    )  # fmt: skip
    return FlowResponse.of(flow)


strategy_fees_router = Router(path="/strategies", route_handlers=[get_strategy_fees, put_strategy_fees], tags=["fees"])
subscription_fees_router = Router(path="/subscriptions", route_handlers=[get_subscription_fees], tags=["fees"])
invoices_router = Router(path="/invoices", route_handlers=[list_invoices], tags=["fees"])
admin_fees_router = Router(path="/admin/fees", route_handlers=[settle_fees, record_subscription_flow], tags=["fees"])

FEE_ROUTERS = [strategy_fees_router, subscription_fees_router, invoices_router, admin_fees_router]
"""Every fee router, for ``create_app`` (the ``# [fees] routes`` marker)."""
