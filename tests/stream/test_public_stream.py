"""``/v1/stream`` on a real server (uvicorn on loopback) with a real WebSocket client.

Sessions and DPoP-bound tokens open it; subscriptions are checked per account and per scope; a
revocation closes the sockets of its tokens within a second (measured, with a bounded wait);
floods and too many connections are closed with 1008. Token rows are written to the store directly
(tests/api/resource_support.py), proofs are real ES256 JWS.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import websockets

from brokerlink.security.oauth.revocation import OAuthTokenRepository, TokensRevoked, publish_revocation
from brokerlink.store.db import Database
from brokerlink.stream.connections import StreamHub
from tests.api.resource_support import grant
from tests.stream.support import (
    READS,
    WAIT_S,
    ask,
    closed,
    publish,
    recv,
    send,
    subscribe,
    welcome,
    with_cookie,
    with_token,
    world,
)


async def test_security19_a_session_follows_its_own_accounts_only(tmp_path: Path) -> None:
    async with world(tmp_path) as w, with_cookie(w) as ws:
        hello = await welcome(ws)
        assert (hello["epoch"], hello["heartbeat_s"], hello["replay"]) == (w.hub.epoch, 15, 1000)
        subscribed, snapshot = await subscribe(ws, f"account:{w.mine}")
        assert (subscribed["channel"], subscribed["seq"], subscribed["resumed"]) == (f"account:{w.mine}", 0, False)
        assert snapshot is not None
        assert snapshot["data"] == {"account_id": w.mine, "open_orders": [], "positions": [], "balances": []}
        for channel in (f"account:{w.bobs}", "account:acc_missing", "orders:all", "account:", "alerts:x"):
            refused = await ask(ws, "subscribe", channel)
            assert (refused["op"], refused["status"], refused["code"]) == ("error", 404, "not_found"), channel
            assert refused["channel"] == channel
        await publish(w, w.bobs, "order_filled")  # Bob's: never reaches Alice
        await publish(w, w.mine, "order_filled")
        event = await recv(ws)
        assert (event["op"], event["channel"], event["seq"]) == ("event", f"account:{w.mine}", 1)
        assert (event["event"]["account_id"], event["event"]["type"]) == (w.mine, "order_filled")
        assert (await ask(ws, "unsubscribe", f"account:{w.mine}"))["op"] == "unsubscribed"
        # A page on another site cannot ride Alice's cookie (cross-site WebSocket hijacking).
        async with with_cookie(w, origin="https://evil.example") as hijack:
            code, _ = await closed(hijack)
            assert code == 1008


async def test_security23_a_token_follows_its_consents_accounts_with_its_scopes(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        balances = await grant(w.app, email="alice@example.com", scopes=["balances:read"], account_ids=[w.mine])
        async with with_token(w, balances) as ws:
            await welcome(ws)
            assert (await ask(ws, "subscribe", f"account:{w.other_of_mine}"))["status"] == 404  # outside the consent
            assert (await ask(ws, "subscribe", f"account:{w.bobs}"))["status"] == 404
            _, snapshot = await subscribe(ws, f"account:{w.mine}")
            assert snapshot is not None
            assert snapshot["data"] == {"account_id": w.mine, "balances": []}  # no orders, no positions
            await publish(w, w.mine, "order_filled")  # needs orders:read: not sent
            await publish(w, w.mine, "account_updated")
            event = await recv(ws)
            # The app's view of the account is numbered on its own: no gap where the order was.
            assert (event["event"]["type"], event["seq"]) == ("account_updated", 1)

        copy_only = await grant(w.app, email="alice@example.com", scopes=["copy:read"], account_ids=[w.mine])
        async with with_token(w, copy_only) as ws:
            await welcome(ws)
            refused = await ask(ws, "subscribe", f"account:{w.mine}")
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
        async with with_token(w, first) as one, with_token(w, second) as two:
            for ws in (one, two):
                await welcome(ws)
                await subscribe(ws, f"account:{w.mine}")
            assert len(hub) == 2

            # The revocation endpoint revokes one token: its socket closes, the other stays open.
            async with database.session() as s:
                revoked = await OAuthTokenRepository(s).revoke(now=w.clock.now(), token_ids=[first.token_id])
                await s.commit()
            await publish_revocation(
                w.app.state.bus, TokensRevoked(token_ids=revoked, reason="revocation_endpoint", at=w.clock.now())
            )
            code, took = await closed(one)
            assert code == 1008
            assert took < 1.0, f"closed after {took:.3f} s"
            assert (await ask(two, "unsubscribe", f"account:{w.mine}"))["op"] == "unsubscribed"

            # Revoking the consent closes every socket opened under it.
            async with database.session() as s:
                revoked = await OAuthTokenRepository(s).revoke(now=w.clock.now(), consent_id=second.consent_id)
                await s.commit()
            message = TokensRevoked(
                token_ids=revoked, consent_id=second.consent_id, reason="consent_revoked", at=w.clock.now()
            )
            await publish_revocation(w.app.state.bus, message)
            code, took = await closed(two)
            assert code == 1008
            assert took < 1.0, f"closed after {took:.3f} s"

        # A revoked token cannot open a socket again.
        with pytest.raises(websockets.InvalidStatus):
            async with with_token(w, first) as ws:
                await asyncio.wait_for(ws.recv(), WAIT_S)


async def test_security27_floods_and_too_many_sockets_are_closed_with_1008(tmp_path: Path) -> None:
    changes = {"rate_limit_ws_messages": "5/minute", "rate_limit_ws_connections": 2}
    async with world(tmp_path, **changes) as w:
        async with with_cookie(w) as ws:
            await welcome(ws)
            for _ in range(5):
                assert (await ask(ws, "unsubscribe", f"account:{w.mine}"))["op"] == "unsubscribed"
            await send(ws, "unsubscribe", f"account:{w.mine}")
            code, _ = await closed(ws)
            assert code == 1008

        g = await grant(w.app, email="alice@example.com", scopes=READS, account_ids=[w.mine])
        async with with_token(w, g) as one, with_token(w, g) as two:
            for ws in (one, two):
                await welcome(ws)
                await subscribe(ws, f"account:{w.mine}")
            async with with_token(w, g) as third:
                code, _ = await closed(third)
                assert code == 1008
