"""Statistics: equity snapshots of accounts and subscriptions.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-21

``equity_snapshots`` holds periodic samples (cash, equity, net external flow since the previous
sample) of each linked account and each live subscription; the statistics (time-weighted return,
drawdowns, Sharpe and Sortino) and the equity curves are computed from them. A new table only:
nothing is rebuilt, so it runs in place on SQLite and PostgreSQL alike.

Hand-reviewed. No batch operation touches ``event_log``, so its triggers are left as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DECIMAL = sa.Numeric().with_variant(sa.Text(), "sqlite")


def upgrade() -> None:
    """Create ``equity_snapshots``."""
    op.create_table(
        "equity_snapshots",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("series", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=True),
        sa.Column("currency", sa.String(length=16), nullable=False),
        sa.Column("cash", _DECIMAL, nullable=False),
        sa.Column("equity", _DECIMAL, nullable=False),
        sa.Column("net_flow", _DECIMAL, nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('account', 'subscription')", name=op.f("ck_equity_snapshots_kind")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_equity_snapshots_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_equity_snapshots_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_equity_snapshots")),
        sa.UniqueConstraint("series", "ts", name=op.f("uq_equity_snapshots_series_ts")),
    )
    op.create_index(op.f("ix_equity_snapshots_account_id"), "equity_snapshots", ["account_id"], unique=False)
    op.create_index(op.f("ix_equity_snapshots_subscription_id"), "equity_snapshots", ["subscription_id"], unique=False)


def downgrade() -> None:
    """Drop ``equity_snapshots`` (the statistics start over from the next sample)."""
    op.drop_index(op.f("ix_equity_snapshots_subscription_id"), table_name="equity_snapshots")
    op.drop_index(op.f("ix_equity_snapshots_account_id"), table_name="equity_snapshots")
    op.drop_table("equity_snapshots")
