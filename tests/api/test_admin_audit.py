"""``/v1/admin/audit`` on the running app: admins and auditors only, filters, paging, and verify."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import select, text

from brokerlink.app.factory import create_app
from brokerlink.config import Settings
from brokerlink.domain.enums import Role
from brokerlink.kit.clock import ManualClock
from brokerlink.security.audit import Actor, AuditContext, record
from brokerlink.security.audit_sign import AuditSigner
from brokerlink.store.db import Database
from brokerlink.store.models import UserRow
from brokerlink.store.repositories.audit import AuditRepository
from brokerlink.store.repositories.users import UserRepository
from tests.api.support import PROBLEM, ClientFactory, running

T0 = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)


async def _grant(app: Litestar, email: str, role: Role) -> None:
    database: Database = app.state.db
    clock: ManualClock = app.state.clock
    async with database.session() as session:
        user = (await session.execute(select(UserRow).where(UserRow.email == email))).scalar_one()
        assert await UserRepository(session).set_role(user.id, role, now=clock.now())
        await session.commit()


async def _seed(app: Litestar, n: int) -> None:
    """``n`` records after whatever the app itself recorded: actions cycle auth.login, order.place, order.cancel."""
    database: Database = app.state.db
    for i in range(n):
        async with database.session() as session:
            await record(
                session,
                actor=Actor(kind="user", id=f"usr_seed{i % 2}"),
                action=("auth.login", "order.place", "order.cancel")[i % 3],
                target=f"ord_{i}",
                now=T0 + timedelta(minutes=i),
                outcome="denied" if i == 4 else "success",
                context=AuditContext(request_id=f"req_{i}", source_ip="192.0.2.1"),
                details={"i": i},
            )
            await session.commit()


@pytest.fixture
async def auditor(app: Litestar, make_client: ClientFactory) -> httpx.AsyncClient:
    c = await make_client("auditor@example.com", "Auditor")
    await _grant(app, "auditor@example.com", Role.AUDITOR)
    return c


async def test_admin_audit_is_forbidden_to_plain_users(alice: httpx.AsyncClient) -> None:
    for path in ("/v1/admin/audit", "/v1/admin/audit/verify"):
        response = await alice.get(path)
        assert response.status_code == 403, response.text
        assert response.headers["content-type"].startswith(PROBLEM)


async def test_admin_audit_needs_a_session(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/admin/audit")
    assert response.status_code == 401


@pytest.mark.parametrize("role", [Role.ADMIN, Role.AUDITOR])
async def test_admin_audit_lists_records_for_admins_and_auditors(
    app: Litestar, make_client: ClientFactory, role: Role
) -> None:
    c = await make_client("ops@example.com", "Ops")
    await _grant(app, "ops@example.com", role)
    await _seed(app, 3)
    response = await c.get("/v1/admin/audit", params={"actor": "usr_seed0"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["target"] for r in body["data"]] == ["ord_2", "ord_0"]  # newest first
    first = body["data"][-1]
    assert first["action"] == "auth.login"
    assert first["details"] == {"i": 0}
    assert first["request_id"] == "req_0"
    assert first["source_ip"] == "192.0.2.1"
    assert len(first["hash"]) == 64
    assert body["next_before"] is None


async def test_admin_audit_filters(app: Litestar, auditor: httpx.AsyncClient) -> None:
    await _seed(app, 9)

    async def targets(**params: str) -> list[str]:
        response = await auditor.get("/v1/admin/audit", params=params)
        assert response.status_code == 200, response.text
        return [r["target"] for r in response.json()["data"]]

    assert await targets(action="order.") == ["ord_8", "ord_7", "ord_5", "ord_4", "ord_2", "ord_1"]
    assert await targets(action="order.cancel") == ["ord_8", "ord_5", "ord_2"]
    assert await targets(target="ord_3") == ["ord_3"]
    assert await targets(outcome="denied") == ["ord_4"]
    since, until = (T0 + timedelta(minutes=2)).isoformat(), (T0 + timedelta(minutes=4)).isoformat()
    assert await targets(since=since, until=until, actor="usr_seed0") == ["ord_2"]
    assert await targets(since=since, until=until) == ["ord_3", "ord_2"]


async def test_admin_audit_refuses_bad_filters(auditor: httpx.AsyncClient) -> None:
    for params in ({"since": "2026-04-01T08:00:00"}, {"outcome": "maybe"}, {"limit": "0"}, {"before": "x"}):
        response = await auditor.get("/v1/admin/audit", params=params)
        assert response.status_code in {400, 422}, (params, response.text)


async def test_admin_audit_pages_by_cursor(app: Litestar, auditor: httpx.AsyncClient) -> None:
    await _seed(app, 7)
    seen: list[str] = []
    params = {"limit": "2", "action": "order."}
    while True:
        response = await auditor.get("/v1/admin/audit", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["data"]) <= 2
        seen.extend(r["target"] for r in body["data"])
        if body["next_before"] is None:
            break
        params["before"] = str(body["next_before"])
    assert seen == ["ord_5", "ord_4", "ord_2", "ord_1"]


async def test_admin_audit_verify_reports_the_chain(app: Litestar, auditor: httpx.AsyncClient) -> None:
    await _seed(app, 4)
    response = await auditor.get("/v1/admin/audit/verify")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True
    assert body["records_checked"] >= 4
    assert body["key_id"].startswith("ed25519:")
    database: Database = app.state.db
    async with database.engine.begin() as conn:  # the owner drops the guard and edits the newest record
        await conn.execute(text("DROP TRIGGER audit_records_no_update"))
        head = (await conn.execute(text("SELECT MAX(seq) FROM audit_records"))).scalar_one()
        await conn.execute(text("UPDATE audit_records SET target = 'ord_x' WHERE seq = :s"), {"s": head})
    body = (await auditor.get("/v1/admin/audit/verify")).json()
    assert body["ok"] is False
    assert body["first_bad_sequence"] == head
    assert "altered" in body["reason"]


async def test_admin_audit_server_signs_checkpoints_periodically(
    settings: Settings, clock: ManualClock, tmp_path: Path
) -> None:
    export = tmp_path / "offhost" / "checkpoints.jsonl"
    fast = settings.model_copy(update={"audit_checkpoint_every_s": 0.02, "audit_checkpoint_export": export})
    app = create_app(fast, clock=clock, configure_logs=False)
    async with running(app):
        await _seed(app, 3)
        database: Database = app.state.db
        for _ in range(500):  # bounded polling: the task runs every 20 ms
            async with database.session() as session:
                latest = await AuditRepository(session).latest_checkpoint()
            if latest is not None and latest.sequence == 3:
                break
            await asyncio.sleep(0.02)
        async with database.session() as session:
            stored = await AuditRepository(session).checkpoints()
    assert stored
    assert stored[-1].sequence == 3
    assert all(point.sequence > 0 for point in stored)  # an empty trail is not signed
    exported = [json.loads(line) for line in export.read_text().splitlines()]
    assert [(p["type"], p["sequence"]) for p in exported] == [("checkpoint", p.sequence) for p in stored]
    assert stored[-1].key_id == AuditSigner.from_settings(fast).key_id
