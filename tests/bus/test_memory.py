"""What only the in-process bus promises beyond the contract: exact retention, an injectable clock."""

from __future__ import annotations

from datetime import timedelta

from brokerlink.bus.memory import MemoryEventBus
from brokerlink.kit.clock import ManualClock


async def test_claims_follow_the_injected_clock_to_the_millisecond() -> None:
    clock = ManualClock()
    async with MemoryEventBus(clock=clock, claim_idle_ms=1000) as bus:
        message_id = await bus.publish("orders", "acct-1", b"m0")
        assert [m.id for m in await bus.consumer("orders", "g", "owner").read()] == [message_id]
        thief = bus.consumer("orders", "g", "thief")

        clock.advance(timedelta(milliseconds=999))
        assert await thief.read() == []
        clock.advance(timedelta(milliseconds=1))
        [claimed] = await thief.read()
        assert (claimed.id, claimed.delivery_count) == (message_id, 2)
        # The claim restarted the idle time.
        assert await bus.consumer("orders", "g", "other").read() == []


async def test_retention_is_exact_per_partition() -> None:
    async with MemoryEventBus(maxlen=5, partitions=2) as bus:
        # "a" and "d" land in different partitions of two (crc32 % 2 == 1 and 0).
        assert (bus.partition_for("a"), bus.partition_for("d")) == (1, 0)
        for i in range(12):
            await bus.publish("orders", "a", f"a{i}".encode())
        for i in range(3):
            await bus.publish("orders", "d", f"d{i}".encode())
        got = await bus.consumer("orders", "g", "c1").read()
        assert sorted(m.payload for m in got) == sorted(
            [f"a{i}".encode() for i in range(7, 12)] + [b"d0", b"d1", b"d2"]
        )
