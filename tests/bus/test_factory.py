"""``create_bus`` picks the implementation from the settings."""

from __future__ import annotations

import pytest

from brokerlink.bus.factory import create_bus
from brokerlink.bus.memory import MemoryEventBus
from brokerlink.bus.redis import RedisEventBus
from brokerlink.config import Settings


async def test_memory_is_the_default() -> None:
    async with create_bus(Settings(bus_backend="memory")) as bus:
        assert type(bus) is MemoryEventBus


async def test_redis_without_a_url_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="BROKERLINK_REDIS_URL"):
        create_bus(Settings(bus_backend="redis", redis_url=None))


async def test_redis_with_a_url_builds_a_redis_bus_without_connecting() -> None:
    bus = create_bus(Settings(bus_backend="redis", redis_url="redis://127.0.0.1:1/0"))
    try:
        assert isinstance(bus, RedisEventBus)
        assert bus.prefix == "brokerlink"
    finally:
        await bus.close()
