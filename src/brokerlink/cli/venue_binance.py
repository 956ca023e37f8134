"""``brokerlink venue-binance serve``: run the Binance spot test venue on its own, on loopback, for manual tries."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import msgspec
import typer
from rich.console import Console

venue_binance_app = typer.Typer(help="The Binance spot test venue (for the ccxt adapter).", no_args_is_help=True)
console = Console()


def _exit_after_graceful_shutdown(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


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
    import uvicorn

    from brokerlink.brokers.ccxt.venue import create_binance_venue_app, default_config
    from brokerlink.brokers.sim.venue.config import VenueConfig

    if log_level not in {"debug", "info", "warning", "error"}:
        console.print(f"[red]error:[/] --log-level must be debug, info, warning or error, not {log_level!r}")
        raise typer.Exit(code=2)
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
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _exit_after_graceful_shutdown)
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, server_header=False, log_level=log_level
    )
