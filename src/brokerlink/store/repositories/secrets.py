"""Sealed secrets (``vault_secrets``). No domain struct: this repository returns :class:`VaultSecretRow`.

It stores and returns only what the vault (``brokerlink.security.vault``) sealed: ciphertext, the
wrapped data key, the nonces and the id of the key-encryption key. Nothing here can decrypt, and
nothing here should ever be handed plaintext; sealing and opening are the vault's job.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.kit.ids import new_id
from brokerlink.store.models import VaultSecretRow
from brokerlink.store.repositories._common import FRESH, rowcount


class SecretRepository:
    """Queries on ``vault_secrets``. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self,
        *,
        owner_id: str,
        purpose: str,
        key_id: str,
        wrapped_key: bytes,
        key_nonce: bytes,
        nonce: bytes,
        ciphertext: bytes,
        now: datetime,
    ) -> VaultSecretRow:
        """Insert a sealed secret under a new ``sec_...`` id."""
        row = VaultSecretRow(
            id=new_id("sec"),
            owner_id=owner_id,
            purpose=purpose,
            key_id=key_id,
            wrapped_key=wrapped_key,
            key_nonce=key_nonce,
            nonce=nonce,
            ciphertext=ciphertext,
            created_at=now,
        )
        self.session.add(row)
        await self.session.flush()
        return row

    async def get_by_id(self, secret_id: str) -> VaultSecretRow | None:
        """The secret with this id, whoever owns it."""
        return await self.session.get(VaultSecretRow, secret_id)

    async def get_for_owner(self, secret_id: str, owner_id: str) -> VaultSecretRow | None:
        """The secret if it belongs to ``owner_id``; None if it does not exist or belongs to another owner."""
        stmt = select(VaultSecretRow).where(VaultSecretRow.id == secret_id, VaultSecretRow.owner_id == owner_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def list_for_owner(self, owner_id: str) -> list[VaultSecretRow]:
        """An owner's secrets, oldest first."""
        stmt = select(VaultSecretRow).where(VaultSecretRow.owner_id == owner_id).order_by(VaultSecretRow.id)
        return list((await self.session.execute(stmt)).scalars())

    async def count_for_key(self, key_id: str) -> int:
        """How many secrets have their data key wrapped under ``key_id`` (a key in use cannot be retired)."""
        stmt = select(func.count()).select_from(VaultSecretRow).where(VaultSecretRow.key_id == key_id)
        return int((await self.session.execute(stmt)).scalar_one())

    async def delete(self, secret_id: str) -> bool:
        """Delete one secret. Returns whether it existed."""
        stmt = delete(VaultSecretRow).where(VaultSecretRow.id == secret_id)
        return rowcount(await self.session.execute(stmt.execution_options(synchronize_session="fetch"))) > 0

    async def delete_for_owner(self, owner_id: str) -> int:
        """Delete every secret of an owner (when the owner itself is deleted); returns how many."""
        stmt = delete(VaultSecretRow).where(VaultSecretRow.owner_id == owner_id)
        return rowcount(await self.session.execute(stmt.execution_options(synchronize_session="fetch")))

    async def count_by_key(self) -> dict[str, int]:
        """How many secrets each key-encryption key wraps, by key id (keys wrapping nothing are absent)."""
        stmt = select(VaultSecretRow.key_id, func.count()).group_by(VaultSecretRow.key_id)
        return {key_id: int(count) for key_id, count in (await self.session.execute(stmt)).all()}

    async def list_not_under_key(self, key_id: str, *, after: str | None, limit: int) -> list[VaultSecretRow]:
        """Up to ``limit`` secrets wrapped under another key than ``key_id``, by id after ``after`` (rotation)."""
        stmt = select(VaultSecretRow).where(VaultSecretRow.key_id != key_id)
        if after is not None:
            stmt = stmt.where(VaultSecretRow.id > after)
        stmt = stmt.order_by(VaultSecretRow.id).limit(limit).execution_options(**FRESH)
        return list((await self.session.execute(stmt)).scalars())

    async def rewrap(
        self, secret_id: str, *, old_key_id: str, key_id: str, wrapped_key: bytes, key_nonce: bytes
    ) -> bool:
        """Replace a secret's wrapped data key if it is still wrapped under ``old_key_id``; returns whether it was.

        The ciphertext is not touched: rotation re-wraps data keys, it does not re-encrypt secrets.
        """
        stmt = (
            update(VaultSecretRow)
            .where(VaultSecretRow.id == secret_id, VaultSecretRow.key_id == old_key_id)
            .values(key_id=key_id, wrapped_key=wrapped_key, key_nonce=key_nonce)
        )
        return rowcount(await self.session.execute(stmt.execution_options(synchronize_session=False))) > 0
