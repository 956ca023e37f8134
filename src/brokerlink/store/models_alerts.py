"""Tables for alerts (issue 6, ADR 0019): the alerts themselves, the webhooks they go to, and each delivery.

Imported at the end of :mod:`brokerlink.store.models`, so ``Base.metadata`` is complete.

An alert is identified for deduplication by ``dedup_key`` (rule and subject, e.g.
``auth_failures_ip:203.0.113.9``). At most one alert per key is *active* (open or acknowledged): a
partial unique index says so, so two server processes firing the same rule at once cannot both
create one; the loser of the race updates the winner's row instead.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from brokerlink.store.models import ENUM, ID, Base, one_of

__all__ = ["AlertDeliveryRow", "AlertRow", "AlertSeverity", "AlertStatus", "AlertWebhookRow", "DeliveryStatus"]


class AlertStatus(StrEnum):
    """Where an alert stands: new, seen by an admin, or over."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class AlertSeverity(StrEnum):
    """How urgent an alert is."""

    WARNING = "warning"
    CRITICAL = "critical"


class DeliveryStatus(StrEnum):
    """Where one webhook delivery of one alert event stands."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


_ACTIVE = text("status != 'resolved'")


class AlertRow(Base):
    """One alert. ``count`` is how many times its rule fired while it was active; ``labels`` is JSON text."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index(
            "uq_alerts_dedup_key_active",
            "dedup_key",
            unique=True,
            sqlite_where=_ACTIVE,
            postgresql_where=_ACTIVE,
        ),
        Index("ix_alerts_status_rule", "status", "rule"),
        one_of("status", AlertStatus),
        one_of("severity", AlertSeverity),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    rule: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(ENUM)
    subject: Mapped[str] = mapped_column(String(256))
    dedup_key: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(ENUM)
    message: Mapped[str] = mapped_column(Text)
    labels: Mapped[str] = mapped_column(Text)
    count: Mapped[int] = mapped_column(Integer)
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(ID)
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(ID)
    """The admin who resolved it, or ``system`` when its cause went away (a broker reconnected)."""


class AlertWebhookRow(Base):
    """A URL every alert event is POSTed to. The signing secret lives in the vault (``secret_ref``)."""

    __tablename__ = "alert_webhooks"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    secret_ref: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(ID)
    created_at: Mapped[datetime]


class AlertDeliveryRow(Base):
    """One alert event sent to one webhook: ``event_id`` is the ``webhook-id`` on every attempt."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (UniqueConstraint("event_id", "webhook_id"), one_of("status", DeliveryStatus))

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    event_id: Mapped[str] = mapped_column(ID)
    alert_id: Mapped[str] = mapped_column(ID, ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    webhook_id: Mapped[str] = mapped_column(ID, ForeignKey("alert_webhooks.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(ENUM)
    attempts: Mapped[int] = mapped_column(Integer)
    last_status: Mapped[int | None] = mapped_column(Integer)
    """The HTTP status of the last attempt; None when it got no answer (timeout, refused)."""
    last_error: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)
    """The event's JSON exactly as signed and sent: a restart resumes a pending delivery with it."""
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
