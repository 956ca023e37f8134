"""Shared set-up of the client tests: an app in-process, users, links, and the client wired to it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from litestar import Litestar
from pydantic import SecretStr

from brokerlink.config import Settings
from brokerlink.kit.clock import ManualClock
from tests.api.mfa_support import Authenticator, enrol_totp
from tests.api.support import PASSWORD, asgi_client, with_csrf

ORIGIN = "https://testserver.local"
"""The in-process clients' base URL, the app's issuer and resource origin."""


def settings(tmp_path: Path, **changes: Any) -> Settings:
    """Test settings with room for the bursts of requests the tests make."""
    base: dict[str, Any] = {
        "data_dir": tmp_path,
        "environment": "test",
        "secret_key": SecretStr("client-tests-secret-key-long-enough-0123456789"),
        "log_level": "warning",
        "log_format": "console",
        "oauth_issuer": ORIGIN,
        "rate_limit_user": "1000/second",
        "rate_limit_ip": "1000/second",
    }
    return Settings(**(base | changes))


def server_time(clock: ManualClock) -> Callable[[], float]:
    """The app's clock as the client's (seconds since the epoch), for DPoP proofs and assertions."""
    return lambda: clock.now().timestamp()


def http_for(
    app: Litestar, *, hooks: list[Callable[[httpx.Request], Awaitable[None]]] | None = None
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` reaching the running app in-process (for the client's ``http``)."""
    client = asgi_client(app)
    if hooks:
        client.event_hooks["request"] = list(hooks)
    return client


async def registered(
    app: Litestar, clock: ManualClock, email: str, name: str
) -> tuple[httpx.AsyncClient, Authenticator]:
    """A new user, signed in (raw HTTP, as the browser would) and enrolled in TOTP."""
    c = asgi_client(app)
    await with_csrf(c)
    response = await c.post("/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": name})
    assert response.status_code == 201, response.text
    return c, await enrol_totp(c, clock)


async def register_app(
    app: Litestar,
    clock: ManualClock,
    public_jwks: dict[str, Any],
    *,
    redirect_uri: str,
    scopes: list[str],
    grant_types: list[str] | None = None,
    admin_email: str = "admin@example.com",
) -> str:
    """An admin registers a third-party app (as ``brokerlink clients create`` would); its client id."""
    from brokerlink.domain.enums import Role
    from tests.api.support import grant_role

    admin, _ = await registered(app, clock, admin_email, "Admin")
    await grant_role(app, admin_email, Role.ADMIN)
    body: dict[str, Any] = {
        "name": "Portfolio Tracker",
        "redirect_uris": [redirect_uri],
        "jwks": public_jwks,
        "scopes": scopes,
    }
    if grant_types is not None:
        body["grant_types"] = grant_types
    async with contextlib.aclosing(admin):
        created = await admin.post("/v1/admin/clients", json=body)
    assert created.status_code == 201, created.text
    client_id: str = created.json()["id"]
    return client_id


async def approve(
    user: httpx.AsyncClient, device: Authenticator, clock: ManualClock, authorization_url: str, account_ids: list[str]
) -> str:
    """The browser's part: follow the authorization URL to the consent page, tick ``account_ids`` and
    approve with a fresh authenticator code; the URL the app's redirect listener would catch."""
    from datetime import timedelta

    r = await user.get(authorization_url)
    assert r.status_code == 303, r.text
    r = await user.get(r.headers["location"])
    assert r.status_code == 303, r.text
    consent_path = r.headers["location"]
    page = await user.get(consent_path)
    assert page.status_code == 200
    assert "Portfolio Tracker" in page.text
    clock.advance(timedelta(seconds=30))  # a fresh TOTP step (the enrolment used the current one)
    form = {"decision": "approve", "account_ids": account_ids, "code": device.code(clock)}
    answer = await user.post(f"{consent_path}/decision", data=form)
    assert answer.status_code == 303, answer.text
    redirected_to: str = answer.headers["location"]
    return redirected_to


@contextlib.asynccontextmanager
async def serve(app: Litestar, port: int) -> AsyncIterator[str]:
    """The app under uvicorn on ``127.0.0.1:port`` (real sockets, for the stream and the sync client)."""
    import asyncio

    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, lifespan="on", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):  # bounded: 10 s
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)
