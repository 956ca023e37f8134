"""Tamper tests (SECURITY.md 34; issue 6 acceptance): editing, deleting, reordering and truncating audit
records, on SQLite and PostgreSQL, are each caught by ``verify`` and by ``brokerlink audit verify``,
which names the first bad sequence.

The attacker here has the database owner's rights: the append-only triggers are switched off first
(``tampering``), as anyone who can drop them could. What must still catch them is the chain and the
signed checkpoints.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from typer.testing import CliRunner, Result

from brokerlink import observe
from brokerlink.cli.main import app
from brokerlink.kit.clock import ManualClock
from brokerlink.security.audit import record_hash
from brokerlink.security.audit_checkpoint import checkpoint
from brokerlink.security.audit_sign import AuditSigner
from brokerlink.security.audit_task import AuditCheckpointer
from brokerlink.security.audit_verify import AuditIntegrityError, VerifyResult, purge_before, verify
from brokerlink.store.db import Database
from brokerlink.store.repositories.audit import AuditRepository
from tests.security.test_audit_fixtures import (  # noqa: F401 - fixtures
    T0,
    audit_db_fixture,
    audit_pg_cleanup,
    audit_url_fixture,
    seed,
    signer_fixture,
    tampering,
)

Tamper = Callable[[AsyncConnection], Awaitable[None]]
runner = CliRunner()
_COLUMNS = "at, actor_kind, actor_id, action, target, outcome, request_id, source_ip, details, prev_hash, hash"


@pytest.fixture(autouse=True)
def restore_environment() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


async def _verify(db: Database, signer: AuditSigner) -> VerifyResult:
    async with db.session() as session:
        return await verify(session, public_keys=signer.public_keys())


async def _cli_verify(db: Database, data_dir: Path, *extra: str) -> Result:
    """``brokerlink audit verify --data-dir DIR`` on this database, in a thread (the CLI runs its own loop)."""
    os.environ["BROKERLINK_DATABASE_URL"] = db.url.render_as_string(hide_password=False)
    return await asyncio.to_thread(runner.invoke, app, ["audit", "verify", "--data-dir", str(data_dir), *extra])


async def _trail(db: Database, signer: AuditSigner, n: int = 10, *, checkpoints: tuple[int, ...] = (10,)) -> None:
    await seed(db, n)
    async with db.session() as session:
        records = [r async for r in AuditRepository(session).walk(after=0)]
        for seq in checkpoints:
            await checkpoint(session, signer, T0, sequence=seq, head_hash=records[seq - 1].hash)
        await session.commit()


async def _edit(conn: AsyncConnection) -> None:
    await conn.execute(text("UPDATE audit_records SET outcome = 'success', target = 'usr_cover' WHERE seq = 4"))


async def _delete(conn: AsyncConnection) -> None:
    await conn.execute(text("DELETE FROM audit_records WHERE seq = 6"))


async def _reorder(conn: AsyncConnection) -> None:
    # Swap the whole contents (hashes included) of records 3 and 7; each keeps its sequence number.
    # (The SQL is built from the constant column list only.)
    await conn.execute(
        text(f"CREATE TEMPORARY TABLE swap AS SELECT seq, {_COLUMNS} FROM audit_records WHERE seq IN (3, 7)")  # noqa: S608
    )
    sets = ", ".join(
        f"{c} = (SELECT {c} FROM swap WHERE swap.seq = 10 - audit_records.seq)"  # noqa: S608
        for c in _COLUMNS.split(", ")
    )
    await conn.execute(text(f"UPDATE audit_records SET {sets} WHERE seq IN (3, 7)"))  # noqa: S608
    await conn.execute(text("DROP TABLE swap"))


async def _truncate(conn: AsyncConnection) -> None:
    await conn.execute(text("DELETE FROM audit_records WHERE seq >= 8"))


SCENARIOS: dict[str, tuple[Tamper, int, str]] = {
    "edit": (_edit, 4, "record 4 does not match its hash"),
    "delete": (_delete, 6, "record 6 is missing"),
    "reorder": (_reorder, 3, "record 3 does not chain to record 2"),
    "truncate": (_truncate, 8, "truncated below the signed checkpoint at 10"),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_audit_tamper_is_caught_by_verify_and_the_cli(
    scenario: str, audit_db: Database, signer: AuditSigner, tmp_path: Path
) -> None:
    tamper, bad_sequence, reason = SCENARIOS[scenario]
    await _trail(audit_db, signer)
    assert (await _verify(audit_db, signer)).ok
    clean = await _cli_verify(audit_db, tmp_path)
    assert clean.exit_code == 0, clean.output
    assert "OK: 10 records" in clean.output

    async with tampering(audit_db) as conn:
        await tamper(conn)

    result = await _verify(audit_db, signer)
    assert not result.ok
    assert result.first_bad_sequence == bad_sequence
    assert reason in (result.reason or "")
    cli = await _cli_verify(audit_db, tmp_path)
    assert cli.exit_code == 1, cli.output
    assert f"BROKEN at sequence {bad_sequence}:" in cli.output
    assert reason in cli.output


async def test_audit_rewritten_chain_is_caught_by_the_signed_checkpoint(
    audit_db: Database, signer: AuditSigner
) -> None:
    """An attacker who edits record 6 and recomputes every hash after it leaves a valid-looking chain;
    the checkpoint signed at 10 names a hash it no longer has. The last good checkpoint is at 3."""
    await _trail(audit_db, signer, checkpoints=(3, 10))
    async with audit_db.session() as session:
        records = [r async for r in AuditRepository(session).walk(after=0)]
    async with tampering(audit_db) as conn:
        prev = records[4].hash
        for stored in records[5:]:
            target = "usr_cover" if stored.seq == 6 else stored.target
            forged = msgspec.structs.replace(stored, target=target, prev_hash=prev)
            digest = record_hash(forged)
            await conn.execute(
                text("UPDATE audit_records SET target = :t, prev_hash = :p, hash = :h WHERE seq = :s"),
                {"t": forged.target, "p": prev, "h": digest, "s": stored.seq},
            )
            prev = digest
    result = await _verify(audit_db, signer)
    assert not result.ok
    assert result.first_bad_sequence == 4
    assert "does not pass through the signed checkpoint at 10" in (result.reason or "")


async def test_audit_truncation_with_the_checkpoints_deleted_too_is_caught_by_the_exported_ones(
    audit_db: Database, signer: AuditSigner, tmp_path: Path
) -> None:
    await seed(audit_db, 10)
    export = tmp_path / "offhost.jsonl"
    async with audit_db.session() as session:
        await checkpoint(session, signer, T0, export_to=export)
        await session.commit()
    async with tampering(audit_db) as conn:
        await conn.execute(text("DELETE FROM audit_records WHERE seq > 7"))
        await conn.execute(text("DELETE FROM audit_checkpoints"))
    assert (await _verify(audit_db, signer)).ok  # what the database alone shows is a valid, shorter chain
    cli = await _cli_verify(audit_db, tmp_path, "--checkpoints", str(export))
    assert cli.exit_code == 1, cli.output
    assert "BROKEN at sequence 8:" in cli.output


async def test_audit_forged_checkpoint_signature_is_caught(audit_db: Database, signer: AuditSigner) -> None:
    await _trail(audit_db, signer)
    async with tampering(audit_db) as conn:
        await conn.execute(text("UPDATE audit_checkpoints SET sequence = 9"))
    result = await _verify(audit_db, signer)
    assert not result.ok
    assert result.first_bad_sequence == 9
    assert "invalid signature" in (result.reason or "")


async def test_audit_verify_failure_is_observed(audit_db: Database, signer: AuditSigner) -> None:
    seen: list[observe.Observation] = []
    remove = observe.add_listener(seen.append)
    try:
        await _trail(audit_db, signer)
        async with tampering(audit_db) as conn:
            await _delete(conn)
        await _verify(audit_db, signer)
    finally:
        remove()
    failures = [o for o in seen if o.kind == "audit_verify_failed"]
    assert len(failures) == 1
    assert failures[0].value == 6.0
    assert "record 6 is missing" in failures[0].labels["reason"]


async def test_audit_purge_refuses_to_launder_a_tampered_trail(audit_db: Database, signer: AuditSigner) -> None:
    await _trail(audit_db, signer)
    async with tampering(audit_db) as conn:
        await _edit(conn)
    async with audit_db.session() as session:
        with pytest.raises(AuditIntegrityError, match="sequence 4"):
            await purge_before(session, cutoff=T0.replace(year=2027), signer=signer, now=T0.replace(year=2027))
    assert (await _verify(audit_db, signer)).first_bad_sequence == 4


async def test_audit_periodic_checkpoint_never_signs_over_a_tampered_trail(
    audit_db: Database, signer: AuditSigner
) -> None:
    checkpointer = AuditCheckpointer(audit_db, signer, ManualClock(T0), every_s=300, export_to=None)
    await seed(audit_db, 5)
    async with tampering(audit_db) as conn:
        await _edit(conn)
    assert await checkpointer.tick() is None
    async with audit_db.session() as session:
        assert await AuditRepository(session).checkpoints() == []


async def test_audit_periodic_checkpoint_catches_a_rewrite_reaching_its_last_verified_head(
    audit_db: Database, signer: AuditSigner
) -> None:
    checkpointer = AuditCheckpointer(audit_db, signer, ManualClock(T0), every_s=300, export_to=None)
    await seed(audit_db, 5)
    assert await checkpointer.tick() is not None
    await seed(audit_db, 1, start=T0.replace(hour=12))
    async with tampering(audit_db) as conn:  # rewrite record 5 (the last verified head) with a fresh hash
        await conn.execute(text("UPDATE audit_records SET hash = :h WHERE seq = 5"), {"h": "f" * 64})
    assert await checkpointer.tick() is None
    async with audit_db.session() as session:
        assert len(await AuditRepository(session).checkpoints()) == 1
