"""``/v1/admin/alerts`` and ``/v1/admin/alert-webhooks`` on the running app: admins only, alerts from real
failed logins, acknowledging and resolving, paging, and webhook configuration with its secret in the vault."""

from __future__ import annotations

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import select

from brokerlink import observe
from brokerlink.config import Settings
from brokerlink.domain.enums import Role
from brokerlink.engine.alerts.service import AlertService
from brokerlink.engine.alerts.webhooks import SECRET_PURPOSE
from brokerlink.kit.clock import ManualClock
from brokerlink.store.db import Database
from brokerlink.store.models import UserRow, VaultSecretRow
from brokerlink.store.repositories.users import UserRepository
from tests.api.support import PROBLEM, ClientFactory, assert_problem, with_csrf


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Every one of the fifty attempts reaches the password check (the lockout has its own tests), and
    # webhooks may point at loopback (the webhook tests run a receiver there).
    return settings.model_copy(update={"login_lockout_threshold": 1000, "alert_webhook_allow_loopback": True})


async def _make_admin(app: Litestar, email: str) -> None:
    database: Database = app.state.db
    clock: ManualClock = app.state.clock
    async with database.session() as session:
        user = (await session.execute(select(UserRow).where(UserRow.email == email))).scalar_one()
        assert await UserRepository(session).set_role(user.id, Role.ADMIN, now=clock.now())
        await session.commit()


@pytest.fixture
async def admin(app: Litestar, make_client: ClientFactory) -> httpx.AsyncClient:
    c = await make_client("ops@example.com", "Ops")
    await _make_admin(app, "ops@example.com")
    return c


def _service(app: Litestar) -> AlertService:
    service: AlertService = app.state.alerts
    return service


async def test_fifty_failed_logins_raise_alerts_for_that_principal_and_that_ip(
    app: Litestar, client: httpx.AsyncClient, make_client: ClientFactory, admin: httpx.AsyncClient
) -> None:
    await make_client("victim@example.com", "Victim")
    await with_csrf(client)
    for _ in range(50):
        response = await client.post("/v1/auth/login", json={"email": "Victim@example.com", "password": "guess"})
        assert response.status_code == 401
    await _service(app).idle()

    response = await admin.get("/v1/admin/alerts", params={"rule": "auth_failures_principal"})
    assert response.status_code == 200, response.text
    [by_principal] = response.json()["data"]
    assert (by_principal["subject"], by_principal["status"], by_principal["severity"]) == (
        "victim@example.com", "open", "warning",
    )  # fmt: skip
    assert by_principal["labels"]["failures"] == "20"  # the default threshold
    [by_ip] = (await admin.get("/v1/admin/alerts", params={"rule": "auth_failures_ip"})).json()["data"]
    assert by_ip["subject"] == "127.0.0.1"  # the address the ASGI test transport reports
    # Fifty failures in one window: each rule fired once, not thirty-one times.
    assert (by_principal["count"], by_ip["count"]) == (1, 1)


async def test_only_admins_reach_the_admin_routes(
    app: Litestar, client: httpx.AsyncClient, alice: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    observe.ledger_drift(account_id="acc_1", currency="USD", unexplained="1")
    await _service(app).idle()
    [alert] = (await admin.get("/v1/admin/alerts")).json()["data"]
    calls = [
        ("GET", "/v1/admin/alerts"),
        ("GET", f"/v1/admin/alerts/{alert['id']}"),
        ("GET", f"/v1/admin/alerts/{alert['id']}/deliveries"),
        ("POST", f"/v1/admin/alerts/{alert['id']}/acknowledge"),
        ("POST", f"/v1/admin/alerts/{alert['id']}/resolve"),
        ("GET", "/v1/admin/alert-webhooks"),
        ("POST", "/v1/admin/alert-webhooks"),
        ("DELETE", "/v1/admin/alert-webhooks/awh_01JD3X4T2W6N9Q8R7S5V4B3C2A"),
    ]
    await with_csrf(client)
    for method, path in calls:
        body = {"url": "http://127.0.0.1:9/hook"} if path.endswith("alert-webhooks") and method == "POST" else None
        assert_problem(await alice.request(method, path, json=body), 403, "forbidden")
        assert (await client.request(method, path, json=body)).status_code == 401
    still = (await admin.get(f"/v1/admin/alerts/{alert['id']}")).json()
    assert still["status"] == "open"  # nothing the refused calls asked for happened
    assert (await admin.get("/v1/admin/alert-webhooks")).json()["data"] == []


async def test_acknowledge_then_resolve(app: Litestar, admin: httpx.AsyncClient) -> None:
    observe.audit_verify_failed(sequence=9, reason="hash mismatch")
    await _service(app).idle()
    [alert] = (await admin.get("/v1/admin/alerts", params={"status": "open"})).json()["data"]
    me = (await admin.get("/v1/me")).json()

    acked = await admin.post(f"/v1/admin/alerts/{alert['id']}/acknowledge")
    assert acked.status_code == 200, acked.text
    assert (acked.json()["status"], acked.json()["acknowledged_by"]) == ("acknowledged", me["id"])
    again = await admin.post(f"/v1/admin/alerts/{alert['id']}/acknowledge")
    assert (again.status_code, again.json()["acknowledged_at"]) == (200, acked.json()["acknowledged_at"])
    assert (await admin.get("/v1/admin/alerts", params={"status": "open"})).json()["data"] == []

    # An acknowledged alert still absorbs its rule's firings (no duplicate while someone works on it).
    observe.audit_verify_failed(sequence=9, reason="hash mismatch")
    await _service(app).idle()
    [same] = (await admin.get("/v1/admin/alerts")).json()["data"]
    assert (same["id"], same["count"], same["status"]) == (alert["id"], 2, "acknowledged")

    resolved = await admin.post(f"/v1/admin/alerts/{alert['id']}/resolve")
    assert (resolved.status_code, resolved.json()["status"], resolved.json()["resolved_by"]) == (
        200, "resolved", me["id"],
    )  # fmt: skip
    assert (await admin.post(f"/v1/admin/alerts/{alert['id']}/resolve")).status_code == 200
    assert_problem(await admin.post(f"/v1/admin/alerts/{alert['id']}/acknowledge"), 409, "alert_resolved")
    assert_problem(await admin.post("/v1/admin/alerts/alr_01JD3X4T2W6N9Q8R7S5V4B3C2A/resolve"), 404, "not_found")
    assert_problem(await admin.get("/v1/admin/alerts/alr_01JD3X4T2W6N9Q8R7S5V4B3C2A"), 404, "not_found")


async def test_alerts_are_paged_newest_first_and_filtered(app: Litestar, admin: httpx.AsyncClient) -> None:
    for n in range(5):
        observe.ledger_drift(account_id=f"acc_{n}", currency="USD", unexplained="1")
        await _service(app).idle()  # one at a time: creation order is the order asserted
    observe.reconcile_drift(subscription_id="sub_1", drifted=2)
    await _service(app).idle()

    seen: list[str] = []
    after = None
    while True:
        params = {"rule": "ledger_drift", "limit": "2"} | ({"after": after} if after else {})
        page = (await admin.get("/v1/admin/alerts", params=params)).json()
        seen += [a["subject"] for a in page["data"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen == [f"acc_{n}:USD" for n in reversed(range(5))]
    [drift] = (await admin.get("/v1/admin/alerts", params={"rule": "reconcile_drift"})).json()["data"]
    assert drift["labels"] == {"subscription_id": "sub_1", "drifted": "2"}
    assert_problem(await admin.get("/v1/admin/alerts", params={"status": "snoozed"}), 422, "invalid_filter")
    assert_problem(await admin.get("/v1/admin/alerts", params={"limit": "0"}), 422, "invalid_input")


async def test_a_webhook_secret_is_shown_once_and_kept_in_the_vault(app: Litestar, admin: httpx.AsyncClient) -> None:
    created = await admin.post("/v1/admin/alert-webhooks", json={"url": "http://127.0.0.1:9/hooks"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"].startswith("whsec_")
    assert created.headers["cache-control"] == "no-store"
    assert created.headers["location"] == f"/v1/admin/alert-webhooks/{body['id']}"

    listed = await admin.get("/v1/admin/alert-webhooks")
    assert listed.json()["data"] == [{k: v for k, v in body.items() if k != "secret"}]
    assert body["secret"] not in listed.text

    database: Database = app.state.db
    async with database.session() as session:
        [secret] = (
            await session.execute(select(VaultSecretRow).where(VaultSecretRow.owner_id == body["id"]))
        ).scalars()
    assert secret.purpose == SECRET_PURPOSE
    assert body["secret"].encode() not in bytes(secret.ciphertext)

    assert (await admin.delete(f"/v1/admin/alert-webhooks/{body['id']}")).status_code == 204
    assert_problem(await admin.delete(f"/v1/admin/alert-webhooks/{body['id']}"), 404, "not_found")
    async with database.session() as session:
        left = (await session.execute(select(VaultSecretRow).where(VaultSecretRow.owner_id == body["id"]))).all()
    assert left == []


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/a",
        "https://10.0.0.8/a",
        "https://169.254.169.254/latest/meta-data",
        "https://[fd00::1]/a",
        "https://user:pw@127.0.0.1/a",
        "not a url",
    ],
)
async def test_webhook_urls_reaching_inside_are_refused(admin: httpx.AsyncClient, url: str) -> None:
    response = await admin.post("/v1/admin/alert-webhooks", json={"url": url})
    assert response.headers["content-type"].startswith(PROBLEM)
    problem = assert_problem(response, 422, "invalid_input")
    assert problem["field"] == "url"
    assert (await admin.get("/v1/admin/alert-webhooks")).json()["data"] == []


async def test_unknown_fields_in_a_webhook_are_refused(admin: httpx.AsyncClient) -> None:
    response = await admin.post("/v1/admin/alert-webhooks", json={"url": "http://127.0.0.1:9/a", "secret": "mine"})
    assert_problem(response, 422, "invalid_input")
