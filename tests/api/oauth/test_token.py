"""The token endpoint: code exchange, refresh, client credentials, and what each refuses (SECURITY.md 7-9, 12, 15)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from joserfc import jwk, jwt
from sqlalchemy import select

from brokerlink.security.oauth.revocation import REVOCATION_TOPIC, decode_revocation
from brokerlink.store.models_audit import AuditRecordRow
from brokerlink.store.models_oauth import OAuthCodeRow, OAuthTokenRow
from tests.api.oauth.conftest import Server
from tests.api.oauth.support import (
    ISSUER,
    TOKEN_URL,
    code_form,
    generate,
    issue_code,
    oauth_error,
    post_token,
    sha256_hex,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def _token_rows(server: Server, **where: str) -> list[OAuthTokenRow]:
    async with server.db.session() as session:
        query = select(OAuthTokenRow)
        for name, value in where.items():
            query = query.where(getattr(OAuthTokenRow, name) == value)
        return list((await session.scalars(query.order_by(OAuthTokenRow.id))).all())


async def test_code_exchange_issues_dpop_bound_jwt_and_refresh_token(server: Server) -> None:
    client, user, dpop = await server.client(), await server.user(), server.dpop()
    issued = await issue_code(server.db, server.clock, client, user)

    response = await post_token(server.http, code_form(client, issued), dpop)

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert "access-control-allow-origin" not in response.headers
    body = response.json()
    assert body["token_type"] == "DPoP"
    assert body["expires_in"] == 300
    assert body["scope"] == "accounts:read balances:read"
    assert body["refresh_token"]
    keys = jwk.KeySet.import_key_set((await server.http.get("/oauth/jwks")).json())
    token = jwt.decode(body["access_token"], keys, algorithms=["ES256"])
    assert token.header["typ"] == "at+jwt"
    now = int(server.clock.now().timestamp())
    assert token.claims == {
        "iss": ISSUER, "sub": user, "aud": ISSUER, "client_id": client.id, "scope": "accounts:read balances:read",
        "jti": token.claims["jti"], "iat": now, "exp": now + 300, "cnf": {"jkt": dpop.jkt},
    }  # fmt: skip
    rows = await _token_rows(server, code_id=issued.code_id)
    assert {(row.kind, row.token_hash) for row in rows} == {
        ("access", sha256_hex(body["access_token"])),
        ("refresh", sha256_hex(body["refresh_token"])),
    }, "stored as hashes only"
    access = next(row for row in rows if row.kind == "access")
    assert access.id == token.claims["jti"]
    assert (access.jkt, access.consent_id, access.user_id) == (dpop.jkt, issued.consent_id, user)
    assert json.loads(access.scopes) == ["accounts:read", "balances:read"]
    async with server.db.session() as session:
        code = await session.get(OAuthCodeRow, issued.code_id)
        audit = (await session.scalars(select(AuditRecordRow).where(AuditRecordRow.target == access.id))).all()
    assert code is not None
    assert code.used_at == server.clock.now()
    assert [(a.action, a.actor_kind, a.actor_id, a.outcome) for a in audit] == [
        ("oauth.token", "client", client.id, "success")
    ]


async def test_security7_code_older_than_60s_is_invalid_grant(server: Server) -> None:
    client, user = await server.client(), await server.user()
    issued = await issue_code(server.db, server.clock, client, user)
    server.clock.advance(timedelta(seconds=61))
    oauth_error(await post_token(server.http, code_form(client, issued), server.dpop()), 400, "invalid_grant")


async def test_security7_code_used_twice_is_invalid_grant_and_revokes_its_tokens(server: Server) -> None:
    client, user, dpop = await server.client(), await server.user(), server.dpop()
    issued = await issue_code(server.db, server.clock, client, user)
    first = await post_token(server.http, code_form(client, issued), dpop)
    assert first.status_code == 200, first.text
    assert all(row.revoked_at is None for row in await _token_rows(server, code_id=issued.code_id))

    oauth_error(await post_token(server.http, code_form(client, issued), dpop), 400, "invalid_grant")

    rows = await _token_rows(server, code_id=issued.code_id)
    assert len(rows) == 2
    assert all(row.revoked_at is not None for row in rows), "a reused code revokes what it issued"
    messages = await server.app.state.bus.read(REVOCATION_TOPIC, "h5a-test", "reuse", max_count=1000, block_ms=200)
    revoked = [decode_revocation(m.payload) for m in messages]
    assert any(r.reason == "code_reused" and set(r.token_ids) == {row.id for row in rows} for r in revoked)
    introspected = await server.http.post(
        "/oauth/introspect", data=client.form(token=first.json()["access_token"], assertion=None)
    )
    assert introspected.json() == {"active": False}


async def test_security7_code_redeemed_by_another_client_is_invalid_grant(server: Server) -> None:
    owner, other, user = await server.client(), await server.client(), await server.user()
    issued = await issue_code(server.db, server.clock, owner, user)
    oauth_error(await post_token(server.http, code_form(other, issued), server.dpop()), 400, "invalid_grant")
    # ... and the failed attempt did not use the code up for its owner.
    assert (await post_token(server.http, code_form(owner, issued), server.dpop())).status_code == 200


@pytest.mark.parametrize(
    "change",
    [
        {"code_verifier": "w" * 64},
        {"redirect_uri": "https://app.example/other"},
        {"code": "not-a-code-we-issued"},
    ],
    ids=["wrong-verifier", "wrong-redirect", "unknown-code"],
)
async def test_security7_wrong_verifier_redirect_or_code_is_invalid_grant(
    server: Server, change: dict[str, str]
) -> None:
    client, user = await server.client(), await server.user()
    issued = await issue_code(server.db, server.clock, client, user)
    oauth_error(await post_token(server.http, code_form(client, issued, **change), server.dpop()), 400, "invalid_grant")


async def test_security7_missing_verifier_is_refused(server: Server) -> None:
    client, user = await server.client(), await server.user()
    issued = await issue_code(server.db, server.clock, client, user)
    form = code_form(client, issued)
    del form["code_verifier"]
    response = await post_token(server.http, form, server.dpop())
    assert response.status_code == 400
    assert response.json()["error"] in {"invalid_request", "invalid_grant"}


@pytest.mark.parametrize("grant_type", ["password", "implicit", "urn:ietf:params:oauth:grant-type:jwt-bearer", ""])
async def test_security8_password_and_other_grants_are_unsupported(server: Server, grant_type: str) -> None:
    client = await server.client()
    form = client.form(grant_type=grant_type, username="alice@example.com", password="hunter2")
    oauth_error(await post_token(server.http, form, server.dpop()), 400, "unsupported_grant_type")


async def test_security15_dpop_key_other_than_pars_dpop_jkt_is_invalid_grant(server: Server) -> None:
    client, user = await server.client(), await server.user()
    bound, other = server.dpop(), server.dpop()
    issued = await issue_code(server.db, server.clock, client, user, dpop_jkt=bound.jkt)
    oauth_error(await post_token(server.http, code_form(client, issued), other), 400, "invalid_grant")
    assert (await post_token(server.http, code_form(client, issued), bound)).status_code == 200


async def test_token_request_without_dpop_proof_is_400_invalid_dpop_proof(server: Server) -> None:
    client = await server.client()
    oauth_error(
        await post_token(server.http, client.form(grant_type="client_credentials"), None), 400, "invalid_dpop_proof"
    )
    bad = server.dpop()
    response = await server.http.post(
        "/oauth/token",
        data=client.form(grant_type="client_credentials"),
        headers={"DPoP": bad.proof(ISSUER + "/oauth/par")},
    )
    oauth_error(response, 400, "invalid_dpop_proof")


async def test_refresh_issues_access_token_bound_to_key_and_keeps_refresh_token(server: Server) -> None:
    client, user, dpop = await server.client(), await server.user(), server.dpop()
    issued = await issue_code(server.db, server.clock, client, user)
    tokens = (await post_token(server.http, code_form(client, issued), dpop)).json()
    server.clock.advance(timedelta(minutes=10))

    form = client.form(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    refreshed = await post_token(server.http, form, dpop)

    assert refreshed.status_code == 200, refreshed.text
    body = refreshed.json()
    assert "refresh_token" not in body, "refresh tokens are not rotated (FAPI 2.0)"
    assert body["scope"] == "accounts:read balances:read"
    rows = await _token_rows(server, code_id=issued.code_id)
    refresh_row = next(row for row in rows if row.kind == "refresh")
    new = next(row for row in rows if row.token_hash == sha256_hex(body["access_token"]))
    assert (new.parent_id, new.consent_id, new.jkt) == (refresh_row.id, issued.consent_id, dpop.jkt)
    # Still usable: not rotated.
    again = await post_token(
        server.http, client.form(grant_type="refresh_token", refresh_token=tokens["refresh_token"]), dpop
    )
    assert again.status_code == 200
    # Another DPoP key cannot use it.
    oauth_error(
        await post_token(
            server.http, client.form(grant_type="refresh_token", refresh_token=tokens["refresh_token"]), server.dpop()
        ),
        400,
        "invalid_grant",
    )


async def test_security12_refresh_token_presented_by_another_client_is_invalid_grant(server: Server) -> None:
    owner, thief, user, dpop = await server.client(), await server.client(), await server.user(), server.dpop()
    issued = await issue_code(server.db, server.clock, owner, user)
    tokens = (await post_token(server.http, code_form(owner, issued), dpop)).json()
    form = thief.form(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    oauth_error(await post_token(server.http, form, dpop), 400, "invalid_grant")


async def test_client_credentials_token_is_the_clients_own_without_user_data(server: Server) -> None:
    client, dpop = await server.client(), server.dpop()
    response = await post_token(server.http, client.form(grant_type="client_credentials"), dpop)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "refresh_token" not in body
    assert body["scope"] == ""
    claims = jwt.decode(body["access_token"], server.app.state.oauth.key.key, algorithms=["ES256"]).claims
    assert (claims["sub"], claims["client_id"], claims["cnf"]) == (client.id, client.id, {"jkt": dpop.jkt})
    row = (await _token_rows(server, client_id=client.id))[0]
    assert (row.user_id, row.consent_id, row.code_id) == (None, None, None)
    form = client.form(grant_type="client_credentials", scope="accounts:read")
    oauth_error(await post_token(server.http, form, server.dpop()), 400, "invalid_scope")


async def test_client_credentials_needs_the_grant_type_registered(server: Server) -> None:
    client = await server.client(grant_types=("authorization_code",))
    form = client.form(grant_type="client_credentials")
    oauth_error(await post_token(server.http, form, server.dpop()), 400, "unauthorized_client")


# --- client authentication (SECURITY.md 9) ------------------------------------------------------


@pytest.mark.parametrize("alg", ["ES256", "PS256", "EdDSA"])
async def test_security9_assertions_signed_with_fapi_algorithms_are_accepted(server: Server, alg: str) -> None:
    client = await server.client(alg=alg)
    response = await post_token(server.http, client.form(grant_type="client_credentials"), server.dpop())
    assert response.status_code == 200, response.text


def _rsa_key() -> jwk.Key:
    return generate("RSA", 2048)


@pytest.mark.parametrize(
    "case",
    ["RS256", "HS256", "none", "wrong-aud", "expired", "iat-61s-ahead", "no-jti", "no-exp", "other-key", "far-exp"],
)
async def test_security9_bad_client_assertion_is_invalid_client(server: Server, case: str) -> None:
    client = await server.client(alg="PS256") if case == "RS256" else await server.client()
    now = int(server.clock.now().timestamp())
    match case:
        case "RS256":
            # The client's own (registered) RSA key, with RS256 instead of PS256.
            assertion = client.assertion(alg="RS256")
        case "HS256":
            secret = jwk.OctKey.import_key(b"0123456789abcdef0123456789abcdef")
            assertion = client.assertion(alg="HS256", key=secret)
        case "none":
            assertion = client.assertion(alg="none", key=None)
        case "wrong-aud":
            assertion = client.assertion(aud="https://elsewhere.example/oauth/token")
        case "expired":
            assertion = client.assertion(iat=now - 120, exp=now - 30)
        case "iat-61s-ahead":
            assertion = client.assertion(iat=now + 61, exp=now + 120)
        case "no-jti":
            assertion = client.assertion(jti=None)
        case "no-exp":
            assertion = client.assertion(exp=None)
        case "other-key":
            assertion = client.assertion(key=generate("EC", "P-256"))
        case _:
            assertion = client.assertion(exp=now + 3600)
    form = client.form(assertion, grant_type="client_credentials")
    response = await post_token(server.http, form, server.dpop())
    oauth_error(response, 401, "invalid_client")
    assert "access_token" not in response.text


async def test_security9_assertion_8s_ahead_is_accepted(server: Server) -> None:
    client = await server.client()
    now = int(server.clock.now().timestamp())
    assertion = client.assertion(iat=now + 8, exp=now + 68)
    response = await post_token(server.http, client.form(assertion, grant_type="client_credentials"), server.dpop())
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("aud", [ISSUER, TOKEN_URL, [TOKEN_URL]])
async def test_security9_assertion_audience_is_issuer_or_token_endpoint(server: Server, aud: object) -> None:
    client = await server.client()
    assertion = client.assertion(aud=aud)
    response = await post_token(server.http, client.form(assertion, grant_type="client_credentials"), server.dpop())
    assert response.status_code == 200, response.text


async def test_security9_replayed_assertion_is_invalid_client(server: Server) -> None:
    client = await server.client()
    assertion = client.assertion()
    first = await post_token(server.http, client.form(assertion, grant_type="client_credentials"), server.dpop())
    assert first.status_code == 200, first.text
    again = await post_token(server.http, client.form(assertion, grant_type="client_credentials"), server.dpop())
    oauth_error(again, 401, "invalid_client")
    assert len(await _token_rows(server, client_id=client.id)) == 1, "the replay issued nothing"


async def test_security9_unknown_or_disabled_client_is_invalid_client(server: Server) -> None:
    client = await server.client()
    async with server.db.session() as session:
        from brokerlink.store.models_oauth import OAuthClientRow

        row = await session.get(OAuthClientRow, client.id)
        assert row is not None
        row.disabled_at = server.clock.now()
        await session.commit()
    oauth_error(
        await post_token(server.http, client.form(grant_type="client_credentials"), server.dpop()),
        401,
        "invalid_client",
    )
