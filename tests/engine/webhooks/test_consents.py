"""Apps' endpoints in the webhook engine (ADR 0033), on SQLite and PostgreSQL: an endpoint registered
under a consent receives only the events of the consent's accounts and types it can read, and
nothing once the consent has ended (it is disabled, and what was pending fails without an attempt)."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import update

from brokerlink.bus.base import Message
from brokerlink.domain.enums import Side
from brokerlink.domain.events import OrderFilled, encode_event
from brokerlink.engine.links.ingest import ACCOUNT_TOPIC
from brokerlink.engine.webhooks.consents import ConsentGate, missing_scopes
from brokerlink.engine.webhooks.service import GROUP, WebhookService
from brokerlink.store.models import AccountRow
from brokerlink.store.models_oauth import OAuthClientRow, OAuthConsentRow
from brokerlink.store.models_webhooks import EndpointStatus, WebhookDeliveryStatus
from brokerlink.store.repositories.webhooks import (
    WebhookDeliveryRepository,
    WebhookEndpoint,
    WebhookEndpointRepository,
)
from tests.engine.webhooks.conftest import START, World, add_user_with_account

URL = "http://127.0.0.1:9/hooks"


def test_missing_scopes_names_what_each_type_needs() -> None:
    assert missing_scopes(["order.filled", "copy.skipped"], ["orders:read"]) == ["copy:read"]
    assert missing_scopes(["position.changed", "balance.changed"], []) == ["balances:read", "positions:read"]
    assert missing_scopes(["order.updated"], ["orders:read"]) == []


async def _consent(world: World, user_id: str, accounts: list[str], scopes: list[str]) -> str:
    async with world.database.session() as session:
        session.add(
            OAuthClientRow(
                id="app_tracker", name="Tracker", redirect_uris="[]", jwks='{"keys": []}', jwks_uri=None,
                scopes=json.dumps(scopes), grant_types='["authorization_code"]', created_by=None,
                created_at=START, updated_at=START, disabled_at=None,
            )
        )  # fmt: skip
        await session.flush()
        session.add(
            OAuthConsentRow(
                id="cns_tracker", client_id="app_tracker", user_id=user_id, scopes=json.dumps(scopes),
                account_ids=json.dumps(accounts), status="authorised", par_id=None, created_at=START,
                decided_at=START, expires_at=START + timedelta(days=30), revoked_at=None,
            )
        )  # fmt: skip
        await session.commit()
    return "cns_tracker"


async def _endpoint(service: WebhookService, world: World, user_id: str, consent_id: str | None) -> WebhookEndpoint:
    async with world.database.session() as session:
        endpoint, _ = await service.create_endpoint(
            session, user_id=user_id, url=URL, description="", event_types=["order.filled"],
            client_id="app_tracker" if consent_id else None, consent_id=consent_id,
        )  # fmt: skip
        await session.commit()
    return endpoint


def _message(account_id: str, trade_id: str) -> Message:
    payload = encode_event(
        OrderFilled(
            account_id=account_id, ts=START, client_order_id="c-1", venue_order_id="v-1", trade_id=trade_id,
            symbol="AAPL", side=Side.BUY, last_qty=Decimal("1.5"), last_price=Decimal("187.25"),
        )
    )  # fmt: skip
    return Message(
        id=trade_id, topic=ACCOUNT_TOPIC, key="k", partition=0, payload=payload, delivery_count=1, group=GROUP
    )


async def _count(world: World, endpoint_id: str) -> int:
    async with world.database.session() as session:
        page = await WebhookDeliveryRepository(session).list_for_endpoint(endpoint_id, limit=100, after=None)
    return len(page.items)


async def test_an_apps_endpoint_receives_only_its_consents_accounts(world: World) -> None:
    service = world.service()
    alice, covered = await add_user_with_account(world.database, "alice")
    async with world.database.session() as session:  # a second account of alice's, outside the consent
        session.add(
            AccountRow(
                id="acc_alice2", user_id=alice, connection_id="con_alice", venue_account_id="V-alice2",
                name="alice 2", currency="USD", mode="netting", created_at=START, updated_at=START,
            )
        )  # fmt: skip
        await session.commit()
    consent = await _consent(world, alice, [covered], ["webhooks:manage", "orders:read"])
    own = await _endpoint(service, world, alice, None)
    app = await _endpoint(service, world, alice, consent)
    assert await service.handle_account_message(_message(covered, "T-1")) == 2
    assert await service.handle_account_message(_message("acc_alice2", "T-2")) == 1
    assert (await _count(world, own.id), await _count(world, app.id)) == (2, 1)


async def test_an_ended_consent_disables_the_endpoint_and_stops_what_was_pending(world: World) -> None:
    service = world.service()
    alice, covered = await add_user_with_account(world.database, "alice")
    consent = await _consent(world, alice, [covered], ["webhooks:manage", "orders:read"])
    app = await _endpoint(service, world, alice, consent)
    assert await service.handle_account_message(_message(covered, "T-1")) == 1
    async with world.database.session() as session:
        await session.execute(
            update(OAuthConsentRow).where(OAuthConsentRow.id == consent).values(status="revoked", revoked_at=START)
        )
        await session.commit()
        assert (
            await ConsentGate(session, world.clock.now()).ended(app)
            == "the consent it was registered under was revoked"
        )
    assert await service.run_due() == 1  # claimed, then refused before any attempt
    assert await service.handle_account_message(_message(covered, "T-2")) == 0
    async with world.database.session() as session:
        endpoint = await WebhookEndpointRepository(session).get(app.id)
        (delivery,) = (await WebhookDeliveryRepository(session).list_for_endpoint(app.id, limit=10, after=None)).items
        attempts = await WebhookDeliveryRepository(session).attempts_of([delivery.id])
    assert endpoint is not None
    assert endpoint.status is EndpointStatus.DISABLED
    assert delivery.status is WebhookDeliveryStatus.FAILED
    assert "revoked" in (delivery.last_error or "")
    assert attempts[delivery.id] == []
