"""``brokerlink copy reconcile``: findings as a table or JSON, a repair, and exit statuses for cron."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from brokerlink.cli import main
from brokerlink.config import Settings
from brokerlink.domain.copy import LinkStatus
from brokerlink.domain.models import Position
from brokerlink.engine.copy.ids import copy_client_order_id
from brokerlink.engine.copy.settings import CopySettings, SizingMode, encode_settings
from brokerlink.store.db import Database
from brokerlink.store.migrate import upgrade
from brokerlink.store.repositories.copy_links import CopyLinkRepository
from brokerlink.store.repositories.positions import PositionRepository
from brokerlink.store.repositories.strategies import StrategyPositionRepository
from tests.store import copy_factories as f
from tests.store.copy_factories import NOW, make_copying

runner = CliRunner()
SETTINGS = encode_settings(CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=Decimal(1))).decode()


@pytest.fixture(autouse=True)
def restore_environment() -> Iterator[None]:
    """The CLI hands its overrides to worker processes through the environment; undo that after each test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """A console wide enough that no id is folded across lines (it still writes to the runner's stdout)."""
    monkeypatch.setattr(main, "console", Console(width=300))


async def _seed(settings: Settings) -> tuple[str, str]:
    """A subscription whose EUR/USD copy (0.30 held) the provider is flat in: an orphan."""
    await upgrade(settings.effective_database_url)
    database = Database.from_settings(settings)
    try:
        async with database.session() as session:
            world = await make_copying(session, settings=SETTINGS)
            link = f.link(world.subscription, "EUR/USD", follower_symbol="EURUSD", qty=Decimal("0.30"))
            await CopyLinkRepository(session).add(link)
            await StrategyPositionRepository(session).set(world.strategy.id, "EUR/USD", Decimal(0), now=NOW)
            position = Position(account_id=world.follower.id, symbol="EURUSD", qty=Decimal("0.30"))
            await PositionRepository(session).upsert(position, now=NOW)
            await session.commit()
        return world.subscription.id, link.id
    finally:
        await database.dispose()


async def _link_status(settings: Settings, link_id: str) -> LinkStatus | None:
    database = Database.from_settings(settings)
    try:
        async with database.session() as session:
            link = await CopyLinkRepository(session).get_by_id(link_id)
        return None if link is None else link.status
    finally:
        await database.dispose()


def test_findings_exit_1_then_a_repair_exits_0(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, log_level="warning")
    sub_id, link_id = asyncio.run(_seed(settings))
    data_dir = ["--data-dir", str(tmp_path)]

    table = runner.invoke(main.app, ["copy", "reconcile", *data_dir])
    assert table.exit_code == 1, table.output
    assert "orphan_link" in table.output
    assert link_id in table.output
    assert "1 subscription(s) compared: orphan_link 1 (1 to fix)" in table.output

    as_json = runner.invoke(main.app, ["copy", "reconcile", "--json", "--subscription", sub_id, *data_dir])
    assert as_json.exit_code == 1, as_json.output
    report = json.loads(as_json.output)
    assert report["clean"] is False
    assert report["counts"]["orphan_link"] == 1
    [finding] = report["findings"]
    assert (finding["kind"], finding["link_id"], finding["held"], finding["provider_qty"]) == (
        "orphan_link", link_id, "0.30", "0",
    )  # fmt: skip
    assert asyncio.run(_link_status(settings, link_id)) is LinkStatus.OPEN

    repaired = runner.invoke(main.app, ["copy", "reconcile", "--repair", "--json", *data_dir])
    assert repaired.exit_code == 0, repaired.output
    body = json.loads(repaired.output)
    [intent] = body["intents"]
    assert intent["client_order_id"] == copy_client_order_id(sub_id, f"reconcile:{link_id}:0", "close")
    assert (intent["side"], intent["qty"], intent["status"]) == ("sell", "0.30", "pending")
    assert [(r["action"], r["qty"]) for r in body["repairs"]] == [("close_order", "0.30")]
    assert asyncio.run(_link_status(settings, link_id)) is LinkStatus.CLOSED

    # The close is in the outbox: EURUSD is in flight, which is information, not a finding to fix.
    again = runner.invoke(main.app, ["copy", "reconcile", *data_dir])
    assert again.exit_code == 0, again.output
    assert "in_flight 1 (clean)" in again.output


def test_an_unknown_subscription_exits_2(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, log_level="warning")
    asyncio.run(_seed(settings))
    result = runner.invoke(main.app, ["copy", "reconcile", "--subscription", "sub_nope", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
