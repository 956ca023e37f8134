"""Failed client authentications count like failed sign-ins: lockout, audit, alert (SECURITY.md 29)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from brokerlink.app.factory import create_app
from brokerlink.engine.alerts.service import AlertService
from brokerlink.kit.clock import ManualClock
from brokerlink.store.models_alerts import AlertRow
from brokerlink.store.models_audit import AuditRecordRow
from tests.api.oauth.conftest import Server, oauth_settings
from tests.api.oauth.support import app_db, generate, oauth_error, post_token
from tests.api.support import asgi_client, running
from tests.backends import mark_backend


@pytest.fixture
async def locking(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    mark_backend(request, "sqlite")
    settings = oauth_settings(
        tmp_path, login_lockout_threshold=3, alerts_enabled=True, alert_auth_failures=3, alert_tick_s=3600.0
    )
    clock = ManualClock()
    app = create_app(settings, clock=clock, configure_logs=False)
    async with running(app), asgi_client(app) as http:
        yield Server(app, http, app_db(app), clock, "sqlite")


async def test_security29_failed_client_authentications_lock_out_with_audit_and_alert(locking: Server) -> None:
    server = locking
    client = await server.client()
    forged = generate("EC", "P-256")
    for _ in range(3):
        form = client.form(client.assertion(key=forged), grant_type="client_credentials")
        oauth_error(await post_token(server.http, form, server.dpop()), 401, "invalid_client")

    # Locked: even a valid assertion is refused, before it is checked.
    response = await post_token(server.http, client.form(grant_type="client_credentials"), server.dpop())
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) > 0
    par = await server.http.post("/oauth/par", data=client.form(response_type="code"))
    assert par.status_code == 429

    async with server.db.session() as session:
        records = (
            await session.scalars(
                select(AuditRecordRow).where(AuditRecordRow.actor_id == client.id).order_by(AuditRecordRow.seq)
            )
        ).all()
    assert [(r.action, r.actor_kind, r.outcome) for r in records] == [
        ("oauth.token", "client", "failure"),
        ("oauth.token", "client", "failure"),
        ("oauth.token", "client", "failure"),
        ("oauth.token", "client", "denied"),
        ("oauth.par", "client", "denied"),
    ]

    alerts: AlertService = server.app.state.alerts
    await alerts.idle()
    async with server.db.session() as session:
        fired = (await session.scalars(select(AlertRow).where(AlertRow.rule == "auth_failures_principal"))).all()
    # The rules fold principals to lower case (emails); a client id is still recognisable.
    assert [alert.subject for alert in fired] == [f"client:{client.id}".lower()]
