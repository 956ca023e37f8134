"""DPoP nonces at the token endpoint, and the replay store in Redis (shared by every server process)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from brokerlink.app.factory import create_app
from brokerlink.kit.clock import ManualClock
from brokerlink.security.replay import RedisReplayStore
from tests.api.oauth.conftest import Server, oauth_settings
from tests.api.oauth.support import app_db, oauth_error
from tests.api.support import asgi_client, running


@pytest.fixture
async def strict(tmp_path: Path, redis_url: str) -> AsyncIterator[Server]:
    settings = oauth_settings(
        tmp_path,
        oauth_dpop_nonce=True,
        oauth_replay_backend="redis",
        redis_url=redis_url,
        bus_backend="memory",
    )
    clock = ManualClock()
    app = create_app(settings, clock=clock, configure_logs=False)
    async with running(app), asgi_client(app) as http:
        yield Server(app, http, app_db(app), clock, "redis")


async def test_token_endpoint_asks_for_a_dpop_nonce_and_accepts_it(strict: Server) -> None:
    assert isinstance(strict.app.state.oauth.replay, RedisReplayStore)
    client, dpop = await strict.client(), strict.dpop()
    first = await strict.http.post(
        "/oauth/token", data=client.form(grant_type="client_credentials"), headers={"DPoP": dpop.proof()}
    )
    oauth_error(first, 400, "use_dpop_nonce")
    nonce = first.headers["dpop-nonce"]
    second = await strict.http.post(
        "/oauth/token", data=client.form(grant_type="client_credentials"), headers={"DPoP": dpop.proof(nonce=nonce)}
    )
    assert second.status_code == 200, second.text
    assert second.headers["dpop-nonce"]


async def test_security9_assertion_replay_is_refused_through_redis(strict: Server) -> None:
    client, dpop = await strict.client(), strict.dpop()
    nonce = (
        await strict.http.post(
            "/oauth/token", data=client.form(grant_type="client_credentials"), headers={"DPoP": dpop.proof()}
        )
    ).headers["dpop-nonce"]
    assertion = client.assertion()
    form = client.form(assertion, grant_type="client_credentials")
    ok = await strict.http.post("/oauth/token", data=form, headers={"DPoP": dpop.proof(nonce=nonce)})
    assert ok.status_code == 200, ok.text
    replay = await strict.http.post("/oauth/token", data=form, headers={"DPoP": dpop.proof(nonce=nonce)})
    oauth_error(replay, 401, "invalid_client")
