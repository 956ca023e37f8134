"""``brokerlink statements``: Account statements.

``brokerlink statements export ACCOUNT_ID --period 2026-11 --format pdf --out nov.pdf`` writes the same
statement the REST route serves (:mod:`brokerlink.ledger.statements`), read from the store; the
server may be running. An operator command: it reads any account, so it runs where the database is.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from brokerlink.config import Settings
from brokerlink.kit.errors import BrokerlinkError, NotFound
from brokerlink.ledger.statements import build_statement, to_csv, to_pdf
from brokerlink.logs import configure_logging
from brokerlink.store.db import Database
from brokerlink.store.repositories.accounts import AccountRepository

statements_app = typer.Typer(help="Account statements.", no_args_is_help=True)
_err = Console(stderr=True)


class StatementFormat(StrEnum):
    """What ``export`` writes."""

    CSV = "csv"
    PDF = "pdf"


async def render(settings: Settings, account_id: str, period: str, fmt: StatementFormat) -> bytes:
    """The statement of ``account_id`` for ``period`` as CSV or PDF bytes (NotFound for an unknown account)."""
    database = Database.from_settings(settings)
    try:
        async with database.session() as session:
            account = await AccountRepository(session).get_by_id(account_id)
            if account is None:
                raise NotFound(f"account {account_id} not found")
            statement = await build_statement(session, account, period)
    finally:
        await database.dispose()
    return to_pdf(statement) if fmt is StatementFormat.PDF else to_csv(statement).encode()


@statements_app.command("export")
def export(
    account_id: Annotated[str, typer.Argument(help="The account (acc_...).")],
    period: Annotated[str, typer.Option("--period", help="The month, YYYY-MM (UTC).")],
    out: Annotated[Path, typer.Option("--out", help="The file to write.")],
    fmt: Annotated[StatementFormat, typer.Option("--format", help="csv or pdf.")] = StatementFormat.CSV,
    data_dir: Annotated[
        Path | None, typer.Option(help="Directory for all local state. [env: BROKERLINK_DATA_DIR; default ./var]")
    ] = None,
) -> None:
    """Write an account's monthly statement: opening and closing cash and equity, every cash posting,
    trade and fee of the month (PDF: with an equity chart)."""
    settings = Settings(data_dir=data_dir) if data_dir is not None else Settings()
    configure_logging("warning", "console")
    try:
        body = asyncio.run(render(settings, account_id, period, fmt))
    except BrokerlinkError as exc:
        _err.print(f"[red]error:[/] {exc.detail}")
        raise typer.Exit(code=1) from exc
    out.write_bytes(body)
    _err.print(f"wrote {out} ({len(body)} bytes)")
