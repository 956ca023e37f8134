"""The ledger journal: accounts, entries, postings, running balances.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-21

``journal_entries`` and ``postings`` are immutable: triggers refuse UPDATE and DELETE on each
database in its own dialect (as 0001 does for ``event_log``), so a correction can only be a
reversal entry. TRUNCATE is left alone on PostgreSQL (it fires no row triggers): the test fixtures
empty every table with it between tests, and retention is the one place that may ever remove a
journal. ``ledger_balances`` is a cache of the postings kept in step by the posting
transaction, and is updated in place. New tables only: nothing is rebuilt, so the triggers of
earlier revisions are untouched. A later SQLite batch operation on the two journal tables would
drop their triggers and must create them again.

Hand-written.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_IMMUTABLE = ("journal_entries", "postings")


def _pg_immutable(table: str) -> list[str]:
    # SQLSTATE 23001 (restrict_violation): drivers report it as an integrity error, like SQLite's RAISE(ABORT).
    return [
        f"""
        CREATE FUNCTION {table}_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '{table} is immutable: % refused', TG_OP USING ERRCODE = 'restrict_violation';
        END
        $$
        """,
        f"""
        CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table}
        FOR EACH ROW EXECUTE FUNCTION {table}_immutable()
        """,
    ]


def _pg_drop_immutable(table: str) -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {table}_immutable ON {table}",
        f"DROP FUNCTION IF EXISTS {table}_immutable()",
    ]


def _sqlite_immutable(table: str) -> list[str]:
    return [
        f"""
        CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
        BEGIN SELECT RAISE(ABORT, '{table} is immutable: UPDATE refused'); END
        """,
        f"""
        CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
        BEGIN SELECT RAISE(ABORT, '{table} is immutable: DELETE refused'); END
        """,
    ]


def _sqlite_drop_immutable(table: str) -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {table}_no_delete", f"DROP TRIGGER IF EXISTS {table}_no_update"]


def _dialect() -> str:
    # The migration context, not op.get_bind(): it also answers in offline (--sql) mode.
    return op.get_context().dialect.name


def _decimal() -> sa.types.TypeEngine[Decimal]:
    return sa.Numeric().with_variant(sa.Text(), "sqlite")


def upgrade() -> None:
    """Create the four ledger tables, then the journal's immutability triggers."""
    op.create_table(
        "ledger_accounts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("code", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("owner_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "type IN ('assets', 'liabilities', 'equity', 'income', 'expenses')", name=op.f("ck_ledger_accounts_type")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_accounts")),
        sa.UniqueConstraint("code", name=op.f("uq_ledger_accounts_code")),
    )
    op.create_index(op.f("ix_ledger_accounts_owner_id"), "ledger_accounts", ["owner_id"], unique=False)
    op.create_table(
        "journal_entries",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("correlation_id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reverses_entry_id", sa.String(length=40), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["reverses_entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_journal_entries_reverses_entry_id_journal_entries"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journal_entries")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_journal_entries_idempotency_key")),
        sa.UniqueConstraint("reverses_entry_id", name=op.f("uq_journal_entries_reverses_entry_id")),
    )
    op.create_index(op.f("ix_journal_entries_correlation_id"), "journal_entries", ["correlation_id"], unique=False)
    op.create_index("ix_journal_entries_occurred_at", "journal_entries", ["occurred_at"], unique=False)
    op.create_table(
        "postings",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("entry_id", sa.String(length=40), nullable=False),
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=16), nullable=False),
        sa.Column("debit", _decimal(), nullable=False),
        sa.Column("credit", _decimal(), nullable=False),
        sa.Column("owner_id", sa.String(length=40), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account"], ["ledger_accounts.code"], name=op.f("fk_postings_account_ledger_accounts"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["journal_entries.id"], name=op.f("fk_postings_entry_id_journal_entries"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_postings")),
    )
    op.create_index(op.f("ix_postings_entry_id"), "postings", ["entry_id"], unique=False)
    op.create_index(
        "ix_postings_account_currency_occurred_at", "postings", ["account", "currency", "occurred_at"], unique=False
    )
    op.create_index("ix_postings_owner_id_occurred_at", "postings", ["owner_id", "occurred_at"], unique=False)
    op.create_table(
        "ledger_balances",
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=16), nullable=False),
        sa.Column("debits", _decimal(), nullable=False),
        sa.Column("credits", _decimal(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account"],
            ["ledger_accounts.code"],
            name=op.f("fk_ledger_balances_account_ledger_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account", "currency", name=op.f("pk_ledger_balances")),
    )
    for table in _IMMUTABLE:
        for statement in _pg_immutable(table) if _dialect() == "postgresql" else _sqlite_immutable(table):
            op.execute(statement)


def downgrade() -> None:
    """Drop the triggers, then the tables (the journal with them)."""
    for table in _IMMUTABLE:
        for statement in _pg_drop_immutable(table) if _dialect() == "postgresql" else _sqlite_drop_immutable(table):
            op.execute(statement)
    op.drop_table("ledger_balances")
    op.drop_index("ix_postings_owner_id_occurred_at", table_name="postings")
    op.drop_index("ix_postings_account_currency_occurred_at", table_name="postings")
    op.drop_index(op.f("ix_postings_entry_id"), table_name="postings")
    op.drop_table("postings")
    op.drop_index("ix_journal_entries_occurred_at", table_name="journal_entries")
    op.drop_index(op.f("ix_journal_entries_correlation_id"), table_name="journal_entries")
    op.drop_table("journal_entries")
    op.drop_index(op.f("ix_ledger_accounts_owner_id"), table_name="ledger_accounts")
    op.drop_table("ledger_accounts")
