"""Apps' webhook endpoints (issue 8 item 4, ADR 0033): an app acting for a user under a consent
registers endpoints for the user's events, receives only what the consent covers, and loses them
when the consent ends.

The app is a real DPoP-bound token (tests/api/resource_support.py); events are fed to the running
app's webhook service as the bus would hand them over, and what it records is read back through
the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from litestar import Litestar

from brokerlink.bus.base import Message
from brokerlink.config import Settings
from brokerlink.domain.enums import Side
from brokerlink.domain.events import AccountUpdated, OrderFilled, encode_event
from brokerlink.domain.models import Balance
from brokerlink.engine.links.ingest import ACCOUNT_TOPIC
from brokerlink.engine.webhooks.consents import EVENT_SCOPES, MANAGE_SCOPE
from brokerlink.engine.webhooks.events import EVENT_TYPES
from brokerlink.engine.webhooks.service import GROUP, STATE_KEY, WebhookService
from brokerlink.kit.clock import ManualClock
from brokerlink.store.db import Database
from brokerlink.store.models_webhooks import EndpointStatus, WebhookDeliveryStatus
from brokerlink.store.repositories.webhooks import WebhookDeliveryRepository, WebhookEndpointRepository
from tests.api.resource_support import ORIGIN, Grant, call, grant
from tests.api.support import ClientFactory, assert_problem, link_account

URL = "http://127.0.0.1:9/app-hooks"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"resource_origin": ORIGIN, "webhook_allowed_hosts": ["127.0.0.1"], "webhook_max_endpoints": 10}
    )


@dataclass
class World:
    alice: httpx.AsyncClient
    client: httpx.AsyncClient
    clock: ManualClock
    service: WebhookService
    covered: str
    other: str
    app: Grant

    async def as_app(self, g: Grant, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await call(self.client, g, method, path, self.clock.now(), **kwargs)

    async def feed(self, payload: bytes, n: int) -> int:
        message = Message(
            id=f"1-{n}", topic=ACCOUNT_TOPIC, key="k", partition=0, payload=payload, delivery_count=1, group=GROUP
        )
        return await self.service.handle_account_message(message)

    async def event_ids(self, endpoint_id: str) -> list[str]:
        response = await self.alice.get(f"/v1/webhooks/{endpoint_id}/deliveries", params={"limit": "100"})
        assert response.status_code == 200, response.text
        return sorted(d["event_type"] + "@" + d["event_id"] for d in response.json()["data"])


def _fill(account_id: str, trade_id: str) -> bytes:
    event = OrderFilled(
        account_id=account_id, ts=ManualClock().now(), client_order_id="c-1", venue_order_id="v-1", trade_id=trade_id,
        symbol="EUR/USD", side=Side.BUY, last_qty=Decimal("0.1"), last_price=Decimal("1.1"),
    )  # fmt: skip
    return encode_event(event)


@pytest.fixture
async def world(app: Litestar, client: httpx.AsyncClient, clock: ManualClock, make_client: ClientFactory) -> World:
    alice = await make_client("alice@example.com", "Alice")
    _, covered = await link_account(app, "alice@example.com", "Covered")
    _, other = await link_account(app, "alice@example.com", "Other")
    tracker = await grant(app, email="alice@example.com", scopes=[MANAGE_SCOPE, "orders:read"], account_ids=[covered])
    return World(alice, client, clock, app.state[STATE_KEY], covered, other, tracker)


def test_every_event_type_needs_a_read_scope() -> None:
    assert set(EVENT_SCOPES) == set(EVENT_TYPES)


async def test_an_app_registers_only_what_its_consent_can_read(app: Litestar, world: World) -> None:
    created = await world.as_app(world.app, "POST", "/v1/webhooks", json={"url": URL, "event_types": ["order.filled"]})
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert endpoint["client_id"] == world.app.client_id
    assert endpoint["secret"].startswith("whsec_")
    refused = await world.as_app(
        world.app, "POST", "/v1/webhooks", json={"url": URL, "event_types": ["position.changed"]}
    )
    assert assert_problem(refused, 403, "insufficient_scope")["scope"] == "positions:read"
    widen = await world.as_app(
        world.app, "PATCH", f"/v1/webhooks/{endpoint['id']}", json={"event_types": ["order.filled", "copy.skipped"]}
    )
    assert assert_problem(widen, 403, "insufficient_scope")["scope"] == "copy:read"
    reader = await grant(app, email="alice@example.com", scopes=["orders:read"], account_ids=[world.covered])
    no_manage = await world.as_app(reader, "POST", "/v1/webhooks", json={"url": URL, "event_types": ["order.filled"]})
    assert assert_problem(no_manage, 403, "insufficient_scope")["scope"] == MANAGE_SCOPE


async def test_security19_an_app_sees_only_its_own_endpoints_and_the_user_sees_all(app: Litestar, world: World) -> None:
    mine = (await world.alice.post("/v1/webhooks", json={"url": URL, "event_types": ["order.filled"]})).json()
    theirs = (
        await world.as_app(world.app, "POST", "/v1/webhooks", json={"url": URL, "event_types": ["order.filled"]})
    ).json()
    other_app = await grant(
        app, email="alice@example.com", scopes=[MANAGE_SCOPE, "orders:read"], account_ids=[world.covered]
    )
    listed = (await world.as_app(world.app, "GET", "/v1/webhooks")).json()["data"]
    assert [e["id"] for e in listed] == [theirs["id"]]
    assert (await world.as_app(other_app, "GET", "/v1/webhooks")).json()["data"] == []
    for g, endpoint_id in ((world.app, mine["id"]), (other_app, theirs["id"])):
        assert_problem(await world.as_app(g, "GET", f"/v1/webhooks/{endpoint_id}"), 404, "not_found")
        assert_problem(await world.as_app(g, "DELETE", f"/v1/webhooks/{endpoint_id}"), 404, "not_found")
    everything = (await world.alice.get("/v1/webhooks")).json()["data"]
    assert {(e["id"], e["client_id"]) for e in everything} == {(mine["id"], None), (theirs["id"], world.app.client_id)}


async def test_deliveries_carry_only_what_the_consent_covers(world: World) -> None:
    mine = (
        await world.alice.post("/v1/webhooks", json={"url": URL, "event_types": ["order.filled", "balance.changed"]})
    ).json()
    theirs = (
        await world.as_app(world.app, "POST", "/v1/webhooks", json={"url": URL, "event_types": ["order.filled"]})
    ).json()
    assert await world.feed(_fill(world.covered, "T-1"), 1) == 2  # the user's endpoint and the app's
    assert await world.feed(_fill(world.other, "T-2"), 2) == 1  # not the consent's account: the user's only
    cash = Decimal(100)
    balance = Balance(account_id=world.covered, currency="USD", cash=cash, equity=cash, buying_power=cash,
                      ts=world.clock.now())  # fmt: skip
    update = AccountUpdated(account_id=world.covered, ts=world.clock.now(), balance=balance)
    assert await world.feed(encode_event(update), 3) == 1  # the app did not ask (and could not)
    app_events = await world.event_ids(theirs["id"])
    user_events = await world.event_ids(mine["id"])
    assert len(app_events) == 1
    assert app_events[0].startswith("order.filled@")
    assert set(app_events) < set(user_events)
    assert len(user_events) == 3
    app_view = (await world.as_app(world.app, "GET", f"/v1/webhooks/{theirs['id']}/deliveries")).json()["data"]
    assert [d["event_type"] for d in app_view] == ["order.filled"]


async def test_revoking_the_consent_disables_the_apps_endpoints(app: Litestar, world: World) -> None:
    mine = (await world.alice.post("/v1/webhooks", json={"url": URL, "event_types": ["order.filled"]})).json()
    theirs = (
        await world.as_app(world.app, "POST", "/v1/webhooks", json={"url": URL, "event_types": ["order.filled"]})
    ).json()
    assert await world.feed(_fill(world.covered, "T-1"), 1) == 2
    assert (await world.alice.delete(f"/v1/consents/{world.app.consent_id}")).status_code == 204
    endpoint = (await world.alice.get(f"/v1/webhooks/{theirs['id']}")).json()
    assert endpoint["status"] == "disabled"
    assert "revoked" in endpoint["disabled_reason"]
    assert (await world.alice.get(f"/v1/webhooks/{mine['id']}")).json()["status"] == "enabled"
    assert await world.feed(_fill(world.covered, "T-2"), 2) == 1  # the user's endpoint only
    assert len(await world.event_ids(theirs["id"])) == 1
    again = await world.alice.patch(f"/v1/webhooks/{theirs['id']}", json={"enabled": True})
    assert_problem(again, 409, "consent_ended")
    gone = await world.as_app(world.app, "GET", "/v1/webhooks")
    assert gone.status_code in {401, 403}, gone.text
    # What was recorded before the revocation is not sent after it: it fails without an attempt.
    world.clock.advance(timedelta(hours=3))  # past any retry the first attempt scheduled
    await world.service.run_due()
    database: Database = app.state.db
    async with database.session() as session:
        (pending,) = (
            await WebhookDeliveryRepository(session).list_for_endpoint(theirs["id"], limit=10, after=None)
        ).items
        attempts = (await WebhookDeliveryRepository(session).attempts_of([pending.id]))[pending.id]
    assert pending.status is WebhookDeliveryStatus.FAILED
    assert "revoked" in (pending.last_error or "")
    assert all(a.attempted_at < world.clock.now() - timedelta(hours=2) for a in attempts)


async def test_an_expired_consent_stops_deliveries_and_disables_the_endpoint(app: Litestar, world: World) -> None:
    brief = await grant(
        app, email="alice@example.com", scopes=[MANAGE_SCOPE, "orders:read"], account_ids=[world.covered],
        consent_expires_in=timedelta(hours=1), token_expires_in=timedelta(minutes=5),
    )  # fmt: skip
    theirs = (
        await world.as_app(brief, "POST", "/v1/webhooks", json={"url": URL, "event_types": ["order.filled"]})
    ).json()
    assert await world.feed(_fill(world.covered, "T-1"), 1) == 1
    world.clock.advance(timedelta(hours=2))
    assert await world.feed(_fill(world.covered, "T-2"), 2) == 0
    database: Database = app.state.db  # alice's session has timed out meanwhile: read the store
    async with database.session() as session:
        endpoint = await WebhookEndpointRepository(session).get(theirs["id"])
    assert endpoint is not None
    assert endpoint.status is EndpointStatus.DISABLED
    assert "expired" in (endpoint.disabled_reason or "")
