"""``brokerlink copy status``: the table shows each subscription's holdings, skips and latencies."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from rich.console import Console

from brokerlink.cli.copy_status import show
from brokerlink.config import Settings
from brokerlink.domain.copy import CopyEventKind, IntentStatus
from brokerlink.store.db import Database
from brokerlink.store.migrate import upgrade
from brokerlink.store.repositories.copy_events import CopyEventRepository
from brokerlink.store.repositories.copy_intents import CopyIntentRepository
from brokerlink.store.repositories.copy_links import CopyLinkRepository
from brokerlink.store.repositories.copy_signals import CopySignalRepository
from tests.store import copy_factories as f
from tests.store.copy_factories import NOW, make_copying


def test_the_table_lists_holdings_skips_and_latency_percentiles(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, log_level="warning")
    name = asyncio.run(_seed(settings))

    console = Console(record=True, width=250)
    show(settings, watch=False, console=console)  # a command: it runs its own event loop
    text = console.export_text()
    assert name in text
    assert "buy 0.30 EURUSD.m" in text
    assert "below_min_qty 2, slippage 1" in text
    assert "2.0 / 8.9" in text  # engine ms: p50 2.0, p99 between the two largest (inclusive method)
    assert "active" in text


async def _seed(settings: Settings) -> str:
    await upgrade(settings.effective_database_url)
    database = Database.from_settings(settings)
    try:
        async with database.session() as session:
            world = await make_copying(session)
            sub = world.subscription
            signal = f.signal(world.strategy)
            await CopySignalRepository(session).add_if_new(signal)
            await CopyLinkRepository(session).add(f.link(sub, qty=Decimal("0.30")))
            intents = CopyIntentRepository(session)
            for engine_us in (1000, 2000, 9000):
                intent = f.intent(sub, signal.id, engine_us=engine_us, broker_us=engine_us * 10)
                await intents.add(intent)
                await intents.mark_sent(intent.id, now=NOW, engine_us=engine_us)
                await intents.mark_filled(intent.id, now=NOW, broker_us=engine_us * 10)
            events = CopyEventRepository(session)
            for reason in ("below_min_qty", "below_min_qty", "slippage"):
                await events.add(f.event(sub, CopyEventKind.SKIPPED, reason=reason))
            await session.commit()
            filled = (await intents.list_for_subscription(sub.id)).items
        assert {i.status for i in filled} == {IntentStatus.FILLED}
        return world.strategy.name
    finally:
        await database.dispose()
