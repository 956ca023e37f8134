"""Tables for statistics: equity snapshots (issue 9).

Imported at the end of :mod:`brokerlink.store.models`, so ``Base.metadata`` is complete.

``equity_snapshots`` holds periodic samples of one *series*: a linked account (``kind='account'``,
``series`` = the account id) or a subscription (``kind='subscription'``, ``series`` = the
subscription id, ``account_id`` its follower account). Each sample carries the cash balance, the
equity (cash plus the open positions' unrealized P&L at the mark) and the net external flow
(deposits minus withdrawals) since the series' previous sample, which is what lets a
time-weighted return neutralise them. ``(series, ts)`` is unique: a sampler that runs twice at one
instant writes one row. Samples are derived data and go with their account or subscription.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import ForeignKey, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from brokerlink.store.models import CURRENCY, ENUM, ID, Base, one_of


class SnapshotKind(StrEnum):
    """What a series of equity snapshots measures."""

    ACCOUNT = "account"
    SUBSCRIPTION = "subscription"


class EquitySnapshotRow(Base):
    """One sample of a series' cash, equity and external flows."""

    __tablename__ = "equity_snapshots"
    __table_args__ = (
        UniqueConstraint("series", "ts"),
        one_of("kind", SnapshotKind),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    series: Mapped[str] = mapped_column(ID)
    kind: Mapped[str] = mapped_column(ENUM)
    account_id: Mapped[str] = mapped_column(ID, ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    subscription_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("subscriptions.id", ondelete="CASCADE"), index=True
    )
    currency: Mapped[str] = mapped_column(CURRENCY)
    cash: Mapped[Decimal]
    equity: Mapped[Decimal]
    net_flow: Mapped[Decimal]
    """Deposits minus withdrawals booked after the series' previous sample, up to and including ``ts``."""
    ts: Mapped[datetime]


__all__ = ["Base", "EquitySnapshotRow", "SnapshotKind"]
