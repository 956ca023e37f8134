"""Users' webhooks at run time: events in, deliveries recorded, attempts made on schedule (ADR 0028).

**Intake.** One task follows the bus topic ``account`` (consumer group ``webhooks``): each event is
mapped (:mod:`~brokerlink.engine.webhooks.events`), its account's owner found, and one delivery row
inserted per subscribed endpoint of that owner, *then* the message is acknowledged. A message
delivered again (a restart, a claim) inserts nothing: deliveries are unique per (endpoint, event id).
Copy events are not on the bus; the same task's poll reads new ``copy_events`` rows after a stored
cursor and delivers them to the subscription's follower. The cursor only passes rows older than
``_SETTLE`` (a row committed late with a smaller id is read on the next pass; rescans insert nothing).

**Apps.** An endpoint an app registered under a consent receives only what the consent covers,
and nothing once it ended (:mod:`~brokerlink.engine.webhooks.consents`): checked when a delivery is
recorded and again before each attempt.

**Delivery.** The schedule is the rows' ``next_attempt_at``. Each poll (every ``webhook_poll_s``, or at
once when this process just recorded deliveries) claims the due rows (an optimistic update moves
``next_attempt_at`` to a lease, so two processes never try one delivery at once), attempts them
concurrently, and records each attempt. Pending work survives a restart: whatever is due is tried
by whichever process polls next; a process that died mid-attempt leaves a lease that runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Sequence
from datetime import datetime, timedelta

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.brokers.backoff import Backoff
from brokerlink.bus.base import EventBus, Message
from brokerlink.config import Settings
from brokerlink.domain.events import decode_event
from brokerlink.engine.links.ingest import ACCOUNT_TOPIC
from brokerlink.engine.webhooks.consents import ConsentGate
from brokerlink.engine.webhooks.delivery import Next, RetryPolicy, Sender
from brokerlink.engine.webhooks.events import COPY_EVENT_TYPES, WebhookEvent, account_event, copy_event, test_event
from brokerlink.engine.webhooks.signing import new_secret
from brokerlink.engine.webhooks.targets import AllowList, check_target
from brokerlink.kit.clock import Clock
from brokerlink.kit.errors import InvalidInput, Unavailable
from brokerlink.kit.ids import new_id, new_ulid
from brokerlink.logs import get_logger
from brokerlink.security.outbound import Resolver, resolve
from brokerlink.security.vault import Vault
from brokerlink.store.db import Database
from brokerlink.store.models_webhooks import WebhookDeliveryStatus
from brokerlink.store.repositories.webhooks import (
    WebhookCursorRepository,
    WebhookDelivery,
    WebhookDeliveryRepository,
    WebhookEndpoint,
    WebhookEndpointRepository,
    WebhookSourceRepository,
)

__all__ = ["GROUP", "SECRET_PURPOSE", "STATE_KEY", "WebhookService"]

_log = get_logger("brokerlink.engine.webhooks")

STATE_KEY = "webhooks"
"""Where the app's state keeps the :class:`WebhookService`."""
SECRET_PURPOSE = "webhook_endpoint_secret"  # noqa: S105 - a vault purpose label, not a secret
GROUP = "webhooks"
COPY_CURSOR = "copy_events"
_SETTLE = timedelta(seconds=30)
_BATCH = 200
_CONCURRENCY = 16


class WebhookService:
    """Records and sends users' webhook deliveries; also what the routes call to manage endpoints."""

    def __init__(
        self,
        database: Database,
        bus: EventBus,
        vault: Vault,
        clock: Clock,
        settings: Settings,
        *,
        resolver: Resolver = resolve,
        rng: random.Random | None = None,
        node: str | None = None,
    ) -> None:
        self.database = database
        self.bus = bus
        self.vault = vault
        self.clock = clock
        self.settings = settings
        self.resolver = resolver
        self.node = node or "node-" + new_ulid().lower()
        self.allow = AllowList(settings.webhook_allowed_hosts)
        self.policy = RetryPolicy(
            window_s=settings.webhook_retry_window_s,
            backoff=Backoff(base_s=settings.webhook_backoff_s, cap_s=settings.webhook_backoff_cap_s),
        )
        self.lease = timedelta(seconds=settings.webhook_timeout_s + 60)
        self.sender = Sender(allow=self.allow, timeout_s=settings.webhook_timeout_s, resolver=resolver)
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrecy
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Follow the bus and start the poll loop (which also resumes what a stopped process left).

        The copy-event cursor is placed before anything runs (on a first start ever), so the service
        writes nothing on its own later while there is nothing to deliver."""
        await self.scan_copy_events()
        self._tasks = [
            asyncio.create_task(self._follow(), name="webhooks-bus"),
            asyncio.create_task(self._poll_loop(), name="webhooks-poll"),
        ]
        ready = asyncio.create_task(self._ready.wait())
        await asyncio.wait({self._tasks[0], ready}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()

    async def stop(self) -> None:
        """Stop; attempts in flight are cancelled (their leases run out, and they are tried again)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.sender.close()

    def wake(self) -> None:
        """Run the poll now (new deliveries were recorded)."""
        self._wake.set()

    async def _follow(self) -> None:
        consumer = self.bus.consumer(ACCOUNT_TOPIC, GROUP, self.node, start="latest")
        block_ms = 0
        while True:
            try:
                messages = await consumer.read(max_count=100, block_ms=block_ms)
                self._ready.set()
                block_ms = 1000
                for message in messages:
                    await self.handle_account_message(message)
                    await consumer.ack(message)
            except Unavailable as exc:
                _log.warning("webhooks_bus_unavailable", error=str(exc))
                await asyncio.sleep(self.settings.webhook_poll_s)
            except Exception:  # noqa: BLE001 - intake must outlive one bad message; it stays pending, logged
                _log.exception("webhooks_intake_failed")
                await asyncio.sleep(self.settings.webhook_poll_s)

    async def _poll_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.webhook_poll_s)
            self._wake.clear()
            try:
                await self.scan_copy_events()
                await self.run_due()
            except Exception:  # noqa: BLE001 - the next poll tries again; logged with its cause
                _log.exception("webhooks_poll_failed")

    # --- intake ----------------------------------------------------------------------------------

    async def handle_account_message(self, message: Message) -> int:
        """Record deliveries for one bus ``account`` message; returns how many are new."""
        try:
            event = decode_event(message.payload)
        except InvalidInput:
            _log.error("webhooks_event_malformed", message_id=message.id)
            return 0
        hook = account_event(event, message.payload)
        if hook is None:
            return 0
        async with self.database.session() as session:
            owner = await WebhookSourceRepository(session).account_owner(event.account_id)
            if owner is None:
                return 0
            added = await self._record(session, owner, hook, event.account_id)
            await session.commit()
        if added:
            self.wake()
        return added

    async def scan_copy_events(self) -> int:
        """Record deliveries for copy events stored since the last scan; returns how many are new."""
        now = self.clock.now()
        added = 0
        async with self.database.session() as session:
            cursors = WebhookCursorRepository(session)
            sources = WebhookSourceRepository(session)
            after = await cursors.get(COPY_CURSOR)
            if after is None:  # first run ever: start from now, history is not sent
                start = await sources.last_copy_event_id()
                await cursors.set(COPY_CURSOR, start or "cpe_", now)
                await session.commit()
                return 0
            events = await sources.copy_events_after(after, COPY_EVENT_TYPES, limit=_BATCH)
            followers = await sources.subscription_accounts(e.subscription_id for e in events)
            settled, contiguous = after, True
            for event in events:
                hook = copy_event(event)
                follower = followers.get(event.subscription_id)
                if hook is not None and follower is not None:
                    added += await self._record(session, follower[0], hook, follower[1])
                contiguous = contiguous and event.created_at <= now - _SETTLE
                if contiguous:
                    settled = event.id
            if settled != after:
                await cursors.set(COPY_CURSOR, settled, now)
            await session.commit()
        if added:
            self.wake()
        return added

    async def _record(self, session: AsyncSession, owner: str, hook: WebhookEvent, account_id: str) -> int:
        repository = WebhookEndpointRepository(session)
        endpoints = await repository.subscribed([owner], hook.type)
        body = hook.encode()
        deliveries = WebhookDeliveryRepository(session)
        gate = ConsentGate(session, self.clock.now())
        added = 0
        for endpoint in endpoints:
            ended = await gate.ended(endpoint)
            if ended is not None:
                await repository.disable(endpoint.id, reason=ended, now=self.clock.now())
                continue
            if not await gate.covers(endpoint, hook.type, account_id):
                continue
            added += await deliveries.add_if_new(
                endpoint_id=endpoint.id, event_id=hook.id, event_type=hook.type, payload=body, now=self.clock.now()
            )
        return added

    # --- delivery --------------------------------------------------------------------------------

    async def run_due(self, *, limit: int = _BATCH) -> int:
        """Claim and attempt every delivery due now (up to ``limit``); returns how many were attempted."""
        now = self.clock.now()
        claimed: list[WebhookDelivery] = []
        async with self.database.session() as session:
            deliveries = WebhookDeliveryRepository(session)
            claimed.extend(
                [d for d in await deliveries.due(now, limit=limit) if await deliveries.claim(d, until=now + self.lease)]
            )
            await session.commit()
        if not claimed:
            return 0
        gate = asyncio.Semaphore(_CONCURRENCY)

        async def one(delivery: WebhookDelivery) -> None:
            async with gate:
                try:
                    await self._attempt(delivery)
                except Exception:  # noqa: BLE001 - its lease runs out and it is tried again; logged
                    _log.exception("webhook_attempt_failed", delivery_id=delivery.id)

        # A task group, not gather: cancelled (the service stopping), it waits for every attempt to
        # finish unwinding, where gather returns at the first cancelled one and leaves the others
        # running past stop() - closing their database sessions after the database was disposed,
        # which never finishes (a test's event loop then hung at close).
        async with asyncio.TaskGroup() as group:
            for delivery in claimed:
                group.create_task(one(delivery))
        return len(claimed)

    async def _attempt(self, delivery: WebhookDelivery) -> None:
        async with self.database.session() as session:
            endpoint = await WebhookEndpointRepository(session).get(delivery.endpoint_id)
            if endpoint is None:
                return  # deleted meanwhile: its deliveries went with it
            ended = await ConsentGate(session, self.clock.now()).ended(endpoint)
            if ended is not None or (not endpoint.enabled and delivery.event_type != "webhook.test"):
                if ended is not None:
                    await WebhookEndpointRepository(session).disable(endpoint.id, reason=ended, now=self.clock.now())
                await WebhookDeliveryRepository(session).finish(
                    delivery.id, error=ended or "endpoint disabled", now=self.clock.now()
                )
                await session.commit()
                return
            secret = await self._secret(session, endpoint)
        now = self.clock.now()
        outcome = await self.sender.attempt(
            endpoint.url, secret, delivery.event_id, delivery.payload.encode(), timestamp=int(now.timestamp())
        )
        number = delivery.attempts + 1
        done = self.clock.now()
        if outcome.ok:
            step, at = Next.DONE, None
        else:
            step, at = self.policy.after(
                number, retryable=outcome.retryable, now=done, window_start=delivery.window_started_at, rng=self._rng
            )
        status = {
            Next.DONE: WebhookDeliveryStatus.DELIVERED,
            Next.RETRY: WebhookDeliveryStatus.PENDING,
        }.get(step, WebhookDeliveryStatus.FAILED)
        async with self.database.session() as session:
            await WebhookDeliveryRepository(session).attempted(
                delivery.id,
                number=number,
                at=now,
                status_code=outcome.status_code,
                error=outcome.error,
                duration_ms=outcome.duration_ms,
                outcome=status,
                next_attempt_at=at,
            )
            endpoints = WebhookEndpointRepository(session)
            if step is Next.DONE:
                await endpoints.succeeded(endpoint.id, done)
            elif step is Next.EXHAUSTED:
                await self._maybe_disable(endpoints, endpoint.id, delivery, outcome.error or "", done)
            await session.commit()
        log = _log.info if step in (Next.DONE, Next.RETRY) else _log.warning
        log("webhook_" + step.value, endpoint_id=endpoint.id, event_id=delivery.event_id, attempt=number)

    async def _maybe_disable(
        self,
        endpoints: WebhookEndpointRepository,
        endpoint_id: str,
        delivery: WebhookDelivery,
        error: str,
        now: datetime,
    ) -> None:
        current = await endpoints.get(endpoint_id)
        if current is None or (
            current.last_success_at is not None and current.last_success_at >= delivery.window_started_at
        ):
            return
        hours = self.policy.window_s / 3600
        reason = (
            f"every attempt failed for {hours:g} h (event {delivery.event_id}, last error: {error}); "
            "fix the receiver, then re-enable the endpoint"
        )
        if await endpoints.disable(endpoint_id, reason=reason, now=now):
            _log.warning("webhook_endpoint_disabled", endpoint_id=endpoint_id)

    async def _secret(self, session: AsyncSession, endpoint: WebhookEndpoint) -> str:
        if endpoint.secret_ref is None:
            raise LookupError(f"webhook endpoint {endpoint.id} has no secret")
        return (await self.vault.get(session, endpoint.secret_ref, owner_id=endpoint.id)).decode()

    # --- management (the routes; each flushes, the request commits) -------------------------------

    async def check_url(self, url: str) -> str:
        """``url`` if endpoints may point there, else a 422 naming the field ``url``."""
        return await check_target(url, self.allow, resolver=self.resolver)

    async def create_endpoint(
        self,
        session: AsyncSession,
        *,
        user_id: str,
        url: str,
        description: str,
        event_types: Sequence[str],
        client_id: str | None = None,
        consent_id: str | None = None,
    ) -> tuple[WebhookEndpoint, str]:
        """Check ``url``, store the endpoint and a new signing secret (sealed in the vault); return both.

        The secret is returned this once, to be shown to the user; it is never readable again. An
        app's endpoint carries its ``client_id`` and the ``consent_id`` it acts under.
        """
        await self.check_url(url)
        now = self.clock.now()
        endpoints = WebhookEndpointRepository(session)
        endpoint = await endpoints.add(
            endpoint_id=new_id("whe"), user_id=user_id, url=url, description=description,
            event_types=event_types, now=now, client_id=client_id, consent_id=consent_id,
        )  # fmt: skip
        secret = new_secret()
        ref = await self.vault.put(
            session, owner_id=endpoint.id, purpose=SECRET_PURPOSE, plaintext=secret.encode(), now=now
        )
        await endpoints.set_secret_ref(endpoint.id, ref)
        return msgspec.structs.replace(endpoint, secret_ref=ref), secret

    async def delete_endpoint(self, session: AsyncSession, endpoint: WebhookEndpoint) -> None:
        """Delete an endpoint, its deliveries and its secret."""
        if endpoint.secret_ref is not None:
            await self.vault.delete(session, endpoint.secret_ref)
        await WebhookEndpointRepository(session).delete(endpoint.id)

    async def send_test(self, session: AsyncSession, endpoint: WebhookEndpoint) -> WebhookDelivery:
        """Record a ``webhook.test`` delivery to ``endpoint``, due now."""
        now = self.clock.now()
        hook = test_event(new_id("evt"), endpoint.id, now)
        deliveries = WebhookDeliveryRepository(session)
        await deliveries.add_if_new(
            endpoint_id=endpoint.id, event_id=hook.id, event_type=hook.type, payload=hook.encode(), now=now
        )
        delivery = await deliveries.get_by_event(endpoint.id, hook.id)
        assert delivery is not None  # noqa: S101 - inserted just now in this transaction
        return delivery

    async def replay(self, session: AsyncSession, delivery: WebhookDelivery) -> WebhookDelivery:
        """Send ``delivery`` again (same event id and body), due now, with a fresh retry window."""
        deliveries = WebhookDeliveryRepository(session)
        await deliveries.replay(delivery.id, now=self.clock.now())
        replayed = await deliveries.get(delivery.id)
        assert replayed is not None  # noqa: S101 - the caller holds it
        return replayed
