"""Alert events: what the admin channel pushes and each webhook receives, one shape for both.

An event has its own id (``aev_...``), distinct from the alert's: an alert that fires three times
produces three events. The id is the ``webhook-id`` header on every attempt to deliver that
event, so a receiver that saw an attempt succeed drops the retries (Standard Webhooks).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from brokerlink.kit.ids import new_id
from brokerlink.store.repositories.alerts import Alert

ALERTS_TOPIC = "alerts"
"""The bus topic every process's admin channel reads (the writer of an alert publishes once)."""

EventType = Literal["alert.opened", "alert.updated", "alert.acknowledged", "alert.resolved"]


class AlertData(msgspec.Struct, frozen=True, kw_only=True):
    """The alert as an event carries it: no admin ids, nothing but what an operator's pager needs."""

    id: str
    rule: str
    severity: str
    subject: str
    status: str
    message: str
    labels: dict[str, str]
    count: int
    first_seen: datetime
    last_seen: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None

    @classmethod
    def of(cls, alert: Alert) -> AlertData:
        """The event view of a stored alert."""
        return cls(
            id=alert.id,
            rule=alert.rule,
            severity=alert.severity,
            subject=alert.subject,
            status=alert.status.value,
            message=alert.message,
            labels=alert.labels,
            count=alert.count,
            first_seen=alert.first_seen,
            last_seen=alert.last_seen,
            acknowledged_at=alert.acknowledged_at,
            resolved_at=alert.resolved_at,
        )


class AlertEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One change of one alert (Standard Webhooks payload shape: ``type``, ``timestamp``, ``data``)."""

    id: str
    type: EventType
    timestamp: datetime
    data: AlertData

    @classmethod
    def new(cls, alert: Alert, event_type: EventType, *, now: datetime) -> AlertEvent:
        """A new event (a fresh ``aev_`` id) about ``alert``."""
        return cls(id=new_id("aev"), type=event_type, timestamp=now, data=AlertData.of(alert))

    def encode(self) -> bytes:
        """The JSON bytes sent (and signed) as they are."""
        return msgspec.json.encode(self)


def decode_event(payload: bytes) -> AlertEvent:
    """An event from its JSON bytes (raises ``msgspec.ValidationError`` / ``DecodeError`` when malformed)."""
    return msgspec.json.decode(payload, type=AlertEvent)
