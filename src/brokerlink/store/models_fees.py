"""Tables for strategy fees (issue 9, item 3; ADR 0021).

Imported at the end of :mod:`brokerlink.store.models`, so ``Base.metadata`` is complete.

* ``fee_schedules``: a strategy's fee terms, one row per ``effective_from``. A change made while the
  strategy has followers starts with the next settlement period, so a row may lie in the future; the
  terms of a subscription in a period are the row in force at the later of the period's start and
  the subscription's creation.
* ``fee_states``: one row per subscription: its performance-fee high-water mark (persisted, so it
  survives pause, resume and restart).
* ``fee_flows``: deposits and withdrawals of a subscription's capital, each with the high-water mark
  before and after (idempotent per ``reference``).
* ``fee_accruals``: management fee per subscription and day, volume fee per subscription and copy
  fill; the unique ``(subscription_id, kind, source)`` makes accruing twice the same as once.
* ``fee_settlements``: one statement line per subscription, fee kind and period: what was charged,
  why, and how it was split; the invoices of both sides are read from it.

Fee history is financial history: it goes only with its strategy or subscription (a deliberate
purge), like the rest of copy trading.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from brokerlink.store.models import CURRENCY, ENUM, EXTERNAL_ID, ID, Base, one_of


class VolumeBasis(StrEnum):
    """What a volume fee is charged per."""

    LOT = "lot"
    """Per unit of the copy fill's quantity (a lot on FX, a share, a contract)."""
    MILLION = "million"
    """Per million of notional (quantity x contract size x price, in the instrument's quote currency)."""


class FlowKind(StrEnum):
    """A movement of a subscription's capital."""

    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"


class AccrualKind(StrEnum):
    """The fees that accrue before settlement (the performance fee is measured at settlement)."""

    MANAGEMENT = "management"
    VOLUME = "volume"


class FeeKind(StrEnum):
    """The fee kinds, as in the chart of accounts (``brokerlink.ledger.chart.FEE_KINDS``)."""

    PERFORMANCE = "performance"
    MANAGEMENT = "management"
    VOLUME = "volume"


PERIOD = String(16)  # "2026-11", "2026-Q4"


class FeeScheduleRow(Base):
    """A strategy's fee terms from ``effective_from`` on (until the next row). Percentages are percent."""

    __tablename__ = "fee_schedules"
    __table_args__ = (
        UniqueConstraint("strategy_id", "effective_from"),
        one_of("volume_basis", VolumeBasis),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    strategy_id: Mapped[str] = mapped_column(ID, ForeignKey("strategies.id", ondelete="CASCADE"))
    effective_from: Mapped[datetime]
    performance_pct: Mapped[Decimal]
    management_pct: Mapped[Decimal]
    """Percent per year, accrued daily as 1/365 of it."""
    volume_fee: Mapped[Decimal]
    volume_basis: Mapped[str] = mapped_column(ENUM)
    volume_currency: Mapped[str] = mapped_column(CURRENCY)
    created_at: Mapped[datetime]


class FeeStateRow(Base):
    """A subscription's performance-fee high-water mark, in the subscription's currency."""

    __tablename__ = "fee_states"

    subscription_id: Mapped[str] = mapped_column(
        ID, ForeignKey("subscriptions.id", ondelete="CASCADE"), primary_key=True
    )
    currency: Mapped[str] = mapped_column(CURRENCY)
    high_water_mark: Mapped[Decimal]
    last_settled_period: Mapped[str | None] = mapped_column(PERIOD)
    updated_at: Mapped[datetime]


class FeeFlowRow(Base):
    """A deposit into or a withdrawal from a subscription's capital, and what it did to the high-water mark."""

    __tablename__ = "fee_flows"
    __table_args__ = (
        UniqueConstraint("subscription_id", "reference"),
        one_of("kind", FlowKind),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    subscription_id: Mapped[str] = mapped_column(ID, ForeignKey("subscriptions.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(ENUM)
    amount: Mapped[Decimal]
    """Positive, in ``currency`` (the subscription's)."""
    currency: Mapped[str] = mapped_column(CURRENCY)
    reference: Mapped[str] = mapped_column(EXTERNAL_ID)
    """The caller's idempotency key (a broker transfer id, a ledger entry id)."""
    occurred_at: Mapped[datetime]
    equity_before: Mapped[Decimal]
    hwm_before: Mapped[Decimal]
    hwm_after: Mapped[Decimal]
    created_at: Mapped[datetime]


class FeeAccrualRow(Base):
    """One accrued management (per day) or volume (per copy fill) fee, unrounded to cents.

    ``source`` is the day (``2026-11-03``) or the fill id; ``basis`` the equity or the quantity (or
    notional) the fee was computed from, ``rate`` the rate applied, so a line explains itself.
    """

    __tablename__ = "fee_accruals"
    __table_args__ = (
        UniqueConstraint("subscription_id", "kind", "source"),
        Index("ix_fee_accruals_subscription_id_period", "subscription_id", "period"),
        one_of("kind", AccrualKind),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    subscription_id: Mapped[str] = mapped_column(ID, ForeignKey("subscriptions.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(ENUM)
    source: Mapped[str] = mapped_column(EXTERNAL_ID)
    period: Mapped[str] = mapped_column(PERIOD)
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(CURRENCY)
    basis: Mapped[Decimal]
    rate: Mapped[Decimal]
    detail: Mapped[str] = mapped_column(Text)
    accrued_for: Mapped[datetime]
    """The start of the day, or the fill's time."""
    created_at: Mapped[datetime]


class FeeSettlementRow(Base):
    """One invoice line: a fee kind of one subscription settled for one period, and its split.

    ``amount`` is what the follower was charged (rounded down to the currency's minor unit),
    ``provider_amount + platform_amount == amount``. ``entry_id`` is the ledger entry (None for a
    zero line). The performance line carries the high-water mark before and after and the equity at
    settlement; the others leave them None.
    """

    __tablename__ = "fee_settlements"
    __table_args__ = (
        UniqueConstraint("subscription_id", "kind", "period"),
        Index("ix_fee_settlements_follower_user_id_period", "follower_user_id", "period"),
        Index("ix_fee_settlements_provider_user_id_period", "provider_user_id", "period"),
        one_of("kind", FeeKind),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    subscription_id: Mapped[str] = mapped_column(ID, ForeignKey("subscriptions.id", ondelete="CASCADE"))
    strategy_id: Mapped[str] = mapped_column(ID)
    follower_user_id: Mapped[str] = mapped_column(ID)
    provider_user_id: Mapped[str] = mapped_column(ID)
    kind: Mapped[str] = mapped_column(ENUM)
    period: Mapped[str] = mapped_column(PERIOD)
    currency: Mapped[str] = mapped_column(CURRENCY)
    amount: Mapped[Decimal]
    provider_amount: Mapped[Decimal]
    platform_amount: Mapped[Decimal]
    rate: Mapped[Decimal]
    equity: Mapped[Decimal | None]
    hwm_before: Mapped[Decimal | None]
    hwm_after: Mapped[Decimal | None]
    entry_id: Mapped[str | None] = mapped_column(ID)
    detail: Mapped[str] = mapped_column(Text)
    settled_at: Mapped[datetime]
