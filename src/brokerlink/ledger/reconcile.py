"""Reconciliation: ledger cash per linked account against the cash the broker reports.

The broker's figure is a snapshot taken at its own time (``balances.ts``); the ledger moves on
its own schedule. So the comparison is made *at the broker's time*, and what lies between the two
is listed as explanation rather than reported as a difference:

* **fills not yet posted** with a time up to the broker's: the broker's cash includes them, the
  journal does not yet; their cash effect is priced by the same replay the poster uses;
* **postings after the broker's time**: the journal includes them, the broker's snapshot does not.

``expected = ledger cash at the broker's time + unposted fills up to then``; whatever remains of
``broker cash - expected`` is *unexplained* (a deposit nobody confirmed, a fee the fill did not
carry, a bug) and is reported through :func:`brokerlink.observe.ledger_drift`, which the alert
rules turn into an alert. An account whose opening balance is not posted yet is reported as
``pending`` and raises nothing: there is nothing to compare yet.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, localcontext
from typing import Literal

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink import observe
from brokerlink.kit.clock import Clock
from brokerlink.kit.errors import NotFound
from brokerlink.kit.periodic import Periodic
from brokerlink.ledger import chart, journal
from brokerlink.ledger.poster import plan_account
from brokerlink.ledger.postings import cash_effect, opening_key
from brokerlink.logs import get_logger
from brokerlink.store.db import Database
from brokerlink.store.repositories.ledger import BrokerActivityRepository, LedgerRepository
from brokerlink.store.repositories.positions import BalanceRepository

_log = get_logger("brokerlink.ledger.reconcile")
_ZERO = Decimal(0)

Status = Literal["ok", "explained", "unexplained", "pending"]


class UnpostedFill(msgspec.Struct, frozen=True, kw_only=True):
    """A stored fill whose entry is not in the journal yet, and what it will do to cash."""

    fill_id: str
    occurred_at: datetime
    cash_effect: Decimal
    description: str


class Reconciliation(msgspec.Struct, frozen=True, kw_only=True):
    """One account in one currency: the broker's cash, the ledger's, and what explains the gap."""

    account_id: str
    currency: str
    status: Status
    broker_cash: Decimal
    broker_at: datetime
    ledger_cash: Decimal
    """Ledger cash now (every posting)."""
    ledger_cash_at_broker_time: Decimal
    difference: Decimal
    """``broker_cash - ledger_cash``."""
    unexplained: Decimal
    """``broker_cash - (ledger cash at the broker's time + unposted fills up to then)``."""
    unposted_fills: tuple[UnpostedFill, ...] = ()
    later_postings: tuple[journal.PostingView, ...] = ()


async def reconcile_account(session: AsyncSession, account_id: str) -> list[Reconciliation]:
    """Reconcile one account, per currency the broker reports. Reads only; raises NotFound for an unknown account."""
    plan = await plan_account(session, account_id)
    if plan is None:
        raise NotFound(f"account {account_id} not found")
    ledger = LedgerRepository(session)
    posted = await ledger.entries_by_key([entry.idempotency_key for _, entry in plan.entries])
    cash_code = chart.cash(account_id)
    result = []
    for reported in await BalanceRepository(session).list_for_account(account_id):
        currency, at = reported.currency, reported.ts
        now_cash = await journal.balance(session, cash_code, currency)
        then_cash = await journal.balance(session, cash_code, currency, at=at)
        opened = bool(await ledger.entries_by_key([opening_key(account_id, currency)])) or bool(now_cash)
        unposted = tuple(
            UnpostedFill(
                fill_id=fill_id,
                occurred_at=entry.occurred_at,
                cash_effect=cash_effect(entry, account_id, currency),
                description=entry.description,
            )
            for fill_id, entry in plan.entries
            if entry.idempotency_key not in posted and cash_effect(entry, account_id, currency)
        )
        with localcontext(journal.EXACT):
            pending_effect = sum((u.cash_effect for u in unposted if u.occurred_at <= at), _ZERO)
        later = tuple(
            p
            for p in await journal.postings(session, account=cash_code, since=at, limit=10_000)
            if p.currency == currency and p.occurred_at > at
        )
        with localcontext(journal.EXACT):
            unexplained = reported.cash - (then_cash + pending_effect)
            difference = reported.cash - now_cash
        status: Status
        if not opened:
            status = "pending"
        elif unexplained:
            status = "unexplained"
        elif difference:
            status = "explained"
        else:
            status = "ok"
        result.append(
            Reconciliation(
                account_id=account_id,
                currency=currency,
                status=status,
                broker_cash=reported.cash,
                broker_at=at,
                ledger_cash=now_cash,
                ledger_cash_at_broker_time=then_cash,
                difference=difference,
                unexplained=unexplained if opened else _ZERO,
                unposted_fills=unposted,
                later_postings=later,
            )
        )
    return result


def report_drift(results: list[Reconciliation]) -> None:
    """Call :func:`brokerlink.observe.ledger_drift` for every unexplained difference."""
    for item in results:
        if item.status == "unexplained":
            _log.warning(
                "ledger_drift", account_id=item.account_id, currency=item.currency, unexplained=str(item.unexplained)
            )
            observe.ledger_drift(account_id=item.account_id, currency=item.currency, unexplained=str(item.unexplained))


async def reconcile_all(database: Database, *, user_id: str | None = None) -> list[Reconciliation]:
    """Reconcile every linked account (of one user) and report unexplained differences."""
    async with database.session() as session:
        account_ids = await BrokerActivityRepository(session).account_ids(user_id=user_id)
    results: list[Reconciliation] = []
    for account_id in account_ids:
        async with database.session() as session:
            results.extend(await reconcile_account(session, account_id))
    report_drift(results)
    return results


class Reconciler:
    """Runs :func:`reconcile_all` every ``every_s`` (setting ``ledger_reconcile_every_s``)."""

    def __init__(self, database: Database, clock: Clock, *, every_s: float) -> None:
        self.database = database
        self.clock = clock
        self.every_s = every_s
        # The first run after one period: the poster opens the accounts first.
        self.schedule = Periodic("ledger_reconcile", every_s, self._run_once)

    async def _run_once(self) -> None:
        await reconcile_all(self.database)

    def start(self) -> None:
        """Start the schedule."""
        self.schedule.start()

    async def stop(self) -> None:
        """Stop the schedule."""
        await self.schedule.stop()


__all__ = ["Reconciler", "Reconciliation", "UnpostedFill", "reconcile_account", "reconcile_all", "report_drift"]
