"""``brokerlink vault status | rotate | retire`` against a real SQLite database and key file in a data dir
(SECURITY.md 37 end to end: rotate, everything still opens, retire refuses while a key is in use)."""

from __future__ import annotations

import asyncio
import base64
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from brokerlink.cli.main import app
from brokerlink.config import Settings
from brokerlink.kit.ids import new_id
from brokerlink.security.vault import BROKER_CREDENTIALS, LocalKeyFile, Vault
from brokerlink.store.db import Database
from brokerlink.store.migrate import upgrade
from brokerlink.store.repositories.secrets import SecretRepository

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data dir the CLI is pointed at (through the environment, restored afterwards), no vault key in the env."""
    monkeypatch.setenv("BROKERLINK_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("BROKERLINK_VAULT_KEY", raising=False)
    return tmp_path


def _seed(settings: Settings, count: int) -> dict[str, tuple[str, bytes]]:
    async def run() -> dict[str, tuple[str, bytes]]:
        await upgrade(settings.effective_database_url)
        database = Database.from_settings(settings)
        vault = Vault.from_settings(settings)
        seeded: dict[str, tuple[str, bytes]] = {}
        try:
            async with database.session() as session:
                for i in range(count):
                    owner, plaintext = new_id("con"), f"cli-secret-{i}".encode()
                    secret_id = await vault.put(
                        session, owner_id=owner, purpose=BROKER_CREDENTIALS, plaintext=plaintext, now=NOW
                    )
                    seeded[secret_id] = (owner, plaintext)
                await session.commit()
        finally:
            await database.dispose()
        return seeded

    return asyncio.run(run())


def _state(settings: Settings, seeded: dict[str, tuple[str, bytes]]) -> dict[str, int]:
    """Key usage, after checking every seeded secret still opens with the vault the settings give."""

    async def run() -> dict[str, int]:
        database = Database.from_settings(settings)
        vault = Vault.from_settings(settings)
        try:
            async with database.session() as session:
                for secret_id, (owner, plaintext) in seeded.items():
                    assert await vault.get(session, secret_id, owner_id=owner) == plaintext
                return await SecretRepository(session).count_by_key()
        finally:
            await database.dispose()

    return asyncio.run(run())


def test_rotate_then_retire_with_the_key_file(data_dir: Path) -> None:
    """SECURITY.md 37 through the CLI: retire refuses (naming the count) while the old key is in use;
    rotate re-wraps everything under a new key; then retire removes the old key and nothing breaks."""
    settings = Settings(data_dir=data_dir)
    seeded = _seed(settings, 12)
    old = LocalKeyFile(settings.effective_vault_key_file).current_key_id()

    refused = runner.invoke(app, ["vault", "retire", old])
    assert refused.exit_code == 1
    assert "12 stored secret(s)" in refused.output

    status = runner.invoke(app, ["vault", "status"])
    assert status.exit_code == 0, status.output
    assert old in status.output

    rotated = runner.invoke(app, ["vault", "rotate", "--batch-size", "5"])
    assert rotated.exit_code == 0, rotated.output
    assert "re-wrapped 12 secret(s)" in rotated.output
    new = LocalKeyFile(settings.effective_vault_key_file).current_key_id()
    assert new != old
    assert _state(settings, seeded) == {new: 12}

    retired = runner.invoke(app, ["vault", "retire", old])
    assert retired.exit_code == 0, retired.output
    keys = LocalKeyFile(settings.effective_vault_key_file)
    assert keys.key_ids() == (new,)
    assert _state(settings, seeded) == {new: 12}  # retiring the old key broke nothing

    assert runner.invoke(app, ["vault", "retire", new]).exit_code == 1  # the current key: refused


def test_rotate_finishes_an_interrupted_rotation_instead_of_starting_another(data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir)
    seeded = _seed(settings, 3)
    keys = LocalKeyFile(settings.effective_vault_key_file)
    old = keys.current_key_id()
    new = keys.add_key().key_id  # as if a rotation had died right after making its key current
    result = runner.invoke(app, ["vault", "rotate"])
    assert result.exit_code == 0, result.output
    assert "finishing an earlier rotation" in result.output
    assert LocalKeyFile(settings.effective_vault_key_file).key_ids() == (new, old)  # no third key
    assert _state(settings, seeded) == {new: 3}


def _env_key(key_id: str) -> str:
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


def test_rotation_with_keys_from_the_environment(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With BROKERLINK_VAULT_KEY, rotate explains the procedure when there is nothing to do, re-wraps under the
    first key once a new key is put first, and retire says when the old key may leave the variable."""
    old = _env_key("kek_env_old")
    monkeypatch.setenv("BROKERLINK_VAULT_KEY", old)
    settings = Settings(data_dir=data_dir, vault_key=SecretStr(old))
    seeded = _seed(settings, 4)

    nothing = runner.invoke(app, ["vault", "rotate"])
    assert nothing.exit_code == 1
    assert "put it FIRST in BROKERLINK_VAULT_KEY" in nothing.output

    both = f"{_env_key('kek_env_new')},{old}"
    monkeypatch.setenv("BROKERLINK_VAULT_KEY", both)
    assert runner.invoke(app, ["vault", "retire", "kek_env_old"]).exit_code == 1  # still in use
    rotated = runner.invoke(app, ["vault", "rotate"])
    assert rotated.exit_code == 0, rotated.output
    assert _state(Settings(data_dir=data_dir, vault_key=SecretStr(both)), seeded) == {"kek_env_new": 4}

    retired = runner.invoke(app, ["vault", "retire", "kek_env_old"])
    assert retired.exit_code == 0, retired.output
    assert "remove it from BROKERLINK_VAULT_KEY" in retired.output
    new_only = both.split(",", maxsplit=1)[0]
    assert _state(Settings(data_dir=data_dir, vault_key=SecretStr(new_only)), seeded) == {"kek_env_new": 4}
