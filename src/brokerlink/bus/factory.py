"""Choose the event bus from the settings: in-process by default, Redis Streams for several nodes."""

from __future__ import annotations

from brokerlink.bus.base import EventBus
from brokerlink.bus.memory import MemoryEventBus
from brokerlink.bus.redis import RedisEventBus
from brokerlink.config import Settings


def create_bus(settings: Settings) -> EventBus:
    """The bus named by ``settings.bus_backend``; ``"redis"`` needs ``settings.redis_url``.

    Nothing connects here: the Redis client connects on first use, so a wrong URL surfaces as
    ``Unavailable`` from the first publish or read.
    """
    if settings.bus_backend == "memory":
        return MemoryEventBus()
    if not settings.redis_url:
        raise ValueError("bus_backend is 'redis' but no Redis URL is configured: set BROKERLINK_REDIS_URL")
    return RedisEventBus(settings.redis_url)
