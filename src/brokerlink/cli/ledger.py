"""``brokerlink ledger``: the double-entry ledger.

* ``balances [--user EMAIL|ID] [--at TIME] [--json]``: balances per account and currency;
* ``trial-balance [--at TIME] [--json]``: all debits minus all credits per currency (exit 1 if not zero);
* ``reconcile [--account ID] [--post] [--json]``: ledger cash against broker-reported cash (exit 1
  when a difference is unexplained; ``--post`` runs the poster first, as the server would);
* ``confirm-capital ACCOUNT AMOUNT --reference REF``: the owner confirms a deposit (positive) or
  withdrawal (negative) the broker made; posted against ``equity:capital``. Brokers do not report
  cash movements to brokerlink yet, so an unexplained difference is booked only when someone
  confirms it - never guessed.

Decimals are printed as strings in JSON. These commands read the store directly; they do not need
the server to run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, TypeVar

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from brokerlink.config import Settings
from brokerlink.kit.clock import SystemClock
from brokerlink.kit.errors import BrokerlinkError
from brokerlink.ledger import journal
from brokerlink.ledger.poster import LedgerPoster
from brokerlink.ledger.postings import capital_entry
from brokerlink.ledger.reconcile import Reconciliation, reconcile_account, report_drift
from brokerlink.logs import configure_logging
from brokerlink.store.db import Database
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.ledger import BrokerActivityRepository
from brokerlink.store.repositories.users import UserRepository

T = TypeVar("T")

ledger_app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2

_console = Console()
_err = Console(stderr=True)

DataDirOpt = Annotated[
    Path | None, typer.Option(help="Directory for all local state. [env: BROKERLINK_DATA_DIR; default ./var]")
]
AtOpt = Annotated[str | None, typer.Option("--at", help="As of this ISO 8601 time with a zone (default: now).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]


def _settings(data_dir: Path | None) -> Settings:
    return Settings(data_dir=data_dir) if data_dir is not None else Settings()


def _at(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not an ISO 8601 time: {value!r}") from None
    if at.tzinfo is None:
        raise typer.BadParameter("the time needs a zone, e.g. 2026-11-21T12:00:00+00:00")
    return at


def _print_json(value: object) -> None:
    _console.file.write(msgspec.json.encode(value).decode() + "\n")


async def _with_db(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    database = Database.from_settings(settings)
    try:
        return await work(database)
    finally:
        await database.dispose()


@ledger_app.command("balances")
def balances(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's books (email or usr_ id).")] = None,
    at: AtOpt = None,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Balances per account and currency, in each account's natural sign."""
    when = _at(at)

    async def work(database: Database) -> list[journal.AccountBalance] | None:
        async with database.session() as session:
            owner = None
            if user is not None:
                found = await (
                    UserRepository(session).get_by_email(user) if "@" in user else UserRepository(session).get(user)
                )
                if found is None:
                    return None
                owner = found.id
            return await journal.balances(session, owner_id=owner, at=when)

    rows = asyncio.run(_with_db(_settings(data_dir), work))
    if rows is None:
        _err.print(f"[red]error:[/] no user {user}")
        raise typer.Exit(code=EXIT_USAGE)
    if as_json:
        _print_json({"at": when, "balances": rows})
        return
    table = Table(title="Ledger balances" + (f" at {when.isoformat()}" if when else ""))
    for column in ("account", "currency", "balance", "debits", "credits"):
        table.add_column(column, justify="right" if column in {"balance", "debits", "credits"} else "left")
    for row in rows:
        table.add_row(row.account, row.currency, str(row.balance), str(row.debits), str(row.credits))
    _console.print(table)


@ledger_app.command("trial-balance")
def trial_balance(at: AtOpt = None, as_json: JsonOpt = False, data_dir: DataDirOpt = None) -> None:
    """All debits minus all credits per currency: zero when the books are sound (exit status 1 otherwise)."""
    when = _at(at)

    async def work(database: Database) -> dict[str, Decimal]:
        async with database.session() as session:
            return await journal.trial_balance(session, at=when)

    totals = asyncio.run(_with_db(_settings(data_dir), work))
    balanced = all(v == 0 for v in totals.values())
    if as_json:
        _print_json({"at": when, "totals": totals, "balanced": balanced})
    else:
        for currency, total in totals.items():
            _console.print(f"{currency}  {total}")
        _console.print("balanced" if balanced else "[red]NOT balanced[/]")
    raise typer.Exit(code=EXIT_OK if balanced else EXIT_FINDINGS)


@ledger_app.command("reconcile")
def reconcile(
    account: Annotated[str | None, typer.Option("--account", help="Only this account (acc_...).")] = None,
    post: Annotated[
        bool, typer.Option("--post", help="Post unposted fills first (the server does it itself).")
    ] = False,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Ledger cash per account against the broker-reported cash. Exit status 1 if a difference is unexplained."""
    configure_logging("warning", "console")  # to stderr: stdout is the report

    async def work(database: Database) -> list[Reconciliation]:
        if post:
            await LedgerPoster(database, SystemClock()).run_once()
        async with database.session() as session:
            ids = [account] if account else await BrokerActivityRepository(session).account_ids()
        results: list[Reconciliation] = []
        for account_id in ids:
            async with database.session() as session:
                results.extend(await reconcile_account(session, account_id))
        report_drift(results)
        return results

    try:
        results = asyncio.run(_with_db(_settings(data_dir), work))
    except BrokerlinkError as exc:
        _err.print(f"[red]error:[/] {exc.detail}")
        raise typer.Exit(code=EXIT_USAGE) from None
    if as_json:
        _print_json({"accounts": results})
    else:
        table = Table(title="Ledger reconciliation")
        for column in ("account", "currency", "status", "broker", "ledger", "difference", "unexplained", "unposted"):
            table.add_column(column)
        for r in results:
            table.add_row(
                r.account_id,
                r.currency,
                r.status,
                str(r.broker_cash),
                str(r.ledger_cash),
                str(r.difference),
                str(r.unexplained),
                str(len(r.unposted_fills)),
            )
        _console.print(table)
    raise typer.Exit(code=EXIT_FINDINGS if any(r.status == "unexplained" for r in results) else EXIT_OK)


@ledger_app.command("confirm-capital")
def confirm_capital(  # noqa: PLR0917 - typer maps parameters to arguments and options
    account: Annotated[str, typer.Argument(help="The account (acc_...).")],
    amount: Annotated[str, typer.Argument(help="Deposit (positive) or withdrawal (negative), e.g. 250.00.")],
    reference: Annotated[str, typer.Option("--reference", help="The broker's reference: the idempotency key.")],
    currency: Annotated[str | None, typer.Option("--currency", help="Default: the account's currency.")] = None,
    at: AtOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Book a deposit or withdrawal the account's owner confirms (against equity:capital)."""
    try:
        value = Decimal(amount)
    except InvalidOperation:
        raise typer.BadParameter(f"not a decimal amount: {amount!r}") from None
    if not value.is_finite() or not value:
        raise typer.BadParameter("the amount must be a non-zero number")
    when = _at(at)

    async def work(database: Database) -> str | None:
        async with database.session() as session:
            found = await AccountRepository(session).get_by_id(account)
            if found is None:
                return None
            now = SystemClock().now()
            entry = capital_entry(
                found.id,
                found.user_id,
                currency or found.currency,
                value,
                reference=reference,
                occurred_at=when or now,
            )
            entry_id = await journal.post(session, entry, now=now)
            await session.commit()
            return entry_id

    try:
        entry_id = asyncio.run(_with_db(_settings(data_dir), work))
    except BrokerlinkError as exc:
        _err.print(f"[red]error:[/] {exc.detail}")
        raise typer.Exit(code=EXIT_USAGE) from None
    if entry_id is None:
        _err.print(f"[red]error:[/] no account {account}")
        raise typer.Exit(code=EXIT_USAGE)
    _console.print(f"posted {entry_id}")
