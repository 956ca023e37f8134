"""A job run on a schedule in a background task: the server's periodic work, written once.

The audit checkpoints, the retention purge, ledger reconciliation, equity snapshots and the fee
runs all need the same things: start and stop with the server, wait between runs, and survive a
failed run (it is logged; the next one tries again), because one bad round must never end a
schedule for the life of the process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from brokerlink.logs import get_logger

_log = get_logger("brokerlink.periodic")


class Periodic:
    """Run ``job`` every ``every_s`` seconds. ``every_s <= 0`` disables it (``start`` does nothing).

    ``first_at_once``: run at start, then wait; otherwise wait one period first (for jobs that should
    not compete with the server coming up). A job's exception is logged as ``<name>_failed`` and the
    schedule goes on; cancellation (``stop``) ends it, cancelling a run under way.
    """

    def __init__(
        self, name: str, every_s: float, job: Callable[[], Awaitable[object]], *, first_at_once: bool = False
    ) -> None:
        self.name = name
        self.every_s = every_s
        self.job = job
        self.first_at_once = first_at_once
        self.runs = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the schedule's task is alive."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the schedule (no-op when disabled or already started)."""
        if self.every_s > 0 and self._task is None:
            self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        """Stop the schedule and wait for its task (a run under way is cancelled)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        if not self.first_at_once:
            await asyncio.sleep(self.every_s)
        while True:
            try:
                await self.job()
            except Exception:  # noqa: BLE001 - one failed run must not end the schedule; the next one retries
                _log.exception(f"{self.name}_failed")
            self.runs += 1
            await asyncio.sleep(self.every_s)
