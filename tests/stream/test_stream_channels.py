"""``copy:`` and ``alerts`` on a real server: copy events come from the ``copy_events`` table (the
stream's poller), alerts from copy events, connection changes and the ``alerts`` bus topic; every
subscription is authorized per object and per consent scope (SECURITY.md 19, 23)."""

from __future__ import annotations

from pathlib import Path

import msgspec
from sqlalchemy import select

from brokerlink.bus.base import EventBus
from brokerlink.domain.copy import CopyEvent, CopyEventKind
from brokerlink.domain.enums import Role
from brokerlink.engine.alerts.events import ALERTS_TOPIC
from brokerlink.kit.ids import new_id
from brokerlink.store.db import Database
from brokerlink.store.models import UserRow
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.copy_events import CopyEventRepository
from brokerlink.store.repositories.strategies import StrategyRepository
from brokerlink.store.repositories.subscriptions import SubscriptionRepository
from brokerlink.store.repositories.users import UserRepository
from tests.api.resource_support import grant
from tests.store.copy_factories import strategy, subscription
from tests.stream.support import World, ask, publish, recv, subscribe, welcome, with_cookie, with_token, world


async def _subscription(w: World) -> str:
    """Alice's account ``mine`` follows a strategy on Bob's account; the subscription's id."""
    database: Database = w.app.state.db
    async with database.session() as s:
        accounts = AccountRepository(s)
        bobs, mine = await accounts.get_by_id(w.bobs), await accounts.get_by_id(w.mine)
        assert bobs is not None
        assert mine is not None
        stg = strategy(bobs)
        await StrategyRepository(s).add(stg)
        sub = subscription(stg, mine)
        await SubscriptionRepository(s).add(sub)
        await s.commit()
    return sub.id


async def _copy_event(w: World, subscription_id: str, kind: CopyEventKind, reason: str | None = None) -> str:
    database: Database = w.app.state.db
    event = CopyEvent(
        id=new_id("cpe"), subscription_id=subscription_id, kind=kind, reason=reason, created_at=w.clock.now()
    )
    async with database.session() as s:
        await CopyEventRepository(s).add(event)
        await s.commit()
    return event.id


async def test_security19_copy_channels_carry_the_followers_copy_events_only(tmp_path: Path) -> None:
    async with world(tmp_path, stream_copy_poll_s=0.02) as w:
        sub = await _subscription(w)
        before = await _copy_event(w, sub, CopyEventKind.SUBSCRIBED)
        async with with_cookie(w) as alice, with_cookie(w, w.bob_cookie) as bob:
            await welcome(alice)
            await welcome(bob)
            # Bob is the provider, not the follower: refused like a missing subscription.
            for channel in (f"copy:{sub}", "copy:sub_missing"):
                refused = await ask(bob, "subscribe", channel)
                assert (refused["status"], refused["code"]) == (404, "not_found"), channel
            _, snapshot = await subscribe(alice, f"copy:{sub}")
            assert snapshot is not None
            assert snapshot["data"]["subscription"]["status"] == "active"
            assert [e["id"] for e in snapshot["data"]["events"]] == [before]
            copied = await _copy_event(w, sub, CopyEventKind.COPIED)
            skipped = await _copy_event(w, sub, CopyEventKind.SKIPPED, "below_min_qty")
            received = [await recv(alice)]
            while received[-1]["event"]["id"] != skipped:
                received.append(await recv(alice))
            # `before` may come again after the snapshot when the poller publishes it only after the
            # subscription (ADR 0030: events after the snapshot's seq are sent even if it shows them).
            fresh = [e for e in received if e["event"]["id"] != before]
            assert [e["event"]["id"] for e in fresh] == [copied, skipped]
            assert [e["seq"] for e in received] == list(range(1, len(received) + 1))
            assert (fresh[1]["event"]["type"], fresh[1]["event"]["reason"]) == ("skipped", "below_min_qty")

        # Apps: copy:read and the follower account inside the consent.
        outside = await grant(w.app, email="alice@example.com", scopes=["copy:read"], account_ids=[w.other_of_mine])
        no_scope = await grant(w.app, email="alice@example.com", scopes=["accounts:read"], account_ids=[w.mine])
        inside = await grant(w.app, email="alice@example.com", scopes=["copy:read"], account_ids=[w.mine])
        for g, status in ((outside, 404), (no_scope, 403)):
            async with with_token(w, g) as ws:
                await welcome(ws)
                assert (await ask(ws, "subscribe", f"copy:{sub}"))["status"] == status
        async with with_token(w, inside) as ws:
            await welcome(ws)
            reply, _ = await subscribe(ws, f"copy:{sub}")
            assert reply["seq"] == received[-1]["seq"]


async def test_security23_alerts_are_the_users_own_and_operational_ones_reach_admins(tmp_path: Path) -> None:
    async with world(tmp_path, stream_copy_poll_s=0.02) as w:
        sub = await _subscription(w)
        database: Database = w.app.state.db
        async with database.session() as s:
            bob = (await s.execute(select(UserRow).where(UserRow.email == "bob@example.com"))).scalar_one()
            assert await UserRepository(s).set_role(bob.id, Role.ADMIN, now=w.clock.now())
            await s.commit()
        narrow = await grant(w.app, email="alice@example.com", scopes=["accounts:read"], account_ids=[w.other_of_mine])
        no_scope = await grant(w.app, email="alice@example.com", scopes=["balances:read"], account_ids=[w.mine])
        async with with_token(w, no_scope) as ws:
            await welcome(ws)
            refused = await ask(ws, "subscribe", "alerts")
            assert (refused["status"], refused["code"]) == (403, "insufficient_scope")
        async with with_cookie(w) as alice, with_cookie(w, w.bob_cookie) as admin, with_token(w, narrow) as app:
            for ws in (alice, admin, app):
                await welcome(ws)
                _, snapshot = await subscribe(ws, "alerts")
                assert snapshot is not None
            # A guard trip on Alice's subscription: hers only (the app's consent lacks copy:read).
            tripped = await _copy_event(w, sub, CopyEventKind.GUARD_TRIPPED, "daily_loss")
            await _copy_event(w, sub, CopyEventKind.COPIED)  # not an alert
            alert = await recv(alice)
            assert (alert["seq"], alert["event"]["id"], alert["event"]["type"]) == (1, tripped, "guard_tripped")
            # Connection changes: the account owner's; the app sees only its consent's account.
            await publish(w, w.mine, "connection_changed", state="disconnected")
            await publish(w, w.other_of_mine, "connection_changed", state="revoked")
            await publish(w, w.mine, "connection_changed", state="connected")  # not an alert
            # (the bus orders events per account, not across accounts)
            got = sorted([(await recv(alice))["event"]["account_id"] for _ in range(2)])
            assert got == sorted([w.mine, w.other_of_mine])
            seen = await recv(app)
            assert (seen["seq"], seen["event"]["account_id"]) == (1, w.other_of_mine)
            # An operational alert: the admin's, nobody else's.
            bus: EventBus = w.app.state.bus
            await bus.publish(ALERTS_TOPIC, "x", msgspec.json.encode({"id": "aev_1", "type": "alert.opened"}))
            ops = await recv(admin)
            assert (ops["seq"], ops["event"]["type"]) == (1, "alert.opened")
            for ws in (alice, app):
                await ws.send('{"op": "ping", "id": "last"}')
                assert await recv(ws) == {"op": "pong", "id": "last"}  # nothing else came first
