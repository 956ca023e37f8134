"""Retry delays for reconnecting to brokers."""

from __future__ import annotations

import random

import msgspec


class Backoff(msgspec.Struct, frozen=True, kw_only=True):
    """Exponential backoff with full jitter: attempt ``n`` waits a uniform time in ``[0, min(cap, base * 2**n)]``.

    Full jitter keeps a fleet of adapters that lost the venue at the same moment from reconnecting
    in lockstep (AWS Architecture Blog, "Exponential Backoff and Jitter").
    """

    base_s: float = 0.2
    cap_s: float = 10.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before reconnect attempt ``attempt`` (0-based)."""
        return rng.uniform(0, min(self.cap_s, self.base_s * (2**attempt)))
