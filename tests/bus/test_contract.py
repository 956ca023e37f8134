"""The event bus contract (``brokerlink.bus.base``), one suite run against every implementation.

Each test gets a fresh bus: the in-process one, and Redis Streams under a unique key prefix that is
deleted afterwards. A "restart" is what a new process would see: for Redis a new bus object on the
same prefix, for the in-process bus (whose state is the process) a new handle on the same bus.
Timing: tests sleep to let messages become claimable but never assert on elapsed time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest
from redis.asyncio import Redis

from brokerlink.bus.base import Consumer, EventBus, Message
from brokerlink.bus.memory import MemoryEventBus
from brokerlink.bus.redis import RedisEventBus
from brokerlink.kit.errors import Unavailable
from tests.backends import mark_backend

T = "orders"
G = "ledger"


class Backend:
    """Opens buses of one implementation and closes (and cleans up after) all of them."""

    def __init__(self) -> None:
        self.buses: list[EventBus] = []

    def _new(self, **options: Any) -> EventBus:
        raise NotImplementedError

    async def open(self, **options: Any) -> EventBus:
        bus = self._new(**options)
        self.buses.append(bus)
        return bus

    async def reopen(self, bus: EventBus) -> EventBus:
        """The bus a restarted process would get, configured like ``bus``."""
        return await self.open(partitions=bus.partitions, maxlen=bus.maxlen, claim_idle_ms=bus.claim_idle_ms)

    async def aclose(self) -> None:
        for bus in self.buses:
            await bus.close()


class MemoryBackend(Backend):
    def _new(self, **options: Any) -> EventBus:
        return MemoryEventBus(**options)

    async def reopen(self, bus: EventBus) -> EventBus:
        # Process-local state: the "restarted" consumer is a new handle on the same bus object.
        return bus


class RedisBackend(Backend):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.prefix = f"brokerlink-test-{uuid.uuid4().hex}"

    def _new(self, **options: Any) -> EventBus:
        return RedisEventBus(self.url, prefix=self.prefix, **options)

    async def aclose(self) -> None:
        await super().aclose()
        client = Redis.from_url(self.url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{self.prefix}:*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    # Only the redis branch asks for redis_url, so the memory run never skips for lack of a server.
    if request.param == "memory":
        mark_backend(request, "memory")
    chosen: Backend = (
        RedisBackend(request.getfixturevalue("redis_url")) if request.param == "redis" else MemoryBackend()
    )
    try:
        yield chosen
    finally:
        await chosen.aclose()


@pytest.fixture
async def bus(backend: Backend) -> EventBus:
    return await backend.open()


async def drain(consumer: Consumer, *, max_count: int = 100, ack: bool = True) -> list[Message]:
    """Everything ``consumer`` can read right now, batch by batch (acknowledged unless told not to)."""
    out: list[Message] = []
    while batch := await consumer.read(max_count=max_count):
        out += batch
        if ack:
            assert await consumer.ack(*batch) == len(batch)
    return out


def summary(messages: list[Message]) -> list[tuple[str, bytes, int]]:
    return [(m.id, m.payload, m.delivery_count) for m in messages]


async def test_round_trip_keeps_payload_bytes_and_metadata(bus: EventBus) -> None:
    payloads = {"acct-1": bytes(range(256)), "acct-2": b"", "kunde-ü/3": "€ 1.10".encode(), "acct-4": b"\x00" * 4096}
    ids = {key: await bus.publish(T, key, payload) for key, payload in payloads.items()}

    got = await drain(bus.consumer(T, G, "c1"))

    expected = {
        ids[key]: Message(
            id=ids[key],
            topic=T,
            key=key,
            partition=bus.partition_for(key),
            payload=payload,
            delivery_count=1,
            group=G,
        )
        for key, payload in payloads.items()
    }
    assert {m.id: m for m in got} == expected
    assert len(got) == len(expected)


async def test_partition_is_a_stable_hash_of_the_key(bus: EventBus) -> None:
    # crc32 values computed once, by hand: Python's salted hash() would not reproduce them.
    assert bus.partitions == 8
    assert [bus.partition_for(k) for k in ("a", "acct-1", "EUR/USD", "provider-42")] == [3, 5, 2, 4]
    await bus.publish(T, "acct-1", b"x")
    [message] = await bus.consumer(T, G, "c1").read()
    assert message.partition == 5


async def test_per_key_order_with_many_interleaved_keys(bus: EventBus) -> None:
    expected: defaultdict[str, list[bytes]] = defaultdict(list)
    for i in range(40):
        for k in range(25):
            key = f"acct-{k}"
            expected[key].append(f"{key}#{i}".encode())
            await bus.publish(T, key, expected[key][-1])

    got = await drain(bus.consumer(T, G, "c1"), max_count=37)

    by_key: defaultdict[str, list[bytes]] = defaultdict(list)
    for message in got:
        by_key[message.key].append(message.payload)
    assert by_key == expected
    assert len(got) == 1000
    assert {m.delivery_count for m in got} == {1}


async def test_partition_subsets_split_keys_and_keep_order(bus: EventBus) -> None:
    keys = [f"provider-{k}" for k in range(30)]
    sent: list[tuple[str, bytes]] = []
    for i in range(10):
        for key in keys:
            sent.append((key, f"{key}#{i}".encode()))
            await bus.publish(T, key, sent[-1][1])

    low = await drain(bus.consumer(T, G, "low", partitions=range(4)))
    high = await drain(bus.consumer(T, G, "high", partitions=[4, 5, 6, 7]))

    for got, owned in ((low, range(4)), (high, range(4, 8))):
        want = [(k, p) for k, p in sent if bus.partition_for(k) in owned]
        per_key = {k: [p for kk, p in want if kk == k] for k, _ in want}
        assert {k: [m.payload for m in got if m.key == k] for k in per_key} == per_key
        assert len(got) == len(want)


async def test_two_groups_each_receive_every_message(bus: EventBus) -> None:
    ids = [await bus.publish(T, f"acct-{i % 10}", f"m{i}".encode()) for i in range(50)]

    ledger = await drain(bus.consumer(T, "ledger", "c1"))
    engine = await drain(bus.consumer(T, "engine", "c1"))

    assert sorted(m.id for m in ledger) == sorted(ids)
    assert sorted(m.id for m in engine) == sorted(ids)
    assert {m.group for m in ledger} == {"ledger"}
    assert {m.group for m in engine} == {"engine"}


async def test_consumers_of_one_group_share_the_messages(bus: EventBus) -> None:
    ids = [await bus.publish(T, f"acct-{i % 7}", f"m{i}".encode()) for i in range(60)]
    first, second = bus.consumer(T, G, "c1"), bus.consumer(T, G, "c2")
    got: dict[str, list[Message]] = {"c1": [], "c2": []}
    while True:
        a = await first.read(max_count=7)
        b = await second.read(max_count=5)
        got["c1"] += a
        got["c2"] += b
        await bus.ack(*a, *b)
        if not a and not b:
            break

    all_ids = [m.id for m in got["c1"] + got["c2"]]
    assert sorted(all_ids) == sorted(ids)
    assert len(set(all_ids)) == len(all_ids)
    assert got["c1"]
    assert got["c2"]


async def test_ack_prevents_redelivery(backend: Backend, bus: EventBus) -> None:
    for i in range(5):
        await bus.publish(T, "acct-1", f"m{i}".encode())
    consumer = bus.consumer(T, G, "c1", claim_idle_ms=50)
    batch = await consumer.read(max_count=10)
    assert len(batch) == 5
    assert await consumer.ack(*batch) == 5
    assert await consumer.ack(*batch) == 0

    await asyncio.sleep(0.2)  # well past claim_idle_ms: acknowledged messages are never claimable
    assert await bus.consumer(T, G, "c2", claim_idle_ms=50).read() == []
    assert await consumer.read() == []
    restarted = await backend.reopen(bus)
    assert await restarted.consumer(T, G, "c1").read() == []


async def test_restart_redelivers_own_pending_messages_first_in_order(backend: Backend, bus: EventBus) -> None:
    ids = [await bus.publish(T, "acct-1", f"m{i}".encode()) for i in range(5)]
    worker = bus.consumer(T, G, "worker-1")
    first = await worker.read(max_count=10)
    assert summary(first) == [(ids[i], f"m{i}".encode(), 1) for i in range(5)]
    assert await worker.ack(first[0], first[2]) == 2
    # A live handle does not re-read its own pending messages (only a restart or a claim does).
    assert await worker.read() == []
    later = await bus.publish(T, "acct-1", b"m5")

    restarted = (await backend.reopen(bus)).consumer(T, G, "worker-1")
    again = await restarted.read(max_count=10)
    assert summary(again) == [(ids[1], b"m1", 2), (ids[3], b"m3", 2), (ids[4], b"m4", 2), (later, b"m5", 1)]
    assert await restarted.read() == []

    # Restart again, reading one at a time: pending first, in order, each delivered once more.
    third = (await backend.reopen(bus)).consumer(T, G, "worker-1")
    one_by_one = [await third.read(max_count=1) for _ in range(5)]
    assert [summary(batch) for batch in one_by_one] == [
        [(ids[1], b"m1", 3)],
        [(ids[3], b"m3", 3)],
        [(ids[4], b"m4", 3)],
        [(later, b"m5", 2)],
        [],
    ]
    assert await third.ack(*(m for batch in one_by_one for m in batch)) == 4
    assert await (await backend.reopen(bus)).consumer(T, G, "worker-1").read() == []


async def test_name_based_read_continues_on_the_same_bus_object(backend: Backend, bus: EventBus) -> None:
    ids = [await bus.publish(T, "acct-1", f"m{i}".encode()) for i in range(3)]
    assert [m.id for m in await bus.read(T, G, "c1", max_count=2)] == ids[:2]
    assert [m.id for m in await bus.read(T, G, "c1", max_count=2)] == ids[2:]
    assert await bus.read(T, G, "c1") == []
    if isinstance(bus, RedisEventBus):
        # A new bus object is a new process: its first read is a restart.
        restarted = await backend.reopen(bus)
        assert summary(await restarted.read(T, G, "c1")) == [(i, f"m{n}".encode(), 2) for n, i in enumerate(ids)]


async def test_idle_pending_messages_are_claimed_by_another_consumer(bus: EventBus) -> None:
    ids = [await bus.publish(T, "acct-1", f"m{i}".encode()) for i in range(3)]
    owner = bus.consumer(T, G, "owner")
    taken = await owner.read(max_count=10)
    assert [m.id for m in taken] == ids

    # Not idle for a minute yet: nothing to claim, and nothing new.
    assert await bus.consumer(T, G, "patient", claim_idle_ms=60_000).read() == []

    await asyncio.sleep(0.2)
    thief = bus.consumer(T, G, "thief", claim_idle_ms=50)
    claimed = await thief.read(max_count=10)
    assert summary(claimed) == [(ids[i], f"m{i}".encode(), 2) for i in range(3)]

    # Any consumer of the group may acknowledge, whoever holds the message now.
    assert await owner.ack(taken[0]) == 1
    assert await thief.ack(*claimed) == 2
    await asyncio.sleep(0.2)
    assert await thief.read() == []
    assert await bus.consumer(T, G, "owner").read() == []


async def test_claimed_messages_keep_counting_deliveries(bus: EventBus) -> None:
    message_id = await bus.publish(T, "acct-1", b"poison")
    counts = []
    consumer = bus.consumer(T, G, "c1", claim_idle_ms=50)
    for _ in range(3):
        batch = await consumer.read()
        counts += [(m.id, m.delivery_count) for m in batch]
        await asyncio.sleep(0.2)
    assert counts == [(message_id, 1), (message_id, 2), (message_id, 3)]


async def test_blocking_read_wakes_on_a_concurrent_publish(backend: Backend, bus: EventBus) -> None:
    consumer = bus.consumer(T, G, "c1")
    assert await consumer.read() == []
    reader = asyncio.create_task(consumer.read(max_count=10, block_ms=30_000))
    await asyncio.sleep(0.1)
    assert not reader.done()

    publisher = await backend.reopen(bus)  # for Redis another connection, as from another node
    message_id = await publisher.publish(T, "acct-1", b"wake up")

    # The bound only keeps a broken implementation from hanging the run; it is not a latency check.
    got = await asyncio.wait_for(reader, timeout=20)
    assert summary(got) == [(message_id, b"wake up", 1)]


async def test_blocking_read_returns_empty_after_timeout(bus: EventBus) -> None:
    await bus.publish(T, "acct-1", b"m0")
    consumer = bus.consumer(T, G, "c1")
    assert len(await consumer.read()) == 1
    assert await consumer.read(block_ms=50) == []
    assert await consumer.read(block_ms=1) == []


async def test_concurrent_publishers_and_consumers_lose_and_duplicate_nothing(backend: Backend, bus: EventBus) -> None:
    published_done = asyncio.Event()
    received: dict[str, list[Message]] = {"c1": [], "c2": []}

    async def publish(n: int) -> list[str]:
        return [await bus.publish(T, f"pub-{n}-{i % 3}", f"{n}:{i}".encode()) for i in range(200)]

    async def consume(name: str) -> None:
        consumer = bus.consumer(T, G, name)
        while True:
            finished = published_done.is_set()
            batch = await consumer.read(max_count=50, block_ms=100)
            received[name] += batch
            await consumer.ack(*batch)
            if finished and not batch:
                return

    consumers = [asyncio.create_task(consume(name)) for name in received]
    published = await asyncio.gather(*(publish(n) for n in range(5)))
    published_done.set()
    await asyncio.wait_for(asyncio.gather(*consumers), timeout=60)

    everything = received["c1"] + received["c2"]
    assert sorted(m.id for m in everything) == sorted(i for ids in published for i in ids)
    assert len({m.id for m in everything}) == len(everything) == 1000
    for messages in received.values():  # each consumer saw each key's share in publish order
        for key in {m.key for m in messages}:
            seq = [int(m.payload.split(b":")[1]) for m in messages if m.key == key]
            assert seq == sorted(seq)
    restarted = await backend.reopen(bus)
    assert await restarted.consumer(T, G, "c1").read() == []
    assert await restarted.consumer(T, G, "c2").read() == []


async def test_retention_trims_each_partition_to_about_maxlen(backend: Backend) -> None:
    bus = await backend.open(maxlen=50)
    payloads = [f"m{i}".encode() for i in range(1000)]
    for payload in payloads:
        await bus.publish(T, "acct-1", payload)
    await bus.publish(T, "acct-2", b"other partition")

    got = await drain(bus.consumer(T, G, "c1"))
    kept = [m.payload for m in got if m.key == "acct-1"]
    # Exactly maxlen in memory; Redis trims whole stream nodes (at most 100 entries each).
    assert 50 <= len(kept) <= 200
    assert kept == payloads[-len(kept) :]
    assert [m.payload for m in got if m.key == "acct-2"] == [b"other partition"]


async def test_trimmed_pending_messages_are_not_redelivered(backend: Backend) -> None:
    bus = await backend.open(maxlen=20)
    await bus.publish(T, "acct-1", b"old")
    [old] = await bus.consumer(T, G, "c1").read()
    payloads = [f"m{i}".encode() for i in range(500)]
    for payload in payloads:
        await bus.publish(T, "acct-1", payload)

    got = await drain((await backend.reopen(bus)).consumer(T, G, "c1"))
    assert old.id not in {m.id for m in got}
    assert [m.payload for m in got] == payloads[-len(got) :]
    assert 20 <= len(got) < 500
    assert {m.delivery_count for m in got} == {1}


async def test_start_latest_skips_history(bus: EventBus) -> None:
    for i in range(3):
        await bus.publish(T, "acct-1", f"old{i}".encode())
    late = bus.consumer(T, "late", "c1", start="latest")
    assert await late.read() == []
    new = [await bus.publish(T, "acct-1", f"new{i}".encode()) for i in range(2)]
    assert [m.id for m in await late.read()] == new

    early = await drain(bus.consumer(T, "early", "c1"))
    assert [m.payload for m in early] == [b"old0", b"old1", b"old2", b"new0", b"new1"]
    # start only matters when the group is created: an existing group keeps its position.
    await bus.publish(T, "acct-1", b"newer")
    again = await drain(bus.consumer(T, "early", "c2", start="latest"))
    assert [m.payload for m in again] == [b"newer"]


async def test_subscribe_yields_messages_until_closed(bus: EventBus) -> None:
    ids = [await bus.publish(T, "acct-1", f"m{i}".encode()) for i in range(3)]
    got: list[Message] = []
    async with aclosing(bus.subscribe(T, G, "c1", block_ms=50)) as stream:
        async for message in stream:
            got.append(message)
            await bus.ack(message)
            if len(got) == 3:
                break
    assert [m.id for m in got] == ids
    assert await bus.consumer(T, G, "c1").read() == []


async def test_closed_bus_refuses_work(backend: Backend) -> None:
    async with await backend.open() as bus:
        assert await bus.ping()
        await bus.publish(T, "acct-1", b"m0")
        consumer = bus.consumer(T, G, "c1")
    assert bus.closed
    assert not await bus.ping()
    with pytest.raises(Unavailable):
        await bus.publish(T, "acct-1", b"m1")
    with pytest.raises(Unavailable):
        await consumer.read()
    with pytest.raises(Unavailable):
        bus.consumer(T, G, "c2")
    await bus.close()  # idempotent


async def test_close_wakes_a_blocked_reader(backend: Backend) -> None:
    bus = await backend.open()
    consumer = bus.consumer(T, G, "c1")
    assert await consumer.read() == []
    reader = asyncio.create_task(consumer.read(block_ms=30_000))
    await asyncio.sleep(0.1)
    await bus.close()
    with pytest.raises(Unavailable):
        await asyncio.wait_for(reader, timeout=20)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda b: b.consumer("", G, "c1"), "topic"),
        (lambda b: b.consumer("a b", G, "c1"), "topic"),
        (lambda b: b.consumer(T, "", "c1"), "group"),
        (lambda b: b.consumer(T, G, "c/1"), "consumer"),
        (lambda b: b.consumer(T, G, "c1", partitions=[8]), "partitions"),
        (lambda b: b.consumer(T, G, "c1", partitions=[]), "partitions"),
        (lambda b: b.consumer(T, G, "c1", claim_idle_ms=0), "claim_idle_ms"),
    ],
)
async def test_invalid_consumer_arguments_are_refused(bus: EventBus, call: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call(bus)


async def test_invalid_read_arguments_are_refused(bus: EventBus) -> None:
    consumer = bus.consumer(T, G, "c1")
    with pytest.raises(ValueError, match="max_count"):
        await consumer.read(max_count=0)
    with pytest.raises(ValueError, match="block_ms"):
        await consumer.read(block_ms=-1)
    with pytest.raises(ValueError, match="topic"):
        await bus.publish("no spaces", "k", b"")
