"""Group commit of broker events on SQLite: the events queued while one transaction commits share the next.

Every broker event is stored in a transaction with its event-log record (:mod:`.ingest`). On SQLite
writers take turns on one lock, and a write transaction of its own costs an event ~0.4-0.6 ms of CPU
before its statements (a session, ``BEGIN IMMEDIATE`` and ``COMMIT`` through the driver's thread,
the lock's hand-over): after a copy fan-out every follower's acknowledgement, fill, balance and
position arrive at once, hundreds of one-event transactions in a row. :class:`GroupIngest` applies
the events that queued up while the previous transaction ran in one transaction, in arrival order,
at most ``max_batch`` at a time. An event that arrives while nothing is committing starts a
transaction at once: nothing waits for a batch to fill.

What does not change: each caller still holds its account's ``LiveAccount.lock`` until its event
is committed (so one account's events are applied one at a time, in order), and each event still
commits together with its event-log record and its ``audit`` hook's writes. A batch that fails is
rolled back and its events are applied again one transaction each, so a failing event fails its
own caller only and the others are stored. Observations (metrics) that ingest records are emitted
after the commit that stored them, never for a rolled-back attempt.

PostgreSQL runs writers concurrently and locks rows: one transaction spanning many accounts' rows
could deadlock with another writer taking them in another order. There each event keeps its own
transaction (``grouped=False``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.events import DomainEvent
from brokerlink.engine.links.ingest import OBSERVATIONS, Outcome, ingest
from brokerlink.kit.clock import Clock
from brokerlink.logs import get_logger
from brokerlink.store.db import Database

_log = get_logger("brokerlink.engine.links.group")

AuditHook = Callable[[AsyncSession], Awaitable[object]]
"""Records an audit entry in the transaction it is given."""

MAX_BATCH = 16
"""Events per shared transaction at most: a batch holds SQLite's write lock while it runs, ~0.3 ms an
event, and a copy fan-out queued for the lock waits behind one batch at most (16 events: ~5 ms)."""


class _Pending(NamedTuple):
    broker: str
    event: DomainEvent
    audit: AuditHook | None
    future: asyncio.Future[Outcome]


class GroupIngest:
    """Stores broker events: with ``grouped``, in shared transactions (module docstring), else one each.

    ``grouped`` None: on SQLite only, as the database says at the first :meth:`apply`. Grouped, the
    first :meth:`apply` starts the task that commits the batches; :meth:`stop` ends it, and events
    applied after that get a transaction each.
    """

    def __init__(
        self, database: Database, clock: Clock, *, grouped: bool | None = None, max_batch: int = MAX_BATCH
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be positive")
        self.database = database
        self.clock = clock
        self.grouped = grouped
        self.max_batch = max_batch
        self._queue: list[_Pending] = []
        self._current: list[_Pending] = []
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self.transactions = 0
        """Transactions committed so far (tests read it)."""

    async def stop(self) -> None:
        """Stop grouping: what is queued or committing now fails its callers with ``CancelledError``."""
        self._stopped = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def apply(self, broker: str, event: DomainEvent, audit: AuditHook | None = None) -> Outcome:
        """Store ``event`` (of an account at ``broker``) and return what ingest did with it, once committed.

        The caller holds the account's lock. Raises what storing the event raised.
        """
        if self.grouped is None:
            self.grouped = self.database.dialect == "sqlite"
        if not self.grouped or self._stopped:
            outcomes = await self._commit([(broker, event, audit)])
            return outcomes[0]
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="links-group-ingest")
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(broker, event, audit, future))
        self._ready.set()
        return await future

    async def _run(self) -> None:
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                while self._queue:
                    self._current = self._queue[: self.max_batch]
                    del self._queue[: self.max_batch]
                    await self._commit_batch(self._current)
                    self._current = []
        finally:
            for pending in (*self._current, *self._queue):
                pending.future.cancel()
            self._current, self._queue = [], []

    async def _commit_batch(self, batch: list[_Pending]) -> None:
        try:
            outcomes = await self._commit([(p.broker, p.event, p.audit) for p in batch])
        except Exception as exc:  # noqa: BLE001 - handed to the callers below
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_exception(exc)
                return
            _log.warning("group_ingest_batch_failed", events=len(batch), error=repr(exc))
            for pending in batch:  # each alone: only the event that fails fails its caller
                await self._commit_batch([pending])
            return
        for pending, outcome in zip(batch, outcomes, strict=True):
            if not pending.future.done():  # its caller may have given up (cancelled): stored all the same
                pending.future.set_result(outcome)

    async def _commit(self, events: list[tuple[str, DomainEvent, AuditHook | None]]) -> list[Outcome]:
        """One transaction: every event ingested in order, with its audit hook; then the observations."""
        outcomes: list[Outcome] = []
        async with self.database.session() as session:
            observations = session.info.setdefault(OBSERVATIONS, [])
            for broker, event, audit in events:
                session.info["broker"] = broker  # for ingest's order_outcome observation
                outcomes.append(await ingest(session, event, now=self.clock.now()))
                if audit is not None:
                    await audit(session)
            await session.commit()
        self.transactions += 1
        for observe in observations:
            observe()
        return outcomes
