"""Strategy fees: schedules, high-water marks, capital flows, accruals and settlement lines (ADR 0021).

Also the reads the fee engine needs from the trading and copy tables: a subscription's copy fills
(fills of the orders its intents placed, matched on the follower account and client order id, the
idempotency key everywhere), the last fill price of a symbol, and an account's instruments. The
ledger layer may not import the copy engine, so it reads the tables here instead.

Amounts are never compared or summed in SQL (SQLite stores them as text); callers do the arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

import msgspec
from sqlalchemy import and_, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.copy import LIVE_SUBSCRIPTION_STATUSES, Subscription
from brokerlink.domain.models import Fill, Instrument
from brokerlink.store.mapping import fill_from_row, instrument_from_row, struct_values, subscription_from_row
from brokerlink.store.models import (
    AccountRow,
    BrokerConnectionRow,
    CopyIntentRow,
    FillRow,
    InstrumentRow,
    StrategyRow,
    SubscriptionRow,
)
from brokerlink.store.models_fees import (
    AccrualKind,
    FeeAccrualRow,
    FeeFlowRow,
    FeeKind,
    FeeScheduleRow,
    FeeSettlementRow,
    FeeStateRow,
    FlowKind,
    VolumeBasis,
)
from brokerlink.store.repositories._common import FRESH, upsert_insert


class FeeSchedule(msgspec.Struct, frozen=True, kw_only=True):
    """A strategy's fee terms from ``effective_from`` on. Percentages are percent (``20`` is 20%)."""

    id: str
    strategy_id: str
    effective_from: datetime
    performance_pct: Decimal
    management_pct: Decimal
    volume_fee: Decimal
    volume_basis: VolumeBasis
    volume_currency: str
    created_at: datetime


class FeeState(msgspec.Struct, frozen=True, kw_only=True):
    """A subscription's high-water mark."""

    subscription_id: str
    currency: str
    high_water_mark: Decimal
    last_settled_period: str | None
    updated_at: datetime


class FeeFlow(msgspec.Struct, frozen=True, kw_only=True):
    """A deposit or withdrawal of a subscription's capital."""

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
    created_at: datetime


class FeeAccrual(msgspec.Struct, frozen=True, kw_only=True):
    """One day of management fee or one fill's volume fee."""

    id: str
    subscription_id: str
    kind: AccrualKind
    source: str
    period: str
    amount: Decimal
    currency: str
    basis: Decimal
    rate: Decimal
    detail: str
    accrued_for: datetime
    created_at: datetime


class FeeSettlement(msgspec.Struct, frozen=True, kw_only=True):
    """One invoice line (see :class:`~brokerlink.store.models_fees.FeeSettlementRow`)."""

    id: str
    subscription_id: str
    strategy_id: str
    follower_user_id: str
    provider_user_id: str
    kind: FeeKind
    period: str
    currency: str
    amount: Decimal
    provider_amount: Decimal
    platform_amount: Decimal
    rate: Decimal
    equity: Decimal | None
    hwm_before: Decimal | None
    hwm_after: Decimal | None
    entry_id: str | None
    detail: str
    settled_at: datetime


class CopyFill(msgspec.Struct, frozen=True, kw_only=True):
    """A fill of one of a subscription's copy orders, with its ``fills.id`` (the volume fee's key)."""

    fill_id: str
    fill: Fill


T = TypeVar("T")


def _convert(row: object, model: type[T]) -> T:
    return msgspec.convert(row, model, from_attributes=True)


class FeeRepository:
    """Queries on the fee tables, and the copy/trading reads fees need. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- schedules ---------------------------------------------------------------------------------

    async def put_schedule(self, schedule: FeeSchedule) -> None:
        """Store terms from ``schedule.effective_from`` on, replacing terms set for that moment or later.

        A later change supersedes one not yet in force: only the last terms asked for take effect.
        """
        await self.session.execute(
            delete(FeeScheduleRow).where(
                FeeScheduleRow.strategy_id == schedule.strategy_id,
                FeeScheduleRow.effective_from >= schedule.effective_from,
            )
        )
        self.session.add(FeeScheduleRow(**struct_values(schedule)))
        await self.session.flush()

    async def schedule_at(self, strategy_id: str, at: datetime) -> FeeSchedule | None:
        """The terms in force at ``at``: the latest row that took effect at or before it."""
        stmt = (
            select(FeeScheduleRow)
            .where(FeeScheduleRow.strategy_id == strategy_id, FeeScheduleRow.effective_from <= at)
            .order_by(FeeScheduleRow.effective_from.desc())
            .limit(1)
        )
        row = (await self.session.execute(stmt, execution_options=FRESH)).scalar_one_or_none()
        return None if row is None else _convert(row, FeeSchedule)

    async def schedule_after(self, strategy_id: str, at: datetime) -> FeeSchedule | None:
        """Terms set to take effect after ``at``, if any (a change waiting for the next period)."""
        stmt = (
            select(FeeScheduleRow)
            .where(FeeScheduleRow.strategy_id == strategy_id, FeeScheduleRow.effective_from > at)
            .order_by(FeeScheduleRow.effective_from)
            .limit(1)
        )
        row = (await self.session.execute(stmt, execution_options=FRESH)).scalar_one_or_none()
        return None if row is None else _convert(row, FeeSchedule)

    async def has_live_subscriptions(self, strategy_id: str) -> bool:
        """Whether anyone follows the strategy now (paused and close-only included)."""
        stmt = (
            select(SubscriptionRow.id)
            .where(
                SubscriptionRow.strategy_id == strategy_id,
                SubscriptionRow.status.in_([s.value for s in LIVE_SUBSCRIPTION_STATUSES]),
            )
            .limit(1)
        )
        return (await self.session.execute(stmt)).first() is not None

    # --- high-water marks --------------------------------------------------------------------------

    async def get_state(self, subscription_id: str) -> FeeState | None:
        """The subscription's high-water mark, if it has been set."""
        row = await self.session.get(FeeStateRow, subscription_id, populate_existing=True)
        return None if row is None else _convert(row, FeeState)

    async def save_state(self, state: FeeState) -> None:
        """Insert or replace the subscription's high-water mark."""
        insert = upsert_insert(self.session, FeeStateRow.__table__)
        stmt = insert.values(**struct_values(state)).on_conflict_do_update(
            index_elements=["subscription_id"],
            set_={
                "currency": insert.excluded.currency,
                "high_water_mark": insert.excluded.high_water_mark,
                "last_settled_period": insert.excluded.last_settled_period,
                "updated_at": insert.excluded.updated_at,
            },
        )
        await self.session.flush()
        await self.session.execute(stmt)

    # --- capital flows -----------------------------------------------------------------------------

    async def get_flow(self, subscription_id: str, reference: str) -> FeeFlow | None:
        """The flow recorded under ``reference``, if any."""
        stmt = select(FeeFlowRow).where(
            FeeFlowRow.subscription_id == subscription_id, FeeFlowRow.reference == reference
        )
        row = (await self.session.execute(stmt, execution_options=FRESH)).scalar_one_or_none()
        return None if row is None else _convert(row, FeeFlow)

    async def add_flow(self, flow: FeeFlow) -> None:
        """Insert a flow (the database refuses a second one with the same reference)."""
        self.session.add(FeeFlowRow(**struct_values(flow)))
        await self.session.flush()

    async def list_flows(self, subscription_id: str, *, until: datetime | None = None) -> list[FeeFlow]:
        """The subscription's flows before ``until``, oldest first."""
        stmt = select(FeeFlowRow).where(FeeFlowRow.subscription_id == subscription_id)
        if until is not None:
            stmt = stmt.where(FeeFlowRow.occurred_at < until)
        stmt = stmt.order_by(FeeFlowRow.occurred_at, FeeFlowRow.id)
        rows = (await self.session.execute(stmt, execution_options=FRESH)).scalars()
        return [_convert(row, FeeFlow) for row in rows]

    # --- accruals ----------------------------------------------------------------------------------

    async def add_accruals(self, accruals: Sequence[FeeAccrual]) -> None:
        """Insert accruals; one already there for the same (subscription, kind, source) is left as it is."""
        if not accruals:
            return
        insert = upsert_insert(self.session, FeeAccrualRow.__table__)
        stmt = insert.on_conflict_do_nothing(index_elements=["subscription_id", "kind", "source"])
        await self.session.flush()
        await self.session.execute(stmt, [struct_values(a) for a in accruals])

    async def accrued_sources(self, subscription_id: str, kind: AccrualKind) -> set[str]:
        """The sources (days, fill ids) already accrued for the subscription."""
        stmt = select(FeeAccrualRow.source).where(
            FeeAccrualRow.subscription_id == subscription_id, FeeAccrualRow.kind == kind.value
        )
        return set((await self.session.execute(stmt)).scalars())

    async def list_accruals(
        self, subscription_id: str, period: str, kind: AccrualKind | None = None
    ) -> list[FeeAccrual]:
        """The subscription's accruals in a period (of one kind, or all), oldest first."""
        stmt = select(FeeAccrualRow).where(
            FeeAccrualRow.subscription_id == subscription_id, FeeAccrualRow.period == period
        )
        if kind is not None:
            stmt = stmt.where(FeeAccrualRow.kind == kind.value)
        stmt = stmt.order_by(FeeAccrualRow.accrued_for, FeeAccrualRow.id)
        rows = (await self.session.execute(stmt, execution_options=FRESH)).scalars()
        return [_convert(row, FeeAccrual) for row in rows]

    # --- settlements (invoice lines) ---------------------------------------------------------------

    async def settlements_of(self, subscription_id: str, period: str) -> dict[FeeKind, FeeSettlement]:
        """The lines already settled for the subscription and period, by kind."""
        stmt = select(FeeSettlementRow).where(
            FeeSettlementRow.subscription_id == subscription_id, FeeSettlementRow.period == period
        )
        rows = (await self.session.execute(stmt, execution_options=FRESH)).scalars()
        lines = [_convert(row, FeeSettlement) for row in rows]
        return {line.kind: line for line in lines}

    async def add_settlements(self, lines: Sequence[FeeSettlement]) -> None:
        """Insert invoice lines (the database refuses a second line per subscription, kind and period)."""
        for line in lines:
            self.session.add(FeeSettlementRow(**struct_values(line)))
        await self.session.flush()

    async def invoice_lines(self, user_id: str, *, period: str | None = None) -> list[FeeSettlement]:
        """The lines where ``user_id`` is the follower or the provider, by period then id."""
        stmt = select(FeeSettlementRow).where(
            or_(FeeSettlementRow.follower_user_id == user_id, FeeSettlementRow.provider_user_id == user_id)
        )
        if period is not None:
            stmt = stmt.where(FeeSettlementRow.period == period)
        stmt = stmt.order_by(FeeSettlementRow.period, FeeSettlementRow.id)
        rows = (await self.session.execute(stmt, execution_options=FRESH)).scalars()
        return [_convert(row, FeeSettlement) for row in rows]

    # --- copy and trading reads --------------------------------------------------------------------

    async def subscriptions_between(self, start: datetime, end: datetime) -> list[Subscription]:
        """Subscriptions that existed at some time in ``[start, end)``: created before the end, not
        stopped before the start. Oldest first."""
        stmt = (
            select(SubscriptionRow)
            .where(
                SubscriptionRow.created_at < end,
                or_(SubscriptionRow.stopped_at.is_(None), SubscriptionRow.stopped_at >= start),
            )
            .order_by(SubscriptionRow.id)
        )
        rows = (await self.session.execute(stmt, execution_options=FRESH)).scalars()
        return [subscription_from_row(row) for row in rows]

    async def strategy_owner(self, strategy_id: str) -> str | None:
        """The provider's user id."""
        stmt = select(StrategyRow.provider_user_id).where(StrategyRow.id == strategy_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def account_currency(self, account_id: str) -> str | None:
        """An account's currency (a subscription's currency is its follower account's)."""
        stmt = select(AccountRow.currency).where(AccountRow.id == account_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def instruments_of_account(self, account_id: str) -> dict[str, Instrument]:
        """The stored instruments of the account's broker, by symbol."""
        stmt = (
            select(InstrumentRow)
            .join(BrokerConnectionRow, BrokerConnectionRow.broker == InstrumentRow.broker)
            .join(AccountRow, AccountRow.connection_id == BrokerConnectionRow.id)
            .where(AccountRow.id == account_id)
        )
        rows = (await self.session.execute(stmt)).scalars()
        return {row.symbol: instrument_from_row(row) for row in rows}

    async def copy_fills(
        self, subscription_id: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[CopyFill]:
        """Fills of the subscription's copy orders in ``[since, until)``, in time order."""
        stmt = (
            select(FillRow)
            .join(
                CopyIntentRow,
                and_(
                    CopyIntentRow.follower_account_id == FillRow.account_id,
                    CopyIntentRow.client_order_id == FillRow.client_order_id,
                ),
            )
            .where(CopyIntentRow.subscription_id == subscription_id)
        )
        if since is not None:
            stmt = stmt.where(FillRow.ts >= since)
        if until is not None:
            stmt = stmt.where(FillRow.ts < until)
        stmt = stmt.order_by(FillRow.ts, FillRow.id)
        rows = (await self.session.execute(stmt, execution_options=FRESH)).scalars()
        return [CopyFill(fill_id=row.id, fill=fill_from_row(row)) for row in rows]

    async def last_fill_price(self, account_id: str, symbol: str, *, until: datetime) -> Decimal | None:
        """The price of the account's latest fill in ``symbol`` before ``until``: the freshest price the
        store knows without a live quote."""
        stmt = (
            select(FillRow.price)
            .where(FillRow.account_id == account_id, FillRow.symbol == symbol, FillRow.ts < until)
            .order_by(FillRow.ts.desc(), FillRow.id.desc())
            .limit(1)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()
