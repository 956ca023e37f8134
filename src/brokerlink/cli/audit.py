"""``brokerlink audit``: the tamper-evident audit trail (ADR 0016).

* ``verify``: walk the chain and its signed checkpoints; exit 0 when intact, 1 naming the first bad
  sequence and why. ``--public-key`` verifies with exported keys instead of the local key file
  (an off-host verifier), ``--checkpoints`` adds checkpoints from an export file.
* ``export``: records and checkpoints of a time range as JSON lines (``"type": "record"`` or
  ``"checkpoint"``), to a file or stdout.
* ``checkpoint``: sign the chain's head now (also appended to ``audit_checkpoint_export`` if set).
* ``public-key``: the signing key's public half, PEM, for verifiers off the host.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Annotated, Literal

import msgspec
import typer
from rich.console import Console

from brokerlink.config import Settings
from brokerlink.kit.clock import SystemClock
from brokerlink.logs import configure_logging
from brokerlink.security.audit_checkpoint import Checkpoint, checkpoint, read_checkpoints
from brokerlink.security.audit_sign import AuditKeyError, AuditSigner, key_id_of, load_public_key, public_key_pem
from brokerlink.security.audit_verify import VerifyResult, verify
from brokerlink.store.db import Database
from brokerlink.store.repositories.audit import AuditRepository

audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)

EXIT_OK = 0
EXIT_BROKEN = 1
EXIT_USAGE = 2

DataDirOpt = Annotated[
    Path | None, typer.Option(help="Directory for all local state. [env: BROKERLINK_DATA_DIR; default ./var]")
]


class ExportedRecord(msgspec.Struct, frozen=True, kw_only=True, tag="record", tag_field="type"):
    """One record in an export line (``details`` decoded)."""

    seq: int
    at: datetime
    actor_kind: str
    actor_id: str
    action: str
    target: str
    outcome: Literal["success", "failure", "denied"] | str
    request_id: str | None
    source_ip: str | None
    details: dict[str, str | int | bool | None]
    prev_hash: str
    hash: str


def _settings(data_dir: Path | None) -> Settings:
    configure_logging("warning", "console")
    return Settings(data_dir=data_dir) if data_dir is not None else Settings()


def _time(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 time", param_hint=name) from None
    # A time without a zone is read as UTC, the zone every stored time is in.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def run_verify(settings: Settings, *, public_keys: list[Path], checkpoints: list[Path], console: Console) -> int:
    """Verify and print; returns the exit status."""
    try:
        if public_keys:
            keys = {}
            for path in public_keys:
                key = load_public_key(path.read_bytes())
                keys[key_id_of(key)] = key
        else:
            signer = AuditSigner.from_settings(settings)
            # Verifying must not create a key: without one, every checkpoint is under an unknown key.
            keys = signer.public_keys() if signer.path.exists() else {}
        external: list[Checkpoint] = []
        for path in checkpoints:
            external.extend(read_checkpoints(path))
    except (AuditKeyError, OSError, ValueError) as exc:
        console.print(f"error: {exc}", highlight=False)
        return EXIT_USAGE

    async def once() -> VerifyResult:
        database = Database.from_settings(settings)
        try:
            async with database.session() as session:
                return await verify(session, public_keys=keys, external_checkpoints=external)
        finally:
            await database.dispose()

    result = asyncio.run(once())
    if result.ok:
        console.print(
            f"audit trail OK: {result.records_checked} records (sequences {result.start_sequence + 1} to"
            f" {result.head_sequence}), {result.checkpoints_checked} signed checkpoints",
            highlight=False,
        )
        return EXIT_OK
    console.print(f"audit trail BROKEN at sequence {result.first_bad_sequence}: {result.reason}", highlight=False)
    return EXIT_BROKEN


@audit_app.command("verify")
def verify_command(
    public_key: Annotated[
        list[Path] | None,
        typer.Option("--public-key", help="A PEM public key to verify with (repeatable); default: the local key."),
    ] = None,
    checkpoints: Annotated[
        list[Path] | None,
        typer.Option("--checkpoints", help="A JSON-lines file of exported checkpoints to check too (repeatable)."),
    ] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Walk the chain and its signed checkpoints. Exit 1 naming the first bad sequence when broken."""
    settings = _settings(data_dir)
    console = Console(highlight=False, soft_wrap=True)
    code = run_verify(settings, public_keys=public_key or [], checkpoints=checkpoints or [], console=console)
    raise typer.Exit(code=code)


@contextmanager
def _output(out: Path | None) -> Iterator[IO[bytes]]:
    if out is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with out.open("wb") as fh:
        yield fh


async def _export(settings: Settings, since: datetime | None, until: datetime | None, sink: IO[bytes]) -> int:
    database = Database.from_settings(settings)
    encoder = msgspec.json.Encoder()
    lines = 0
    try:
        async with database.session() as session:
            repository = AuditRepository(session)
            async for stored in repository.in_range(since=since, until=until):
                fields = msgspec.structs.asdict(stored)
                fields["details"] = msgspec.json.decode(stored.details)
                sink.write(encoder.encode(ExportedRecord(**fields)) + b"\n")
                lines += 1
            for row in await repository.checkpoints_in_range(since=since, until=until):
                sink.write(encoder.encode(Checkpoint.of(row)) + b"\n")
                lines += 1
    finally:
        await database.dispose()
    return lines


@audit_app.command("export")
def export_command(
    since: Annotated[str | None, typer.Option(help="From this time (ISO 8601; no zone means UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="Up to, not including, this time.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file instead of stdout.")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Records, then checkpoints, of a time range as JSON lines."""
    settings = _settings(data_dir)
    start, end = _time("--since", since), _time("--until", until)
    with _output(out) as sink:
        lines = asyncio.run(_export(settings, start, end, sink))
    if out is not None:
        Console(stderr=True).print(f"wrote {lines} lines to {out}", highlight=False)


@audit_app.command("checkpoint")
def checkpoint_command(data_dir: DataDirOpt = None) -> None:
    """Sign a checkpoint of the chain's head now."""
    settings = _settings(data_dir)
    signer = AuditSigner.from_settings(settings)

    async def once() -> Checkpoint:
        database = Database.from_settings(settings)
        try:
            async with database.session() as session:
                point = await checkpoint(
                    session, signer, SystemClock().now(), export_to=settings.audit_checkpoint_export
                )
                await session.commit()
                return point
        finally:
            await database.dispose()

    point = asyncio.run(once())
    Console(highlight=False).print(
        f"checkpoint at sequence {point.sequence} ({point.head_hash}) signed by {point.key_id}"
    )


@audit_app.command("public-key")
def public_key_command(data_dir: DataDirOpt = None) -> None:
    """Print the signing key's public half (PEM); its key id goes to stderr."""
    settings = _settings(data_dir)
    signer = AuditSigner.from_settings(settings)
    sys.stdout.write(public_key_pem(signer.public_key))
    Console(stderr=True).print(f"key id {signer.key_id}", highlight=False)
