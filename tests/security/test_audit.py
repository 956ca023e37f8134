"""The audit trail (SECURITY.md 33-34, ADR 0016): the chain, its canonical encoding, transactions,
concurrency, signed checkpoints and the retention purge, on SQLite and PostgreSQL.

Tampering (edit, delete, reorder, truncate) is in test_audit_tamper.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import stat
from datetime import timedelta
from pathlib import Path

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from brokerlink.kit.clock import ManualClock
from brokerlink.security.audit import (
    GENESIS_HASH,
    Actor,
    AuditContext,
    Entry,
    canonical_details,
    canonical_json,
    record,
    record_hash,
    record_many,
)
from brokerlink.security.audit_checkpoint import Checkpoint, checkpoint, read_checkpoints
from brokerlink.security.audit_sign import (
    AuditKeyError,
    AuditSigner,
    key_id_of,
    load_public_key,
    public_key_pem,
    verify_signature,
)
from brokerlink.security.audit_task import AuditCheckpointer
from brokerlink.security.audit_verify import purge_before, verify
from brokerlink.store.db import Database
from brokerlink.store.repositories.audit import AuditRepository, RecordFilter, StoredRecord
from brokerlink.store.repositories.users import UserRepository
from tests.security.test_audit_fixtures import (  # noqa: F401 - fixtures
    T0,
    audit_db_fixture,
    audit_pg_cleanup,
    audit_url_fixture,
    seed,
    signer_fixture,
)

USER = Actor(kind="user", id="usr_01TEST")


async def _all(db: Database) -> list[StoredRecord]:
    async with db.session() as session:
        return [r async for r in AuditRepository(session).walk(after=0)]


# --- the chain and its encoding ----------------------------------------------------------------


async def test_audit_chain_links_every_record_to_the_one_before(audit_db: Database) -> None:
    assert await seed(audit_db, 5) == [1, 2, 3, 4, 5]
    records = await _all(audit_db)
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert records[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(records):
        assert after.prev_hash == before.hash
    for r in records:
        assert r.hash == record_hash(r)
        assert len(r.hash) == 64
    assert len({r.hash for r in records}) == 5
    assert records[1].at == T0 + timedelta(minutes=1)  # the caller's clock, to the microsecond


async def test_audit_hash_is_sha256_of_the_rfc8785_canonical_json(audit_db: Database) -> None:
    async with audit_db.session() as session:
        await record(
            session,
            actor=USER,
            action="order.place",
            target="ord_1",
            now=T0,
            context=AuditContext(request_id="req_1", source_ip="198.51.100.4"),
            details={"symbol": "EUR/USD", "qty": "0.10", "n": 3, "ok": True, "none": None},
        )
        await session.commit()
    (stored,) = await _all(audit_db)
    # For this content (no floats, no escapes beyond JSON's) RFC 8785 is sorted keys without whitespace.
    document = {
        "v": 1, "seq": 1, "at": "2026-03-02T09:30:00.120000+00:00", "actor_kind": "user", "actor_id": "usr_01TEST",
        "action": "order.place", "target": "ord_1", "outcome": "success", "request_id": "req_1",
        "source_ip": "198.51.100.4",
        "details": {"symbol": "EUR/USD", "qty": "0.10", "n": 3, "ok": True, "none": None},
        "prev_hash": GENESIS_HASH,
    }  # fmt: skip
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert stored.hash == hashlib.sha256(canonical).hexdigest()
    assert stored.details == '{"n":3,"none":null,"ok":true,"qty":"0.10","symbol":"EUR/USD"}'


def test_audit_canonical_details_do_not_depend_on_key_order() -> None:
    assert canonical_details({"b": 1, "a": "\u00e9"}) == canonical_details({"a": "\u00e9", "b": 1})
    assert canonical_details({"b": 1, "a": "\u00e9"}) == '{"a":"\u00e9","b":1}'
    assert canonical_details(None) == "{}"


async def test_audit_rollback_writes_no_record_and_leaves_no_gap(audit_db: Database) -> None:
    async with audit_db.session() as session:
        user = await UserRepository(session).create(
            email="rolled@example.com", display_name="Rolled", password_hash="x", now=T0
        )
        assert await record(session, actor=USER, action="user.create", target=user.id, now=T0) == 1
        await session.rollback()
    async with audit_db.session() as session:
        # The change and its record went together: neither is there.
        assert await UserRepository(session).get_by_email("rolled@example.com") is None
        assert await AuditRepository(session).count() == 0
        assert await record(session, actor=USER, action="auth.login", target="usr_01TEST", now=T0) == 1
        await session.commit()
    assert [r.seq for r in await _all(audit_db)] == [1]


async def test_audit_record_is_flushed_not_committed(audit_db: Database) -> None:
    async with audit_db.session() as session:
        await record(session, actor=USER, action="auth.login", target="usr_01TEST", now=T0)
        assert session.in_transaction()
        async with audit_db.session() as other:
            if audit_db.dialect == "postgresql":  # SQLite's reader would wait for no one; PostgreSQL's sees no row
                assert await AuditRepository(other).count() == 0
        await session.commit()
    assert len(await _all(audit_db)) == 1


@pytest.mark.parametrize(
    "key", ["password", "new_password", "api_token", "access_token", "client_secret", "private_key", "key", "otp_code"]
)
def test_audit_details_refuse_keys_that_look_like_secrets(key: str) -> None:
    with pytest.raises(ValueError, match="looks like a secret"):
        canonical_details({key: "hunter2"})


@pytest.mark.parametrize("key", ["token_id", "key_id", "client_id", "symbol", "session_ids"])
def test_audit_details_accept_ids_and_plain_facts(key: str) -> None:
    assert key in canonical_details({key: "x"})


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"action": "Login"}, "dotted lowercase"),
        ({"action": "login"}, "dotted lowercase"),
        ({"target": ""}, "target"),
        ({"target": "x" * 201}, "target"),
        ({"actor": Actor(kind="user", id="")}, "actor id"),
        ({"details": {"Bad Key": 1}}, "snake_case"),
        ({"details": {"n": 2**60}}, "integers"),
        ({"details": {"text": "x" * 1001}}, "longer"),
    ],
)
async def test_audit_record_refuses_malformed_arguments(
    audit_db: Database, changes: dict[str, object], match: str
) -> None:
    arguments: dict[str, object] = {"actor": USER, "action": "auth.login", "target": "usr_1", "now": T0} | changes
    async with audit_db.session() as session:
        with pytest.raises(ValueError, match=match):
            await record(session, **arguments)  # type: ignore[arg-type]
        assert await AuditRepository(session).count() == 0


async def test_audit_record_refuses_a_naive_time(audit_db: Database) -> None:
    async with audit_db.session() as session:
        with pytest.raises(ValueError, match="timezone-aware"):
            await record(session, actor=USER, action="auth.login", target="usr_1", now=T0.replace(tzinfo=None))


async def test_audit_tables_refuse_update_and_delete(audit_db: Database, signer: AuditSigner) -> None:
    await seed(audit_db, 2)
    async with audit_db.session() as session:
        await checkpoint(session, signer, T0)
        await session.commit()
    for statement in (
        "UPDATE audit_records SET target = 'x' WHERE seq = 1",
        "DELETE FROM audit_records WHERE seq = 2",
        "DELETE FROM audit_records",
        "UPDATE audit_checkpoints SET sequence = 1",
        "DELETE FROM audit_checkpoints",
    ):
        async with audit_db.session() as session:
            with pytest.raises(DBAPIError, match="append-only"):
                await session.execute(text(statement))
    assert len(await _all(audit_db)) == 2


# --- concurrency -------------------------------------------------------------------------------


async def test_audit_concurrent_transactions_take_gapless_distinct_sequences(
    audit_db: Database, signer: AuditSigner
) -> None:
    """Many transactions at once, some rolled back, through two engines (two "processes")."""
    second = Database(audit_db.url)
    rolled_back = 0

    async def writer(i: int) -> None:
        nonlocal rolled_back
        db = audit_db if i % 2 else second
        for j in range(3):
            async with db.session() as session:
                await record(session, actor=USER, action="order.place", target=f"ord_{i}_{j}", now=T0)
                await asyncio.sleep(0)  # let the others run while this transaction is open
                await record(session, actor=USER, action="order.cancel", target=f"ord_{i}_{j}", now=T0)
                if (i + j) % 5 == 0:
                    rolled_back += 1
                    await session.rollback()
                else:
                    await session.commit()

    try:
        await asyncio.gather(*(writer(i) for i in range(16)))
    finally:
        await second.dispose()
    records = await _all(audit_db)
    committed = 16 * 3 - rolled_back
    assert [r.seq for r in records] == list(range(1, 2 * committed + 1))
    assert len({r.prev_hash for r in records}) == len(records)
    # Each transaction's two records are adjacent: nobody chained into the middle of another's.
    for first, second_record in zip(records[::2], records[1::2], strict=True):
        assert (first.action, second_record.action) == ("order.place", "order.cancel")
        assert first.target == second_record.target
    async with audit_db.session() as session:
        result = await verify(session, public_keys=signer.public_keys())
    assert result.ok, result
    assert result.records_checked == 2 * committed


async def test_audit_head_row_is_recreated_when_missing(audit_db: Database, signer: AuditSigner) -> None:
    await seed(audit_db, 3)
    async with audit_db.engine.begin() as conn:
        await conn.execute(text("DELETE FROM audit_head"))
    await seed(audit_db, 2)
    assert [r.seq for r in await _all(audit_db)] == [1, 2, 3, 4, 5]
    async with audit_db.session() as session:
        assert (await verify(session, public_keys=signer.public_keys())).ok


# --- signing key and checkpoints ---------------------------------------------------------------


def test_audit_signing_key_created_on_first_use_with_mode_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit-signing-key.json"
    first = AuditSigner(path)
    key_id = first.key_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key_id.startswith("ed25519:")
    assert AuditSigner(path).key_id == key_id
    assert "private" not in repr(first)


def test_audit_signing_key_file_that_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit-signing-key.json"
    _ = AuditSigner(path).key_id
    path.chmod(0o640)
    with pytest.raises(AuditKeyError, match="chmod 600"):
        _ = AuditSigner(path).key_id


def test_audit_public_key_pem_round_trips_and_verifies_signatures(signer: AuditSigner) -> None:
    public = load_public_key(public_key_pem(signer.public_key))
    assert key_id_of(public) == signer.key_id
    signature = signer.sign(b"message")
    assert verify_signature(public, signature, b"message")
    assert not verify_signature(public, signature, b"messagE")
    assert not verify_signature(public, "not base64!", b"message")


async def test_audit_checkpoint_is_signed_stored_and_exported(
    audit_db: Database, signer: AuditSigner, tmp_path: Path
) -> None:
    await seed(audit_db, 4)
    export = tmp_path / "offhost" / "checkpoints.jsonl"
    async with audit_db.session() as session:
        point = await checkpoint(session, signer, T0 + timedelta(hours=1), export_to=export)
        await session.commit()
    records = await _all(audit_db)
    assert (point.kind, point.sequence, point.head_hash, point.key_id) == ("head", 4, records[-1].hash, signer.key_id)
    assert verify_signature(signer.public_key, point.signature, point.message())
    assert read_checkpoints(export) == [point]
    assert stat.S_IMODE(export.stat().st_mode) == 0o600
    async with audit_db.session() as session:
        stored = await AuditRepository(session).checkpoints()
        result = await verify(session, public_keys=signer.public_keys(), external_checkpoints=[point])
    assert [Checkpoint.of(r) for r in stored] == [point]
    assert result.ok
    assert result.checkpoints_checked == 2
    assert result.head_sequence == 4


async def test_audit_checkpoint_under_an_unknown_key_fails_verification(
    audit_db: Database, signer: AuditSigner, tmp_path: Path
) -> None:
    await seed(audit_db, 2)
    async with audit_db.session() as session:
        await checkpoint(session, AuditSigner(tmp_path / "other-key.json"), T0)
        await session.commit()
        result = await verify(session, public_keys=signer.public_keys())
    assert not result.ok
    assert result.first_bad_sequence == 2
    assert "unknown key" in (result.reason or "")


async def test_audit_periodic_checkpointer_signs_only_when_the_head_moved(
    audit_db: Database, signer: AuditSigner, tmp_path: Path
) -> None:
    clock = ManualClock(T0)
    export = tmp_path / "checkpoints.jsonl"
    checkpointer = AuditCheckpointer(audit_db, signer, clock, every_s=300, export_to=export)
    await seed(audit_db, 3)
    first = await checkpointer.tick()
    assert first is not None
    assert first.sequence == 3
    assert await checkpointer.tick() is None
    await seed(audit_db, 1, start=T0 + timedelta(hours=1))
    second = await checkpointer.tick()
    assert second is not None
    assert second.sequence == 4
    assert [p.sequence for p in read_checkpoints(export)] == [3, 4]


async def test_audit_checkpointer_disabled_with_zero_interval(audit_db: Database, signer: AuditSigner) -> None:
    checkpointer = AuditCheckpointer(audit_db, signer, ManualClock(T0), every_s=0, export_to=None)
    checkpointer.start()
    assert not checkpointer.schedule.running
    await checkpointer.stop()


# --- listing -------------------------------------------------------------------------------------


async def test_audit_repository_filters_and_pages_newest_first(audit_db: Database) -> None:
    await seed(audit_db, 12)  # actions cycle auth.login, order.place, connection.link
    async with audit_db.session() as session:
        repository = AuditRepository(session)
        logins = await repository.page(RecordFilter(action_prefix="auth."), limit=50, before=None)
        assert [r.seq for r in logins.items] == [10, 7, 4, 1]
        first = await repository.page(RecordFilter(), limit=5, before=None)
        second = await repository.page(RecordFilter(), limit=5, before=first.next_before)
        third = await repository.page(RecordFilter(), limit=5, before=second.next_before)
        assert [r.seq for r in [*first.items, *second.items, *third.items]] == list(range(12, 0, -1))
        assert third.next_before is None
        window = RecordFilter(since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=5), outcome="denied")
        assert [r.seq for r in (await repository.page(window, limit=50, before=None)).items] == [3]
        like = await repository.page(RecordFilter(action_prefix="auth%"), limit=50, before=None)
        assert like.items == []  # the prefix is literal, not a LIKE pattern


# --- retention -----------------------------------------------------------------------------------


async def test_audit_purge_keeps_the_trail_verifiable(audit_db: Database, signer: AuditSigner) -> None:
    await seed(audit_db, 10)  # T0, T0+1min, ... T0+9min
    async with audit_db.session() as session:
        await checkpoint(
            session, signer, T0 + timedelta(minutes=3), sequence=3, head_hash=(await _all(audit_db))[2].hash
        )
        deleted = await purge_before(
            session, cutoff=T0 + timedelta(minutes=6), signer=signer, now=T0 + timedelta(days=1)
        )
        await session.commit()
    assert deleted == 6
    records = await _all(audit_db)
    assert [r.seq for r in records] == [7, 8, 9, 10]
    async with audit_db.session() as session:
        anchor = await AuditRepository(session).latest_checkpoint()
        assert anchor is not None
        assert (anchor.kind, anchor.sequence) == ("anchor", 6)
        assert anchor.head_hash == records[0].prev_hash
        result = await verify(session, public_keys=signer.public_keys())
    assert result.ok, result
    assert (result.start_sequence, result.head_sequence, result.records_checked) == (6, 10, 4)
    # The chain goes on from where it was, and the purge anchor still bounds what may be deleted.
    await seed(audit_db, 1, start=T0 + timedelta(days=2))
    async with audit_db.session() as session:
        assert (await verify(session, public_keys=signer.public_keys())).ok
        with pytest.raises(DBAPIError, match="append-only"):
            await session.execute(text("DELETE FROM audit_records WHERE seq = 7"))
    async with audit_db.session() as session:
        assert await purge_before(session, cutoff=T0, signer=signer, now=T0 + timedelta(days=3)) == 0


async def test_audit_purge_of_everything_then_new_records_still_verify(audit_db: Database, signer: AuditSigner) -> None:
    await seed(audit_db, 3)
    async with audit_db.session() as session:
        assert (
            await purge_before(session, cutoff=T0 + timedelta(days=1), signer=signer, now=T0 + timedelta(days=1)) == 3
        )
        await session.commit()
    async with audit_db.session() as session:
        result = await verify(session, public_keys=signer.public_keys())
        assert result.ok
        assert (result.start_sequence, result.head_sequence) == (3, 3)
    assert await seed(audit_db, 2, start=T0 + timedelta(days=2)) == [4, 5]
    async with audit_db.session() as session:
        assert (await verify(session, public_keys=signer.public_keys())).ok


async def test_audit_verify_resumes_from_a_head_verified_before(audit_db: Database, signer: AuditSigner) -> None:
    await seed(audit_db, 6)
    async with audit_db.session() as session:
        full = await verify(session, public_keys=signer.public_keys())
    assert (full.records_checked, full.head_sequence) == (6, 6)
    await seed(audit_db, 2, start=T0 + timedelta(hours=1))
    async with audit_db.session() as session:
        resumed = await verify(
            session, public_keys=signer.public_keys(), resume_from=(full.head_sequence, full.head_hash)
        )
        stale = await verify(session, public_keys=signer.public_keys(), resume_from=(6, "0" * 64))
    assert resumed.ok
    assert (resumed.start_sequence, resumed.records_checked, resumed.head_sequence) == (6, 2, 8)
    assert not stale.ok
    assert stale.first_bad_sequence == 6


_SECRET_WORDS = ("pass", "pwd", "secret", "token", "key", "credential", "private", "otp", "cookie")
_DETAIL_KEYS = st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True).filter(
    lambda k: not any(word in k for word in _SECRET_WORDS)
)
_DETAIL_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53 - 1), st.text(max_size=40))


@given(st.dictionaries(_DETAIL_KEYS, _DETAIL_VALUES, max_size=8))
def test_audit_canonical_details_round_trip_in_any_key_order(details: dict[str, str | int | bool | None]) -> None:
    encoded = canonical_details(details)
    assert json.loads(encoded) == details
    assert canonical_details(dict(reversed(list(details.items())))) == encoded
    # For these values (no floats, no lone surrogates) RFC 8785 is sorted keys, no whitespace, UTF-8.
    assert encoded == json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


async def test_record_many_chains_exactly_like_single_records(audit_db: Database) -> None:
    """The copy engine's batch (one record per order of a fan-out) interleaves with single records
    into one unbroken chain; a bad entry anywhere in a batch writes nothing."""
    system = Actor(kind="system", id="copy_engine")
    async with audit_db.session() as session:
        first = await record(session, actor=system, action="order.place", target="ord_1", now=T0)
        batch = [Entry(actor=system, action="order.place", target=f"ord_{n}", details={"n": n}) for n in (2, 3, 4)]
        sequences = await record_many(session, batch, now=T0)
        last = await record(session, actor=system, action="order.place", target="ord_5", now=T0)
        await session.commit()
    assert [first, *sequences, last] == list(range(first, first + 5))
    async with audit_db.session() as session:
        stored = [await AuditRepository(session).get(seq) for seq in range(first, last + 1)]
        result = await verify(session, public_keys={})
    assert [r.target for r in stored if r is not None] == [f"ord_{n}" for n in range(1, 6)]
    assert result.ok, result

    bad = [Entry(actor=system, action="order.place", target="ord_6"), Entry(actor=system, action="Bad", target="x")]
    async with audit_db.session() as session:
        with pytest.raises(ValueError, match="dotted lowercase"):
            await record_many(session, bad, now=T0)
        await session.commit()
    async with audit_db.session() as session:
        assert await AuditRepository(session).get(last + 1) is None


_JSON_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
_JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53 - 1), _JSON_TEXT)


@given(
    st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True),
        st.one_of(_JSON_VALUES, st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), _JSON_VALUES)),
        max_size=12,
    )
)
def test_canonical_json_is_rfc8785_for_every_value_a_record_holds(document: dict[str, object]) -> None:
    """The fast encoder writes exactly what the reference RFC 8785 implementation writes, for the
    values audit records and checkpoints hold (strings of any characters, safe integers, booleans,
    null, objects): so a hash computed by either verifies with the other."""
    assert canonical_json(document) == rfc8785.dumps(document)
