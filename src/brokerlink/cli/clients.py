"""``brokerlink clients``: register and manage third-party apps from the host (ADR 0024).

* ``create --name ... --redirect-uri ... (--jwks-file keys.json | --jwks-uri https://...) --scope ...``
* ``list``, ``show APP_ID``: what is registered (``--json`` for one JSON document)
* ``disable APP_ID``: the app can no longer authenticate and every token it holds is revoked

The same checks as ``/v1/admin/clients`` (:mod:`brokerlink.security.oauth.clients`); each change is
audited with the ``system:cli`` actor. Servers learn of revoked tokens through the bus when it is
Redis; with the in-process bus they refuse them on their next database check (within seconds).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from brokerlink.bus.factory import create_bus
from brokerlink.cli import server
from brokerlink.config import Settings
from brokerlink.engine.audit import CLI
from brokerlink.kit.clock import SystemClock
from brokerlink.kit.errors import BrokerlinkError, InvalidInput
from brokerlink.logs import configure_logging
from brokerlink.security.audit import record
from brokerlink.security.oauth.clients import (
    DEFAULT_GRANT_TYPES,
    ClientDraft,
    ClientPolicy,
    ClientRegistry,
    ClientRepository,
    OAuthClient,
)
from brokerlink.security.oauth.revocation import TokensRevoked, publish_revocation
from brokerlink.store.db import Database

clients_app = typer.Typer(help="Third-party apps (OAuth clients).", no_args_is_help=True)
"""Mounted as ``brokerlink clients`` (cli/main.py)."""

console = Console()
err = Console(stderr=True)

DataDirOpt = Annotated[
    Path | None, typer.Option(help="Directory for all local state. [env: BROKERLINK_DATA_DIR; default ./var]")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _settings(data_dir: Path | None) -> Settings:
    server.export_overrides(data_dir=data_dir)
    configure_logging("warning", "console")
    return Settings()


def _json(client: OAuthClient) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(client)
    data["active"] = client.active
    return data


def _fail(exc: BrokerlinkError) -> typer.Exit:
    errors = exc.extra.get("errors") if isinstance(exc, InvalidInput) else None
    if isinstance(errors, list) and errors:
        for item in errors:
            err.print(f"[red]error:[/] {item['field']}: {item['message']}")
    else:
        err.print(f"[red]error:[/] {exc.detail}")
    return typer.Exit(code=1)


@clients_app.command("create")
def create_command(  # noqa: PLR0917 - one option per field
    name: Annotated[str, typer.Option(help="The app's name, shown to users on the consent page.")],
    scope: Annotated[list[str], typer.Option("--scope", help="A scope the app may ask for (repeat).")],
    redirect_uri: Annotated[
        list[str] | None, typer.Option("--redirect-uri", help="An exact redirect URI (repeat).")
    ] = None,
    jwks_file: Annotated[
        Path | None, typer.Option("--jwks-file", help="JSON Web Key Set file of the app's public keys.")
    ] = None,
    jwks_uri: Annotated[str | None, typer.Option("--jwks-uri", help="https URL of the app's key set.")] = None,
    grant_type: Annotated[
        list[str] | None,
        typer.Option("--grant-type", help="authorization_code, refresh_token or client_credentials (repeat)."),
    ] = None,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Register an app. Prints its client id."""
    settings = _settings(data_dir)
    jwks: dict[str, Any] | None = None
    if jwks_file is not None:
        try:
            loaded = json.loads(jwks_file.read_text())
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(f"cannot read a JSON key set: {exc}", param_hint="--jwks-file") from None
        if not isinstance(loaded, dict):
            raise typer.BadParameter("the key set must be a JSON object", param_hint="--jwks-file")
        jwks = loaded
    draft = ClientDraft(
        name=name,
        redirect_uris=list(redirect_uri or []),
        jwks=jwks,
        jwks_uri=jwks_uri,
        scopes=list(scope),
        grant_types=list(grant_type or DEFAULT_GRANT_TYPES),
    )

    async def run() -> OAuthClient:
        clock = SystemClock()
        database = Database.from_settings(settings)
        try:
            async with database.session() as session:
                client = await ClientRegistry(session, clock, ClientPolicy.from_settings(settings)).create(
                    draft, created_by=None
                )
                await record(
                    session, actor=CLI, action="oauth_client.create", target=client.id, now=clock.now(),
                    details={"name": client.name, "scope": " ".join(client.scopes)},
                )  # fmt: skip
                await session.commit()
                return client
        finally:
            await database.dispose()

    try:
        client = asyncio.run(run())
    except BrokerlinkError as exc:
        raise _fail(exc) from exc
    if as_json:
        console.file.write(json.dumps(_json(client), default=str) + "\n")
        return
    console.print(f"registered [bold]{client.id}[/] ({client.name}): {' '.join(client.scopes)}")


async def _load(settings: Settings, client_id: str | None) -> list[OAuthClient]:
    database = Database.from_settings(settings)
    try:
        async with database.session() as session:
            repository = ClientRepository(session)
            if client_id is None:
                return await repository.list_all()
            client = await repository.get(client_id)
            return [client] if client is not None else []
    finally:
        await database.dispose()


@clients_app.command("list")
def list_command(as_json: JsonOpt = False, data_dir: DataDirOpt = None) -> None:
    """Every registered app, disabled ones included."""
    settings = _settings(data_dir)
    clients = asyncio.run(_load(settings, None))
    if as_json:
        console.file.write(json.dumps([_json(c) for c in clients], default=str) + "\n")
        return
    table = Table(title="apps")
    for header in ("id", "name", "status", "scopes", "redirect URIs", "keys"):
        table.add_column(header)
    for c in clients:
        keys = c.jwks_uri or f"{len((c.jwks or {}).get('keys', []))} key(s)"
        status = "active" if c.active else "disabled"
        table.add_row(c.id, c.name, status, " ".join(c.scopes), "\n".join(c.redirect_uris) or "-", keys)
    if not clients:
        table.caption = "no apps registered"
    console.print(table)


@clients_app.command("show")
def show_command(
    client_id: Annotated[str, typer.Argument(help="The app's client id (app_...).")],
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
) -> None:
    """One app's registration."""
    settings = _settings(data_dir)
    found = asyncio.run(_load(settings, client_id))
    if not found:
        err.print(f"[red]error:[/] no app {client_id}")
        raise typer.Exit(code=1)
    data = _json(found[0])
    if as_json:
        console.file.write(json.dumps(data, default=str) + "\n")
        return
    for key, value in data.items():
        console.print(f"{key:14} {json.dumps(value, default=str) if isinstance(value, dict | list) else value}")


@clients_app.command("disable")
def disable_command(
    client_id: Annotated[str, typer.Argument(help="The app's client id (app_...).")],
    data_dir: DataDirOpt = None,
) -> None:
    """Disable an app and revoke every token it holds. Idempotent."""
    settings = _settings(data_dir)

    async def run() -> tuple[bool, int]:
        clock = SystemClock()
        database = Database.from_settings(settings)
        try:
            async with database.session() as session:
                disabled = await ClientRegistry(session, clock, ClientPolicy.from_settings(settings)).disable(client_id)
                if disabled.changed:
                    await record(
                        session, actor=CLI, action="oauth_client.disable", target=client_id, now=clock.now(),
                        details={"revoked": len(disabled.token_ids)},
                    )  # fmt: skip
                await session.commit()
        finally:
            await database.dispose()
        if disabled.token_ids and settings.bus_backend == "redis":
            await _announce(
                settings, TokensRevoked(token_ids=disabled.token_ids, reason="client_disabled", at=clock.now())
            )
        return disabled.changed, len(disabled.token_ids)

    try:
        changed, revoked = asyncio.run(run())
    except BrokerlinkError as exc:
        raise _fail(exc) from exc
    state = "disabled" if changed else "was already disabled"
    console.print(f"{client_id} {state}; {revoked} token(s) revoked")


async def _announce(settings: Settings, message: TokensRevoked) -> None:
    bus = create_bus(settings)
    try:
        await publish_revocation(bus, message)
    finally:
        await bus.close()
