"""The ledger poster: turns stored fills into journal entries, in batches, idempotently.

Why a poster reading the ``fills`` table rather than a call from the engine: the ledger and the
engine are independent layers (import-linter keeps them so), and the ``fills`` table is already the
deduplicated, durable record of what the broker executed. The poster follows it from a cursor
(fill ids are ULIDs, so id order is storage order), is woken by ``account`` bus events and by a
periodic sweep, and posts each fill under the idempotency key ``fill:<fill id>``. A crash, a
restart, two nodes sweeping at once: each just replays, and a replay writes nothing.

Per account, the fills are replayed through an :class:`~brokerlink.ledger.postings.AccountBook`
from the first one, because realized P&L depends on the position before the fill; the entries of
fills already posted come out identical and :func:`~brokerlink.ledger.journal.post_many` skips
them (a different result would be an :class:`~brokerlink.ledger.journal.IdempotencyConflict`:
history changed under the ledger, which is logged and left to reconciliation).

The first time an account is seen, its opening balance is posted: the broker-reported cash minus
the cash effect of the fills the report already includes (those with a time up to the report's).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.bus.base import EventBus
from brokerlink.domain.models import Instrument
from brokerlink.kit.clock import Clock
from brokerlink.kit.errors import BrokerlinkError, Unavailable
from brokerlink.ledger import journal
from brokerlink.ledger.postings import (
    AccountBook,
    Settlement,
    apply_fill,
    cash_effect,
    fill_key,
    opening_entry,
    opening_key,
)
from brokerlink.logs import get_logger
from brokerlink.store.db import Database
from brokerlink.store.repositories.fills import FillRepository
from brokerlink.store.repositories.instruments import InstrumentRepository
from brokerlink.store.repositories.ledger import BrokerActivityRepository, LedgerRepository
from brokerlink.store.repositories.positions import BalanceRepository

_log = get_logger("brokerlink.ledger.poster")

ACCOUNT_TOPIC = "account"
"""The bus topic the links engine publishes account events on (brokerlink.engine.links.ingest; not
imported: the ledger does not depend on the engine)."""

_PAGE = 500
_ZERO = Decimal(0)


def settlement_for(broker: str) -> Settlement:
    """How the broker settles trades. The sim venue is cash-settled throughout (every position is
    margined in its quote currency), so everything it trades is ``margin``; a spot-crypto or
    cash-equity adapter would answer ``cash`` here, per broker (and asset class when one broker
    offers both)."""
    del broker  # one broker today; the mapping grows with the adapters
    return "margin"


@dataclass(slots=True)
class AccountPlan:
    """What an account's fills post, computed from all of them: the base of posting and reconciliation."""

    account_id: str
    owner_id: str
    currency: str
    entries: list[tuple[str, journal.Entry]] = field(default_factory=list)
    """``(fill id, entry)`` in storage order; fills that move no money have none."""
    fills_without_entry: int = 0


async def plan_account(session: AsyncSession, account_id: str) -> AccountPlan | None:
    """Replay every stored fill of the account into entries (nothing written). None for an unknown account."""
    found = await BrokerActivityRepository(session).account(account_id)
    if found is None:
        return None
    account, broker = found
    instruments: dict[str, Instrument] = {
        i.symbol: i for i in await InstrumentRepository(session).list_for_broker(broker)
    }
    book = AccountBook(
        account_id=account.id, owner_id=account.user_id, currency=account.currency, settlement=settlement_for(broker)
    )
    plan = AccountPlan(account_id=account.id, owner_id=account.user_id, currency=account.currency)
    fills = FillRepository(session)
    after: str | None = None
    while True:
        page = await fills.list_since(account_id, after, limit=_PAGE)
        for fill_id, fill in page:
            entry = apply_fill(book, fill_id, fill, instruments.get(fill.symbol))
            if entry is None:
                plan.fills_without_entry += 1
            else:
                plan.entries.append((fill_id, entry))
        if len(page) < _PAGE:
            return plan
        after = page[-1][0]


async def opening_entries(session: AsyncSession, plan: AccountPlan) -> list[journal.Entry] | None:
    """The opening entries still to post (one per currency the broker reports), or None while the
    broker has reported no balance yet (the account cannot be opened before it has one)."""
    reported = await BalanceRepository(session).list_for_account(plan.account_id)
    if not reported:
        return None
    ledger = LedgerRepository(session)
    posted = await ledger.entries_by_key([opening_key(plan.account_id, b.currency) for b in reported])
    result = []
    for balance in reported:
        if opening_key(plan.account_id, balance.currency) in posted:
            continue
        included = [e for _, e in plan.entries if e.occurred_at <= balance.ts]
        with localcontext(journal.EXACT):
            amount = balance.cash - sum((cash_effect(e, plan.account_id, balance.currency) for e in included), _ZERO)
        first = min([balance.ts, *(e.occurred_at for _, e in plan.entries[:1])])
        entry = opening_entry(plan.account_id, plan.owner_id, balance.currency, amount, occurred_at=first)
        if entry is not None:
            result.append(entry)
    return result


class LedgerPoster:
    """Posts fills to the journal: on bus events, on a sweep every ``every_s``, and on demand (:meth:`run_once`)."""

    def __init__(
        self,
        database: Database,
        clock: Clock,
        *,
        bus: EventBus | None = None,
        every_s: float = 30.0,
        batch: int = 100,
        node: str = "node",
    ) -> None:
        self.database = database
        self.clock = clock
        self.bus = bus
        self.every_s = every_s
        self.batch = batch
        self.node = node
        self._cursor: str | None = None
        self._opened: set[str] = set()
        self._retry: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start sweeping (the first sweep replays everything) and, with a bus, listening for account events."""
        self._tasks.append(asyncio.create_task(self._loop(), name="ledger-poster"))
        if self.bus is not None:
            self._tasks.append(asyncio.create_task(self._listen(self.bus), name="ledger-poster-bus"))

    async def stop(self) -> None:
        """Stop; an entry half-posted is rolled back with its transaction and posted by the next run."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def wake(self) -> None:
        """Run a sweep now rather than at the next tick."""
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # noqa: BLE001 - the poster must outlive a database outage; logged
                _log.exception("ledger_poster_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.every_s)
            self._wake.clear()

    async def _listen(self, bus: EventBus) -> None:
        consumer = bus.consumer(ACCOUNT_TOPIC, "ledger", self.node, start="latest")
        while True:
            try:
                messages = await consumer.read(max_count=200, block_ms=1000)
            except Unavailable as exc:
                _log.warning("ledger_bus_unavailable", error=str(exc))
                await asyncio.sleep(self.every_s)
                continue
            if messages:
                await consumer.ack(*messages)
                self._wake.set()

    async def run_once(self) -> int:
        """One sweep: open new accounts, post new fills. Returns how many entries it submitted."""
        async with self.database.session() as session:
            activity = BrokerActivityRepository(session)
            touched = set(self._retry) | {a for a in await activity.account_ids() if a not in self._opened}
            cursor = self._cursor
            while True:
                accounts, cursor = await activity.accounts_with_fills_after(cursor, limit=5000)
                if not accounts:
                    break
                touched.update(accounts)
        self._retry.clear()
        submitted = 0
        for account_id in sorted(touched):
            try:
                submitted += await self.post_account(account_id)
            except (BrokerlinkError, IntegrityError) as exc:
                # A conflict (history changed) or a concurrent poster's insert: retried next sweep.
                _log.warning("ledger_post_failed", account_id=account_id, error=str(exc))
                self._retry.add(account_id)
        self._cursor = cursor
        return submitted

    async def post_account(self, account_id: str) -> int:
        """Post the account's opening balance (once it has a reported balance) and all its fills."""
        async with self.database.session() as session:
            plan = await plan_account(session, account_id)
            if plan is None:
                return 0
            opening = await opening_entries(session, plan)
        if opening is None:
            self._retry.add(account_id)  # no broker balance yet: nothing can be posted before the opening
            return 0
        entries = [*opening, *(entry for _, entry in plan.entries)]
        await self._post(entries)
        self._opened.add(account_id)
        return len(entries)

    async def _post(self, entries: Sequence[journal.Entry]) -> None:
        for start in range(0, len(entries), self.batch):
            async with self.database.session() as session:
                await journal.post_many(session, entries[start : start + self.batch], now=self.clock.now())
                await session.commit()


__all__ = [
    "ACCOUNT_TOPIC",
    "AccountPlan",
    "LedgerPoster",
    "fill_key",
    "opening_entries",
    "plan_account",
    "settlement_for",
]
