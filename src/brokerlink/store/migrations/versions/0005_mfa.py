"""MFA: TOTP authenticators, recovery codes, and the MFA state of a session.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21

``mfa_totp`` holds a user's authenticator (``pending`` until confirmed, then ``active``; at most
one of each), pointing at its secret in ``vault_secrets``; ``mfa_recovery_codes`` holds salted
SHA-256 hashes of single-use recovery codes. ``sessions`` gains ``mfa_pending`` (a sign-in waiting
at the MFA step) and ``mfa_at`` (when the session last verified MFA, for step-up checks).

The upgrade only creates tables and adds columns, so it runs in place on SQLite and PostgreSQL
(and renders with ``alembic upgrade --sql``). The downgrade drops the two columns in a batch
operation, which rebuilds ``sessions`` on SQLite (it has no triggers to lose).

Hand-reviewed. No batch operation touches ``event_log``, so its triggers are left as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``mfa_totp`` and ``mfa_recovery_codes``; add the MFA columns of ``sessions``."""
    op.create_table(
        "mfa_totp",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("secret_id", sa.String(length=40), nullable=False),
        sa.Column("last_step", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'active')", name=op.f("ck_mfa_totp_status")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_mfa_totp_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfa_totp")),
        sa.UniqueConstraint("user_id", "status", name=op.f("uq_mfa_totp_user_id_status")),
    )
    op.create_index(op.f("ix_mfa_totp_user_id"), "mfa_totp", ["user_id"], unique=False)
    op.create_table(
        "mfa_recovery_codes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("totp_id", sa.String(length=40), nullable=False),
        sa.Column("salt", sa.LargeBinary(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["totp_id"], ["mfa_totp.id"], name=op.f("fk_mfa_recovery_codes_totp_id_mfa_totp"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_mfa_recovery_codes_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfa_recovery_codes")),
    )
    op.create_index(op.f("ix_mfa_recovery_codes_totp_id"), "mfa_recovery_codes", ["totp_id"], unique=False)
    op.create_index(op.f("ix_mfa_recovery_codes_user_id"), "mfa_recovery_codes", ["user_id"], unique=False)
    op.add_column("sessions", sa.Column("mfa_pending", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("sessions", sa.Column("mfa_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Drop the MFA tables and columns: every authenticator, recovery code and pending MFA step is gone.

    The TOTP secrets stay in ``vault_secrets`` (purpose ``totp_secret``) as orphans that open nothing
    without their rows; they are deleted too, so no secret outlives its purpose.
    """
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("mfa_at")
        batch.drop_column("mfa_pending")
    op.execute("DELETE FROM vault_secrets WHERE purpose = 'totp_secret'")
    op.drop_index(op.f("ix_mfa_recovery_codes_user_id"), table_name="mfa_recovery_codes")
    op.drop_index(op.f("ix_mfa_recovery_codes_totp_id"), table_name="mfa_recovery_codes")
    op.drop_table("mfa_recovery_codes")
    op.drop_index(op.f("ix_mfa_totp_user_id"), table_name="mfa_totp")
    op.drop_table("mfa_totp")
