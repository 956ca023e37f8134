"""``/v1/webhooks`` on the running app: CRUD, validation, SSRF refusals, the secret shown once and
sealed, object-level 404s, test events and replays delivered to a real receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from litestar import Litestar
from sqlalchemy import select

from brokerlink.config import Settings
from brokerlink.engine.webhooks.events import EVENT_TYPES
from brokerlink.engine.webhooks.service import SECRET_PURPOSE
from brokerlink.store.db import Database
from brokerlink.store.models import VaultSecretRow
from brokerlink.store.models_webhooks import WebhookEndpointRow
from tests.api.support import assert_problem
from tests.contract.harness import free_port
from tests.engine.webhooks.conftest import Receiver


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_allowed_hosts": ["127.0.0.1"], "webhook_max_endpoints": 3})


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    app = Receiver()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    task = asyncio.create_task(server.serve())
    for _ in range(200):  # bounded: 10 s
        if server.started:
            break
        await asyncio.sleep(0.05)
    yield app, f"http://127.0.0.1:{port}/hooks"
    server.should_exit = True
    await asyncio.wait_for(task, timeout=10)


async def _create(client: httpx.AsyncClient, url: str, **extra: Any) -> dict[str, Any]:
    body = {"url": url, "event_types": ["order.filled", "copy.skipped"], "description": " fills "} | extra
    response = await client.post("/v1/webhooks", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _delivered(client: httpx.AsyncClient, endpoint_id: str, count: int) -> list[dict[str, Any]]:
    for _ in range(200):  # bounded: 10 s
        data: list[dict[str, Any]] = (await client.get(f"/v1/webhooks/{endpoint_id}/deliveries")).json()["data"]
        if sum(d["status"] == "delivered" for d in data) >= count and all(d["status"] != "pending" for d in data):
            return data
        await asyncio.sleep(0.05)
    raise AssertionError("not delivered")


def test_the_schema_lists_exactly_the_engine_event_types() -> None:
    from typing import get_args

    from brokerlink.api.webhooks.schemas import EventType

    assert set(get_args(EventType)) == set(EVENT_TYPES)


async def test_security35_create_shows_the_secret_once_and_seals_it(
    app: Litestar, alice: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    _, url = receiver
    created = await _create(alice, url)
    assert created["secret"].startswith("whsec_")
    assert created["status"] == "enabled"
    assert created["description"] == "fills"
    assert created["event_types"] == ["copy.skipped", "order.filled"]
    fetched = (await alice.get(f"/v1/webhooks/{created['id']}")).json()
    listed = (await alice.get("/v1/webhooks")).json()["data"]
    assert "secret" not in fetched
    assert [e["id"] for e in listed] == [created["id"]]
    assert "secret" not in listed[0]
    database: Database = app.state.db
    async with database.session() as session:
        row = await session.get(WebhookEndpointRow, created["id"])
        secrets = (await session.execute(select(VaultSecretRow))).scalars().all()
    assert row is not None
    assert row.secret_ref is not None
    sealed = [s for s in secrets if s.purpose == SECRET_PURPOSE]
    assert len(sealed) == 1
    assert created["secret"].encode() not in repr(sealed[0].__dict__).encode()


async def test_validation_errors_name_the_field(alice: httpx.AsyncClient, receiver: tuple[Receiver, str]) -> None:
    _, url = receiver
    cases = [
        ({"url": url, "event_types": ["order.exploded"]}, "event_types"),
        ({"url": url, "event_types": []}, "event_types"),
        ({"event_types": ["order.filled"]}, "url"),
        ({"url": url, "event_types": ["order.filled"], "user_id": "usr_x"}, "user_id"),
    ]
    for body, field in cases:
        problem = assert_problem(await alice.post("/v1/webhooks", json=body), 422, "invalid_input")
        assert field in problem["detail"], problem
    assert (await alice.get("/v1/webhooks?limit=1000")).status_code in {400, 422}


async def test_security30_private_and_loopback_urls_are_refused(alice: httpx.AsyncClient) -> None:
    # 127.0.0.1 is allow-listed here (the receiver); its neighbours and every private range are not.
    for url in ("https://10.1.2.3/h", "http://192.168.0.1/h", "https://169.254.169.254/latest", "http://127.0.0.2/h",
                "https://[::1]/h", "http://example.com/h", "https://u:p@example.com/h"):  # fmt: skip
        problem = assert_problem(
            await alice.post("/v1/webhooks", json={"url": url, "event_types": ["order.filled"]}), 422, "invalid_input"
        )
        assert problem.get("field") == "url" or "url" in problem["detail"], problem
    assert (await alice.get("/v1/webhooks")).json()["data"] == []


async def test_security19_another_users_endpoints_are_not_found(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    _, url = receiver
    created = await _create(alice, url)
    base = f"/v1/webhooks/{created['id']}"
    assert_problem(await bob.get(base), 404, "not_found")
    assert_problem(await bob.get(base + "/deliveries"), 404, "not_found")
    assert_problem(await bob.patch(base, json={"description": "mine"}), 404, "not_found")
    assert_problem(await bob.post(base + "/test"), 404, "not_found")
    assert_problem(await bob.post(base + "/deliveries/whd_x/replay"), 404, "not_found")
    assert_problem(await bob.delete(base), 404, "not_found")
    assert (await bob.get("/v1/webhooks")).json()["data"] == []
    assert (await alice.get(base)).status_code == 200


async def test_test_event_then_replay_with_the_same_webhook_id(
    alice: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    app, url = receiver
    created = await _create(alice, url)
    app.secret = created["secret"]
    response = await alice.post(f"/v1/webhooks/{created['id']}/test")
    assert response.status_code == 202, response.text
    (delivery,) = await _delivered(alice, created["id"], 1)
    assert delivery["event_type"] == "webhook.test"
    assert delivery["attempts"] == 1
    assert [a["status_code"] for a in delivery["attempt_log"]] == [204]
    assert app.bad_signatures == 0

    replayed = await alice.post(f"/v1/webhooks/{created['id']}/deliveries/{delivery['id']}/replay")
    assert replayed.status_code == 202, replayed.text
    for _ in range(200):  # bounded: the replay's attempt lands
        if len(app.requests) == 2:
            break
        await asyncio.sleep(0.05)
    (after,) = await _delivered(alice, created["id"], 1)
    assert after["attempts"] == 2
    assert [h["webhook-id"] for h, _ in app.requests] == [delivery["event_id"]] * 2
    assert app.requests[0][1] == app.requests[1][1]  # the same body, byte for byte
    assert len(app.processed) == 1


async def test_update_disable_enable_delete(alice: httpx.AsyncClient, receiver: tuple[Receiver, str]) -> None:
    _, url = receiver
    created = await _create(alice, url)
    base = f"/v1/webhooks/{created['id']}"
    changed = (await alice.patch(base, json={"event_types": ["balance.changed"], "enabled": False})).json()
    assert changed["event_types"] == ["balance.changed"]
    assert changed["status"] == "disabled"
    assert changed["disabled_reason"] == "disabled by its owner"
    assert_problem(await alice.post(base + "/deliveries/whd_missing/replay"), 404, "not_found")
    assert (await alice.patch(base, json={"enabled": False})).status_code == 200  # unchanged: no audit record
    enabled = (await alice.patch(base, json={"enabled": True})).json()
    assert enabled["status"] == "enabled"
    assert enabled["disabled_reason"] is None
    assert_problem(await alice.patch(base, json={"url": "https://10.0.0.1/x"}), 422, "invalid_input")
    assert (await alice.delete(base)).status_code == 204
    assert_problem(await alice.get(base), 404, "not_found")


async def test_endpoints_per_user_are_capped_and_paged(
    alice: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    _, url = receiver
    ids = [(await _create(alice, url))["id"] for _ in range(3)]
    assert_problem(
        await alice.post("/v1/webhooks", json={"url": url, "event_types": ["order.filled"]}),
        409,
        "webhook_endpoint_limit",
    )
    first = (await alice.get("/v1/webhooks?limit=2")).json()
    second = (await alice.get(f"/v1/webhooks?limit=2&after={first['next_after']}")).json()
    assert [e["id"] for e in first["data"] + second["data"]] == sorted(ids, reverse=True)
    assert second["next_after"] is None
