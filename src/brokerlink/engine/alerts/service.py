"""The alert service at run time: observations in, stored alerts, admin-channel events and webhooks out.

**Listening.** :func:`brokerlink.observe.add_listener` calls :meth:`AlertService.listen`
synchronously, in the task (or thread) that observed something: a login, a request, a copy. It
runs the rules (:class:`~brokerlink.engine.alerts.rules.RuleEvaluator`: in-memory counters, no I/O,
never awaits) and puts the few verdicts they return on a bounded queue. It never touches the
database or the network, so an alert can never slow or fail what it watches; when the queue is
full a verdict is dropped and counted (``dropped``).

**Writing.** One background task takes verdicts off the queue, stores them (a firing opens an alert
or counts another firing of the active one with the same key; a clearing resolves it), records a
pending delivery per webhook in the same transaction, then publishes the event on the bus topic
``alerts`` (every process's admin channel reads it) and hands the deliveries to the
:class:`~brokerlink.engine.alerts.webhooks.WebhookSender`, which runs each in a task of its own.

**Ticking.** A second task calls :meth:`RuleEvaluator.tick` every ``alert_tick_s``: the broker-down
rule fires there, and emptied windows are dropped.

Each process evaluates what it observes itself; with several processes, count thresholds apply per
process (ADR 0019).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from datetime import timedelta

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink import observe
from brokerlink.brokers.backoff import Backoff
from brokerlink.bus.base import EventBus
from brokerlink.config import Settings
from brokerlink.engine.alerts.events import ALERTS_TOPIC, AlertEvent, EventType
from brokerlink.engine.alerts.rules import Clearing, Firing, RuleEvaluator, Thresholds, Verdict
from brokerlink.engine.alerts.webhooks import (
    SECRET_PURPOSE,
    Resolver,
    RetryPolicy,
    WebhookSender,
    check_url,
    new_secret,
    resolve,
)
from brokerlink.kit.clock import Clock
from brokerlink.kit.errors import Unavailable
from brokerlink.kit.ids import new_id
from brokerlink.logs import get_logger
from brokerlink.security.vault import Vault
from brokerlink.store.db import Database
from brokerlink.store.repositories.alerts import (
    Alert,
    AlertDeliveryRepository,
    AlertRepository,
    AlertWebhook,
    AlertWebhookRepository,
)

_log = get_logger("brokerlink.engine.alerts")

SYSTEM = "system"
"""``resolved_by`` of an alert whose cause went away by itself."""


class Announce(msgspec.Struct, frozen=True, kw_only=True):
    """An alert changed elsewhere (an admin acknowledged or resolved it): tell the channel and webhooks."""

    alert: Alert
    type: EventType


Job = Verdict | Announce


def thresholds_from(settings: Settings) -> Thresholds:
    """The rules' thresholds from the ``alert_*`` settings."""
    return Thresholds(
        auth_failures=settings.alert_auth_failures,
        auth_window_s=settings.alert_auth_window_s,
        client_requests=settings.alert_client_requests,
        client_window_s=60,
        broker_down_s=settings.alert_broker_down_s,
        copy_latency_ms=settings.alert_copy_latency_ms,
        copy_latency_window_s=settings.alert_copy_latency_window_s,
        reconcile_drift=settings.alert_reconcile_drift,
        max_keys=settings.alert_max_keys,
    )


class AlertService:
    """Evaluates the alert rules in this process and stores, publishes and delivers what they raise."""

    def __init__(
        self,
        database: Database,
        bus: EventBus,
        vault: Vault,
        clock: Clock,
        settings: Settings,
        *,
        resolver: Resolver = resolve,
    ) -> None:
        self.database = database
        self.bus = bus
        self.vault = vault
        self.clock = clock
        self.settings = settings
        self.resolver = resolver
        self.evaluator = RuleEvaluator(thresholds_from(settings))
        self.sender = WebhookSender(
            database,
            vault,
            clock,
            policy=RetryPolicy(
                attempts=settings.alert_webhook_attempts,
                backoff=Backoff(base_s=settings.alert_webhook_backoff_s, cap_s=settings.alert_webhook_backoff_cap_s),
                max_wait_s=settings.alert_webhook_max_s,
            ),
            timeout_s=settings.alert_webhook_timeout_s,
            allow_loopback=settings.alert_webhook_allow_loopback,
            resolver=resolver,
        )
        self.dropped = 0
        """Verdicts dropped because the queue was full."""
        self._queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=settings.alert_queue_size)
        self._lock = threading.Lock()  # observations may come from worker threads (sync handlers)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._remove_listener: Callable[[], None] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen to observations (unless ``alerts_enabled`` is off), and start the writer and the ticker."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._tasks = [asyncio.create_task(self._write_loop(), name="alerts-writer")]
        if self.settings.alerts_enabled:  # off: admins' acknowledgements still reach the channel
            self._tasks.append(asyncio.create_task(self._tick_loop(), name="alerts-ticker"))
            self._remove_listener = observe.add_listener(self.listen)
        await self._resume_deliveries()

    async def _resume_deliveries(self) -> None:
        """Send again what a stopped process left pending, under the same event ids.

        A live sender touches its delivery's row at least every ``backoff cap + timeout``; a pending
        row untouched for longer than that has no sender left. Should that sender still be alive
        after all, the receiver sees the same ``webhook-id`` twice and drops the second.
        """
        idle_s = self.settings.alert_webhook_backoff_cap_s + self.settings.alert_webhook_timeout_s
        before = self.clock.now() - timedelta(seconds=idle_s)
        try:
            async with self.database.session() as session:
                pending = await AlertDeliveryRepository(session).stale_pending(before=before)
                webhooks = {w.id: w for w in await AlertWebhookRepository(session).list_all()}
        except Exception:  # noqa: BLE001 - a failed resume must not stop the server; logged
            _log.exception("alert_deliveries_resume_failed")
            return
        for delivery in pending:
            webhook = webhooks.get(delivery.webhook_id)
            if webhook is not None:
                self.sender.send(
                    delivery.id, delivery.event_id, delivery.payload.encode(), webhook, attempted=delivery.attempts
                )
        if pending:
            _log.info("alert_deliveries_resumed", count=len(pending))

    async def stop(self) -> None:
        """Stop listening; verdicts still queued are dropped, deliveries in flight cancelled."""
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.sender.close()

    async def idle(self) -> None:
        """Wait until every queued verdict is stored and every delivery finished (tests)."""
        await self._queue.join()
        await self.sender.idle()

    # --- the listener (synchronous, in the observer's task) ------------------------------------

    def listen(self, observation: observe.Observation) -> None:
        """Run the rules on one observation and queue what they raise. Never blocks, never raises."""
        with self._lock:
            verdicts = self.evaluator.observe(observation, self.clock.monotonic_ns())
        for verdict in verdicts:
            self._submit(verdict)

    def announce(self, alert: Alert, event_type: EventType) -> None:
        """Push an alert changed by an admin to the channel and the webhooks (queued, like a firing)."""
        self._submit(Announce(alert=alert, type=event_type))

    def _submit(self, job: Job) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            self._put(job)
        else:
            loop.call_soon_threadsafe(self._put, job)

    def _put(self, job: Job) -> None:
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                _log.error("alerts_dropped", dropped=self.dropped, queue_size=self._queue.maxsize)

    # --- background tasks ----------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.alert_tick_s)
            with self._lock:
                verdicts = self.evaluator.tick(self.clock.monotonic_ns())
            for verdict in verdicts:
                self._submit(verdict)

    async def _write_loop(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._handle(job)
            except Exception:  # noqa: BLE001 - one bad write must not end alerting; logged with its cause
                _log.exception("alert_write_failed", job=type(job).__name__)
            finally:
                self._queue.task_done()

    async def _handle(self, job: Job) -> None:
        now = self.clock.now()
        async with self.database.session() as session:
            if isinstance(job, Firing):
                alert, created = await AlertRepository(session).record(
                    rule=job.rule.value,
                    severity=job.severity.value,
                    subject=job.subject,
                    dedup_key=job.dedup_key,
                    message=job.message,
                    labels=job.labels,
                    now=now,
                )
                event_type: EventType = "alert.opened" if created else "alert.updated"
                if created:
                    _log.warning("alert_opened", alert_id=alert.id, rule=alert.rule, subject=alert.subject)
            elif isinstance(job, Clearing):
                repository = AlertRepository(session)
                active = await repository.active(job.dedup_key)
                if active is None or not await repository.resolve(active.id, by=SYSTEM, now=now):
                    return
                resolved = await repository.get(active.id)
                assert resolved is not None  # noqa: S101 - resolved in this transaction
                alert, event_type = resolved, "alert.resolved"
            else:
                alert, event_type = job.alert, job.type
            event = AlertEvent.new(alert, event_type, now=now)
            body = event.encode()
            deliveries = await self._record_deliveries(session, event, body)
            await session.commit()
        try:
            await self.bus.publish(ALERTS_TOPIC, alert.id, body)
        except Unavailable as exc:  # stored and delivered anyway; only the live channel misses it
            _log.warning("alert_publish_failed", alert_id=alert.id, error=str(exc))
        for delivery_id, webhook in deliveries:
            self.sender.send(delivery_id, event.id, body, webhook)

    async def _record_deliveries(
        self, session: AsyncSession, event: AlertEvent, body: bytes
    ) -> list[tuple[str, AlertWebhook]]:
        out = []
        deliveries = AlertDeliveryRepository(session)
        for webhook in await AlertWebhookRepository(session).list_all():
            delivery = await deliveries.add(
                event_id=event.id, alert_id=event.data.id, webhook_id=webhook.id, payload=body, now=event.timestamp
            )
            out.append((delivery.id, webhook))
        return out

    # --- webhook configuration (admin routes) --------------------------------------------------

    async def create_webhook(self, session: AsyncSession, *, url: str, created_by: str) -> tuple[AlertWebhook, str]:
        """Check ``url``, store the webhook and a new signing secret (in the vault); returns both.

        The secret is returned this once, to be shown to the admin; it is never readable again.
        Flushes; the caller commits.
        """
        await check_url(url, allow_loopback=self.settings.alert_webhook_allow_loopback, resolver=self.resolver)
        now = self.clock.now()
        webhooks = AlertWebhookRepository(session)
        webhook = await webhooks.add(webhook_id=new_id("awh"), url=url, created_by=created_by, now=now)
        secret = new_secret()
        secret_ref = await self.vault.put(
            session, owner_id=webhook.id, purpose=SECRET_PURPOSE, plaintext=secret.encode(), now=now
        )
        await webhooks.set_secret_ref(webhook.id, secret_ref)
        return msgspec.structs.replace(webhook, secret_ref=secret_ref), secret

    async def delete_webhook(self, session: AsyncSession, webhook_id: str) -> bool:
        """Delete a webhook and its secret. Returns whether it existed. Flushes; the caller commits."""
        webhooks = AlertWebhookRepository(session)
        webhook = await webhooks.get(webhook_id)
        if webhook is None:
            return False
        if webhook.secret_ref is not None:
            await self.vault.delete(session, webhook.secret_ref)
        return await webhooks.delete(webhook_id)
