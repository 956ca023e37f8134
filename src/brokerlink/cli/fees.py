"""``brokerlink fees``: accrue and settle strategy fees from the command line (ADR 0021).

* ``settle [--period 2026-11]``: settle every subscription for a finished period (default: the one
  before the current period). Idempotent: what was settled before stays as it is, so it is safe
  to run while servers run their own fee task.
* ``accrue [--day 2026-11-20]``: accrue one day's management fee (default: yesterday, UTC) and the
  volume fee of the copy fills of that day's period.

Without a server there are no live quotes: open copies are marked at the account's last fill price
in the symbol. Prints one JSON object with ``--json``, a line of text otherwise.
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich.console import Console

from brokerlink.cli import server
from brokerlink.config import Settings
from brokerlink.kit.clock import SystemClock
from brokerlink.kit.errors import BrokerlinkError
from brokerlink.ledger.fee_periods import parse_period, period_of, previous_period
from brokerlink.ledger.fees import FeeConfig, SettlementReport, accrue_day, settle_period
from brokerlink.logs import configure_logging
from brokerlink.store.db import Database

fees_app = typer.Typer(help="Strategy fees.", no_args_is_help=True)

console = Console()
err = Console(stderr=True)

DataDirOpt = Annotated[
    Path | None, typer.Option(help="Directory for all local state. [env: BROKERLINK_DATA_DIR; default ./var]")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]


class AccrualJson(msgspec.Struct, kw_only=True):
    """What ``accrue --json`` prints."""

    day: date
    lines: int


def _settings(data_dir: Path | None) -> Settings:
    server.export_overrides(data_dir=data_dir)
    configure_logging("warning", "console")
    return Settings()


@fees_app.command("settle")
def settle_command(
    period: Annotated[
        str | None, typer.Option(help="The period: 2026-11 (or 2026-Q4 when quarterly). Default: the previous one.")
    ] = None,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Settle every subscription's fees for a finished period: invoice lines and ledger entries."""
    settings = _settings(data_dir)
    config = FeeConfig.from_settings(settings)
    clock = SystemClock()

    async def run() -> SettlementReport:
        now = clock.now()
        target = (
            parse_period(config.period, period)
            if period is not None
            else previous_period(config.period, period_of(config.period, now))
        )
        database = Database.from_settings(settings)
        try:
            async with database.session() as session:
                report = await settle_period(session, target, config=config, now=now)
                await session.commit()
                return report
        finally:
            await database.dispose()

    try:
        report = asyncio.run(run())
    except BrokerlinkError as exc:
        err.print(f"[red]error:[/] {exc.detail}")
        raise typer.Exit(code=2) from exc
    if as_json:
        console.file.write(msgspec.json.encode(report).decode() + "\n")
        return
    charged = ", ".join(f"{amount} {currency}" for currency, amount in sorted(report.charged.items())) or "nothing"
    console.print(
        f"settled {report.period}: {report.subscriptions} subscriptions, {report.lines} new lines, charged {charged}"
    )


@fees_app.command("accrue")
def accrue_command(
    day: Annotated[str | None, typer.Option(help="The UTC day, 2026-11-20. Default: yesterday.")] = None,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Accrue a day's management fee and the volume fee of the copy fills so far (idempotent)."""
    settings = _settings(data_dir)
    config = FeeConfig.from_settings(settings)
    clock = SystemClock()
    now = clock.now()
    try:
        target = date.fromisoformat(day) if day is not None else now.date() - timedelta(days=1)
    except ValueError:
        raise typer.BadParameter(f"{day!r} is not a day like 2026-11-20", param_hint="--day") from None

    async def run() -> int:
        database = Database.from_settings(settings)
        try:
            async with database.session() as session:
                lines = await accrue_day(session, target, config=config, now=now)
                await session.commit()
                return lines
        finally:
            await database.dispose()

    lines = asyncio.run(run())
    if as_json:
        console.file.write(msgspec.json.encode(AccrualJson(day=target, lines=lines)).decode() + "\n")
        return
    console.print(f"accrued {target}: {lines} new lines")
