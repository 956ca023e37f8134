"""``/v1/stream`` on a real server (uvicorn on loopback) with a real WebSocket client.

Sessions and DPoP-bound tokens open it; subscriptions are checked per account and per scope; a
revocation closes the sockets of its tokens within a second (measured, with a bounded wait);
floods and too many connections are closed with 1008. Token rows are written to the store directly
(tests/api/resource_support.py), proofs are real ES256 JWS.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import uvicorn
import websockets
from litestar import Litestar

from brokerlink.app.factory import create_app
from brokerlink.bus.base import EventBus
from brokerlink.config import Settings
from brokerlink.engine.links.ingest import ACCOUNT_TOPIC
from brokerlink.kit.clock import ManualClock
from brokerlink.security.oauth.revocation import OAuthTokenRepository, TokensRevoked, publish_revocation
from brokerlink.security.sessions import SessionService
from brokerlink.store.db import Database
from brokerlink.store.repositories.users import UserRepository
from brokerlink.stream.connections import StreamHub
from tests.api.resource_support import Grant, grant
from tests.api.support import link_account
from tests.contract.harness import free_port
from tests.stream.test_admin_stream import WAIT_S, _settings

READS = ["accounts:read", "balances:read", "positions:read", "orders:read"]


class World(msgspec.Struct):
    app: Litestar
    host: str
    clock: ManualClock
    cookie: str
    mine: str
    other_of_mine: str
    bobs: str


@contextlib.asynccontextmanager
async def _serve(app: Litestar, port: int) -> AsyncIterator[str]:
    """The app under uvicorn on ``127.0.0.1:port`` (the port is chosen first: the origin names it)."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, lifespan="on", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):  # bounded: 10 s
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    assert server.started
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)


async def _user(app: Litestar, settings: Settings, email: str) -> str:
    """A user and a signed-in session, straight in the store (no password hashing); the cookie value."""
    database: Database = app.state.db
    async with database.session() as s:
        user = await UserRepository(s).create(
            email=email, display_name=email, password_hash="-", now=app.state.clock.now()
        )
        issued = await SessionService(s, settings, app.state.clock).start(user, ip=None, user_agent=None)
        await s.commit()
    return issued.token


@contextlib.asynccontextmanager
async def world(tmp_path: Path, **changes: Any) -> AsyncIterator[World]:
    """A served app; Alice (signed in) with two accounts, Bob with one."""
    port = free_port()
    clock = ManualClock()
    settings = _settings(tmp_path, resource_origin=f"http://127.0.0.1:{port}", **changes)
    app = create_app(settings, clock=clock, configure_logs=False)
    async with _serve(app, port) as host:
        cookie = await _user(app, settings, "alice@example.com")
        await _user(app, settings, "bob@example.com")
        _, mine = await link_account(app, "alice@example.com", "Main")
        _, other = await link_account(app, "alice@example.com", "Other")
        _, bobs = await link_account(app, "bob@example.com", "Bob")
        yield World(app=app, host=host, clock=clock, cookie=cookie, mine=mine, other_of_mine=other, bobs=bobs)


def _with_cookie(w: World, **kwargs: Any) -> Any:
    headers = {"Cookie": f"brokerlink_session={w.cookie}"}
    return websockets.connect(f"ws://{w.host}/v1/stream", additional_headers=headers, **kwargs)


def _with_token(w: World, g: Grant, **kwargs: Any) -> Any:
    # RFC 9449: the handshake is a GET, its htu the http form of the socket's URL.
    headers = g.key.headers("GET", f"http://{w.host}/v1/stream", g.token, w.clock.now())
    return websockets.connect(f"ws://{w.host}/v1/stream", additional_headers=headers, **kwargs)


async def _ask(ws: Any, op: str, channel: str) -> dict[str, Any]:
    await ws.send(msgspec.json.encode({"op": op, "channel": channel}).decode())
    reply: dict[str, Any] = msgspec.json.decode(await asyncio.wait_for(ws.recv(), WAIT_S))
    return reply


async def _publish(w: World, account_id: str, kind: str) -> None:
    bus: EventBus = w.app.state.bus
    event = {"type": kind, "account_id": account_id, "ts": "2026-11-21T12:00:00Z"}
    await bus.publish(ACCOUNT_TOPIC, account_id, msgspec.json.encode(event))


async def _closed(ws: Any) -> tuple[int | None, float]:
    """Wait (bounded) for the server's close; its code and how long it took from now."""
    started = time.monotonic()
    try:
        while True:
            await asyncio.wait_for(ws.recv(), WAIT_S)
    except websockets.ConnectionClosed:
        return ws.close_code, time.monotonic() - started


async def test_security19_a_session_follows_its_own_accounts_only(tmp_path: Path) -> None:
    async with world(tmp_path) as w, _with_cookie(w) as ws:
        assert await _ask(ws, "subscribe", f"account:{w.mine}") == {"op": "subscribed", "channel": f"account:{w.mine}"}
        for channel in (f"account:{w.bobs}", "account:acc_missing", "orders:all"):
            refused = await _ask(ws, "subscribe", channel)
            assert (refused["op"], refused["status"], refused["code"]) == ("error", 404, "not_found"), channel
        await _publish(w, w.bobs, "order_filled")  # Bob's: never reaches Alice
        await _publish(w, w.mine, "order_filled")
        event = msgspec.json.decode(await asyncio.wait_for(ws.recv(), WAIT_S))
        assert (event["op"], event["channel"], event["event"]["account_id"]) == ("event", f"account:{w.mine}", w.mine)
        assert event["event"]["type"] == "order_filled"
        assert (await _ask(ws, "unsubscribe", f"account:{w.mine}"))["op"] == "unsubscribed"
        await ws.send("not json")
        bad = msgspec.json.decode(await asyncio.wait_for(ws.recv(), WAIT_S))
        assert (bad["status"], bad["code"]) == (400, "invalid_message")
        # A page on another site cannot ride Alice's cookie (cross-site WebSocket hijacking).
        async with _with_cookie(w, origin="https://evil.example") as hijack:
            code, _ = await _closed(hijack)
            assert code == 1008


async def test_security23_a_token_follows_its_consents_accounts_with_its_scopes(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        balances = await grant(w.app, email="alice@example.com", scopes=["balances:read"], account_ids=[w.mine])
        async with _with_token(w, balances) as ws:
            assert (await _ask(ws, "subscribe", f"account:{w.other_of_mine}"))["status"] == 404  # outside the consent
            assert (await _ask(ws, "subscribe", f"account:{w.bobs}"))["status"] == 404
            assert (await _ask(ws, "subscribe", f"account:{w.mine}"))["op"] == "subscribed"
            await _publish(w, w.mine, "order_filled")  # needs orders:read: not sent
            await _publish(w, w.mine, "account_updated")
            event = msgspec.json.decode(await asyncio.wait_for(ws.recv(), WAIT_S))
            assert event["event"]["type"] == "account_updated"

        copy_only = await grant(w.app, email="alice@example.com", scopes=["copy:read"], account_ids=[w.mine])
        async with _with_token(w, copy_only) as ws:
            refused = await _ask(ws, "subscribe", f"account:{w.mine}")
            assert (refused["status"], refused["code"]) == (403, "insufficient_scope")

        # No proof, or the token as Bearer: refused at the handshake (SECURITY.md 13).
        for headers in ({"Authorization": f"DPoP {balances.token}"}, {"Authorization": f"Bearer {balances.token}"}):
            with pytest.raises(websockets.InvalidStatus):
                async with websockets.connect(f"ws://{w.host}/v1/stream", additional_headers=headers) as ws:
                    await asyncio.wait_for(ws.recv(), WAIT_S)


async def test_security17_revocation_closes_the_sockets_within_a_second(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        database: Database = w.app.state.db
        hub: StreamHub = w.app.state.public_stream
        first = await grant(w.app, email="alice@example.com", scopes=READS, account_ids=[w.mine])
        second = await grant(w.app, email="alice@example.com", scopes=READS, account_ids=[w.mine])
        async with _with_token(w, first) as one, _with_token(w, second) as two:
            for ws in (one, two):
                assert (await _ask(ws, "subscribe", f"account:{w.mine}"))["op"] == "subscribed"
            assert len(hub) == 2

            # The revocation endpoint revokes one token: its socket closes, the other stays open.
            async with database.session() as s:
                revoked = await OAuthTokenRepository(s).revoke(now=w.clock.now(), token_ids=[first.token_id])
                await s.commit()
            await publish_revocation(
                w.app.state.bus, TokensRevoked(token_ids=revoked, reason="revocation_endpoint", at=w.clock.now())
            )
            code, took = await _closed(one)
            assert code == 1008
            assert took < 1.0, f"closed after {took:.3f} s"
            assert (await _ask(two, "unsubscribe", f"account:{w.mine}"))["op"] == "unsubscribed"

            # Revoking the consent closes every socket opened under it.
            async with database.session() as s:
                revoked = await OAuthTokenRepository(s).revoke(now=w.clock.now(), consent_id=second.consent_id)
                await s.commit()
            message = TokensRevoked(
                token_ids=revoked, consent_id=second.consent_id, reason="consent_revoked", at=w.clock.now()
            )
            await publish_revocation(w.app.state.bus, message)
            code, took = await _closed(two)
            assert code == 1008
            assert took < 1.0, f"closed after {took:.3f} s"

        # A revoked token cannot open a socket again.
        with pytest.raises(websockets.InvalidStatus):
            async with _with_token(w, first) as ws:
                await asyncio.wait_for(ws.recv(), WAIT_S)


async def test_security27_floods_and_too_many_sockets_are_closed_with_1008(tmp_path: Path) -> None:
    changes = {"rate_limit_ws_messages": "5/minute", "rate_limit_ws_connections": 2}
    async with world(tmp_path, **changes) as w:
        async with _with_cookie(w) as ws:
            for _ in range(5):
                assert (await _ask(ws, "unsubscribe", f"account:{w.mine}"))["op"] == "unsubscribed"
            await ws.send(msgspec.json.encode({"op": "unsubscribe", "channel": f"account:{w.mine}"}).decode())
            code, _ = await _closed(ws)
            assert code == 1008

        g = await grant(w.app, email="alice@example.com", scopes=READS, account_ids=[w.mine])
        async with _with_token(w, g) as one, _with_token(w, g) as two:
            for ws in (one, two):
                assert (await _ask(ws, "subscribe", f"account:{w.mine}"))["op"] == "subscribed"
            async with _with_token(w, g) as third:
                code, _ = await _closed(third)
                assert code == 1008
