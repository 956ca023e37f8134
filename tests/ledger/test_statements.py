"""Statements: opening cash plus the period's lines is the closing cash; CSV and PDF carry the figures;
the CLI writes the same statement. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from brokerlink.cli.main import app as cli
from brokerlink.domain.enums import Side
from brokerlink.domain.models import Account
from brokerlink.kit.errors import InvalidInput
from brokerlink.ledger import chart
from brokerlink.ledger.statements import Statement, build_statement, parse_period, to_csv, to_pdf
from brokerlink.store.db import Database
from brokerlink.store.models_stats import SnapshotKind
from brokerlink.store.repositories.stats import EquitySnapshot, StatsRepository
from tests.ledger.test_stats_support import (
    BACKENDS,
    add_fills,
    book,
    deposit,
    fill,
    make_account,
    withdraw,
)
from tests.store.conftest import migrated_database

D = Decimal
OCT = datetime(2026, 10, 20, 9, 0, tzinfo=UTC)
NOV = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
DEC = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with migrated_database(request, tmp_path) as database:
        yield database


async def trading_month(db: Database) -> Account:
    """October: 10,000 deposited. November: a gain of 250.50, a commission of 3.25, a loss of 120, a
    withdrawal of 1,000, a performance fee (not cash). December: another deposit. By hand, November
    closes at 10,000 + 250.50 - 3.25 - 120 - 1,000 = 9,127.25."""
    account = await make_account(db, "trader@example.com", now=OCT)
    await deposit(db, account, "10000", at=OCT)
    cash, trading, commissions = chart.cash(account.id), chart.realized_pnl(account.id), chart.commissions(account.id)
    usd, user = account.currency, account.user_id
    await book(db, owner_id=user, kind="fill", description="EUR/USD sell 1 closes long", at=NOV + timedelta(days=2),
               legs=[(cash, usd, "250.50", "0"), (trading, usd, "0", "250.50")])  # fmt: skip
    await book(db, owner_id=user, kind="commission", description="commission", at=NOV + timedelta(days=2, seconds=1),
               legs=[(commissions, usd, "3.25", "0"), (cash, usd, "0", "3.25")])  # fmt: skip
    await book(db, owner_id=user, kind="fill", description="EUR/USD buy 1 closes short", at=NOV + timedelta(days=9),
               legs=[(trading, usd, "120", "0"), (cash, usd, "0", "120")])  # fmt: skip
    await withdraw(db, account, "1000", at=NOV + timedelta(days=20))
    await book(db, owner_id=user, kind="fee", description="performance fee", at=NOV + timedelta(days=29, hours=23),
               legs=[(chart.fee_expense(user, "performance"), usd, "12.34", "0"),
                     (chart.fees_payable(user), usd, "0", "12.34")])  # fmt: skip
    await deposit(db, account, "777", at=DEC)
    await add_fills(db, [
        fill(account, Side.BUY, "1", "1.10000", NOV + timedelta(days=1), fee="1.5"),
        fill(account, Side.SELL, "1", "1.10250", NOV + timedelta(days=2), fee="1.75"),
        fill(account, Side.BUY, "1", "1.09000", DEC + timedelta(hours=1)),  # December: not in November's statement
    ])  # fmt: skip
    async with db.session() as session:
        await StatsRepository(session).add_many([
            EquitySnapshot(series=account.id, kind=SnapshotKind.ACCOUNT, account_id=account.id, currency=usd,
                           cash=D(c), equity=D(e), ts=t)
            for t, c, e in [
                (OCT + timedelta(days=5), "10000", "10010"),
                (NOV + timedelta(days=3), "10247.25", "10300"),
                (NOV + timedelta(days=10), "10127.25", "10100.5"),
                (NOV + timedelta(days=25), "9127.25", "9140"),
                (DEC + timedelta(days=1), "9904.25", "9904.25"),
            ]
        ])  # fmt: skip
        await session.commit()
    return account


async def november(db: Database, account: Account) -> Statement:
    async with db.session() as session:
        return await build_statement(session, account, "2026-11")


async def test_opening_plus_the_lines_is_the_closing_cash(db: Database) -> None:
    account = await trading_month(db)
    s = await november(db, account)
    assert s.opening_cash == D("10000")
    assert [line.amount for line in s.lines] == [D("250.50"), D("-3.25"), D("-120"), D("-1000")]
    assert s.closing_cash == D("9127.25")  # by hand (see trading_month)
    assert s.opening_cash + sum(line.amount for line in s.lines) == s.closing_cash
    assert s.lines[-1].balance == s.closing_cash
    assert (s.total_debits, s.total_credits) == (D("250.50"), D("1123.25"))
    assert [f.price for f in s.trades] == [D("1.10000"), D("1.10250")]
    assert [(f.account, f.debit) for f in s.fees] == [(chart.fee_expense(account.user_id, "performance"), D("12.34"))]
    assert (s.opening_equity, s.closing_equity) == (D("10010"), D("9140"))
    assert len(s.curve) == 3


async def test_csv_carries_every_line_and_the_totals(db: Database) -> None:
    account = await trading_month(db)
    rows = list(csv.reader(io.StringIO(to_csv(await november(db, account)))))
    by_key = {row[0]: row for row in rows if row}
    assert by_key["statement"][1:] == [account.id, account.name, "USD", "2026-11"]
    assert by_key["opening_cash"][1] == "10000"
    assert by_key["closing_cash"][1] == "9127.25"
    assert by_key["total"][4:7] == ["250.50", "1123.25", "-872.75"]
    cash = rows[rows.index(["section", "cash"]) + 2 : rows.index(["section", "cash"]) + 6]
    assert [r[6] for r in cash] == ["250.50", "-3.25", "-120", "-1000"]
    assert [r[7] for r in cash] == ["10250.50", "10247.25", "10127.25", "9127.25"]
    # Independently of the code's totals: the CSV's own numbers add up.
    assert D(by_key["opening_cash"][1]) + sum(D(r[6]) for r in cash) == D(by_key["closing_cash"][1])
    trades = rows[rows.index(["section", "trades"]) + 2 : rows.index(["section", "fees"]) - 1]
    assert [(r[2], r[3], r[4], r[5], r[6]) for r in trades] == [
        ("EUR/USD", "buy", "1", "1.10000", "1.5"),
        ("EUR/USD", "sell", "1", "1.10250", "1.75"),
    ]
    fees = rows[rows.index(["section", "fees"]) + 2 :]
    assert [(r[2], r[5]) for r in fees] == [(chart.fee_expense(account.user_id, "performance"), "12.34")]


async def test_pdf_is_a_pdf_with_the_account_the_totals_and_a_drawn_curve(db: Database) -> None:
    account = await trading_month(db)
    pdf = to_pdf(await november(db, account))
    assert pdf.startswith(b"%PDF-")
    assert pdf.rstrip().endswith(b"%%EOF")
    text = pdf.decode("latin-1")
    assert account.id in text
    for figure in ("Opening cash: 10000", "Closing cash: 9127.25", "Total credits: 1123.25", "Net: -872.75"):
        assert figure in text, figure
    # The curve's three points are joined by two line segments ("x y m x y l S" in the content stream).
    assert text.count(" l S") >= 2


async def test_an_empty_month_still_adds_up(db: Database) -> None:
    account = await trading_month(db)
    async with db.session() as session:
        s = await build_statement(session, account, "2027-01")
    assert s.lines == []
    assert s.opening_cash == s.closing_cash == D("9904.25")  # 9127.25 + the December deposit of 777
    assert b"Not enough equity samples" in to_pdf(s)


def test_periods_are_calendar_months_in_utc() -> None:
    assert parse_period("2026-11") == (NOV, DEC)
    assert parse_period("2026-12") == (DEC, datetime(2027, 1, 1, tzinfo=UTC))
    for bad in ("2026-13", "2026-00", "2026-1", "26-11", "2026-11-01", ""):
        with pytest.raises(InvalidInput):
            parse_period(bad)


async def test_the_cli_exports_the_same_statement(db: Database, tmp_path: Path) -> None:
    account = await trading_month(db)
    expected = to_csv(await november(db, account))
    out = tmp_path / "nov.csv"
    env = {
        "BROKERLINK_DATABASE_URL": db.url.render_as_string(hide_password=False),
        "BROKERLINK_DATA_DIR": str(tmp_path),
    }
    args = ["statements", "export", account.id, "--period", "2026-11", "--format", "csv", "--out", str(out)]
    # A command runs its own event loop: give it a thread without one.
    result = await asyncio.to_thread(CliRunner().invoke, cli, args, env=env)
    assert result.exit_code == 0, result.output
    assert out.read_text() == expected
    pdf = tmp_path / "nov.pdf"
    args = ["statements", "export", account.id, "--period", "2026-11", "--format", "pdf", "--out", str(pdf)]
    result = await asyncio.to_thread(CliRunner().invoke, cli, args, env=env)
    assert result.exit_code == 0, result.output
    assert pdf.read_bytes().startswith(b"%PDF-")
    missing = ["statements", "export", "acc_nope", "--period", "2026-11", "--out", str(tmp_path / "x.csv")]
    result = await asyncio.to_thread(CliRunner().invoke, cli, missing, env=env)
    assert result.exit_code == 1
    assert not (tmp_path / "x.csv").exists()
