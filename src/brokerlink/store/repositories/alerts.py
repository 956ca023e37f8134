"""Alerts, alert webhooks and their deliveries (``alerts``, ``alert_webhooks``, ``alert_deliveries``).

Flushes, never commits: the alert writer and the admin routes are the commit boundaries.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.kit.ids import new_id
from brokerlink.store.models_alerts import (
    AlertDeliveryRow,
    AlertRow,
    AlertStatus,
    AlertWebhookRow,
    DeliveryStatus,
)
from brokerlink.store.repositories._common import FRESH, Page, fetch_page, in_period, rowcount


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    """An alert as stored."""

    id: str
    rule: str
    severity: str
    subject: str
    dedup_key: str
    status: AlertStatus
    message: str
    labels: dict[str, str]
    count: int
    first_seen: datetime
    last_seen: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None


class AlertWebhook(msgspec.Struct, frozen=True, kw_only=True):
    """A webhook target (its secret stays in the vault)."""

    id: str
    url: str
    secret_ref: str | None
    created_by: str
    created_at: datetime


class AlertDelivery(msgspec.Struct, frozen=True, kw_only=True):
    """One alert event's delivery to one webhook."""

    id: str
    event_id: str
    alert_id: str
    webhook_id: str
    status: DeliveryStatus
    attempts: int
    last_status: int | None
    last_error: str | None
    payload: str
    created_at: datetime
    updated_at: datetime


def _alert(row: AlertRow) -> Alert:
    return Alert(
        id=row.id,
        rule=row.rule,
        severity=row.severity,
        subject=row.subject,
        dedup_key=row.dedup_key,
        status=AlertStatus(row.status),
        message=row.message,
        labels=msgspec.json.decode(row.labels, type=dict[str, str]),
        count=row.count,
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        acknowledged_at=row.acknowledged_at,
        acknowledged_by=row.acknowledged_by,
        resolved_at=row.resolved_at,
        resolved_by=row.resolved_by,
    )


def _webhook(row: AlertWebhookRow) -> AlertWebhook:
    return AlertWebhook(
        id=row.id, url=row.url, secret_ref=row.secret_ref, created_by=row.created_by, created_at=row.created_at
    )


def _delivery(row: AlertDeliveryRow) -> AlertDelivery:
    return AlertDelivery(
        id=row.id,
        event_id=row.event_id,
        alert_id=row.alert_id,
        webhook_id=row.webhook_id,
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        last_status=row.last_status,
        last_error=row.last_error,
        payload=row.payload,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


_ACTIVE = AlertRow.status != AlertStatus.RESOLVED.value


class AlertRepository:
    """Queries on ``alerts``. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, alert_id: str) -> Alert | None:
        """The alert ``alert_id``."""
        row = await self.session.get(AlertRow, alert_id, populate_existing=True)
        return None if row is None else _alert(row)

    async def active(self, dedup_key: str) -> Alert | None:
        """The open or acknowledged alert with this key, if any (at most one: a partial unique index)."""
        stmt = select(AlertRow).where(AlertRow.dedup_key == dedup_key, _ACTIVE)
        row = (await self.session.execute(stmt, execution_options=FRESH)).scalar_one_or_none()
        return None if row is None else _alert(row)

    async def record(
        self,
        *,
        rule: str,
        severity: str,
        subject: str,
        dedup_key: str,
        message: str,
        labels: dict[str, str],
        now: datetime,
    ) -> tuple[Alert, bool]:
        """Open an alert, or count another firing on the active one with the same key.

        Returns the alert and whether it is new. When another process opens the same key at the
        same moment, the unique index refuses the second insert and this becomes an update.
        """
        for _ in range(2):
            current = await self.active(dedup_key)
            if current is not None:
                await self.session.execute(
                    update(AlertRow)
                    .where(AlertRow.id == current.id)
                    .values(
                        count=AlertRow.count + 1,
                        last_seen=now,
                        message=message,
                        labels=msgspec.json.encode(labels).decode(),
                    )
                )
                updated = await self.get(current.id)
                assert updated is not None  # noqa: S101 - we hold the row's id from this transaction
                return updated, False
            row = AlertRow(
                id=new_id("alr"),
                rule=rule,
                severity=severity,
                subject=subject[:256],
                dedup_key=dedup_key,
                status=AlertStatus.OPEN.value,
                message=message,
                labels=msgspec.json.encode(labels).decode(),
                count=1,
                first_seen=now,
                last_seen=now,
            )
            try:
                async with self.session.begin_nested():
                    self.session.add(row)
            except IntegrityError:
                continue  # opened by another process just now: update that one
            return _alert(row), True
        raise RuntimeError(f"could not record alert {dedup_key!r}")  # pragma: no cover - two races in a row

    async def acknowledge(self, alert_id: str, *, by: str, now: datetime) -> bool:
        """Mark an open alert acknowledged. Returns whether it was open."""
        result = await self.session.execute(
            update(AlertRow)
            .where(AlertRow.id == alert_id, AlertRow.status == AlertStatus.OPEN.value)
            .values(status=AlertStatus.ACKNOWLEDGED.value, acknowledged_at=now, acknowledged_by=by)
        )
        return rowcount(result) == 1

    async def resolve(self, alert_id: str, *, by: str, now: datetime) -> bool:
        """Mark an active alert resolved. Returns whether it was active."""
        result = await self.session.execute(
            update(AlertRow)
            .where(AlertRow.id == alert_id, _ACTIVE)
            .values(status=AlertStatus.RESOLVED.value, resolved_at=now, resolved_by=by)
        )
        return rowcount(result) == 1

    async def list_alerts(
        self,
        *,
        status: AlertStatus | None = None,
        rule: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> Page[Alert]:
        """Alerts, newest first, optionally of one status and rule, first seen in [since, until)."""
        stmt = select(AlertRow)
        if status is not None:
            stmt = stmt.where(AlertRow.status == status.value)
        if rule is not None:
            stmt = stmt.where(AlertRow.rule == rule)
        stmt = in_period(stmt, AlertRow.first_seen, since, until)
        return await fetch_page(self.session, stmt, AlertRow.id, _alert, limit=limit, after=after, descending=True)


class AlertWebhookRepository:
    """Queries on ``alert_webhooks``. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, *, webhook_id: str, url: str, created_by: str, now: datetime) -> AlertWebhook:
        """Insert a webhook (its secret is stored afterwards, owned by its id)."""
        row = AlertWebhookRow(id=webhook_id, url=url, secret_ref=None, created_by=created_by, created_at=now)
        self.session.add(row)
        await self.session.flush()
        return _webhook(row)

    async def set_secret_ref(self, webhook_id: str, secret_ref: str) -> None:
        """Point the webhook at its vault secret."""
        await self.session.execute(
            update(AlertWebhookRow).where(AlertWebhookRow.id == webhook_id).values(secret_ref=secret_ref)
        )

    async def get(self, webhook_id: str) -> AlertWebhook | None:
        """The webhook ``webhook_id``."""
        row = await self.session.get(AlertWebhookRow, webhook_id, populate_existing=True)
        return None if row is None else _webhook(row)

    async def list_all(self) -> list[AlertWebhook]:
        """Every webhook, oldest first (an operator configures a handful)."""
        rows = await self.session.execute(select(AlertWebhookRow).order_by(AlertWebhookRow.id))
        return [_webhook(row) for row in rows.scalars()]

    async def delete(self, webhook_id: str) -> bool:
        """Delete a webhook (its deliveries go with it). Returns whether it existed."""
        result = await self.session.execute(delete(AlertWebhookRow).where(AlertWebhookRow.id == webhook_id))
        return rowcount(result) == 1


class AlertDeliveryRepository:
    """Queries on ``alert_deliveries``. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self, *, event_id: str, alert_id: str, webhook_id: str, payload: bytes, now: datetime
    ) -> AlertDelivery:
        """Record a delivery about to be attempted, with the body it sends."""
        row = AlertDeliveryRow(
            id=new_id("adl"),
            event_id=event_id,
            alert_id=alert_id,
            webhook_id=webhook_id,
            status=DeliveryStatus.PENDING.value,
            attempts=0,
            last_status=None,
            last_error=None,
            payload=payload.decode(),
            created_at=now,
            updated_at=now,
        )
        self.session.add(row)
        await self.session.flush()
        return _delivery(row)

    async def attempted(
        self,
        delivery_id: str,
        *,
        status: DeliveryStatus,
        attempts: int,
        last_status: int | None,
        last_error: str | None,
        now: datetime,
    ) -> None:
        """Record an attempt's outcome."""
        await self.session.execute(
            update(AlertDeliveryRow)
            .where(AlertDeliveryRow.id == delivery_id)
            .values(
                status=status.value,
                attempts=attempts,
                last_status=last_status,
                last_error=None if last_error is None else last_error[:1000],
                updated_at=now,
            )
        )

    async def stale_pending(self, *, before: datetime, limit: int = 1000) -> list[AlertDelivery]:
        """Pending deliveries nobody has touched since ``before`` (their sender died), oldest first."""
        stmt = (
            select(AlertDeliveryRow)
            .where(AlertDeliveryRow.status == DeliveryStatus.PENDING.value, AlertDeliveryRow.updated_at < before)
            .order_by(AlertDeliveryRow.id)
            .limit(limit)
        )
        rows = await self.session.execute(stmt, execution_options=FRESH)
        return [_delivery(row) for row in rows.scalars()]

    async def list_for_alert(self, alert_id: str) -> list[AlertDelivery]:
        """The deliveries of an alert's events, oldest first."""
        stmt = select(AlertDeliveryRow).where(AlertDeliveryRow.alert_id == alert_id).order_by(AlertDeliveryRow.id)
        rows = await self.session.execute(stmt, execution_options=FRESH)
        return [_delivery(row) for row in rows.scalars()]
