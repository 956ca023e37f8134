"""The event bus contract, shared by every implementation (in-process and Redis Streams).

Topics and partitions
    ``publish(topic, key, payload)`` appends ``payload`` (opaque bytes) to one of the topic's
    ``partitions`` (fixed per bus, default 8). The partition is ``zlib.crc32(key) % partitions``:
    a stable hash, identical in every process and on every node (Python's ``hash()`` is salted per
    process and would scatter one key over several partitions across a restart). ``publish``
    returns the message id, an opaque string unique within the topic.

Ordering
    Messages with the same key land in the same partition, in publish order. A consumer reading
    a partition sees that key's messages in publish order on first delivery. Redelivered messages
    (below) may arrive after newer ones. Consumers of one group share the work message by message,
    so if a key must be processed strictly one message at a time across several consumers, give
    each consumer its own set of partitions (``consumer(..., partitions=...)``), e.g. under a lease.

Consumer groups
    A group is a named cursor over a topic: each group receives every message once on first
    delivery, independently of other groups. Groups are created lazily by their first read and
    start at ``start="earliest"`` (the oldest retained message) or ``start="latest"`` (only
    messages published afterwards); ``start`` is ignored once the group exists.

At-least-once delivery
    A delivered message stays *pending* for its group until ``ack``-ed (by any consumer of the
    group). A pending message is delivered again:

    a. to the same consumer name after a restart: a new consumer handle (for Redis a new bus
       object; for the in-process bus, whose state dies with the process, a new handle from
       ``bus.consumer(...)`` on the same bus) first returns its own pending messages, in order,
       then new ones. A handle does not re-read its own pending messages while it lives;
    b. to any consumer of the group once it has been pending for ``claim_idle_ms`` (the owner is
       presumed dead). Reads claim such messages before taking new ones.

    ``Message.delivery_count`` is 1 on first delivery and grows by one on every redelivery.
    Consumers must therefore be idempotent (e.g. keyed on the ids carried in the payload).

Blocking
    ``read(..., block_ms=N)`` with nothing to return waits up to N ms for a publish and returns as
    soon as one arrives, or ``[]`` at the timeout. ``block_ms=0`` never waits. A blocked read does
    not wake for messages that become claimable; consumers loop with a bounded ``block_ms``.

Retention
    Each partition keeps at most about ``maxlen`` messages (exactly for the in-process bus, in
    whole blocks for Redis, ``XADD MAXLEN ~``). Retention wins over delivery: a message trimmed
    before a group read or acknowledged it is gone for that group, so size ``maxlen`` to the
    slowest consumer's worst backlog.

Lifecycle
    ``close()`` releases connections; every bus is an async context manager. Calls on a closed bus
    raise :class:`~brokerlink.kit.errors.Unavailable`, as do connection failures.
"""

from __future__ import annotations

import re
import zlib
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Iterable
from contextlib import aclosing
from types import TracebackType
from typing import Literal, Self

import msgspec

from brokerlink.kit.errors import Unavailable

Start = Literal["earliest", "latest"]
"""Where a group created by this read starts: the oldest retained message, or only new ones."""

DEFAULT_PARTITIONS = 8
DEFAULT_MAXLEN = 100_000
DEFAULT_CLAIM_IDLE_MS = 30_000

# Topic names become part of Redis keys; keeping them to a plain alphabet avoids ambiguous keys.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """One delivered message. ``topic``, ``group`` and ``id`` are what :meth:`EventBus.ack` needs."""

    id: str
    topic: str
    key: str
    partition: int
    payload: bytes
    delivery_count: int
    group: str


def partition_for(key: str, partitions: int) -> int:
    """The partition of ``key``: CRC-32 of its UTF-8 bytes modulo ``partitions`` (stable everywhere)."""
    return zlib.crc32(key.encode()) % partitions


def make_message_id(partition: int, position: str) -> str:
    """A message id: the partition and the implementation's position within it, ``"3:1700-0"``."""
    return f"{partition}:{position}"


def split_message_id(message_id: str) -> tuple[int, str]:
    """Inverse of :func:`make_message_id`."""
    head, sep, position = message_id.partition(":")
    if not sep or not head.isdigit() or not position:
        raise ValueError(f"not a bus message id: {message_id!r}")
    return int(head), position


def check_name(kind: str, value: str) -> str:
    """Refuse empty or odd topic, group and consumer names early, with a message naming the argument."""
    if not _NAME_RE.match(value):
        raise ValueError(f"{kind} must be 1-128 characters of letters, digits, '_', '.', '-': {value!r}")
    return value


class Consumer(ABC):
    """A handle on one consumer of a group: it remembers where its redelivery scan stands.

    Create it with :meth:`EventBus.consumer`. A *new* handle with the same names is how a restart
    looks to the bus: its first reads return the consumer's pending (unacknowledged) messages.
    """

    def __init__(
        self,
        bus: EventBus,
        topic: str,
        group: str,
        name: str,
        *,
        partitions: tuple[int, ...],
        start: Start,
        claim_idle_ms: int,
    ) -> None:
        self.bus = bus
        self.topic = topic
        self.group = group
        self.name = name
        self.partitions = partitions
        self.start: Start = start
        self.claim_idle_ms = claim_idle_ms

    @abstractmethod
    async def read(self, *, max_count: int = 100, block_ms: int = 0) -> list[Message]:
        """Up to ``max_count`` messages: own pending ones after a restart, then claimable, then new.

        Waits up to ``block_ms`` for a publish when there is nothing to return; ``[]`` on timeout.
        """

    async def ack(self, *messages: Message) -> int:
        """Acknowledge messages; see :meth:`EventBus.ack`."""
        return await self.bus.ack(*messages)

    async def messages(self, *, max_count: int = 100, block_ms: int = 1000) -> AsyncGenerator[Message, None]:
        """Yield messages forever, reading in batches. The caller acknowledges each one.

        Wrap it in ``contextlib.aclosing`` so that leaving the loop closes the generator; messages
        of a batch not yet yielded stay pending and come back by restart or claim.
        """
        while True:
            for message in await self.read(max_count=max_count, block_ms=block_ms):
                yield message

    @staticmethod
    def check_read_args(max_count: int, block_ms: int) -> None:
        """Validate ``read`` arguments, shared by the implementations."""
        if max_count < 1:
            raise ValueError(f"max_count must be at least 1, got {max_count}")
        if block_ms < 0:
            raise ValueError(f"block_ms must not be negative, got {block_ms}")


class EventBus(ABC):
    """Partitioned topics with consumer groups and at-least-once delivery (contract: module docstring)."""

    def __init__(self, *, partitions: int, maxlen: int, claim_idle_ms: int) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be at least 1, got {partitions}")
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {maxlen}")
        if claim_idle_ms < 1:
            raise ValueError(f"claim_idle_ms must be at least 1, got {claim_idle_ms}")
        self.partitions = partitions
        self.maxlen = maxlen
        self.claim_idle_ms = claim_idle_ms
        self._closed = False
        # Handles behind the name-based read(): one per consumer name, so that repeated reads on
        # this bus object continue where they left off instead of looking like restarts.
        self._handles: dict[tuple[str, str, str], Consumer] = {}

    def partition_for(self, key: str) -> int:
        """The partition that ``key``'s messages go to on this bus."""
        return partition_for(key, self.partitions)

    @abstractmethod
    async def publish(self, topic: str, key: str, payload: bytes) -> str:
        """Append ``payload`` to ``key``'s partition of ``topic``; return the message id."""

    def consumer(
        self,
        topic: str,
        group: str,
        name: str,
        *,
        partitions: Iterable[int] | None = None,
        start: Start = "earliest",
        claim_idle_ms: int | None = None,
    ) -> Consumer:
        """A new consumer handle (a "restart" of ``name``, if it read before).

        ``partitions`` restricts the handle to some partitions (default: all of them), for
        consumers that own partitions exclusively. ``claim_idle_ms`` overrides the bus default.
        """
        self.check_open()
        check_name("topic", topic)
        check_name("group", group)
        check_name("consumer", name)
        chosen = tuple(range(self.partitions)) if partitions is None else tuple(sorted(set(partitions)))
        if not chosen or not all(0 <= p < self.partitions for p in chosen):
            raise ValueError(f"partitions must be a non-empty subset of 0..{self.partitions - 1}: {chosen}")
        idle = self.claim_idle_ms if claim_idle_ms is None else claim_idle_ms
        if idle < 1:
            raise ValueError(f"claim_idle_ms must be at least 1, got {idle}")
        if start not in ("earliest", "latest"):
            raise ValueError(f"start must be 'earliest' or 'latest', got {start!r}")
        return self._new_consumer(topic, group, name, partitions=chosen, start=start, claim_idle_ms=idle)

    @abstractmethod
    def _new_consumer(
        self, topic: str, group: str, name: str, *, partitions: tuple[int, ...], start: Start, claim_idle_ms: int
    ) -> Consumer:
        """Build the implementation's handle; arguments are already validated."""

    async def read(
        self,
        topic: str,
        group: str,
        consumer: str,
        *,
        max_count: int = 100,
        block_ms: int = 0,
        start: Start = "earliest",
    ) -> list[Message]:
        """Read as ``consumer`` of ``group``, through a handle this bus object keeps per name.

        The first read of a name on this bus object behaves like a restart (pending messages
        first); later ones continue. Use :meth:`consumer` for partition subsets or claim settings.
        """
        handle = self._handles.get((topic, group, consumer))
        if handle is None:
            handle = self.consumer(topic, group, consumer, start=start)
            self._handles[topic, group, consumer] = handle
        return await handle.read(max_count=max_count, block_ms=block_ms)

    async def subscribe(
        self,
        topic: str,
        group: str,
        consumer: str,
        *,
        max_count: int = 100,
        block_ms: int = 1000,
        start: Start = "earliest",
    ) -> AsyncGenerator[Message, None]:
        """Yield messages forever as ``consumer`` of ``group`` (a fresh handle: a restart).

        The caller acknowledges; close the iterator (``contextlib.aclosing``) when done.
        """
        handle = self.consumer(topic, group, consumer, start=start)
        async with aclosing(handle.messages(max_count=max_count, block_ms=block_ms)) as stream:
            async for message in stream:
                yield message

    @abstractmethod
    async def ack(self, *messages: Message) -> int:
        """Mark messages done for their group, so they are never redelivered. Returns how many were pending."""

    @abstractmethod
    async def ping(self) -> bool:
        """Whether the bus can serve requests right now (readiness probe). Never raises."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections and wake blocked readers. Idempotent."""

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def check_open(self) -> None:
        """Raise :class:`Unavailable` if the bus is closed."""
        if self._closed:
            raise Unavailable("the event bus is closed")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
