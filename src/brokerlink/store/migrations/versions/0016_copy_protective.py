"""Copy SL/TP mirroring: protective intents in the copy outbox (ADR 0027).

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-21

The outbox (``copy_intents``) gains two actions, ``stop_loss`` and ``take_profit``, and one order
type, ``stop`` (its trigger price travels in ``limit_price``): the CHECK constraints are widened.
No column is added. On SQLite a CHECK constraint can only change by rebuilding the table (a batch
operation); ``copy_intents`` has no triggers to lose.

Hand-reviewed. No batch operation touches ``event_log``, so its triggers are left as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ACTIONS_BEFORE = "action IN ('open', 'increase', 'reduce', 'close')"
_ACTIONS_AFTER = "action IN ('open', 'increase', 'reduce', 'close', 'stop_loss', 'take_profit')"
_TYPES_BEFORE = "order_type IN ('market', 'limit')"
_TYPES_AFTER = "order_type IN ('market', 'limit', 'stop')"


def _decimal() -> sa.types.TypeEngine[Decimal]:
    return sa.Numeric().with_variant(sa.Text(), "sqlite")


def _copy_intents(action: str, order_type: str) -> sa.Table:
    """``copy_intents`` as it stands at this revision with these CHECKs: batch mode copies it (and
    needs it given, not reflected, for ``alembic upgrade --sql``)."""
    return sa.Table(
        "copy_intents",
        sa.MetaData(),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("signal_id", sa.String(length=40), nullable=True),
        sa.Column("link_id", sa.String(length=40), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("follower_account_id", sa.String(length=40), nullable=False),
        sa.Column("client_order_id", sa.String(length=128), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("side", sa.String(length=16), nullable=False),
        sa.Column("qty", _decimal(), nullable=False),
        sa.Column("order_type", sa.String(length=16), nullable=False),
        sa.Column("limit_price", _decimal(), nullable=True),
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
        sa.Column("slippage_bps", _decimal(), nullable=True),
        sa.CheckConstraint(action, name="ck_copy_intents_action"),
        sa.CheckConstraint(order_type, name="ck_copy_intents_order_type"),
        sa.CheckConstraint("side IN ('buy', 'sell')", name="ck_copy_intents_side"),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'acknowledged', 'filled', 'rejected', 'canceled', 'failed')",
            name="ck_copy_intents_status",
        ),
        sa.CheckConstraint("tif IN ('day', 'gtc', 'ioc', 'fok')", name="ck_copy_intents_tif"),
        sa.ForeignKeyConstraint(
            ["link_id"], ["copy_links.id"], name="fk_copy_intents_link_id_copy_links", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name="fk_copy_intents_order_id_orders", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["signal_id"], ["copy_signals.id"], name="fk_copy_intents_signal_id_copy_signals", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id", "follower_account_id"],
            ["subscriptions.id", "subscriptions.account_id"],
            name="fk_copy_intents_subscription_id_follower_account_id",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_copy_intents"),
        sa.UniqueConstraint(
            "follower_account_id", "client_order_id", name="uq_copy_intents_follower_account_id_client_order_id"
        ),
        sa.Index("ix_copy_intents_status_id", "status", "id"),
        sa.Index("ix_copy_intents_subscription_id_id", "subscription_id", "id"),
    )


def _swap(before: tuple[str, str], after: tuple[str, str]) -> None:
    action, order_type = after
    with op.batch_alter_table("copy_intents", copy_from=_copy_intents(*before)) as batch:
        batch.drop_constraint(op.f("ck_copy_intents_action"), type_="check")
        batch.drop_constraint(op.f("ck_copy_intents_order_type"), type_="check")
        batch.create_check_constraint(op.f("ck_copy_intents_action"), sa.text(action))
        batch.create_check_constraint(op.f("ck_copy_intents_order_type"), sa.text(order_type))


def upgrade() -> None:
    """Admit the protective actions and the stop order type."""
    _swap((_ACTIONS_BEFORE, _TYPES_BEFORE), (_ACTIONS_AFTER, _TYPES_AFTER))


def downgrade() -> None:
    """Back to trades only: protective intents are deleted first (their orders stay in ``orders``)."""
    op.execute("DELETE FROM copy_intents WHERE action IN ('stop_loss', 'take_profit') OR order_type = 'stop'")
    _swap((_ACTIONS_AFTER, _TYPES_AFTER), (_ACTIONS_BEFORE, _TYPES_BEFORE))
