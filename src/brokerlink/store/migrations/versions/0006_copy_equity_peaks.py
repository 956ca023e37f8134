"""Copy equity peaks: each subscription's highest equity in its current drawdown period.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21

``copy_equity_peaks`` holds one row per subscription: the start of the drawdown period the peak
belongs to and the highest follower equity seen since. The drawdown guard measures from it. A new
table only: nothing is rebuilt, so it runs in place on SQLite and PostgreSQL alike.

Hand-reviewed. No batch operation touches ``event_log``, so its triggers are left as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``copy_equity_peaks``."""
    op.create_table(
        "copy_equity_peaks",
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("peak_equity", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_copy_equity_peaks_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subscription_id", name=op.f("pk_copy_equity_peaks")),
    )


def downgrade() -> None:
    """Drop ``copy_equity_peaks`` (the drawdown guard starts its peaks over)."""
    op.drop_table("copy_equity_peaks")
