"""Vault secrets.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21

The ``vault_secrets`` table: secrets sealed by ``brokerlink.security.vault`` (envelope encryption),
indexed by owner and by the id of the key-encryption key that wraps each data key.

Hand-reviewed. Binary columns are ``LargeBinary`` (``bytea`` on PostgreSQL, ``BLOB`` on SQLite).
No batch operation touches ``event_log``, so its triggers are left as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``vault_secrets`` and its two indexes."""
    op.create_table(
        "vault_secrets",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("owner_id", sa.String(length=40), nullable=False),
        sa.Column("purpose", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=128), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("key_nonce", sa.LargeBinary(), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vault_secrets")),
    )
    op.create_index(op.f("ix_vault_secrets_key_id"), "vault_secrets", ["key_id"], unique=False)
    op.create_index(op.f("ix_vault_secrets_owner_id"), "vault_secrets", ["owner_id"], unique=False)


def downgrade() -> None:
    """Drop ``vault_secrets`` (and with it every sealed secret)."""
    op.drop_index(op.f("ix_vault_secrets_owner_id"), table_name="vault_secrets")
    op.drop_index(op.f("ix_vault_secrets_key_id"), table_name="vault_secrets")
    op.drop_table("vault_secrets")
