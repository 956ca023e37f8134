"""Vault secrets in the store: the repository, the vault's put/get/delete, and SECURITY.md 35-36 on a real database."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from sqlalchemy import text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from brokerlink.kit.ids import is_id
from brokerlink.security.vault import BROKER_CREDENTIALS, LocalKeyFile, SecretNotFound, Vault, VaultError
from brokerlink.store.models import Base, VaultSecretRow
from brokerlink.store.repositories.secrets import SecretRepository
from tests.store.factories import NOW, make_connection, make_user

MARKER = "plaintext-marker-7Q2X"
PLAINTEXT = f'{{"api_key": "AK-{MARKER}", "api_secret": "pw-{MARKER}"}}'.encode()


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    return Vault(LocalKeyFile(tmp_path / "keys" / "vault-keys.json"))


async def _owner(session: AsyncSession, label: str | None = None) -> str:
    user = await make_user(session)
    return (await make_connection(session, user.id, label=label)).id


async def test_repository_add_and_read_a_sealed_secret(session: AsyncSession) -> None:
    repo = SecretRepository(session)
    row = await repo.add(
        owner_id="con_a",
        purpose=BROKER_CREDENTIALS,
        key_id="kek_1",
        wrapped_key=b"\x01" * 48,
        key_nonce=b"\x02" * 12,
        nonce=b"\x03" * 12,
        ciphertext=b"\x00\xff" * 20,
        now=NOW,
    )
    assert is_id(row.id, "sec")
    session.expunge_all()  # read back from the database, not the identity map
    found = await repo.get_by_id(row.id)
    assert found is not None
    assert (found.owner_id, found.purpose, found.key_id, found.created_at) == (
        "con_a",
        "broker_credentials",
        "kek_1",
        NOW,
    )
    assert (found.wrapped_key, found.key_nonce, found.nonce, found.ciphertext) == (
        b"\x01" * 48,
        b"\x02" * 12,
        b"\x03" * 12,
        b"\x00\xff" * 20,
    )
    assert await repo.get_for_owner(row.id, "con_a") is found
    assert await repo.get_for_owner(row.id, "con_b") is None
    assert await repo.get_by_id("sec_01ARZ3NDEKTSV4RRFFQ69G5FAV") is None


async def _add(repo: SecretRepository, owner_id: str, key_id: str) -> VaultSecretRow:
    return await repo.add(
        owner_id=owner_id,
        purpose="p",
        key_id=key_id,
        wrapped_key=b"w",
        key_nonce=b"k",
        nonce=b"n",
        ciphertext=b"c",
        now=NOW,
    )


async def test_repository_lists_counts_and_deletes(session: AsyncSession) -> None:
    repo = SecretRepository(session)
    a1 = await _add(repo, "con_a", "kek_1")
    a2 = await _add(repo, "con_a", "kek_2")
    b1 = await _add(repo, "con_b", "kek_1")
    assert [r.id for r in await repo.list_for_owner("con_a")] == [a1.id, a2.id]
    assert (await repo.count_for_key("kek_1"), await repo.count_for_key("kek_2")) == (2, 1)
    assert await repo.count_for_key("kek_none") == 0
    assert await repo.delete(a2.id)
    assert not await repo.delete(a2.id)
    assert await repo.get_by_id(a2.id) is None
    assert await repo.delete_for_owner("con_a") == 1
    assert await repo.list_for_owner("con_a") == []
    assert await repo.get_by_id(b1.id) is not None


async def test_vault_put_get_delete_through_the_store(sessions: async_sessionmaker[AsyncSession], vault: Vault) -> None:
    async with sessions() as session:
        owner = await _owner(session)
        secret_id = await vault.put(session, owner_id=owner, purpose=BROKER_CREDENTIALS, plaintext=PLAINTEXT, now=NOW)
        await session.commit()
    assert is_id(secret_id, "sec")
    async with sessions() as session:
        assert await vault.get(session, secret_id, owner_id=owner) == PLAINTEXT
        row = await SecretRepository(session).get_by_id(secret_id)
        assert row is not None
        assert (row.owner_id, row.purpose, row.key_id) == (owner, "broker_credentials", vault.keys.current().key_id)
        assert PLAINTEXT not in row.ciphertext
    async with sessions() as session:
        assert await vault.delete(session, secret_id)
        assert not await vault.delete(session, secret_id)
        await session.commit()
    async with sessions() as session:
        with pytest.raises(SecretNotFound, match=secret_id):
            await vault.get(session, secret_id, owner_id=owner)


async def test_vault_put_does_not_commit(sessions: async_sessionmaker[AsyncSession], vault: Vault) -> None:
    async with sessions() as session:
        owner = await _owner(session)
        await session.commit()
        secret_id = await vault.put(session, owner_id=owner, purpose=BROKER_CREDENTIALS, plaintext=PLAINTEXT, now=NOW)
        await session.rollback()
    async with sessions() as session:
        assert await SecretRepository(session).get_by_id(secret_id) is None


async def test_vault_get_refuses_another_owner(session: AsyncSession, vault: Vault) -> None:
    owner, other = await _owner(session), await _owner(session)
    secret_id = await vault.put(session, owner_id=owner, purpose=BROKER_CREDENTIALS, plaintext=PLAINTEXT, now=NOW)
    with pytest.raises(SecretNotFound):
        await vault.get(session, secret_id, owner_id=other)


@pytest.mark.parametrize("purpose", ["", "Broker", "has space", "x" * 65])
async def test_vault_put_refuses_a_bad_purpose(session: AsyncSession, vault: Vault, purpose: str) -> None:
    with pytest.raises(ValueError, match="purpose"):
        await vault.put(session, owner_id="con_a", purpose=purpose, plaintext=PLAINTEXT, now=NOW)


async def test_vault_ciphertext_copied_to_another_row_fails_to_decrypt(
    sessions: async_sessionmaker[AsyncSession], vault: Vault
) -> None:
    # SECURITY.md 36, through the database: copy every sealed column of one row into another owner's row.
    async with sessions() as session:
        owner, other = await _owner(session), await _owner(session)
        mine = await vault.put(session, owner_id=owner, purpose=BROKER_CREDENTIALS, plaintext=PLAINTEXT, now=NOW)
        theirs = await vault.put(session, owner_id=other, purpose=BROKER_CREDENTIALS, plaintext=b"theirs", now=NOW)
        source = await SecretRepository(session).get_by_id(mine)
        assert source is not None
        await session.execute(
            update(VaultSecretRow)
            .where(VaultSecretRow.id == theirs)
            .values(
                key_id=source.key_id,
                wrapped_key=source.wrapped_key,
                key_nonce=source.key_nonce,
                nonce=source.nonce,
                ciphertext=source.ciphertext,
            )
        )
        await session.commit()
    async with sessions() as session:
        with pytest.raises(VaultError) as info:
            await vault.get(session, theirs, owner_id=other)
        assert MARKER not in str(info.value)
        assert await vault.get(session, mine, owner_id=owner) == PLAINTEXT


async def _dump(session: AsyncSession, database_url: str) -> bytes:
    """Everything the database holds, as an attacker with a copy of it would see it."""
    if session.get_bind().dialect.name == "sqlite":
        path = Path(str(make_url(database_url).database))
        # The main file and, in WAL mode, the log that holds recent commits.
        return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))
    chunks: list[bytes] = []
    for table in Base.metadata.sorted_tables:
        rows = await session.execute(text(f"SELECT t::text FROM {table.name} AS t"))  # noqa: S608 (table names from the models)
        chunks.extend(str(value).encode() for value in rows.scalars())
    return b"\n".join(chunks)


async def test_database_dump_holds_no_plaintext_credentials(
    sessions: async_sessionmaker[AsyncSession], vault: Vault, database_url: str
) -> None:
    # SECURITY.md 35.
    async with sessions() as session:
        owner = await _owner(session, label=f"label-{MARKER}")
        await vault.put(session, owner_id=owner, purpose=BROKER_CREDENTIALS, plaintext=PLAINTEXT, now=NOW)
        await session.commit()
    async with sessions() as session:
        dump = await _dump(session, database_url)
    kek = vault.keys.current()
    assert f"label-{MARKER}".encode() in dump  # the dump does see what is stored in the clear
    assert PLAINTEXT not in dump
    assert PLAINTEXT.hex().encode() not in dump
    assert b"AK-" + MARKER.encode() not in dump
    assert b"pw-" + MARKER.encode() not in dump
    for key_form in (kek.key, kek.key.hex().encode(), base64.b64encode(kek.key)):
        assert key_form not in dump
