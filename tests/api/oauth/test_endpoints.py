"""Metadata, JWKS, introspection and revocation; no CORS on any of them (SECURITY.md 10, 11, 22)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from brokerlink.security.oauth.revocation import REVOCATION_TOPIC, decode_revocation
from brokerlink.store.models_oauth import OAuthConsentRow, OAuthTokenRow
from tests.api.oauth.conftest import Server
from tests.api.oauth.support import ISSUER, code_form, issue_code, oauth_error, post_token, sha256_hex

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def _tokens(server: Server) -> tuple[dict[str, str], str, object]:
    client, user, dpop = await server.client(), await server.user(), server.dpop()
    issued = await issue_code(server.db, server.clock, client, user)
    response = await post_token(server.http, code_form(client, issued), dpop)
    assert response.status_code == 200, response.text
    return response.json(), issued.consent_id, client


async def test_security10_metadata_advertises_only_the_fapi_profile(server: Server) -> None:
    response = await server.http.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    meta = response.json()
    assert meta["issuer"] == ISSUER
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["pushed_authorization_request_endpoint"] == ISSUER + "/oauth/par"
    assert meta["require_pushed_authorization_requests"] is True
    assert meta["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert set(meta["token_endpoint_auth_signing_alg_values_supported"]) == {"PS256", "ES256", "EdDSA"}
    assert set(meta["dpop_signing_alg_values_supported"]) == {"PS256", "ES256", "EdDSA"}
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert meta["response_types_supported"] == ["code"]
    assert "password" not in meta["grant_types_supported"]
    assert "implicit" not in meta["grant_types_supported"]
    for key in ("introspection", "revocation"):
        assert meta[f"{key}_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    everything = str(meta)
    for refused in ("plain", "client_secret", "RS256", "HS256", "'none'"):
        assert refused not in everything
    assert meta["jwks_uri"] == ISSUER + "/oauth/jwks"
    assert meta["token_endpoint"] == ISSUER + "/oauth/token"
    assert meta["authorization_endpoint"] == ISSUER + "/authorize"


async def test_jwks_publishes_the_public_signing_key_only(server: Server) -> None:
    response = await server.http.get("/oauth/jwks")
    assert response.status_code == 200
    [key] = response.json()["keys"]
    assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("EC", "P-256", "ES256", "sig")
    assert "d" not in key
    assert key["kid"]


@pytest.mark.parametrize(
    "path", ["/oauth/token", "/oauth/par", "/oauth/introspect", "/oauth/revoke", "/oauth/jwks",
             "/.well-known/oauth-authorization-server", "/authorize"],
)  # fmt: skip
async def test_security11_no_cors_headers_on_authorization_endpoints(server: Server, path: str) -> None:
    preflight = await server.http.options(
        path,
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, dpop",
        },
    )
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-credentials" not in preflight.headers
    simple = await server.http.post(path, data={"grant_type": "password"}, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


async def test_introspection_of_own_live_token_and_inactive_otherwise(server: Server) -> None:
    tokens, _, client = await _tokens(server)
    form = client.form(token=tokens["access_token"])  # type: ignore[attr-defined]
    response = await server.http.post("/oauth/introspect", data=form)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["active"] is True
    assert body["client_id"] == client.id  # type: ignore[attr-defined]
    assert body["scope"] == "accounts:read balances:read"
    assert body["token_type"] == "DPoP"
    assert body["iss"] == ISSUER
    assert body["cnf"]["jkt"]
    other = await server.client()
    stranger = await server.http.post("/oauth/introspect", data=other.form(token=tokens["access_token"]))
    assert stranger.json() == {"active": False}, "a client learns nothing about another's tokens"
    unknown = await server.http.post("/oauth/introspect", data=other.form(token="no-such-token"))
    assert unknown.json() == {"active": False}
    oauth_error(
        await server.http.post("/oauth/introspect", data={"token": tokens["access_token"]}), 401, "invalid_client"
    )


async def test_introspection_of_an_expired_token_is_inactive(server: Server) -> None:
    tokens, _, client = await _tokens(server)
    server.clock.advance(timedelta(seconds=301))
    response = await server.http.post("/oauth/introspect", data=client.form(token=tokens["access_token"]))  # type: ignore[attr-defined]
    assert response.json() == {"active": False}
    refresh = await server.http.post("/oauth/introspect", data=client.form(token=tokens["refresh_token"]))  # type: ignore[attr-defined]
    assert refresh.json()["active"] is True


@pytest.mark.parametrize("status", ["revoked", "expired"])
async def test_security22_tokens_of_a_revoked_or_expired_consent_introspect_inactive(
    server: Server, status: str
) -> None:
    tokens, consent_id, client = await _tokens(server)
    async with server.db.session() as session:
        await session.execute(update(OAuthConsentRow).where(OAuthConsentRow.id == consent_id).values(status=status))
        await session.commit()
    for name in ("access_token", "refresh_token"):
        response = await server.http.post("/oauth/introspect", data=client.form(token=tokens[name]))  # type: ignore[attr-defined]
        assert response.json() == {"active": False}, name
    refresh = client.form(grant_type="refresh_token", refresh_token=tokens["refresh_token"])  # type: ignore[attr-defined]
    oauth_error(await post_token(server.http, refresh, server.dpop()), 400, "invalid_grant")


async def test_revoking_a_refresh_token_revokes_its_grant_and_publishes(server: Server) -> None:
    tokens, consent_id, client = await _tokens(server)
    response = await server.http.post(
        "/oauth/revoke",
        data=client.form(token=tokens["refresh_token"], token_type_hint="refresh_token"),  # type: ignore[attr-defined]
    )
    assert response.status_code == 200, response.text
    async with server.db.session() as session:
        rows = (await session.scalars(select(OAuthTokenRow).where(OAuthTokenRow.consent_id == consent_id))).all()
    assert len(rows) == 2
    assert all(row.revoked_at is not None for row in rows)
    messages = await server.app.state.bus.read(REVOCATION_TOPIC, "h5a-test", "revoke", max_count=1000, block_ms=200)
    published = [decode_revocation(m.payload) for m in messages]
    assert any(m.reason == "revocation_endpoint" and set(m.token_ids) == {row.id for row in rows} for m in published)
    introspected = await server.http.post("/oauth/introspect", data=client.form(token=tokens["access_token"]))  # type: ignore[attr-defined]
    assert introspected.json() == {"active": False}


async def test_revoking_an_access_token_leaves_the_refresh_token(server: Server) -> None:
    tokens, _, client = await _tokens(server)
    response = await server.http.post("/oauth/revoke", data=client.form(token=tokens["access_token"]))  # type: ignore[attr-defined]
    assert response.status_code == 200
    async with server.db.session() as session:
        access = (
            await session.scalars(
                select(OAuthTokenRow).where(OAuthTokenRow.token_hash == sha256_hex(tokens["access_token"]))
            )
        ).one()
        refresh = (
            await session.scalars(
                select(OAuthTokenRow).where(OAuthTokenRow.token_hash == sha256_hex(tokens["refresh_token"]))
            )
        ).one()
    assert access.revoked_at is not None
    assert refresh.revoked_at is None


async def test_revocation_needs_client_authentication_and_the_clients_own_token(server: Server) -> None:
    tokens, _, _client = await _tokens(server)
    oauth_error(await server.http.post("/oauth/revoke", data={"token": tokens["access_token"]}), 401, "invalid_client")
    other = await server.client()
    response = await server.http.post("/oauth/revoke", data=other.form(token=tokens["access_token"]))
    assert response.status_code == 400
    async with server.db.session() as session:
        row = (
            await session.scalars(
                select(OAuthTokenRow).where(OAuthTokenRow.token_hash == sha256_hex(tokens["access_token"]))
            )
        ).one()
    assert row.revoked_at is None
    unknown = await server.http.post("/oauth/revoke", data=other.form(token="never-issued"))
    assert unknown.status_code == 200, "RFC 7009: an unknown token is not an error"
