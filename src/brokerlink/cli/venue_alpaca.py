"""``brokerlink venue-alpaca serve``: run the Alpaca test venue on its own, on loopback, for manual tries."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich.console import Console

from brokerlink.cli.venue_serving import check_log_level, serve_on_loopback

venue_alpaca_app = typer.Typer(help="The Alpaca test venue.", no_args_is_help=True)
console = Console()


@venue_alpaca_app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8105,
    mode: Annotated[str, typer.Option(help="normal, test or demo (test/demo mount /_control).")] = "test",
    config: Annotated[Path | None, typer.Option(help="A JSON VenueConfig file (the sim venue's format).")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve the Trading API v2, /stream and the market data paths and streams until SIGINT or SIGTERM."""
    from brokerlink.brokers.alpaca.venue import create_alpaca_venue_app, default_config
    from brokerlink.brokers.sim.venue.config import VenueConfig

    check_log_level(console, log_level)
    if mode not in {"normal", "test", "demo"}:
        console.print(f"[red]error:[/] --mode must be normal, test or demo, not {mode!r}")
        raise typer.Exit(code=2)
    try:
        loaded = VenueConfig.load(config) if config else default_config()
        venue_config = msgspec.structs.replace(loaded, mode=mode)
    except (OSError, msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(code=2) from exc
    console.print(f"Alpaca test venue (mode {venue_config.mode}) on http://127.0.0.1:{port}")
    for account in venue_config.accounts:
        console.print(f"  account {account.account_id} ({account.currency}), key id {account.api_key}")
    serve_on_loopback(create_alpaca_venue_app(venue_config), port=port, log_level=log_level)
