"""Replay stores (``brokerlink.security.replay``): one contract suite for memory and Redis, then what each adds.

The stores back DPoP ``jti`` replay detection (SECURITY.md 14). Time is injected (``now``) for the
memory store; Redis expires keys on its own clock, so its expiry is checked through ``PTTL``
rather than by waiting.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from brokerlink.kit.errors import Unavailable
from brokerlink.security.replay import MemoryReplayStore, RedisReplayStore, ReplayStore, replay_key
from tests.backends import mark_backend

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
TTL = timedelta(seconds=66)


async def _delete_prefix(url: str, prefix: str) -> None:
    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    prefix = f"brokerlink-test-{uuid.uuid4().hex}"
    yield prefix
    await _delete_prefix(redis_url, prefix)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[ReplayStore]:
    # Only the redis branch asks for redis_url, so the memory run never skips for lack of a server.
    if request.param == "memory":
        mark_backend(request, "memory")
        yield MemoryReplayStore()
        return
    url: str = request.getfixturevalue("redis_url")
    prefix = f"brokerlink-test-{uuid.uuid4().hex}"
    redis_store = RedisReplayStore(url, prefix=prefix)
    try:
        yield redis_store
    finally:
        await redis_store.close()
        await _delete_prefix(url, prefix)


# --- the contract ----------------------------------------------------------------------------


async def test_replay_store_is_a_replay_store(store: ReplayStore) -> None:
    assert isinstance(store, ReplayStore)


async def test_replay_first_use_wins_and_a_repeat_is_refused(store: ReplayStore) -> None:
    """SECURITY 14 (replayed jti): the second use of a value within its ttl is reported."""
    assert await store.first_use("dpop-jti", "jkt:jti-1", ttl=TTL, now=NOW) is True
    assert await store.first_use("dpop-jti", "jkt:jti-1", ttl=TTL, now=NOW + timedelta(seconds=1)) is False
    assert await store.first_use("dpop-jti", "jkt:jti-2", ttl=TTL, now=NOW) is True


async def test_replay_namespaces_are_separate(store: ReplayStore) -> None:
    assert await store.first_use("dpop-jti", "same", ttl=TTL, now=NOW) is True
    assert await store.first_use("client-assertion-jti", "same", ttl=TTL, now=NOW) is True
    assert await store.first_use("client-assertion-jti", "same", ttl=TTL, now=NOW) is False


async def test_replay_concurrent_uses_of_one_value_have_exactly_one_winner(store: ReplayStore) -> None:
    results = await asyncio.gather(*(store.first_use("dpop-jti", "raced", ttl=TTL, now=NOW) for _ in range(25)))
    assert sorted(results) == [False] * 24 + [True]


async def test_replay_values_of_any_size_and_bytes_are_accepted(store: ReplayStore) -> None:
    for value in ["", "ü€\x00:*?[]", "x" * 10_000]:
        assert await store.first_use("dpop-jti", value, ttl=TTL, now=NOW) is True
        assert await store.first_use("dpop-jti", value, ttl=TTL, now=NOW) is False


@pytest.mark.parametrize("namespace", ["", "Upper", "has space", "a:b", "x" * 65])
async def test_replay_bad_namespace_is_refused(store: ReplayStore, namespace: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        await store.first_use(namespace, "v", ttl=TTL, now=NOW)


async def test_replay_ttl_under_a_millisecond_is_refused(store: ReplayStore) -> None:
    with pytest.raises(ValueError, match="ttl"):
        await store.first_use("dpop-jti", "v", ttl=timedelta(microseconds=999), now=NOW)


# --- memory ----------------------------------------------------------------------------------


async def test_memory_replay_forgets_a_value_once_its_ttl_has_passed() -> None:
    store = MemoryReplayStore()
    assert await store.first_use("dpop-jti", "v", ttl=TTL, now=NOW)
    assert not await store.first_use("dpop-jti", "v", ttl=TTL, now=NOW + TTL - timedelta(microseconds=1))
    assert await store.first_use("dpop-jti", "v", ttl=TTL, now=NOW + TTL)
    assert len(store) == 1


async def test_memory_replay_a_value_recorded_again_keeps_its_new_expiry() -> None:
    # The first expiry's heap entry must not drop the second recording.
    store = MemoryReplayStore()
    assert await store.first_use("dpop-jti", "v", ttl=timedelta(seconds=10), now=NOW)
    assert await store.first_use("dpop-jti", "v", ttl=timedelta(seconds=100), now=NOW + timedelta(seconds=11))
    assert not await store.first_use("dpop-jti", "v", ttl=TTL, now=NOW + timedelta(seconds=50))


async def test_memory_replay_is_bounded_and_fails_closed_when_full() -> None:
    """A full store refuses (503) instead of evicting live values, which would make them replayable."""
    store = MemoryReplayStore(max_entries=3)
    for value in ["a", "b", "c"]:
        assert await store.first_use("dpop-jti", value, ttl=TTL, now=NOW)
    with pytest.raises(Unavailable, match="full"):
        await store.first_use("dpop-jti", "d", ttl=TTL, now=NOW)
    # The live values are all still remembered...
    for value in ["a", "b", "c"]:
        assert not await store.first_use("dpop-jti", value, ttl=TTL, now=NOW)
    # ...and room comes back as they expire.
    assert await store.first_use("dpop-jti", "d", ttl=TTL, now=NOW + TTL)
    assert len(store) == 1


def test_memory_replay_needs_a_positive_size() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryReplayStore(max_entries=0)


async def test_memory_replay_keys_are_namespaced_and_hashed() -> None:
    assert replay_key("brokerlink", "dpop-jti", "jkt:abc") == (
        "brokerlink:dpop-jti:" + hashlib.sha256(b"jkt:abc").hexdigest()
    )


# --- Redis -----------------------------------------------------------------------------------


@pytest.mark.redis
async def test_redis_replay_keys_are_namespaced_hashed_and_expire(redis_url: str, redis_prefix: str) -> None:
    client = Redis.from_url(redis_url)
    try:
        store = RedisReplayStore(client=client, prefix=redis_prefix)
        assert await store.first_use("dpop-jti", "jkt:secret-jti", ttl=TTL, now=NOW)
        keys = [key.decode() async for key in client.scan_iter(match=f"{redis_prefix}:*")]
        assert keys == [f"{redis_prefix}:dpop-jti:{hashlib.sha256(b'jkt:secret-jti').hexdigest()}"]
        assert "secret-jti" not in keys[0]
        ttl_ms = await client.pttl(keys[0])
        assert 0 < ttl_ms <= 66_000
        await store.close()
        # A store handed a client leaves it open for its owner.
        assert await client.ping()
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_redis_replay_is_shared_by_two_stores_on_one_redis(redis_url: str, redis_prefix: str) -> None:
    """SECURITY 14 (replayed jti) across processes: what one server saw, another refuses."""
    async with (
        RedisReplayStore(redis_url, prefix=redis_prefix) as a,
        RedisReplayStore(redis_url, prefix=redis_prefix) as b,
    ):
        assert await a.first_use("dpop-jti", "jkt:jti", ttl=TTL, now=NOW)
        assert not await b.first_use("dpop-jti", "jkt:jti", ttl=TTL, now=NOW)
        results = await asyncio.gather(
            *(s.first_use("dpop-jti", "raced", ttl=TTL, now=NOW) for s in (a, b) for _ in range(10))
        )
        assert sorted(results) == [False] * 19 + [True]


async def test_redis_replay_unreachable_server_is_unavailable() -> None:
    async with RedisReplayStore("redis://127.0.0.1:1/0") as store:
        with pytest.raises(Unavailable):
            await store.first_use("dpop-jti", "v", ttl=TTL, now=NOW)


async def test_redis_replay_constructor_arguments() -> None:
    client = Redis.from_url("redis://127.0.0.1:1/0")
    try:
        with pytest.raises(ValueError, match="not both"):
            RedisReplayStore("redis://127.0.0.1:1/0", client=client)
        with pytest.raises(ValueError, match="url or client"):
            RedisReplayStore()
        with pytest.raises(ValueError, match="prefix"):
            RedisReplayStore(client=client, prefix="")
    finally:
        await client.aclose()
