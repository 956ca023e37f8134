"""The consent page and the connected-apps page, as a browser shows them."""

from __future__ import annotations

import re

import pytest

from tests.api.consents.conftest import Server, _backend, server
from tests.api.consents.support import follow_to_consent
from tests.api.consents.test_consents_api import approved

__all__ = ["_backend", "server"]

pytestmark = pytest.mark.asyncio(loop_scope="module")
HTML = {"accept": "text/html"}


async def test_the_consent_page_shows_the_app_the_scopes_in_plain_words_and_only_the_users_accounts(
    server: Server,
) -> None:
    alice = await server.user(mfa=True, accounts=2)
    bob = await server.user(accounts=1)
    client_id = await server.client(name="Pocket Tracker")
    request_uri = await server.push(client_id, scope="orders:write accounts:read")
    consent_id = await follow_to_consent(alice.http, client_id, request_uri)
    page = await alice.http.get(f"/consents/{consent_id}", headers=HTML)
    assert page.status_code == 200
    assert 'data-role="client-name">Pocket Tracker<' in page.text
    scopes = re.findall(r'<li data-scope="([a-z:]+)">([^<]+)</li>', page.text)
    assert scopes == [
        ("accounts:read", "See which broker accounts you have linked and their names"),
        ("orders:write", "Place and cancel orders in the selected accounts"),
    ]
    boxes = re.findall(r'name="account_ids" value="([^"]+)"', page.text)
    assert boxes == alice.accounts  # both of Alice's, and nobody else's
    assert bob.accounts[0] not in page.text
    assert 'name="code"' in page.text
    assert 'value="approve"' in page.text
    assert 'value="decline" formnovalidate' in page.text
    assert "tracker.example" in page.text  # where the answer goes
    # CSP-clean: no script at all, and the strict page policy.
    assert "<script" not in page.text
    assert " style=" not in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    # The answer is a redirect from this form to the app, which browsers check against form-action.
    assert "form-action 'self' https://tracker.example;" in csp
    other = await alice.http.get("/consents", headers=HTML)
    assert "form-action 'self';" in other.headers["content-security-policy"]


async def test_a_user_without_mfa_is_told_to_enrol_first(server: Server) -> None:
    bob = await server.user(mfa=False, accounts=1)
    client_id = await server.client()
    consent_id = await follow_to_consent(bob.http, client_id, await server.push(client_id))
    page = await bob.http.get(f"/consents/{consent_id}", headers=HTML)
    assert 'data-role="enrol-first"' in page.text
    assert 'href="/account/security"' in page.text
    assert 'value="approve"' not in page.text
    assert 'value="decline"' in page.text  # declining needs no MFA


async def test_another_users_consent_page_is_404(server: Server) -> None:
    alice, bob = await server.user(), await server.user()
    client_id = await server.client()
    consent_id = await follow_to_consent(alice.http, client_id, await server.push(client_id))
    assert (await bob.http.get(f"/consents/{consent_id}", headers=HTML)).status_code == 404
    assert (await bob.http.post(f"/consents/{consent_id}/revoke", data={}, headers=HTML)).status_code == 404


async def test_the_connected_apps_page_lists_and_revokes(server: Server) -> None:
    alice = await server.user(mfa=True, accounts=1)
    consent_id, _, tokens = await approved(server, alice)
    page = await alice.http.get("/consents", headers=HTML)
    assert page.status_code == 200
    assert "Tracker" in page.text
    assert "See the cash balances of the selected accounts" in page.text
    assert "Acct0" in page.text  # the account's name, not its id
    assert f'action="/consents/{consent_id}/revoke"' in page.text
    r = await alice.http.post(f"/consents/{consent_id}/revoke", data={}, headers=HTML)
    assert r.status_code == 303
    assert r.headers["location"] == "/consents?notice=revoked"
    after = await alice.http.get("/consents?notice=revoked", headers=HTML)
    assert "Access revoked" in after.text
    assert f'action="/consents/{consent_id}/revoke"' not in after.text
    assert re.search(rf'data-consent="{consent_id}".*?data-role="status">revoked<', after.text, re.DOTALL)
    shown = (await alice.http.get(f"/v1/consents/{consent_id}")).json()
    assert shown["status"] == "revoked"
    assert tokens  # revoked with the consent: test_consents_api checks the rows


async def test_pages_need_a_session(server: Server) -> None:
    anonymous = server.browser()
    r = await anonymous.get("/consents", headers=HTML)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=/consents"
