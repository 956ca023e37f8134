"""Strategy fees: schedules, high-water marks, capital flows, accruals and settlements (ADR 0021).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-21

Five new tables, nothing rebuilt, so it runs in place on SQLite and PostgreSQL alike. Amounts are
exact decimals (``NUMERIC``; ``TEXT`` on SQLite), as everywhere.

Hand-written. No batch operation touches ``event_log``, so its triggers are left as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _money() -> sa.types.TypeEngine[Decimal]:
    return sa.Numeric().with_variant(sa.Text(), "sqlite")


def _when() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _subscription_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["subscription_id"],
        ["subscriptions.id"],
        name=op.f(f"fk_{table}_subscription_id_subscriptions"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    """Create the fee tables."""
    op.create_table(
        "fee_schedules",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("strategy_id", sa.String(length=40), nullable=False),
        sa.Column("effective_from", _when(), nullable=False),
        sa.Column("performance_pct", _money(), nullable=False),
        sa.Column("management_pct", _money(), nullable=False),
        sa.Column("volume_fee", _money(), nullable=False),
        sa.Column("volume_basis", sa.String(length=16), nullable=False),
        sa.Column("volume_currency", sa.String(length=16), nullable=False),
        sa.Column("created_at", _when(), nullable=False),
        sa.CheckConstraint("volume_basis IN ('lot', 'million')", name=op.f("ck_fee_schedules_volume_basis")),
        sa.ForeignKeyConstraint(
            ["strategy_id"], ["strategies.id"], name=op.f("fk_fee_schedules_strategy_id_strategies"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fee_schedules")),
        sa.UniqueConstraint("strategy_id", "effective_from", name=op.f("uq_fee_schedules_strategy_id_effective_from")),
    )
    op.create_table(
        "fee_states",
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("currency", sa.String(length=16), nullable=False),
        sa.Column("high_water_mark", _money(), nullable=False),
        sa.Column("last_settled_period", sa.String(length=16), nullable=True),
        sa.Column("updated_at", _when(), nullable=False),
        _subscription_fk("fee_states"),
        sa.PrimaryKeyConstraint("subscription_id", name=op.f("pk_fee_states")),
    )
    op.create_table(
        "fee_flows",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount", _money(), nullable=False),
        sa.Column("currency", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.String(length=128), nullable=False),
        sa.Column("occurred_at", _when(), nullable=False),
        sa.Column("equity_before", _money(), nullable=False),
        sa.Column("hwm_before", _money(), nullable=False),
        sa.Column("hwm_after", _money(), nullable=False),
        sa.Column("created_at", _when(), nullable=False),
        sa.CheckConstraint("kind IN ('deposit', 'withdrawal')", name=op.f("ck_fee_flows_kind")),
        _subscription_fk("fee_flows"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fee_flows")),
        sa.UniqueConstraint("subscription_id", "reference", name=op.f("uq_fee_flows_subscription_id_reference")),
    )
    op.create_table(
        "fee_accruals",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("amount", _money(), nullable=False),
        sa.Column("currency", sa.String(length=16), nullable=False),
        sa.Column("basis", _money(), nullable=False),
        sa.Column("rate", _money(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("accrued_for", _when(), nullable=False),
        sa.Column("created_at", _when(), nullable=False),
        sa.CheckConstraint("kind IN ('management', 'volume')", name=op.f("ck_fee_accruals_kind")),
        _subscription_fk("fee_accruals"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fee_accruals")),
        sa.UniqueConstraint(
            "subscription_id", "kind", "source", name=op.f("uq_fee_accruals_subscription_id_kind_source")
        ),
    )
    op.create_index(
        "ix_fee_accruals_subscription_id_period", "fee_accruals", ["subscription_id", "period"], unique=False
    )
    op.create_table(
        "fee_settlements",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("strategy_id", sa.String(length=40), nullable=False),
        sa.Column("follower_user_id", sa.String(length=40), nullable=False),
        sa.Column("provider_user_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=16), nullable=False),
        sa.Column("amount", _money(), nullable=False),
        sa.Column("provider_amount", _money(), nullable=False),
        sa.Column("platform_amount", _money(), nullable=False),
        sa.Column("rate", _money(), nullable=False),
        sa.Column("equity", _money(), nullable=True),
        sa.Column("hwm_before", _money(), nullable=True),
        sa.Column("hwm_after", _money(), nullable=True),
        sa.Column("entry_id", sa.String(length=40), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("settled_at", _when(), nullable=False),
        sa.CheckConstraint("kind IN ('performance', 'management', 'volume')", name=op.f("ck_fee_settlements_kind")),
        _subscription_fk("fee_settlements"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fee_settlements")),
        sa.UniqueConstraint(
            "subscription_id", "kind", "period", name=op.f("uq_fee_settlements_subscription_id_kind_period")
        ),
    )
    op.create_index(
        "ix_fee_settlements_follower_user_id_period", "fee_settlements", ["follower_user_id", "period"], unique=False
    )
    op.create_index(
        "ix_fee_settlements_provider_user_id_period", "fee_settlements", ["provider_user_id", "period"], unique=False
    )


def downgrade() -> None:
    """Drop the fee tables (schedules, high-water marks and invoice lines go with them)."""
    op.drop_index("ix_fee_settlements_provider_user_id_period", table_name="fee_settlements")
    op.drop_index("ix_fee_settlements_follower_user_id_period", table_name="fee_settlements")
    op.drop_table("fee_settlements")
    op.drop_index("ix_fee_accruals_subscription_id_period", table_name="fee_accruals")
    op.drop_table("fee_accruals")
    op.drop_table("fee_flows")
    op.drop_table("fee_states")
    op.drop_table("fee_schedules")
