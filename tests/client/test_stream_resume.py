"""The client's stream state machine against a scripted peer (tests/client/peer.py): resume, replay
overlap, snapshots, gaps, heartbeats, closes and the DPoP handshake.

Every connection here is a real WebSocket on loopback; only the server's side is scripted, message by
message, so each case (a drop mid-stream, a new epoch, a refused resume...) happens exactly once.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from brokerlink.client import AsyncStream, DPoPAuth, DPoPKey, Error, Event, Gap, StreamClosed, StreamError
from brokerlink.client.dpop import access_token_hash
from brokerlink.client.oauth import Tokens
from brokerlink.stream import protocol
from tests.client.peer import WAIT_S, Conn, json_response, scripted_peer

ACCOUNT = "account:acc_1"
QUOTES = "quotes:BTC/USD"


def no_wait(_: int) -> float:
    return 0.0


async def take(stream: AsyncStream, count: int) -> list[Any]:
    """The next ``count`` items (bounded wait)."""
    items = []
    async with asyncio.timeout(WAIT_S):
        async for item in stream:
            items.append(item)
            if len(items) == count:
                break
    return items


def seqs(items: list[Any]) -> list[tuple[str, int]]:
    return [(type(i).__name__, i.seq) for i in items]


async def test_a_dropped_connection_resumes_from_the_last_seq_without_duplicates() -> None:
    asked: list[protocol.Subscribe] = []

    async def first(c: Conn) -> None:
        await c.welcome("E1")
        asked.append(await c.subscribe_request())
        await c.send(protocol.Subscribed(channel=ACCOUNT, seq=0))
        await c.events(ACCOUNT, 1, 2, 3)
        await asyncio.sleep(0.05)  # let the client read them before the cut
        await c.drop()

    async def second(c: Conn) -> None:
        await c.welcome("E1")
        asked.append(await c.subscribe_request())
        await c.send(protocol.Subscribed(channel=ACCOUNT, seq=5, resumed=True))
        await c.events(ACCOUNT, 2, 3, 4, 5)  # the replay overlaps what the client already has
        await c.events(ACCOUNT, 6)
        await c.hold()

    async with scripted_peer([first, second]) as peer, AsyncStream(peer.url, channels=[ACCOUNT], backoff=no_wait) as s:
        items = await take(s, 6)
        assert seqs(items) == [("Event", n) for n in range(1, 7)]
        assert s.connections == 2
        assert s.positions == {ACCOUNT: 6}
    assert (asked[0].after, asked[0].epoch) == (None, None)
    assert (asked[1].channel, asked[1].after, asked[1].epoch) == (ACCOUNT, 3, "E1")
    assert peer.failures == []


async def test_a_slow_consumer_close_1013_reconnects_and_resumes() -> None:
    async def first(c: Conn) -> None:
        await c.welcome("E1")
        await c.subscribe_request()
        await c.send(protocol.Subscribed(channel=ACCOUNT, seq=0))
        await c.events(ACCOUNT, 1)
        await c.ws.close(code=protocol.CLOSE_SLOW_CONSUMER, reason="slow consumer")

    async def second(c: Conn) -> None:
        await c.welcome("E1")
        request = await c.subscribe_request()
        assert request.after == 1
        await c.send(protocol.Subscribed(channel=ACCOUNT, seq=3, resumed=True))
        await c.events(ACCOUNT, 2, 3)
        await c.hold()

    async with scripted_peer([first, second]) as peer, AsyncStream(peer.url, channels=[ACCOUNT], backoff=no_wait) as s:
        assert seqs(await take(s, 3)) == [("Event", 1), ("Event", 2), ("Event", 3)]
    assert peer.failures == []


async def test_a_new_epoch_brings_a_snapshot_and_numbering_starts_again() -> None:
    async def first(c: Conn) -> None:
        await c.welcome("E1")
        await c.subscribe_request()
        await c.send(protocol.Subscribed(channel=ACCOUNT, seq=0))
        await c.events(ACCOUNT, 1, 2, 3, 4)
        await asyncio.sleep(0.05)
        await c.drop()

    async def second(c: Conn) -> None:  # a restarted server: its hub's epoch is new
        await c.welcome("E2")
        request = await c.subscribe_request()
        assert (request.after, request.epoch) == (4, "E1")
        await c.send(protocol.Subscribed(channel=ACCOUNT, seq=2, resumed=False))
        await c.send(protocol.Snapshot(channel=ACCOUNT, seq=2, data={"orders": []}))
        await c.events(ACCOUNT, 1, 2, 3, 4)  # 1 and 2 are covered by the snapshot
        await c.hold()

    async with scripted_peer([first, second]) as peer, AsyncStream(peer.url, channels=[ACCOUNT], backoff=no_wait) as s:
        items = await take(s, 7)
        assert seqs(items) == [
            ("Event", 1), ("Event", 2), ("Event", 3), ("Event", 4), ("Snapshot", 2), ("Event", 3), ("Event", 4)
        ]  # fmt: skip
        assert not any(isinstance(i, Gap) for i in items)
        assert s.epoch == "E2"
    assert peer.failures == []


async def test_a_resume_too_old_for_the_replay_buffer_gets_a_snapshot_not_a_gap() -> None:
    async def first(c: Conn) -> None:
        await c.welcome("E1")
        await c.subscribe_request()
        await c.send(protocol.Subscribed(channel=ACCOUNT, seq=0))
        await c.events(ACCOUNT, 1)
        await asyncio.sleep(0.05)
        await c.drop()

    async def second(c: Conn) -> None:
        await c.welcome("E1")
        await c.subscribe_request()
        await c.send(protocol.Subscribed(channel=ACCOUNT, seq=900, resumed=False))
        await c.send(protocol.Snapshot(channel=ACCOUNT, seq=900, data={"orders": [{"id": "ord_1"}]}))
        await c.events(ACCOUNT, 901)
        await c.hold()

    async with scripted_peer([first, second]) as peer, AsyncStream(peer.url, channels=[ACCOUNT], backoff=no_wait) as s:
        items = await take(s, 3)
        assert seqs(items) == [("Event", 1), ("Snapshot", 900), ("Event", 901)]
        assert items[1].data == {"orders": [{"id": "ord_1"}]}
    assert peer.failures == []


async def test_a_missing_seq_on_a_reliable_channel_is_reported_as_a_gap_but_not_on_market_data() -> None:
    async def only(c: Conn) -> None:
        await c.welcome("E1")
        for _ in range(2):
            request = await c.subscribe_request()
            await c.send(protocol.Subscribed(channel=request.channel, seq=0))
        await c.events(ACCOUNT, 1, 2, 4)
        await c.events(QUOTES, 1, 5)  # conflated: numbers may skip
        await c.events(ACCOUNT, 5)
        await c.hold()

    async with (
        scripted_peer([only]) as peer,
        AsyncStream(peer.url, channels=[ACCOUNT, QUOTES], backoff=no_wait) as s,
    ):
        items = await take(s, 7)
    gaps = [i for i in items if isinstance(i, Gap)]
    assert gaps == [Gap(channel=ACCOUNT, after=2, seq=4, epoch="E1")]
    assert [(i.channel, i.seq) for i in items if isinstance(i, Event)] == [
        (ACCOUNT, 1), (ACCOUNT, 2), (ACCOUNT, 4), (QUOTES, 1), (QUOTES, 5), (ACCOUNT, 5)
    ]  # fmt: skip
    assert items.index(gaps[0]) == items.index(next(i for i in items if isinstance(i, Event) and i.seq == 4)) - 1
    assert peer.failures == []


async def test_a_refused_resume_without_a_snapshot_is_a_gap() -> None:
    async def first(c: Conn) -> None:
        await c.welcome("E1")
        await c.subscribe_request()
        await c.send(protocol.Subscribed(channel=ACCOUNT, seq=0))
        await c.events(ACCOUNT, 1, 2)
        await asyncio.sleep(0.05)
        await c.drop()

    async def second(c: Conn) -> None:
        await c.welcome("E1")
        await c.subscribe_request()
        await c.send(protocol.Subscribed(channel=ACCOUNT, seq=7, resumed=False))
        await c.events(ACCOUNT, 8)
        await c.hold()

    async with scripted_peer([first, second]) as peer, AsyncStream(peer.url, channels=[ACCOUNT], backoff=no_wait) as s:
        items = await take(s, 4)
    assert items[2] == Gap(channel=ACCOUNT, after=2, seq=8, epoch="E1")
    assert seqs([items[0], items[1], items[3]]) == [("Event", 1), ("Event", 2), ("Event", 8)]
    assert peer.failures == []


async def test_the_client_sends_pings_at_the_advertised_interval() -> None:
    pinged = asyncio.Event()

    async def only(c: Conn) -> None:
        await c.welcome("E1", heartbeat_s=1)
        await c.subscribe_request()
        await c.send(protocol.Subscribed(channel=ACCOUNT, seq=0))
        message = await c.receive()  # within the bounded wait: the client's own heartbeat
        assert isinstance(message, protocol.Ping)
        await c.send(protocol.Pong(id=message.id))
        pinged.set()
        await c.events(ACCOUNT, 1)
        await c.hold()

    async with scripted_peer([only]) as peer, AsyncStream(peer.url, channels=[ACCOUNT], backoff=no_wait) as s:
        assert seqs(await take(s, 1)) == [("Event", 1)]
        assert pinged.is_set()
    assert peer.failures == []


async def test_a_policy_close_ends_the_stream_with_its_reason() -> None:
    async def only(c: Conn) -> None:
        await c.welcome("E1")
        await c.subscribe_request()
        await c.send(protocol.Subscribed(channel=ACCOUNT, seq=0))
        await c.events(ACCOUNT, 1)
        await c.ws.close(code=protocol.CLOSE_POLICY, reason="consent revoked")

    async with scripted_peer([only]) as peer, AsyncStream(peer.url, channels=[ACCOUNT], backoff=no_wait) as s:
        assert seqs(await take(s, 1)) == [("Event", 1)]
        with pytest.raises(StreamClosed) as closed:
            await take(s, 1)
        assert (closed.value.code, closed.value.reason) == (1008, "consent revoked")
        assert peer.connections == 1  # no reconnection


async def test_a_refused_subscription_is_an_error_item_and_is_not_resumed() -> None:
    async def only(c: Conn) -> None:
        await c.welcome("E1")
        for _ in range(2):
            request = await c.subscribe_request()
            if request.channel == ACCOUNT:
                await c.send(protocol.Subscribed(channel=ACCOUNT, seq=0))
            else:
                await c.send(protocol.Error(status=404, code="not_found", detail="no", channel=request.channel))
        await c.events(ACCOUNT, 1)
        await c.hold()

    async with (
        scripted_peer([only]) as peer,
        AsyncStream(peer.url, channels=[ACCOUNT, "account:acc_bob"], backoff=no_wait) as s,
    ):
        items = await take(s, 2)
        assert isinstance(items[0], Error)
        assert (items[0].code, items[0].channel) == ("not_found", "account:acc_bob")
        assert s.channels == [ACCOUNT]
    assert peer.failures == []


async def test_a_subscription_added_while_connected_is_sent_at_once() -> None:
    async def only(c: Conn) -> None:
        await c.welcome("E1")
        request = await c.subscribe_request()
        assert request.channel == ACCOUNT
        await c.send(protocol.Subscribed(channel=ACCOUNT, seq=0))
        await c.events(ACCOUNT, 1)
        later = await c.subscribe_request()
        await c.send(protocol.Subscribed(channel=later.channel, seq=10))
        await c.events(later.channel, 11)
        await c.hold()

    async with scripted_peer([only]) as peer, AsyncStream(peer.url, channels=[ACCOUNT], backoff=no_wait) as s:
        assert seqs(await take(s, 1)) == [("Event", 1)]
        await s.subscribe("copy:sub_1")
        [item] = await take(s, 1)
        assert (item.channel, item.seq) == ("copy:sub_1", 11)
    assert peer.failures == []


def _claims(proof: str, key: ECKey) -> dict[str, Any]:
    return dict(jwt.decode(proof, key).claims)


async def test_the_handshake_carries_a_dpop_proof_for_the_http_url_and_answers_a_nonce_challenge() -> None:
    dpop = DPoPKey()
    tokens = Tokens(access_token="at-123", token_type="DPoP", expires_in=300, obtained_at=dpop.clock())
    public = ECKey.import_key(dpop.key.as_dict(private=False))

    def refuse(request: Any, index: int) -> Any:
        if index == 0:
            body = {"status": 401, "code": "use_dpop_nonce", "detail": "a current server nonce is required"}
            challenge = 'DPoP algs="ES256", error="use_dpop_nonce"'
            return json_response(401, body, WWW_Authenticate=challenge, DPoP_Nonce="n-1")
        return None

    async def only(c: Conn) -> None:
        await c.welcome("E1")
        await c.subscribe_request()
        await c.send(protocol.Subscribed(channel=ACCOUNT, seq=0))
        await c.events(ACCOUNT, 1)
        await c.hold()

    async with scripted_peer([only], refuse=refuse) as peer:
        auth = DPoPAuth(tokens, dpop)
        async with AsyncStream(peer.url, auth=auth, channels=[ACCOUNT], backoff=no_wait) as s:
            assert seqs(await take(s, 1)) == [("Event", 1)]
    assert len(peer.handshakes) == 2
    for headers in peer.handshakes:
        assert headers["Authorization"] == "DPoP at-123"
    first, second = (_claims(h["DPoP"], public) for h in peer.handshakes)
    port = peer.url.split(":")[2].split("/")[0]
    assert first["htu"] == second["htu"] == f"http://127.0.0.1:{port}/v1/stream"
    assert first["htm"] == "GET"
    assert first["ath"] == access_token_hash("at-123")
    assert "nonce" not in first
    assert second["nonce"] == "n-1"
    assert first["jti"] != second["jti"]


async def test_a_handshake_refused_for_good_raises_and_does_not_retry() -> None:
    def refuse(request: Any, index: int) -> Any:
        return json_response(401, {"status": 401, "code": "not_authenticated", "detail": "no"})

    async with scripted_peer([], refuse=refuse) as peer:
        with pytest.raises(StreamError, match="not_authenticated"):
            async with AsyncStream(peer.url, channels=[ACCOUNT], backoff=no_wait) as s:
                await take(s, 1)
    assert len(peer.handshakes) == 1


async def test_an_unreachable_server_is_retried_with_backoff_then_given_up() -> None:
    waits: list[int] = []

    def backoff(attempt: int) -> float:
        waits.append(attempt)
        return 0.0

    async with scripted_peer([]) as peer:
        url = peer.url
    stream = AsyncStream(url, channels=[ACCOUNT], backoff=backoff, max_reconnects=3)
    with pytest.raises(StreamError, match="gave up"):
        await take(stream, 1)
    assert waits == [1, 2, 3]
    assert json.dumps(stream.positions) == json.dumps({ACCOUNT: None})
