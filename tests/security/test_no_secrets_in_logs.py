"""SECURITY.md 38: logs never contain passwords, tokens, secrets or full credentials.

Logs are captured at DEBUG, as JSON, across one real flow through the running app: register with a
password, a failed sign-in, enrol TOTP (its secret and recovery codes), sign out and in again with
the password and a TOTP code, link a broker account (key and secret) against a real sim venue,
place an order through it, unlink it, then a vault key rotation; every secret value the flow
handled is searched for in everything logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from brokerlink.app.factory import create_app
from brokerlink.cli.main import app as cli_app
from brokerlink.kit.clock import ManualClock
from brokerlink.logs import configure_logging
from tests.api.mfa_support import Authenticator
from tests.api.support import MARKET_ORDER, PASSWORD, asgi_client, eventually, running
from tests.security.test_secrets_at_rest import Flow, Venue, app_settings, link, sign_up_with_mfa, venue

__all__ = ["venue"]  # the sim venue fixture, with its distinctive credentials


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put back what :func:`configure_logging` changes (root handlers, library loggers, structlog)."""
    names = ["", "uvicorn", "uvicorn.error", "uvicorn.access", "granian", "granian.access", "_granian", "httpx"]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in map(logging.getLogger, names)]
    yield
    for lg, handlers, level, propagate in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate
    structlog.reset_defaults()


async def test_logs_at_debug_hold_no_password_token_secret_or_credential(
    venue: Venue,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    restore_logging: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SECURITY.md 38: every secret a real flow handles is absent from the DEBUG logs (which are checked
    to be there and verbose, so the search has something to search)."""
    configure_logging("debug", "json")
    settings = app_settings(tmp_path, log_level="debug", log_format="json")
    clock = ManualClock()
    app = create_app(settings, clock=clock, configure_logs=False)
    flow = Flow()
    async with running(app), asgi_client(app) as c:
        device: Authenticator = await sign_up_with_mfa(c, clock, "logs@example.com", flow)
        flow.secrets["session_token"] = c.cookies["brokerlink_session"]
        flow.secrets["csrf_token"] = c.headers["x-csrf-token"]

        wrong = PASSWORD + "-wrong"
        flow.secrets["wrong_password"] = wrong
        assert (await c.post("/v1/auth/logout")).status_code == 204
        assert (
            await c.post("/v1/auth/login", json={"email": "logs@example.com", "password": wrong})
        ).status_code == 401
        r = await c.post("/v1/auth/login", json={"email": "logs@example.com", "password": PASSWORD})
        assert r.status_code == 200, r.text
        assert r.json()["mfa_required"] is True
        flow.secrets["pending_session_token"] = c.cookies["brokerlink_session"]
        clock.advance(timedelta(seconds=30))
        code = device.code(clock)
        r = await c.post("/v1/auth/mfa", json={"code": code})
        assert r.status_code == 200, r.text
        flow.secrets["mfa_session_token"] = c.cookies["brokerlink_session"]

        await link(c, venue.base_url, flow, label="Logged link")
        placed = await c.post(f"/v1/accounts/{flow.account_id}/orders", json=MARKET_ORDER)
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["id"]

        async def filled() -> bool | None:
            status = (await c.get(f"/v1/orders/{order_id}")).json()["status"]
            return True if status == "filled" else None

        await eventually(filled, "the market order fills")
        assert (await c.delete(f"/v1/connections/{flow.connection_id}")).status_code == 204

    # A key rotation of the same data dir (the CLI logs through the same setup).
    monkeypatch.setenv("BROKERLINK_DATA_DIR", str(tmp_path))
    # In a thread: the command runs its own event loop, as it does from a shell.
    rotated = await asyncio.to_thread(CliRunner().invoke, cli_app, ["vault", "rotate"])
    assert rotated.exit_code == 0, rotated.output

    out, err = capfd.readouterr()
    logged = out + err + rotated.output
    assert '"level": "debug"' in logged, "DEBUG logs were captured"
    for event in ("broker_linked", "request"):
        assert f'"event": "{event}"' in logged, f"the {event} log line was captured"
    assert flow.connection_id in logged, "positive control: what the flow did is in the logs, by id"
    assert len(flow.secrets) >= 15
    for name, value in flow.secrets.items():
        leaking = [line for line in logged.splitlines() if value in line]
        assert not leaking, f"{len(leaking)} log line(s) carry the {name}, e.g. {leaking[0][:300]}"
