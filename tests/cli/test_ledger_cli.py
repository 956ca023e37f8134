"""``brokerlink ledger``: balances, trial balance, reconcile (with its exit status) and confirm-capital."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from brokerlink.cli import ledger as ledger_cli
from brokerlink.cli.main import app
from brokerlink.config import Settings
from brokerlink.domain.models import Balance
from brokerlink.store.db import Database
from brokerlink.store.migrate import upgrade
from brokerlink.store.repositories.positions import BalanceRepository
from tests.store.factories import NOW, make_account

runner = CliRunner()


@pytest.fixture(autouse=True)
def restore_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    saved = dict(os.environ)
    from rich.console import Console

    monkeypatch.setattr(ledger_cli, "_console", Console(width=300))
    yield
    os.environ.clear()
    os.environ.update(saved)


async def _seed(settings: Settings) -> str:
    """An account whose broker reports 750.00 USD."""
    await upgrade(settings.effective_database_url)
    database = Database.from_settings(settings)
    try:
        async with database.session() as session:
            account = await make_account(session)
            await BalanceRepository(session).upsert(
                Balance(
                    account_id=account.id,
                    currency=account.currency,
                    cash=Decimal("750.00"),
                    equity=Decimal("750.00"),
                    buying_power=Decimal("750.00"),
                    margin_used=Decimal(0),
                    ts=NOW,
                )
            )
            await session.commit()
            return account.id
    finally:
        await database.dispose()


def test_reconcile_balances_trial_balance_and_confirmed_capital(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    account_id = asyncio.run(_seed(settings))
    data = ["--data-dir", str(tmp_path)]

    # Before the poster ran: nothing is opened, nothing to compare (pending, exit 0).
    pending = runner.invoke(app, ["ledger", "reconcile", "--json", *data])
    assert pending.exit_code == 0, pending.output
    assert [a["status"] for a in json.loads(pending.stdout)["accounts"]] == ["pending"]

    posted = runner.invoke(app, ["ledger", "reconcile", "--post", "--json", *data])
    assert posted.exit_code == 0, posted.output
    [result] = json.loads(posted.stdout)["accounts"]
    assert (result["status"], result["ledger_cash"], result["broker_cash"]) == ("ok", "750.00", "750.00")

    # A deposit the broker has not reported (yet): the ledger is now ahead, unexplained -> exit 1.
    confirmed = runner.invoke(
        app,
        [
            "ledger",
            "confirm-capital",
            account_id,
            "100.00",
            "--reference",
            "wire-1",
            "--at",
            "2026-01-01T00:00:00Z",
            *data,
        ],
    )
    assert confirmed.exit_code == 0, confirmed.output
    assert "posted jen_" in confirmed.output
    drift = runner.invoke(app, ["ledger", "reconcile", "--account", account_id, "--json", *data])
    assert drift.exit_code == 1, drift.output
    assert json.loads(drift.stdout)["accounts"][0]["unexplained"] == "-100.00"

    balances = runner.invoke(app, ["ledger", "balances", "--json", *data])
    assert balances.exit_code == 0, balances.output
    cash = {b["account"]: b["balance"] for b in json.loads(balances.stdout)["balances"]}
    assert cash[f"assets:cash:{account_id.lower()}"] == "850.00"
    assert cash[f"equity:capital:{account_id.lower()}"] == "100.00"

    trial = runner.invoke(app, ["ledger", "trial-balance", "--json", *data])
    assert trial.exit_code == 0, trial.output
    assert json.loads(trial.stdout) == {"at": None, "totals": {"USD": "0.00"}, "balanced": True}

    unknown = runner.invoke(app, ["ledger", "reconcile", "--account", "acc_nope", *data])
    assert unknown.exit_code == 2
