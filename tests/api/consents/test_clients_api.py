"""``/v1/admin/clients``: registering apps, admins only (SECURITY.md 21, 30), with every field checked."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwk
from sqlalchemy import select

from brokerlink.bus.base import EventBus
from brokerlink.kit.ids import new_id
from brokerlink.security.oauth.revocation import REVOCATION_TOPIC, decode_revocation
from brokerlink.store.models_oauth import OAuthTokenRow
from tests.api.consents.conftest import Server
from tests.api.consents.support import ALLOWED_JWKS_HOST, in_store, jwks, public_jwk, store_token
from tests.api.support import assert_problem

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def admin_of(server: Server) -> httpx.AsyncClient:
    return (await server.user(admin=True)).http


def body(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "Tracker",
        "redirect_uris": ["https://tracker.example/cb", "http://127.0.0.1:8765/cb"],
        "jwks": jwks(),
        "scopes": ["accounts:read", "balances:read"],
    }
    return base | changes


def fields(response: httpx.Response) -> set[str]:
    problem = assert_problem(response, 422, "invalid_input")
    return {e["field"] for e in problem["errors"]}


async def test_security21_a_non_admin_gets_403_on_every_client_route(server: Server) -> None:
    admin = await admin_of(server)
    created = (await admin.post("/v1/admin/clients", json=body())).json()
    user = (await server.user()).http
    path = f"/v1/admin/clients/{created['id']}"
    for response in (
        await user.post("/v1/admin/clients", json=body()),
        await user.get("/v1/admin/clients"),
        await user.get(path),
        await user.patch(path, json={"name": "Mine now"}),
        await user.delete(path),
    ):
        assert_problem(response, 403, "forbidden")
    assert (await admin.get(path)).json()["name"] == "Tracker"
    assert (await admin.get(path)).json()["active"] is True


async def test_create_list_get_update(server: Server) -> None:
    admin = await admin_of(server)
    r = await admin.post("/v1/admin/clients", json=body(grant_types=["authorization_code"]))
    assert r.status_code == 201, r.text
    created = r.json()
    assert r.headers["location"] == f"/v1/admin/clients/{created['id']}"
    assert created["id"].startswith("app_")
    assert created["redirect_uris"] == ["https://tracker.example/cb", "http://127.0.0.1:8765/cb"]
    assert created["token_endpoint_auth_method"] == "private_key_jwt"
    assert (created["grant_types"], created["jwks_uri"], created["active"]) == (["authorization_code"], None, True)
    assert "d" not in created["jwks"]["keys"][0]
    listed = (await admin.get("/v1/admin/clients", params={"limit": 500})).json()["data"]
    assert created["id"] in [c["id"] for c in listed]
    path = f"/v1/admin/clients/{created['id']}"
    patched = await admin.patch(path, json={"jwks_uri": f"https://{ALLOWED_JWKS_HOST}/jwks.json", "name": "Tracker 2"})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["name"], patched.json()["jwks"]) == ("Tracker 2", None)
    assert patched.json()["jwks_uri"] == f"https://{ALLOWED_JWKS_HOST}/jwks.json"
    assert (await admin.get(path)).json() == patched.json()
    assert_problem(await admin.get("/v1/admin/clients/app_nope"), 404, "not_found")


BAD_REDIRECTS = [
    "http://tracker.example/cb",  # http off loopback
    "https://tracker.example/cb#frag",
    "https://tracker.example/cb#",
    "com.example.app:/cb",  # custom schemes are not offered
    "/relative/cb",
    "https://user:pw@tracker.example/cb",
    "https://*.tracker.example/cb",
    "http://192.168.1.5/cb",
    "https://tracker.example/c b",
]


async def test_bad_redirect_uris_are_422_naming_the_field(server: Server) -> None:
    admin = await admin_of(server)
    # One app for every case: each request is refused as a whole, so nothing carries over.
    for uri in BAD_REDIRECTS:
        r = await admin.post("/v1/admin/clients", json=body(redirect_uris=["https://ok.example/cb", uri]))
        assert fields(r) == {"redirect_uris[1]"}, uri


async def test_loopback_redirects_for_native_apps_are_accepted(server: Server) -> None:
    admin = await admin_of(server)
    uris = ["http://127.0.0.1/cb", "http://[::1]:9000/cb", "http://localhost:51000/cb?x=1"]
    r = await admin.post("/v1/admin/clients", json=body(redirect_uris=uris))
    assert r.status_code == 201, r.text
    assert r.json()["redirect_uris"] == uris  # exact strings, as given


def _private_ec() -> dict[str, Any]:
    return dict(jwk.ECKey.generate_key("P-256").as_dict(private=True))


def _rsa(bits: int) -> dict[str, Any]:
    # Built from the numbers: joserfc warns about (and the suite errors on) generating small keys.
    numbers = rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key().public_numbers()

    def b64(value: int) -> str:
        return base64.urlsafe_b64encode(value.to_bytes((value.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()

    return {"kty": "RSA", "n": b64(numbers.n), "e": b64(numbers.e)}


def bad_key_sets() -> dict[str, dict[str, Any]]:
    return {
        "private": {"keys": [_private_ec()]},
        "symmetric": {"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}]},
        "p384": {"keys": [dict(jwk.ECKey.generate_key("P-384").as_dict(private=False))]},
        "wrong-alg": {"keys": [public_jwk() | {"alg": "ES384"}]},
        "hs256": {"keys": [public_jwk() | {"alg": "HS256"}]},
        "enc": {"keys": [public_jwk() | {"use": "enc"}]},
        "rsa-1024": {"keys": [_rsa(1024)]},
        "duplicate-kid": {"keys": [public_jwk() | {"kid": "a"}, public_jwk() | {"kid": "a"}]},
        "empty": {"keys": []},
        "shape": {"not_keys": []},
    }


async def test_bad_key_sets_are_422(server: Server) -> None:
    admin = await admin_of(server)
    for name, keys in bad_key_sets().items():
        assert fields(await admin.post("/v1/admin/clients", json=body(jwks=keys))) == {"jwks"}, name


async def test_rsa_2048_and_ed25519_keys_are_accepted(server: Server) -> None:
    admin = await admin_of(server)
    rsa_key = _rsa(2048) | {"alg": "PS256"}
    okp = dict(jwk.OKPKey.generate_key("Ed25519").as_dict(private=False))
    r = await admin.post("/v1/admin/clients", json=body(jwks={"keys": [rsa_key | {"kid": "r"}, okp | {"kid": "o"}]}))
    assert r.status_code == 201, r.text


async def test_scopes_grants_and_key_choice_are_checked_together(server: Server) -> None:
    admin = await admin_of(server)
    r = await admin.post(
        "/v1/admin/clients",
        json=body(
            name=" ",
            scopes=["accounts:read", "admin:everything"],
            grant_types=["refresh_token", "password"],
            jwks_uri="https://keys.example/jwks",
        ),
    )
    assert fields(r) == {"name", "scopes", "grant_types", "jwks"}  # jwks: both jwks and jwks_uri given
    neither = body()
    del neither["jwks"]
    assert fields(await admin.post("/v1/admin/clients", json=neither)) == {"jwks"}
    no_redirect = body(redirect_uris=[])
    assert fields(await admin.post("/v1/admin/clients", json=no_redirect)) == {"redirect_uris"}
    machine = body(redirect_uris=[], grant_types=["client_credentials"])
    assert (await admin.post("/v1/admin/clients", json=machine)).status_code == 201
    assert_problem(await admin.post("/v1/admin/clients", json=body(owner_id="usr_x")), 422, "invalid_input")


PRIVATE_JWKS_URIS = [
    "https://127.0.0.1/jwks",
    "https://localhost/jwks",
    "https://[::1]/jwks",
    "https://10.1.2.3/jwks",
    "https://192.168.0.10/jwks",
    "https://172.16.5.4/jwks",
    "https://169.254.169.254/latest/meta-data",
    "https://[fe80::1]/jwks",
    "https://100.64.0.1/jwks",
    "http://keys.partner.test/jwks",  # allow-listed host, but not https
]


async def test_security30_jwks_uri_on_a_private_address_is_refused(server: Server) -> None:
    admin = await admin_of(server)
    for uri in PRIVATE_JWKS_URIS:
        spec = body(jwks_uri=uri)
        del spec["jwks"]
        assert fields(await admin.post("/v1/admin/clients", json=spec)) == {"jwks_uri"}, uri


async def test_security30_an_allow_listed_jwks_uri_host_is_accepted(server: Server) -> None:
    admin = await admin_of(server)
    spec = body(jwks_uri=f"https://{ALLOWED_JWKS_HOST}/jwks.json")
    del spec["jwks"]
    r = await admin.post("/v1/admin/clients", json=spec)
    assert r.status_code == 201, r.text


async def test_disabling_a_client_revokes_its_tokens(server: Server) -> None:
    admin = await admin_of(server)
    created = (await admin.post("/v1/admin/clients", json=body(grant_types=["client_credentials"]))).json()
    now = server.clock.now()
    token_id = await in_store(
        server.app, lambda s: store_token(s, client_id=created["id"], consent_id=None, user_id=None, now=now)
    )
    bus: EventBus = server.app.state.bus
    group = new_id("grp")
    await bus.read(REVOCATION_TOPIC, group, "t", block_ms=0, max_count=10_000)  # what came before
    r = await admin.delete(f"/v1/admin/clients/{created['id']}")
    assert r.status_code == 204
    shown = (await admin.get(f"/v1/admin/clients/{created['id']}")).json()
    assert (shown["active"], shown["disabled_at"] is not None) == (False, True)
    async with server.db.session() as s:
        token = (await s.execute(select(OAuthTokenRow).where(OAuthTokenRow.id == token_id))).scalar_one()
    assert token.revoked_at is not None
    later = await bus.read(REVOCATION_TOPIC, group, "t", block_ms=0, max_count=10_000)
    [message] = [decode_revocation(m.payload) for m in later]
    assert (message.token_ids, message.reason) == ([token_id], "client_disabled")
    assert (await admin.delete(f"/v1/admin/clients/{created['id']}")).status_code == 204  # idempotent
    active = (await admin.get("/v1/admin/clients", params={"include_disabled": "false", "limit": 500})).json()
    assert created["id"] not in [c["id"] for c in active["data"]]
