"""Tables for the ledger journal (issue 9).

Imported at the end of :mod:`brokerlink.store.models`, so ``Base.metadata`` is complete.

* ``ledger_accounts``: the chart's accounts that have been used, with their type and owner.
* ``journal_entries`` and ``postings``: the journal. Immutable - triggers on both databases refuse
  UPDATE and DELETE (migration 0009); corrections are reversal entries. ``idempotency_key`` is
  unique and ``content_hash`` lets a replay with the same key be told apart from a conflict.
  ``reverses_entry_id`` is unique: an entry is reversed at most once.
* ``ledger_balances``: running debit and credit totals per (account, currency), updated in the
  posting transaction, so a current balance is one row read. A cache of the postings, never the
  source of truth: ``at=`` balances are computed from postings.

Amounts are never compared or summed in SQL (SQLite stores them as text), so there are no CHECK
constraints on them; :func:`brokerlink.ledger.journal.post` validates before writing.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from brokerlink.store.models import CURRENCY, ID, Base, any_of

ACCOUNT_CODE = String(200)
ACCOUNT_TYPES = ("assets", "liabilities", "equity", "income", "expenses")


class LedgerAccountRow(Base):
    """An account of the chart, created the first time a posting names it."""

    __tablename__ = "ledger_accounts"
    __table_args__ = (CheckConstraint(any_of("type", ACCOUNT_TYPES), name="type"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    code: Mapped[str] = mapped_column(ACCOUNT_CODE, unique=True)
    type: Mapped[str] = mapped_column(String(16))
    # The user the account belongs to; None for the platform's own accounts. No foreign key: the
    # journal is kept when a user goes (retention decides what happens to it, not a cascade).
    owner_id: Mapped[str | None] = mapped_column(ID, index=True)
    created_at: Mapped[datetime]


class JournalEntryRow(Base):
    """One balanced journal entry (its legs are ``postings``)."""

    __tablename__ = "journal_entries"
    __table_args__ = (Index("ix_journal_entries_occurred_at", "occurred_at"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    correlation_id: Mapped[str] = mapped_column(String(200), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text)
    occurred_at: Mapped[datetime]
    created_at: Mapped[datetime]
    reverses_entry_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("journal_entries.id", ondelete="RESTRICT"), unique=True
    )
    content_hash: Mapped[str] = mapped_column(String(64))


class PostingRow(Base):
    """One leg of an entry: a debit or a credit of one account in one currency.

    ``occurred_at`` and ``owner_id`` are copied from the entry and the account so that the two hot
    queries (an account's history up to a time, a user's postings) read one table.
    """

    __tablename__ = "postings"
    __table_args__ = (
        Index("ix_postings_account_currency_occurred_at", "account", "currency", "occurred_at"),
        Index("ix_postings_owner_id_occurred_at", "owner_id", "occurred_at"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    entry_id: Mapped[str] = mapped_column(ID, ForeignKey("journal_entries.id", ondelete="RESTRICT"), index=True)
    account: Mapped[str] = mapped_column(ACCOUNT_CODE, ForeignKey("ledger_accounts.code", ondelete="RESTRICT"))
    currency: Mapped[str] = mapped_column(CURRENCY)
    debit: Mapped[Decimal]
    credit: Mapped[Decimal]
    owner_id: Mapped[str | None] = mapped_column(ID)
    occurred_at: Mapped[datetime]


class LedgerBalanceRow(Base):
    """Running totals of one account in one currency (a cache of the postings, kept in step)."""

    __tablename__ = "ledger_balances"

    account: Mapped[str] = mapped_column(
        ACCOUNT_CODE, ForeignKey("ledger_accounts.code", ondelete="CASCADE"), primary_key=True
    )
    currency: Mapped[str] = mapped_column(CURRENCY, primary_key=True)
    debits: Mapped[Decimal]
    credits: Mapped[Decimal]
    updated_at: Mapped[datetime]


__all__ = ["Base", "JournalEntryRow", "LedgerAccountRow", "LedgerBalanceRow", "PostingRow"]
