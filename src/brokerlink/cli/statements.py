"""``brokerlink statements``: Account statements."""

from __future__ import annotations

import typer

statements_app = typer.Typer(help="Account statements.", no_args_is_help=True)
