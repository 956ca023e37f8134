"""``brokerlink audit``: The tamper-evident audit trail."""

from __future__ import annotations

import typer

audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)
