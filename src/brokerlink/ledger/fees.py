"""Strategy fees: schedules within platform limits, high-water marks, accruals, settlement through the
ledger, and the invoice lines of both sides (issue 9 item 3; ADR 0021).

- **Schedule.** A provider sets a strategy's performance fee (percent of gains above the high-water
  mark), management fee (percent per year, accrued daily) and volume fee (per lot or per million of
  notional, in a currency), each within the platform's limits. A change made while anyone follows
  the strategy takes effect at the start of the next settlement period, so nobody's terms change
  in the middle of a period; with no followers it takes effect at once. The terms of a subscription
  in a period are those in force at the later of the period's start and the subscription's creation.
- **High-water mark** (per subscription, persisted in ``fee_states``): starts at the subscription's
  start equity; a deposit raises it by the amount, a withdrawal of x% of the equity lowers it by
  x%; a settlement that charged a gain moves it up to the equity at settlement, never down.
- **Accruals**: a management fee line per subscription and day, a volume fee line per subscription
  and copy fill; both idempotent (unique keys), so running them again changes nothing.
- **Settlement** of a finished period: per subscription, one invoice line and (when not zero) one
  balanced ledger entry per fee kind, keyed ``fee:<kind>:<subscription>:<period>``; settling twice
  is settling once.

Services take the caller's session and flush; the request, the CLI or the server task commits.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import msgspec
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.config import Settings
from brokerlink.domain.copy import Strategy, Subscription
from brokerlink.kit.errors import Conflict, InvalidInput
from brokerlink.kit.ids import new_id
from brokerlink.ledger import chart
from brokerlink.ledger.fee_equity import Marks, SubscriptionEquity, subscription_equity
from brokerlink.ledger.fee_math import (
    deposit_hwm,
    hwm_after_settlement,
    management_day,
    notional,
    performance_fee,
    round_fee,
    scale_hwm,
    split,
    volume_per_lot,
    volume_per_million,
)
from brokerlink.ledger.fee_periods import Period, PeriodKind, next_period_start, period_of
from brokerlink.ledger.journal import Entry, Leg, post
from brokerlink.logs import get_logger
from brokerlink.store.models_fees import AccrualKind, FeeKind, FlowKind, VolumeBasis
from brokerlink.store.repositories.fees import (
    FeeAccrual,
    FeeFlow,
    FeeRepository,
    FeeSchedule,
    FeeSettlement,
    FeeState,
)

_log = get_logger("brokerlink.ledger.fees")
_ZERO = Decimal(0)
PLATFORM = "platform"
"""The segment naming the platform's receivable (``assets:fees-receivable:platform``); user ids are ``usr_...``."""
ENTRY_KIND = "fee"


class FeeConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The platform's fee limits, its share and the settlement period (from the ``fee_*`` settings)."""

    max_performance_pct: Decimal = Decimal(50)
    max_management_pct: Decimal = Decimal(5)
    max_volume_per_lot: Decimal = Decimal(10)
    max_volume_per_million: Decimal = Decimal(100)
    platform_share_pct: Decimal = Decimal(20)
    period: PeriodKind = "monthly"

    @classmethod
    def from_settings(cls, settings: Settings) -> FeeConfig:
        """Read the ``fee_*`` fields of :class:`~brokerlink.config.Settings`."""
        return cls(
            max_performance_pct=Decimal(settings.fee_max_performance_pct),
            max_management_pct=Decimal(settings.fee_max_management_pct),
            max_volume_per_lot=Decimal(settings.fee_max_volume_per_lot),
            max_volume_per_million=Decimal(settings.fee_max_volume_per_million),
            platform_share_pct=Decimal(settings.fee_platform_share_pct),
            period=settings.fee_settlement_period,
        )


class FeeTerms(msgspec.Struct, frozen=True, kw_only=True):
    """What a provider asks: percentages in percent, the volume fee per ``volume_basis`` in ``volume_currency``."""

    performance_pct: Decimal = _ZERO
    management_pct: Decimal = _ZERO
    volume_fee: Decimal = _ZERO
    volume_basis: VolumeBasis = VolumeBasis.LOT
    volume_currency: str = "USD"


NO_FEES = FeeTerms()


def _invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", extra={"field": field})


def check_terms(terms: FeeTerms, config: FeeConfig) -> None:
    """Refuse terms outside the platform's limits (422 naming the field)."""
    bounds = {
        "performance_pct": (terms.performance_pct, config.max_performance_pct),
        "management_pct": (terms.management_pct, config.max_management_pct),
        "volume_fee": (
            terms.volume_fee,
            config.max_volume_per_lot if terms.volume_basis is VolumeBasis.LOT else config.max_volume_per_million,
        ),
    }
    for field, (value, limit) in bounds.items():
        if not value.is_finite() or value < 0:
            raise _invalid(field, "must be zero or more")
        if value > limit:
            raise _invalid(field, f"{value} is above the platform's limit of {limit}")
    currency = terms.volume_currency
    if not (3 <= len(currency) <= 10 and currency.isalnum() and currency.isupper()):
        raise _invalid("volume_currency", f"not a currency code: {currency!r}")


# --- schedules ------------------------------------------------------------------------------------


async def set_schedule(
    session: AsyncSession, strategy: Strategy, terms: FeeTerms, *, config: FeeConfig, now: datetime
) -> FeeSchedule:
    """Set a strategy's fee terms: from the next period when it has followers, at once otherwise."""
    check_terms(terms, config)
    repo = FeeRepository(session)
    followed = await repo.has_live_subscriptions(strategy.id)
    effective = next_period_start(config.period, now) if followed else now
    schedule = FeeSchedule(
        id=new_id("fsc"),
        strategy_id=strategy.id,
        effective_from=effective,
        performance_pct=terms.performance_pct,
        management_pct=terms.management_pct,
        volume_fee=terms.volume_fee,
        volume_basis=terms.volume_basis,
        volume_currency=terms.volume_currency,
        created_at=now,
    )
    await repo.put_schedule(schedule)
    _log.info("fee schedule set", strategy_id=strategy.id, effective_from=effective.isoformat(), followed=followed)
    return schedule


async def terms_for(session: AsyncSession, subscription: Subscription, period: Period) -> FeeSchedule | None:
    """The subscription's terms in ``period``: those in force at the later of its start and the subscription's."""
    at = max(period.start, subscription.created_at)
    return await FeeRepository(session).schedule_at(subscription.strategy_id, at)


def _terms(schedule: FeeSchedule | None) -> FeeTerms:
    if schedule is None:
        return NO_FEES
    return FeeTerms(
        performance_pct=schedule.performance_pct,
        management_pct=schedule.management_pct,
        volume_fee=schedule.volume_fee,
        volume_basis=schedule.volume_basis,
        volume_currency=schedule.volume_currency,
    )


# --- high-water mark and capital flows ------------------------------------------------------------


async def high_water_mark(session: AsyncSession, subscription: Subscription, *, now: datetime) -> FeeState:
    """The subscription's stored mark, created at its start equity the first time it is needed."""
    repo = FeeRepository(session)
    state = await repo.get_state(subscription.id)
    if state is not None:
        return state
    currency = await repo.account_currency(subscription.account_id) or "USD"
    start = subscription.start_equity if subscription.start_equity is not None else _ZERO
    state = FeeState(
        subscription_id=subscription.id,
        currency=currency,
        high_water_mark=start,
        last_settled_period=None,
        updated_at=now,
    )
    await repo.save_state(state)
    return state


async def record_flow(
    session: AsyncSession,
    subscription: Subscription,
    kind: FlowKind,
    amount: Decimal,
    *,
    reference: str,
    occurred_at: datetime,
    now: datetime,
    marks: Marks | None = None,
) -> FeeFlow:
    """Record a deposit into or withdrawal from the subscription's capital, and move its mark.

    Idempotent per ``reference``: the same reference again returns the flow recorded the first time
    and moves nothing. A withdrawal needs a known equity (its share of the equity scales the mark).
    """
    if not amount.is_finite() or amount <= 0:
        raise _invalid("amount", "must be more than zero")
    repo = FeeRepository(session)
    existing = await repo.get_flow(subscription.id, reference)
    if existing is not None:
        return existing
    state = await high_water_mark(session, subscription, now=now)
    valued = await subscription_equity(session, subscription, at=occurred_at, marks=marks)
    if valued.equity is None:
        raise Conflict(f"the subscription's equity cannot be valued: {valued.detail}")
    if kind is FlowKind.DEPOSIT:
        after = deposit_hwm(state.high_water_mark, amount)
    else:
        after = scale_hwm(state.high_water_mark, valued.equity, amount, state.currency)
    flow = FeeFlow(
        id=new_id("ffl"),
        subscription_id=subscription.id,
        kind=kind,
        amount=amount,
        currency=state.currency,
        reference=reference,
        occurred_at=occurred_at,
        equity_before=valued.equity,
        hwm_before=state.high_water_mark,
        hwm_after=after,
        created_at=now,
    )
    await repo.add_flow(flow)
    await repo.save_state(msgspec.structs.replace(state, high_water_mark=after, updated_at=now))
    return flow


# --- accruals -------------------------------------------------------------------------------------


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


def _live_at(subscription: Subscription, when: datetime) -> bool:
    return subscription.created_at <= when and (subscription.stopped_at is None or subscription.stopped_at >= when)


async def accrue_management(
    session: AsyncSession,
    subscription: Subscription,
    day: date,
    *,
    config: FeeConfig,
    now: datetime,
    marks: Marks | None = None,
) -> FeeAccrual | None:
    """Accrue one day of management fee on the subscription's equity at the end of ``day`` (UTC).

    Nothing for a day that has not ended, or at whose end the subscription did not exist or was
    stopped; a paused subscription still accrues (its copies are still held). Idempotent per day.
    """
    start, end = _day_bounds(day)
    if end > now or not _live_at(subscription, end):
        return None
    repo = FeeRepository(session)
    source = day.isoformat()
    if source in await repo.accrued_sources(subscription.id, AccrualKind.MANAGEMENT):
        return None
    period = period_of(config.period, start)
    terms = _terms(await terms_for(session, subscription, period))
    valued = await subscription_equity(session, subscription, at=end, marks=marks)
    if valued.equity is None:
        amount, basis, detail = _ZERO, _ZERO, f"not charged: {valued.detail}"
    else:
        amount, basis = management_day(valued.equity, terms.management_pct), valued.equity
        detail = f"{terms.management_pct}% a year / 365 on equity {valued.equity}"
    accrual = FeeAccrual(
        id=new_id("fac"),
        subscription_id=subscription.id,
        kind=AccrualKind.MANAGEMENT,
        source=source,
        period=period.key,
        amount=amount,
        currency=valued.currency,
        basis=basis,
        rate=terms.management_pct,
        detail=detail,
        accrued_for=start,
        created_at=now,
    )
    await repo.add_accruals([accrual])
    return accrual


async def accrue_volume(
    session: AsyncSession, subscription: Subscription, period: Period, *, now: datetime
) -> list[FeeAccrual]:
    """Accrue the volume fee of every copy fill of the subscription in ``period`` not accrued yet."""
    repo = FeeRepository(session)
    done = await repo.accrued_sources(subscription.id, AccrualKind.VOLUME)
    fills = [
        c for c in await repo.copy_fills(subscription.id, since=period.start, until=period.end) if c.fill_id not in done
    ]
    if not fills:
        return []
    terms = _terms(await terms_for(session, subscription, period))
    instruments = await repo.instruments_of_account(subscription.account_id)
    accruals = []
    for copy in fills:
        fill = copy.fill
        if terms.volume_basis is VolumeBasis.LOT:
            basis, amount = fill.qty, volume_per_lot(fill.qty, terms.volume_fee)
            detail = f"{fill.qty} lots of {fill.symbol} x {terms.volume_fee} {terms.volume_currency}"
        else:
            instrument = instruments.get(fill.symbol)
            if instrument is None or instrument.quote != terms.volume_currency:
                quoted = "an unknown currency" if instrument is None else instrument.quote
                basis, amount = _ZERO, _ZERO
                detail = f"not charged: {fill.symbol} notional is in {quoted}, the fee in {terms.volume_currency}"
            else:
                basis = notional(fill.qty, fill.price, instrument.contract_size)
                amount = volume_per_million(basis, terms.volume_fee)
                detail = f"{basis} {instrument.quote} notional of {fill.symbol} x {terms.volume_fee} per million"
        accruals.append(
            FeeAccrual(
                id=new_id("fac"),
                subscription_id=subscription.id,
                kind=AccrualKind.VOLUME,
                source=copy.fill_id,
                period=period.key,
                amount=amount,
                currency=terms.volume_currency,
                basis=basis,
                rate=terms.volume_fee,
                detail=detail,
                accrued_for=fill.ts,
                created_at=now,
            )
        )
    await repo.add_accruals(accruals)
    return accruals


async def catch_up_management(
    session: AsyncSession,
    subscription: Subscription,
    period: Period,
    *,
    config: FeeConfig,
    now: datetime,
    marks: Marks | None = None,
) -> int:
    """Accrue every ended day of ``period`` the subscription has not accrued; returns how many were added."""
    done = await FeeRepository(session).accrued_sources(subscription.id, AccrualKind.MANAGEMENT)
    added = 0
    for day in period.days():
        if day.isoformat() in done:
            continue
        if await accrue_management(session, subscription, day, config=config, now=now, marks=marks) is not None:
            added += 1
    return added


# --- settlement -----------------------------------------------------------------------------------


def _legs(
    kind: FeeKind, currency: str, amount: Decimal, *, follower: str, provider: str, share: Decimal
) -> tuple[Leg, ...]:
    """Follower: Dr fee expense / Cr fees payable (the whole fee). Provider: Dr fees receivable / Cr fee
    income (its share). Platform: Dr its receivable / Cr platform fee income (its share). Each party's
    pair balances by itself, so the entry balances and every party's statement does too."""
    provider_amount, platform_amount = split(amount, share, currency)
    legs = [
        Leg(account=chart.fee_expense(follower, kind), currency=currency, debit=amount, owner_id=follower),
        Leg(account=chart.fees_payable(follower), currency=currency, credit=amount, owner_id=follower),
    ]
    if provider_amount > 0:
        legs += [
            Leg(account=chart.fees_receivable(provider), currency=currency, debit=provider_amount, owner_id=provider),
            Leg(account=chart.fee_income(provider, kind), currency=currency, credit=provider_amount, owner_id=provider),
        ]
    if platform_amount > 0:
        legs += [
            Leg(account=chart.fees_receivable(PLATFORM), currency=currency, debit=platform_amount),
            Leg(account=chart.platform_fee_income(kind), currency=currency, credit=platform_amount),
        ]
    return tuple(legs)


def idempotency_key(kind: FeeKind, subscription_id: str, period: str) -> str:
    """The ledger key of a settled fee: ``fee:<kind>:<subscription>:<period>``."""
    return f"fee:{kind.value}:{subscription_id}:{period}"


class _Line(msgspec.Struct, frozen=True, kw_only=True):
    kind: FeeKind
    currency: str
    amount: Decimal
    rate: Decimal
    detail: str
    equity: Decimal | None = None
    hwm_before: Decimal | None = None
    hwm_after: Decimal | None = None


async def _performance_line(
    session: AsyncSession,
    subscription: Subscription,
    period: Period,
    terms: FeeTerms,
    *,
    now: datetime,
    marks: Marks | None,
) -> tuple[_Line, FeeState | None]:
    """The performance line and the mark to store after it (None: leave the mark alone)."""
    state = await high_water_mark(session, subscription, now=now)
    before = state.high_water_mark
    if state.last_settled_period is not None and state.last_settled_period > period.key:
        detail = f"not charged: {state.last_settled_period} was settled already, the mark has moved past {period.key}"
        return _Line(kind=FeeKind.PERFORMANCE, currency=state.currency, amount=_ZERO, rate=terms.performance_pct,
                     detail=detail, hwm_before=before, hwm_after=before), None  # fmt: skip
    valued: SubscriptionEquity = await subscription_equity(session, subscription, at=period.end, marks=marks)
    if valued.equity is None:
        line = _Line(kind=FeeKind.PERFORMANCE, currency=state.currency, amount=_ZERO, rate=terms.performance_pct,
                     detail=f"not charged: {valued.detail}", hwm_before=before, hwm_after=before)  # fmt: skip
        return line, msgspec.structs.replace(state, last_settled_period=period.key, updated_at=now)
    equity = valued.equity
    amount = round_fee(performance_fee(equity, before, terms.performance_pct), state.currency)
    after = hwm_after_settlement(equity, before)
    if equity > before:
        detail = f"{terms.performance_pct}% of the gain {equity - before} above the high-water mark {before}"
    else:
        detail = f"no gain: equity {equity} is not above the high-water mark {before}"
    line = _Line(kind=FeeKind.PERFORMANCE, currency=state.currency, amount=amount, rate=terms.performance_pct,
                 detail=detail, equity=equity, hwm_before=before, hwm_after=after)  # fmt: skip
    return line, msgspec.structs.replace(state, high_water_mark=after, last_settled_period=period.key, updated_at=now)


def _accrued_line(kind: FeeKind, accruals: list[FeeAccrual], currency: str, rate: Decimal) -> _Line:
    lines = [a for a in accruals if a.currency == currency]
    total = sum((a.amount for a in lines), _ZERO)
    amount = round_fee(total, currency)
    unit = "days" if kind is FeeKind.MANAGEMENT else "fills"
    return _Line(
        kind=kind, currency=currency, amount=amount, rate=rate,
        detail=f"{len(lines)} {unit} accrued {total} {currency}, charged {amount} (rounded down)",
    )  # fmt: skip


async def settle_subscription(
    session: AsyncSession,
    subscription: Subscription,
    period: Period,
    *,
    config: FeeConfig,
    now: datetime,
    marks: Marks | None = None,
) -> list[FeeSettlement]:
    """Settle one subscription for a finished period: its invoice lines, and a ledger entry per fee charged.

    Lines already settled are returned as they are (settling twice is settling once); missing
    accruals of the period are made first, so a settlement never forgets a day or a fill.
    """
    done, settled = await _settle(session, subscription, period, config=config, now=now, marks=marks)
    return [*done, *settled]


async def _settle(
    session: AsyncSession,
    subscription: Subscription,
    period: Period,
    *,
    config: FeeConfig,
    now: datetime,
    marks: Marks | None,
) -> tuple[list[FeeSettlement], list[FeeSettlement]]:
    """The lines settled before, and the lines this call settled."""
    if period.end > now:
        raise _invalid("period", f"{period.key} has not ended yet")
    repo = FeeRepository(session)
    done = await repo.settlements_of(subscription.id, period.key)
    if len(done) == len(FeeKind):
        return list(done.values()), []
    provider = await repo.strategy_owner(subscription.strategy_id)
    if provider is None:  # pragma: no cover - a strategy goes with its subscriptions
        return list(done.values()), []
    terms = _terms(await terms_for(session, subscription, period))
    await catch_up_management(session, subscription, period, config=config, now=now, marks=marks)
    await accrue_volume(session, subscription, period, now=now)
    accruals = await repo.list_accruals(subscription.id, period.key)
    currency = await repo.account_currency(subscription.account_id) or "USD"

    lines: list[_Line] = []
    new_state: FeeState | None = None
    if FeeKind.PERFORMANCE not in done:
        performance, new_state = await _performance_line(session, subscription, period, terms, now=now, marks=marks)
        lines.append(performance)
    if FeeKind.MANAGEMENT not in done:
        management = [a for a in accruals if a.kind is AccrualKind.MANAGEMENT]
        lines.append(_accrued_line(FeeKind.MANAGEMENT, management, currency, terms.management_pct))
    if FeeKind.VOLUME not in done:
        volume = [a for a in accruals if a.kind is AccrualKind.VOLUME]
        lines.append(_accrued_line(FeeKind.VOLUME, volume, terms.volume_currency, terms.volume_fee))

    settled = []
    share = config.platform_share_pct
    for line in lines:
        entry_id = None
        provider_amount, platform_amount = split(line.amount, share, line.currency)
        if line.amount > 0:
            entry = Entry(
                idempotency_key=idempotency_key(line.kind, subscription.id, period.key),
                correlation_id=subscription.id,
                kind=ENTRY_KIND,
                description=f"{line.kind.value} fee {period.key}: {line.detail}",
                occurred_at=period.end,
                legs=_legs(
                    line.kind,
                    line.currency,
                    line.amount,
                    follower=subscription.follower_user_id,
                    provider=provider,
                    share=share,
                ),
            )
            entry_id = await post(session, entry, now=now)
        settled.append(
            FeeSettlement(
                id=new_id("fst"),
                subscription_id=subscription.id,
                strategy_id=subscription.strategy_id,
                follower_user_id=subscription.follower_user_id,
                provider_user_id=provider,
                kind=line.kind,
                period=period.key,
                currency=line.currency,
                amount=line.amount,
                provider_amount=provider_amount,
                platform_amount=platform_amount,
                rate=line.rate,
                equity=line.equity,
                hwm_before=line.hwm_before,
                hwm_after=line.hwm_after,
                entry_id=entry_id,
                detail=line.detail,
                settled_at=now,
            )
        )
    await repo.add_settlements(settled)
    if new_state is not None:
        await repo.save_state(new_state)
    return list(done.values()), settled


class SettlementReport(msgspec.Struct, frozen=True, kw_only=True):
    """What one settlement run did."""

    period: str
    subscriptions: int
    lines: int
    charged: dict[str, Decimal]
    """Total charged per currency by the lines written in this run (lines settled before are not counted)."""
    skipped: int = 0
    """Subscriptions another settler finished first."""


async def settle_period(
    session: AsyncSession, period: Period, *, config: FeeConfig, now: datetime, marks: Marks | None = None
) -> SettlementReport:
    """Settle every subscription that existed during ``period``. Each in its own savepoint: one that a
    concurrent settler finished first is skipped, not an error. Flushes; the caller commits."""
    if period.end > now:
        raise _invalid("period", f"{period.key} has not ended yet")
    repo = FeeRepository(session)
    subscriptions = await repo.subscriptions_between(period.start, period.end)
    charged: dict[str, Decimal] = defaultdict(lambda: _ZERO)
    written = skipped = 0
    for subscription in subscriptions:
        try:
            async with session.begin_nested():
                _, settled = await _settle(session, subscription, period, config=config, now=now, marks=marks)
        except IntegrityError:
            skipped += 1
            continue
        for line in settled:
            written += 1
            charged[line.currency] += line.amount
    _log.info("fees settled", period=period.key, subscriptions=len(subscriptions), lines=written, skipped=skipped)
    return SettlementReport(
        period=period.key, subscriptions=len(subscriptions), lines=written, charged=dict(charged), skipped=skipped
    )


async def accrue_day(
    session: AsyncSession, day: date, *, config: FeeConfig, now: datetime, marks: Marks | None = None
) -> int:
    """Accrue the management fee of ``day`` for every subscription live at its end, and the volume fee
    of the copy fills of that day's period so far; returns the number of lines added."""
    start, end = _day_bounds(day)
    period = period_of(config.period, start)
    added = 0
    for subscription in await FeeRepository(session).subscriptions_between(start, end):
        if await accrue_management(session, subscription, day, config=config, now=now, marks=marks) is not None:
            added += 1
        added += len(await accrue_volume(session, subscription, period, now=now))
    return added


async def accrue_period(
    session: AsyncSession, period: Period, *, config: FeeConfig, now: datetime, marks: Marks | None = None
) -> int:
    """Accrue every ended day and every copy fill of ``period`` not accrued yet, for every subscription
    that existed in it; returns the number of lines added."""
    added = 0
    for subscription in await FeeRepository(session).subscriptions_between(period.start, min(period.end, now)):
        added += await catch_up_management(session, subscription, period, config=config, now=now, marks=marks)
        added += len(await accrue_volume(session, subscription, period, now=now))
    return added


# --- what the follower sees -----------------------------------------------------------------------


class SubscriptionFees(msgspec.Struct, frozen=True, kw_only=True):
    """A subscription's fee position now: terms in force, mark, equity, and what has accrued this period."""

    subscription_id: str
    period: Period
    terms: FeeSchedule | None
    next_terms: FeeSchedule | None
    currency: str
    high_water_mark: Decimal
    equity: SubscriptionEquity
    management_accrued: Decimal
    volume_accrued: Decimal
    performance_estimate: Decimal
    """The performance fee if the period ended now (rounded down); settled only at the period's end."""


async def subscription_fees(
    session: AsyncSession, subscription: Subscription, *, config: FeeConfig, now: datetime, marks: Marks | None = None
) -> SubscriptionFees:
    """The follower's view of a subscription's fees (nothing is written but the initial mark)."""
    period = period_of(config.period, now)
    repo = FeeRepository(session)
    schedule = await terms_for(session, subscription, period)
    state = await high_water_mark(session, subscription, now=now)
    valued = await subscription_equity(session, subscription, at=now, marks=marks)
    accruals = await repo.list_accruals(subscription.id, period.key)
    terms = _terms(schedule)
    estimate = (
        round_fee(performance_fee(valued.equity, state.high_water_mark, terms.performance_pct), state.currency)
        if valued.equity is not None
        else _ZERO
    )
    return SubscriptionFees(
        subscription_id=subscription.id,
        period=period,
        terms=schedule,
        next_terms=await repo.schedule_after(subscription.strategy_id, max(now, period.start)),
        currency=state.currency,
        high_water_mark=state.high_water_mark,
        equity=valued,
        management_accrued=sum((a.amount for a in accruals if a.kind is AccrualKind.MANAGEMENT), _ZERO),
        volume_accrued=sum((a.amount for a in accruals if a.kind is AccrualKind.VOLUME), _ZERO),
        performance_estimate=estimate,
    )
