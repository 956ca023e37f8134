"""``brokerlink retention purge [--dry-run]``: delete what the retention policy has expired, now.

The same purge the server runs every ``retention_purge_every_s`` seconds (:mod:`brokerlink.engine.retention`),
with the policy from the ``retention_*`` settings; ``--dry-run`` counts instead of deleting. Safe to
run while servers are running: it deletes in small transactions. Prints a table, or one JSON object
with ``--json``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from brokerlink.cli import server
from brokerlink.config import Settings
from brokerlink.engine.retention import PurgeReport, RetentionPolicy, purge
from brokerlink.kit.clock import SystemClock
from brokerlink.logs import configure_logging
from brokerlink.security.audit_sign import AuditSigner
from brokerlink.store.db import Database

retention_app = typer.Typer(help="Data retention.", no_args_is_help=True)

console = Console()

DataDirOpt = Annotated[
    Path | None, typer.Option(help="Directory for all local state. [env: BROKERLINK_DATA_DIR; default ./var]")
]


@retention_app.command("purge")
def purge_command(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Delete expired sessions, order history, copy events and signals, event log rows and audit records."""
    server.export_overrides(data_dir=data_dir)
    settings = Settings()
    configure_logging("warning", "console")
    policy = RetentionPolicy.from_settings(settings)

    async def run() -> PurgeReport:
        database = Database.from_settings(settings)
        try:
            return await purge(
                database,
                SystemClock(),
                policy,
                dry_run=dry_run,
                audit_signer=AuditSigner.from_settings(settings),
                audit_export=settings.audit_checkpoint_export,
            )
        finally:
            await database.dispose()

    report = asyncio.run(run())
    if as_json:
        console.file.write(msgspec.json.encode(report).decode() + "\n")
        return
    table = Table(title="retention purge (dry run: nothing deleted)" if dry_run else "retention purge")
    table.add_column("kind")
    table.add_column("older than")
    table.add_column("would delete" if dry_run else "deleted", justify="right")
    policy_of = {"fills": "orders", "copy_events": "copy", "copy_signals": "copy"}
    for kind, count in report.counts.items():
        cutoff = report.cutoffs.get(policy_of.get(kind, kind))
        table.add_row(kind, cutoff.isoformat(timespec="seconds") if cutoff else "kept forever", str(count))
    console.print(table)
