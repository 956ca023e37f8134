"""The client against the real ``/v1/stream`` (uvicorn on loopback), and the sync facade.

An app holding a DPoP-bound token for Alice's account follows ``account:<id>`` through
``AsyncBrokerlink.stream``: the handshake carries a proof for the http form of the socket's URL, as
the server checks. Events are published on the bus, as the broker links do; the test drops the
connection mid-stream, publishes more while it is down, and checks that the client hands out every
event exactly once, in order, after resuming. The sync client (``Brokerlink``) reads, pages and
streams from a thread of its own against the same server.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from litestar import Litestar

from brokerlink.app.factory import create_app
from brokerlink.bus.base import EventBus
from brokerlink.client import AsyncBrokerlink, Brokerlink, DPoPKey, Event, Gap, NotFoundError, Snapshot, Tokens
from brokerlink.engine.links.ingest import ACCOUNT_TOPIC
from brokerlink.kit.clock import ManualClock
from tests.api.mfa_support import Authenticator
from tests.api.resource_support import Grant, grant
from tests.api.support import PASSWORD, link_account
from tests.client.support import registered, serve, server_time, settings
from tests.contract.harness import free_port

pytestmark = pytest.mark.asyncio(loop_scope="module")

READS = ["accounts:read", "balances:read", "positions:read", "orders:read"]
WAIT_S = 10.0


@dataclass
class World:
    app: Litestar
    base_url: str
    clock: ManualClock
    account: str
    grant: Grant
    device: Authenticator
    published: int = 0

    async def publish(self, count: int) -> list[str]:
        """``count`` order updates of the account on the bus; their order ids, in order."""
        bus: EventBus = self.app.state.bus
        ids = []
        for _ in range(count):
            self.published += 1
            order_id = f"ord_e2e{self.published:04d}"
            event = {
                "type": "order_updated",
                "account_id": self.account,
                "order_id": order_id,
                "ts": "2026-11-21T12:00:00Z",
            }
            await bus.publish(ACCOUNT_TOPIC, self.account, msgspec.json.encode(event))
            ids.append(order_id)
        return ids

    def client(self, **kwargs: Any) -> AsyncBrokerlink:
        dpop = DPoPKey(self.grant.key.key, clock=server_time(self.clock))
        tokens = Tokens(access_token=self.grant.token, token_type="DPoP", expires_in=300, obtained_at=dpop.clock())
        return AsyncBrokerlink.with_tokens(self.base_url, tokens, dpop, **kwargs)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    clock = ManualClock()
    tmp: Path = tmp_path_factory.mktemp("client-stream")
    # Plain http on loopback: the session cookie may not be Secure here (the session test needs it).
    config = settings(tmp, oauth_issuer=origin, resource_origin=origin, cookie_secure=False)
    app = create_app(config, clock=clock, configure_logs=False)
    async with serve(app, port) as base_url:
        alice, device = await registered(app, clock, "alice@example.com", "Alice")
        await alice.aclose()
        _, account = await link_account(app, "alice@example.com", "Main")
        token = await grant(app, email="alice@example.com", scopes=READS, account_ids=[account])
        yield World(app=app, base_url=base_url, clock=clock, account=account, grant=token, device=device)


def no_wait(_: int) -> float:
    return 0.0


async def next_events(stream: Any, count: int) -> list[Event]:
    """The next ``count`` events (snapshots skipped; a gap fails the test), bounded."""
    events: list[Event] = []
    async with asyncio.timeout(WAIT_S):
        async for item in stream:
            assert not isinstance(item, Gap), item
            if isinstance(item, Snapshot):
                continue
            assert isinstance(item, Event), item
            events.append(item)
            if len(events) == count:
                break
    return events


async def subscribed(world: World, stream: Any) -> list[Event]:
    """Wait (bounded) until the subscription is live: publish a marker until it comes back.

    Markers published before the subscription took effect are never delivered; any delivered
    before the last one come before it (per-channel order), so nothing of the warm-up is left over.
    """
    seen: list[Event] = []
    for _ in range(50):
        [marker] = await world.publish(1)
        try:
            async with asyncio.timeout(0.5):
                async for item in stream:
                    if isinstance(item, Event):
                        seen.append(item)
                        if item.event["order_id"] == marker:
                            return seen
        except TimeoutError:
            continue
    raise AssertionError("the subscription never delivered an event")


async def test_resume_after_a_dropped_connection_loses_and_duplicates_nothing(world: World) -> None:
    channel = f"account:{world.account}"
    async with world.client() as api, api.stream([channel], backoff=no_wait) as stream:
        warmup = await subscribed(world, stream)
        before = await world.publish(5)
        first = await next_events(stream, 5)
        assert [e.event["order_id"] for e in first] == before

        await stream.drop()  # mid-stream: the next read reconnects and resumes from the last seq
        during = await world.publish(5)
        after = await next_events(stream, 5)
        assert [e.event["order_id"] for e in after] == during
        assert stream.connections == 2

        seqs = [e.seq for e in [*warmup, *first, *after]]
        assert seqs == sorted(seqs)
        assert len(seqs) == len(set(seqs))
        assert stream.positions[channel] == after[-1].seq


async def test_the_sync_client_reads_pages_and_streams_from_its_own_thread(world: World) -> None:
    dpop = DPoPKey(world.grant.key.key, clock=server_time(world.clock))
    tokens = Tokens(access_token=world.grant.token, token_type="DPoP", expires_in=300, obtained_at=dpop.clock())
    channel = f"account:{world.account}"
    got_event = threading.Event()

    def work() -> tuple[list[str], list[str], str, dict[str, Any]]:
        with Brokerlink.with_tokens(world.base_url, tokens, dpop) as bl:
            page = [a.id for a in bl.accounts().data]
            walked = [a.id for a in bl.iter_accounts(limit=1)]
            try:
                bl.order("ord_missing")
                missing = "found?"
            except NotFoundError as exc:
                missing = exc.code
            with bl.stream([channel], backoff=no_wait) as stream:
                for item in stream:
                    if isinstance(item, Event):
                        got_event.set()
                        return page, walked, missing, item.event
        raise AssertionError("the stream ended")

    worker = asyncio.ensure_future(asyncio.to_thread(work))
    for _ in range(100):  # bounded: publish until the thread's stream has one
        if worker.done() or got_event.is_set():
            break
        await world.publish(1)
        await asyncio.sleep(0.1)
    page, walked, missing, event = await asyncio.wait_for(worker, WAIT_S)
    assert page == walked == [world.account]
    assert missing == "not_found"
    assert event["type"] == "order_updated"


async def test_a_signed_in_script_streams_with_its_session(world: World) -> None:
    world.clock.advance(timedelta(seconds=30))  # a fresh TOTP step
    code = world.device.code(world.clock)
    async with await AsyncBrokerlink.login(world.base_url, "alice@example.com", PASSWORD, totp=code) as api:
        assert (await api.me()).email == "alice@example.com"
        async with api.stream([f"account:{world.account}"], backoff=no_wait) as stream:
            await subscribed(world, stream)
            published = await world.publish(2)
            assert [e.event["order_id"] for e in await next_events(stream, 2)] == published
