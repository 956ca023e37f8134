"""``brokerlink clients`` against a SQLite data directory: create, list, show, disable."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from sqlalchemy import select
from typer.testing import CliRunner

from brokerlink.cli.clients import clients_app
from brokerlink.store.db import Database
from brokerlink.store.migrate import upgrade
from brokerlink.store.models_audit import AuditRecordRow
from brokerlink.store.models_oauth import OAuthTokenRow
from tests.api.consents.support import jwks, store_token

runner = CliRunner()
# The command as cli/main.py mounts it: ``brokerlink clients ...``.
cli = typer.Typer()
cli.add_typer(clients_app, name="clients")


def _url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'brokerlink.db'}"


async def _with_token(data_dir: Path, client_id: str) -> str:
    database = Database(_url(data_dir))
    try:
        async with database.session() as session:
            now = datetime.now(UTC)
            token_id = await store_token(session, client_id=client_id, consent_id=None, user_id=None, now=now)
            await session.commit()
            return token_id
    finally:
        await database.dispose()


async def _token_and_audit(data_dir: Path, token_id: str) -> tuple[datetime | None, list[tuple[str, str, str]]]:
    database = Database(_url(data_dir))
    try:
        async with database.session() as session:
            token = (await session.execute(select(OAuthTokenRow).where(OAuthTokenRow.id == token_id))).scalar_one()
            audit = await session.scalars(select(AuditRecordRow).order_by(AuditRecordRow.seq))
            return token.revoked_at, [(a.actor_id, a.action, a.target) for a in audit]
    finally:
        await database.dispose()


def test_create_list_show_disable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKERLINK_DATA_DIR", str(tmp_path))  # restored afterwards (the CLI exports it)
    asyncio.run(upgrade(_url(tmp_path)))
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(jwks()))
    base = ["clients", "create", "--name", "Ledger Sync", "--scope", "accounts:read", "--scope", "ledger:read",
            "--jwks-file", str(keys), "--data-dir", str(tmp_path)]  # fmt: skip

    bad = runner.invoke(cli, [*base, "--redirect-uri", "http://sync.example/cb"])
    assert bad.exit_code == 1
    assert "redirect_uris[0]" in bad.output
    private = runner.invoke(cli, [*base, "--redirect-uri", "https://sync.example/cb", "--scope", "bank:everything"])
    assert private.exit_code == 1
    assert "scopes" in private.output

    created = runner.invoke(cli, [*base, "--redirect-uri", "https://sync.example/cb", "--json"])
    assert created.exit_code == 0, created.output
    client = json.loads(created.output)
    assert client["id"].startswith("app_")
    assert (client["scopes"], client["redirect_uris"]) == (
        ["accounts:read", "ledger:read"],
        ["https://sync.example/cb"],
    )
    assert client["grant_types"] == ["authorization_code", "refresh_token"]

    listed = runner.invoke(cli, ["clients", "list", "--json", "--data-dir", str(tmp_path)])
    assert [c["id"] for c in json.loads(listed.output)] == [client["id"]]
    table = runner.invoke(cli, ["clients", "list", "--data-dir", str(tmp_path)])
    assert "Ledger Sync" in table.output
    shown = runner.invoke(cli, ["clients", "show", client["id"], "--json", "--data-dir", str(tmp_path)])
    assert json.loads(shown.output)["active"] is True
    missing = runner.invoke(cli, ["clients", "show", "app_missing", "--data-dir", str(tmp_path)])
    assert missing.exit_code == 1

    token_id = asyncio.run(_with_token(tmp_path, client["id"]))
    disabled = runner.invoke(cli, ["clients", "disable", client["id"], "--data-dir", str(tmp_path)])
    assert disabled.exit_code == 0, disabled.output
    assert "1 token(s) revoked" in disabled.output
    again = runner.invoke(cli, ["clients", "disable", client["id"], "--data-dir", str(tmp_path)])
    assert "already disabled" in again.output
    shown = runner.invoke(cli, ["clients", "show", client["id"], "--json", "--data-dir", str(tmp_path)])
    assert json.loads(shown.output)["active"] is False

    revoked_at, audit = asyncio.run(_token_and_audit(tmp_path, token_id))
    assert revoked_at is not None
    assert audit == [("cli", "oauth_client.create", client["id"]), ("cli", "oauth_client.disable", client["id"])]
    assert revoked_at - datetime.now(UTC) < timedelta(minutes=1)
