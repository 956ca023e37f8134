"""Bad input on the pages' form posts: refused with problem details, and nothing changes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest
from litestar import Litestar

from tests.api.support import ClientFactory, snapshot
from tests.api.test_validation import VALID_FORMS

Sender = Callable[[httpx.AsyncClient, str], Awaitable[httpx.Response]]


def cases(valid: dict[str, str]) -> dict[str, tuple[Sender, int, str]]:
    first = next(iter(valid))

    def form(data: dict[str, str]) -> Sender:
        async def send(c: httpx.AsyncClient, url: str) -> httpx.Response:
            return await c.post(url, data=data, headers={"accept": "text/html"})

        return send

    async def as_json(c: httpx.AsyncClient, url: str) -> httpx.Response:
        return await c.post(url, json=valid)

    return {
        "json_instead_of_form": (as_json, 415, "unsupported_media_type"),
        "unknown_field": (form({**valid, "role": "admin"}), 422, "invalid_input"),
        "field_too_long": (form({**valid, first: "a" * 2000}), 422, "invalid_input"),
        "oversized": (form({**valid, "padding": "a" * (80 * 1024)}), 413, "payload_too_large"),
    }


@pytest.fixture
async def browser(make_client: ClientFactory) -> httpx.AsyncClient:
    """Signed in as Alice; the CSRF token travels in the header, as the middleware accepts for forms too."""
    return await make_client("alice@example.com")


@pytest.mark.parametrize("case", list(cases({"x": "1"})))
@pytest.mark.parametrize("route", sorted(VALID_FORMS))
async def test_bad_form_input_is_refused_and_changes_nothing(
    app: Litestar, browser: httpx.AsyncClient, route: tuple[str, str], case: str
) -> None:
    _, path = route
    send, status, code = cases(VALID_FORMS[route])[case]
    before = await snapshot(app)
    response = await send(browser, path)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code
    assert await snapshot(app) == before


@pytest.mark.parametrize("route", sorted(VALID_FORMS))
async def test_the_valid_form_is_accepted(app: Litestar, browser: httpx.AsyncClient, route: tuple[str, str]) -> None:
    _, path = route
    response = await browser.post(path, data=VALID_FORMS[route], headers={"accept": "text/html"})
    assert response.status_code == 303, response.text
