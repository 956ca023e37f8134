"""The alert service: observations in, deduplicated stored alerts and bus events out (SQLite and PostgreSQL).

Ledger drift and audit verification failures are driven through their ``observe`` calls: the ledger
reconciliation and the periodic audit check that will make them are being built alongside.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest

from brokerlink import observe
from brokerlink.bus.memory import MemoryEventBus
from brokerlink.engine.alerts.events import ALERTS_TOPIC, decode_event
from brokerlink.engine.alerts.rules import Rule
from brokerlink.engine.alerts.service import SYSTEM, AlertService
from brokerlink.kit.clock import ManualClock
from brokerlink.store.db import Database
from brokerlink.store.models_alerts import AlertStatus
from brokerlink.store.repositories.alerts import Alert, AlertRepository

ServiceFactory = Callable[..., AlertService]


async def _alerts(database: Database, rule: Rule | None = None) -> list[Alert]:
    async with database.session() as session:
        page = await AlertRepository(session).list_alerts(rule=rule.value if rule else None, limit=500)
    return list(page.items)


async def test_an_alert_is_stored_once_and_counted_on_refiring(
    any_database: Database, make_service: ServiceFactory, bus: MemoryEventBus
) -> None:
    clock = ManualClock()
    service = make_service(any_database, clock=clock, alert_auth_failures=5, alert_auth_window_s=60)
    await service.start()
    consumer = bus.consumer(ALERTS_TOPIC, "test", "t", start="latest")
    await consumer.read(block_ms=0)  # the group exists from here on
    for _ in range(12):
        observe.auth_failure(principal="Mallory@Example.com", ip="203.0.113.9", reason="password")
    await service.idle()
    [by_ip] = await _alerts(any_database, Rule.AUTH_FAILURES_IP)
    [by_principal] = await _alerts(any_database, Rule.AUTH_FAILURES_PRINCIPAL)
    assert (by_ip.subject, by_ip.status, by_ip.count, by_ip.severity) == ("203.0.113.9", AlertStatus.OPEN, 1, "warning")
    assert by_principal.subject == "mallory@example.com"
    assert by_principal.labels["failures"] == "5"

    clock.advance(timedelta(seconds=61))
    for _ in range(5):  # a window later, still failing: the same alert counts it
        observe.auth_failure(principal="mallory@example.com", ip="203.0.113.9", reason="password")
    await service.idle()
    [by_ip] = await _alerts(any_database, Rule.AUTH_FAILURES_IP)
    assert (by_ip.count, by_ip.last_seen) == (2, clock.now())
    assert by_ip.first_seen < by_ip.last_seen

    events = [decode_event(m.payload) for m in await consumer.read(block_ms=0)]
    assert sorted(e.type for e in events) == ["alert.opened", "alert.opened", "alert.updated", "alert.updated"]
    assert len({e.id for e in events}) == 4  # one event id per change, the receivers' dedup key


async def test_a_resolved_alert_is_not_reopened_a_new_one_is(
    any_database: Database, make_service: ServiceFactory
) -> None:
    service = make_service(any_database)
    await service.start()
    observe.audit_verify_failed(sequence=42, reason="hash mismatch")
    await service.idle()
    [first] = await _alerts(any_database, Rule.AUDIT_VERIFY_FAILED)
    assert first.severity == "critical"
    assert first.labels == {"sequence": "42", "reason": "hash mismatch"}
    async with any_database.session() as session:
        assert await AlertRepository(session).resolve(first.id, by="usr_admin", now=first.last_seen)
        await session.commit()
    observe.audit_verify_failed(sequence=42, reason="hash mismatch")
    await service.idle()
    newest, older = await _alerts(any_database, Rule.AUDIT_VERIFY_FAILED)
    assert (older.id, older.status) == (first.id, AlertStatus.RESOLVED)
    assert (newest.status, newest.count) == (AlertStatus.OPEN, 1)


async def test_ledger_drift_raises_a_critical_alert_per_account_and_currency(
    any_database: Database, make_service: ServiceFactory
) -> None:
    service = make_service(any_database)
    await service.start()
    observe.ledger_drift(account_id="acc_1", currency="USD", unexplained="12.50")
    observe.ledger_drift(account_id="acc_1", currency="EUR", unexplained="-0.01")
    observe.ledger_drift(account_id="acc_1", currency="USD", unexplained="12.75")
    await service.idle()
    alerts = {a.subject: a for a in await _alerts(any_database, Rule.LEDGER_DRIFT)}
    assert set(alerts) == {"acc_1:USD", "acc_1:EUR"}
    assert (alerts["acc_1:USD"].count, alerts["acc_1:USD"].labels["unexplained"]) == (2, "12.75")
    assert alerts["acc_1:EUR"].severity == "critical"


async def test_a_clean_reconciliation_resolves_the_drift_alert(
    any_database: Database, make_service: ServiceFactory
) -> None:
    service = make_service(any_database)
    await service.start()
    observe.reconcile_drift(subscription_id="sub_1", drifted=1)
    await service.idle()
    observe.reconcile_drift(subscription_id="sub_1", drifted=0)
    await service.idle()
    [alert] = await _alerts(any_database, Rule.RECONCILE_DRIFT)
    assert (alert.status, alert.resolved_by) == (AlertStatus.RESOLVED, SYSTEM)


async def test_two_processes_firing_the_same_key_share_one_alert(any_database: Database) -> None:
    # The partial unique index on active dedup keys turns the second insert into an update.
    clock = ManualClock()

    async def fire() -> bool:
        async with any_database.session() as session:
            _, created = await AlertRepository(session).record(
                rule="ledger_drift", severity="critical", subject="acc_1:USD", dedup_key="ledger_drift:acc_1:USD",
                message="m", labels={}, now=clock.now(),
            )  # fmt: skip
            await session.commit()
            return created

    created = await asyncio.gather(*(fire() for _ in range(4)), return_exceptions=True)
    assert [c for c in created if isinstance(c, BaseException)] == [], created
    assert sorted(created, key=bool) == [False, False, False, True]
    [alert] = await _alerts(any_database)
    assert alert.count == 4


@pytest.mark.parametrize("queue_size", [2])
async def test_a_full_queue_drops_and_counts_and_never_blocks_the_observer(
    any_database: Database, make_service: ServiceFactory, queue_size: int
) -> None:
    service = make_service(any_database, alert_queue_size=queue_size)
    await service.start()
    # Synchronously, with no await between them: the writer cannot drain the queue meanwhile.
    for n in range(5):
        observe.ledger_drift(account_id=f"acc_{n}", currency="USD", unexplained="1")
    assert service.dropped == 3
    await service.idle()
    assert len(await _alerts(any_database, Rule.LEDGER_DRIFT)) == 2


async def test_a_stopped_service_no_longer_listens(any_database: Database, make_service: ServiceFactory) -> None:
    service = make_service(any_database)
    await service.start()
    await service.stop()
    observe.ledger_drift(account_id="acc_1", currency="USD", unexplained="1")
    await asyncio.sleep(0)
    assert await _alerts(any_database) == []
