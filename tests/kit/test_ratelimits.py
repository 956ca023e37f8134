"""``InProcessStorage``: ``limits``' memory storage swept in line, never by a thread."""

from __future__ import annotations

import threading

from limits import parse
from limits.strategies import MovingWindowRateLimiter

from brokerlink.kit.ratelimits import InProcessStorage


def test_ratelimit_in_process_storage_starts_no_threads_and_still_limits() -> None:
    """``limits``' own memory storage starts a timer thread per sweep; ours sweeps in line."""
    storage = InProcessStorage()
    strategy = MovingWindowRateLimiter(storage)
    item = parse("5/second")
    threads = threading.active_count()
    allowed = [strategy.hit(item, "user", "u1") for _ in range(7)]
    assert allowed == [True] * 5 + [False, False]
    assert threading.active_count() == threads
    assert strategy.get_window_stats(item, "user", "u1").remaining == 0


def test_ratelimit_in_process_storage_drops_expired_entries_on_the_next_sweep() -> None:
    storage = InProcessStorage(sweep_s=0.0)  # every hit sweeps
    strategy = MovingWindowRateLimiter(storage)
    strategy.hit(parse("5/second"), "user", "gone")
    assert storage.events  # recorded
    for entry in next(iter(storage.events.values())):
        entry.expiry = entry.atime = 0.0  # as if recorded long ago
    strategy.hit(parse("5/second"), "user", "other")
    assert [events for key, events in storage.events.items() if "gone" in key] == [[]]  # the key's entries went
