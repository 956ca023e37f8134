"""``brokerlink ledger``: The double-entry ledger."""

from __future__ import annotations

import typer

ledger_app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)
