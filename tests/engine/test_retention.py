"""Data retention (issue 6 item 5) on SQLite and PostgreSQL: what each policy deletes, what it must keep
(live sessions, open orders, anything an open copy link or an in-flight intent still names), batches,
the event log's append-only trigger around the purge, dry runs, the schedule and the CLI."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from typer.testing import CliRunner

from brokerlink.cli.main import app as cli_app
from brokerlink.config import Settings
from brokerlink.domain.copy import IntentStatus, LinkStatus
from brokerlink.domain.enums import OrderStatus
from brokerlink.engine.retention import KINDS, RetentionPolicy, RetentionService, purge
from brokerlink.kit.clock import ManualClock
from brokerlink.store.db import Database
from brokerlink.store.migrate import upgrade
from brokerlink.store.models import (
    Base,
    CopyEventRow,
    CopyIntentRow,
    CopySignalRow,
    EventRow,
    FillRow,
    OrderRow,
    SessionRow,
)
from brokerlink.store.models_audit import AuditRecordRow
from brokerlink.store.repositories.copy_events import CopyEventRepository
from brokerlink.store.repositories.copy_intents import CopyIntentRepository
from brokerlink.store.repositories.copy_links import CopyLinkRepository
from brokerlink.store.repositories.copy_signals import CopySignalRepository
from brokerlink.store.repositories.events import EventRepository
from brokerlink.store.repositories.fills import FillRepository
from brokerlink.store.repositories.orders import OrderRepository
from brokerlink.store.repositories.sessions import SessionRepository
from tests.store.conftest import migrated_database
from tests.store.copy_factories import event, intent, link, make_copying, signal
from tests.store.factories import NOW, make_account, make_fill, make_order, make_user

OLD = NOW  # 100 days before the purge
RECENT = NOW + timedelta(days=90)  # 10 days before the purge
PURGE_AT = NOW + timedelta(days=100)
POLICY = RetentionPolicy(sessions_days=30, orders_days=30, events_days=30, copy_days=30, batch_size=2)


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated database of each kind (PostgreSQL: a database of its own, dropped afterwards)."""
    async with migrated_database(request, tmp_path) as database:
        yield database


async def _ids(database: Database, column: Any) -> set[str]:
    async with database.session() as session:
        return set((await session.execute(select(column))).scalars())


def _token_hash() -> str:
    return hashlib.sha256(os.urandom(16)).hexdigest()


async def _seed(database: Database) -> dict[str, str]:  # noqa: PLR0915 - one statement per case, in one place
    """One row of every case, named: ``*_gone`` must be purged, ``*_kept`` must stay."""
    ids: dict[str, str] = {}
    async with database.session() as session:
        user = await make_user(session)
        sessions = SessionRepository(session)
        ids["session_expired_gone"] = (
            await sessions.create(token_hash=_token_hash(), user_id=user.id, now=OLD, expires_at=OLD + timedelta(1))
        ).id
        revoked = await sessions.create(
            token_hash=_token_hash(), user_id=user.id, now=OLD, expires_at=PURGE_AT + timedelta(days=30)
        )
        await sessions.revoke(revoked.id, OLD)
        ids["session_revoked_gone"] = revoked.id
        ids["session_live_kept"] = (
            await sessions.create(
                token_hash=_token_hash(), user_id=user.id, now=OLD, expires_at=PURGE_AT + timedelta(days=1)
            )
        ).id
        ids["session_recently_expired_kept"] = (
            await sessions.create(token_hash=_token_hash(), user_id=user.id, now=OLD, expires_at=RECENT)
        ).id

        copying = await make_copying(session)
        follower = copying.follower.id
        account = (await make_account(session)).id
        orders, fills = OrderRepository(session), FillRepository(session)

        async def order(name: str, account_id: str, status: OrderStatus, at: Any) -> str:
            placed = make_order(account_id, status=status, created_at=at, updated_at=at)
            await orders.add(placed)
            ids[name] = placed.id
            await fills.add_if_new(make_fill(account_id, trade_id=f"T-{name}", order_id=placed.id, ts=at))
            return placed.id

        await order("order_filled_old_gone", account, OrderStatus.FILLED, OLD)
        await order("order_canceled_old_gone", account, OrderStatus.CANCELED, OLD)
        await order("order_open_old_kept", account, OrderStatus.NEW, OLD)
        await order("order_filled_recent_kept", account, OrderStatus.FILLED, RECENT)
        await order("order_of_open_link_kept", follower, OrderStatus.FILLED, OLD)
        await order("order_of_closed_link_gone", follower, OrderStatus.FILLED, OLD)
        await order("order_of_inflight_intent_kept", follower, OrderStatus.FILLED, OLD)
        await fills.add_if_new(make_fill(account, trade_id="T-loose-old", ts=OLD))
        await fills.add_if_new(make_fill(account, trade_id="T-loose-recent", ts=RECENT))

        sub = copying.subscription
        signals = CopySignalRepository(session)
        old_signal = signal(copying.strategy, "P-old", created_at=OLD)
        busy_signal = signal(copying.strategy, "P-busy", created_at=OLD)
        recent_signal = signal(copying.strategy, "P-recent", created_at=RECENT)
        linked_signal = signal(copying.strategy, "P-linked", created_at=OLD)
        for sig in (old_signal, busy_signal, recent_signal, linked_signal):
            await signals.add_if_new(sig)
        ids |= {
            "signal_old_gone": old_signal.id,
            "signal_busy_kept": busy_signal.id,
            "signal_recent_kept": recent_signal.id,
            "signal_of_open_link_kept": linked_signal.id,
        }

        links = CopyLinkRepository(session)
        open_link = link(sub, "EUR/USD", opened_at=OLD, updated_at=OLD)
        closed_link = link(sub, "GBP/USD", status=LinkStatus.CLOSED, opened_at=OLD, updated_at=OLD, closed_at=OLD)
        await links.add(open_link)
        await links.add(closed_link)
        intents = CopyIntentRepository(session)
        on_open = intent(sub, linked_signal.id, link_id=open_link.id, order_id=ids["order_of_open_link_kept"],
                         status=IntentStatus.FILLED, created_at=OLD, updated_at=OLD)  # fmt: skip
        on_closed = intent(sub, old_signal.id, link_id=closed_link.id, order_id=ids["order_of_closed_link_gone"],
                           status=IntentStatus.FILLED, created_at=OLD, updated_at=OLD)  # fmt: skip
        in_flight = intent(sub, busy_signal.id, order_id=ids["order_of_inflight_intent_kept"],
                           status=IntentStatus.SENT, created_at=OLD, updated_at=OLD)  # fmt: skip
        await intents.add_many([on_open, on_closed, in_flight])
        ids |= {"intent_open": on_open.id, "intent_closed": on_closed.id}

        events = CopyEventRepository(session)
        old_event = event(sub, created_at=OLD, signal_id=old_signal.id, intent_id=on_closed.id)
        recent_event = event(sub, created_at=RECENT)
        await events.add_many([old_event, recent_event])
        ids |= {"copy_event_old_gone": old_event.id, "copy_event_recent_kept": recent_event.id}

        log = EventRepository(session)
        for i in range(5):
            ids[f"log_old_{i}_gone"] = (
                await log.append(topic="t", key="k", event_type="x", payload={"i": i}, now=OLD)
            ).id
        ids["log_recent_kept"] = (await log.append(topic="t", key="k", event_type="x", payload={}, now=RECENT)).id
        await session.commit()
    return ids


async def _all_ids(database: Database) -> set[str]:
    found: set[str] = set()
    for column in (SessionRow.id, OrderRow.id, CopySignalRow.id, CopyEventRow.id, EventRow.id):
        found |= await _ids(database, column)
    return found


async def test_purge_deletes_what_each_policy_expired_and_keeps_everything_else(database: Database) -> None:
    ids = await _seed(database)
    trades_before = await _ids(database, FillRow.trade_id)
    dry = await purge(database, ManualClock(PURGE_AT), POLICY, dry_run=True)
    assert await _all_ids(database) == set(ids.values()) - {ids["intent_open"], ids["intent_closed"]}

    report = await purge(database, ManualClock(PURGE_AT), POLICY)
    gone = {ids[name] for name in ids if name.endswith("_gone")}
    kept = {ids[name] for name in ids if name.endswith("_kept")}
    remaining = await _all_ids(database)
    assert not gone & remaining, sorted(name for name in ids if ids[name] in remaining and name.endswith("_gone"))
    assert kept <= remaining, sorted(name for name in ids if ids[name] not in remaining and name.endswith("_kept"))
    assert report.counts == {
        "sessions": 2,
        "orders": 3,  # filled old, canceled old, of the closed link
        "fills": 4,  # their three fills and the old loose one
        "copy_events": 1,
        "copy_signals": 1,
        "events": 5,
        "idempotency_keys": 0,
        "audit": 0,
    }
    assert dry.counts == report.counts
    assert dry.dry_run
    assert not report.dry_run
    trades_after = await _ids(database, FillRow.trade_id)
    assert trades_before - trades_after == {
        "T-order_filled_old_gone", "T-order_canceled_old_gone", "T-order_of_closed_link_gone", "T-loose-old",
    }  # fmt: skip
    # What named a purged row stays, without the reference (SET NULL): copy history is not cascaded away.
    async with database.session() as session:
        closed = await session.get(CopyIntentRow, ids["intent_closed"])
        opened = await session.get(CopyIntentRow, ids["intent_open"])
        assert closed is not None
        assert (closed.order_id, closed.signal_id) == (None, None)
        assert opened is not None
        assert opened.order_id == ids["order_of_open_link_kept"]

    # Each batch that deleted something is on the audit trail, in its own transaction (SECURITY.md 33).
    async with database.session() as session:
        purged = (
            await session.execute(
                select(AuditRecordRow.target, AuditRecordRow.details).where(AuditRecordRow.action == "retention.purge")
            )
        ).all()
    assert {target for target, _ in purged} == {
        "table:sessions", "table:orders", "table:fills", "table:copy_events", "table:copy_signals", "table:event_log",
    }  # fmt: skip

    again = await purge(database, ManualClock(PURGE_AT), POLICY)
    assert again.total == 0  # nothing left to do; an interrupted purge just continues like this


async def test_the_event_log_stays_append_only_after_a_purge(database: Database) -> None:
    ids = await _seed(database)
    await purge(database, ManualClock(PURGE_AT), RetentionPolicy(events_days=30, batch_size=2))
    assert await _ids(database, EventRow.id) == {ids["log_recent_kept"]}
    async with database.session() as session:
        with pytest.raises((IntegrityError, DBAPIError), match="append-only"):
            await session.execute(delete(EventRow))


async def test_a_policy_of_zero_days_keeps_everything(database: Database) -> None:
    ids = await _seed(database)
    report = await purge(database, ManualClock(PURGE_AT + timedelta(days=3650)), RetentionPolicy())
    assert report.counts == dict.fromkeys(KINDS, 0)
    assert report.cutoffs == {}
    assert await _all_ids(database) == set(ids.values()) - {ids["intent_open"], ids["intent_closed"]}


async def test_the_audit_kind_without_a_checkpoint_signer_is_skipped(database: Database) -> None:
    """The audit purge needs a signer for the checkpoint that marks the chain's new start; without one
    nothing is deleted (an unverifiable chain would be worse than an old one)."""
    report = await purge(database, ManualClock(PURGE_AT), RetentionPolicy(audit_days=1))
    assert report.counts["audit"] == 0
    assert "audit" in report.cutoffs


async def test_the_scheduled_purge_runs_and_stops(database: Database) -> None:
    ids = await _seed(database)
    service = RetentionService(database, ManualClock(PURGE_AT), POLICY, every_s=0.01)
    service.start()
    try:
        for _ in range(500):  # bounded polling
            if service.runs >= 1:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the scheduled purge never ran")
    finally:
        await service.stop()
    remaining = await _ids(database, SessionRow.id)
    assert ids["session_expired_gone"] not in remaining
    assert ids["session_live_kept"] in remaining


def test_a_disabled_schedule_starts_no_task(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, retention_purge_every_s=0)
    service = RetentionService.from_settings(settings, Database(settings.effective_database_url), ManualClock())
    service.start()
    assert not service.schedule.running
    assert RetentionPolicy.from_settings(Settings(data_dir=tmp_path)).sessions_days == 30


def test_cli_purge_dry_run_then_purge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``brokerlink retention purge``: --dry-run deletes nothing and says how much would go; then it goes."""
    monkeypatch.setenv("BROKERLINK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BROKERLINK_RETENTION_SESSIONS_DAYS", "1")
    settings = Settings(data_dir=tmp_path)

    async def seed() -> None:
        await upgrade(settings.effective_database_url)
        database = Database.from_settings(settings)
        async with database.session() as session:
            user = await make_user(session)
            # Expired long before the real clock's now (the CLI runs on the system clock).
            await SessionRepository(session).create(
                token_hash=_token_hash(), user_id=user.id, now=OLD, expires_at=OLD + timedelta(hours=1)
            )
            await session.commit()
        await database.dispose()

    async def count() -> int:
        database = Database.from_settings(settings)
        async with database.session() as session:
            n = int((await session.execute(select(func.count()).select_from(SessionRow))).scalar_one())
        await database.dispose()
        return n

    asyncio.run(seed())
    runner = CliRunner()
    dry = runner.invoke(cli_app, ["retention", "purge", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.output)["counts"]["sessions"] == 1
    assert asyncio.run(count()) == 1
    done = runner.invoke(cli_app, ["retention", "purge", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["counts"]["sessions"] == 1
    assert asyncio.run(count()) == 0
    table = runner.invoke(cli_app, ["retention", "purge"])
    assert table.exit_code == 0
    assert "kept forever" in table.output


def test_every_table_pointing_at_a_purged_kind_is_accounted_for() -> None:
    """A new foreign key to a purged table is protected automatically (:func:`_unreferenced`); this lists
    them so a reviewer sees when one appears."""
    purged = {"sessions", "orders", "fills", "copy_signals", "copy_events", "event_log"}
    pointing = sorted(
        (table.name, fk.parent.name, fk.column.table.name)
        for table in Base.metadata.tables.values()
        for fk in table.foreign_keys
        if fk.column.table.name in purged
    )
    assert ("fills", "order_id", "orders") in pointing
    assert ("copy_intents", "order_id", "orders") in pointing


async def test_the_audit_kind_purges_a_prefix_and_the_chain_still_verifies(database: Database, tmp_path: Path) -> None:
    """Last, as the brief asks: the audit kind calls the audit trail's own purge, which anchors the chain's
    new start with a signed checkpoint; the records after the cutoff remain and verify."""
    from brokerlink.security.audit import Actor, record
    from brokerlink.security.audit_sign import AuditSigner
    from brokerlink.security.audit_verify import verify

    system = Actor(kind="system", id="retention-test")
    async with database.session() as session:
        for i in range(3):
            await record(session, actor=system, action="test.old", target=f"t{i}", now=OLD)
        for i in range(2):
            await record(session, actor=system, action="test.recent", target=f"r{i}", now=RECENT)
        await session.commit()
    signer = AuditSigner(tmp_path / "audit-signing-key.json")
    report = await purge(database, ManualClock(PURGE_AT), RetentionPolicy(audit_days=30), audit_signer=signer)
    assert report.counts["audit"] == 3
    async with database.session() as session:
        result = await verify(session, public_keys=signer.public_keys())
    assert result.ok, result.reason
    assert result.records_checked == 2


async def test_the_server_runs_the_scheduled_purge(tmp_path: Path) -> None:
    """The app's lifespan starts the purge task (``retention_purge_every_s``) and stops it on shutdown."""
    from brokerlink.app.factory import create_app
    from tests.api.support import running

    settings = Settings(data_dir=tmp_path, secret_key="k" * 48, retention_purge_every_s=3600)
    app = create_app(settings, clock=ManualClock(), configure_logs=False)
    async with running(app):
        service = app.state.retention
        assert isinstance(service, RetentionService)
        assert service.schedule.running
    assert not service.schedule.running
