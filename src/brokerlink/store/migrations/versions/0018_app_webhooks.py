"""Apps' webhook endpoints: the consent an endpoint was registered under (issue 8, ADR 0033).

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-23

One nullable column and its index on ``webhook_endpoints``: ``consent_id`` names the consent a
third-party app registered the endpoint under (null for a user's own endpoints). Deliveries to such
an endpoint carry only what that consent covers, and end with it. Adding a nullable column runs in
place on SQLite and PostgreSQL alike.

Hand-reviewed. No batch operation touches ``event_log``, so its triggers are left as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``webhook_endpoints.consent_id`` and its index."""
    op.add_column("webhook_endpoints", sa.Column("consent_id", sa.String(length=40), nullable=True))
    op.create_index(op.f("ix_webhook_endpoints_consent_id"), "webhook_endpoints", ["consent_id"], unique=False)


def downgrade() -> None:
    """Drop them again."""
    op.drop_index(op.f("ix_webhook_endpoints_consent_id"), table_name="webhook_endpoints")
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.drop_column("consent_id")
