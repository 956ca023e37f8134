"""``brokerlink vault``: the credential vault's keys: ``status``, ``rotate``, ``retire``.

Rotation re-wraps data keys, never secrets (docs/adr/0017-vault-rotation-and-retention.md): with the
key file (the default) ``rotate`` adds a new key, makes it current and re-wraps every data key under
it, in batches of one transaction each. Interrupted, it is run again: when rows are still wrapped
under another key than the current one, it finishes that rotation instead of starting another.
With ``BROKERLINK_VAULT_KEY`` the keys live in the environment, which this process cannot change:
the operator puts a new key first in the variable (keeping the old one after it), restarts, and
runs ``rotate``, which then re-wraps under that first key; ``rotate`` explains this when there is
nothing to re-wrap. ``retire`` refuses while any row still uses the key.

Exit status: 0 done, 1 refused or failed (the message says why).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from brokerlink.cli import server
from brokerlink.config import Settings
from brokerlink.engine.audit import CLI
from brokerlink.logs import configure_logging
from brokerlink.security.audit import record
from brokerlink.security.vault import (
    EnvKeySource,
    KeySourceError,
    LocalKeyFile,
    UnknownKeyId,
    Vault,
    rewrap_batch,
)
from brokerlink.store.db import Database
from brokerlink.store.repositories.secrets import SecretRepository

vault_app = typer.Typer(help="The credential vault's keys.", no_args_is_help=True)

console = Console()
err = Console(stderr=True)

DataDirOpt = Annotated[
    Path | None, typer.Option(help="Directory for all local state. [env: BROKERLINK_DATA_DIR; default ./var]")
]
DEFAULT_BATCH = 500


def _settings(data_dir: Path | None) -> Settings:
    server.export_overrides(data_dir=data_dir)
    return Settings()


async def _usage(database: Database) -> dict[str, int]:
    async with database.session() as session:
        return await SecretRepository(session).count_by_key()


@vault_app.command("status")
def status(data_dir: DataDirOpt = None) -> None:
    """The vault's keys, which one is current, and how many stored secrets each one wraps."""
    settings = _settings(data_dir)
    configure_logging("warning", "console")
    vault = Vault.from_settings(settings)

    async def run() -> dict[str, int]:
        database = Database.from_settings(settings)
        try:
            return await _usage(database)
        finally:
            await database.dispose()

    usage = asyncio.run(run())
    current = vault.keys.current_key_id()
    source = "environment (BROKERLINK_VAULT_KEY)" if isinstance(vault.keys, EnvKeySource) else str(vault.keys)
    table = Table(title=f"vault keys: {source}")
    table.add_column("key id")
    table.add_column("current")
    table.add_column("secrets", justify="right")
    known = vault.keys.key_ids()
    for key_id in known:
        table.add_row(key_id, "yes" if key_id == current else "", str(usage.get(key_id, 0)))
    for key_id in sorted(set(usage) - set(known)):
        table.add_row(f"[red]{key_id}[/] (missing!)", "", str(usage[key_id]))
    console.print(table)
    pending = sum(count for key_id, count in usage.items() if key_id != current)
    if pending:
        console.print(f"{pending} secret(s) not under the current key: run [bold]brokerlink vault rotate[/]")


@vault_app.command("rotate")
def rotate(
    data_dir: DataDirOpt = None,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="Secrets per transaction.")] = DEFAULT_BATCH,
) -> None:
    """Make a new key current and re-wrap every stored data key under it (the secrets are not re-encrypted)."""
    settings = _settings(data_dir)
    configure_logging("warning", "console")
    vault = Vault.from_settings(settings)
    code = asyncio.run(_rotate(settings, vault, batch_size=batch_size))
    raise typer.Exit(code)


async def _rotate(settings: Settings, vault: Vault, *, batch_size: int) -> int:
    database = Database.from_settings(settings)
    try:
        usage = await _usage(database)
        current = vault.keys.current_key_id()
        pending = sum(count for key_id, count in usage.items() if key_id != current)
        if isinstance(vault.keys, LocalKeyFile):
            if pending:
                console.print(f"finishing an earlier rotation: {pending} secret(s) are not under {current}")
            else:
                kek = vault.keys.add_key()
                current = kek.key_id
                pending = sum(usage.values())
                console.print(f"new current key [bold]{current}[/] in {vault.keys.path}")
        elif not pending:
            err.print(
                f"nothing to re-wrap: every stored secret is under {current}, the first key of BROKERLINK_VAULT_KEY.\n"
                "The keys come from the environment, which this command cannot change. To rotate:\n"
                "  1. generate a key: python -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())'\n"
                "  2. put it FIRST in BROKERLINK_VAULT_KEY, keeping the old key after it:\n"
                f"     BROKERLINK_VAULT_KEY=kek_new:<base64>,{current}:<old base64>\n"
                "  3. restart every server (new secrets are then sealed under the new key)\n"
                "  4. run brokerlink vault rotate again (it re-wraps every secret under the first key)\n"
                f"  5. brokerlink vault retire {current}, then drop it from the variable"
            )
            return 1
        return await _rewrap_all(database, vault, pending=pending, batch_size=batch_size)
    finally:
        await database.dispose()


async def _rewrap_all(database: Database, vault: Vault, *, pending: int, batch_size: int) -> int:
    rewrapped = 0
    failed: list[str] = []
    after: str | None = None
    columns = (TextColumn("re-wrapping data keys"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("rewrap", total=pending)
        while True:
            async with database.session() as session:
                batch = await rewrap_batch(session, vault, after=after, limit=batch_size)
                if batch.rewrapped:
                    await record(
                        session, actor=CLI, action="vault.rewrap", target=f"key:{vault.keys.current_key_id()}",
                        now=datetime.now(UTC), details={"rewrapped": batch.rewrapped},
                    )  # fmt: skip
                await session.commit()
            if batch.last_id is None:
                break
            after = batch.last_id
            rewrapped += batch.rewrapped
            failed.extend(batch.failed)
            progress.update(task, completed=rewrapped + len(failed))
        progress.update(task, total=max(pending, rewrapped + len(failed)), completed=rewrapped + len(failed))
    current = vault.keys.current_key_id()
    console.print(f"re-wrapped {rewrapped} secret(s) under {current}")
    if failed:
        shown = ", ".join(failed[:10]) + (" ..." if len(failed) > 10 else "")
        err.print(f"[red]error:[/] {len(failed)} secret(s) could not be unwrapped and were left as they were: {shown}")
        return 1
    return 0


@vault_app.command("retire")
def retire(
    key_id: Annotated[str, typer.Argument(help="The key to remove.")],
    data_dir: DataDirOpt = None,
) -> None:
    """Remove a key from the key file; refused while any stored secret is still wrapped under it."""
    settings = _settings(data_dir)
    configure_logging("warning", "console")
    vault = Vault.from_settings(settings)

    async def count() -> int:
        database = Database.from_settings(settings)
        try:
            async with database.session() as session:
                return await SecretRepository(session).count_for_key(key_id)
        finally:
            await database.dispose()

    in_use = asyncio.run(count())
    if in_use:
        err.print(
            f"[red]refused:[/] {in_use} stored secret(s) are still wrapped under {key_id};"
            " run brokerlink vault rotate first"
        )
        raise typer.Exit(1)
    if key_id == vault.keys.current_key_id():
        err.print(f"[red]refused:[/] {key_id} is the current key; rotate to a new key first")
        raise typer.Exit(1)
    if key_id not in vault.keys.key_ids():
        err.print(f"[red]error:[/] the key source has no key {key_id}")
        raise typer.Exit(1)
    if not isinstance(vault.keys, LocalKeyFile):
        console.print(f"no stored secret uses {key_id}: remove it from BROKERLINK_VAULT_KEY and restart the servers")
        return
    try:
        vault.keys.remove_key(key_id)
    except (UnknownKeyId, KeySourceError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"retired {key_id}: removed from {vault.keys.path}")
