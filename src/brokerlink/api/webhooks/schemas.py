"""Request and response bodies of ``/v1/webhooks``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from brokerlink.api.schemas import RequestBody, ResponseBody
from brokerlink.store.models_webhooks import EndpointStatus, WebhookDeliveryStatus

EventType = Literal[
    "order.updated",
    "order.filled",
    "position.changed",
    "balance.changed",
    "account.connection_changed",
    "copy.copied",
    "copy.skipped",
    "copy.rejected",
    "copy.failed",
    "copy.guard_tripped",
]
"""What an endpoint may subscribe to: :data:`brokerlink.engine.webhooks.events.EVENT_TYPES` (a test checks)."""
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
Description = Annotated[str, msgspec.Meta(max_length=500)]
EventTypes = Annotated[list[EventType], msgspec.Meta(min_length=1, max_length=20)]


class EndpointCreate(RequestBody, kw_only=True):
    """An endpoint to receive events at: an ``https`` URL on a public address, and the event types wanted."""

    url: Url
    event_types: EventTypes
    description: Description = ""


class EndpointUpdate(RequestBody, kw_only=True):
    """Change an endpoint; fields left out stay as they are. ``enabled: true`` re-enables an endpoint
    the server disabled after a day of failed deliveries (or that you disabled)."""

    url: Url | msgspec.UnsetType = msgspec.UNSET
    event_types: EventTypes | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET


class EndpointResponse(ResponseBody, kw_only=True):
    """An endpoint (its signing secret is never shown again). ``disabled_reason`` says why it stopped."""

    id: str
    url: str
    description: str
    event_types: list[str]
    client_id: str | None
    """The app that registered it for you (null for your own)."""
    status: EndpointStatus
    disabled_reason: str | None
    disabled_at: datetime | None
    created_at: datetime
    updated_at: datetime


class EndpointCreated(EndpointResponse, kw_only=True):
    """A new endpoint and its signing secret (``whsec_...``), shown this once: keep it now."""

    secret: str


class EndpointList(ResponseBody, kw_only=True):
    """One page of endpoints, newest first; pass ``next_after`` as ``after`` for the next page."""

    data: list[EndpointResponse]
    next_after: str | None


class AttemptResponse(ResponseBody, kw_only=True):
    """One HTTP attempt: the receiver's status code, or why there was no answer."""

    number: int
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryResponse(ResponseBody, kw_only=True):
    """One event sent to the endpoint. ``event_id`` is the ``webhook-id`` header of every attempt."""

    id: str
    event_id: str
    event_type: str
    status: WebhookDeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    attempt_log: list[AttemptResponse]


class DeliveryList(ResponseBody, kw_only=True):
    """One page of deliveries, newest first; pass ``next_after`` as ``after`` for the next page."""

    data: list[DeliveryResponse]
    next_after: str | None
