"""``brokerlink fees``: Strategy fees."""

from __future__ import annotations

import typer

fees_app = typer.Typer(help="Strategy fees.", no_args_is_help=True)
