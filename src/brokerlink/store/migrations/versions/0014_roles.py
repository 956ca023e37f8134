"""Roles: the provider role (issue 5).

``users.role`` admits ``provider`` (may publish strategies, granted by an admin) besides ``user``,
``admin`` and ``auditor``. Only the CHECK constraint changes; on SQLite, batch mode rebuilds the
table with the new constraint (the other tables' foreign keys name ``users`` and survive the rename).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WITH_PROVIDER = "role IN ('user', 'provider', 'admin', 'auditor')"
_WITHOUT_PROVIDER = "role IN ('user', 'admin', 'auditor')"


def _users(check: str) -> sa.Table:
    """``users`` as it stands at this revision with the CHECK ``check``: batch mode copies it (and
    needs it given, not reflected, for ``alembic upgrade --sql``)."""
    return sa.Table(
        "users",
        sa.MetaData(),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(check, name="ck_users_role"),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
    )


def _replace_check(old: str, new: str) -> None:
    with op.batch_alter_table("users", copy_from=_users(old)) as batch:
        batch.drop_constraint(op.f("ck_users_role"), type_="check")
        batch.create_check_constraint(op.f("ck_users_role"), sa.text(new))


def upgrade() -> None:
    """Admit the provider role."""
    _replace_check(_WITHOUT_PROVIDER, _WITH_PROVIDER)


def downgrade() -> None:
    """Providers become users again (publishing needs the role; their strategies stay), then the old CHECK."""
    op.execute("UPDATE users SET role = 'user' WHERE role = 'provider'")
    _replace_check(_WITH_PROVIDER, _WITHOUT_PROVIDER)
