"""The ledger-drift and audit-verification alerts fired by their real causes.

Ledger drift: an account at a real sim venue trades, the ledger posts its fills and reconciles to
the unit; then an entry the broker never saw is booked, and the next reconciliation finds a
difference nothing explains. Audit failure: records are written through the trail's own API, one is
then edited behind the triggers' back, and a verification walk finds it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import text

from brokerlink.domain.enums import Side
from brokerlink.engine.alerts.rules import Rule
from brokerlink.kit.clock import SystemClock
from brokerlink.ledger import chart, journal
from brokerlink.ledger.poster import LedgerPoster
from brokerlink.ledger.reconcile import reconcile_all
from brokerlink.security.audit_sign import AuditSigner
from brokerlink.security.audit_verify import verify
from brokerlink.store.db import Database
from brokerlink.store.models_alerts import AlertStatus
from tests.contract.harness import SimHarness
from tests.engine.alerts.conftest import ServiceFactory
from tests.engine.alerts.test_causes import _one_alert
from tests.ledger.test_postings import settled, trade
from tests.links_fixtures import LinksFactory, new_link
from tests.security.test_audit_fixtures import seed, tampering


async def test_an_entry_the_broker_never_saw_raises_ledger_drift(
    make_links: LinksFactory,
    venue: SimHarness,
    database: Database,
    user_id: str,
    make_service: ServiceFactory,
) -> None:
    service = make_service(database)
    await service.start()
    links = make_links()
    account = await links.link(user_id, new_link(venue))
    await trade(links, database, account, "EUR/USD", side=Side.BUY, qty="0.10")
    await settled(database, LedgerPoster(database, SystemClock()), account.id)
    assert await reconcile_all(database, user_id=user_id)
    await service.idle()
    assert not [a for a in await _alerts_of(database) if a == Rule.LEDGER_DRIFT.value], "in line: no alert"

    async with database.session() as session:  # booked here, unknown to the broker
        leg = {"currency": "USD", "owner_id": user_id}
        await journal.post(
            session,
            journal.Entry(
                idempotency_key="unconfirmed-deposit", correlation_id="test", kind="test",
                description="a deposit nobody confirmed", occurred_at=datetime(2000, 1, 1, tzinfo=UTC),
                legs=(
                    journal.Leg(account=chart.cash(account.id), debit=Decimal("25.00"), **leg),
                    journal.Leg(account=chart.owner_capital(account.id), credit=Decimal("25.00"), **leg),
                ),
            ),
            now=datetime.now(UTC),
        )  # fmt: skip
        await session.commit()
    [result] = await reconcile_all(database, user_id=user_id)
    assert result.status == "unexplained"
    alert = await _one_alert(database, Rule.LEDGER_DRIFT)
    assert alert.status is AlertStatus.OPEN
    assert account.id in alert.subject


async def test_an_edited_audit_record_raises_audit_verify_failed(
    database: Database, make_service: ServiceFactory, tmp_path: Path
) -> None:
    service = make_service(database)
    await service.start()
    sequences = await seed(database, 5)
    async with tampering(database) as conn:
        await conn.execute(text("UPDATE audit_records SET target = 'forged' WHERE seq = :seq"), {"seq": sequences[2]})
    signer = AuditSigner(tmp_path / "audit-signing-key.json")
    async with database.session() as session:
        result = await verify(session, public_keys=signer.public_keys())
    assert not result.ok
    assert result.first_bad_sequence == sequences[2]
    alert = await _one_alert(database, Rule.AUDIT_VERIFY_FAILED)
    assert alert.status is AlertStatus.OPEN


async def _alerts_of(database: Database) -> list[str]:
    async with database.session() as session:
        rows = await session.execute(text("SELECT rule FROM alerts"))
        return [str(r[0]) for r in rows]
