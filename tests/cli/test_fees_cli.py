"""``brokerlink fees settle`` and ``brokerlink fees accrue`` against a SQLite data directory.

The CLI uses the real clock (the machine's date), so the scenario lies in a month that has ended:
October 2025.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from brokerlink.cli.main import app
from brokerlink.ledger.fees import FeeConfig, FeeTerms, set_schedule
from brokerlink.store.db import Database
from brokerlink.store.migrate import upgrade
from brokerlink.store.repositories.strategies import StrategyRepository
from brokerlink.store.repositories.subscriptions import SubscriptionRepository
from tests.store.copy_factories import strategy, subscription
from tests.store.factories import make_account

runner = CliRunner()


async def _seed(data_dir: Path) -> None:
    url = f"sqlite+aiosqlite:///{data_dir / 'brokerlink.db'}"
    await upgrade(url)
    database = Database(url)
    try:
        async with database.session() as session:
            provider = await make_account(session)
            follower = await make_account(session)
            stg = strategy(provider)
            await StrategyRepository(session).add(stg)
            start = datetime(2025, 10, 1, tzinfo=UTC)
            await set_schedule(session, stg, FeeTerms(management_pct=Decimal(2)), config=FeeConfig(), now=start)
            sub = subscription(stg, follower, start_equity=Decimal(10000), created_at=start, updated_at=start)
            await SubscriptionRepository(session).add(sub)
            await session.commit()
    finally:
        await database.dispose()


def test_settle_and_accrue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKERLINK_DATA_DIR", str(tmp_path))  # restored afterwards (the CLI exports it)
    asyncio.run(_seed(tmp_path))

    # October: 31 days x 10000 x 2% / 365 (0.54794520 a day) = 16.98630120 -> 16.98.
    result = runner.invoke(app, ["fees", "settle", "--period", "2025-10", "--json", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["period"], report["subscriptions"], report["lines"], report["charged"]) == (
        "2025-10", 1, 3, {"USD": "16.98"},
    )  # fmt: skip
    again = runner.invoke(app, ["fees", "settle", "--period", "2025-10", "--json", "--data-dir", str(tmp_path)])
    assert json.loads(again.output)["lines"] == 0

    result = runner.invoke(app, ["fees", "accrue", "--day", "2025-11-03", "--json", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"day": "2025-11-03", "lines": 1}

    bad = runner.invoke(app, ["fees", "settle", "--period", "2025-13", "--data-dir", str(tmp_path)])
    assert bad.exit_code == 2
    assert "period" in bad.output
