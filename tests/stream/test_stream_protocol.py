"""The ``/v1/stream`` protocol on a real server with real sockets: sequence numbers and resume, snapshots,
slow consumers, heartbeats, malformed messages.

Account events go in the way production publishes them (the bus topic ``account``; the Redis bus and
PostgreSQL in the parametrized run); market updates through the hub's ``MarketSink`` side, from a
small in-test :class:`FakeMarket`. Waits are bounded; nothing asserts on wall-clock time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
import websockets

from brokerlink.kit.errors import NotFound
from brokerlink.stream.connections import StreamConnection
from tests.backends import mark_backend
from tests.store.conftest import _pg_database
from tests.stream.support import (
    WAIT_S,
    RawClient,
    World,
    ask,
    closed,
    publish,
    recv,
    send,
    subscribe,
    until,
    welcome,
    with_cookie,
    world,
)


class FakeMarket:
    """A MarketSource fed by hand: knows BTC/USD and ETH/USD, records want/unwant."""

    def __init__(self) -> None:
        self.wanted: list[str] = []
        self.unwanted: list[str] = []
        self.latest: dict[str, dict[str, Any]] = {}

    async def want(self, channel: str) -> None:
        if channel.partition(":")[2] not in ("BTC/USD", "ETH/USD"):
            raise NotFound("unknown symbol")
        self.wanted.append(channel)

    def unwant(self, channel: str) -> None:
        self.unwanted.append(channel)

    def snapshot(self, channel: str) -> dict[str, Any] | None:
        return self.latest.get(channel)


@pytest.fixture(params=["sqlite+memory", "postgresql+redis"])
async def backends(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, Any]]:
    """Settings for one store and bus: the app's SQLite file and the memory bus, or PostgreSQL and Redis."""
    if request.param == "sqlite+memory":
        mark_backend(request, "sqlite")
        yield {}
        return
    redis_url = str(request.getfixturevalue("redis_url"))
    async with _pg_database(str(request.getfixturevalue("postgres_url"))) as url:
        yield {"database_url": url, "bus_backend": "redis", "redis_url": redis_url}


async def _events(ws: Any, count: int) -> list[dict[str, Any]]:
    return [await recv(ws) for _ in range(count)]


def _connection(w: World) -> StreamConnection:
    """The only open connection of the hub."""
    (connection,) = w.hub._connections.values()
    return connection


async def test_resume_after_a_dropped_connection_loses_and_duplicates_nothing(
    tmp_path: Path, backends: dict[str, Any]
) -> None:
    async with world(tmp_path, stream_replay=100, **backends) as w:
        channel = f"account:{w.mine}"
        async with with_cookie(w) as ws:
            epoch = (await welcome(ws))["epoch"]
            await subscribe(ws, channel)
            for n in range(40):
                await publish(w, w.mine, "order_updated", n=n)
            first = await _events(ws, 25)  # the socket drops with 15 delivered but unread
        for n in range(40, 90):  # while it is away
            await publish(w, w.mine, "order_updated", n=n)
        await until(lambda: w.hub.log(f"{channel}|*") is not None and w.hub.log(f"{channel}|*").seq == 90, "published")
        async with with_cookie(w) as ws:
            assert (await welcome(ws))["epoch"] == epoch
            reply, snapshot = await subscribe(ws, channel, after=first[-1]["seq"], epoch=epoch)
            assert (reply["seq"], reply["resumed"], snapshot) == (25, True, None)
            for n in range(90, 100):
                await publish(w, w.mine, "order_updated", n=n)
            rest = await _events(ws, 75)
        received = first + rest
        assert [m["seq"] for m in received] == list(range(1, 101))
        assert [m["event"]["n"] for m in received] == list(range(100))

        # A gap older than the replay buffer (100 events) gets a snapshot, then live events after it.
        async with with_cookie(w) as ws:
            await welcome(ws)
            for n in range(100, 250):
                await publish(w, w.mine, "order_updated", n=n)
            await until(lambda: w.hub.log(f"{channel}|*").seq == 250, "published")
            reply, snapshot = await subscribe(ws, channel, after=100, epoch=epoch)
            assert (reply["seq"], reply["resumed"]) == (250, False)
            assert snapshot is not None
            assert snapshot["data"]["account_id"] == w.mine
            await publish(w, w.mine, "order_updated", n=250)
            live = await recv(ws)
            assert (live["seq"], live["event"]["n"]) == (251, 250)
            # Another epoch (a restarted server) also gets a snapshot, never a replay of other numbers.
            reply, snapshot = await subscribe(ws, channel, after=200, epoch="another-epoch")
            assert (reply["seq"], reply["resumed"]) == (251, False)
            assert snapshot is not None


async def test_a_channel_nobody_follows_keeps_recording_for_a_while(tmp_path: Path) -> None:
    async with world(tmp_path, stream_replay_keep_s=60) as w:
        channel = f"account:{w.mine}"
        async with with_cookie(w) as ws:
            epoch = (await welcome(ws))["epoch"]
            await subscribe(ws, channel)
        await until(lambda: len(w.hub) == 0, "disconnected")
        await publish(w, w.mine, "order_updated", n=0)
        await until(lambda: w.hub.log(f"{channel}|*").seq == 1, "recorded while nobody follows")
        w.clock.advance(timedelta(seconds=61))
        assert w.hub.sweep() == 1  # idle past replay_keep_s: dropped
        await publish(w, w.mine, "order_updated", n=1)  # not recorded
        async with with_cookie(w) as ws:
            await welcome(ws)
            # Its numbers go on past the last one: a resume from 1 cannot cross the unrecorded gap.
            reply, snapshot = await subscribe(ws, channel, after=1, epoch=epoch)
            assert (reply["seq"], reply["resumed"]) == (2, False)
            assert snapshot is not None


async def test_a_slow_consumer_does_not_hold_back_a_fast_one_and_is_closed_with_1013(tmp_path: Path) -> None:
    market = FakeMarket()
    async with world(tmp_path, stream_buffer=40) as w:
        w.hub.market = market
        account, quotes = f"account:{w.mine}", "quotes:BTC/USD"
        pad = "x" * 16_000

        async def round_trips(fast: Any, start: int, count: int) -> list[int]:
            """Publish one quote and one account event at a time, each only once the fast one got the last."""
            seen = []
            for n in range(start, start + count):
                w.hub.publish_market(quotes, {"type": "quote", "symbol": "BTC/USD", "n": n, "pad": pad})
                quote = await recv(fast)
                await publish(w, w.mine, "order_updated", n=n, pad=pad)
                event = await recv(fast)
                assert (quote["event"]["n"], event["event"]["n"]) == (n, n)
                seen += [quote["seq"], event["seq"]]
            return seen

        async with with_cookie(w) as fast:
            await welcome(fast)
            await subscribe(fast, account)
            assert (await ask(fast, "subscribe", quotes))["op"] == "subscribed"
            fast_connection = _connection(w)
            alone = await round_trips(fast, 0, 30)

            # A consumer that stops reading (after subscribing): its socket backs up, then its buffer here.
            slow = await RawClient.connect(w.host, w.cookie)
            slow.send({"op": "subscribe", "channel": account})
            slow.send({"op": "subscribe", "channel": quotes})
            await until(
                lambda: len(w.hub) == 2 and all(len(c.subscriptions) == 2 for c in w.hub._connections.values()),
                "subscribed",
            )
            try:
                slow_connection = next(c for c in w.hub._connections.values() if c is not fast_connection)
                with_slow = await round_trips(fast, 30, 30)
                assert fast_connection.conflated == 0  # it kept up: every quote went out on its own
                for n in range(60, 2000):  # bounded; stops once the slow one is closed
                    if slow_connection.closing:
                        break
                    w.hub.publish_market(quotes, {"type": "quote", "symbol": "BTC/USD", "n": n, "pad": pad})
                    await publish(w, w.mine, "order_updated", n=n, pad=pad)
                    if n % 20 == 0:
                        await asyncio.sleep(0.01)
                    assert fast_connection.reliable <= 40
                await until(lambda: slow_connection.closing, "the slow consumer is closed")
                assert slow_connection.close_code == 1013
                assert slow_connection.conflated > 0  # its quotes were conflated, never queued past one
                assert sum(1 for item in slow_connection.out if not isinstance(item, str)) <= 1
                # Its socket, once it reads again, ends with 1013 after what was sent.
                code, messages = await slow.close_code()
                assert code == 1013
                seqs = [m["seq"] for m in messages if m.get("channel") == account and m["op"] == "event"]
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # none lost before the close
            finally:
                slow.writer.close()
            # The fast one got every message, in order, with or without the slow one.
            assert alone == [s for n in range(1, 31) for s in (n, n)]
            assert with_slow == [s for n in range(31, 61) for s in (n, n)]


async def test_heartbeats_both_ways_and_a_silent_client_is_closed_with_1001(tmp_path: Path) -> None:
    async with world(tmp_path, stream_heartbeat_s=5) as w, with_cookie(w) as quiet, with_cookie(w) as chatty:
        for ws in (quiet, chatty):
            assert (await welcome(ws))["heartbeat_s"] == 5
        await send(chatty, "ping", id="p1")
        assert await recv(chatty) == {"op": "pong", "id": "p1"}
        w.clock.advance(timedelta(seconds=10))
        await send(chatty, "ping")
        assert await recv(chatty) == {"op": "pong", "id": None}
        w.clock.advance(timedelta(seconds=6))  # quiet: 16 s silent (> 3 x 5); chatty: 6 s
        w.hub.tick()
        beat = msgspec.json.decode(await asyncio.wait_for(chatty.recv(), WAIT_S))
        assert beat["op"] == "heartbeat"
        code, _ = await closed(quiet)
        assert (code, quiet.close_reason) == (1001, "heartbeat timeout")
        await send(chatty, "ping", id="still")
        assert await recv(chatty) == {"op": "pong", "id": "still"}


async def test_malformed_messages_get_errors_and_the_socket_stays_open(tmp_path: Path) -> None:
    async with world(tmp_path, stream_max_subscriptions=2) as w, with_cookie(w) as ws:
        await welcome(ws)
        for text in (
            "not json",
            "[]",
            '{"op": "subscribe"}',
            '{"op": "publish", "channel": "alerts"}',
            '{"op": "subscribe", "channel": "alerts", "extra": 1}',
            '{"op": "subscribe", "channel": "alerts", "after": "ten"}',
            '{"op": "ping", "id": "' + "x" * 2000 + '"}',
        ):
            await ws.send(text)
            error = await recv(ws)
            assert (error["op"], error["status"], error["code"]) == ("error", 400, "invalid_message"), text
        for channel in ("nope", "quotes:", "account:a b", "copy:" + "x" * 100, "ALERTS"):
            error = await ask(ws, "subscribe", channel)
            assert (error["status"], error["code"], error["channel"]) == (404, "not_found", channel)
        await subscribe(ws, f"account:{w.mine}")
        await subscribe(ws, "alerts")
        error = await ask(ws, "subscribe", f"account:{w.other_of_mine}")
        assert (error["status"], error["code"]) == (409, "too_many_subscriptions")
        await subscribe(ws, f"account:{w.mine}")  # the same channel again: starts over, not a third
        assert (await ask(ws, "unsubscribe", "never-followed"))["op"] == "unsubscribed"
        await send(ws, "ping", id="alive")
        assert await recv(ws) == {"op": "pong", "id": "alive"}


@contextlib.asynccontextmanager
async def _market_world(tmp_path: Path) -> AsyncIterator[tuple[World, FakeMarket]]:
    market = FakeMarket()
    async with world(tmp_path) as w:
        w.hub.market = market
        yield w, market


async def test_market_channels_ask_the_source_once_and_snapshot_its_state(tmp_path: Path) -> None:
    async with _market_world(tmp_path) as (w, market):
        market.latest["quotes:BTC/USD"] = {"type": "quote", "bid": "100.5", "ask": "100.6"}
        async with with_cookie(w) as one, with_cookie(w) as two:
            for ws in (one, two):
                await welcome(ws)
            reply, snapshot = await subscribe(one, "quotes:BTC/USD")
            assert reply["seq"] == 0
            assert snapshot is not None
            assert snapshot["data"]["bid"] == "100.5"
            error = await ask(one, "subscribe", "quotes:DOGE/XYZ")
            assert (error["status"], error["code"]) == (404, "not_found")
            w.hub.publish_market("quotes:BTC/USD", {"type": "quote", "bid": "101"})
            assert (await recv(one))["seq"] == 1
            reply, _ = await subscribe(two, "quotes:BTC/USD")
            assert reply["seq"] == 1
            assert market.wanted == ["quotes:BTC/USD"]  # the second subscriber did not ask again
            w.hub.publish_market("quotes:BTC/USD", {"type": "quote", "bid": "102"})
            assert [(await recv(ws))["seq"] for ws in (one, two)] == [2, 2]
            assert (await ask(one, "unsubscribe", "quotes:BTC/USD"))["op"] == "unsubscribed"
            assert market.unwanted == []
            assert (await ask(two, "unsubscribe", "quotes:BTC/USD"))["op"] == "unsubscribed"
            assert market.unwanted == ["quotes:BTC/USD"]  # the last one left
            w.hub.publish_market("quotes:BTC/USD", {"type": "quote", "bid": "103"})  # nobody: dropped
            await send(one, "ping", id="after")
            assert await recv(one) == {"op": "pong", "id": "after"}


async def test_without_a_market_source_market_channels_are_not_found(tmp_path: Path) -> None:
    async with world(tmp_path) as w, with_cookie(w) as ws:
        w.hub.market = None
        await welcome(ws)
        error = await ask(ws, "subscribe", "trades:BTC/USD")
        assert (error["status"], error["code"]) == (404, "not_found")


async def test_a_closed_socket_is_refused_at_the_handshake_without_credentials(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        with pytest.raises(websockets.InvalidStatus):
            async with websockets.connect(f"ws://{w.host}/v1/stream") as ws:
                await asyncio.wait_for(ws.recv(), WAIT_S)
