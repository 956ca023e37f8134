"""``limits``' in-process storage without its sweeper: what every in-memory rate limit here counts on.

The library's memory storages drop expired entries in the background. The synchronous one arms a
``threading.Timer`` (a new thread) whenever a hit finds the previous one finished: under load that
is up to a hundred thread starts a second, and each start makes the event loop wait for the new
thread to get the GIL (measured on ``bench/auth_overhead.py``: ~150 µs per request, more than the
rest of rate limiting together). The asynchronous one is worse with many keys: each hit that finds
the last sweep done starts a task that sends every key's search to ``asyncio.to_thread``, one thread
hop per key (the sim venue, counting per API key, spent a quarter of its CPU there with 101 keys).
:class:`InProcessStorage` runs the library's own sweep in line instead, on the first hit after
``sweep_s``, on the caller's thread: with the synchronous strategies a hit never blocks and never
leaves the event loop's thread.
"""

from __future__ import annotations

import time

from limits.storage import MemoryStorage


class InProcessStorage(MemoryStorage):
    """``limits``' synchronous memory storage, swept in line once per ``sweep_s`` (module docstring).

    Use it with ``limits.strategies`` (the synchronous strategies); ``limits`` is pinned, because this
    replaces a private hook of the library's.
    """

    def __init__(self, sweep_s: float = 1.0) -> None:
        super().__init__()
        self.timer.cancel()  # the constructor armed the first one
        self.sweep_s = sweep_s
        self._next_sweep = time.monotonic() + sweep_s

    def _MemoryStorage__schedule_expiry(self) -> None:  # noqa: N802 - the library's private hook (``limits`` is pinned)
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.sweep_s
            self._MemoryStorage__expire_events()  # type: ignore[attr-defined]
