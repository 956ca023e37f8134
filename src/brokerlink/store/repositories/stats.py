"""Queries behind the statistics and statements: equity snapshots, and the reads they combine.

Amounts are summed in Python, never in SQL: on SQLite they are text. Times compare in SQL (both
databases order them correctly, see :class:`~brokerlink.store.types.UTCDateTime`).

The journal reads here (:meth:`StatsRepository.capital_flow`, :meth:`StatsRepository.postings` and
:meth:`StatsRepository.posting_total`) take the account *code* from the caller: the chart of
accounts is the ledger layer's, above this one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

import msgspec
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.copy import LIVE_SUBSCRIPTION_STATUSES, Subscription
from brokerlink.domain.enums import ConnectionState
from brokerlink.domain.models import Fill
from brokerlink.kit.ids import new_id
from brokerlink.store.mapping import fill_from_row, subscription_from_row
from brokerlink.store.models import (
    AccountRow,
    BrokerConnectionRow,
    CopyIntentRow,
    FillRow,
    InstrumentRow,
    SubscriptionRow,
)
from brokerlink.store.models_ledger import JournalEntryRow, PostingRow
from brokerlink.store.models_stats import EquitySnapshotRow, SnapshotKind
from brokerlink.store.repositories._common import FRESH, upsert_insert

_IN_CHUNK = 500
_ZERO = Decimal(0)


class EquitySnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """One sample of a series (an account or a subscription): see :mod:`brokerlink.store.models_stats`."""

    series: str
    kind: SnapshotKind
    account_id: str
    subscription_id: str | None = None
    currency: str
    cash: Decimal
    equity: Decimal
    net_flow: Decimal = _ZERO
    ts: datetime


class PostingLine(msgspec.Struct, frozen=True, kw_only=True):
    """One posting to an account code, with what its entry says about it."""

    posting_id: str
    entry_id: str
    account: str
    kind: str
    description: str
    occurred_at: datetime
    currency: str
    debit: Decimal
    credit: Decimal


class SampledAccount(msgspec.Struct, frozen=True, kw_only=True):
    """An account the sampler measures, with its broker (which names its instruments)."""

    account_id: str
    user_id: str
    broker: str
    currency: str


def _snapshot(row: EquitySnapshotRow) -> EquitySnapshot:
    return EquitySnapshot(
        series=row.series,
        kind=SnapshotKind(row.kind),
        account_id=row.account_id,
        subscription_id=row.subscription_id,
        currency=row.currency,
        cash=row.cash,
        equity=row.equity,
        net_flow=row.net_flow,
        ts=row.ts,
    )


def _line(posting: PostingRow, kind: object, description: object) -> PostingLine:
    return PostingLine(
        posting_id=posting.id,
        entry_id=posting.entry_id,
        account=posting.account,
        kind=str(kind),
        description=str(description),
        occurred_at=posting.occurred_at,
        currency=posting.currency,
        debit=posting.debit,
        credit=posting.credit,
    )


class StatsRepository:
    """Queries on ``equity_snapshots`` and the reads statistics need from other tables. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- snapshots ---------------------------------------------------------------------------

    async def add_many(self, snapshots: Sequence[EquitySnapshot]) -> int:
        """Store samples; a series already sampled at that exact ``ts`` keeps its first one. Returns rows written."""
        if not snapshots:
            return 0
        await self.session.flush()
        written = 0
        for snapshot in snapshots:
            values = msgspec.structs.asdict(snapshot) | {"id": new_id("eqs"), "kind": snapshot.kind.value}
            insert = upsert_insert(self.session, EquitySnapshotRow).values(values)
            stmt = insert.on_conflict_do_nothing(index_elements=["series", "ts"]).returning(EquitySnapshotRow.id)
            if (await self.session.execute(stmt)).scalar_one_or_none() is not None:
                written += 1
        return written

    async def latest_many(self, series: Iterable[str]) -> dict[str, EquitySnapshot]:
        """The most recent sample of each of these series (series never sampled are absent)."""
        ids = sorted(set(series))
        found: dict[str, EquitySnapshot] = {}
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            newest = (
                select(EquitySnapshotRow.series, func.max(EquitySnapshotRow.ts).label("ts"))
                .where(EquitySnapshotRow.series.in_(chunk))
                .group_by(EquitySnapshotRow.series)
                .subquery()
            )
            stmt = select(EquitySnapshotRow).join(
                newest, (newest.c.series == EquitySnapshotRow.series) & (newest.c.ts == EquitySnapshotRow.ts)
            )
            for row in (await self.session.execute(stmt, execution_options=FRESH)).scalars():
                found[row.series] = _snapshot(row)
        return found

    async def series(
        self, series: str, *, since: datetime | None = None, until: datetime | None = None, limit: int = 100_000
    ) -> list[EquitySnapshot]:
        """A series' samples with ``since <= ts <= until``, oldest first (at most ``limit``, the oldest ones)."""
        stmt = select(EquitySnapshotRow).where(EquitySnapshotRow.series == series)
        if since is not None:
            stmt = stmt.where(EquitySnapshotRow.ts >= since)
        if until is not None:
            stmt = stmt.where(EquitySnapshotRow.ts <= until)
        stmt = stmt.order_by(EquitySnapshotRow.ts).limit(limit)
        return [_snapshot(row) for row in (await self.session.execute(stmt, execution_options=FRESH)).scalars()]

    async def last_before(self, series: str, ts: datetime) -> EquitySnapshot | None:
        """The series' last sample strictly before ``ts`` (a period's opening value)."""
        stmt = (
            select(EquitySnapshotRow)
            .where(EquitySnapshotRow.series == series, EquitySnapshotRow.ts < ts)
            .order_by(EquitySnapshotRow.ts.desc())
            .limit(1)
        )
        row = (await self.session.execute(stmt, execution_options=FRESH)).scalar_one_or_none()
        return None if row is None else _snapshot(row)

    # --- what the sampler measures -----------------------------------------------------------

    async def sampled_accounts(self) -> list[SampledAccount]:
        """Every account whose connection is not revoked, oldest first, with its broker."""
        stmt = (
            select(AccountRow.id, AccountRow.user_id, BrokerConnectionRow.broker, AccountRow.currency)
            .join(BrokerConnectionRow, BrokerConnectionRow.id == AccountRow.connection_id)
            .where(BrokerConnectionRow.status != ConnectionState.REVOKED.value)
            .order_by(AccountRow.id)
        )
        return [
            SampledAccount(account_id=r[0], user_id=r[1], broker=r[2], currency=r[3])
            for r in await self.session.execute(stmt)
        ]

    async def live_subscriptions(self) -> list[Subscription]:
        """Every subscription not stopped, oldest first."""
        stmt = (
            select(SubscriptionRow)
            .where(SubscriptionRow.status.in_([s.value for s in LIVE_SUBSCRIPTION_STATUSES]))
            .order_by(SubscriptionRow.id)
        )
        return [subscription_from_row(r) for r in (await self.session.execute(stmt, execution_options=FRESH)).scalars()]

    async def broker_of(self, account_id: str) -> str | None:
        """The broker of the account's connection."""
        stmt = (
            select(BrokerConnectionRow.broker)
            .join(AccountRow, AccountRow.connection_id == BrokerConnectionRow.id)
            .where(AccountRow.id == account_id)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def instrument_terms(self, broker: str, symbols: Iterable[str]) -> dict[str, tuple[Decimal, str, str]]:
        """``symbol -> (contract_size, quote currency, asset class)`` of the broker's instruments among ``symbols``."""
        wanted = sorted(set(symbols))
        if not wanted:
            return {}
        stmt = select(InstrumentRow.symbol, InstrumentRow.contract_size, InstrumentRow.quote, InstrumentRow.asset_class)
        stmt = stmt.where(InstrumentRow.broker == broker, InstrumentRow.symbol.in_(wanted))
        return {str(r[0]): (Decimal(r[1]), str(r[2]), str(r[3])) for r in await self.session.execute(stmt)}

    # --- fills -------------------------------------------------------------------------------

    async def fills_for_account(
        self, account_id: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[Fill]:
        """The account's fills by time (then storage order), optionally within ``[since, until)``."""
        stmt = select(FillRow).where(FillRow.account_id == account_id)
        if since is not None:
            stmt = stmt.where(FillRow.ts >= since)
        if until is not None:
            stmt = stmt.where(FillRow.ts < until)
        stmt = stmt.order_by(FillRow.ts, FillRow.id)
        return [fill_from_row(row) for row in (await self.session.execute(stmt)).scalars()]

    async def fills_for_subscription(self, subscription_id: str) -> list[Fill]:
        """The follower fills of a subscription's own copy orders (matched by client order id), by time."""
        stmt = (
            select(FillRow)
            .join(
                CopyIntentRow,
                (CopyIntentRow.follower_account_id == FillRow.account_id)
                & (CopyIntentRow.client_order_id == FillRow.client_order_id),
            )
            .where(CopyIntentRow.subscription_id == subscription_id)
            .order_by(FillRow.ts, FillRow.id)
        )
        return [fill_from_row(row) for row in (await self.session.execute(stmt)).scalars()]

    # --- the journal -------------------------------------------------------------------------

    async def capital_flow(self, code: str, *, after: datetime | None, until: datetime) -> Decimal:
        """Credits minus debits of an equity (capital) account with ``after < occurred_at <= until``:
        deposits minus withdrawals, whatever their currency (an account's capital is in its own)."""
        stmt = select(PostingRow.debit, PostingRow.credit).where(
            PostingRow.account == code, PostingRow.occurred_at <= until
        )
        if after is not None:
            stmt = stmt.where(PostingRow.occurred_at > after)
        total = _ZERO
        for debit, credit in await self.session.execute(stmt):
            total += Decimal(credit) - Decimal(debit)
        return total

    async def postings(self, code: str, currency: str, *, since: datetime, until: datetime) -> list[PostingLine]:
        """Postings to ``code`` in ``currency`` with ``since <= occurred_at < until``, in booking order."""
        stmt = (
            select(PostingRow, JournalEntryRow.kind, JournalEntryRow.description)
            .join(JournalEntryRow, JournalEntryRow.id == PostingRow.entry_id)
            .where(
                PostingRow.account == code,
                PostingRow.currency == currency,
                PostingRow.occurred_at >= since,
                PostingRow.occurred_at < until,
            )
            .order_by(PostingRow.occurred_at, PostingRow.id)
        )
        return [_line(p, kind, description) for p, kind, description in await self.session.execute(stmt)]

    async def postings_of_owner(
        self, owner_id: str, prefixes: Sequence[str], *, since: datetime, until: datetime
    ) -> list[PostingLine]:
        """A user's postings to accounts whose code starts with one of ``prefixes``, ``since <= t < until``."""
        stmt = (
            select(PostingRow, JournalEntryRow.kind, JournalEntryRow.description)
            .join(JournalEntryRow, JournalEntryRow.id == PostingRow.entry_id)
            .where(
                PostingRow.owner_id == owner_id,
                or_(*(PostingRow.account.startswith(prefix, autoescape=True) for prefix in prefixes)),
                PostingRow.occurred_at >= since,
                PostingRow.occurred_at < until,
            )
            .order_by(PostingRow.occurred_at, PostingRow.id)
        )
        return [_line(p, kind, description) for p, kind, description in await self.session.execute(stmt)]

    async def posting_total(self, code: str, currency: str, *, before: datetime) -> Decimal:
        """Debits minus credits of ``code`` in ``currency`` booked before ``before`` (a debit-normal balance)."""
        stmt = select(PostingRow.debit, PostingRow.credit).where(
            PostingRow.account == code, PostingRow.currency == currency, PostingRow.occurred_at < before
        )
        total = _ZERO
        for debit, credit in await self.session.execute(stmt):
            total += Decimal(debit) - Decimal(credit)
        return total
