"""Replay stores: remember a one-time value (a DPoP ``jti``, a client assertion's ``jti``) for a while.

The one operation is :meth:`ReplayStore.first_use`: it records a value under a namespace for
``ttl`` and answers whether this was its first use within that time. Check and record are one
atomic step, so two requests racing with the same value cannot both win.

Keys are ``{prefix}:{namespace}:{sha256(value)}``. Hashing bounds the key length whatever a
client sends and keeps client-chosen bytes out of Redis key names; the namespace keeps DPoP proof
ids and client assertion ids from colliding.

Two implementations pass one contract suite (``tests/security/test_replay.py``):

- :class:`MemoryReplayStore`, for one process (tests, the demo). Bounded: when full after dropping
  expired entries it *fails closed* (``Unavailable``) rather than evicting a live entry, because
  evicting is exactly what an attacker flooding the store would want: the evicted value could be
  replayed.
- :class:`RedisReplayStore`, for several processes sharing Redis: ``SET key 1 NX PX ttl``. Expiry
  runs on Redis's clock, so the ``now`` argument is only used by the memory store.

Connection trouble raises :class:`~brokerlink.kit.errors.Unavailable`: a store that cannot answer
must refuse (a 503), never wave the request through.
"""

from __future__ import annotations

import hashlib
import heapq
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Protocol, runtime_checkable

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from brokerlink.kit.errors import Unavailable

DEFAULT_MAX_ENTRIES = 100_000
_NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


@lru_cache(maxsize=256)  # pure; callers use a handful of (namespace, ttl) pairs, on every request
def _check(namespace: str, ttl: timedelta) -> int:
    """Validate the arguments every implementation takes; the ttl in whole milliseconds (at least 1)."""
    if not _NAMESPACE.match(namespace):
        raise ValueError(f"invalid replay namespace {namespace!r}")
    ttl_ms = ttl // timedelta(milliseconds=1)
    if ttl_ms < 1:
        raise ValueError("ttl must be at least one millisecond")
    return ttl_ms


def replay_key(prefix: str, namespace: str, value: str) -> str:
    """The storage key of ``value``: namespaced, and hashed so its length and bytes are ours."""
    digest = hashlib.sha256(value.encode()).hexdigest()
    return f"{prefix}:{namespace}:{digest}"


@runtime_checkable
class ReplayStore(Protocol):
    """Remembers one-time values for a while. Implementations: memory and Redis."""

    async def first_use(self, namespace: str, value: str, *, ttl: timedelta, now: datetime) -> bool:
        """Record ``value`` for ``ttl``; True if it was not already recorded (and unexpired), else False.

        Atomic: of several concurrent calls with the same value, exactly one gets True.
        """
        ...


class MemoryReplayStore:
    """A replay store in this process: a dict of expiries plus a heap to drop them in order.

    ``now`` drives expiry, so tests move time by hand. At most ``max_entries`` live values; past
    that, :meth:`first_use` raises ``Unavailable`` (fail closed, see the module docstring).
    """

    def __init__(self, *, prefix: str = "brokerlink", max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self.prefix = prefix
        self.max_entries = max_entries
        self._expiry: dict[str, datetime] = {}
        self._heap: list[tuple[datetime, str]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    def _purge(self, now: datetime) -> None:
        while self._heap and self._heap[0][0] <= now:
            expires, key = heapq.heappop(self._heap)
            # A key re-recorded after expiring has a newer heap entry; only drop the stale pairing.
            if self._expiry.get(key) == expires:
                del self._expiry[key]

    async def first_use(self, namespace: str, value: str, *, ttl: timedelta, now: datetime) -> bool:
        """See :meth:`ReplayStore.first_use`. No ``await`` inside, so it is atomic on the event loop."""
        _check(namespace, ttl)
        key = replay_key(self.prefix, namespace, value)
        self._purge(now)
        if key in self._expiry:
            return False
        if len(self._expiry) >= self.max_entries:
            raise Unavailable("replay store is full")
        expires = now + ttl
        self._expiry[key] = expires
        heapq.heappush(self._heap, (expires, key))
        return True


@contextmanager
def _unavailable() -> Iterator[None]:
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise Unavailable("Redis is not available for the replay store") from exc


class RedisReplayStore:
    """A replay store shared by every process using the same Redis (``SET key 1 NX PX ttl``).

    Pass ``url`` (the store owns and closes its client) or an existing ``client`` (left open by
    :meth:`close`). ``prefix`` namespaces every key.
    """

    def __init__(self, url: str | None = None, *, client: Redis | None = None, prefix: str = "brokerlink") -> None:
        if not prefix:
            raise ValueError("prefix must not be empty")
        if client is not None and url is not None:
            raise ValueError("RedisReplayStore takes a url or a client, not both")
        if client is None:
            if not url:
                raise ValueError("RedisReplayStore needs a Redis url or client")
            client = Redis.from_url(url)
            self._owns_client = True
        else:
            self._owns_client = False
        self.client = client
        self.prefix = prefix

    async def first_use(self, namespace: str, value: str, *, ttl: timedelta, now: datetime) -> bool:  # noqa: ARG002
        """See :meth:`ReplayStore.first_use`; ``now`` is unused (Redis expires keys on its own clock)."""
        ttl_ms = _check(namespace, ttl)
        with _unavailable():
            created = await self.client.set(replay_key(self.prefix, namespace, value), b"1", nx=True, px=ttl_ms)
        return bool(created)

    async def close(self) -> None:
        """Close the client if this store created it."""
        if self._owns_client:
            await self.client.aclose()

    async def __aenter__(self) -> RedisReplayStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
