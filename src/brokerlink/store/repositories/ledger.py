"""Queries on the ledger tables. Flushes, never commits; validation lives in brokerlink.ledger.journal.

Writes go through Core ``executemany`` (as ``_common.insert_rows`` does): the poster and the bench
write hundreds of postings per transaction, and the ORM's unit of work would cost several times
more. Amounts are summed in Python, never in SQL (SQLite stores them as text), except the running
totals on PostgreSQL (exact NUMERIC addition, see :meth:`LedgerRepository.write_balances`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar, cast

import msgspec
from sqlalchemy import Select, String, Table, bindparam, insert, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.store.models import AccountRow, BrokerConnectionRow, FillRow
from brokerlink.store.models_ledger import JournalEntryRow, LedgerAccountRow, LedgerBalanceRow, PostingRow
from brokerlink.store.repositories._common import FRESH, dialect_name, upsert_insert
from brokerlink.store.types import DecimalType, UTCDateTime

# Bound parameters per IN list: well under SQLite's 32766 and asyncpg's 32767.
_CHUNK = 500

BalanceKey = tuple[str, str]  # (account code, currency)
AccountState = tuple[str | None, dict[str, tuple[Decimal, Decimal]]]  # (owner, {currency: (debits, credits)})
S = TypeVar("S", bound=Select[*tuple[Any, ...]])

# The posting path's statements, written once (constant SQL, so the compiled form and the
# driver's prepared statement are reused whatever the batch size). Lists travel as one JSON text
# parameter (json_each on SQLite, json_array_elements on PostgreSQL): not an IN list of hundreds of
# parameters to render and bind (and, on PostgreSQL, prepare anew for every length), and not
# arrays, whose element-by-element encoding by the driver cost more than the statement itself.

# SQLite: one statement, the idempotency lookup and the accounts with their running totals, as one
# JSON document (``[[[key, id, hash], ...], [[code, owner, currency, debits, credits], ...]]``):
# hundreds of result rows cost more to hand over row by row than to build and decode as one text.
# It is a CTE, so it opens the write transaction (BEGIN IMMEDIATE, see brokerlink.store.db) before
# it reads: nothing can change the keys or the totals between this read and the writes.
_STATE_SQLITE = text(
    """
    WITH keys AS (SELECT value FROM json_each(:keys)), codes AS (SELECT value FROM json_each(:codes))
    SELECT json_array(
        (SELECT json_group_array(json_array(e.idempotency_key, e.id, e.content_hash))
         FROM keys JOIN journal_entries AS e ON e.idempotency_key = keys.value),
        (SELECT json_group_array(json_array(a.code, a.owner_id, b.currency, b.debits, b.credits))
         FROM codes JOIN ledger_accounts AS a ON a.code = codes.value
         LEFT JOIN ledger_balances AS b ON b.account = a.code)
    )
    """
).bindparams(bindparam("keys", type_=String()), bindparam("codes", type_=String()))

# PostgreSQL: the same document in one round trip, owners only (the totals are added to in SQL).
# Keys as ``= ANY(ARRAY(...))``, an index scan: as an IN (subquery) semi-join the planner priced 100
# index probes above a sequential scan of a journal of several thousand entries (1 ms at 6,000,
# growing with the journal). Cast to text: the driver would otherwise decode the document with the
# standard json module.
_STATE_POSTGRESQL = text(
    """
    SELECT CAST(json_build_array(
        (SELECT coalesce(json_agg(json_build_array(e.idempotency_key, e.id, e.content_hash)), '[]')
         FROM journal_entries AS e
         WHERE e.idempotency_key = ANY(ARRAY(SELECT json_array_elements_text(CAST(:keys AS JSON))))),
        (SELECT coalesce(json_agg(json_build_array(a.code, a.owner_id, NULL, NULL, NULL)), '[]')
         FROM ledger_accounts AS a
         WHERE a.code IN (SELECT json_array_elements_text(CAST(:codes AS JSON))))
    ) AS TEXT)
    """
).bindparams(bindparam("keys", type_=String()), bindparam("codes", type_=String()))

# What both return. Amounts are the stored text (SQLite), decoded to Decimal exactly.
_STATE = msgspec.json.Decoder(
    tuple[
        list[tuple[str, str, str]],
        list[tuple[str, str | None, str | None, Decimal | None, Decimal | None]],
    ]
)

# SQLite: the running totals over a JSON array of [account, currency, debits, credits] (amounts
# as the fixed-point text DecimalType stores). ``WHERE true`` is SQLite's required disambiguation
# of INSERT ... SELECT ... ON CONFLICT.
_BALANCES_SQLITE = text(
    """
    INSERT INTO ledger_balances (account, currency, debits, credits, updated_at)
    SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
           json_extract(value, '$[3]'), :now
    FROM json_each(:rows) WHERE true
    ON CONFLICT (account, currency) DO UPDATE
    SET debits = excluded.debits, credits = excluded.credits, updated_at = excluded.updated_at
    """
).bindparams(bindparam("rows", type_=String()), bindparam("now", type_=UTCDateTime()))

# PostgreSQL: the deltas (JSON strings, cast to NUMERIC: exact) added in SQL, rows taken in a fixed
# order (ORDER BY) so that concurrent posters lock them in the same order and cannot deadlock.
# JSONB: parsed once; ``->>`` on plain JSON re-parses the element for every field.
_BALANCES_POSTGRESQL = text(
    """
    INSERT INTO ledger_balances AS t (account, currency, debits, credits, updated_at)
    SELECT r ->> 0, r ->> 1, CAST(r ->> 2 AS NUMERIC), CAST(r ->> 3 AS NUMERIC), :now
    FROM jsonb_array_elements(CAST(:rows AS JSONB)) AS r
    ORDER BY r ->> 0, r ->> 1
    ON CONFLICT (account, currency) DO UPDATE
    SET debits = t.debits + excluded.debits, credits = t.credits + excluded.credits, updated_at = excluded.updated_at
    """
).bindparams(bindparam("rows", type_=String()), bindparam("now", type_=UTCDateTime()))

_INSERT_ENTRIES = insert(cast("Table", JournalEntryRow.__table__))
_INSERT_POSTINGS = insert(cast("Table", PostingRow.__table__))
_JSON = msgspec.json.Encoder()
_AMOUNT = DecimalType()
_ZERO = Decimal(0)


def _stored_text(amount: Decimal, dialect: Any) -> str:
    """What :class:`DecimalType` stores on SQLite for ``amount``, quickly for the usual case: the
    fixed-point text of a finite Decimal without a sign (positive, or a positive zero) is already
    its canonical form (``format`` writes a positive exponent out). Anything else (a negative zero,
    a negative amount, a float) takes DecimalType's own path and checks."""
    if type(amount) is Decimal and amount.is_finite() and not amount.is_signed():
        return format(amount, "f")
    return str(_AMOUNT.process_bind_param(amount, dialect))


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


class LedgerRepository:
    """Reads and writes of ``ledger_accounts``, ``journal_entries``, ``postings`` and ``ledger_balances``."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- reads used by posting --------------------------------------------------------------

    async def entries_by_key(self, keys: Sequence[str]) -> dict[str, tuple[str, str]]:
        """``{idempotency_key: (entry id, content hash)}`` for the keys already in the journal."""
        found: dict[str, tuple[str, str]] = {}
        for chunk in _chunks(list(keys)):
            stmt = select(JournalEntryRow.idempotency_key, JournalEntryRow.id, JournalEntryRow.content_hash).where(
                JournalEntryRow.idempotency_key.in_(chunk)
            )
            connection = await self.session.connection()
            for key, entry_id, content_hash in await connection.execute(stmt):
                found[key] = (entry_id, content_hash)
        return found

    async def posting_state(
        self, keys: Sequence[str], codes: Sequence[str]
    ) -> tuple[dict[str, tuple[str, str]], dict[str, AccountState]]:
        """What posting needs to know before it writes, in one round trip: ``{idempotency_key:
        (entry id, content hash)}`` for the keys already in the journal, and ``{code: (owner,
        {currency: (debits, credits)})}`` for the codes that exist (totals on SQLite only, read
        inside the write transaction, as :meth:`accounts_for_posting` explains)."""
        connection = await self.session.connection()
        params = {"keys": _JSON.encode(list(keys)).decode(), "codes": _JSON.encode(list(codes)).decode()}
        statement = _STATE_SQLITE if dialect_name(self.session) == "sqlite" else _STATE_POSTGRESQL
        known, found = _STATE.decode((await connection.execute(statement, params)).scalar_one())
        entries = {key: (entry_id, content_hash) for key, entry_id, content_hash in known}
        accounts: dict[str, AccountState] = {}
        for code, owner, currency, debit_sum, credit_sum in found:
            totals = accounts.setdefault(code, (owner, {}))[1]
            if currency is not None and debit_sum is not None and credit_sum is not None:
                totals[currency] = (debit_sum, credit_sum)
        return entries, accounts

    async def accounts_for_posting(
        self, codes: Sequence[str]
    ) -> dict[str, tuple[str | None, dict[str, tuple[Decimal, Decimal]]]]:
        """``{code: (owner, {currency: (debits, credits)})}`` for the codes that exist.

        The running totals are read for SQLite only, inside the write transaction: the query is a
        CTE, so it opens the transaction (``BEGIN IMMEDIATE``, the one write lock, see
        brokerlink.store.db) before it reads, and no other writer can change the totals before this
        one writes them back. A plain SELECT would run before the transaction and read totals a
        concurrent writer is about to change: a lost update. PostgreSQL adds in SQL instead
        (:meth:`write_balances`), so it reads owners only. One statement on every batch's path.
        """
        found: dict[str, tuple[str | None, dict[str, tuple[Decimal, Decimal]]]] = {}
        connection = await self.session.connection()
        sqlite = dialect_name(self.session) == "sqlite"
        for chunk in _chunks(sorted(set(codes))):
            if sqlite:
                joined = (
                    select(
                        LedgerAccountRow.code,
                        LedgerAccountRow.owner_id,
                        LedgerBalanceRow.currency,
                        LedgerBalanceRow.debits,
                        LedgerBalanceRow.credits,
                    )
                    .outerjoin(LedgerBalanceRow, LedgerBalanceRow.account == LedgerAccountRow.code)
                    .where(LedgerAccountRow.code.in_(chunk))
                    .cte("posting_accounts")
                )
                stmt = select(joined.c.code, joined.c.owner_id, joined.c.currency, joined.c.debits, joined.c.credits)
                for code, owner, currency, debit_sum, credit_sum in await connection.execute(stmt):
                    totals = found.setdefault(code, (owner, {}))[1]
                    if currency is not None:
                        # A CTE's columns lose the DecimalType: SQLite hands back the stored text.
                        totals[currency] = (Decimal(debit_sum), Decimal(credit_sum))
            else:
                owners = select(LedgerAccountRow.code, LedgerAccountRow.owner_id).where(
                    LedgerAccountRow.code.in_(chunk)
                )
                for code, owner in await connection.execute(owners):
                    found[code] = (owner, {})
        return found

    async def account_owners(self, codes: Sequence[str]) -> dict[str, str | None]:
        """``{code: owner id}`` for the codes that exist."""
        found: dict[str, str | None] = {}
        for chunk in _chunks(list(codes)):
            stmt = select(LedgerAccountRow.code, LedgerAccountRow.owner_id).where(LedgerAccountRow.code.in_(chunk))
            found.update({row.code: row.owner_id for row in await self.session.execute(stmt)})
        return found

    async def reversal_of(self, entry_id: str) -> str | None:
        """The id of the entry that reverses ``entry_id``, if any."""
        stmt = select(JournalEntryRow.id).where(JournalEntryRow.reverses_entry_id == entry_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    # --- writes ----------------------------------------------------------------------------

    async def add_accounts(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert accounts; one that a concurrent transaction created first is skipped."""
        if not rows:
            return
        await self.session.flush()
        stmt = upsert_insert(self.session, LedgerAccountRow).on_conflict_do_nothing(index_elements=["code"])
        connection = await self.session.connection()
        await connection.execute(stmt, list(rows))

    async def add_entries(self, entries: Sequence[dict[str, Any]], postings: Sequence[dict[str, Any]]) -> None:
        """Insert entries, then their postings, as two executemany statements (what
        ``_common.insert_rows`` does, with one flush for both)."""
        if not entries:
            return
        await self.session.flush()
        connection = await self.session.connection()
        await connection.execute(_INSERT_ENTRIES, list(entries))
        if postings:
            await connection.execute(_INSERT_POSTINGS, list(postings))

    async def write_balances(
        self,
        *,
        deltas: Mapping[BalanceKey, tuple[Decimal, Decimal]],
        totals: Mapping[BalanceKey, tuple[Decimal, Decimal]],
        now: datetime,
    ) -> None:
        """Bring the running ``(debits, credits)`` of each (account, currency) up to date.

        One ``INSERT ... SELECT ... ON CONFLICT DO UPDATE`` whatever the number of rows, the rows
        passed as one JSON parameter. PostgreSQL adds ``deltas`` in SQL (NUMERIC addition is exact;
        the conflicting row is locked, so concurrent posters cannot lose an addition, and rows are
        taken in a fixed order so they cannot deadlock). SQLite keeps amounts as text, so it writes
        ``totals``, computed by the caller from what :meth:`posting_state` read inside this same
        write transaction, as the text DecimalType stores (:func:`_stored_text`).
        """
        if not deltas:
            return
        connection = await self.session.connection()
        if dialect_name(self.session) == "sqlite":
            dialect = connection.dialect
            # One writer at a time on SQLite: the order of the rows does not matter.
            rows = [(a, c, _stored_text(d, dialect), _stored_text(cr, dialect)) for (a, c), (d, cr) in totals.items()]
            await connection.execute(_BALANCES_SQLITE, {"rows": _JSON.encode(rows).decode(), "now": now})
            return
        # msgspec writes a Decimal as its exact string ("1E+5" included), which NUMERIC parses as is.
        amounts = [(a, c, d, cr) for (a, c), (d, cr) in deltas.items()]
        await connection.execute(_BALANCES_POSTGRESQL, {"rows": _JSON.encode(amounts).decode(), "now": now})

    # --- reads --------------------------------------------------------------------------------

    async def entry(self, entry_id: str) -> JournalEntryRow | None:
        """One entry row."""
        stmt = select(JournalEntryRow).where(JournalEntryRow.id == entry_id)
        return (await self.session.execute(stmt, execution_options=FRESH)).scalar_one_or_none()

    async def entry_postings(self, entry_ids: Sequence[str]) -> list[PostingRow]:
        """The postings of the given entries, in id (creation) order."""
        rows: list[PostingRow] = []
        for chunk in _chunks(list(entry_ids)):
            stmt = select(PostingRow).where(PostingRow.entry_id.in_(chunk)).order_by(PostingRow.id)
            rows.extend((await self.session.execute(stmt, execution_options=FRESH)).scalars())
        return rows

    async def list_entries(
        self,
        *,
        owner_id: str | None,
        since: datetime | None,
        until: datetime | None,
        after: str | None,
        limit: int,
    ) -> list[JournalEntryRow]:
        """Entries (oldest first) with at least one posting owned by ``owner_id`` (all when None)."""
        stmt = select(JournalEntryRow)
        if owner_id is not None:
            owned = select(PostingRow.entry_id).where(PostingRow.owner_id == owner_id)
            stmt = stmt.where(JournalEntryRow.id.in_(owned))
        if since is not None:
            stmt = stmt.where(JournalEntryRow.occurred_at >= since)
        if until is not None:
            stmt = stmt.where(JournalEntryRow.occurred_at < until)
        if after is not None:
            stmt = stmt.where(JournalEntryRow.id > after)
        stmt = stmt.order_by(JournalEntryRow.id).limit(limit)
        return list((await self.session.execute(stmt, execution_options=FRESH)).scalars())

    async def running_balances(
        self, *, codes: Sequence[str] | None = None, owner_id: str | None = None, prefix: str | None = None
    ) -> list[tuple[str, str | None, str, Decimal, Decimal]]:
        """``(account, owner, currency, debit_sum, credit_sum)`` from the running totals."""
        stmt = select(
            LedgerBalanceRow.account,
            LedgerAccountRow.owner_id,
            LedgerBalanceRow.currency,
            LedgerBalanceRow.debits,
            LedgerBalanceRow.credits,
        ).join(LedgerAccountRow, LedgerAccountRow.code == LedgerBalanceRow.account)
        stmt = _filter_accounts(
            stmt,
            account_column=LedgerBalanceRow.account,
            owner_column=LedgerAccountRow.owner_id,
            codes=codes,
            owner_id=owner_id,
            prefix=prefix,
        )
        stmt = stmt.order_by(LedgerBalanceRow.account, LedgerBalanceRow.currency)
        return [tuple(row) for row in await self.session.execute(stmt)]  # type: ignore[misc]

    async def posting_rows(
        self,
        *,
        codes: Sequence[str] | None = None,
        currency: str | None = None,
        owner_id: str | None = None,
        prefix: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        at: datetime | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[PostingRow, JournalEntryRow]]:
        """Postings with their entries, in id order. ``at`` is inclusive, ``until`` exclusive."""
        stmt = select(PostingRow, JournalEntryRow).join(JournalEntryRow, JournalEntryRow.id == PostingRow.entry_id)
        stmt = _filter_accounts(
            stmt,
            account_column=PostingRow.account,
            owner_column=PostingRow.owner_id,
            codes=codes,
            owner_id=owner_id,
            prefix=prefix,
        )
        if currency is not None:
            stmt = stmt.where(PostingRow.currency == currency)
        if since is not None:
            stmt = stmt.where(PostingRow.occurred_at >= since)
        if until is not None:
            stmt = stmt.where(PostingRow.occurred_at < until)
        if at is not None:
            stmt = stmt.where(PostingRow.occurred_at <= at)
        if after is not None:
            stmt = stmt.where(PostingRow.id > after)
        stmt = stmt.order_by(PostingRow.id)
        if limit is not None:
            stmt = stmt.limit(limit)
        result = await self.session.execute(stmt, execution_options=FRESH)
        return [(row[0], row[1]) for row in result]

    async def amounts(
        self, *, codes: Sequence[str] | None = None, at: datetime | None = None
    ) -> list[tuple[str, str, Decimal, Decimal]]:
        """``(account, currency, debit, credit)`` of every posting (of ``codes``) up to ``at``."""
        stmt = select(PostingRow.account, PostingRow.currency, PostingRow.debit, PostingRow.credit)
        if codes is not None:
            stmt = stmt.where(PostingRow.account.in_(codes))
        if at is not None:
            stmt = stmt.where(PostingRow.occurred_at <= at)
        return [tuple(row) for row in await self.session.execute(stmt)]  # type: ignore[misc]

    async def totals(self) -> list[tuple[str, Decimal, Decimal]]:
        """``(currency, debit_sum, credit_sum)`` of every running balance row."""
        stmt = select(LedgerBalanceRow.currency, LedgerBalanceRow.debits, LedgerBalanceRow.credits)
        return [tuple(row) for row in await self.session.execute(stmt)]  # type: ignore[misc]


def _filter_accounts(
    stmt: S,
    *,
    account_column: Any,
    owner_column: Any,
    codes: Sequence[str] | None,
    owner_id: str | None,
    prefix: str | None,
) -> S:
    if codes is not None:
        stmt = stmt.where(account_column.in_(codes))
    if owner_id is not None:
        stmt = stmt.where(owner_column == owner_id)
    if prefix is not None:
        # autoescape: "_" is legal in a code segment and a LIKE wildcard.
        stmt = stmt.where(or_(account_column == prefix, account_column.startswith(prefix + ":", autoescape=True)))
    return stmt


class BrokerActivityRepository:
    """The store's broker-side tables as the ledger poster and reconciliation read them."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def accounts_with_fills_after(self, after_id: str | None, *, limit: int) -> tuple[list[str], str | None]:
        """Accounts with fills stored after the fill ``after_id`` (among the next ``limit``), and the last id seen."""
        stmt = select(FillRow.id, FillRow.account_id).order_by(FillRow.id).limit(limit)
        if after_id is not None:
            stmt = stmt.where(FillRow.id > after_id)
        rows = list(await self.session.execute(stmt))
        accounts = list(dict.fromkeys(row.account_id for row in rows))
        return accounts, (rows[-1].id if rows else after_id)

    async def account(self, account_id: str) -> tuple[AccountRow, str] | None:
        """An account with its connection's broker."""
        stmt = (
            select(AccountRow, BrokerConnectionRow.broker)
            .join(BrokerConnectionRow, BrokerConnectionRow.id == AccountRow.connection_id)
            .where(AccountRow.id == account_id)
        )
        row = (await self.session.execute(stmt)).first()
        return (row[0], row[1]) if row is not None else None

    async def account_ids(self, *, user_id: str | None = None) -> list[str]:
        """Every linked account (of one user), oldest first."""
        stmt = select(AccountRow.id).order_by(AccountRow.id)
        if user_id is not None:
            stmt = stmt.where(AccountRow.user_id == user_id)
        return list((await self.session.execute(stmt)).scalars())


__all__ = ["BalanceKey", "BrokerActivityRepository", "LedgerRepository"]
