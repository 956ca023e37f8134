"""The OAuth side of the client against the real authorization server, in-process.

The whole flow through ``OAuthClient`` (PAR, consent, code exchange) with the token endpoint asking
for DPoP nonces (``oauth_dpop_nonce``) and the resource server too (``resource_dpop_nonce``); then
refresh, by hand and when the access token runs out under an ``AsyncBrokerlink``; client
credentials; and ``private_key_jwt`` assertions with each of the three key types brokerlink accepts.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from joserfc.jwk import ECKey, OKPKey, RSAKey
from litestar import Litestar

from brokerlink.app.factory import create_app
from brokerlink.client import AsyncBrokerlink, DPoPAuth, DPoPKey, NotAuthenticatedError, OAuthClient, OAuthError, Tokens
from brokerlink.kit.clock import ManualClock
from tests.api.support import link_account, running
from tests.client.support import ORIGIN, approve, http_for, register_app, registered, server_time, settings

pytestmark = pytest.mark.asyncio(loop_scope="module")

REDIRECT_URI = "http://127.0.0.1:8765/callback"
SCOPES = ["accounts:read", "balances:read"]


@dataclass
class World:
    app: Litestar
    clock: ManualClock
    client_id: str
    key: ECKey
    dpop: DPoPKey
    account: str
    tokens: Tokens
    oauth_requests: list[httpx.Request]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    """Alice consented to the app for one of her two accounts; the app holds the tokens it got."""
    clock = ManualClock()
    tmp: Path = tmp_path_factory.mktemp("client-oauth")
    config = settings(tmp, oauth_dpop_nonce=True, resource_dpop_nonce=True)
    app = create_app(config, clock=clock, configure_logs=False)
    async with running(app):
        key = ECKey.generate_key("P-256", private=True)
        jwks = {"keys": [key.as_dict(private=False) | {"kid": key.thumbprint(), "alg": "ES256"}]}
        client_id = await register_app(
            app,
            clock,
            jwks,
            redirect_uri=REDIRECT_URI,
            scopes=SCOPES,
            grant_types=["authorization_code", "refresh_token", "client_credentials"],
        )
        alice, device = await registered(app, clock, "alice@example.com", "Alice")
        _, shared = await link_account(app, "alice@example.com", "Main")
        await link_account(app, "alice@example.com", "Savings")
        requests: list[httpx.Request] = []

        async def record(request: httpx.Request) -> None:
            requests.append(request)

        async with contextlib.aclosing(alice), http_for(app, hooks=[record]) as http:
            oauth = OAuthClient(http, issuer=ORIGIN, client_id=client_id, key=key, clock=server_time(clock))
            authorization = await oauth.push_authorization_request(redirect_uri=REDIRECT_URI, scope=" ".join(SCOPES))
            redirected_to = await approve(alice, device, clock, authorization.url, [shared])
            code = oauth.read_callback(authorization, redirected_to)
            tokens = await oauth.exchange_code(authorization, code)
        yield World(
            app=app,
            clock=clock,
            client_id=client_id,
            key=key,
            dpop=oauth.dpop,
            account=shared,
            tokens=tokens,
            oauth_requests=requests,
        )


def _oauth(w: World, http: httpx.AsyncClient, dpop: DPoPKey | None = None) -> OAuthClient:
    """The app's OAuth client, with the DPoP key its tokens are bound to (unless another is given)."""
    return OAuthClient(http, issuer=ORIGIN, client_id=w.client_id, key=w.key, dpop=dpop or w.dpop)


async def _fresh(w: World, oauth: OAuthClient) -> Tokens:
    """Refresh the app's current tokens (refresh tokens rotate: the world keeps the latest)."""
    w.tokens = await oauth.refresh(w.tokens)
    return w.tokens


async def test_the_code_exchange_answered_the_token_endpoints_nonce_challenge(world: World) -> None:
    token_posts = [r for r in world.oauth_requests if r.url.path.endswith("/token")]
    assert len(token_posts) == 2  # refused once for want of a nonce, then granted
    par = next(r for r in world.oauth_requests if r.url.path.endswith("/par"))
    form = dict(httpx.QueryParams(par.content.decode()))
    assert (form["code_challenge_method"], form["client_assertion_type"]) == (
        "S256", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    )  # fmt: skip
    assert "dpop_jkt" in form
    assert world.tokens.token_type.lower() == "dpop"
    assert world.tokens.refresh_token
    assert set(world.tokens.scope.split()) == set(SCOPES)


async def test_the_tokens_read_the_consented_account_only(world: World) -> None:
    async with http_for(world.app) as http:
        oauth = _oauth(world, http)
        tokens = await _fresh(world, oauth)
        api = AsyncBrokerlink.with_tokens(ORIGIN, tokens, oauth.dpop, oauth=oauth, http=http)
        assert [a.id async for a in api.iter_accounts()] == [world.account]
        assert (await api.balances(world.account)).data == []


async def test_a_refresh_token_is_bound_to_its_dpop_key(world: World) -> None:
    async with http_for(world.app) as http:
        other = _oauth(world, http, DPoPKey(clock=server_time(world.clock)))  # same client, another key
        with pytest.raises(OAuthError) as refused:
            await other.refresh(world.tokens)
        assert (refused.value.status, refused.value.error) == (400, "invalid_grant")
        assert (await _fresh(world, _oauth(world, http))).access_token  # the right key still refreshes


async def test_an_expired_access_token_is_refreshed_by_the_client(world: World) -> None:
    async with http_for(world.app) as http:
        oauth = _oauth(world, http)
        tokens = await _fresh(world, oauth)
        refreshed: list[Tokens] = []
        auth = DPoPAuth(tokens, oauth.dpop, oauth=oauth, on_refresh=refreshed.append)
        api = AsyncBrokerlink(ORIGIN, auth=auth, http=http)
        assert [a.id async for a in api.iter_accounts()] == [world.account]
        world.clock.advance(timedelta(seconds=tokens.expires_in + 1))
        assert [a.id async for a in api.iter_accounts()] == [world.account]
        assert len(refreshed) == 1
        assert refreshed[0].access_token != tokens.access_token
        world.tokens = refreshed[0]

        # Without the OAuth client, an expired token is just refused.
        world.clock.advance(timedelta(seconds=tokens.expires_in + 1))
        stuck = AsyncBrokerlink.with_tokens(ORIGIN, refreshed[0], oauth.dpop, http=http)
        with pytest.raises(NotAuthenticatedError):
            await stuck.accounts()


async def test_client_credentials_grant_a_token_for_the_app_itself(world: World) -> None:
    async with http_for(world.app) as http:
        tokens = await _oauth(world, http).client_credentials()
    assert tokens.token_type.lower() == "dpop"
    assert tokens.refresh_token is None
    with pytest.raises(OAuthError) as refused:
        async with http_for(world.app) as http:
            await _oauth(world, http).client_credentials("accounts:read")
    assert refused.value.error == "invalid_scope"  # user data needs the user's consent


@pytest.mark.parametrize(
    ("kind", "make"),
    [
        ("ES256", lambda: ECKey.generate_key("P-256", private=True)),
        ("PS256", lambda: RSAKey.generate_key(2048, private=True)),
        ("EdDSA", lambda: OKPKey.generate_key("Ed25519", private=True)),
    ],
)
async def test_client_assertions_are_signed_with_each_accepted_key_type(world: World, kind: str, make: Any) -> None:
    key = make()
    jwks = {"keys": [key.as_dict(private=False) | {"kid": key.thumbprint(), "alg": kind}]}
    client_id = await register_app(
        world.app,
        world.clock,
        jwks,
        redirect_uri=REDIRECT_URI,
        scopes=["accounts:read"],
        grant_types=["client_credentials"],
        admin_email=f"admin-{kind.lower()}@example.com",
    )
    async with http_for(world.app) as http:
        oauth = OAuthClient(http, issuer=ORIGIN, client_id=client_id, key=key, clock=server_time(world.clock))
        tokens = await oauth.client_credentials()
        assert tokens.access_token
        wrong = OAuthClient(http, issuer=ORIGIN, client_id=client_id, key=make(), clock=server_time(world.clock))
        with pytest.raises(OAuthError) as refused:
            await wrong.client_credentials()
    assert refused.value.error == "invalid_client"
    assert json.dumps(jwks)  # the registered set held the public half only
    assert "d" not in jwks["keys"][0]
