"""``brokerlink audit``: verify, export, checkpoint and public-key, run in-process with Typer's runner on a
SQLite data dir. (Tampering caught by ``verify`` on both databases: tests/security/test_audit_tamper.py.)"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from brokerlink.cli.main import app
from brokerlink.security.audit import Actor, record
from brokerlink.security.audit_sign import AuditSigner, key_id_of, load_public_key, public_key_pem
from brokerlink.store.db import Database

runner = CliRunner()
T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def restore_environment() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A migrated data dir with five records, a minute apart from T0."""
    result = runner.invoke(app, ["migrate", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output

    async def seed() -> None:
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'brokerlink.db'}")
        try:
            for i in range(5):
                async with database.session() as session:
                    await record(
                        session,
                        actor=Actor(kind="system", id="cli_test"),
                        action="setting.change",
                        target=f"setting_{i}",
                        now=T0 + timedelta(minutes=i),
                    )
                    await session.commit()
        finally:
            await database.dispose()

    asyncio.run(seed())
    return tmp_path


def _audit(data_dir: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["audit", *args, "--data-dir", str(data_dir)])
    return result.exit_code, result.output


def test_audit_cli_verify_passes_on_an_intact_trail(data_dir: Path) -> None:
    code, output = _audit(data_dir, "verify")
    assert code == 0, output
    assert "audit trail OK: 5 records (sequences 1 to 5), 0 signed checkpoints" in output


def test_audit_cli_checkpoint_signs_the_head_and_verify_checks_it(data_dir: Path) -> None:
    export = data_dir / "offhost" / "checkpoints.jsonl"
    os.environ["BROKERLINK_AUDIT_CHECKPOINT_EXPORT"] = str(export)
    code, output = _audit(data_dir, "checkpoint")
    assert code == 0, output
    key_id = AuditSigner(data_dir / "audit-signing-key.json").key_id
    assert "checkpoint at sequence 5" in output
    assert key_id in output
    (line,) = export.read_text().splitlines()
    assert json.loads(line)["sequence"] == 5
    code, output = _audit(data_dir, "verify", "--checkpoints", str(export))
    assert code == 0, output
    assert "2 signed checkpoints" in output  # the stored one and its exported copy


def test_audit_cli_export_writes_records_and_checkpoints_as_json_lines(data_dir: Path) -> None:
    assert _audit(data_dir, "checkpoint")[0] == 0
    out = data_dir / "export.jsonl"
    code, output = _audit(data_dir, "export", "--out", str(out))
    assert code == 0, output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["type"] for line in lines] == ["record"] * 5 + ["checkpoint"]
    assert [line["seq"] for line in lines[:5]] == [1, 2, 3, 4, 5]
    assert lines[0]["details"] == {}
    assert lines[1]["prev_hash"] == lines[0]["hash"]
    assert lines[5]["sequence"] == 5


def test_audit_cli_export_selects_a_time_range(data_dir: Path) -> None:
    since, until = (T0 + timedelta(minutes=1)).isoformat(), "2026-05-04T10:03:00"  # no zone: UTC
    code, output = _audit(data_dir, "export", "--since", since, "--until", until)
    assert code == 0, output
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert [line["target"] for line in lines] == ["setting_1", "setting_2"]


def test_audit_cli_export_refuses_a_malformed_time(data_dir: Path) -> None:
    code, output = _audit(data_dir, "export", "--since", "yesterday")
    assert code == 2
    assert "ISO 8601" in output


def test_audit_cli_public_key_exports_a_key_that_verifies_elsewhere(data_dir: Path) -> None:
    assert _audit(data_dir, "checkpoint")[0] == 0
    result = runner.invoke(app, ["audit", "public-key", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    pem = result.stdout[result.stdout.index("-----BEGIN PUBLIC KEY-----") :]
    key = load_public_key(pem[: pem.index("-----END PUBLIC KEY-----") + len("-----END PUBLIC KEY-----")] + "\n")
    assert key_id_of(key) == AuditSigner(data_dir / "audit-signing-key.json").key_id
    exported = data_dir / "audit.pub"
    exported.write_text(public_key_pem(key))
    code, output = _audit(data_dir, "verify", "--public-key", str(exported))
    assert code == 0, output
    # Another deployment's key does not vouch for these checkpoints.
    other = data_dir / "other.pub"
    other.write_text(public_key_pem(AuditSigner(data_dir / "other" / "key.json").public_key))
    code, output = _audit(data_dir, "verify", "--public-key", str(other))
    assert code == 1
    assert "BROKEN at sequence 5" in output
    assert "unknown key" in output


def test_audit_cli_verify_refuses_a_file_that_is_not_a_key(data_dir: Path) -> None:
    bogus = data_dir / "bogus.pub"
    bogus.write_text("not a key")
    code, output = _audit(data_dir, "verify", "--public-key", str(bogus))
    assert code == 2
    assert "not a PEM public key" in output
