"""Initial schema.

Revision ID: 0001
Revises:
Create Date: 2026-11-21

Users and sessions, broker connections and accounts, instruments, orders, fills, positions,
balances, and the append-only event log.

Hand-reviewed. Column types are plain SQLAlchemy types, not the application's: money is
``NUMERIC`` on PostgreSQL and ``TEXT`` on SQLite (see ``brokerlink.store.types``), times are
``timestamptz`` (SQLite: UTC text). Enum CHECK constraints list the values as of this revision.

The event log refuses UPDATE and DELETE with triggers, on each database in its own dialect.
Note for later revisions: a SQLite batch operation on ``event_log`` rebuilds the table and drops
its triggers; such a revision must create them again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLSTATE 23001 (restrict_violation): drivers report it as an integrity error, like SQLite's RAISE(ABORT).
_PG_APPEND_ONLY = [
    """
    CREATE FUNCTION event_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'event_log is append-only: % refused', TG_OP USING ERRCODE = 'restrict_violation';
    END
    $$
    """,
    """
    CREATE TRIGGER event_log_append_only BEFORE UPDATE OR DELETE ON event_log
    FOR EACH ROW EXECUTE FUNCTION event_log_append_only()
    """,
    """
    CREATE TRIGGER event_log_no_truncate BEFORE TRUNCATE ON event_log
    FOR EACH STATEMENT EXECUTE FUNCTION event_log_append_only()
    """,
]
_PG_DROP_APPEND_ONLY = [
    "DROP TRIGGER IF EXISTS event_log_no_truncate ON event_log",
    "DROP TRIGGER IF EXISTS event_log_append_only ON event_log",
    "DROP FUNCTION IF EXISTS event_log_append_only()",
]
_SQLITE_APPEND_ONLY = [
    """
    CREATE TRIGGER event_log_no_update BEFORE UPDATE ON event_log
    BEGIN SELECT RAISE(ABORT, 'event_log is append-only: UPDATE refused'); END
    """,
    """
    CREATE TRIGGER event_log_no_delete BEFORE DELETE ON event_log
    BEGIN SELECT RAISE(ABORT, 'event_log is append-only: DELETE refused'); END
    """,
]
_SQLITE_DROP_APPEND_ONLY = [
    "DROP TRIGGER IF EXISTS event_log_no_delete",
    "DROP TRIGGER IF EXISTS event_log_no_update",
]


def _dialect() -> str:
    # The migration context, not op.get_bind(): it also answers in offline (--sql) mode.
    return op.get_context().dialect.name


def upgrade() -> None:
    """Create every table, then the event log's append-only triggers."""
    op.create_table(
        "users",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IN ('user', 'admin', 'auditor')", name=op.f("ck_users_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_sessions_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_sessions_token_hash")),
    )
    op.create_index(op.f("ix_sessions_user_id"), "sessions", ["user_id"], unique=False)
    op.create_table(
        "broker_connections",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("broker", sa.String(length=32), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("credentials_ref", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('connecting', 'connected', 'degraded', 'disconnected', 'revoked')",
            name=op.f("ck_broker_connections_status"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_broker_connections_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broker_connections")),
        sa.UniqueConstraint("id", "user_id", name=op.f("uq_broker_connections_id_user_id")),
        sa.UniqueConstraint("user_id", "label", name=op.f("uq_broker_connections_user_id_label")),
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("connection_id", sa.String(length=40), nullable=False),
        sa.Column("venue_account_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("mode IN ('netting', 'hedging')", name=op.f("ck_accounts_mode")),
        sa.ForeignKeyConstraint(
            ["connection_id", "user_id"],
            ["broker_connections.id", "broker_connections.user_id"],
            name=op.f("fk_accounts_connection_id_user_id_broker_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_accounts_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint(
            "connection_id", "venue_account_id", name=op.f("uq_accounts_connection_id_venue_account_id")
        ),
    )
    op.create_index(op.f("ix_accounts_user_id"), "accounts", ["user_id"], unique=False)
    op.create_table(
        "instruments",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("broker", sa.String(length=32), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("venue_symbol", sa.String(length=64), nullable=False),
        sa.Column("asset_class", sa.String(length=16), nullable=False),
        sa.Column("base", sa.String(length=16), nullable=False),
        sa.Column("quote", sa.String(length=16), nullable=False),
        sa.Column("tick_size", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.Column("qty_step", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.Column("min_qty", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.Column("max_qty", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=True),
        sa.Column("min_notional", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.Column("contract_size", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.Column("tradable", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "asset_class IN ('fx', 'equity', 'crypto', 'future', 'cfd')", name=op.f("ck_instruments_asset_class")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instruments")),
        sa.UniqueConstraint("broker", "symbol", name=op.f("uq_instruments_broker_symbol")),
        sa.UniqueConstraint("broker", "venue_symbol", name=op.f("uq_instruments_broker_venue_symbol")),
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("client_order_id", sa.String(length=128), nullable=False),
        sa.Column("venue_order_id", sa.String(length=128), nullable=True),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("side", sa.String(length=16), nullable=False),
        sa.Column("qty", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("tif", sa.String(length=16), nullable=False),
        sa.Column("limit_price", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=True),
        sa.Column("stop_price", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("filled_qty", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.Column("avg_fill_price", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=True),
        sa.Column("reject_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("side IN ('buy', 'sell')", name=op.f("ck_orders_side")),
        sa.CheckConstraint(
            "status IN ('pending_new', 'new', 'partially_filled', 'filled', 'pending_cancel', 'canceled', 'expired', 'rejected')",
            name=op.f("ck_orders_status"),
        ),
        sa.CheckConstraint("tif IN ('day', 'gtc', 'ioc', 'fok')", name=op.f("ck_orders_tif")),
        sa.CheckConstraint("type IN ('market', 'limit', 'stop', 'stop_limit')", name=op.f("ck_orders_type")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_orders_account_id_accounts"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("account_id", "client_order_id", name=op.f("uq_orders_account_id_client_order_id")),
    )
    op.create_index(op.f("ix_orders_account_id_created_at"), "orders", ["account_id", "created_at"], unique=False)
    op.create_table(
        "fills",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("trade_id", sa.String(length=128), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=True),
        sa.Column("client_order_id", sa.String(length=128), nullable=True),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("side", sa.String(length=16), nullable=False),
        sa.Column("qty", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.Column("price", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.Column("fee", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.Column("fee_currency", sa.String(length=16), nullable=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("side IN ('buy', 'sell')", name=op.f("ck_fills_side")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_fills_account_id_accounts"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_fills_order_id_orders"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fills")),
        sa.UniqueConstraint("account_id", "trade_id", name=op.f("uq_fills_account_id_trade_id")),
    )
    op.create_index(op.f("ix_fills_order_id"), "fills", ["order_id"], unique=False)
    op.create_table(
        "positions",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("qty", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.Column("avg_price", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.Column("realized_pnl", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_positions_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("account_id", "symbol", name=op.f("pk_positions")),
    )
    op.create_table(
        "balances",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("currency", sa.String(length=16), nullable=False),
        sa.Column("cash", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.Column("equity", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.Column("buying_power", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.Column("margin_used", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_balances_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("account_id", "currency", name=op.f("pk_balances")),
    )
    op.create_table(
        "event_log",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("topic", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_event_log")),
        sa.UniqueConstraint("id", name=op.f("uq_event_log_id")),
    )
    op.create_index(op.f("ix_event_log_topic_seq"), "event_log", ["topic", "seq"], unique=False)
    statements = _SQLITE_APPEND_ONLY if _dialect() == "sqlite" else _PG_APPEND_ONLY
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    """Drop the triggers, then every table, children before parents."""
    statements = _SQLITE_DROP_APPEND_ONLY if _dialect() == "sqlite" else _PG_DROP_APPEND_ONLY
    for statement in statements:
        op.execute(statement)
    op.drop_index(op.f("ix_event_log_topic_seq"), table_name="event_log")
    op.drop_table("event_log")
    op.drop_table("balances")
    op.drop_table("positions")
    op.drop_index(op.f("ix_fills_order_id"), table_name="fills")
    op.drop_table("fills")
    op.drop_index(op.f("ix_orders_account_id_created_at"), table_name="orders")
    op.drop_table("orders")
    op.drop_table("instruments")
    op.drop_index(op.f("ix_accounts_user_id"), table_name="accounts")
    op.drop_table("accounts")
    op.drop_table("broker_connections")
    op.drop_index(op.f("ix_sessions_user_id"), table_name="sessions")
    op.drop_table("sessions")
    op.drop_table("users")
