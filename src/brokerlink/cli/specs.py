"""``brokerlink specs``: write the published API documents to ``docs/`` (ADR 0034).

* ``write [--out-dir docs]``: build the OpenAPI document exactly as ``/openapi.json`` serves it and
  the AsyncAPI document as ``/asyncapi.json`` serves it, and write ``openapi.json`` and
  ``asyncapi.json``. Run it (or ``make specs``) after changing a route, a schema or the stream
  protocol, and commit the result; a test fails while the committed copies differ.
* ``write --check``: write nothing; exit 1 and name the files that are out of date.

The app is built from its import string (as the servers do, :data:`brokerlink.cli.server.APP_FACTORY`)
without starting it: no database, no network.
"""

from __future__ import annotations

import importlib
import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from pydantic import SecretStr
from rich.console import Console

from brokerlink.cli import server
from brokerlink.config import Settings
from brokerlink.stream.asyncapi import asyncapi_document

specs_app = typer.Typer(help="The published API documents (OpenAPI, AsyncAPI).", no_args_is_help=True)

console = Console()
err = Console(stderr=True)

OPENAPI_FILE = "openapi.json"
ASYNCAPI_FILE = "asyncapi.json"
_THROWAWAY_SECRET = "specs-are-built-without-signing-anything-" + "0" * 16


def render(document: dict[str, Any]) -> str:
    """The committed text of a document: two-space indents, UTF-8, a final newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def documents(settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    """File name to document, as the server with these settings publishes them."""
    with tempfile.TemporaryDirectory(prefix="brokerlink-specs-") as tmp:
        settings = settings or Settings(data_dir=Path(tmp), secret_key=SecretStr(_THROWAWAY_SECRET))
        module_name, _, attribute = server.APP_FACTORY.partition(":")
        create_app = getattr(importlib.import_module(module_name), attribute)
        app = create_app(settings, configure_logs=False)
        # As the server sends it: msgspec encodes what Litestar left as Python values (Decimal defaults).
        openapi: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(app.openapi_schema.to_schema()))
    return {
        OPENAPI_FILE: openapi,
        ASYNCAPI_FILE: asyncapi_document(session_cookie=settings.session_cookie),
    }


@specs_app.command("write")
def write(
    out_dir: Annotated[Path, typer.Option(help="Where to write the documents.")] = Path("docs"),
    check: Annotated[bool, typer.Option("--check", help="Write nothing; exit 1 if a file is out of date.")] = False,
) -> None:
    """Write docs/openapi.json and docs/asyncapi.json from the code (or check that they are current)."""
    stale: list[str] = []
    for name, document in documents().items():
        path = out_dir / name
        text = render(document)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(str(path))
        if not check:
            out_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if check and stale:
        err.print("[red]out of date:[/] " + ", ".join(stale) + "  (run: brokerlink specs write)")
        raise typer.Exit(code=1)
    if not check:
        console.print("wrote " + ", ".join(stale) if stale else "specs are up to date")
