"""The ``brokerlink`` command: serve, demo, migrate, user management, version."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from brokerlink import __version__
from brokerlink.cli import server
from brokerlink.cli.audit import audit_app
from brokerlink.cli.clients import clients_app
from brokerlink.cli.fees import fees_app
from brokerlink.cli.ledger import ledger_app
from brokerlink.cli.retention import retention_app
from brokerlink.cli.sim import sim_app
from brokerlink.cli.specs import specs_app
from brokerlink.cli.statements import statements_app
from brokerlink.cli.vault import vault_app
from brokerlink.cli.venue_alpaca import venue_alpaca_app
from brokerlink.cli.venue_binance import venue_binance_app
from brokerlink.cli.venue_oanda import venue_oanda_app
from brokerlink.config import Settings
from brokerlink.domain.enums import Role
from brokerlink.kit.errors import BrokerlinkError
from brokerlink.logs import configure_logging

app = typer.Typer(
    name="brokerlink",
    help="brokerlink: one secure API over many broker accounts, with copy trading built in.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
user_app = typer.Typer(help="Manage first-party users.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(sim_app, name="sim")
copy_app = typer.Typer(help="Copy trading.", no_args_is_help=True)
app.add_typer(copy_app, name="copy")
app.add_typer(audit_app, name="audit")
app.add_typer(vault_app, name="vault")
app.add_typer(retention_app, name="retention")
app.add_typer(ledger_app, name="ledger")
app.add_typer(fees_app, name="fees")
app.add_typer(statements_app, name="statements")
app.add_typer(clients_app, name="clients")
app.add_typer(venue_alpaca_app, name="venue-alpaca")
app.add_typer(venue_oanda_app, name="venue-oanda")
app.add_typer(venue_binance_app, name="venue-binance")
app.add_typer(specs_app, name="specs")

console = Console()
err = Console(stderr=True)

HostOpt = Annotated[str | None, typer.Option(help="Address to bind. [env: BROKERLINK_HOST; default 127.0.0.1]")]
PortOpt = Annotated[int | None, typer.Option(help="Port to listen on. [env: BROKERLINK_PORT; default 8000]")]
DataDirOpt = Annotated[
    Path | None, typer.Option(help="Directory for all local state. [env: BROKERLINK_DATA_DIR; default ./var]")
]


def _settings(**overrides: object) -> Settings:
    server.export_overrides(**overrides)
    return Settings()


def _migrate(settings: Settings) -> str | None:
    from brokerlink.store.migrate import current_revision, upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(upgrade(settings.effective_database_url))
    return asyncio.run(current_revision(settings.effective_database_url))


@app.command()
def version() -> None:
    """Print the version."""
    console.print(f"brokerlink {__version__}")


@app.command()
def migrate(data_dir: DataDirOpt = None) -> None:
    """Apply database migrations up to the latest revision."""
    settings = _settings(data_dir=data_dir)
    configure_logging(settings.log_level, "console")
    revision = _migrate(settings)
    console.print(f"database at revision [bold]{revision}[/] ({_safe_url(settings.effective_database_url)})")


@app.command()
def serve(
    host: HostOpt = None,
    port: PortOpt = None,
    data_dir: DataDirOpt = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes. [env: BROKERLINK_WORKERS]")] = None,
    server_name: Annotated[
        str | None, typer.Option("--server", help="uvicorn (default) or granian. [env: BROKERLINK_SERVER]")
    ] = None,
) -> None:
    """Run the API server (migrating the database first)."""
    settings = _settings(host=host, port=port, data_dir=data_dir, workers=workers, server=server_name)
    configure_logging(settings.log_level, settings.log_format)
    _migrate(settings)
    server.run(settings)


@app.command()
def demo(
    port: PortOpt = None,
    data_dir: DataDirOpt = None,
    server_name: Annotated[str | None, typer.Option("--server", help="uvicorn (default) or granian.")] = None,
) -> None:
    """Run the demo: two sim venues, the server on 127.0.0.1, demo users with linked accounts. Ctrl-C stops it."""
    from brokerlink.cli import demo_venues
    from brokerlink.cli.demo import PROVIDER, TRADERS, seed

    # The demo is plain HTTP on loopback by construction, where a browser may drop Secure cookies.
    settings = _settings(
        host="127.0.0.1", port=port, data_dir=data_dir, server=server_name, log_format="console", cookie_secure="false",
        demo_bot_email=PROVIDER,
    )  # fmt: skip
    configure_logging(settings.log_level, "console")
    _migrate(settings)
    credentials = asyncio.run(seed(settings))
    traders = [c.email for c in credentials if c.email in TRADERS]
    venues = demo_venues.load_or_create(settings, traders)
    try:
        with demo_venues.running(settings, venues):
            linked = asyncio.run(demo_venues.link_all(settings, venues, traders))
            strategies = asyncio.run(demo_venues.seed_copy_trading(settings, PROVIDER))
            url = f"http://127.0.0.1:{settings.port}"
            console.rule("[bold]brokerlink demo")
            console.print(f"dashboard   {url}/")
            console.print(f"API docs    {url}/docs  (sign in first)")
            console.print(f"health      {url}/healthz")
            console.print(f"data        {settings.data_dir}")
            for venue in venues:
                console.print(f"sim venue   {venue.label}: {venue.base_url}  ({venue.config.instrument_set})")
            if linked:
                console.print(f"linked      {linked} sim accounts for {', '.join(sorted(traders))}")
            for line in strategies:
                console.print(f"copying     {line}")
            console.print("copy status brokerlink copy status --data-dir " + str(settings.data_dir) + "  (live table)")
            for cred in credentials:
                console.print(f"sign in as  [bold]{cred.email}[/] / {cred.password}  ({cred.description})")
            console.print("Ctrl-C stops the server and the venues.")
            console.rule()
            server.run(settings)
    except RuntimeError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(code=1) from exc


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Option(help="Email address (the login name).")],
    name: Annotated[str, typer.Option(help="Display name.")],
    role: Annotated[Role, typer.Option(help="Role.")] = Role.USER,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input instead of prompting.")
    ] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Create a user. The password is prompted for (hidden), or read from stdin with --password-stdin."""
    from brokerlink.cli.demo import create_user

    settings = _settings(data_dir=data_dir)
    configure_logging("warning", "console")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    _migrate(settings)
    try:
        user_id = asyncio.run(create_user(settings, email=email, password=password, display_name=name, role=role))
    except BrokerlinkError as exc:
        err.print(f"[red]error:[/] {exc.detail}")
        raise typer.Exit(code=1) from exc
    console.print(f"created user [bold]{user_id}[/] ({email}, {role})")


def _safe_url(url: str) -> str:
    """A database URL without its password, for printing."""
    head, sep, tail = url.partition("://")
    if "@" not in tail:
        return url
    creds, _, host = tail.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{head}{sep}{user}:***@{host}"


@copy_app.command("status")
def copy_status(
    data_dir: DataDirOpt = None,
    watch: Annotated[bool, typer.Option("--watch", help="Redraw every second until Ctrl-C.")] = False,
) -> None:
    """Subscriptions, what they hold, P&L, skips by reason and copy latency percentiles."""
    from brokerlink.cli.copy_status import show

    settings = _settings(data_dir=data_dir)
    configure_logging("warning", "console")
    with contextlib.suppress(KeyboardInterrupt):
        show(settings, watch=watch, console=console)


@copy_app.command("reconcile")
def copy_reconcile(
    subscription: Annotated[
        str | None, typer.Option("--subscription", help="Only this subscription (sub_...).")
    ] = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="Close orphan copies, shrink or close links that claim too much.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Compare followers' broker positions with their copies. Exit status 1 when findings remain."""
    from brokerlink.cli.copy_reconcile import run

    settings = _settings(data_dir=data_dir)
    configure_logging("warning", "console")
    code = run(settings, subscription_id=subscription, repair=repair, as_json=as_json, console=console, err=err)
    raise typer.Exit(code=code)


def main() -> None:
    """Entry point of the ``brokerlink`` console script."""
    app()


if __name__ == "__main__":
    main()
