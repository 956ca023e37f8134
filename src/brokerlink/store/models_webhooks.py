"""Tables for users' webhooks (issue 8, ADR 0028): endpoints, deliveries, attempts, and intake cursors.

Imported at the end of :mod:`brokerlink.store.models`, so ``Base.metadata`` is complete.

A delivery is one event for one endpoint, unique per ``(endpoint_id, event_id)``: the same event
arriving twice (a redelivered bus message, two nodes scanning the same copy events) inserts nothing
the second time. ``next_attempt_at`` is the schedule, so pending work survives a restart: any
process picks up what is due. Each attempt is a row of its own, for the user to see.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from brokerlink.store.models import ENUM, ID, Base, one_of

__all__ = [
    "EndpointStatus",
    "WebhookAttemptRow",
    "WebhookCursorRow",
    "WebhookDeliveryRow",
    "WebhookDeliveryStatus",
    "WebhookEndpointRow",
]


class EndpointStatus(StrEnum):
    """Whether an endpoint receives events: disabled by its user, or by the server after a day of failures."""

    ENABLED = "enabled"
    DISABLED = "disabled"


class WebhookDeliveryStatus(StrEnum):
    """Where one delivery stands."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookEndpointRow(Base):
    """A URL a user receives events at. ``event_types`` is a JSON list; the secret is in the vault."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        Index("ix_webhook_endpoints_user_id_id", "user_id", "id"),
        Index("ix_webhook_endpoints_consent_id", "consent_id"),
        one_of("status", EndpointStatus),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"))
    client_id: Mapped[str | None] = mapped_column(ID)
    """The app that registered it; None for the user's own."""
    consent_id: Mapped[str | None] = mapped_column(ID)
    """The consent the app registered it under (migration 0018): deliveries carry only what it covers."""
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(String(500))
    event_types: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(ENUM)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    disabled_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    secret_ref: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class WebhookDeliveryRow(Base):
    """One event sent to one endpoint: ``event_id`` is the ``webhook-id`` of every attempt and replay."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id"),
        Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        one_of("status", WebhookDeliveryStatus),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ID, ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(ID)
    event_type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(ENUM)
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None]
    """When the next attempt is due (pending only); a claimed delivery's lease end while it is tried."""
    window_started_at: Mapped[datetime]
    """Start of the retry window: creation, or the last replay."""
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)
    """The event's JSON exactly as signed and sent (the same bytes on every attempt and replay)."""
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class WebhookAttemptRow(Base):
    """One HTTP attempt of a delivery: its answer, or why there was none."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery_id_id", "delivery_id", "id"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    delivery_id: Mapped[str] = mapped_column(ID, ForeignKey("webhook_deliveries.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    attempted_at: Mapped[datetime]
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)


class WebhookCursorRow(Base):
    """How far an intake that polls a table (copy events) has read: the last id handled."""

    __tablename__ = "webhook_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[str] = mapped_column(ID)
    updated_at: Mapped[datetime]
