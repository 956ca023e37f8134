"""Webhook event types, how they map from what the system records, and the body every delivery carries.

**Mapping** (ADR 0028). Account events come off the bus topic ``account`` (key: the account id; the
payload is a :mod:`brokerlink.domain.events` event, tag field ``type``); copy events are rows of
``copy_events`` (the copy engine stores them and publishes nothing on the bus):

=================================  ======================================================
webhook ``type``                   source
=================================  ======================================================
``order.updated``                  ``order_accepted``, ``order_rejected``, ``order_updated``,
                                   ``order_cancel_requested``, ``order_cancel_rejected``,
                                   ``order_canceled``, ``order_expired``, ``order_triggered``
``order.filled``                   ``order_filled`` (one per execution)
``position.changed``               ``position_updated``
``balance.changed``                ``account_updated``
``account.connection_changed``     ``connection_changed``
``copy.copied`` ... ``copy.<kind>``  a copy event of kind ``copied``, ``skipped``, ``rejected``,
                                   ``failed``, ``guard_tripped``
``webhook.test``                   ``POST /v1/webhooks/{id}/test``
=================================  ======================================================

**Ids.** An account event's id is derived from its :attr:`~brokerlink.domain.events.Event.dedupe_key`
(the same fill arriving twice, or a bus message delivered again, has one id); a copy event keeps its
own ``cpe_...`` id. The id is the ``webhook-id`` of every attempt, so receivers deduplicate.

**Body** (Standard Webhooks' recommended shape): ``{"id", "type", "timestamp", "data"}``; ``data`` is
the source event as recorded (decimals as strings, times RFC 3339 UTC).
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from typing import Final

import msgspec

from brokerlink.domain.copy import CopyEvent
from brokerlink.domain.events import DomainEvent

__all__ = [
    "ACCOUNT_EVENT_TYPES",
    "COPY_EVENT_TYPES",
    "EVENT_TYPES",
    "TEST_EVENT_TYPE",
    "WebhookEvent",
    "account_event",
    "copy_event",
    "test_event",
]

ACCOUNT_EVENT_TYPES: Final[dict[str, str]] = {
    "order_accepted": "order.updated",
    "order_rejected": "order.updated",
    "order_updated": "order.updated",
    "order_cancel_requested": "order.updated",
    "order_cancel_rejected": "order.updated",
    "order_canceled": "order.updated",
    "order_expired": "order.updated",
    "order_triggered": "order.updated",
    "order_filled": "order.filled",
    "position_updated": "position.changed",
    "account_updated": "balance.changed",
    "connection_changed": "account.connection_changed",
}
"""Domain event tag (bus topic ``account``) to webhook event type."""
COPY_EVENT_TYPES: Final[dict[str, str]] = {
    kind: "copy." + kind for kind in ("copied", "skipped", "rejected", "failed", "guard_tripped")
}
"""Copy event kind (table ``copy_events``) to webhook event type; other kinds are the user's own actions."""
TEST_EVENT_TYPE: Final = "webhook.test"
EVENT_TYPES: Final[tuple[str, ...]] = tuple(sorted({*ACCOUNT_EVENT_TYPES.values(), *COPY_EVENT_TYPES.values()}))
"""Every type an endpoint may subscribe to (``webhook.test`` is sent on request, to anyone)."""

_ENCODER = msgspec.json.Encoder(decimal_format="string")


class WebhookEvent(msgspec.Struct, frozen=True, kw_only=True):
    """The body of a delivery."""

    id: str
    type: str
    timestamp: datetime
    data: msgspec.Raw

    def encode(self) -> bytes:
        """The JSON sent, byte for byte the same on every attempt."""
        return _ENCODER.encode(self)


def _derived_id(parts: tuple[str, ...]) -> str:
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return "evt_" + base64.b32encode(digest).decode().rstrip("=")[:26].lower()


def account_event(event: DomainEvent, raw: bytes) -> WebhookEvent | None:
    """The webhook event for a bus ``account`` event (``raw``: its payload), or None if none maps."""
    kind = ACCOUNT_EVENT_TYPES.get(event.tag)
    if kind is None:
        return None
    return WebhookEvent(id=_derived_id(event.dedupe_key), type=kind, timestamp=event.ts, data=msgspec.Raw(raw))


def copy_event(event: CopyEvent) -> WebhookEvent | None:
    """The webhook event for a stored copy event, or None for kinds that are not sent."""
    kind = COPY_EVENT_TYPES.get(str(event.kind))
    if kind is None:
        return None
    return WebhookEvent(id=event.id, type=kind, timestamp=event.created_at, data=msgspec.Raw(_ENCODER.encode(event)))


def test_event(event_id: str, endpoint_id: str, now: datetime) -> WebhookEvent:
    """A test event for one endpoint."""
    data = _ENCODER.encode({"endpoint_id": endpoint_id, "message": "a test event from brokerlink"})
    return WebhookEvent(id=event_id, type=TEST_EVENT_TYPE, timestamp=now, data=msgspec.Raw(data))
