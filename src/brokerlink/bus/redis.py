"""The event bus on Redis Streams, for several nodes sharing one Redis.

Each partition of a topic is one stream, ``{prefix}:{topic}:{partition}``; a bus group is a Redis
consumer group of the same name on every partition stream. The contract maps onto Redis as:

- first delivery: ``XREADGROUP ... >`` over the handle's partition streams (``BLOCK`` when asked);
- restart: a new handle first pages through its own pending entries with ``XREADGROUP ... <id>``;
- claim: ``XAUTOCLAIM`` with ``claim_idle_ms`` as the minimum idle time, in a Lua script that also
  reads the new delivery counts (``XPENDING``), so both come from one atomic step;
- retention: ``XADD ... MAXLEN ~``, which trims whole stream nodes (cheap, hence "about maxlen").

Keys assume a standalone Redis (or one hash slot): the history read and the claim script touch
several partition streams in one call.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT, FieldT, KeyT, StreamIdT

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
from brokerlink.kit.errors import Unavailable

# KEYS: the handle's partition streams. ARGV: group, consumer, min idle ms, count, then one
# XAUTOCLAIM cursor per key. Stops once ``count`` messages are claimed, so a read never takes more
# than it can return. Returns, per key visited: {next cursor, entries, delivery counts}.
_CLAIM_SCRIPT = """
local left = tonumber(ARGV[4])
local out = {}
for i, key in ipairs(KEYS) do
  if left <= 0 then break end
  local r = redis.call('XAUTOCLAIM', key, ARGV[1], ARGV[2], ARGV[3], ARGV[4 + i], 'COUNT', left)
  local counts = {}
  for j, entry in ipairs(r[2]) do
    if type(entry) == 'table' then
      local p = redis.call('XPENDING', key, ARGV[1], entry[1], entry[1], 1)
      counts[j] = p[1] and p[1][4] or 1
    else
      counts[j] = 0
    end
  end
  left = left - #r[2]
  out[i] = {r[1], r[2], counts}
end
return out
"""

_MAX_BLOCK_SLICE_MS = 2000
_FIELD_KEY = b"k"
_FIELD_PAYLOAD = b"p"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@contextmanager
def _unavailable() -> Iterator[None]:
    """Turn connection trouble into the bus's ``Unavailable``; other Redis errors are bugs and propagate."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise Unavailable(f"Redis is not available: {exc}") from exc


def _stream_replies(reply: Any) -> list[tuple[bytes, list[Any]]]:
    """XREADGROUP's reply as ``[(stream key, entries)]``, from either the RESP2 list or the RESP3 dict shape."""
    if not reply:
        return []
    items = reply.items() if isinstance(reply, Mapping) else reply
    return [(key, entries) for key, entries in items]


class RedisEventBus(EventBus):
    """Event bus on Redis Streams (contract: :mod:`brokerlink.bus.base`).

    Pass ``url`` (the bus owns and closes its client) or an existing ``client`` created with
    ``decode_responses=False`` (left open by :meth:`close`). ``prefix`` namespaces every key.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        prefix: str = "brokerlink",
        partitions: int = DEFAULT_PARTITIONS,
        maxlen: int = DEFAULT_MAXLEN,
        claim_idle_ms: int = DEFAULT_CLAIM_IDLE_MS,
        ping_timeout: float = 2.0,
    ) -> None:
        super().__init__(partitions=partitions, maxlen=maxlen, claim_idle_ms=claim_idle_ms)
        self.ping_timeout = ping_timeout
        if not prefix:
            raise ValueError("prefix must not be empty")
        if client is not None and url is not None:
            raise ValueError("RedisEventBus takes a url or a client, not both")
        self._owns_client = client is None
        if client is None:
            if not url:
                raise ValueError("RedisEventBus needs a Redis url or client")
            client = Redis.from_url(url)
        # Payloads are bytes and ids are parsed from bytes; a decoding client would corrupt both.
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the Redis client must be created with decode_responses=False")
        self.client = client
        self.prefix = prefix
        # redis-py gives up on a reply after socket_timeout (5 s by default, and not recorded in the
        # pool when left at the default), which would turn a long XREADGROUP BLOCK into a timeout
        # error. Long waits are cut into slices of at most half of it (Redis itself may overshoot a
        # BLOCK timeout by one server tick, 100 ms); a wake-up every 2 s costs nothing.
        socket_timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
        self.max_block_ms = _MAX_BLOCK_SLICE_MS
        if socket_timeout:
            self.max_block_ms = max(1, min(self.max_block_ms, int(socket_timeout * 500)))
        self.claim_script = client.register_script(_CLAIM_SCRIPT)
        self._groups: set[tuple[str, str]] = set()

    def stream_key(self, topic: str, partition: int) -> str:
        """The Redis key of one partition stream."""
        return f"{self.prefix}:{topic}:{partition}"

    async def publish(self, topic: str, key: str, payload: bytes) -> str:
        """``XADD`` to ``key``'s partition stream, trimming it to about ``maxlen`` entries."""
        self.check_open()
        check_name("topic", topic)
        index = self.partition_for(key)
        fields: dict[FieldT, EncodableT] = {_FIELD_KEY: key.encode(), _FIELD_PAYLOAD: payload}
        with _unavailable():
            stream_id = await self.client.xadd(
                self.stream_key(topic, index), fields, maxlen=self.maxlen, approximate=True
            )
        return make_message_id(index, _text(stream_id))

    def _new_consumer(
        self, topic: str, group: str, name: str, *, partitions: tuple[int, ...], start: Start, claim_idle_ms: int
    ) -> Consumer:
        return RedisConsumer(self, topic, group, name, partitions=partitions, start=start, claim_idle_ms=claim_idle_ms)

    async def ensure_group(self, topic: str, group: str, start: Start) -> None:
        """Create ``group`` on every partition stream of ``topic`` unless this bus knows it exists."""
        if (topic, group) in self._groups:
            return
        first: StreamIdT = "0" if start == "earliest" else "$"
        async with self.client.pipeline(transaction=False) as pipe:
            for index in range(self.partitions):
                pipe.xgroup_create(self.stream_key(topic, index), group, id=first, mkstream=True)
            results = await pipe.execute(raise_on_error=False)
        for result in results:
            # BUSYGROUP: another consumer (or node) created it first, which is fine.
            if isinstance(result, Exception) and not str(result).startswith("BUSYGROUP"):
                raise result
        self._groups.add((topic, group))

    def forget_group(self, topic: str, group: str) -> None:
        """Drop the note that ``group`` exists (after Redis said NOGROUP, e.g. the keys were deleted)."""
        self._groups.discard((topic, group))

    async def ack(self, *messages: Message) -> int:
        """``XACK`` the messages, grouped by partition stream; counts those that were pending."""
        self.check_open()
        batches: defaultdict[tuple[str, str], list[StreamIdT]] = defaultdict(list)
        for message in messages:
            index, position = split_message_id(message.id)
            batches[self.stream_key(message.topic, index), message.group].append(position)
        if not batches:
            return 0
        with _unavailable():
            async with self.client.pipeline(transaction=False) as pipe:
                for (key, group), ids in batches.items():
                    pipe.xack(key, group, *ids)
                results = await pipe.execute(raise_on_error=False)
        # Acking in a group that does not exist acknowledges nothing; that is not an error.
        return sum(result for result in results if isinstance(result, int))

    async def ping(self) -> bool:
        """Whether Redis answers ``PING`` within ``ping_timeout`` seconds."""
        if self._closed:
            return False
        try:
            async with asyncio.timeout(self.ping_timeout):
                return bool(await self.client.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def close(self) -> None:
        """Close the client if this bus created it. Blocked readers then raise ``Unavailable``."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self.client.aclose()


class RedisConsumer(Consumer):
    """A consumer handle on a :class:`RedisEventBus`."""

    bus: RedisEventBus

    def __init__(
        self,
        bus: RedisEventBus,
        topic: str,
        group: str,
        name: str,
        *,
        partitions: tuple[int, ...],
        start: Start,
        claim_idle_ms: int,
    ) -> None:
        super().__init__(bus, topic, group, name, partitions=partitions, start=start, claim_idle_ms=claim_idle_ms)
        self._keys = {index: bus.stream_key(topic, index) for index in partitions}
        self._partition_of = {key.encode(): index for index, key in self._keys.items()}
        # Partition -> id after which to continue reading this consumer's own pending entries; a
        # partition leaves the map once they are exhausted (the restart is complete there).
        self._history: dict[int, str] = dict.fromkeys(partitions, "0")
        self._claim_cursors: dict[int, str] = dict.fromkeys(partitions, "0-0")
        self._claim_after_ns = 0
        # Redis applies COUNT per stream, so one call over several partitions can deliver more than
        # asked. The surplus waits here (already pending in Redis, so a crash loses nothing).
        self._buffer: dict[str, Message] = {}

    async def read(self, *, max_count: int = 100, block_ms: int = 0) -> list[Message]:
        """See :meth:`Consumer.read`."""
        self.check_read_args(max_count, block_ms)
        self.bus.check_open()
        with _unavailable():
            try:
                return await self._read(max_count, block_ms)
            except ResponseError as exc:
                # The group vanished (its keys were deleted): recreate it once. Pipelines and
                # scripts wrap the server's message, so look for the error code anywhere in it.
                if "NOGROUP" not in str(exc):
                    raise
                self.bus.forget_group(self.topic, self.group)
                return await self._read(max_count, block_ms)

    async def _read(self, max_count: int, block_ms: int) -> list[Message]:
        await self.bus.ensure_group(self.topic, self.group, self.start)
        if self._history and len(self._buffer) < max_count:
            await self._fetch_history(max_count - len(self._buffer))
        if len(self._buffer) < max_count and time.monotonic_ns() >= self._claim_after_ns:
            await self._fetch_claimable(max_count - len(self._buffer))
        if len(self._buffer) < max_count:
            await self._fetch_new(max_count - len(self._buffer), 0 if self._buffer else block_ms)
        taken = list(self._buffer)[:max_count]
        return [self._buffer.pop(message_id) for message_id in taken]

    def _add(self, index: int, stream_id: bytes | str, fields: Mapping[Any, Any], delivery_count: int) -> None:
        message_id = make_message_id(index, _text(stream_id))
        self._buffer[message_id] = Message(
            id=message_id,
            topic=self.topic,
            key=_text(fields[_FIELD_KEY]),
            partition=index,
            payload=bytes(fields[_FIELD_PAYLOAD]),
            delivery_count=delivery_count,
            group=self.group,
        )

    async def _fetch_history(self, limit: int) -> None:
        client, group = self.bus.client, self.group
        todo = list(self._history.items())
        # One transaction per call, so the delivery counts read back belong to exactly this read.
        async with client.pipeline(transaction=True) as pipe:
            for index, after in todo:
                key = self._keys[index]
                pipe.xreadgroup(group, self.name, {key: after}, count=limit)
                low = "-" if after == "0" else f"({after}"
                pipe.xpending_range(key, group, low, "+", limit, consumername=self.name)
            results = await pipe.execute()
        trimmed: dict[str, list[StreamIdT]] = {}
        for n, (index, after) in enumerate(todo):
            counts = {row["message_id"]: int(row["times_delivered"]) for row in results[2 * n + 1]}
            entries = [entry for _, stream in _stream_replies(results[2 * n]) for entry in stream]
            for stream_id, fields in entries:
                if fields:
                    self._add(index, stream_id, fields, counts.get(stream_id, 1))
                else:  # trimmed away by retention after delivery: nothing left to deliver
                    trimmed.setdefault(self._keys[index], []).append(stream_id)
            if len(entries) < limit:
                del self._history[index]
            elif entries:
                self._history[index] = _text(entries[-1][0])
            else:  # pragma: no cover - len(entries) >= limit >= 1
                self._history[index] = after
        for key, ids in trimmed.items():
            await client.xack(key, group, *ids)

    async def _fetch_claimable(self, limit: int) -> None:
        order = list(self.partitions)
        keys: list[KeyT] = [self._keys[index] for index in order]
        args: list[EncodableT] = [self.group, self.name, self.claim_idle_ms, limit]
        args += [self._claim_cursors[index] for index in order]
        reply = await self.bus.claim_script(keys=keys, args=args)
        claimed = 0
        for index, (cursor, entries, counts) in zip(order, reply, strict=False):
            self._claim_cursors[index] = _text(cursor)
            for entry, count in zip(entries, counts, strict=True):
                if not entry:
                    continue
                stream_id, flat = entry
                self._add(index, stream_id, dict(zip(flat[::2], flat[1::2], strict=True)), int(count))
                claimed += 1
        scan_complete = all(cursor == "0-0" for cursor in self._claim_cursors.values())
        if scan_complete and claimed < limit:
            # Nothing else is claimable right now; a message that becomes idle later has waited
            # claim_idle_ms at least, so looking again after half of that bounds the extra delay.
            self._claim_after_ns = time.monotonic_ns() + self.claim_idle_ms * 500_000

    async def _fetch_new(self, limit: int, block_ms: int) -> None:
        streams: dict[KeyT, StreamIdT] = {self._keys[index]: ">" for index in self.partitions}
        deadline_ns = time.monotonic_ns() + block_ms * 1_000_000
        wait_ms = block_ms
        while True:
            self.bus.check_open()  # a closed client would silently reconnect for the next slice
            wait_ms = min(wait_ms, self.bus.max_block_ms)
            # BLOCK 0 means "forever" to Redis; the contract's 0 means "do not wait".
            reply = await self.bus.client.xreadgroup(
                self.group, self.name, streams, count=limit, block=wait_ms if wait_ms > 0 else None
            )
            replies = _stream_replies(reply)
            for key, entries in replies:
                index = self._partition_of[key if isinstance(key, bytes) else key.encode()]
                for stream_id, fields in entries:
                    self._add(index, stream_id, fields, 1)
            wait_ms = (deadline_ns - time.monotonic_ns()) // 1_000_000
            if any(entries for _, entries in replies) or wait_ms <= 0:
                return
