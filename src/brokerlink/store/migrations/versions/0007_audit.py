"""The tamper-evident audit trail: hash-chained records, signed checkpoints, the chain head (ADR 0016).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21

``audit_records`` refuses UPDATE always and DELETE of any record above the latest *anchor*
checkpoint: the retention purge first appends a signed anchor (sequence N, the hash of record N),
and only then may records up to N go. ``audit_checkpoints`` refuses UPDATE and DELETE. Each
database gets the triggers in its own dialect, as ``event_log``'s in 0001. ``audit_head`` starts
with its one row: sequence 0 and the genesis hash (64 zeros), what the first record chains to; an
``AFTER INSERT`` trigger on ``audit_records`` moves it to each new record, in the same statement.

No TRUNCATE trigger on PostgreSQL: TRUNCATE needs the table owner's privilege, which can drop the
triggers anyway, and the test fixtures empty every table with it. The triggers stop mistakes and
the application's own code; what catches a determined owner is the hash chain and the signatures.

Hand-reviewed. New tables only: nothing is rebuilt, so ``event_log``'s triggers are untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_GENESIS = "0" * 64
_ANCHOR = "(SELECT COALESCE(MAX(sequence), 0) FROM audit_checkpoints WHERE kind = 'anchor')"

# SQLSTATE 23001 (restrict_violation): drivers report it as an integrity error, like SQLite's RAISE(ABORT).
_PG_TRIGGERS = [
    f"""
    CREATE FUNCTION audit_records_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' AND OLD.seq <= {_ANCHOR} THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'audit_records is append-only: % refused', TG_OP USING ERRCODE = 'restrict_violation';
    END
    $$
    """,
    """
    CREATE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION audit_records_append_only()
    """,
    """
    CREATE FUNCTION audit_records_move_head() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE audit_head SET seq = NEW.seq, hash = NEW.hash WHERE id = 1;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER audit_records_move_head AFTER INSERT ON audit_records
    FOR EACH ROW EXECUTE FUNCTION audit_records_move_head()
    """,
    """
    CREATE FUNCTION audit_checkpoints_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit_checkpoints is append-only: % refused', TG_OP USING ERRCODE = 'restrict_violation';
    END
    $$
    """,
    """
    CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_checkpoints_append_only()
    """,
]
_PG_DROP_TRIGGERS = [
    "DROP TRIGGER IF EXISTS audit_checkpoints_append_only ON audit_checkpoints",
    "DROP FUNCTION IF EXISTS audit_checkpoints_append_only()",
    "DROP TRIGGER IF EXISTS audit_records_move_head ON audit_records",
    "DROP FUNCTION IF EXISTS audit_records_move_head()",
    "DROP TRIGGER IF EXISTS audit_records_append_only ON audit_records",
    "DROP FUNCTION IF EXISTS audit_records_append_only()",
]
_SQLITE_TRIGGERS = [
    """
    CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
    BEGIN SELECT RAISE(ABORT, 'audit_records is append-only: UPDATE refused'); END
    """,
    f"""
    CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
    WHEN OLD.seq > {_ANCHOR}
    BEGIN SELECT RAISE(ABORT, 'audit_records is append-only: DELETE refused'); END
    """,
    """
    CREATE TRIGGER audit_records_move_head AFTER INSERT ON audit_records
    BEGIN UPDATE audit_head SET seq = NEW.seq, hash = NEW.hash WHERE id = 1; END
    """,
    """
    CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
    BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only: UPDATE refused'); END
    """,
    """
    CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
    BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only: DELETE refused'); END
    """,
]
_SQLITE_DROP_TRIGGERS = [
    "DROP TRIGGER IF EXISTS audit_checkpoints_no_delete",
    "DROP TRIGGER IF EXISTS audit_checkpoints_no_update",
    "DROP TRIGGER IF EXISTS audit_records_move_head",
    "DROP TRIGGER IF EXISTS audit_records_no_delete",
    "DROP TRIGGER IF EXISTS audit_records_no_update",
]


def _dialect() -> str:
    # The migration context, not op.get_bind(): it also answers in offline (--sql) mode.
    return op.get_context().dialect.name


def upgrade() -> None:
    """Create the three tables, the head's first row, then the append-only triggers."""
    seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "audit_records",
        sa.Column("seq", seq, autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_kind", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("source_ip", sa.String(length=64), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint("actor_kind IN ('user', 'client', 'system')", name=op.f("ck_audit_records_actor_kind")),
        sa.CheckConstraint("outcome IN ('success', 'failure', 'denied')", name=op.f("ck_audit_records_outcome")),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_records")),
    )
    op.create_index(op.f("ix_audit_records_at"), "audit_records", ["at"], unique=False)
    op.create_index(op.f("ix_audit_records_actor_id"), "audit_records", ["actor_id"], unique=False)
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("sequence", seq, nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.CheckConstraint("kind IN ('head', 'anchor')", name=op.f("ck_audit_checkpoints_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoints")),
    )
    op.create_index(op.f("ix_audit_checkpoints_kind_sequence"), "audit_checkpoints", ["kind", "sequence"], unique=False)
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", seq, nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint("id IN (1)", name=op.f("ck_audit_head_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    op.execute(f"INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{_GENESIS}')")  # noqa: S608 (constants)
    for statement in _SQLITE_TRIGGERS if _dialect() == "sqlite" else _PG_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    """Drop the triggers, then the tables (the trail goes with them)."""
    for statement in _SQLITE_DROP_TRIGGERS if _dialect() == "sqlite" else _PG_DROP_TRIGGERS:
        op.execute(statement)
    op.drop_table("audit_head")
    op.drop_index(op.f("ix_audit_checkpoints_kind_sequence"), table_name="audit_checkpoints")
    op.drop_table("audit_checkpoints")
    op.drop_index(op.f("ix_audit_records_actor_id"), table_name="audit_records")
    op.drop_index(op.f("ix_audit_records_at"), table_name="audit_records")
    op.drop_table("audit_records")
