"""``AsyncBrokerlink`` against the real app, in-process: DPoP (with server nonces), pagination, typed
problems, idempotent orders, ETags, and session sign-in.

One app and one sim venue for the module (set-up is the expensive part): Alice has a linked account
and follows Bob's strategy; an app holds a DPoP-bound token for Alice's account (written to the store
as the token endpoint would: tests/api/resource_support.py; the OAuth flow itself is
test_oauth_flow.py). The app requires server nonces in DPoP proofs (``resource_dpop_nonce``), so
every client here answers a ``use_dpop_nonce`` challenge on its first request.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from joserfc import jws
from litestar import Litestar

from brokerlink.app.factory import create_app
from brokerlink.client import (
    AsyncBrokerlink,
    DPoPKey,
    ForbiddenError,
    InvalidInputError,
    NotAuthenticatedError,
    NotFoundError,
    Order,
    PreconditionFailedError,
    PreconditionRequiredError,
    ProblemError,
    RateLimitedError,
    Tokens,
)
from brokerlink.domain.enums import Role
from brokerlink.kit.clock import ManualClock
from tests.api.mfa_support import Authenticator
from tests.api.resource_support import Grant, grant
from tests.api.support import PASSWORD, asgi_client, grant_role, link_via_api, running
from tests.client.support import ORIGIN, http_for, registered, server_time, settings
from tests.contract.harness import SimHarness, sim_venue

pytestmark = pytest.mark.asyncio(loop_scope="module")

SCOPES = ["accounts:read", "balances:read", "positions:read", "orders:read", "orders:write", "copy:read", "copy:manage"]
RESTING = {"symbol": "EUR/USD", "side": "buy", "qty": "0.10", "type": "limit", "limit_price": "0.50000"}
"""A buy limit far below the market: it rests until cancelled."""
MULTIPLIER_1 = {"sizing": "multiplier", "multiplier": "1"}


@dataclass
class World:
    app: Litestar
    clock: ManualClock
    venue: SimHarness
    alice_device: Authenticator
    alice_account: str
    strategy_id: str
    grant: Grant


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    clock = ManualClock()
    tmp: Path = tmp_path_factory.mktemp("client-rest")
    async with sim_venue(extra_accounts=2) as venue:
        app = create_app(
            settings(tmp, resource_dpop_nonce=True, rate_limit_orders="1000/second", rate_limit_client="1000/second"),
            clock=clock,
            configure_logs=False,
        )
        async with running(app):
            alice, device = await registered(app, clock, "alice@example.com", "Alice")
            bob, _ = await registered(app, clock, "bob@example.com", "Bob")
            await grant_role(app, "bob@example.com", Role.PROVIDER)
            async with contextlib.aclosing(alice), contextlib.aclosing(bob):
                alice_account = (await link_via_api(alice, venue.base_url, 1))["account"]["id"]
                bob_account = (await link_via_api(bob, venue.base_url, 2))["account"]["id"]
                created = await bob.post(
                    "/v1/strategies", json={"name": "Trend", "account_id": bob_account, "visibility": "public"}
                )
                assert created.status_code == 201, created.text
            token = await grant(app, email="alice@example.com", scopes=SCOPES, account_ids=[alice_account])
            yield World(
                app=app,
                clock=clock,
                venue=venue,
                alice_device=device,
                alice_account=alice_account,
                strategy_id=created.json()["id"],
                grant=token,
            )


class Recorder:
    """The requests a client sent: method, path, and their DPoP proofs' nonce (if any)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> None:
        self.requests.append(request)

    def paths(self, method: str = "GET") -> list[str]:
        return [r.url.path for r in self.requests if r.method == method]


def _client(w: World, http: httpx.AsyncClient) -> AsyncBrokerlink:
    dpop = DPoPKey(w.grant.key.key, clock=server_time(w.clock))
    tokens = Tokens(access_token=w.grant.token, token_type="DPoP", expires_in=300, obtained_at=dpop.clock())
    return AsyncBrokerlink.with_tokens(ORIGIN, tokens, dpop, http=http)


@pytest_asyncio.fixture(loop_scope="module")
async def recorded(world: World) -> AsyncIterator[tuple[AsyncBrokerlink, Recorder]]:
    """The app's client (its own DPoP key object: no nonce yet) and the requests it sends."""
    recorder = Recorder()
    async with http_for(world.app, hooks=[recorder]) as http:
        yield _client(world, http), recorder


@pytest_asyncio.fixture(loop_scope="module")
async def api(recorded: tuple[AsyncBrokerlink, Recorder]) -> AsyncBrokerlink:
    return recorded[0]


def _nonce(request: httpx.Request) -> str | None:
    claims: dict[str, Any] = json.loads(jws.extract_compact(request.headers["dpop"].encode()).payload)
    nonce = claims.get("nonce")
    return nonce if isinstance(nonce, str) else None


async def test_a_dpop_nonce_challenge_is_answered_by_one_retry_then_remembered(
    world: World, recorded: tuple[AsyncBrokerlink, Recorder]
) -> None:
    api, recorder = recorded
    accounts = await api.accounts()
    assert [a.id for a in accounts.data] == [world.alice_account]
    first, retry = recorder.requests
    assert (first.url.path, retry.url.path) == ("/v1/accounts", "/v1/accounts")
    assert _nonce(first) is None
    assert _nonce(retry) is not None
    assert first.headers["authorization"] == retry.headers["authorization"] == f"DPoP {world.grant.token}"
    assert "access_token" not in str(first.url)  # the token travels in the header only

    account = await api.account(world.alice_account)
    assert (account.id, account.broker, account.currency) == (world.alice_account, "sim", "USD")
    assert len(recorder.requests) == 3  # the nonce is remembered: no second challenge
    assert _nonce(recorder.requests[-1]) == _nonce(retry)


async def test_reads_are_typed_with_decimals_and_times(world: World, api: AsyncBrokerlink) -> None:
    balances = (await api.balances(world.alice_account)).data
    assert balances
    assert all(isinstance(b.cash, Decimal) and b.ts.tzinfo is not None for b in balances)
    instruments = [i async for i in api.iter_instruments(world.alice_account)]
    eurusd = next(i for i in instruments if i.symbol == "EUR/USD")
    assert isinstance(eurusd.tick_size, Decimal)
    assert eurusd.tick_size > 0
    [quote] = await api.quotes(world.alice_account, ["EUR/USD"])
    assert quote.bid <= quote.ask


async def test_orders_are_paged_by_cursor_and_the_iterator_walks_every_page(
    world: World, recorded: tuple[AsyncBrokerlink, Recorder]
) -> None:
    api, recorder = recorded
    placed = [await api.place_order(world.alice_account, **RESTING) for _ in range(5)]
    assert all(isinstance(o, Order) and o.qty == Decimal("0.10") for o in placed)

    first = await api.orders(world.alice_account, limit=2)
    assert len(first.data) == 2
    assert first.next_after is not None
    second = await api.orders(world.alice_account, limit=2, after=first.next_after)
    assert {o.id for o in first.data}.isdisjoint({o.id for o in second.data})

    before = len(recorder.paths())
    walked = [o.id async for o in api.iter_orders(world.alice_account, limit=2)]
    pages = len(recorder.paths()) - before
    assert len(walked) == len(set(walked))  # no order twice
    assert {o.id for o in placed} <= set(walked)
    assert pages >= 3  # at least five orders, two a page

    for order in placed:
        cancelled = await api.cancel_order(order.id)
        assert cancelled.id == order.id
    statuses = {(await api.order(o.id)).status for o in placed}
    assert statuses <= {"canceled", "pending_cancel"}


async def test_an_order_is_placed_once_per_idempotency_key(world: World, api: AsyncBrokerlink) -> None:
    first = await api.place_order(world.alice_account, **RESTING, idempotency_key="client-test-key-1")
    again = await api.place_order(world.alice_account, **RESTING, idempotency_key="client-test-key-1")
    assert again.id == first.id
    with pytest.raises(InvalidInputError) as reused:
        await api.place_order(world.alice_account, **(RESTING | {"qty": "0.20"}), idempotency_key="client-test-key-1")
    assert (reused.value.status, reused.value.code) == (422, "idempotency_key_reused")
    assert reused.value.type == "urn:brokerlink:problem:idempotency_key_reused"
    mine = [o async for o in api.iter_orders(world.alice_account, limit=100) if o.id == first.id]
    assert len(mine) == 1
    await api.cancel_order(first.id)


class LosesTheFirstAnswer(httpx.AsyncBaseTransport):
    """Delivers every request, but loses the answer to the first POST (a connection dropped after
    the server acted, before the client heard)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.posts: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST":
            self.posts.append(request)
            if len(self.posts) == 1:
                await response.aread()
                raise httpx.ReadError("connection reset", request=request)
        return response


async def test_a_lost_answer_is_retried_with_the_same_key_and_places_one_order(world: World) -> None:
    flaky = LosesTheFirstAnswer(httpx.ASGITransport(app=world.app))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=flaky, base_url=ORIGIN) as http:
        api = _client(world, http)
        before = {o.id async for o in api.iter_orders(world.alice_account, limit=100)}
        order = await api.place_order(world.alice_account, **RESTING)
        after = {o.id async for o in api.iter_orders(world.alice_account, limit=100)}
    keys = {p.headers["idempotency-key"] for p in flaky.posts}
    assert len(flaky.posts) >= 2
    assert len(keys) == 1  # an automatic key, the same on the retry
    assert after - before == {order.id}  # one order, not two
    async with http_for(world.app) as http:
        await _client(world, http).cancel_order(order.id)


async def test_problems_are_typed_errors(world: World, api: AsyncBrokerlink) -> None:
    with pytest.raises(NotFoundError) as missing:
        await api.order("ord_doesnotexist")
    assert (missing.value.status, missing.value.code, missing.value.type) == (
        404, "not_found", "urn:brokerlink:problem:not_found"
    )  # fmt: skip
    assert missing.value.detail

    with pytest.raises(InvalidInputError) as invalid:
        await api.place_order(world.alice_account, symbol="EUR/USD", side="sideways", qty="1")
    assert invalid.value.code == "invalid_input"
    assert any("side" in e.get("field", "") for e in invalid.value.errors)

    with pytest.raises(ForbiddenError) as forbidden:
        await api.consents()  # apps do not manage consents
    assert forbidden.value.status == 403

    with pytest.raises(NotFoundError):
        await api.balances("acc_someone_elses")
    assert isinstance(missing.value, ProblemError)


async def test_settings_change_only_with_the_current_etag(world: World) -> None:
    async with http_for(world.app) as http:
        world.clock.advance(timedelta(seconds=30))  # a fresh TOTP step for this sign-in
        alice = await AsyncBrokerlink.login(
            ORIGIN, "alice@example.com", PASSWORD, totp=world.alice_device.code(world.clock), http=http
        )
        subscription = await alice.subscribe(world.strategy_id, world.alice_account, MULTIPLIER_1)
    async with http_for(world.app) as http:
        api = _client(world, http)
        read = await api.subscription(subscription.id)
        assert (read.etag, read.version, read.settings["sizing"]) == ('"1"', 1, "multiplier")
        current = await api.subscription_settings(subscription.id)
        assert current.etag == '"1"'

        changed = await api.replace_subscription_settings(
            subscription.id, {"sizing": "fixed_qty", "fixed_qty": "0.02"}, if_match=current.etag
        )
        assert changed.etag == '"2"'
        assert Decimal(changed.settings["fixed_qty"]) == Decimal("0.02")

        with pytest.raises(PreconditionFailedError) as stale:
            await api.replace_subscription_settings(subscription.id, MULTIPLIER_1, if_match=current.etag)
        assert (stale.value.status, stale.value.code, stale.value.etag) == (412, "precondition_failed", '"2"')
        with pytest.raises(PreconditionRequiredError):
            await api.request("PUT", f"/v1/subscriptions/{subscription.id}/settings", body=MULTIPLIER_1)
        assert (await api.subscription(subscription.id)).etag == '"2"'

        paused = await api.pause_subscription(subscription.id, if_match='"2"')
        assert (paused.status, paused.etag) == ("paused", '"3"')
        kinds = [e.kind async for e in api.iter_copy_events(subscription.id, limit=1)]
        assert kinds[:2] == ["paused", "settings_changed"]
        assert [s.id async for s in api.iter_subscriptions(limit=1)] == [subscription.id]


async def test_a_session_signs_in_with_its_authenticator_code(world: World) -> None:
    async with http_for(world.app) as http:
        with pytest.raises(NotAuthenticatedError) as needs_code:
            await AsyncBrokerlink.login(ORIGIN, "alice@example.com", PASSWORD, http=http)
        assert needs_code.value.code == "mfa_required"
    async with http_for(world.app) as http:
        with pytest.raises(NotAuthenticatedError):
            await AsyncBrokerlink.login(ORIGIN, "alice@example.com", "wrong password!", http=http)
    async with asgi_client(world.app) as http:
        world.clock.advance(timedelta(seconds=30))
        alice = await AsyncBrokerlink.login(
            ORIGIN, "alice@example.com", PASSWORD, totp=world.alice_device.code(world.clock), http=http
        )
        me = await alice.me()
        assert me.email == "alice@example.com"
        assert [a.id async for a in alice.iter_accounts()] == [world.alice_account]
        consents = [c async for c in alice.iter_consents()]
        assert [c.id for c in consents] == [world.grant.consent_id]
        await alice.logout()
        with pytest.raises(NotAuthenticatedError):
            await alice.me()


async def test_a_429_carries_retry_after(tmp_path: Path) -> None:
    app = create_app(settings(tmp_path, rate_limit_ip="2/minute"), clock=ManualClock(), configure_logs=False)
    async with running(app), http_for(app) as http:
        anonymous = AsyncBrokerlink(ORIGIN, http=http)

        async def burst() -> None:
            for _ in range(5):
                await anonymous.request("GET", "/v1/auth/csrf")

        with pytest.raises(RateLimitedError) as limited:
            await burst()
    assert (limited.value.status, limited.value.code) == (429, "rate_limited")
    assert limited.value.retry_after is not None
    assert limited.value.retry_after > 0
