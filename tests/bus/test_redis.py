"""What only the Redis bus promises beyond the contract: key namespacing, client ownership, errors."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from brokerlink.bus.redis import RedisConsumer, RedisEventBus
from brokerlink.kit.errors import Unavailable


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def prefix(client: Redis) -> AsyncIterator[str]:
    prefix = f"brokerlink-test-{uuid.uuid4().hex}"
    yield prefix
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
    if keys:
        await client.delete(*keys)


@pytest.mark.redis
async def test_keys_live_under_the_prefix_one_stream_per_partition(client: Redis, prefix: str) -> None:
    async with RedisEventBus(client=client, prefix=prefix, partitions=4) as bus:
        await bus.publish("orders", "acct-1", b"m0")
        await bus.consumer("orders", "g", "c1").read()
    keys = sorted([key.decode() async for key in client.scan_iter(match=f"{prefix}:*")])
    assert keys == [f"{prefix}:orders:{p}" for p in range(4)]
    assert await client.type(keys[0]) == b"stream"
    # A bus handed a client leaves it open for its owner.
    assert await client.ping()


@pytest.mark.redis
async def test_two_prefixes_do_not_see_each_other(redis_url: str, prefix: str, client: Redis) -> None:
    other = f"{prefix}:nested"  # still under the fixture's prefix, so it is cleaned up too
    async with RedisEventBus(redis_url, prefix=prefix) as a, RedisEventBus(redis_url, prefix=other) as b:
        await a.publish("orders", "acct-1", b"from a")
        assert await b.consumer("orders", "g", "c1").read() == []
        assert [m.payload for m in await a.consumer("orders", "g", "c1").read()] == [b"from a"]


async def test_a_decoding_client_is_refused() -> None:
    client = Redis.from_url("redis://127.0.0.1:1/0", decode_responses=True)
    try:
        with pytest.raises(ValueError, match="decode_responses"):
            RedisEventBus(client=client)
        with pytest.raises(ValueError, match="not both"):
            RedisEventBus("redis://127.0.0.1:1/0", client=client)
        with pytest.raises(ValueError, match="url or client"):
            RedisEventBus()
    finally:
        await client.aclose()


async def test_an_unreachable_server_is_unavailable() -> None:
    async with RedisEventBus("redis://127.0.0.1:1/0") as bus:
        assert not await bus.ping()
        with pytest.raises(Unavailable):
            await bus.publish("orders", "acct-1", b"m0")
        with pytest.raises(Unavailable):
            await bus.consumer("orders", "g", "c1").read()


@pytest.mark.redis
async def test_blocking_longer_than_the_socket_timeout_is_not_an_error(redis_url: str, prefix: str) -> None:
    # redis-py abandons a reply after socket_timeout; the bus must wait in shorter slices.
    client = Redis.from_url(redis_url, socket_timeout=1)
    async with RedisEventBus(client=client, prefix=prefix) as bus:
        consumer = bus.consumer("orders", "g", "c1")
        assert await consumer.read(block_ms=2500) == []
        reader = asyncio.create_task(consumer.read(block_ms=30_000))
        await asyncio.sleep(1.5)
        message_id = await bus.publish("orders", "acct-1", b"late")
        assert [m.id for m in await asyncio.wait_for(reader, timeout=20)] == [message_id]
    await client.aclose()


@pytest.mark.redis
async def test_a_group_whose_keys_were_deleted_is_recreated(redis_url: str, prefix: str, client: Redis) -> None:
    async with RedisEventBus(redis_url, prefix=prefix, claim_idle_ms=50) as bus:
        live = bus.consumer("orders", "g", "c1")
        await bus.publish("orders", "acct-1", b"m0")
        assert len(await live.read()) == 1
        await client.delete(*[key async for key in client.scan_iter(match=f"{prefix}:*")])

        first = await bus.publish("orders", "acct-1", b"m1")
        assert [m.id for m in await live.read()] == [first]  # plain XREADGROUP hit NOGROUP
        await client.delete(*[key async for key in client.scan_iter(match=f"{prefix}:*")])

        second = await bus.publish("orders", "acct-1", b"m2")
        assert [m.id for m in await bus.consumer("orders", "g", "c1").read()] == [second]  # history MULTI did
        await client.delete(*[key async for key in client.scan_iter(match=f"{prefix}:*")])

        third = await bus.publish("orders", "acct-1", b"m3")
        fresh = bus.consumer("orders", "g", "c2")
        assert isinstance(fresh, RedisConsumer)
        fresh._history.clear()  # skip the history step so that the claim script meets NOGROUP first
        assert [m.id for m in await fresh.read()] == [third]
