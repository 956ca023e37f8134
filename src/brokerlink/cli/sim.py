"""``brokerlink sim``: run the built-in sim venue on its own, on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec
import typer
from rich.console import Console

from brokerlink.cli.venue_serving import check_log_level, serve_on_loopback

sim_app = typer.Typer(help="The built-in sim broker venue.", no_args_is_help=True)
console = Console()

SetName = Literal["fx", "equities", "crypto"]


@sim_app.command()
def serve(  # noqa: PLR0917 - one parameter per command-line option
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8100,
    instrument_set: Annotated[str | None, typer.Option("--set", help="fx, crypto or equities.")] = None,
    seed: Annotated[int | None, typer.Option(help="Market data seed.")] = None,
    mode: Annotated[str | None, typer.Option(help="normal, test or demo (test/demo mount /_control).")] = None,
    config: Annotated[Path | None, typer.Option(help="A JSON VenueConfig file; flags override it.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the sim venue (REST under /api/v1, WebSocket at /ws) until SIGINT or SIGTERM."""
    from brokerlink.brokers.sim.venue import VenueConfig, create_venue_app

    check_log_level(console, log_level)
    try:
        venue_config = VenueConfig.load(config) if config else VenueConfig()
        changes: dict[str, object] = {}
        if instrument_set is not None:
            changes["instrument_set"] = instrument_set
        if seed is not None:
            changes["seed"] = seed
        if mode is not None:
            changes["mode"] = mode
        # Round-trip through msgspec so flag values are validated like the file's.
        merged = msgspec.structs.asdict(venue_config) | changes
        venue_config = msgspec.convert(merged, VenueConfig, from_attributes=True)
    except (OSError, msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(code=2) from exc
    set_name: SetName = venue_config.instrument_set
    console.print(
        f"sim venue ({set_name}, seed {venue_config.seed}, mode {venue_config.mode}) on http://127.0.0.1:{port}"
    )
    serve_on_loopback(create_venue_app(venue_config), port=port, log_level=log_level)
