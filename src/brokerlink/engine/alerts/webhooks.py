"""Alert webhooks: which URLs are acceptable, how a delivery is signed, and how it is retried.

**Targets.** An admin configures a URL; the server POSTs every alert event there. That makes the
URL a server-side request an admin chooses, so it must not reach inside the network
(SECURITY.md item 30): ``https`` only, no credentials in the URL, and no host that resolves to a
loopback, private, link-local, multicast or reserved address. The check runs when the webhook is
created and again before each delivery (a name may be re-pointed after it was accepted); the
check itself is :mod:`brokerlink.security.outbound`'s, shared with client ``jwks_uri`` fetches.
``alert_webhook_allow_loopback`` (tests) admits ``http`` to loopback hosts, and nothing more.

**Signing** follows Standard Webhooks: the secret is ``whsec_`` + base64 of 32 random bytes;
``webhook-signature`` is ``v1,`` + base64 HMAC-SHA256 over ``{webhook-id}.{webhook-timestamp}.{body}``.
The secret is shown once at creation and stored only in the vault.

**Retries.** 5xx, 429, timeouts and connection failures are retried with exponential backoff and
full jitter, up to ``alert_webhook_attempts`` attempts and ``alert_webhook_max_s`` of waiting, always
with the same ``webhook-id``; any other answer is final. Redirects are not followed (a redirect to
an internal address would get around the target check).
"""

from __future__ import annotations

import asyncio
import random

import httpx
import msgspec

from brokerlink.brokers.backoff import Backoff
from brokerlink.engine.webhooks.signing import SECRET_PREFIX, new_secret, sign, signed_headers, verify
from brokerlink.kit.clock import Clock
from brokerlink.kit.errors import InvalidInput
from brokerlink.logs import get_logger
from brokerlink.security.outbound import Resolver, check_public_url, resolve
from brokerlink.security.vault import Vault
from brokerlink.store.db import Database
from brokerlink.store.models_alerts import DeliveryStatus
from brokerlink.store.repositories.alerts import AlertDeliveryRepository, AlertWebhook

__all__ = [
    "SECRET_PREFIX",
    "SECRET_PURPOSE",
    "Resolver",
    "RetryPolicy",
    "WebhookSender",
    "check_url",
    "new_secret",
    "resolve",
    "sign",
    "signed_headers",
    "verify",
]

_log = get_logger("brokerlink.engine.alerts.webhooks")

SECRET_PURPOSE = "alert_webhook_secret"  # noqa: S105 - a vault purpose label, not a secret
check_url = check_public_url
"""The target check (:func:`brokerlink.security.outbound.check_public_url`), under its historical name."""


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How hard one delivery tries (settings ``alert_webhook_*``)."""

    attempts: int = 6
    backoff: Backoff = Backoff(base_s=1.0, cap_s=60.0)
    max_wait_s: float = 600.0
    """Total backoff a delivery may spend waiting, whatever is left of its attempts."""


class WebhookSender:
    """Delivers events to webhooks, each delivery in a task of its own, recording every attempt."""

    def __init__(
        self,
        database: Database,
        vault: Vault,
        clock: Clock,
        *,
        policy: RetryPolicy,
        timeout_s: float,
        allow_loopback: bool,
        resolver: Resolver = resolve,
        max_in_flight: int = 1000,
        rng: random.Random | None = None,
    ) -> None:
        self.database = database
        self.vault = vault
        self.clock = clock
        self.policy = policy
        self.allow_loopback = allow_loopback
        self.resolver = resolver
        self.max_in_flight = max_in_flight
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrecy
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), follow_redirects=False, trust_env=False)
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, delivery_id: str, event_id: str, body: bytes, webhook: AlertWebhook, *, attempted: int = 0) -> None:
        """Start delivering (returns at once; the caller never waits on a webhook).

        ``attempted``: attempts an earlier process already made (a delivery resumed after a restart).
        """
        if len(self._tasks) >= self.max_in_flight:
            _log.error("alert_webhook_overloaded", webhook_id=webhook.id, event_id=event_id)
            task = asyncio.create_task(
                self._record(delivery_id, DeliveryStatus.FAILED, 0, None, "too many deliveries in flight")
            )
        else:
            task = asyncio.create_task(
                self._deliver(delivery_id, event_id, body, webhook, attempted), name=f"webhook-{event_id}"
            )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def idle(self) -> None:
        """Wait for the deliveries in flight (tests, and a graceful stop)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Cancel deliveries in flight (they stay recorded as pending) and close the HTTP client."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._http.aclose()

    async def _deliver(
        self, delivery_id: str, event_id: str, body: bytes, webhook: AlertWebhook, attempted: int
    ) -> None:
        try:
            secret = await self._secret(webhook)
        except Exception as exc:  # noqa: BLE001 - a vault failure fails this delivery, logged, and nothing else
            _log.exception("alert_webhook_secret_unavailable", webhook_id=webhook.id)
            await self._record(delivery_id, DeliveryStatus.FAILED, 0, None, f"secret unavailable: {exc}")
            return
        waited = 0.0
        for attempt in range(attempted + 1, max(self.policy.attempts, attempted + 1) + 1):
            status: int | None = None
            error: str | None = None
            retry = True
            try:
                await check_url(webhook.url, allow_loopback=self.allow_loopback, resolver=self.resolver)
                timestamp = int(self.clock.now().timestamp())
                headers = signed_headers(secret, event_id, timestamp, body)
                response = await self._http.post(webhook.url, content=body, headers=headers)
                status = response.status_code
                retry = status >= 500 or status == 429
                if not 200 <= status < 300:
                    error = f"HTTP {status}"
            except InvalidInput as exc:
                error, retry = exc.detail, False
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            delay = self.policy.backoff.delay(attempt - 1, self._rng)
            if error is None:
                outcome = DeliveryStatus.DELIVERED
            elif not retry or attempt >= self.policy.attempts or waited + delay > self.policy.max_wait_s:
                outcome = DeliveryStatus.FAILED
            else:
                outcome = DeliveryStatus.PENDING
            await self._record(delivery_id, outcome, attempt, status, error)
            if outcome is not DeliveryStatus.PENDING:
                log = _log.info if outcome is DeliveryStatus.DELIVERED else _log.warning
                log("alert_webhook_" + outcome.value, webhook_id=webhook.id, event_id=event_id, attempts=attempt)
                return
            waited += delay
            await asyncio.sleep(delay)

    async def _secret(self, webhook: AlertWebhook) -> str:
        if webhook.secret_ref is None:
            raise LookupError(f"webhook {webhook.id} has no secret")
        async with self.database.session() as session:
            return (await self.vault.get(session, webhook.secret_ref, owner_id=webhook.id)).decode()

    async def _record(
        self, delivery_id: str, status: DeliveryStatus, attempts: int, last_status: int | None, error: str | None
    ) -> None:
        try:
            async with self.database.session() as session:
                await AlertDeliveryRepository(session).attempted(
                    delivery_id,
                    status=status,
                    attempts=attempts,
                    last_status=last_status,
                    last_error=error,
                    now=self.clock.now(),
                )
                await session.commit()
        except Exception:  # noqa: BLE001 - the record is lost, the delivery goes on
            _log.exception("alert_delivery_record_failed", delivery_id=delivery_id)
