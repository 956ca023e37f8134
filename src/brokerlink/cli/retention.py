"""``brokerlink retention``: Data retention."""

from __future__ import annotations

import typer

retention_app = typer.Typer(help="Data retention.", no_args_is_help=True)
