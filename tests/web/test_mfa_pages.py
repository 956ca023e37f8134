"""The MFA pages as a browser uses them: set up an authenticator, sign in in two steps, turn it off."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest
from litestar import Litestar

from brokerlink.config import Settings
from brokerlink.kit.clock import ManualClock
from tests.api.mfa_support import Authenticator
from tests.api.support import PASSWORD, asgi_client
from tests.web.test_pages import HTML, form_token, sign_up

STEP = timedelta(seconds=30)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The request rate limits off: these tests sign in several times within a second."""
    return settings.model_copy(update={"rate_limit_enabled": False})


async def set_up_authenticator(client: httpx.AsyncClient, clock: ManualClock) -> tuple[Authenticator, str]:
    """Through the security page, as a user does; returns the authenticator and the recovery-codes page."""
    page = await client.get("/account/security", headers=HTML)
    assert page.status_code == 200
    assert "Off." in page.text
    shown = await client.post("/account/security/totp", data={"_csrf_token": form_token(page.text)}, headers=HTML)
    assert shown.status_code == 200, shown.text
    assert shown.headers["cache-control"] == "no-store"
    assert '<figure class="qr" data-role="qr"><svg' in shown.text
    secret = re.search(r'<code data-role="secret">([A-Z2-7]+)</code>', shown.text)
    assert secret, "the key is shown as text for manual entry"
    device = Authenticator(secret=secret.group(1))
    data = {"_csrf_token": form_token(shown.text), "code": device.code(clock)}
    codes = await client.post("/account/security/totp/confirm", data=data, headers=HTML)
    assert codes.status_code == 200, codes.text
    assert codes.headers["cache-control"] == "no-store"
    device.recovery_codes = re.findall(r"<li><code>([A-Z2-7-]+)</code></li>", codes.text)
    assert len(device.recovery_codes) == 10
    return device, codes.text


async def test_mfa_page_sets_up_an_authenticator_and_never_shows_the_secret_again(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    await sign_up(client)
    device, _ = await set_up_authenticator(client, clock)
    page = await client.get("/account/security", headers=HTML)
    assert "<strong>On</strong>" in page.text
    assert "Recovery codes left: <strong>10</strong>" in page.text
    assert device.secret not in page.text
    assert not [code for code in device.recovery_codes if code in page.text]
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp


async def test_mfa_page_wrong_confirmation_code_cancels_the_set_up(
    client: httpx.AsyncClient, clock: ManualClock
) -> None:
    await sign_up(client)
    page = await client.get("/account/security", headers=HTML)
    shown = await client.post("/account/security/totp", data={"_csrf_token": form_token(page.text)}, headers=HTML)
    data = {"_csrf_token": form_token(shown.text), "code": "000000"}
    r = await client.post("/account/security/totp/confirm", data=data, headers=HTML)
    assert (r.status_code, r.headers["location"]) == (303, "/account/security?notice=bad_confirm")
    page = await client.get(r.headers["location"], headers=HTML)
    assert "set-up was cancelled" in page.text
    assert "Off." in page.text


async def test_mfa_sign_in_page_asks_for_a_code_after_the_password(
    app: Litestar, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    await sign_up(client)
    device, _ = await set_up_authenticator(client, clock)
    async with asgi_client(app) as browser:
        page = await browser.get("/login?next=/account/security", headers=HTML)
        data = {
            "_csrf_token": form_token(page.text),
            "email": "alice@example.com",
            "password": PASSWORD,
            "next": "/account/security",
        }
        r = await browser.post("/login", data=data, headers=HTML)
        assert (r.status_code, r.headers["location"]) == (303, "/login/mfa?next=%2Faccount%2Fsecurity")
        # Held at the MFA step: the pages send the browser to that step, not back to the password.
        assert (await browser.get("/", headers=HTML)).headers["location"] == "/login/mfa?next=/"
        step = await browser.get(r.headers["location"], headers=HTML)
        assert step.status_code == 200
        assert 'autocomplete="one-time-code"' in step.text
        wrong = {"_csrf_token": form_token(step.text), "code": "000000", "next": "/account/security"}
        again = await browser.post("/login/mfa", data=wrong, headers=HTML)
        assert again.status_code == 200
        assert "does not match" in again.text
        clock.advance(STEP)
        right = wrong | {"code": device.code(clock)}
        done = await browser.post("/login/mfa", data=right, headers=HTML)
        assert (done.status_code, done.headers["location"]) == (303, "/account/security")
        assert (await browser.get("/", headers=HTML)).status_code == 200


async def test_mfa_page_turns_it_off_with_a_recovery_code(client: httpx.AsyncClient, clock: ManualClock) -> None:
    await sign_up(client)
    device, _ = await set_up_authenticator(client, clock)
    page = await client.get("/account/security", headers=HTML)
    data = {"_csrf_token": form_token(page.text), "code": "AAAA-BBBB-CCCC-DDDD"}
    r = await client.post("/account/security/totp/disable", data=data, headers=HTML)
    assert r.headers["location"] == "/account/security?notice=bad_code"
    r = await client.post(
        "/account/security/totp/disable", data=data | {"code": device.recovery_codes[2]}, headers=HTML
    )
    assert r.headers["location"] == "/account/security?notice=disabled"
    page = await client.get(r.headers["location"], headers=HTML)
    assert "Two-step verification is off" in page.text
    assert "Off." in page.text
