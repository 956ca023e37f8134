"""``brokerlink venue-oanda serve``: run the OANDA v20 test venue on its own, on loopback, for manual tries."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich.console import Console

from brokerlink.cli.venue_serving import check_log_level, serve_on_loopback

venue_oanda_app = typer.Typer(help="The OANDA v20 test venue.", no_args_is_help=True)
console = Console()


@venue_oanda_app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8103,
    mode: Annotated[str, typer.Option(help="normal, test or demo (test/demo mount /_control).")] = "test",
    config: Annotated[Path | None, typer.Option(help="A JSON OandaVenueConfig file.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve v20's REST API and both streams under /v3 until SIGINT or SIGTERM."""
    from brokerlink.brokers.oanda.venue import OandaVenueConfig, create_oanda_venue_app

    check_log_level(console, log_level)
    try:
        loaded = msgspec.json.decode(config.read_bytes(), type=OandaVenueConfig) if config else OandaVenueConfig()
        venue_config = msgspec.convert(
            msgspec.structs.asdict(loaded) | {"mode": mode}, OandaVenueConfig, from_attributes=True
        )
    except (OSError, msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(code=2) from exc
    console.print(f"OANDA v20 test venue (mode {venue_config.mode}) on http://127.0.0.1:{port}/v3")
    for account in venue_config.accounts:
        console.print(f"  account {account.account_id} ({account.currency}), token {account.token[:4]}...")
    serve_on_loopback(create_oanda_venue_app(venue_config), port=port, log_level=log_level)
