"""``brokerlink venue-binance serve``: run the Binance spot test venue on its own, on loopback, for manual tries."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich.console import Console

from brokerlink.cli.venue_serving import check_log_level, serve_on_loopback

venue_binance_app = typer.Typer(help="The Binance spot test venue (for the ccxt adapter).", no_args_is_help=True)
console = Console()


@venue_binance_app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8104,
    mode: Annotated[str, typer.Option(help="normal, test or demo (test/demo mount /_control).")] = "test",
    config: Annotated[Path | None, typer.Option(help="A JSON sim VenueConfig file (instrument_set crypto).")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve Binance spot's /api/v3, the WebSocket API (/ws-api/v3) and /ws/<listenKey> until SIGINT or SIGTERM.

    Point ccxt at it with the ccxt adapter's base URL (``http://127.0.0.1:PORT``).
    """
    from brokerlink.brokers.ccxt.venue import create_binance_venue_app, default_config
    from brokerlink.brokers.sim.venue.config import VenueConfig

    check_log_level(console, log_level)
    try:
        loaded = VenueConfig.load(config) if config else default_config()
        venue_config = msgspec.convert(
            msgspec.structs.asdict(loaded) | {"mode": mode}, VenueConfig, from_attributes=True
        )
        app = create_binance_venue_app(venue_config)
    except (OSError, msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(code=2) from exc
    console.print(f"Binance spot test venue (mode {venue_config.mode}) on http://127.0.0.1:{port}/api/v3")
    for account in venue_config.accounts:
        console.print(
            f"  account {account.account_id} ({account.cash} {account.currency}), key {account.api_key[:4]}..."
        )
    serve_on_loopback(app, port=port, log_level=log_level)
