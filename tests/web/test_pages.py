"""The dashboard pages as a browser uses them: forms with CSRF tokens, redirects, cookies, CSP."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.api.support import PASSWORD

HTML = {"accept": "text/html"}


def form_token(html: str) -> str:
    match = re.search(r'name="_csrf_token" value="([^"]+)"', html)
    assert match, "the form carries a CSRF token"
    return match.group(1)


async def sign_up(client: httpx.AsyncClient, email: str = "alice@example.com") -> httpx.Response:
    page = await client.get("/register", headers=HTML)
    assert page.status_code == 200
    data = {"_csrf_token": form_token(page.text), "email": email, "password": PASSWORD, "display_name": "Alice"}
    return await client.post("/register", data=data, headers=HTML)


async def test_dashboard_redirects_to_login_without_a_session(client: httpx.AsyncClient) -> None:
    r = await client.get("/", headers=HTML)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=/"


async def test_login_page_has_a_strict_csp_and_no_inline_script(client: httpx.AsyncClient) -> None:
    r = await client.get("/login", headers=HTML)
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert "<script>" not in r.text
    assert r.headers["x-frame-options"] == "DENY"


async def test_register_then_dashboard_shows_the_honest_empty_state(client: httpx.AsyncClient) -> None:
    r = await sign_up(client)
    assert r.status_code == 303
    assert r.headers["location"] == "/"
    page = await client.get("/", headers=HTML)
    assert page.status_code == 200
    assert "Alice" in page.text
    assert 'id="no-accounts"' in page.text


async def test_sign_in_goes_where_the_user_was_headed(client: httpx.AsyncClient) -> None:
    await sign_up(client)
    logout_page = await client.get("/", headers=HTML)
    await client.post("/logout", data={"_csrf_token": form_token(logout_page.text)}, headers=HTML)
    assert (await client.get("/", headers=HTML)).status_code == 303
    page = await client.get("/login?next=/docs", headers=HTML)
    data = {"_csrf_token": form_token(page.text), "email": "alice@example.com", "password": PASSWORD, "next": "/docs"}
    r = await client.post("/login", data=data, headers=HTML)
    assert r.status_code == 303
    assert r.headers["location"] == "/docs"


@pytest.mark.parametrize(
    "target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"]
)
async def test_login_never_redirects_off_site(client: httpx.AsyncClient, target: str) -> None:
    await sign_up(client)
    page = await client.get("/login", headers=HTML)
    data = {"_csrf_token": form_token(page.text), "email": "alice@example.com", "password": PASSWORD, "next": target}
    r = await client.post("/login", data=data, headers=HTML)
    assert r.status_code == 303
    assert r.headers["location"] == "/"


async def test_wrong_password_shows_the_form_again_with_an_error(client: httpx.AsyncClient) -> None:
    await sign_up(client, "bob@example.com")
    page = await client.get("/login", headers=HTML)
    data = {"_csrf_token": form_token(page.text), "email": "bob@example.com", "password": "wrong password!!"}
    r = await client.post("/login", data=data, headers=HTML)
    assert r.status_code == 200
    assert "email or password is incorrect" in r.text
    assert "brokerlink_session" not in r.headers.get("set-cookie", "")
    assert 'value="bob@example.com"' in r.text


async def test_form_post_without_csrf_token_is_refused(client: httpx.AsyncClient) -> None:
    await client.get("/login", headers=HTML)  # has the CSRF cookie, but the form omits the token
    r = await client.post("/login", data={"email": "a@example.com", "password": PASSWORD}, headers=HTML)
    assert r.status_code == 403


async def test_registration_errors_are_shown_on_the_form(client: httpx.AsyncClient) -> None:
    page = await client.get("/register", headers=HTML)
    data = {"_csrf_token": form_token(page.text), "email": "x@example.com", "password": "short", "display_name": "X"}
    r = await client.post("/register", data=data, headers=HTML)
    assert r.status_code == 422
    assert "at least 12 characters" in r.text


async def test_static_assets_are_public(client: httpx.AsyncClient) -> None:
    r = await client.get("/static/app.css")
    assert r.status_code == 200
    assert "text/css" in r.headers["content-type"]
