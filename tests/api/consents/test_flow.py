"""The whole flow across the authorization server and the consent pages, as a real app and user run it.

PAR (client assertion, ``dpop_jkt``), ``/authorize``, the consent page approved with a TOTP code,
the code exchanged for DPoP-bound tokens, then the user revokes the consent and the tokens
introspect inactive (SECURITY.md 6, 22).
"""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.api.consents.conftest import Server
from tests.api.consents.support import ISSUER, follow_to_consent
from tests.api.oauth.support import REDIRECT, Dpop, create_client, post_token, s256

pytestmark = pytest.mark.asyncio(loop_scope="module")
HTML = {"accept": "text/html"}


async def test_security22_par_consent_code_token_then_revocation_end_to_end(server: Server) -> None:
    alice = await server.user(mfa=True, accounts=2)
    app_client = await create_client(server.db, server.clock, scopes=("accounts:read", "balances:read"))
    dpop = Dpop(server.clock)
    verifier = secrets.token_urlsafe(48)
    params = {
        "response_type": "code", "redirect_uri": REDIRECT, "scope": "accounts:read balances:read",
        "state": "st-e2e", "code_challenge": s256(verifier), "code_challenge_method": "S256", "dpop_jkt": dpop.jkt,
    }  # fmt: skip
    pushed = await server.browser().post("/oauth/par", data=app_client.form(**params))
    assert pushed.status_code == 201, pushed.text
    request_uri = pushed.json()["request_uri"]

    consent_id = await follow_to_consent(alice.http, app_client.id, request_uri)
    answer = await alice.http.post(
        f"/consents/{consent_id}/decision",
        data={"decision": "approve", "account_ids": alice.accounts[1], "code": alice.code(server.clock)},
        headers=HTML,
    )
    assert answer.status_code == 303, answer.text
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert (query["iss"], query["state"]) == ([ISSUER], ["st-e2e"])

    form = app_client.form(
        grant_type="authorization_code", code=query["code"][0], redirect_uri=REDIRECT, code_verifier=verifier
    )
    issued = await post_token(server.browser(), form, dpop)
    assert issued.status_code == 200, issued.text
    tokens = issued.json()
    assert tokens["token_type"] == "DPoP"
    assert tokens["scope"] == "accounts:read balances:read"

    async def active(token: str) -> bool:
        r = await server.browser().post("/oauth/introspect", data=app_client.form(token=token))
        assert r.status_code == 200, r.text
        return bool(r.json()["active"])

    assert await active(tokens["access_token"])
    assert (await alice.http.delete(f"/v1/consents/{consent_id}")).status_code == 204
    assert not await active(tokens["access_token"])
    assert not await active(tokens["refresh_token"])
    # The code was single use: a second exchange fails.
    again = await post_token(server.browser(), form | {"client_assertion": app_client.assertion()}, dpop)
    assert again.status_code == 400
