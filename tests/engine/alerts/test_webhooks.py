"""Alert webhooks against a real HTTP receiver on 127.0.0.1 (uvicorn), and the checks on webhook URLs.

The receiver verifies each delivery's Standard Webhooks signature with the secret the server showed
at creation, deduplicates by ``webhook-id``, and fails on demand, so retries, backoff and the
delivery records are observed from the outside.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import msgspec
import pytest
import uvicorn
from sqlalchemy import select

from brokerlink import observe
from brokerlink.engine.alerts.events import AlertEvent
from brokerlink.engine.alerts.service import AlertService
from brokerlink.engine.alerts.webhooks import Resolver, check_url, sign, verify
from brokerlink.kit.clock import ManualClock
from brokerlink.kit.errors import InvalidInput
from brokerlink.store.db import Database
from brokerlink.store.models import VaultSecretRow
from brokerlink.store.models_alerts import DeliveryStatus
from brokerlink.store.repositories.alerts import AlertDelivery, AlertDeliveryRepository, AlertWebhook
from tests.contract.harness import free_port

ServiceFactory = Callable[..., AlertService]


@dataclass
class Receiver:
    """A webhook endpoint: answers ``statuses`` in turn (then 204), and processes each event id once."""

    statuses: list[int] = field(default_factory=list)
    secret: str = ""
    hang_first: bool = False
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    processed: dict[str, AlertEvent] = field(default_factory=dict)
    bad_signatures: int = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.requests.append((headers, body))
        if self.hang_first and len(self.requests) == 1:
            await asyncio.sleep(30)  # longer than the sender's timeout
        if not verify(self.secret, headers, body):
            self.bad_signatures += 1
            await self._answer(send, 401)
            return
        # Process first, answer after: a lost answer (a 5xx here) is the case the id dedup is for.
        self.processed.setdefault(headers["webhook-id"], msgspec.json.decode(body, type=AlertEvent))
        await self._answer(send, self.statuses.pop(0) if self.statuses else 204)

    @staticmethod
    async def _answer(send: Any, status: int) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    app = Receiver()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on", timeout_graceful_shutdown=1)
    )
    task = asyncio.create_task(server.serve())
    for _ in range(200):  # bounded: 10 s
        if server.started:
            break
        await asyncio.sleep(0.05)
    assert server.started
    yield app, f"http://127.0.0.1:{port}/hooks/alerts"
    server.should_exit = True
    await asyncio.wait_for(task, timeout=10)


async def _webhook(service: AlertService, database: Database, url: str) -> tuple[AlertWebhook, str]:
    async with database.session() as session:
        webhook, secret = await service.create_webhook(session, url=url, created_by="usr_admin")
        await session.commit()
    return webhook, secret


async def _deliveries(database: Database, alert_id: str) -> list[AlertDelivery]:
    async with database.session() as session:
        return await AlertDeliveryRepository(session).list_for_alert(alert_id)


async def test_a_delivery_is_signed_and_retried_with_the_same_id_until_it_succeeds(
    database: Database, make_service: ServiceFactory, receiver: tuple[Receiver, str]
) -> None:
    app, url = receiver
    service = make_service(database)
    await service.start()
    _, app.secret = await _webhook(service, database, url)
    app.statuses = [503, 500, 502]  # processed on the first attempt, but the answer never says so

    observe.audit_verify_failed(sequence=7, reason="hash mismatch")
    await service.idle()

    assert app.bad_signatures == 0
    ids = [headers["webhook-id"] for headers, _ in app.requests]
    assert len(ids) == 4
    assert len(set(ids)) == 1  # every retry carries the event's id ...
    [event] = app.processed.values()  # ... so the receiver processed it once
    assert event.type == "alert.opened"
    assert (event.data.rule, event.data.labels["sequence"]) == ("audit_verify_failed", "7")
    [delivery] = await _deliveries(database, event.data.id)
    assert (delivery.event_id, delivery.status, delivery.attempts, delivery.last_status) == (
        event.id, DeliveryStatus.DELIVERED, 4, 204,
    )  # fmt: skip


async def test_a_timeout_is_retried(
    database: Database, make_service: ServiceFactory, receiver: tuple[Receiver, str]
) -> None:
    app, url = receiver
    app.hang_first = True
    service = make_service(database, alert_webhook_timeout_s=0.3)
    await service.start()
    _, app.secret = await _webhook(service, database, url)
    observe.ledger_drift(account_id="acc_1", currency="USD", unexplained="1.00")
    await service.idle()
    [event] = app.processed.values()
    [delivery] = await _deliveries(database, event.data.id)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 2)


async def test_retries_are_bounded_and_a_refusal_is_final(
    database: Database, make_service: ServiceFactory, receiver: tuple[Receiver, str]
) -> None:
    app, url = receiver
    service = make_service(database, alert_webhook_attempts=3)
    await service.start()
    _, app.secret = await _webhook(service, database, url)

    app.statuses = [503] * 10
    observe.ledger_drift(account_id="acc_1", currency="USD", unexplained="1.00")
    await service.idle()
    assert len(app.requests) == 3
    [first] = app.processed.values()
    [delivery] = await _deliveries(database, first.data.id)
    assert (delivery.status, delivery.attempts, delivery.last_status, delivery.last_error) == (
        DeliveryStatus.FAILED, 3, 503, "HTTP 503",
    )  # fmt: skip

    app.statuses = [400]
    observe.ledger_drift(account_id="acc_2", currency="USD", unexplained="1.00")
    await service.idle()
    assert len(app.requests) == 4  # a 4xx is an answer: not retried
    second = next(e for e in app.processed.values() if e.data.subject == "acc_2:USD")
    [delivery] = await _deliveries(database, second.data.id)
    assert (delivery.status, delivery.attempts, delivery.last_status) == (DeliveryStatus.FAILED, 1, 400)


async def test_the_total_wait_is_bounded_whatever_the_attempts(
    database: Database, make_service: ServiceFactory, receiver: tuple[Receiver, str]
) -> None:
    app, url = receiver
    service = make_service(
        database, alert_webhook_attempts=20, alert_webhook_backoff_s=0.2, alert_webhook_backoff_cap_s=0.2,
        alert_webhook_max_s=0.3,
    )  # fmt: skip
    await service.start()
    _, app.secret = await _webhook(service, database, url)
    app.statuses = [503] * 50
    observe.ledger_drift(account_id="acc_1", currency="USD", unexplained="1.00")
    await service.idle()
    # Delays are drawn from [0, 0.2]: the 0.3 s budget allows at most a few, never twenty attempts.
    assert 2 <= len(app.requests) < 20
    [event] = app.processed.values()
    [delivery] = await _deliveries(database, event.data.id)
    assert delivery.status is DeliveryStatus.FAILED


async def test_every_webhook_gets_every_event_and_the_secret_is_sealed(
    database: Database, make_service: ServiceFactory, receiver: tuple[Receiver, str]
) -> None:
    app, url = receiver
    service = make_service(database)
    await service.start()
    first, secret = await _webhook(service, database, url)
    second, other_secret = await _webhook(service, database, url + "?copy=2")
    assert secret != other_secret
    assert secret.startswith("whsec_")
    app.secret = secret
    observe.ledger_drift(account_id="acc_1", currency="USD", unexplained="1.00")
    await service.idle()
    # The second webhook's deliveries are signed with its own secret, which this receiver does not know.
    assert (len(app.requests), app.bad_signatures) == (2, 1)
    async with database.session() as session:
        rows = (await session.execute(select(VaultSecretRow))).scalars().all()
    assert {r.owner_id for r in rows} == {first.id, second.id}
    assert all(secret.encode() not in bytes(r.ciphertext) for r in rows)

    async with database.session() as session:
        assert await service.delete_webhook(session, second.id)
        await session.commit()
    async with database.session() as session:
        rows = (await session.execute(select(VaultSecretRow))).scalars().all()
    assert {r.owner_id for r in rows} == {first.id}


def test_the_signature_is_the_standard_webhooks_one() -> None:
    # The example of the Standard Webhooks specification (github.com/standard-webhooks), verbatim.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )
    headers = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330"}
    assert verify(secret, headers | {"webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}, body)
    assert not verify(secret, headers | {"webhook-signature": "v1,AAAA"}, body)
    assert not verify(
        secret, headers | {"webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}, body + b" "
    )


def _resolves_to(*addresses: str) -> Resolver:
    async def resolver(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolver


@pytest.mark.parametrize(
    ("url", "allow_loopback"),
    [
        ("http://hooks.example.com/a", False),  # not https
        ("https://127.0.0.1/a", False),
        ("https://localhost/a", False),
        ("https://[::1]/a", False),
        ("https://10.1.2.3/a", False),
        ("https://172.16.0.1/a", False),
        ("https://192.168.1.1/a", True),
        ("https://169.254.169.254/latest/meta-data", True),  # cloud metadata: link-local
        ("https://[fe80::1]/a", True),
        ("https://[fd00::1]/a", True),
        ("https://100.64.0.1/a", True),  # shared address space (CGNAT)
        ("https://0.0.0.0/a", True),
        ("https://224.0.0.1/a", True),
        ("https://user:pass@hooks.example.com/a", False),
        ("https:///nohost", False),
        ("ftp://hooks.example.com/a", False),
        ("http://10.0.0.1/a", True),  # the loopback allowance is for loopback only
    ],
)
async def test_webhook_urls_that_reach_inside_are_refused(url: str, allow_loopback: bool) -> None:
    with pytest.raises(InvalidInput) as refused:
        await check_url(url, allow_loopback=allow_loopback, resolver=_resolves_to("93.184.215.14"))
    assert refused.value.extra == {"field": "url"}


async def test_a_name_resolving_inside_is_refused_and_a_public_one_accepted() -> None:
    url = "https://hooks.example.com/alerts"
    inside = _resolves_to("93.184.215.14", "10.0.0.7")  # one internal address is enough
    with pytest.raises(InvalidInput, match="non-public"):
        await check_url(url, allow_loopback=False, resolver=inside)
    assert await check_url(url, allow_loopback=False, resolver=_resolves_to("93.184.215.14")) == url
    assert await check_url("http://127.0.0.1:9/x", allow_loopback=True) == "http://127.0.0.1:9/x"


async def test_a_delivery_left_pending_by_a_stopped_process_is_resumed_with_the_same_id(
    database: Database, make_service: ServiceFactory, receiver: tuple[Receiver, str]
) -> None:
    app, url = receiver
    clock = ManualClock()
    first = make_service(database, clock=clock)
    await first.start()
    _, app.secret = await _webhook(first, database, url)
    app.hang_first = True  # the first attempt never gets an answer: the process stops meanwhile
    observe.ledger_drift(account_id="acc_1", currency="USD", unexplained="1.00")
    await _eventually_requested(app, 1)
    await first.stop()
    [event_id] = {headers["webhook-id"] for headers, _ in app.requests}
    async with database.session() as session:
        [pending] = await AlertDeliveryRepository(session).stale_pending(before=clock.now() + timedelta(seconds=1))
    assert (pending.status, pending.event_id) == (DeliveryStatus.PENDING, event_id)

    # Long enough later that no live sender can still own it, another process starts and resumes it.
    clock.advance(timedelta(minutes=5))
    second = make_service(database, clock=clock)
    await second.start()
    await second.idle()
    assert [headers["webhook-id"] for headers, _ in app.requests] == [event_id, event_id]
    assert app.bad_signatures == 0
    [delivery] = await _deliveries(database, pending.alert_id)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 1)


async def _eventually_requested(app: Receiver, count: int) -> None:
    for _ in range(200):  # bounded: 10 s
        if len(app.requests) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the receiver never got {count} request(s)")
