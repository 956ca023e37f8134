"""Users' webhook endpoints, their deliveries and attempts, and the intake cursors (ADR 0028).

Flushes, never commits: the API routes and the webhook service's tasks are the commit boundaries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.copy import CopyEvent
from brokerlink.kit.ids import new_id
from brokerlink.store.mapping import copy_event_from_row
from brokerlink.store.models import AccountRow, CopyEventRow, SubscriptionRow
from brokerlink.store.models_webhooks import (
    EndpointStatus,
    WebhookAttemptRow,
    WebhookCursorRow,
    WebhookDeliveryRow,
    WebhookDeliveryStatus,
    WebhookEndpointRow,
)
from brokerlink.store.repositories._common import FRESH, Page, fetch_page, in_period, rowcount, upsert_insert

__all__ = [
    "WebhookAttempt",
    "WebhookCursorRepository",
    "WebhookDelivery",
    "WebhookDeliveryRepository",
    "WebhookEndpoint",
    "WebhookEndpointRepository",
    "WebhookSourceRepository",
]

_ERROR_MAX = 1000


class WebhookEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    """An endpoint as stored (its secret stays in the vault)."""

    id: str
    user_id: str
    client_id: str | None
    consent_id: str | None
    url: str
    description: str
    event_types: list[str]
    status: EndpointStatus
    disabled_reason: str | None
    disabled_at: datetime | None
    last_success_at: datetime | None
    secret_ref: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def enabled(self) -> bool:
        """Whether it receives events."""
        return self.status is EndpointStatus.ENABLED


class WebhookAttempt(msgspec.Struct, frozen=True, kw_only=True):
    """One HTTP attempt of a delivery."""

    id: str
    number: int
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class WebhookDelivery(msgspec.Struct, frozen=True, kw_only=True):
    """One event's delivery to one endpoint."""

    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    status: WebhookDeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    window_started_at: datetime
    last_status: int | None
    last_error: str | None
    payload: str
    created_at: datetime
    updated_at: datetime


def _endpoint(row: WebhookEndpointRow) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=row.id,
        user_id=row.user_id,
        client_id=row.client_id,
        consent_id=row.consent_id,
        url=row.url,
        description=row.description,
        event_types=msgspec.json.decode(row.event_types, type=list[str]),
        status=EndpointStatus(row.status),
        disabled_reason=row.disabled_reason,
        disabled_at=row.disabled_at,
        last_success_at=row.last_success_at,
        secret_ref=row.secret_ref,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _delivery(row: WebhookDeliveryRow) -> WebhookDelivery:
    return WebhookDelivery(
        id=row.id,
        endpoint_id=row.endpoint_id,
        event_id=row.event_id,
        event_type=row.event_type,
        status=WebhookDeliveryStatus(row.status),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        window_started_at=row.window_started_at,
        last_status=row.last_status,
        last_error=row.last_error,
        payload=row.payload,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _attempt(row: WebhookAttemptRow) -> WebhookAttempt:
    return WebhookAttempt(
        id=row.id,
        number=row.number,
        attempted_at=row.attempted_at,
        status_code=row.status_code,
        error=row.error,
        duration_ms=row.duration_ms,
    )


def _cut(text: str | None) -> str | None:
    return None if text is None else text[:_ERROR_MAX]


class WebhookEndpointRepository:
    """Queries on ``webhook_endpoints``. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self,
        *,
        endpoint_id: str,
        user_id: str,
        url: str,
        description: str,
        event_types: Sequence[str],
        now: datetime,
        client_id: str | None = None,
        consent_id: str | None = None,
    ) -> WebhookEndpoint:
        """Insert an enabled endpoint (its secret is stored afterwards, owned by its id); an app's
        carries its ``client_id`` and the ``consent_id`` it was registered under."""
        row = WebhookEndpointRow(
            id=endpoint_id,
            user_id=user_id,
            client_id=client_id,
            consent_id=consent_id,
            url=url,
            description=description,
            event_types=msgspec.json.encode(sorted(set(event_types))).decode(),
            status=EndpointStatus.ENABLED.value,
            disabled_reason=None,
            disabled_at=None,
            last_success_at=None,
            secret_ref=None,
            created_at=now,
            updated_at=now,
        )
        self.session.add(row)
        await self.session.flush()
        return _endpoint(row)

    async def set_secret_ref(self, endpoint_id: str, secret_ref: str) -> None:
        """Point the endpoint at its vault secret."""
        await self.session.execute(
            update(WebhookEndpointRow).where(WebhookEndpointRow.id == endpoint_id).values(secret_ref=secret_ref)
        )

    async def get(self, endpoint_id: str) -> WebhookEndpoint | None:
        """The endpoint ``endpoint_id``, whoever owns it (the service's tasks)."""
        row = await self.session.get(WebhookEndpointRow, endpoint_id, populate_existing=True)
        return None if row is None else _endpoint(row)

    async def get_for_user(self, user_id: str, endpoint_id: str) -> WebhookEndpoint | None:
        """The endpoint if it is ``user_id``'s, else None (another user's looks missing)."""
        endpoint = await self.get(endpoint_id)
        return endpoint if endpoint is not None and endpoint.user_id == user_id else None

    async def count_for_user(self, user_id: str) -> int:
        """How many endpoints the user has."""
        rows = await self.session.execute(select(WebhookEndpointRow.id).where(WebhookEndpointRow.user_id == user_id))
        return len(rows.all())

    async def list_for_user(
        self, user_id: str, *, limit: int, after: str | None, client_id: str | None = None
    ) -> Page[WebhookEndpoint]:
        """The user's endpoints, newest first; with ``client_id``, only those that app registered."""
        stmt = select(WebhookEndpointRow).where(WebhookEndpointRow.user_id == user_id)
        if client_id is not None:
            stmt = stmt.where(WebhookEndpointRow.client_id == client_id)
        return await fetch_page(
            self.session, stmt, WebhookEndpointRow.id, _endpoint, limit=limit, after=after, descending=True
        )

    async def subscribed(self, user_ids: Iterable[str], event_type: str) -> list[WebhookEndpoint]:
        """The enabled endpoints of these users that asked for ``event_type`` (a user has a handful)."""
        ids = sorted(set(user_ids))
        if not ids:
            return []
        stmt = select(WebhookEndpointRow).where(
            WebhookEndpointRow.user_id.in_(ids), WebhookEndpointRow.status == EndpointStatus.ENABLED.value
        )
        rows = await self.session.execute(stmt.order_by(WebhookEndpointRow.id), execution_options=FRESH)
        return [e for e in map(_endpoint, rows.scalars()) if event_type in e.event_types]

    async def update(self, endpoint_id: str, *, now: datetime, **values: Any) -> None:
        """Change columns (``url``, ``description``, ``event_types`` as a list, ``status``...)."""
        if "event_types" in values:
            values["event_types"] = msgspec.json.encode(sorted(set(values["event_types"]))).decode()
        await self.session.execute(
            update(WebhookEndpointRow).where(WebhookEndpointRow.id == endpoint_id).values(**values, updated_at=now)
        )

    async def disable(self, endpoint_id: str, *, reason: str, now: datetime) -> bool:
        """Disable an enabled endpoint, saying why. Returns whether it was enabled."""
        result = await self.session.execute(
            update(WebhookEndpointRow)
            .where(WebhookEndpointRow.id == endpoint_id, WebhookEndpointRow.status == EndpointStatus.ENABLED.value)
            .values(status=EndpointStatus.DISABLED.value, disabled_reason=_cut(reason), disabled_at=now, updated_at=now)
        )
        return rowcount(result) == 1

    async def disable_for_consent(self, consent_id: str, *, reason: str, now: datetime) -> list[str]:
        """Disable every enabled endpoint registered under ``consent_id``; returns their ids."""
        stmt = select(WebhookEndpointRow.id).where(
            WebhookEndpointRow.consent_id == consent_id, WebhookEndpointRow.status == EndpointStatus.ENABLED.value
        )
        ids = list((await self.session.execute(stmt)).scalars())
        return [endpoint_id for endpoint_id in ids if await self.disable(endpoint_id, reason=reason, now=now)]

    async def succeeded(self, endpoint_id: str, now: datetime) -> None:
        """Note a successful delivery (an endpoint that answers is not disabled for old failures)."""
        await self.session.execute(
            update(WebhookEndpointRow).where(WebhookEndpointRow.id == endpoint_id).values(last_success_at=now)
        )

    async def delete(self, endpoint_id: str) -> bool:
        """Delete an endpoint (its deliveries and attempts go with it). Returns whether it existed."""
        result = await self.session.execute(delete(WebhookEndpointRow).where(WebhookEndpointRow.id == endpoint_id))
        return rowcount(result) == 1


class WebhookDeliveryRepository:
    """Queries on ``webhook_deliveries`` and ``webhook_attempts``. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_if_new(
        self, *, endpoint_id: str, event_id: str, event_type: str, payload: bytes, now: datetime
    ) -> bool:
        """Record a delivery due now, unless this endpoint already has one for ``event_id``.

        Returns whether a row was inserted (a redelivered event inserts nothing).
        """
        table = WebhookDeliveryRow.__table__
        stmt = (
            upsert_insert(self.session, table)
            .values(
                id=new_id("whd"),
                endpoint_id=endpoint_id,
                event_id=event_id,
                event_type=event_type,
                status=WebhookDeliveryStatus.PENDING.value,
                attempts=0,
                next_attempt_at=now,
                window_started_at=now,
                last_status=None,
                last_error=None,
                payload=payload.decode(),
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["endpoint_id", "event_id"])
        )
        return rowcount(await self.session.execute(stmt)) == 1

    async def get(self, delivery_id: str) -> WebhookDelivery | None:
        """The delivery ``delivery_id``."""
        row = await self.session.get(WebhookDeliveryRow, delivery_id, populate_existing=True)
        return None if row is None else _delivery(row)

    async def get_by_event(self, endpoint_id: str, event_id: str) -> WebhookDelivery | None:
        """The endpoint's delivery of ``event_id``."""
        stmt = select(WebhookDeliveryRow).where(
            WebhookDeliveryRow.endpoint_id == endpoint_id, WebhookDeliveryRow.event_id == event_id
        )
        row = (await self.session.execute(stmt, execution_options=FRESH)).scalar_one_or_none()
        return None if row is None else _delivery(row)

    async def list_for_endpoint(self, endpoint_id: str, *, limit: int, after: str | None) -> Page[WebhookDelivery]:
        """The endpoint's deliveries, newest first."""
        stmt = select(WebhookDeliveryRow).where(WebhookDeliveryRow.endpoint_id == endpoint_id)
        return await fetch_page(
            self.session, stmt, WebhookDeliveryRow.id, _delivery, limit=limit, after=after, descending=True
        )

    async def page_filtered(
        self,
        endpoint_id: str,
        *,
        event_type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int,
        after: str | None,
    ) -> Page[WebhookDelivery]:
        """The endpoint's deliveries, newest first, only of ``event_type`` and created in [since, until)."""
        stmt = select(WebhookDeliveryRow).where(WebhookDeliveryRow.endpoint_id == endpoint_id)
        if event_type is not None:
            stmt = stmt.where(WebhookDeliveryRow.event_type == event_type)
        stmt = in_period(stmt, WebhookDeliveryRow.created_at, since, until)
        return await fetch_page(
            self.session, stmt, WebhookDeliveryRow.id, _delivery, limit=limit, after=after, descending=True
        )

    async def attempts_of(self, delivery_ids: Sequence[str]) -> dict[str, list[WebhookAttempt]]:
        """The attempts of each delivery, oldest first (one query for a page)."""
        out: dict[str, list[WebhookAttempt]] = {d: [] for d in delivery_ids}
        if not delivery_ids:
            return out
        stmt = (
            select(WebhookAttemptRow)
            .where(WebhookAttemptRow.delivery_id.in_(list(delivery_ids)))
            .order_by(WebhookAttemptRow.delivery_id, WebhookAttemptRow.number, WebhookAttemptRow.id)
        )
        for row in (await self.session.execute(stmt)).scalars():
            out[row.delivery_id].append(_attempt(row))
        return out

    async def due(self, now: datetime, *, limit: int) -> list[WebhookDelivery]:
        """Pending deliveries whose next attempt is due, soonest first."""
        stmt = (
            select(WebhookDeliveryRow)
            .where(
                WebhookDeliveryRow.status == WebhookDeliveryStatus.PENDING.value,
                WebhookDeliveryRow.next_attempt_at <= now,
            )
            .order_by(WebhookDeliveryRow.next_attempt_at, WebhookDeliveryRow.id)
            .limit(limit)
        )
        return [_delivery(row) for row in (await self.session.execute(stmt, execution_options=FRESH)).scalars()]

    async def claim(self, delivery: WebhookDelivery, *, until: datetime) -> bool:
        """Take a due delivery for one attempt: move its ``next_attempt_at`` to ``until`` (the lease),
        unless another process moved it first. Returns whether this caller has it."""
        result = await self.session.execute(
            update(WebhookDeliveryRow)
            .where(
                WebhookDeliveryRow.id == delivery.id,
                WebhookDeliveryRow.status == WebhookDeliveryStatus.PENDING.value,
                WebhookDeliveryRow.next_attempt_at == delivery.next_attempt_at,
            )
            .values(next_attempt_at=until)
        )
        return rowcount(result) == 1

    async def attempted(
        self,
        delivery_id: str,
        *,
        number: int,
        at: datetime,
        status_code: int | None,
        error: str | None,
        duration_ms: int,
        outcome: WebhookDeliveryStatus,
        next_attempt_at: datetime | None,
    ) -> None:
        """Record an attempt and where the delivery stands after it."""
        self.session.add(
            WebhookAttemptRow(
                id=new_id("wha"),
                delivery_id=delivery_id,
                number=number,
                attempted_at=at,
                status_code=status_code,
                error=_cut(error),
                duration_ms=duration_ms,
            )
        )
        await self.session.execute(
            update(WebhookDeliveryRow)
            .where(WebhookDeliveryRow.id == delivery_id)
            .values(
                status=outcome.value,
                attempts=number,
                next_attempt_at=next_attempt_at,
                last_status=status_code,
                last_error=_cut(error),
                updated_at=at,
            )
        )
        await self.session.flush()

    async def finish(self, delivery_id: str, *, error: str, now: datetime) -> None:
        """Fail a pending delivery without an attempt (its endpoint was disabled or deleted meanwhile)."""
        await self.session.execute(
            update(WebhookDeliveryRow)
            .where(WebhookDeliveryRow.id == delivery_id)
            .values(
                status=WebhookDeliveryStatus.FAILED.value, next_attempt_at=None, last_error=_cut(error), updated_at=now
            )
        )

    async def replay(self, delivery_id: str, *, now: datetime) -> None:
        """Send a delivery again, same event id and body, due now, with a fresh retry window."""
        await self.session.execute(
            update(WebhookDeliveryRow)
            .where(WebhookDeliveryRow.id == delivery_id)
            .values(
                status=WebhookDeliveryStatus.PENDING.value, next_attempt_at=now, window_started_at=now, updated_at=now
            )
        )


class WebhookCursorRepository:
    """Queries on ``webhook_cursors``. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, name: str) -> str | None:
        """Where the intake ``name`` stands, or None before its first run."""
        row = await self.session.get(WebhookCursorRow, name, populate_existing=True)
        return None if row is None else row.position

    async def set(self, name: str, position: str, now: datetime) -> None:
        """Move the intake ``name`` to ``position``."""
        stmt = upsert_insert(self.session, WebhookCursorRow.__table__).values(
            name=name, position=position, updated_at=now
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["name"], set_={"position": stmt.excluded.position, "updated_at": now}
        )
        await self.session.execute(stmt)


class WebhookSourceRepository:
    """What the webhook intake reads from other tables: owners of accounts and subscriptions, copy events."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def account_owner(self, account_id: str) -> str | None:
        """The user who linked ``account_id``."""
        stmt = select(AccountRow.user_id).where(AccountRow.id == account_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def subscription_followers(self, subscription_ids: Iterable[str]) -> dict[str, str]:
        """The follower of each subscription."""
        return {sub: user for sub, (user, _) in (await self.subscription_accounts(subscription_ids)).items()}

    async def subscription_accounts(self, subscription_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """The follower and the follower's account of each subscription."""
        ids = sorted(set(subscription_ids))
        if not ids:
            return {}
        stmt = select(SubscriptionRow.id, SubscriptionRow.follower_user_id, SubscriptionRow.account_id).where(
            SubscriptionRow.id.in_(ids)
        )
        return {sub: (user, account) for sub, user, account in (await self.session.execute(stmt)).all()}

    async def copy_events_after(self, after: str | None, kinds: Iterable[str], *, limit: int) -> list[CopyEvent]:
        """Copy events of these kinds with an id above ``after``, oldest first."""
        stmt = select(CopyEventRow).where(CopyEventRow.kind.in_(sorted(set(kinds))))
        if after is not None:
            stmt = stmt.where(CopyEventRow.id > after)
        rows = await self.session.execute(stmt.order_by(CopyEventRow.id).limit(limit))
        return [copy_event_from_row(row) for row in rows.scalars()]

    async def last_copy_event_id(self) -> str | None:
        """The newest copy event's id (where a first run starts: history is not sent)."""
        stmt = select(CopyEventRow.id).order_by(CopyEventRow.id.desc()).limit(1)
        return (await self.session.execute(stmt)).scalar_one_or_none()
