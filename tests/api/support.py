"""Helpers shared by the API tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx

C = TypeVar("C", bound=httpx.AsyncClient)
PASSWORD = "correct horse battery staple"
ClientFactory = Callable[..., Awaitable[httpx.AsyncClient]]


async def with_csrf(c: C) -> C:
    """Fetch a CSRF token and send it on every later request, as the dashboard's scripts do."""
    response = await c.get("/v1/auth/csrf")
    assert response.status_code == 200, response.text
    c.headers["x-csrf-token"] = response.json()["csrf_token"]
    return c


def asgi_client(app: object, cookies: dict[str, str] | None = None) -> httpx.AsyncClient:
    """Another client of an app whose lifespan is already running (no second startup)."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
        base_url="https://testserver.local",
        cookies=cookies,
    )
