"""``/v1/admin/stream`` on a real server (uvicorn on loopback) with a real WebSocket client.

An admin receives each new or changed alert; a signed-in non-admin, a cross-site page and an
anonymous client are refused. With the Redis bus, an alert raised by one server process reaches an
admin connected to another.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import uvicorn
import websockets
from litestar import Litestar
from pydantic import SecretStr
from sqlalchemy import select

from brokerlink import observe
from brokerlink.app.factory import create_app
from brokerlink.config import Settings
from brokerlink.domain.enums import Role
from brokerlink.engine.alerts.events import AlertEvent
from brokerlink.engine.alerts.service import AlertService
from brokerlink.kit.clock import ManualClock
from brokerlink.store.db import Database
from brokerlink.store.models import UserRow
from brokerlink.store.repositories.users import UserRepository
from brokerlink.stream.admin import AdminAlertHub
from tests.contract.harness import free_port

PASSWORD = "correct horse battery staple"
WAIT_S = 10  # bounded waits for a message that should come at once


def _settings(tmp_path: Path, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "environment": "test",
        "secret_key": SecretStr("test-secret-key-that-is-long-enough-0123456789"),
        "log_level": "warning",
        "log_format": "console",
        "cookie_secure": False,  # plain http on loopback
        "rate_limit_user": "1000/second",
        "rate_limit_ip": "1000/second",
    }
    return Settings(**(values | changes))


@contextlib.asynccontextmanager
async def _serve(app: Litestar) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on", timeout_graceful_shutdown=1)
    )
    task = asyncio.create_task(server.serve())
    for _ in range(200):  # bounded: 10 s
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    assert server.started
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)


async def _sign_up(host: str, email: str) -> str:
    """Register ``email`` over HTTP; returns the session cookie's value."""
    async with httpx.AsyncClient(base_url=f"http://{host}") as c:
        token = (await c.get("/v1/auth/csrf")).json()["csrf_token"]
        response = await c.post(
            "/v1/auth/register",
            json={"email": email, "password": PASSWORD, "display_name": email},
            headers={"x-csrf-token": token},
        )
        assert response.status_code == 201, response.text
        return response.cookies["brokerlink_session"]


async def _make_admin(app: Litestar, email: str) -> None:
    database: Database = app.state.db
    async with database.session() as session:
        user = (await session.execute(select(UserRow).where(UserRow.email == email))).scalar_one()
        assert await UserRepository(session).set_role(user.id, Role.ADMIN, now=app.state.clock.now())
        await session.commit()


def _connect(host: str, cookie: str | None, **kwargs: Any) -> Any:
    headers = {"Cookie": f"brokerlink_session={cookie}"} if cookie else {}
    return websockets.connect(f"ws://{host}/v1/admin/stream", additional_headers=headers, **kwargs)


async def _next_event(ws: Any) -> AlertEvent:
    return msgspec.json.decode(await asyncio.wait_for(ws.recv(), WAIT_S), type=AlertEvent)


async def test_an_admin_receives_new_and_changed_alerts(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path), clock=ManualClock(), configure_logs=False)
    async with _serve(app) as host:
        cookie = await _sign_up(host, "ops@example.com")
        await _make_admin(app, "ops@example.com")
        hub: AdminAlertHub = app.state.admin_stream
        await asyncio.wait_for(hub.ready.wait(), WAIT_S)
        async with _connect(host, cookie) as ws:
            await _subscribed(hub, 1)
            observe.ledger_drift(account_id="acc_1", currency="USD", unexplained="3.50")
            opened = await _next_event(ws)
            assert (opened.type, opened.data.rule, opened.data.subject) == ("alert.opened", "ledger_drift", "acc_1:USD")
            assert opened.data.labels["unexplained"] == "3.50"

            observe.ledger_drift(account_id="acc_1", currency="USD", unexplained="4.00")
            updated = await _next_event(ws)
            assert (updated.type, updated.data.id, updated.data.count) == ("alert.updated", opened.data.id, 2)

            async with httpx.AsyncClient(base_url=f"http://{host}", cookies={"brokerlink_session": cookie}) as c:
                token = (await c.get("/v1/auth/csrf")).json()["csrf_token"]
                response = await c.post(
                    f"/v1/admin/alerts/{opened.data.id}/acknowledge", headers={"x-csrf-token": token}
                )
                assert response.status_code == 200, response.text
            acked = await _next_event(ws)
            assert (acked.type, acked.data.status) == ("alert.acknowledged", "acknowledged")
            assert updated.id != opened.id != acked.id


async def _subscribed(hub: AdminAlertHub, count: int) -> None:
    for _ in range(200):  # bounded: the socket registers right after its handshake
        if len(hub._subscribers) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the admin socket never subscribed")


async def test_a_non_admin_a_cross_site_page_and_an_anonymous_client_are_refused(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path), clock=ManualClock(), configure_logs=False)
    async with _serve(app) as host:
        user_cookie = await _sign_up(host, "alice@example.com")
        admin_cookie = await _sign_up(host, "ops@example.com")
        await _make_admin(app, "ops@example.com")

        async with _connect(host, user_cookie) as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), WAIT_S)
        assert ws.close_code == 1008
        assert ws.close_reason == "admins only"

        async with _connect(host, admin_cookie, origin="https://evil.example") as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), WAIT_S)
        assert (ws.close_code, ws.close_reason) == (1008, "cross-origin")

        with pytest.raises(websockets.InvalidStatus) as anonymous:  # no session: refused at the handshake
            async with _connect(host, None) as ws:
                await asyncio.wait_for(ws.recv(), WAIT_S)
        assert anonymous.value.response.status_code == 403
        assert app.state.admin_stream._subscribers == set()


async def test_an_alert_raised_by_one_process_reaches_an_admin_on_another(tmp_path: Path, redis_url: str) -> None:
    # Two apps (two server processes' worth of state) share the database and Redis. Only the first
    # evaluates rules (both would hear this process's observations otherwise).
    shared = {"bus_backend": "redis", "redis_url": redis_url}
    raising = create_app(_settings(tmp_path, **shared), clock=ManualClock(), configure_logs=False)
    watching = create_app(
        _settings(tmp_path, alerts_enabled=False, **shared), clock=ManualClock(), configure_logs=False
    )
    async with _serve(raising) as raising_host, _serve(watching) as watching_host:
        cookie = await _sign_up(raising_host, "ops@example.com")
        await _make_admin(raising, "ops@example.com")
        hub: AdminAlertHub = watching.state.admin_stream
        await asyncio.wait_for(hub.ready.wait(), WAIT_S)
        async with _connect(watching_host, cookie) as ws:
            await _subscribed(hub, 1)
            observe.audit_verify_failed(sequence=3, reason="record edited")
            service: AlertService = raising.state.alerts
            await service.idle()
            event = await _next_event(ws)
            assert (event.type, event.data.rule, event.data.labels["sequence"]) == (
                "alert.opened", "audit_verify_failed", "3",
            )  # fmt: skip
