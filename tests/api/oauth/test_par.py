"""Pushed authorization requests (RFC 9126): client authentication and validation (SECURITY.md 2-5, 15)."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import select

from brokerlink.store.models_audit import AuditRecordRow
from brokerlink.store.models_oauth import OAuthParRow
from tests.api.oauth.conftest import Server
from tests.api.oauth.support import (
    HTTP_REDIRECT,
    LOOPBACK_REDIRECT,
    PAR_URL,
    REDIRECT,
    TestClient,
    oauth_error,
    s256,
    sha256_hex,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")
REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"


def par_params(**changes: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "scope": "accounts:read balances:read",
        "state": "st-" + secrets.token_urlsafe(8),
        "code_challenge": s256(secrets.token_urlsafe(48)),
        "code_challenge_method": "S256",
    }
    params.update(changes)
    return {k: v for k, v in params.items() if v is not None}


async def push(
    server: Server, client: TestClient, headers: dict[str, str] | None = None, **changes: str | None
) -> httpx.Response:
    form = client.form(**par_params(**changes))
    return await server.http.post("/oauth/par", data=form, headers=headers or {})


async def _par_row(server: Server, request_uri: str) -> OAuthParRow | None:
    async with server.db.session() as session:
        return (
            await session.scalars(select(OAuthParRow).where(OAuthParRow.request_uri_hash == sha256_hex(request_uri)))
        ).first()


async def test_security5_par_stores_the_validated_request_under_a_short_lived_request_uri(server: Server) -> None:
    client = await server.client()
    params = par_params()
    response = await server.http.post("/oauth/par", data=client.form(**params))

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["expires_in"] == 90
    assert body["expires_in"] < 600
    assert body["request_uri"].startswith(REQUEST_URI_PREFIX)
    assert len(body["request_uri"]) > len(REQUEST_URI_PREFIX) + 40
    row = await _par_row(server, body["request_uri"])
    assert row is not None, "stored as the SHA-256 of the whole URN"
    assert row.client_id == client.id
    assert row.expires_at - row.created_at == timedelta(seconds=90)
    assert row.used_at is None
    assert row.dpop_jkt is None
    assert json.loads(row.params) == {
        "response_type": "code", "redirect_uri": REDIRECT, "scope": "accounts:read balances:read",
        "state": params["state"], "code_challenge": params["code_challenge"], "code_challenge_method": "S256",
    }  # fmt: skip
    async with server.db.session() as session:
        audit = (await session.scalars(select(AuditRecordRow).where(AuditRecordRow.target == row.id))).all()
    assert [(a.action, a.actor_id, a.outcome) for a in audit] == [("oauth.par", client.id, "success")]


async def test_security5_each_push_gets_its_own_request_uri(server: Server) -> None:
    client = await server.client()
    first, second = (await push(server, client)).json(), (await push(server, client)).json()
    assert first["request_uri"] != second["request_uri"]


async def test_par_accepts_a_loopback_http_redirect_for_native_apps(server: Server) -> None:
    client = await server.client()
    response = await push(server, client, redirect_uri=LOOPBACK_REDIRECT)
    assert response.status_code == 201, response.text


async def test_security2_par_without_client_authentication_is_401_invalid_client(server: Server) -> None:
    client = await server.client()
    no_assertion = await server.http.post("/oauth/par", data=par_params() | {"client_id": client.id})
    oauth_error(no_assertion, 401, "invalid_client")
    wrong_key = client.form(client.assertion(key=(await server.client()).key), **par_params())
    oauth_error(await server.http.post("/oauth/par", data=wrong_key), 401, "invalid_client")
    async with server.db.session() as session:
        stored = (await session.scalars(select(OAuthParRow).where(OAuthParRow.client_id == client.id))).all()
    assert stored == []


@pytest.mark.parametrize(
    "changes",
    [{"code_challenge": None, "code_challenge_method": None}, {"code_challenge_method": "plain"},
     {"code_challenge_method": None}, {"code_challenge": None}, {"code_challenge": "short"}],
    ids=["no-challenge", "plain", "no-method", "method-only", "malformed"],
)  # fmt: skip
async def test_security3_par_without_s256_code_challenge_is_400(server: Server, changes: dict[str, str | None]) -> None:
    client = await server.client()
    response = await server.http.post("/oauth/par", data=client.form(**par_params(**changes)))
    body = oauth_error(response, 400, "invalid_request")
    assert "location" not in body


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"redirect_uri": None}, "invalid_request"),
        ({"redirect_uri": HTTP_REDIRECT}, "invalid_request"),
        ({"redirect_uri": "https://app.example/not-registered"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": "code id_token"}, "unsupported_response_type"),
        ({"response_type": None}, "invalid_request"),
    ],
    ids=["no-redirect", "http-not-loopback", "unregistered", "token", "hybrid", "no-response-type"],
)
async def test_security4_par_redirect_and_response_type_rules_are_400(
    server: Server, changes: dict[str, str | None], error: str
) -> None:
    # HTTP_REDIRECT is even registered for this client: http to a non-loopback host is refused anyway.
    client = await server.client()
    response = await server.http.post("/oauth/par", data=client.form(**par_params(**changes)))
    oauth_error(response, 400, error)
    assert "location" not in response.headers, "PAR never redirects"


@pytest.mark.parametrize("scope", ["orders:write", "accounts:read telepathy", ""])
async def test_par_scope_must_be_known_and_allowed_to_the_client(server: Server, scope: str) -> None:
    client = await server.client()
    response = await push(server, client, scope=scope)
    assert response.status_code == 400
    assert response.json()["error"] in {"invalid_scope", "invalid_request"}


async def test_par_refuses_repeated_parameters_and_a_pushed_request_uri(server: Server) -> None:
    client = await server.client()
    form = [*list(client.form(**par_params()).items()), ("scope", "orders:read")]
    body = urlencode(form)
    headers = {"content-type": "application/x-www-form-urlencoded"}
    oauth_error(await server.http.post("/oauth/par", content=body, headers=headers), 400, "invalid_request")
    oauth_error(await push(server, client, request_uri=REQUEST_URI_PREFIX + "x"), 400, "invalid_request")


async def test_security15_par_binds_the_dpop_key_of_its_proof_or_its_dpop_jkt(server: Server) -> None:
    client, dpop = await server.client(), server.dpop()
    by_proof = await push(server, client, headers={"DPoP": dpop.proof(PAR_URL)})
    assert by_proof.status_code == 201, by_proof.text
    row = await _par_row(server, by_proof.json()["request_uri"])
    assert row is not None
    assert row.dpop_jkt == dpop.jkt

    by_param = await push(server, client, dpop_jkt=dpop.jkt)
    row = await _par_row(server, by_param.json()["request_uri"])
    assert row is not None
    assert row.dpop_jkt == dpop.jkt

    mismatch = await push(server, client, headers={"DPoP": dpop.proof(PAR_URL)}, dpop_jkt=server.dpop().jkt)
    oauth_error(mismatch, 400, "invalid_request")
    bad_proof = await push(server, client, headers={"DPoP": dpop.proof(PAR_URL, method="GET")})
    oauth_error(bad_proof, 400, "invalid_dpop_proof")


async def test_par_needs_a_form_body(server: Server) -> None:
    client = await server.client()
    response = await server.http.post("/oauth/par", json=client.form(**par_params()))
    oauth_error(response, 400, "invalid_request")
