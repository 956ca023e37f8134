"""Logs: one JSON object per line, carrying the request id, and never a password or session token."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from litestar.testing import AsyncTestClient

from brokerlink.app.factory import create_app
from brokerlink.config import Settings
from brokerlink.kit.clock import ManualClock

PASSWORD = "correct horse battery staple"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


async def test_logs_are_json_with_request_ids_and_no_secrets(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    settings = Settings(data_dir=tmp_path, secret_key="k" * 48, log_level="info", log_format="json")
    app = create_app(settings, clock=ManualClock(), configure_logs=True)
    async with AsyncTestClient(app, base_url="https://testserver.local") as c:
        token = (await c.get("/v1/auth/csrf")).json()["csrf_token"]
        c.headers["x-csrf-token"] = token
        body = {"email": "alice@example.com", "password": PASSWORD, "display_name": "Alice"}
        assert (await c.post("/v1/auth/register", json=body)).status_code == 201
        bad = await c.post("/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD + "x"})
        assert bad.status_code == 401
        me = await c.get("/v1/me", headers={"x-request-id": "trace-me-1"})
        session_token = c.cookies["brokerlink_session"]
    err = capfd.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    access = [r for r in lines if r.get("event") == "request"]
    assert {r["path"] for r in access} >= {"/v1/auth/csrf", "/v1/auth/register", "/v1/auth/login", "/v1/me"}
    assert all(r["request_id"] and r["level"] == "info" and "timestamp" in r for r in access)
    traced = [r for r in access if r["request_id"] == "trace-me-1"]
    assert len(traced) == 1
    assert traced[0]["status"] == me.status_code == 200
    assert traced[0]["user_id"].startswith("usr_")
    assert PASSWORD not in err
    assert session_token not in err
    assert token not in err
