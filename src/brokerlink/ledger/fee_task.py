"""The server's fee task: accrue the days that ended, settle the period that ended. Safe to run at any time.

Every step is idempotent (accrual lines are unique per subscription and day or fill, settlement
lines per subscription, kind and period, ledger entries per idempotency key), so a restart, a
second server process or an operator's ``brokerlink fees settle`` running at the same moment
change nothing twice. Each run is bounded: the ended days and the fills of the current period, and the previous period's
settlement.
"""

from __future__ import annotations

from datetime import timedelta

import msgspec

from brokerlink.kit.clock import Clock
from brokerlink.kit.errors import BrokerlinkError
from brokerlink.kit.periodic import Periodic
from brokerlink.ledger.fee_equity import Marks
from brokerlink.ledger.fee_periods import period_of, previous_period
from brokerlink.ledger.fees import FeeConfig, SettlementReport, accrue_period, settle_period
from brokerlink.logs import get_logger
from brokerlink.store.db import Database

_log = get_logger("brokerlink.ledger.fee_task")


class FeeRun(msgspec.Struct, frozen=True, kw_only=True):
    """What one run did: accrual lines added, and the previous period's settlement."""

    accrued: int
    settlement: SettlementReport


async def run_once(database: Database, clock: Clock, config: FeeConfig, *, marks: Marks | None = None) -> FeeRun:
    """Accrue what has ended of the current period, then settle the previous period (whose settlement
    accrues whatever of it is still missing). One transaction each."""
    now = clock.now()
    current = period_of(config.period, now)
    async with database.session() as session:
        accrued = await accrue_period(session, current, config=config, now=now, marks=marks)
        await session.commit()
    async with database.session() as session:
        report = await settle_period(
            session, previous_period(config.period, current), config=config, now=now, marks=marks
        )
        await session.commit()
    return FeeRun(accrued=accrued, settlement=report)


class FeeTask:
    """Runs :func:`run_once` every ``every_s`` seconds in the background until stopped."""

    def __init__(
        self, database: Database, clock: Clock, config: FeeConfig, *, every_s: float, marks: Marks | None = None
    ) -> None:
        self.database = database
        self.clock = clock
        self.config = config
        self.every = timedelta(seconds=every_s)
        self.marks = marks
        self.schedule = Periodic("fee_run", every_s, self._run_once, first_at_once=True)

    def start(self) -> None:
        """Start the schedule (the first run is at once)."""
        self.schedule.start()

    async def stop(self) -> None:
        """Stop the schedule (a run in progress rolls back; the next one redoes it)."""
        await self.schedule.stop()

    async def _run_once(self) -> None:
        try:
            run = await run_once(self.database, self.clock, self.config, marks=self.marks)
        except BrokerlinkError as exc:  # an expected refusal (say, a period not ended): a warning, not a crash
            _log.warning("fee_run_failed", error=str(exc))
            return
        if run.accrued or run.settlement.lines:
            _log.info("fee_run", accrued=run.accrued, settled_lines=run.settlement.lines)
