"""The in-process event bus: the embedded default, and the reference the Redis bus is tested against.

State lives in this process only, so a real restart loses everything; what the contract calls a
restart is modelled as a new consumer handle (:meth:`EventBus.consumer`) on the same bus object.
Offsets within a partition are consecutive integers, which makes trimming and lookups O(1).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from brokerlink.bus.base import (
    DEFAULT_CLAIM_IDLE_MS,
    DEFAULT_MAXLEN,
    DEFAULT_PARTITIONS,
    Consumer,
    EventBus,
    Message,
    Start,
    check_name,
    make_message_id,
    split_message_id,
)
from brokerlink.kit.clock import Clock, SystemClock

_NS_PER_MS = 1_000_000


@dataclass(slots=True)
class _Pending:
    consumer: str
    delivery_count: int
    delivered_ns: int


@dataclass(slots=True)
class _Partition:
    # offset -> (key, payload); a dict rather than a deque so reading from a cursor is O(1).
    entries: dict[int, tuple[str, bytes]] = field(default_factory=dict)
    next_offset: int = 0

    @property
    def first_offset(self) -> int:
        return self.next_offset - len(self.entries)


@dataclass(slots=True)
class _Group:
    cursors: list[int]
    # Per partition, offset -> pending state. Insertion order is offset order: entries are added
    # when first delivered, which happens in offset order, and claims update them in place.
    pending: list[dict[int, _Pending]]


class _Topic:
    def __init__(self, partitions: int) -> None:
        self.partitions = [_Partition() for _ in range(partitions)]
        self.groups: dict[str, _Group] = {}
        self.changed = asyncio.Condition()

    def group(self, name: str, start: Start) -> _Group:
        group = self.groups.get(name)
        if group is None:
            cursors = [p.first_offset if start == "earliest" else p.next_offset for p in self.partitions]
            group = _Group(cursors=cursors, pending=[{} for _ in self.partitions])
            self.groups[name] = group
        return group

    def trim(self, index: int, maxlen: int) -> None:
        part = self.partitions[index]
        while len(part.entries) > maxlen:
            del part.entries[part.first_offset]
        first = part.first_offset
        # Trimmed messages are gone for every group, delivered or not (retention wins).
        for group in self.groups.values():
            group.cursors[index] = max(group.cursors[index], first)
            pending = group.pending[index]
            while pending and (oldest := next(iter(pending))) < first:
                del pending[oldest]


class MemoryEventBus(EventBus):
    """Event bus inside one process, for the embedded setup and tests.

    ``clock`` measures how long messages have been pending (for claims), so tests can hold time still.
    """

    def __init__(
        self,
        *,
        partitions: int = DEFAULT_PARTITIONS,
        maxlen: int = DEFAULT_MAXLEN,
        claim_idle_ms: int = DEFAULT_CLAIM_IDLE_MS,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(partitions=partitions, maxlen=maxlen, claim_idle_ms=claim_idle_ms)
        self.clock: Clock = clock or SystemClock()
        self._topics: dict[str, _Topic] = {}

    def topic_state(self, topic: str) -> _Topic:
        """The state of ``topic``, created on first use."""
        state = self._topics.get(topic)
        if state is None:
            state = self._topics[topic] = _Topic(self.partitions)
        return state

    async def publish(self, topic: str, key: str, payload: bytes) -> str:
        """Append to ``key``'s partition and wake blocked readers of the topic."""
        self.check_open()
        check_name("topic", topic)
        state = self.topic_state(topic)
        index = self.partition_for(key)
        part = state.partitions[index]
        offset = part.next_offset
        part.entries[offset] = (key, bytes(payload))
        part.next_offset += 1
        state.trim(index, self.maxlen)
        async with state.changed:
            state.changed.notify_all()
        return make_message_id(index, str(offset))

    def _new_consumer(
        self, topic: str, group: str, name: str, *, partitions: tuple[int, ...], start: Start, claim_idle_ms: int
    ) -> Consumer:
        return MemoryConsumer(self, topic, group, name, partitions=partitions, start=start, claim_idle_ms=claim_idle_ms)

    async def ack(self, *messages: Message) -> int:
        """Drop messages from their group's pending set; counts those that were pending."""
        self.check_open()
        done = 0
        for message in messages:
            state = self._topics.get(message.topic)
            group = state.groups.get(message.group) if state else None
            if group is None:
                continue
            index, position = split_message_id(message.id)
            if index < len(group.pending) and group.pending[index].pop(int(position), None) is not None:
                done += 1
        return done

    async def ping(self) -> bool:
        """In-process: available exactly as long as it is open."""
        return not self._closed

    async def close(self) -> None:
        """Mark the bus closed and wake blocked readers, which then raise ``Unavailable``."""
        if self._closed:
            return
        self._closed = True
        for state in self._topics.values():
            async with state.changed:
                state.changed.notify_all()


class MemoryConsumer(Consumer):
    """A consumer handle on a :class:`MemoryEventBus`."""

    bus: MemoryEventBus

    def __init__(
        self,
        bus: MemoryEventBus,
        topic: str,
        group: str,
        name: str,
        *,
        partitions: tuple[int, ...],
        start: Start,
        claim_idle_ms: int,
    ) -> None:
        super().__init__(bus, topic, group, name, partitions=partitions, start=start, claim_idle_ms=claim_idle_ms)
        # Partition -> last offset returned from this consumer's own pending list; a partition
        # leaves the map once that list is exhausted (this handle's "restart" is complete there).
        self._history: dict[int, int] = dict.fromkeys(partitions, -1)
        self._next_start = 0  # rotates the first partition read, so one busy partition cannot starve the rest

    async def read(self, *, max_count: int = 100, block_ms: int = 0) -> list[Message]:
        """See :meth:`Consumer.read`."""
        self.check_read_args(max_count, block_ms)
        self.bus.check_open()
        state = self.bus.topic_state(self.topic)
        group = state.group(self.group, self.start)
        out = self._take_history(group, max_count)
        if len(out) < max_count:
            out += self._take_claimable(group, max_count - len(out))
        if len(out) < max_count:
            out += self._take_new(state, group, max_count - len(out))
        if out or block_ms == 0:
            return out
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block_ms / 1000
        async with state.changed:
            while True:
                self.bus.check_open()
                out = self._take_new(state, group, max_count)
                remaining = deadline - loop.time()
                if out or remaining <= 0:
                    return out
                try:
                    async with asyncio.timeout(remaining):
                        await state.changed.wait()
                except TimeoutError:
                    pass  # one last look for messages, then the deadline check returns

    def _message(self, index: int, offset: int, entry: tuple[str, bytes], delivery_count: int) -> Message:
        key, payload = entry
        return Message(
            id=make_message_id(index, str(offset)),
            topic=self.topic,
            key=key,
            partition=index,
            payload=payload,
            delivery_count=delivery_count,
            group=self.group,
        )

    def _take_history(self, group: _Group, limit: int) -> list[Message]:
        out: list[Message] = []
        now = self.bus.clock.monotonic_ns()
        entries = self.bus.topic_state(self.topic).partitions
        for index in list(self._history):
            after = self._history[index]
            exhausted = True
            for offset, pending in group.pending[index].items():
                if offset <= after or pending.consumer != self.name:
                    continue
                if len(out) == limit:
                    exhausted = False
                    break
                pending.delivery_count += 1
                pending.delivered_ns = now
                out.append(self._message(index, offset, entries[index].entries[offset], pending.delivery_count))
                self._history[index] = offset
            if exhausted:
                del self._history[index]
            if len(out) == limit:
                break
        return out

    def _take_claimable(self, group: _Group, limit: int) -> list[Message]:
        out: list[Message] = []
        now = self.bus.clock.monotonic_ns()
        idle_ns = self.claim_idle_ms * _NS_PER_MS
        entries = self.bus.topic_state(self.topic).partitions
        for index in self.partitions:
            for offset, pending in group.pending[index].items():
                if now - pending.delivered_ns < idle_ns:
                    continue
                pending.consumer = self.name
                pending.delivery_count += 1
                pending.delivered_ns = now
                out.append(self._message(index, offset, entries[index].entries[offset], pending.delivery_count))
                if len(out) == limit:
                    return out
        return out

    def _take_new(self, state: _Topic, group: _Group, limit: int) -> list[Message]:
        out: list[Message] = []
        now = self.bus.clock.monotonic_ns()
        count = len(self.partitions)
        order = [self.partitions[(self._next_start + i) % count] for i in range(count)]
        self._next_start = (self._next_start + 1) % count
        for index in order:
            part = state.partitions[index]
            pending = group.pending[index]
            while group.cursors[index] < part.next_offset and len(out) < limit:
                offset = group.cursors[index]
                group.cursors[index] += 1
                pending[offset] = _Pending(self.name, 1, now)
                out.append(self._message(index, offset, part.entries[offset], 1))
            if len(out) == limit:
                break
        return out
