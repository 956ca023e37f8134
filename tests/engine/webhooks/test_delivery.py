"""User webhooks end to end against a real HTTP receiver on 127.0.0.1: signing, retries on the
manual clock, dedupe of redelivered bus messages, resume after a restart, disabling after the window.
Each runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from decimal import Decimal

import msgspec
import pytest
from sqlalchemy import select

from brokerlink.domain.enums import Side
from brokerlink.domain.events import AccountUpdated, OrderFilled, encode_event
from brokerlink.domain.models import Balance
from brokerlink.engine.links.ingest import ACCOUNT_TOPIC
from brokerlink.engine.webhooks.service import GROUP, WebhookService
from brokerlink.engine.webhooks.signing import sign, verify
from brokerlink.kit.errors import InvalidInput
from brokerlink.store.models import VaultSecretRow
from brokerlink.store.models_webhooks import EndpointStatus, WebhookDeliveryStatus
from brokerlink.store.repositories.webhooks import (
    WebhookDelivery,
    WebhookDeliveryRepository,
    WebhookEndpoint,
    WebhookEndpointRepository,
)
from tests.engine.webhooks.conftest import START, Receiver, World, add_user_with_account


def test_signing_reproduces_the_standard_webhooks_test_vector() -> None:
    # The published vector (svix/svix-webhooks library tests, the Standard Webhooks reference).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected
    headers = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330"}
    assert verify(secret, headers | {"webhook-signature": "v1,bm9wZQ== " + expected}, body)
    assert not verify(secret, headers | {"webhook-signature": expected}, body + b" ")


def _fill(account_id: str, trade_id: str = "T-1") -> bytes:
    return encode_event(
        OrderFilled(
            account_id=account_id, ts=START, client_order_id="c-1", venue_order_id="v-1", trade_id=trade_id,
            symbol="AAPL", side=Side.BUY, last_qty=Decimal("1.5"), last_price=Decimal("187.25"),
        )
    )  # fmt: skip


async def _endpoint(
    service: WebhookService, world: World, user_id: str, url: str, types: list[str] | None = None
) -> tuple[WebhookEndpoint, str]:
    async with world.database.session() as session:
        endpoint, secret = await service.create_endpoint(
            session, user_id=user_id, url=url, description="", event_types=types or ["order.filled"]
        )
        await session.commit()
    return endpoint, secret


async def _deliveries(world: World, endpoint_id: str) -> list[WebhookDelivery]:
    async with world.database.session() as session:
        return list(
            (await WebhookDeliveryRepository(session).list_for_endpoint(endpoint_id, limit=100, after=None)).items
        )


async def _publish_and_take(world: World, service: WebhookService, payload: bytes) -> int:
    await world.bus.publish(ACCOUNT_TOPIC, "k", payload)
    consumer = world.bus.consumer(ACCOUNT_TOPIC, GROUP, service.node)
    added = 0
    for message in await consumer.read(max_count=10):
        added += await service.handle_account_message(message)
        await consumer.ack(message)
    return added


async def test_an_event_reaches_its_owner_signed_and_only_its_owner(
    world: World, receiver: tuple[Receiver, str]
) -> None:
    app, url = receiver
    service = world.service()
    alice, alice_account = await add_user_with_account(world.database, "alice")
    bob, _ = await add_user_with_account(world.database, "bob")
    mine, app.secret = await _endpoint(service, world, alice, url)
    other, _ = await _endpoint(service, world, bob, url)
    unsubscribed, _ = await _endpoint(service, world, alice, url, ["balance.changed"])

    assert await _publish_and_take(world, service, _fill(alice_account)) == 1
    assert await service.run_due() == 1

    assert app.bad_signatures == 0
    assert len(app.requests) == 1
    headers, body = app.requests[0]
    event = msgspec.json.decode(body)
    assert event["type"] == "order.filled"
    assert event["id"] == headers["webhook-id"]
    assert event["data"]["last_qty"] == "1.5"
    assert event["data"]["account_id"] == alice_account
    assert headers["webhook-timestamp"] == str(int(START.timestamp()))
    (delivery,) = await _deliveries(world, mine.id)
    assert delivery.status is WebhookDeliveryStatus.DELIVERED
    assert delivery.attempts == 1
    assert await _deliveries(world, other.id) == []
    assert await _deliveries(world, unsubscribed.id) == []


async def test_a_redelivered_bus_message_creates_no_second_delivery(
    world: World, receiver: tuple[Receiver, str]
) -> None:
    app, url = receiver
    service = world.service()
    alice, account = await add_user_with_account(world.database, "alice")
    endpoint, app.secret = await _endpoint(service, world, alice, url)
    await world.bus.publish(ACCOUNT_TOPIC, account, _fill(account))

    first = world.bus.consumer(ACCOUNT_TOPIC, GROUP, "n1")
    (message,) = await first.read()
    assert await service.handle_account_message(message) == 1  # not acked: the process "dies"
    again = world.bus.consumer(ACCOUNT_TOPIC, GROUP, "n1")  # a restart: pending messages come back
    (redelivered,) = await again.read()
    assert redelivered.delivery_count == 2
    assert await service.handle_account_message(redelivered) == 0
    # The same fill reported again (REST after stream) is the same event too.
    assert await _publish_and_take(world, service, _fill(account)) == 0

    assert len(await _deliveries(world, endpoint.id)) == 1


async def test_5xx_is_retried_with_backoff_on_the_clock_with_the_same_id(
    world: World, receiver: tuple[Receiver, str]
) -> None:
    app, url = receiver
    service = world.service(webhook_backoff_s=10.0, webhook_backoff_cap_s=60.0)
    alice, account = await add_user_with_account(world.database, "alice")
    endpoint, app.secret = await _endpoint(service, world, alice, url, ["balance.changed"])
    balance = Balance(
        account_id=account, currency="USD", cash=Decimal(100), equity=Decimal(100), buying_power=Decimal(100), ts=START
    )
    await _publish_and_take(world, service, encode_event(AccountUpdated(account_id=account, ts=START, balance=balance)))
    app.statuses = [503, 500]

    assert await service.run_due() == 1
    (delivery,) = await _deliveries(world, endpoint.id)
    assert delivery.status is WebhookDeliveryStatus.PENDING
    assert delivery.last_status == 503
    assert delivery.next_attempt_at is not None
    assert START <= delivery.next_attempt_at <= START + timedelta(seconds=10)  # full jitter, first step
    world.clock.set(delivery.next_attempt_at - timedelta(microseconds=1))
    if delivery.next_attempt_at > START:
        assert await service.run_due() == 0  # not due yet: nothing is sent early
    for _ in range(2):
        world.clock.advance(timedelta(seconds=60))
        assert await service.run_due() == 1

    (delivery,) = await _deliveries(world, endpoint.id)
    assert delivery.status is WebhookDeliveryStatus.DELIVERED
    assert delivery.attempts == 3
    ids = {headers["webhook-id"] for headers, _ in app.requests}
    assert len(app.requests) == 3
    assert ids == {delivery.event_id}
    async with world.database.session() as session:
        attempts = (await WebhookDeliveryRepository(session).attempts_of([delivery.id]))[delivery.id]
    assert [a.status_code for a in attempts] == [503, 500, 204]


async def _two_fills_recorded(world: World, service: WebhookService, receiver: tuple[Receiver, str]) -> WebhookEndpoint:
    """Alice's endpoint at the receiver, with deliveries for two fills recorded and not yet attempted."""
    app, url = receiver
    alice, account = await add_user_with_account(world.database, "alice")
    endpoint, app.secret = await _endpoint(service, world, alice, url)
    await _publish_and_take(world, service, _fill(account, "T-1"))
    await _publish_and_take(world, service, _fill(account, "T-2"))
    return endpoint


async def test_pending_deliveries_resume_after_a_restart(world: World, receiver: tuple[Receiver, str]) -> None:
    first = world.service()
    endpoint = await _two_fills_recorded(world, first, receiver)
    app, _ = receiver
    async with world.database.session() as session:  # a process claimed one, then died mid-attempt
        deliveries = WebhookDeliveryRepository(session)
        due = await deliveries.due(world.clock.now(), limit=1)
        assert await deliveries.claim(due[0], until=world.clock.now() + first.lease)
        await session.commit()
    await first.stop()

    second = world.service()  # a new process, same database
    assert await second.run_due() == 1  # the unclaimed one at once
    world.clock.advance(second.lease + timedelta(seconds=1))
    assert await second.run_due() == 1  # the claimed one once its lease ran out
    assert {d.status for d in await _deliveries(world, endpoint.id)} == {WebhookDeliveryStatus.DELIVERED}
    assert len(app.processed) == 2


async def test_an_endpoint_failing_for_the_whole_window_is_disabled_with_the_reason(
    world: World, receiver: tuple[Receiver, str]
) -> None:
    app, url = receiver
    service = world.service(webhook_retry_window_s=3600.0, webhook_backoff_s=60.0, webhook_backoff_cap_s=600.0)
    alice, account = await add_user_with_account(world.database, "alice")
    endpoint, app.secret = await _endpoint(service, world, alice, url)
    await _publish_and_take(world, service, _fill(account))
    app.always = 503

    for _ in range(100):  # bounded; a day of 10-minute steps would take 144
        await service.run_due()
        (delivery,) = await _deliveries(world, endpoint.id)
        if delivery.status is not WebhookDeliveryStatus.PENDING:
            break
        world.clock.advance(timedelta(seconds=600))
    assert delivery.status is WebhookDeliveryStatus.FAILED
    assert delivery.attempts >= 6
    async with world.database.session() as session:
        stored = await WebhookEndpointRepository(session).get(endpoint.id)
    assert stored is not None
    assert stored.status is EndpointStatus.DISABLED
    assert stored.disabled_reason is not None
    assert "HTTP 503" in stored.disabled_reason

    await _publish_and_take(world, service, _fill(account, "T-9"))  # a disabled endpoint gets nothing new
    assert len(await _deliveries(world, endpoint.id)) == 1


async def test_a_4xx_is_final_and_does_not_disable(world: World, receiver: tuple[Receiver, str]) -> None:
    app, url = receiver
    service = world.service()
    alice, account = await add_user_with_account(world.database, "alice")
    endpoint, app.secret = await _endpoint(service, world, alice, url)
    await _publish_and_take(world, service, _fill(account))
    app.statuses = [400]
    await service.run_due()
    (delivery,) = await _deliveries(world, endpoint.id)
    assert delivery.status is WebhookDeliveryStatus.FAILED
    assert delivery.next_attempt_at is None
    async with world.database.session() as session:
        stored = await WebhookEndpointRepository(session).get(endpoint.id)
    assert stored is not None
    assert stored.enabled


async def test_security35_the_secret_is_sealed_in_the_vault(world: World, receiver: tuple[Receiver, str]) -> None:
    _, url = receiver
    service = world.service()
    alice, _ = await add_user_with_account(world.database, "alice")
    _, secret = await _endpoint(service, world, alice, url)
    async with world.database.session() as session:
        rows = (await session.execute(select(VaultSecretRow))).scalars().all()
    dump = repr([(r.__dict__) for r in rows]).encode()
    assert rows
    assert secret.encode() not in dump
    assert secret.removeprefix("whsec_").encode() not in dump


async def test_security30_private_targets_are_refused_unless_allow_listed(world: World) -> None:
    service = world.service(webhook_allowed_hosts=[])
    allowed = world.service(webhook_allowed_hosts=["10.0.0.0/8", "169.254.0.0/16", "localhost"])
    alice, _ = await add_user_with_account(world.database, "alice")
    for url in ("http://10.0.0.5/hook", "https://169.254.169.254/x", "http://localhost:9/x", "https://[::1]/x"):
        with pytest.raises(InvalidInput) as refused:
            await _endpoint(service, world, alice, url)
        assert refused.value.extra["field"] == "url"
    for url in ("http://10.0.0.5/hook", "https://169.254.169.254/x", "http://localhost:9/x"):
        assert await allowed.check_url(url) == url
    with pytest.raises(InvalidInput):  # the allow-list admits hosts, not credentials in URLs
        await allowed.check_url("http://user:pw@10.0.0.5/hook")


async def test_stopping_mid_attempt_waits_for_every_attempt_to_unwind(
    world: World, receiver: tuple[Receiver, str]
) -> None:
    """A stop (run_due cancelled) returns only once every attempt in flight has finished unwinding:
    with ``gather`` it returned at the first, and the second closed its session after the database
    was disposed, which hung the event loop's close for good."""
    service = world.service()
    await _two_fills_recorded(world, service, receiver)
    entered: list[int] = []
    unwound: list[int] = []

    async def stuck(*_: object, **__: object) -> None:
        n = len(entered)
        entered.append(n)
        try:
            await asyncio.Event().wait()  # never answers
        finally:
            await asyncio.sleep(0.01 if n == 0 else 0.2)  # unwinding takes a while (a session's close)
            unwound.append(n)

    service.sender.attempt = stuck  # type: ignore[method-assign]
    running = asyncio.create_task(service.run_due())
    for _ in range(200):  # bounded: 10 s
        if len(entered) == 2:
            break
        await asyncio.sleep(0.05)
    assert len(entered) == 2, "both attempts in flight"
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    assert sorted(unwound) == [0, 1]
