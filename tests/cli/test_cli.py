"""The ``brokerlink`` command, run in-process with Typer's runner."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from brokerlink import __version__
from brokerlink.cli.main import app
from brokerlink.security.passwords import verify_password
from brokerlink.store.db import Database
from brokerlink.store.migrate import current_revision
from brokerlink.store.repositories.users import UserRepository

runner = CliRunner()


@pytest.fixture(autouse=True)
def restore_environment() -> Iterator[None]:
    """The CLI hands its overrides to worker processes through the environment; undo that after each test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "demo", "migrate", "user", "version"):
        assert command in result.output


def test_version() -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"brokerlink {__version__}"


def test_migrate_creates_the_database_at_head(tmp_path: Path) -> None:
    result = runner.invoke(app, ["migrate", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    db = tmp_path / "brokerlink.db"
    assert db.exists()
    revision = asyncio.run(current_revision(f"sqlite+aiosqlite:///{db}"))
    assert revision is not None
    assert revision in result.output


def test_user_create_reads_the_password_from_stdin(tmp_path: Path) -> None:
    password = "a long enough passphrase"
    args = ["user", "create", "--email", "Ops@Example.com", "--name", "Ops", "--role", "admin", "--password-stdin"]
    result = runner.invoke(app, [*args, "--data-dir", str(tmp_path)], input=password + "\n")
    assert result.exit_code == 0, result.output
    assert "usr_" in result.output
    assert password not in result.output

    async def stored() -> tuple[str, str, str]:
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'brokerlink.db'}")
        try:
            async with database.session() as s:
                user = await UserRepository(s).get_by_email("ops@example.com")
                assert user is not None
                return user.role, user.password_hash, user.email
        finally:
            await database.dispose()

    role, password_hash, email = asyncio.run(stored())
    assert role == "admin"
    assert email == "ops@example.com"
    assert verify_password(password_hash, password)


def test_user_create_refuses_a_duplicate_and_a_weak_password(tmp_path: Path) -> None:
    base = [
        "user",
        "create",
        "--email",
        "a@example.com",
        "--name",
        "A",
        "--password-stdin",
        "--data-dir",
        str(tmp_path),
    ]
    assert runner.invoke(app, base, input="a long enough passphrase\n").exit_code == 0
    dup = runner.invoke(app, base, input="another long passphrase\n")
    assert dup.exit_code == 1
    assert "already exists" in dup.output
    weak = runner.invoke(app, [*base[:3], "b@example.com", *base[4:]], input="short\n")
    assert weak.exit_code == 1
    assert "at least 12 characters" in weak.output
