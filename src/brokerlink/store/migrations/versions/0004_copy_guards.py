"""Copy guards: a follower symbol's run of rejected copy orders, and its pause.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21

``copy_symbol_pauses`` holds one row per subscription and follower symbol while copy orders in that
symbol keep being refused: ``rejects`` counts the consecutive refusals, ``paused_at`` is set once the
subscription's ``pause_symbol_after_rejects`` is reached. A new table only: nothing is rebuilt, so
it runs in place on SQLite and PostgreSQL alike (and renders with ``alembic upgrade --sql``).
The copy events' kinds already include ``guard_tripped``, ``stalled`` and ``resumed``.

Hand-reviewed. No batch operation touches ``event_log``, so its triggers are left as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``copy_symbol_pauses``."""
    op.create_table(
        "copy_symbol_pauses",
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("rejects", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_copy_symbol_pauses_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subscription_id", "symbol", name=op.f("pk_copy_symbol_pauses")),
    )


def downgrade() -> None:
    """Drop ``copy_symbol_pauses`` (every pause is lifted and every count forgotten)."""
    op.drop_table("copy_symbol_pauses")
