"""The server's background services besides the broker links and the copy engine.

Each is started here in order and stopped by the caller in reverse, and each is kept on the app's
state under its name so routes (and tests) can reach it: the audit checkpointer (ADR 0016), alerts
and their admin stream (0019), the ledger poster and reconciler (0020), fees (0021), retention
(0017) and equity snapshots (0022).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from litestar.datastructures import State

from brokerlink.api.ledger.fees import live_marks as fee_marks
from brokerlink.bus.base import EventBus
from brokerlink.config import Settings
from brokerlink.engine.alerts.service import AlertService
from brokerlink.engine.links.service import BrokerLinks
from brokerlink.engine.retention import RetentionService
from brokerlink.engine.webhooks.service import STATE_KEY as WEBHOOKS_STATE_KEY  # issue 8 webhooks
from brokerlink.engine.webhooks.service import WebhookService
from brokerlink.kit.clock import Clock
from brokerlink.ledger.fee_task import FeeTask
from brokerlink.ledger.fees import FeeConfig
from brokerlink.ledger.poster import LedgerPoster
from brokerlink.ledger.reconcile import Reconciler
from brokerlink.ledger.snapshots import EquitySampler, live_marks
from brokerlink.security.audit_sign import AuditSigner
from brokerlink.security.audit_task import AuditCheckpointer
from brokerlink.security.oauth.resource import STATE_KEY as RESOURCE_STATE_KEY
from brokerlink.security.oauth.resource import ResourceServer, RevocationFollower
from brokerlink.security.oauth.runtime import AuthorizationRuntime  # issue 5 H5a
from brokerlink.security.vault import Vault
from brokerlink.store.db import Database
from brokerlink.stream.admin import AdminAlertHub
from brokerlink.stream.connections import STATE_KEY as STREAM_STATE_KEY
from brokerlink.stream.connections import StreamHub
from brokerlink.stream.feeds import CopyEventPoller
from brokerlink.stream.market import DeferredSink, MarketSource

Stop = Callable[[], Awaitable[None]]


async def start_services(  # noqa: PLR0915 - one short block per service
    state: State,
    settings: Settings,
    *,
    database: Database,
    bus: EventBus,
    vault: Vault,
    links: BrokerLinks,
    clock: Clock,
) -> list[Stop]:
    """Start the services; returns their stops, in the order they started (stop them in reverse)."""
    stops: list[Stop] = []

    checkpointer = AuditCheckpointer(
        database,
        AuditSigner.from_settings(settings),
        clock,
        every_s=settings.audit_checkpoint_every_s,
        export_to=settings.audit_checkpoint_export,
    )
    state.audit_checkpointer = checkpointer
    checkpointer.start()
    stops.append(checkpointer.stop)

    alerts = AlertService(database, bus, vault, clock, settings)
    state.alerts = alerts
    await alerts.start()
    stops.append(alerts.stop)
    admin_stream = AdminAlertHub(bus)
    state.admin_stream = admin_stream
    await admin_stream.start()
    stops.append(admin_stream.stop)

    poster = LedgerPoster(database, clock, bus=bus, every_s=settings.ledger_post_every_s)
    state.ledger_poster = poster
    await poster.start()
    stops.append(poster.stop)
    reconciler = Reconciler(database, clock, every_s=settings.ledger_reconcile_every_s)
    state.ledger_reconciler = reconciler
    reconciler.start()
    stops.append(reconciler.stop)

    fees = FeeTask(
        database, clock, FeeConfig.from_settings(settings), every_s=settings.fee_task_every_s, marks=fee_marks(links)
    )
    state.fee_task = fees
    fees.start()
    stops.append(fees.stop)

    retention = RetentionService.from_settings(settings, database, clock)
    state.retention = retention
    retention.start()
    stops.append(retention.stop)

    sampler = EquitySampler(
        database, clock, every_s=settings.stats_snapshot_every_s, mark=live_marks(links.is_live, links.live)
    )
    state.stats_sampler = sampler
    sampler.start()
    stops.append(sampler.stop)
    # The authorization server: signing key, client-assertion replay store.
    oauth = AuthorizationRuntime(settings, clock)
    state.oauth = oauth
    stops.append(oauth.close)
    # The resource server: token cache, revocation follower, stream connections.
    resource = ResourceServer.from_settings(settings, clock)
    state[RESOURCE_STATE_KEY] = resource
    stops.append(resource.close)
    # Market data for the stream's market channels (built first, handed to the hub).
    if state.get("market_source") is None:  # tests may put their own source there first
        market = MarketSource(
            links.live_accounts,
            sink=DeferredSink(lambda: state.get(STREAM_STATE_KEY)),  # the hub, built below, is the sink
            preferred=settings.market_data_account,
            depth_levels=settings.market_depth_levels,
            trades_kept=settings.market_trades_kept,
            retry_s=settings.market_retry_s,
        )
        state["market_source"] = market

        async def stop_market(market: MarketSource = market) -> None:
            await market.stop()
            del state["market_source"]  # a restarted app builds a new one

        stops.append(stop_market)
    # The stream hub (/v1/stream).
    stream = StreamHub(
        bus,
        clock=clock,
        market=state.get("market_source"),
        replay=settings.stream_replay,
        replay_keep_s=settings.stream_replay_keep_s,
        buffer=settings.stream_buffer,
        heartbeat_s=settings.stream_heartbeat_s,
        max_subscriptions=settings.stream_max_subscriptions,
    )
    state[STREAM_STATE_KEY] = stream
    await stream.start()
    stops.append(stream.stop)
    copy_feed = CopyEventPoller(database, stream, clock, every_s=settings.stream_copy_poll_s)
    state.stream_copy_feed = copy_feed
    await copy_feed.start()
    stops.append(copy_feed.stop)
    revocations = RevocationFollower(bus)
    revocations.listen(resource.revoked)
    revocations.listen(stream.revoked)
    state.revocations = revocations
    await revocations.start()
    stops.append(revocations.stop)
    # User webhooks.
    webhooks = WebhookService(database, bus, vault, clock, settings)
    state[WEBHOOKS_STATE_KEY] = webhooks
    await webhooks.start()
    stops.append(webhooks.stop)
    return stops
