"""The resource server over HTTP: DPoP-bound access tokens on /v1 routes (ADR 0025).

Rows are written to the store directly and proofs are real ES256 JWS (tests/api/resource_support.py);
the app is the real one, in-process. Time is the app's manual clock. Names carry the SECURITY.md item.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest
from joserfc import jwk, jwt
from litestar import Litestar
from sqlalchemy import update

from brokerlink.app.factory import create_app
from brokerlink.bus.base import EventBus
from brokerlink.config import Settings
from brokerlink.kit.clock import ManualClock
from brokerlink.security.oauth.resource import TokenCache, TokenGrant
from brokerlink.security.oauth.revocation import OAuthTokenRepository, TokensRevoked, publish_revocation
from brokerlink.store.db import Database
from brokerlink.store.models_oauth import OAuthClientRow, OAuthConsentRow
from tests.api.resource_support import ORIGIN, AppKey, Grant, call, grant
from tests.api.support import ClientFactory, asgi_client, assert_problem, eventually, link_account, running


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"resource_origin": ORIGIN})


@pytest.fixture
async def accounts(app: Litestar, make_client: ClientFactory) -> tuple[str, str]:
    """Alice (signed up) with two accounts; the tests' consents name only the first."""
    await make_client("alice@example.com", "Alice")
    _, first = await link_account(app, "alice@example.com", "Main")
    _, second = await link_account(app, "alice@example.com", "Other")
    return first, second


@pytest.fixture
async def reader(app: Litestar, accounts: tuple[str, str]) -> Grant:
    """A tracker app allowed to read Alice's first account."""
    return await grant(
        app, email="alice@example.com", scopes=["accounts:read", "orders:read"], account_ids=[accounts[0]]
    )


def _challenge(response: httpx.Response) -> str:
    challenge: str = response.headers.get("www-authenticate", "")
    assert challenge.startswith("DPoP "), response.headers
    return challenge


async def test_security23_a_token_reads_only_the_consents_accounts(
    client: httpx.AsyncClient, clock: ManualClock, reader: Grant, accounts: tuple[str, str]
) -> None:
    first, second = accounts
    listed = await call(client, reader, "GET", "/v1/accounts", clock.now())
    assert listed.status_code == 200, listed.text
    assert [a["id"] for a in listed.json()["data"]] == [first]
    assert (await call(client, reader, "GET", f"/v1/accounts/{first}", clock.now())).status_code == 200
    for path in (f"/v1/accounts/{second}", f"/v1/accounts/{second}/orders", "/v1/accounts/acc_missing"):
        assert_problem(await call(client, reader, "GET", path, clock.now()), 404, "not_found")
    # The same token again, with fresh proofs: the cached lookup answers the same.
    assert (await call(client, reader, "GET", f"/v1/accounts/{first}/orders", clock.now())).status_code == 200


async def test_security13_bearer_or_no_proof_gets_401(
    client: httpx.AsyncClient, clock: ManualClock, reader: Grant
) -> None:
    bearer = await client.get("/v1/accounts", headers={"Authorization": f"Bearer {reader.token}"})
    assert_problem(bearer, 401, "invalid_token")
    assert 'error="invalid_token"' in _challenge(bearer)
    with_proof = reader.key.headers("GET", "/v1/accounts", reader.token, clock.now())
    with_proof["Authorization"] = f"Bearer {reader.token}"
    assert_problem(await client.get("/v1/accounts", headers=with_proof), 401, "invalid_token")
    no_proof = await client.get("/v1/accounts", headers={"Authorization": f"DPoP {reader.token}"})
    assert_problem(no_proof, 401, "invalid_dpop_proof")
    _challenge(no_proof)


async def test_security16_a_token_in_the_query_string_gets_401(
    client: httpx.AsyncClient, clock: ManualClock, reader: Grant
) -> None:
    alone = await client.get("/v1/accounts", params={"access_token": reader.token})
    assert_problem(alone, 401, "invalid_token")
    _challenge(alone)
    # Even next to a valid header and proof.
    both = await call(client, reader, "GET", f"/v1/accounts?access_token={reader.token}", clock.now())
    assert_problem(both, 401, "invalid_token")


async def test_security14_proofs_for_another_request_key_or_token_get_401(
    app: Litestar, client: httpx.AsyncClient, clock: ManualClock, reader: Grant, accounts: tuple[str, str]
) -> None:
    now = clock.now()
    path = "/v1/accounts"
    other = await grant(app, email="alice@example.com", scopes=["accounts:read"], account_ids=[accounts[0]])
    cases: dict[str, dict[str, str]] = {
        "htm": {"DPoP": reader.key.proof("POST", path, token=reader.token, now=now)},
        "htu": {"DPoP": reader.key.proof("GET", "/v1/orders", token=reader.token, now=now)},
        "origin": {"DPoP": reader.key.proof("GET", "https://evil.example" + path, token=reader.token, now=now)},
        "ath": {"DPoP": reader.key.proof("GET", path, token=other.token, now=now)},
        "key": {"DPoP": AppKey.generate().proof("GET", path, token=reader.token, now=now)},
        "stale iat": {"DPoP": reader.key.proof("GET", path, token=reader.token, now=now - timedelta(minutes=5))},
    }
    for name, headers in cases.items():
        response = await client.get(path, headers={"Authorization": f"DPoP {reader.token}", **headers})
        assert response.status_code == 401, name
        assert_problem(response, 401, "invalid_dpop_proof")
    replayed = reader.key.headers("GET", path, reader.token, now)
    assert (await client.get(path, headers=replayed)).status_code == 200
    assert_problem(await client.get(path, headers=replayed), 401, "invalid_dpop_proof")


async def test_security18_forged_tokens_get_401(client: httpx.AsyncClient, clock: ManualClock, reader: Grant) -> None:
    # A JWT the server never issued has no row, however it is signed: alg none, HS256, a stranger's key.
    claims = {"sub": reader.user_id, "scope": "accounts:read", "cnf": {"jkt": reader.key.jkt}}
    unsigned = "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0." + reader.token.split(".")[1] + "."
    hs256 = jwt.encode({"alg": "HS256"}, claims, jwk.OctKey.import_key("k" * 32), algorithms=["HS256"])
    stranger = jwt.encode({"alg": "ES256", "typ": "at+jwt"}, claims, jwk.ECKey.generate_key("P-256"))
    for token in (unsigned, hs256, stranger):
        headers = reader.key.headers("GET", "/v1/accounts", token, clock.now())
        assert_problem(await client.get("/v1/accounts", headers=headers), 401, "invalid_token")


async def test_security17_revoked_expired_or_disabled_tokens_get_401(
    app: Litestar, client: httpx.AsyncClient, clock: ManualClock, reader: Grant, accounts: tuple[str, str]
) -> None:
    database: Database = app.state.db
    bus: EventBus = app.state.bus
    assert (await call(client, reader, "GET", "/v1/accounts", clock.now())).status_code == 200  # now cached
    async with database.session() as s:
        revoked = await OAuthTokenRepository(s).revoke(now=clock.now(), token_ids=[reader.token_id])
        await s.commit()
    await publish_revocation(bus, TokensRevoked(token_ids=revoked, reason="revocation_endpoint", at=clock.now()))

    async def refused() -> bool | None:
        response = await call(client, reader, "GET", "/v1/accounts", clock.now())
        return True if response.status_code == 401 else None

    await eventually(refused, "the revoked token to be refused")
    assert_problem(await call(client, reader, "GET", "/v1/accounts", clock.now()), 401, "invalid_token")

    short = await grant(
        app, email="alice@example.com", scopes=["accounts:read"], account_ids=[accounts[0]],
        token_expires_in=timedelta(seconds=30),
    )  # fmt: skip
    assert (await call(client, short, "GET", "/v1/accounts", clock.now())).status_code == 200
    clock.advance(timedelta(seconds=31))
    assert_problem(await call(client, short, "GET", "/v1/accounts", clock.now()), 401, "invalid_token")

    disabled = await grant(app, email="alice@example.com", scopes=["accounts:read"], account_ids=[accounts[0]])
    async with database.session() as s:
        await s.execute(
            update(OAuthClientRow).where(OAuthClientRow.id == disabled.client_id).values(disabled_at=clock.now())
        )
        await s.commit()
    assert_problem(await call(client, disabled, "GET", "/v1/accounts", clock.now()), 401, "invalid_token")


async def test_security22_a_revoked_or_expired_consent_gets_403(
    app: Litestar, client: httpx.AsyncClient, clock: ManualClock, reader: Grant, accounts: tuple[str, str]
) -> None:
    database: Database = app.state.db
    bus: EventBus = app.state.bus
    assert (await call(client, reader, "GET", "/v1/accounts", clock.now())).status_code == 200
    async with database.session() as s:
        await s.execute(
            update(OAuthConsentRow)
            .where(OAuthConsentRow.id == reader.consent_id)
            .values(status="revoked", revoked_at=clock.now())
        )
        revoked = await OAuthTokenRepository(s).revoke(now=clock.now(), consent_id=reader.consent_id)
        await s.commit()
    assert revoked == [reader.token_id]
    await publish_revocation(
        bus, TokensRevoked(token_ids=revoked, consent_id=reader.consent_id, reason="consent_revoked", at=clock.now())
    )

    async def refused() -> int | None:
        response = await call(client, reader, "GET", "/v1/accounts", clock.now())
        return response.status_code if response.status_code != 200 else None

    assert await eventually(refused, "the revoked consent to be refused") == 403
    assert_problem(await call(client, reader, "GET", "/v1/accounts", clock.now()), 403, "consent_inactive")

    brief = await grant(
        app, email="alice@example.com", scopes=["accounts:read"], account_ids=[accounts[0]],
        consent_expires_in=timedelta(minutes=1),
    )  # fmt: skip
    assert (await call(client, brief, "GET", "/v1/accounts", clock.now())).status_code == 200
    clock.advance(timedelta(minutes=2))
    assert_problem(await call(client, brief, "GET", "/v1/accounts", clock.now()), 403, "consent_inactive")
    awaiting = await grant(
        app, email="alice@example.com", scopes=["accounts:read"], account_ids=[accounts[0]], consent_status="awaiting"
    )
    assert_problem(await call(client, awaiting, "GET", "/v1/accounts", clock.now()), 403, "consent_inactive")


async def test_token_requests_need_no_csrf_and_are_audited_as_the_app(
    app: Litestar, client: httpx.AsyncClient, clock: ManualClock, accounts: tuple[str, str]
) -> None:
    trader = await grant(app, email="alice@example.com", scopes=["orders:write"], account_ids=[accounts[0]])
    # No CSRF header or cookie: the token request reaches the handler (404: no such order), not a CSRF 403.
    assert_problem(await call(client, trader, "DELETE", "/v1/orders/ord_missing", clock.now()), 404, "not_found")
    # A cookie session still needs the CSRF header.
    session = asgi_client(app)
    async with session:
        response = await session.post("/v1/auth/login", json={"email": "alice@example.com", "password": "x"})
        assert response.status_code == 403, response.text


async def test_client_credentials_tokens_reach_no_user_data(
    app: Litestar, client: httpx.AsyncClient, clock: ManualClock, accounts: tuple[str, str]
) -> None:
    own = await grant(app, email=None, scopes=["accounts:read"])
    listed = await call(client, own, "GET", "/v1/accounts", clock.now())
    assert listed.status_code == 200, listed.text
    assert listed.json()["data"] == []
    assert_problem(await call(client, own, "GET", f"/v1/accounts/{accounts[0]}", clock.now()), 404, "not_found")


async def test_dpop_nonce_when_required(settings: Settings, clock: ManualClock) -> None:
    app = create_app(settings.model_copy(update={"resource_dpop_nonce": True}), clock=clock, configure_logs=False)
    async with running(app), asgi_client(app) as c:
        register = await c.post(
            "/v1/auth/register",
            json={"email": "alice@example.com", "password": "correct horse battery staple", "display_name": "A"},
            headers={"x-csrf-token": (await c.get("/v1/auth/csrf")).json()["csrf_token"]},
        )
        assert register.status_code == 201, register.text
        c.cookies.clear()
        g = await grant(app, email="alice@example.com", scopes=["accounts:read"])
        first = await call(c, g, "GET", "/v1/accounts", clock.now())
        assert_problem(first, 401, "use_dpop_nonce")
        nonce = first.headers["dpop-nonce"]
        headers = g.key.headers("GET", "/v1/accounts", g.token, clock.now(), nonce=nonce)
        assert (await c.get("/v1/accounts", headers=headers)).status_code == 200


def test_a_lookup_that_raced_a_revocation_is_not_cached() -> None:
    now = datetime(2026, 1, 5, tzinfo=UTC)
    cache = TokenCache(ttl=timedelta(seconds=2), max_entries=2)
    grant_ = TokenGrant(
        token_id="tok_1", client_id="cli_1", user_id="usr_1", consent_id="cns_1", scopes=frozenset(),
        account_ids=frozenset(), jkt="x", expires_at=now + timedelta(minutes=5),
    )  # fmt: skip
    generation = cache.generation
    cache.forget(["tok_1"])  # arrives while the lookup is in flight
    cache.put("h1", grant_, now, generation=generation)
    assert cache.get("h1", now) is None
    cache.put("h1", grant_, now, generation=cache.generation)
    assert cache.get("h1", now) == grant_
    assert cache.get("h1", now + timedelta(seconds=2)) is None  # aged out
    for n in range(3):
        cache.put(f"h{n}", msgspec.structs.replace(grant_, token_id=f"tok_{n}"), now, generation=cache.generation)
    assert len(cache) == 2  # bounded: the oldest went
    assert cache.get("h0", now) is None
    assert cache.forget([], consent_id="cns_1") == 2


async def test_resource_server_replay_store_in_redis(settings: Settings, clock: ManualClock, redis_url: str) -> None:
    shared = settings.model_copy(update={"resource_replay_backend": "redis", "redis_url": redis_url})
    apps = [create_app(shared, clock=clock, configure_logs=False) for _ in range(2)]
    async with running(apps[0]), running(apps[1]), asgi_client(apps[0]) as one, asgi_client(apps[1]) as two:
        await one.post(
            "/v1/auth/register",
            json={"email": "alice@example.com", "password": "correct horse battery staple", "display_name": "A"},
            headers={"x-csrf-token": (await one.get("/v1/auth/csrf")).json()["csrf_token"]},
        )
        g = await grant(apps[0], email="alice@example.com", scopes=["accounts:read"])
        headers = g.key.headers("GET", "/v1/accounts", g.token, clock.now())
        assert (await one.get("/v1/accounts", headers=headers)).status_code == 200
        # The same proof at the other process (same database, same Redis): a replay.
        assert_problem(await two.get("/v1/accounts", headers=headers), 401, "invalid_dpop_proof")
