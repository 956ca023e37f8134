"""Each operational alert rule fired by its real cause, and each rule's own condition clearing it.

A real sim venue on loopback stopped under a live link (broker down), a real copy measured above a
tiny threshold (copy latency), a follower who trades a copy away by hand, found by a real
reconciliation (drift). The thresholds are small settings; polling is bounded.

Traffic per OAuth client is driven through ``observe.http_request`` directly: client principals do
not exist yet (no request can carry a ``client_id``), so there is no real cause to make.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import pytest

from brokerlink import observe
from brokerlink.brokers.sim.venue import VenueConfig
from brokerlink.brokers.sim.venue.config import AccountConfig
from brokerlink.bus.memory import MemoryEventBus
from brokerlink.domain.enums import Side
from brokerlink.engine.alerts.rules import Rule
from brokerlink.engine.alerts.service import SYSTEM, AlertService
from brokerlink.engine.copy.reconcile import reconcile
from brokerlink.engine.copy.settings import CopySettings, SizingMode
from brokerlink.engine.links.orders import OrderTicket, place_order
from brokerlink.engine.links.service import NewLink
from brokerlink.kit.clock import SystemClock
from brokerlink.store.db import Database
from brokerlink.store.models_alerts import AlertStatus
from brokerlink.store.repositories.alerts import Alert, AlertRepository
from brokerlink.store.repositories.users import UserRepository
from tests.contract.harness import SimHarness, free_port, sim_venue, start_venue, stop_venue
from tests.engine.copy.test_engine import EURUSD, _position, _positions_become, _trade, _world, eventually
from tests.links_fixtures import LinksFactory

ServiceFactory = Callable[..., AlertService]


@pytest.fixture
async def venue() -> AsyncIterator[SimHarness]:
    async with sim_venue(extra_accounts=2) as harness:
        yield harness


async def _alerts(database: Database, rule: Rule) -> list[Alert]:
    async with database.session() as session:
        return list((await AlertRepository(session).list_alerts(rule=rule.value, limit=50)).items)


async def _one_alert(database: Database, rule: Rule, status: AlertStatus = AlertStatus.OPEN) -> Alert:
    async def found() -> Alert | None:
        alerts = [a for a in await _alerts(database, rule) if a.status is status]
        return alerts[0] if alerts else None

    return await eventually(found, f"a {status.value} {rule.value} alert")


async def test_a_broker_that_goes_away_raises_broker_down_and_its_return_resolves_it(
    database: Database, make_links: LinksFactory, make_service: ServiceFactory
) -> None:
    service = make_service(database, alert_broker_down_s=0.5, alert_tick_s=0.05)
    await service.start()
    config = VenueConfig(
        instrument_set="fx", seed=11, mode="test", tick_interval_s=0.05, heartbeat_interval_s=0.2,
        accounts=(AccountConfig(account_id="SIM-CONF", api_key="conf-key", api_secret="conf-secret"),),
    )  # fmt: skip
    port = free_port()
    server, task = await start_venue(config, port)
    links = make_links()
    async with database.session() as session:
        user = await UserRepository(session).create(
            email="trader@example.com", display_name="Trader", password_hash="x", now=SystemClock().now()
        )
        await session.commit()
    account = await links.link(
        user.id,
        NewLink(broker="sim", label="Sim", base_url=f"http://127.0.0.1:{port}", credentials={"api_key": "conf-key"}),
    )
    await eventually(lambda: _live(links.is_live(account.id)), "the link to be up")
    assert await _alerts(database, Rule.BROKER_DOWN) == []

    await stop_venue(server, task)  # the broker goes away
    alert = await _one_alert(database, Rule.BROKER_DOWN)
    assert alert.subject == account.connection_id
    assert alert.severity == "critical"
    assert alert.labels["broker"] == "sim"

    server, task = await start_venue(config, port)  # and comes back: the adapter reconnects
    try:
        resolved = await _one_alert(database, Rule.BROKER_DOWN, AlertStatus.RESOLVED)
        assert (resolved.id, resolved.resolved_by) == (alert.id, SYSTEM)
    finally:
        await links.stop()
        await stop_venue(server, task)


async def _live(up: bool) -> bool | None:
    return True if up else None


async def test_a_slow_copy_raises_copy_latency(
    make_links: LinksFactory, database: Database, bus: MemoryEventBus, venue: SimHarness, make_service: ServiceFactory
) -> None:
    service = make_service(database, alert_copy_latency_ms=0.001)  # one microsecond: every real copy is slower
    await service.start()
    world = await _world(
        make_links, database, bus, venue, CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=Decimal(1))
    )
    try:
        assert await _alerts(database, Rule.COPY_LATENCY) == []
        await _trade(world, Side.BUY, "0.20")
        await _positions_become(database, world, ["0.20"])
        alert = await _one_alert(database, Rule.COPY_LATENCY)
        assert alert.subject == "engine"
        assert Decimal(alert.labels["p99_ms"]) > Decimal("0.001")
    finally:
        await world.engine.stop()


async def test_a_copy_traded_away_by_hand_raises_drift_and_a_clean_reconciliation_resolves_it(
    make_links: LinksFactory, database: Database, bus: MemoryEventBus, venue: SimHarness, make_service: ServiceFactory
) -> None:
    service = make_service(database)
    await service.start()
    world = await _world(
        make_links, database, bus, venue, CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=Decimal(1))
    )
    [follower] = world.followers
    [subscription_id] = world.subscriptions
    try:
        await _trade(world, Side.BUY, "0.40")
        await _positions_become(database, world, ["0.40"])
        clean = await reconcile(database, SystemClock(), is_live=world.links.is_live, settle_s=0)
        assert clean.clean
        await service.idle()
        assert await _alerts(database, Rule.RECONCILE_DRIFT) == []

        # The follower sells part of the copy at the broker themself: the link still says 0.40.
        await place_order(world.links, follower.id, OrderTicket(symbol=EURUSD, side=Side.SELL, qty=Decimal("0.10")))
        await eventually(lambda: _holds(database, follower.id, "0.30"), "the follower's own sale")
        found = await reconcile(database, SystemClock(), is_live=world.links.is_live, settle_s=0)
        assert not found.clean
        alert = await _one_alert(database, Rule.RECONCILE_DRIFT)
        assert (alert.subject, alert.labels["drifted"]) == (subscription_id, "1")

        await place_order(world.links, follower.id, OrderTicket(symbol=EURUSD, side=Side.BUY, qty=Decimal("0.10")))
        await eventually(lambda: _holds(database, follower.id, "0.40"), "the follower buying it back")
        assert (await reconcile(database, SystemClock(), is_live=world.links.is_live, settle_s=0)).clean
        resolved = await _one_alert(database, Rule.RECONCILE_DRIFT, AlertStatus.RESOLVED)
        assert resolved.id == alert.id
    finally:
        await world.engine.stop()


async def _holds(database: Database, account_id: str, qty: str) -> bool | None:
    return True if await _position(database, account_id) == Decimal(qty) else None


async def test_a_burst_from_one_client_raises_client_traffic(database: Database, make_service: ServiceFactory) -> None:
    service = make_service(database, alert_client_requests=100)
    await service.start()
    for _ in range(99):
        observe.http_request(route="/v1/accounts", method="GET", status=200, duration_s=0.001, client_id="cli_app")
        observe.http_request(route="/v1/accounts", method="GET", status=200, duration_s=0.001, client_id=None)
    await service.idle()
    assert await _alerts(database, Rule.CLIENT_TRAFFIC) == []
    observe.http_request(route="/v1/accounts", method="GET", status=200, duration_s=0.001, client_id="cli_app")
    await service.idle()
    [alert] = await _alerts(database, Rule.CLIENT_TRAFFIC)
    assert (alert.subject, alert.labels["requests"]) == ("cli_app", "100")
