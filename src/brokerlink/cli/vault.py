"""``brokerlink vault``: The credential vault's keys."""

from __future__ import annotations

import typer

vault_app = typer.Typer(help="The credential vault's keys.", no_args_is_help=True)
