"""``/authorize`` and the consent decision, as a browser drives them (SECURITY.md 1, 5, 6, 23).

The app's side (PAR, token endpoint) is not used: pushed requests are stored directly, in the
format /oauth/par stores them, and the tests read the codes the approval writes.
"""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from brokerlink.security.oauth.consents import hash_secret
from brokerlink.store.models_oauth import OAuthCodeRow, OAuthConsentRow, OAuthParRow
from tests.api.consents.conftest import Server
from tests.api.consents.support import CHALLENGE, ISSUER, REDIRECT, follow_to_consent
from tests.api.support import PASSWORD, with_csrf

pytestmark = pytest.mark.asyncio(loop_scope="module")
HTML = {"accept": "text/html"}


async def _codes(server: Server, client_id: str) -> list[OAuthCodeRow]:
    async with server.db.session() as s:
        return list((await s.scalars(select(OAuthCodeRow).where(OAuthCodeRow.client_id == client_id))).all())


async def _consents_of(server: Server, client_id: str) -> int:
    async with server.db.session() as s:
        stmt = select(func.count()).select_from(OAuthConsentRow).where(OAuthConsentRow.client_id == client_id)
        return int((await s.execute(stmt)).scalar_one())


async def _consent(server: Server, consent_id: str) -> OAuthConsentRow:
    async with server.db.session() as s:
        row = await s.get(OAuthConsentRow, consent_id)
        assert row is not None
        return row


def _query(location: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(location).query)


# --- SECURITY 1 and 5: only a fresh pushed request of the same client opens anything ------------------


async def test_security1_authorize_without_a_pushed_request_is_refused_and_issues_no_code(server: Server) -> None:
    alice = await server.user(mfa=True, accounts=1)
    client_id = await server.client()
    plain = {
        "client_id": client_id, "response_type": "code", "redirect_uri": REDIRECT, "scope": "accounts:read",
        "state": "s", "code_challenge": CHALLENGE, "code_challenge_method": "S256",
    }  # fmt: skip
    for params in (plain, {"client_id": client_id}, {"client_id": client_id, "request_uri": "https://evil/x"}):
        r = await alice.http.get("/authorize", params=params, headers=HTML)
        assert r.status_code == 400, r.text
        assert "location" not in r.headers
        assert "request_uri" in r.text
    assert await _codes(server, client_id) == []
    assert await _consents_of(server, client_id) == 0


async def test_security5_expired_used_or_other_clients_request_uri_is_refused(server: Server) -> None:
    alice = await server.user()
    mine, other = await server.client(), await server.client(name="Other")

    expired = await server.push(mine, expires_in=90)
    server.clock.advance(timedelta(seconds=91))
    r = await alice.http.get("/authorize", params={"client_id": mine, "request_uri": expired}, headers=HTML)
    assert r.status_code == 400
    assert "expired" in r.text

    theirs = await server.push(other)
    r = await alice.http.get("/authorize", params={"client_id": mine, "request_uri": theirs}, headers=HTML)
    assert r.status_code == 400
    assert "unknown" in r.text

    fresh = await server.push(mine)
    assert (await alice.http.get("/authorize", params={"client_id": mine, "request_uri": fresh})).status_code == 303
    again = await alice.http.get("/authorize", params={"client_id": mine, "request_uri": fresh}, headers=HTML)
    assert again.status_code == 400
    assert "already used" in again.text
    # The failed attempt did not consume the other client's request: it still works for its owner.
    r = await alice.http.get("/authorize", params={"client_id": other, "request_uri": theirs})
    assert r.status_code == 303
    assert await _codes(server, mine) == []


async def test_security5_a_disabled_clients_request_is_refused(server: Server) -> None:
    admin = await server.user(admin=True)
    alice = await server.user()
    client_id = await server.client()
    request_uri = await server.push(client_id)
    assert (await admin.http.delete(f"/v1/admin/clients/{client_id}")).status_code == 204
    r = await alice.http.get("/authorize", params={"client_id": client_id, "request_uri": request_uri}, headers=HTML)
    assert r.status_code == 400, r.text
    assert "no longer registered" in r.text, r.text[-600:]


async def test_authorize_marks_the_request_used_before_anyone_signs_in(server: Server) -> None:
    client_id = await server.client()
    request_uri = await server.push(client_id)
    anonymous = server.browser()
    r = await anonymous.get("/authorize", params={"client_id": client_id, "request_uri": request_uri}, headers=HTML)
    assert r.status_code == 303
    async with server.db.session() as s:
        stmt = select(OAuthParRow).where(OAuthParRow.request_uri_hash == hash_secret(request_uri))
        row = (await s.execute(stmt)).scalar_one()
    assert row.used_at is not None
    assert r.headers["location"] == f"/consents/request/{row.id}"
    cookie = r.headers["set-cookie"]
    assert f"Path=/consents/request/{row.id}" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie or "SameSite=Lax" in cookie


async def test_a_browser_that_is_not_signed_in_signs_in_and_comes_back(server: Server) -> None:
    browser = server.browser()
    await with_csrf(browser)
    email = f"carol-{server.backend}@example.com"
    created = await browser.post("/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": "C"})
    assert created.status_code == 201
    browser.cookies.clear()  # signed out
    await with_csrf(browser)
    client_id = await server.client()
    request_uri = await server.push(client_id)
    first = await browser.get("/authorize", params={"client_id": client_id, "request_uri": request_uri}, headers=HTML)
    page = first.headers["location"]
    to_login = await browser.get(page, headers=HTML)
    assert to_login.status_code == 303
    assert to_login.headers["location"] == f"/login?next={page}"
    # Signing in takes longer than a pushed request lives; the consumed request waits for the user.
    server.clock.advance(timedelta(seconds=120))
    signed_in = await browser.post("/login", data={"email": email, "password": PASSWORD, "next": page}, headers=HTML)
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == page
    opened = await browser.get(page, headers=HTML)
    assert opened.status_code == 303
    assert opened.headers["location"].startswith("/consents/cns_")


async def test_the_consent_page_opens_only_in_the_browser_that_came_through_authorize(server: Server) -> None:
    alice, mallory = await server.user(), await server.user()
    client_id = await server.client()
    request_uri = await server.push(client_id)
    first = await alice.http.get("/authorize", params={"client_id": client_id, "request_uri": request_uri})
    r = await mallory.http.get(first.headers["location"], headers=HTML)
    assert r.status_code == 400
    assert await _consents_of(server, client_id) == 0
    # Once Alice opened it, it is hers: anyone else, even with the cookie, gets a 404.
    assert (await alice.http.get(first.headers["location"])).status_code == 303
    binding = alice.http.cookies.get("brokerlink_authz")
    assert binding
    with_binding = server.browser(cookies=dict(mallory.http.cookies) | {"brokerlink_authz": binding})
    assert (await with_binding.get(first.headers["location"], headers=HTML)).status_code == 404


async def test_the_request_page_is_refused_when_too_old(server: Server) -> None:
    alice = await server.user()
    client_id = await server.client()
    request_uri = await server.push(client_id)
    first = await alice.http.get("/authorize", params={"client_id": client_id, "request_uri": request_uri})
    server.clock.advance(timedelta(seconds=server.settings.oauth_consent_decision_seconds + 1))
    r = await alice.http.get(first.headers["location"], headers=HTML)
    assert r.status_code == 400
    assert await _consents_of(server, client_id) == 0


# --- the decision -------------------------------------------------------------------------------------


async def test_security6_approval_redirects_with_code_state_and_iss(server: Server) -> None:
    alice = await server.user(mfa=True, accounts=1)
    client_id = await server.client()
    request_uri = await server.push(client_id, scope="accounts:read balances:read", state="st-123", dpop_jkt="jkt-1")
    consent_id = await follow_to_consent(alice.http, client_id, request_uri)
    r = await alice.http.post(
        f"/consents/{consent_id}/decision",
        data={"decision": "approve", "account_ids": alice.accounts[0], "code": alice.code(server.clock)},
        headers=HTML,
    )
    assert r.status_code == 303, r.text
    location = r.headers["location"]
    assert location.startswith(REDIRECT + "?")
    query = _query(location)
    metadata = await alice.http.get("/.well-known/oauth-authorization-server")
    assert query["iss"] == [metadata.json()["issuer"]] == [ISSUER]
    assert query["state"] == ["st-123"]
    code = query["code"][0]
    assert len(code) >= 43

    [stored] = await _codes(server, client_id)
    assert stored.code_hash == hash_secret(code)  # only the hash is kept
    assert code not in (stored.code_hash, stored.id)
    assert stored.expires_at - stored.created_at == timedelta(seconds=60)
    assert (stored.consent_id, stored.redirect_uri, stored.user_id) == (consent_id, REDIRECT, alice.id)
    assert (stored.code_challenge, stored.dpop_jkt, stored.used_at) == (CHALLENGE, "jkt-1", None)
    assert json.loads(stored.scopes) == ["accounts:read", "balances:read"]

    row = await _consent(server, consent_id)
    assert row.status == "authorised"
    assert json.loads(row.account_ids) == alice.accounts
    assert row.expires_at - server.clock.now() == timedelta(days=90)


async def test_security6_decline_redirects_with_access_denied_state_and_iss(server: Server) -> None:
    alice = await server.user(mfa=True, accounts=1)
    client_id = await server.client()
    consent_id = await follow_to_consent(alice.http, client_id, await server.push(client_id, state=None))
    r = await alice.http.post(f"/consents/{consent_id}/decision", data={"decision": "decline"}, headers=HTML)
    assert r.status_code == 303
    assert _query(r.headers["location"]) == {"error": ["access_denied"], "iss": [ISSUER]}  # no state sent, none back
    assert (await _consent(server, consent_id)).status == "rejected"
    assert await _codes(server, client_id) == []
    again = await alice.http.post(f"/consents/{consent_id}/decision", data={"decision": "approve"}, headers=HTML)
    assert again.status_code == 409


async def test_approval_needs_a_valid_totp_code(server: Server) -> None:
    alice = await server.user(mfa=True, accounts=1)
    client_id = await server.client()
    consent_id = await follow_to_consent(alice.http, client_id, await server.push(client_id))
    for code in ("", "000000", "not-a-code"):
        r = await alice.http.post(
            f"/consents/{consent_id}/decision",
            data={"decision": "approve", "account_ids": alice.accounts[0], "code": code},
            headers=HTML,
        )
        assert r.status_code == 422, r.text
        assert 'data-role="error"' in r.text
    assert (await _consent(server, consent_id)).status == "awaiting"
    assert await _codes(server, client_id) == []
    ok = await alice.http.post(
        f"/consents/{consent_id}/decision",
        data={"decision": "approve", "account_ids": alice.accounts[0], "code": alice.code(server.clock)},
        headers=HTML,
    )
    assert ok.status_code == 303


async def test_a_user_without_mfa_cannot_approve(server: Server) -> None:
    bob = await server.user(mfa=False, accounts=1)
    client_id = await server.client()
    consent_id = await follow_to_consent(bob.http, client_id, await server.push(client_id))
    r = await bob.http.post(
        f"/consents/{consent_id}/decision",
        data={"decision": "approve", "account_ids": bob.accounts[0], "code": "123456"},
        headers=HTML,
    )
    assert r.status_code == 403
    assert "two-step verification" in r.text
    assert (await _consent(server, consent_id)).status == "awaiting"
    assert await _codes(server, client_id) == []


async def test_security23_only_the_users_own_accounts_can_be_consented_and_only_those_chosen_are_kept(
    server: Server,
) -> None:
    alice = await server.user(mfa=True, accounts=2)
    bob = await server.user(accounts=1)
    first, second = alice.accounts
    client_id = await server.client()
    consent_id = await follow_to_consent(alice.http, client_id, await server.push(client_id))
    code = alice.code(server.clock)
    for accounts in ([bob.accounts[0]], [first, bob.accounts[0]], []):
        r = await alice.http.post(
            f"/consents/{consent_id}/decision",
            data={"decision": "approve", "account_ids": accounts, "code": code},
            headers=HTML,
        )
        assert r.status_code == 422, r.text
    r = await alice.http.post(
        f"/consents/{consent_id}/decision",
        data={"decision": "approve", "account_ids": [second], "code": code},  # the refusals did not spend it
        headers=HTML,
    )
    assert r.status_code == 303
    assert json.loads((await _consent(server, consent_id)).account_ids) == [second]  # not all of Alice's
    shown = (await alice.http.get(f"/v1/consents/{consent_id}")).json()
    assert shown["account_ids"] == [second]


async def test_a_consent_without_account_scopes_may_name_no_account(server: Server) -> None:
    alice = await server.user(mfa=True)
    client_id = await server.client(scopes=["copy:read"])
    consent_id = await follow_to_consent(alice.http, client_id, await server.push(client_id, scope="copy:read"))
    r = await alice.http.post(
        f"/consents/{consent_id}/decision",
        data={"decision": "approve", "code": alice.code(server.clock)},
        headers=HTML,
    )
    assert r.status_code == 303, r.text
    assert json.loads((await _consent(server, consent_id)).account_ids) == []


async def test_another_users_consent_is_404(server: Server) -> None:
    alice, bob = await server.user(mfa=True, accounts=1), await server.user()
    client_id = await server.client()
    consent_id = await follow_to_consent(alice.http, client_id, await server.push(client_id))
    assert (await bob.http.get(f"/consents/{consent_id}", headers=HTML)).status_code == 404
    r = await bob.http.post(f"/consents/{consent_id}/decision", data={"decision": "decline"}, headers=HTML)
    assert r.status_code == 404
    assert (await bob.http.get(f"/v1/consents/{consent_id}")).status_code == 404
    assert (await bob.http.delete(f"/v1/consents/{consent_id}")).status_code == 404
    assert (await _consent(server, consent_id)).status == "awaiting"


async def test_an_unanswered_request_expires(server: Server) -> None:
    alice = await server.user(mfa=True, accounts=1)
    client_id = await server.client()
    consent_id = await follow_to_consent(alice.http, client_id, await server.push(client_id))
    server.clock.advance(timedelta(minutes=11))
    r = await alice.http.post(
        f"/consents/{consent_id}/decision",
        data={"decision": "approve", "account_ids": alice.accounts[0], "code": alice.code(server.clock)},
        headers=HTML,
    )
    assert r.status_code == 409
    assert (await _consent(server, consent_id)).status == "expired"
    assert await _codes(server, client_id) == []


async def test_the_decision_needs_the_forms_csrf_token(server: Server) -> None:
    alice = await server.user(mfa=True, accounts=1)
    client_id = await server.client()
    consent_id = await follow_to_consent(alice.http, client_id, await server.push(client_id))
    bare = server.browser(cookies=dict(alice.http.cookies))  # the session, but no CSRF token
    r = await bare.post(f"/consents/{consent_id}/decision", data={"decision": "decline"}, headers=HTML)
    assert r.status_code == 403
    assert (await _consent(server, consent_id)).status == "awaiting"
