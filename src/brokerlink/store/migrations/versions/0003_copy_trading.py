"""Copy trading.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21

Strategies, subscriptions, the provider executions the copy engine consumed (``copy_signals``),
the links between provider and follower positions (``copy_links``), the order outbox
(``copy_intents``) and what followers are shown (``copy_events``); per strategy, the provider's
net position per symbol as the engine has accounted for it (``strategy_positions``) and the last
provider fill it consumed (``strategies.fill_cursor``).

``accounts`` gains a unique index on ``(id, user_id)``: the target of the strategies' and
subscriptions' ``(account_id, owner)`` foreign keys, through which the database refuses a strategy
or a subscription on someone else's account. It is created first, because PostgreSQL needs it in
place before a foreign key can reference it. An index, not a constraint: SQLite creates an index in
place, while adding a constraint would rebuild ``accounts`` in a batch operation (which also cannot
be rendered by ``alembic upgrade --sql``).

Two partial unique indexes (one live subscription per strategy and account, one open link per
subscription and provider symbol) carry their WHERE clause for both dialects. Autogenerate does
not compare WHERE clauses, so the store tests check the behaviour instead.

Hand-reviewed. No batch operation touches ``event_log``, so its triggers are left as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOT_STOPPED = "status != 'stopped'"
_OPEN = "status = 'open'"


def upgrade() -> None:
    """Give accounts their (id, user_id) key, then create the copy trading tables, parents first."""
    op.create_index(op.f("uq_accounts_id_user_id"), "accounts", ["id", "user_id"], unique=True)
    op.create_table(
        "strategies",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("provider_user_id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("visibility", sa.String(length=16), nullable=False),
        sa.Column("min_follower_equity", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("fill_cursor", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('active', 'closed')", name=op.f("ck_strategies_status")),
        sa.CheckConstraint("visibility IN ('public', 'unlisted', 'private')", name=op.f("ck_strategies_visibility")),
        sa.ForeignKeyConstraint(
            ["account_id", "provider_user_id"],
            ["accounts.id", "accounts.user_id"],
            name=op.f("fk_strategies_account_id_provider_user_id_accounts"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_strategies")),
        sa.UniqueConstraint("id", "account_id", name=op.f("uq_strategies_id_account_id")),
        sa.UniqueConstraint("provider_user_id", "name", name=op.f("uq_strategies_provider_user_id_name")),
    )
    op.create_index(op.f("ix_strategies_account_id"), "strategies", ["account_id"], unique=False)
    op.create_table(
        "strategy_positions",
        sa.Column("strategy_id", sa.String(length=40), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("qty", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["strategy_id"], ["strategies.id"], name=op.f("fk_strategy_positions_strategy_id_strategies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("strategy_id", "symbol", name=op.f("pk_strategy_positions")),
    )  # fmt: skip
    op.create_table(
        "copy_signals",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("strategy_id", sa.String(length=40), nullable=False),
        sa.Column("provider_account_id", sa.String(length=40), nullable=False),
        sa.Column("provider_trade_id", sa.String(length=128), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("side", sa.String(length=16), nullable=False),
        sa.Column("qty", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.Column("price", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.Column("provider_position_before", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.Column("provider_position_after", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.Column("venue_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("side IN ('buy', 'sell')", name=op.f("ck_copy_signals_side")),
        sa.ForeignKeyConstraint(
            ["strategy_id", "provider_account_id"],
            ["strategies.id", "strategies.account_id"],
            name=op.f("fk_copy_signals_strategy_id_provider_account_id_strategies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_copy_signals")),
        sa.UniqueConstraint(
            "strategy_id", "provider_trade_id", name=op.f("uq_copy_signals_strategy_id_provider_trade_id")
        ),
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("strategy_id", sa.String(length=40), nullable=False),
        sa.Column("follower_user_id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("start_equity", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('active', 'paused', 'close_only', 'stopped')", name=op.f("ck_subscriptions_status")
        ),
        sa.ForeignKeyConstraint(
            ["account_id", "follower_user_id"],
            ["accounts.id", "accounts.user_id"],
            name=op.f("fk_subscriptions_account_id_follower_user_id_accounts"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["strategy_id"], ["strategies.id"], name=op.f("fk_subscriptions_strategy_id_strategies"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
        sa.UniqueConstraint("id", "account_id", name=op.f("uq_subscriptions_id_account_id")),
    )
    op.create_index(op.f("ix_subscriptions_account_id"), "subscriptions", ["account_id"], unique=False)
    op.create_index(op.f("ix_subscriptions_follower_user_id"), "subscriptions", ["follower_user_id"], unique=False)
    op.create_index(op.f("ix_subscriptions_strategy_id"), "subscriptions", ["strategy_id"], unique=False)
    op.create_index(
        op.f("uq_subscriptions_strategy_id_account_id_live"),
        "subscriptions",
        ["strategy_id", "account_id"],
        unique=True,
        sqlite_where=sa.text(_NOT_STOPPED),
        postgresql_where=sa.text(_NOT_STOPPED),
    )
    op.create_table(
        "copy_links",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("provider_symbol", sa.String(length=64), nullable=False),
        sa.Column("follower_symbol", sa.String(length=64), nullable=False),
        sa.Column("side", sa.String(length=16), nullable=False),
        sa.Column("qty", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("side IN ('buy', 'sell')", name=op.f("ck_copy_links_side")),
        sa.CheckConstraint("status IN ('open', 'closed')", name=op.f("ck_copy_links_status")),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_copy_links_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_copy_links")),
    )
    op.create_index(op.f("ix_copy_links_subscription_id"), "copy_links", ["subscription_id"], unique=False)
    op.create_index(
        op.f("uq_copy_links_subscription_id_provider_symbol_open"),
        "copy_links",
        ["subscription_id", "provider_symbol"],
        unique=True,
        sqlite_where=sa.text(_OPEN),
        postgresql_where=sa.text(_OPEN),
    )
    op.create_table(
        "copy_intents",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("signal_id", sa.String(length=40), nullable=True),
        sa.Column("link_id", sa.String(length=40), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("follower_account_id", sa.String(length=40), nullable=False),
        sa.Column("client_order_id", sa.String(length=128), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("side", sa.String(length=16), nullable=False),
        sa.Column("qty", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.Column("order_type", sa.String(length=16), nullable=False),
        sa.Column("limit_price", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=True),
        sa.Column("tif", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("signal_us", sa.BigInteger(), nullable=True),
        sa.Column("engine_us", sa.BigInteger(), nullable=True),
        sa.Column("broker_us", sa.BigInteger(), nullable=True),
        sa.Column("slippage_bps", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=True),
        sa.CheckConstraint("action IN ('open', 'increase', 'reduce', 'close')", name=op.f("ck_copy_intents_action")),
        sa.CheckConstraint("order_type IN ('market', 'limit')", name=op.f("ck_copy_intents_order_type")),
        sa.CheckConstraint("side IN ('buy', 'sell')", name=op.f("ck_copy_intents_side")),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'acknowledged', 'filled', 'rejected', 'canceled', 'failed')",
            name=op.f("ck_copy_intents_status"),
        ),
        sa.CheckConstraint("tif IN ('day', 'gtc', 'ioc', 'fok')", name=op.f("ck_copy_intents_tif")),
        sa.ForeignKeyConstraint(
            ["link_id"], ["copy_links.id"], name=op.f("fk_copy_intents_link_id_copy_links"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_copy_intents_order_id_orders"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["signal_id"], ["copy_signals.id"], name=op.f("fk_copy_intents_signal_id_copy_signals"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id", "follower_account_id"],
            ["subscriptions.id", "subscriptions.account_id"],
            name=op.f("fk_copy_intents_subscription_id_follower_account_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_copy_intents")),
        sa.UniqueConstraint(
            "follower_account_id", "client_order_id", name=op.f("uq_copy_intents_follower_account_id_client_order_id")
        ),
    )
    op.create_index(op.f("ix_copy_intents_status_id"), "copy_intents", ["status", "id"], unique=False)
    op.create_index(op.f("ix_copy_intents_subscription_id_id"), "copy_intents", ["subscription_id", "id"], unique=False)
    op.create_table(
        "copy_events",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("signal_id", sa.String(length=40), nullable=True),
        sa.Column("intent_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('subscribed', 'copied', 'skipped', 'rejected', 'failed', 'guard_tripped', 'paused', 'resumed', 'close_only', 'stopped', 'settings_changed', 'reconciled', 'stalled')",
            name=op.f("ck_copy_events_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["intent_id"], ["copy_intents.id"], name=op.f("fk_copy_events_intent_id_copy_intents"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["signal_id"], ["copy_signals.id"], name=op.f("fk_copy_events_signal_id_copy_signals"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_copy_events_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_copy_events")),
    )
    op.create_index(op.f("ix_copy_events_subscription_id_id"), "copy_events", ["subscription_id", "id"], unique=False)


def downgrade() -> None:
    """Drop the copy trading tables, children before parents, then the accounts' (id, user_id) key."""
    op.drop_index(op.f("ix_copy_events_subscription_id_id"), table_name="copy_events")
    op.drop_table("copy_events")
    op.drop_index(op.f("ix_copy_intents_subscription_id_id"), table_name="copy_intents")
    op.drop_index(op.f("ix_copy_intents_status_id"), table_name="copy_intents")
    op.drop_table("copy_intents")
    op.drop_index(op.f("uq_copy_links_subscription_id_provider_symbol_open"), table_name="copy_links")
    op.drop_index(op.f("ix_copy_links_subscription_id"), table_name="copy_links")
    op.drop_table("copy_links")
    op.drop_index(op.f("uq_subscriptions_strategy_id_account_id_live"), table_name="subscriptions")
    op.drop_index(op.f("ix_subscriptions_strategy_id"), table_name="subscriptions")
    op.drop_index(op.f("ix_subscriptions_follower_user_id"), table_name="subscriptions")
    op.drop_index(op.f("ix_subscriptions_account_id"), table_name="subscriptions")
    op.drop_table("subscriptions")
    op.drop_table("copy_signals")
    op.drop_table("strategy_positions")
    op.drop_index(op.f("ix_strategies_account_id"), table_name="strategies")
    op.drop_table("strategies")
    op.drop_index(op.f("uq_accounts_id_user_id"), table_name="accounts")
