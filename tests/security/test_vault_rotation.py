"""Vault key rotation through the store (SECURITY.md 36, 37), on SQLite and PostgreSQL, and the key sources'
rotation operations (LocalKeyFile.add_key/remove_key, several keys in BROKERLINK_VAULT_KEY).

The CLI commands are tested in tests/cli/test_vault_cli.py; these tests drive the same functions the
CLI does (:func:`rewrap_batch`, the repository, the key file) so they can look at every row.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, update

from brokerlink.kit.ids import new_id
from brokerlink.security.vault import (
    BROKER_CREDENTIALS,
    EnvKeySource,
    KeySource,
    KeySourceError,
    LocalKeyFile,
    UnknownKeyId,
    Vault,
    VaultError,
    WrappedKey,
    rewrap_batch,
)
from brokerlink.store.db import Database
from brokerlink.store.models import VaultSecretRow
from brokerlink.store.repositories.secrets import SecretRepository
from tests.store.conftest import migrated_database

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def env_key(key_id: str) -> str:
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated database of each kind (PostgreSQL: a database of its own, dropped afterwards)."""
    async with migrated_database(request, tmp_path) as database:
        yield database


async def _seed(database: Database, vault: Vault, count: int) -> dict[str, tuple[str, bytes]]:
    """``count`` secrets of distinct owners; returns secret id -> (owner id, plaintext)."""
    seeded: dict[str, tuple[str, bytes]] = {}
    async with database.session() as session:
        for i in range(count):
            owner, plaintext = new_id("con"), f"secret-{i}-{os.urandom(4).hex()}".encode()
            secret_id = await vault.put(
                session, owner_id=owner, purpose=BROKER_CREDENTIALS, plaintext=plaintext, now=NOW
            )
            seeded[secret_id] = (owner, plaintext)
        await session.commit()
    return seeded


async def _rows(database: Database) -> dict[str, VaultSecretRow]:
    async with database.session() as session:
        return {row.id: row for row in (await session.execute(select(VaultSecretRow))).scalars()}


async def _open_all(database: Database, vault: Vault, seeded: dict[str, tuple[str, bytes]]) -> None:
    async with database.session() as session:
        for secret_id, (owner, plaintext) in seeded.items():
            assert await vault.get(session, secret_id, owner_id=owner) == plaintext


async def _rotate(database: Database, vault: Vault, *, limit: int, batches: int | None = None) -> int:
    """What ``brokerlink vault rotate`` does after making a key current: batches, one transaction each."""
    after: str | None = None
    done = 0
    while batches is None or batches > 0:
        async with database.session() as session:
            batch = await rewrap_batch(session, vault, after=after, limit=limit)
            await session.commit()
        if batch.last_id is None:
            break
        assert batch.failed == ()
        after, done = batch.last_id, done + batch.rewrapped
        batches = None if batches is None else batches - 1
    return done


async def test_ciphertext_copied_to_another_row_fails_to_decrypt(database: Database, tmp_path: Path) -> None:
    """SECURITY.md 36: a ciphertext (alone, or with its wrapped data key) copied into another owner's row
    in the database does not open for that owner: the owner id is authenticated data of both layers."""
    vault = Vault(LocalKeyFile(tmp_path / "vault-keys.json"))
    seeded = await _seed(database, vault, 2)
    (a_id, (_, a_plain)), (b_id, (b_owner, _)) = seeded.items()
    rows = await _rows(database)
    a = rows[a_id]
    async with database.session() as session:
        # Only the encrypted payload moves: B keeps its own data key.
        await session.execute(update(VaultSecretRow).where(VaultSecretRow.id == b_id).values(ciphertext=a.ciphertext))
        await session.commit()
    async with database.session() as session:
        with pytest.raises(VaultError, match="does not authenticate"):
            await vault.get(session, b_id, owner_id=b_owner)
    async with database.session() as session:
        # The whole sealed secret moves: A's data key, nonces and ciphertext, in B's row.
        await session.execute(
            update(VaultSecretRow)
            .where(VaultSecretRow.id == b_id)
            .values(key_id=a.key_id, wrapped_key=a.wrapped_key, key_nonce=a.key_nonce, nonce=a.nonce)
        )
        await session.commit()
    async with database.session() as session:
        stored_b = await SecretRepository(session).get_by_id(b_id)
        assert stored_b is not None
        assert bytes(stored_b.ciphertext) == bytes(a.ciphertext)  # the copy really is in B's row
        with pytest.raises(VaultError, match="does not authenticate"):
            await vault.get(session, b_id, owner_id=b_owner)
        # ... and A's own row still opens: the copy, not the data, is what fails.
        assert await vault.get(session, a_id, owner_id=seeded[a_id][0]) == a_plain


async def test_rotation_rewraps_every_row_and_retiring_the_old_key_breaks_nothing(
    database: Database, tmp_path: Path
) -> None:
    """SECURITY.md 37: after rotation old records still decrypt, rotation re-wrapped them under the new key
    (the table's key ids say so; the ciphertexts are untouched), and retiring the old key breaks nothing."""
    keys = LocalKeyFile(tmp_path / "vault-keys.json")
    vault = Vault(keys)
    seeded = await _seed(database, vault, 7)
    old = keys.current_key_id()
    before = await _rows(database)
    assert {row.key_id for row in before.values()} == {old}

    new = keys.add_key().key_id
    assert keys.current_key_id() == new != old
    assert keys.key_ids() == (new, old)
    await _open_all(database, vault, seeded)  # old records open before any re-wrap

    assert await _rotate(database, vault, limit=3) == 7  # three batches: 3 + 3 + 1
    after = await _rows(database)
    assert {row.key_id for row in after.values()} == {new}
    for secret_id, row in after.items():
        assert bytes(row.wrapped_key) != bytes(before[secret_id].wrapped_key)
        assert bytes(row.ciphertext) == bytes(before[secret_id].ciphertext)  # re-wrapped, not re-encrypted
        assert bytes(row.nonce) == bytes(before[secret_id].nonce)
    await _open_all(database, vault, seeded)

    async with database.session() as session:
        assert await SecretRepository(session).count_for_key(old) == 0
        assert await SecretRepository(session).count_by_key() == {new: 7}
    keys.remove_key(old)
    fresh = Vault(LocalKeyFile(keys.path))  # another process: only what the file now holds
    assert fresh.keys.key_ids() == (new,)
    await _open_all(database, fresh, seeded)
    with pytest.raises(UnknownKeyId):
        fresh.keys.unwrap(WrappedKey(key_id=old, nonce=b"\0" * 12, wrapped=b"\0" * 48), owner_id="con_x")


async def test_an_interrupted_rotation_leaves_everything_readable_and_a_rerun_skips_what_is_done(
    database: Database, tmp_path: Path
) -> None:
    """SECURITY.md 37: a rotation stopped after one batch leaves rows under both keys, all readable; a
    re-run re-wraps only the rows still under the old key."""
    keys = LocalKeyFile(tmp_path / "vault-keys.json")
    vault = Vault(keys)
    seeded = await _seed(database, vault, 5)
    old = keys.current_key_id()
    new = keys.add_key().key_id
    assert await _rotate(database, vault, limit=2, batches=1) == 2
    async with database.session() as session:
        assert await SecretRepository(session).count_by_key() == {new: 2, old: 3}
    await _open_all(database, vault, seeded)
    halfway = await _rows(database)
    assert await _rotate(database, vault, limit=2) == 3
    done = await _rows(database)
    assert {row.key_id for row in done.values()} == {new}
    for secret_id, row in halfway.items():
        if row.key_id == new:  # not touched again
            assert bytes(done[secret_id].wrapped_key) == bytes(row.wrapped_key)
    await _open_all(database, vault, seeded)


async def test_a_row_whose_data_key_does_not_unwrap_is_reported_and_left_alone(
    database: Database, tmp_path: Path
) -> None:
    """Rotation re-wraps what it can and names what it cannot (here: a tampered wrapped key)."""
    keys = LocalKeyFile(tmp_path / "vault-keys.json")
    vault = Vault(keys)
    seeded = await _seed(database, vault, 3)
    broken = next(iter(seeded))
    async with database.session() as session:
        await session.execute(
            update(VaultSecretRow).where(VaultSecretRow.id == broken).values(wrapped_key=b"\x00" * 48)
        )
        await session.commit()
    keys.add_key()
    async with database.session() as session:
        batch = await rewrap_batch(session, vault, after=None, limit=10)
        await session.commit()
    assert (batch.rewrapped, batch.failed) == (2, (broken,))


# --- the key sources' side of rotation ------------------------------------------------------------------------


def test_local_key_file_add_and_remove_keys(tmp_path: Path) -> None:
    keys = LocalKeyFile(tmp_path / "vault-keys.json")
    first = keys.current_key_id()
    second = keys.add_key().key_id
    assert keys.key_ids() == (second, first)
    assert (tmp_path / "vault-keys.json").stat().st_mode & 0o777 == 0o600
    with pytest.raises(KeySourceError, match="current key"):
        keys.remove_key(second)
    with pytest.raises(UnknownKeyId):
        keys.remove_key("kek_never_existed")
    keys.remove_key(first)
    assert keys.key_ids() == (second,)
    assert LocalKeyFile(keys.path).key_ids() == (second,)


def test_local_key_file_sees_a_rotation_made_by_another_process(tmp_path: Path) -> None:
    """A running server's key file object seals under the key a ``vault rotate`` elsewhere made current."""
    server_side = LocalKeyFile(tmp_path / "vault-keys.json")
    before = server_side.current_key_id()
    new = LocalKeyFile(tmp_path / "vault-keys.json").add_key().key_id
    assert new != before
    assert Vault(server_side).seal("con_x", b"x").key_id == new


def test_env_key_source_holds_several_keys_current_first() -> None:
    source: KeySource = EnvKeySource(f"{env_key('kek_new')}, {env_key('kek_old')}")
    assert source.current_key_id() == "kek_new"
    assert source.key_ids() == ("kek_new", "kek_old")
    old_only = EnvKeySource(env_key("kek_old"))
    sealed = Vault(old_only).seal("con_x", b"payload")
    with pytest.raises(VaultError):  # same id, other bytes: the source must hold the real old key
        Vault(source).open("con_x", sealed)


def test_env_key_source_rotates_from_the_old_key_to_the_new_one() -> None:
    old, new = env_key("kek_old"), env_key("kek_new")
    sealed = Vault(EnvKeySource(old)).seal("con_x", b"payload")
    both = Vault(EnvKeySource(f"{new},{old}"))
    assert both.open("con_x", sealed) == b"payload"
    rewrapped = both.rewrap("con_x", sealed)
    assert rewrapped.key_id == "kek_new"
    assert rewrapped.ciphertext == sealed.ciphertext
    assert Vault(EnvKeySource(new)).open("con_x", rewrapped) == b"payload"  # old key dropped: still opens


def test_env_key_source_refuses_a_repeated_key_id() -> None:
    with pytest.raises(KeySourceError, match="appears twice"):
        EnvKeySource(f"{env_key('kek_a')},{env_key('kek_a')}")
