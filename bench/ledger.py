"""Ledger journal throughput: validated, idempotent, balance-keeping batches vs plain inserts.

What is measured: balanced journal entries committed per second, posted as the ledger poster posts
them - ``post_many`` of a batch of entries (100 by default, 2-4 legs each, amounts in two
currencies over a pool of accounts) in one transaction, with everything the journal does: account
code validation, per-currency balance checks, content hashes and the idempotency-key lookup, new
account rows, the entry and posting inserts, and the running balances read ``FOR UPDATE`` and
updated. The **baseline**, in the same run and interleaved with it (batch by batch: validated,
plain, validated, ...), inserts the same rows (entries and postings, ids generated the same way) with two Core
``executemany`` statements per transaction: no validation, no idempotency, no balance upkeep.

Databases: a SQLite file (WAL, as the server runs it) always; PostgreSQL too when
``BROKERLINK_TEST_POSTGRES_URL`` (or ``--postgres URL``) names a server - a scratch database is
created there and dropped at the end.

Figures: entries/s of each, median over the repeats; ``ratio`` = validated / plain on SQLite,
``ratio_postgresql`` on PostgreSQL, each the median over the repeats of that repeat's validated /
plain (the two sides of a repeat ran interleaved, under the same load; the medians of each side
alone may come from different repeats, and their quotient, kept as ``ratio_of_medians``, swings
with the load between repeats). **Goal: ratio >= 0.7** (validation and balance upkeep cost at
most 30%), on each database measured.

``.venv/bin/python bench/ledger.py [--quick] [--postgres URL] [--batch 100]``. The last line of
output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from brokerlink.kit.ids import new_id
from brokerlink.ledger import chart, journal
from brokerlink.logs import configure_logging
from brokerlink.store.db import Database
from brokerlink.store.migrate import upgrade
from brokerlink.store.models_ledger import JournalEntryRow, PostingRow

GOAL = 0.7
ACCOUNTS = 50
CURRENCIES = ("USD", "EUR")
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def every_account() -> list[journal.Entry]:
    """Entries naming every account the batches can name, in both currencies (the untimed warm-up:
    the plain inserts need the accounts to exist, as their postings reference them)."""
    result = []
    for i in range(ACCOUNTS):
        account, owner = f"acc_bench{i:03d}", f"usr_bench{i:03d}"
        for currency in CURRENCIES:
            one, half = Decimal(1), Decimal("0.5")
            legs = (
                journal.Leg(account=chart.cash(account), currency=currency, debit=one, owner_id=owner),
                journal.Leg(account=chart.realized_pnl(account), currency=currency, credit=one, owner_id=owner),
                journal.Leg(account=chart.commissions(account), currency=currency, debit=one, owner_id=owner),
                journal.Leg(account=chart.cash(account), currency=currency, credit=one, owner_id=owner),
                journal.Leg(account=chart.fee_expense(owner, "volume"), currency=currency, debit=one, owner_id=owner),
                journal.Leg(account=chart.fees_payable(owner), currency=currency, credit=half, owner_id=owner),
                journal.Leg(account=chart.platform_fee_income("volume"), currency=currency, credit=half),
            )
            result.append(
                journal.Entry(
                    idempotency_key=f"bench:open:{account}:{currency}",
                    correlation_id=account,
                    kind="warm-up",
                    description="every account",
                    occurred_at=T0,
                    legs=legs,
                )
            )
    return result


def make_batches(rng: random.Random, tag: str, batches: int, size: int) -> list[list[journal.Entry]]:
    """``batches`` x ``size`` balanced entries with unique keys: fills (2-4 legs), fees, transfers."""
    accounts = [f"acc_bench{i:03d}" for i in range(ACCOUNTS)]  # every one created by every_account()
    result = []
    n = 0
    for _ in range(batches):
        batch = []
        for _ in range(size):
            n += 1
            account = rng.choice(accounts)
            owner = f"usr_{account[4:]}"
            currency = rng.choice(CURRENCIES)
            amount = Decimal(rng.randint(1, 10_000_00)).scaleb(-2)
            fee = Decimal(rng.randint(2, 500)).scaleb(-2)  # >= 0.02: both halves of a split are non-zero
            legs = [
                journal.Leg(account=chart.cash(account), currency=currency, debit=amount, owner_id=owner),
                journal.Leg(account=chart.realized_pnl(account), currency=currency, credit=amount, owner_id=owner),
            ]
            if rng.random() < 0.5:  # a commission: 4 legs
                legs += [
                    journal.Leg(account=chart.commissions(account), currency=currency, debit=fee, owner_id=owner),
                    journal.Leg(account=chart.cash(account), currency=currency, credit=fee, owner_id=owner),
                ]
            elif rng.random() < 0.5:  # 3 legs: a fee split
                half = (fee / 2).quantize(Decimal("0.01"))
                legs = [
                    journal.Leg(
                        account=chart.fee_expense(owner, "volume"), currency=currency, debit=fee, owner_id=owner
                    ),
                    journal.Leg(account=chart.fees_payable(owner), currency=currency, credit=half, owner_id=owner),
                    journal.Leg(account=chart.platform_fee_income("volume"), currency=currency, credit=fee - half),
                ]
            batch.append(
                journal.Entry(
                    idempotency_key=f"bench:{tag}:{n}",
                    correlation_id=f"ord-{tag}-{n}",
                    kind="fill",
                    description=f"bench entry {n}",
                    occurred_at=T0 + timedelta(seconds=n),
                    legs=tuple(legs),
                )
            )
        result.append(batch)
    return result


async def post_validated(database: Database, batch: list[journal.Entry]) -> float:
    """Seconds to commit one batch through ``post_many`` (one transaction)."""
    started = time.perf_counter()
    async with database.session() as session:
        await journal.post_many(session, batch, now=datetime.now(UTC))
        await session.commit()
    return time.perf_counter() - started


async def insert_plain(database: Database, batch: list[journal.Entry]) -> float:
    """Seconds to commit the same rows as two executemany statements in one transaction, nothing else."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    entries: list[dict[str, Any]] = []
    postings: list[dict[str, Any]] = []
    for entry in batch:
        entry_id = new_id("jen")
        entries.append(
            {
                "id": entry_id,
                "idempotency_key": entry.idempotency_key,
                "correlation_id": entry.correlation_id,
                "kind": entry.kind,
                "description": entry.description,
                "occurred_at": entry.occurred_at,
                "created_at": now,
                "reverses_entry_id": None,
                "content_hash": "0" * 64,
            }
        )
        postings.extend(
            {
                "id": new_id("pst"),
                "entry_id": entry_id,
                "account": leg.account,
                "currency": leg.currency,
                "debit": leg.debit,
                "credit": leg.credit,
                "owner_id": leg.owner_id,
                "occurred_at": entry.occurred_at,
            }
            for leg in entry.legs
        )
    async with database.engine.begin() as conn:
        await conn.execute(insert(JournalEntryRow), entries)
        await conn.execute(insert(PostingRow), postings)
    return time.perf_counter() - started


async def analyze(database: Database) -> None:
    """PostgreSQL only, untimed: refresh the planner's statistics, as autovacuum does on a live server.

    The tables grow by 100% in seconds here; without it, the cached generic plan of the idempotency
    lookup (chosen while the table was tiny) stays a sequential scan, and the validated side slows
    down linearly with the table - an artefact of a database minutes old, not of the journal.
    """
    if database.engine.dialect.name == "postgresql":
        async with database.engine.connect() as conn:
            await conn.execute(text("ANALYZE journal_entries, postings, ledger_accounts, ledger_balances"))
            await conn.commit()


async def measure(url: str, *, repeats: int, batches: int, size: int, seed: int) -> dict[str, float]:
    """Interleaved repeats on one database; medians, and the median of the repeats' ratios."""
    await upgrade(url)
    database = Database(url)
    rng = random.Random(seed)
    try:
        # Warm-up (untimed): creates every account and balance row, so both sides insert into the same tables.
        await post_validated(database, every_account())
        for batch in make_batches(rng, "warm", 4, size):
            await post_validated(database, batch)
        await analyze(database)
        validated, plain = [], []
        for r in range(repeats):
            # Interleaved batch by batch (validated, plain, validated, ...): this machine's noise
            # (other processes, the table growing) hits both sides alike.
            mine, theirs = make_batches(rng, f"v{r}", batches, size), make_batches(rng, f"p{r}", batches, size)
            spent_v = spent_p = 0.0
            for one, other in zip(mine, theirs, strict=True):
                spent_v += await post_validated(database, one)
                spent_p += await insert_plain(database, other)
            validated.append(batches * size / spent_v)
            plain.append(batches * size / spent_p)
            await analyze(database)
        # The books are still balanced after the validated runs (the plain rows are not in the running totals).
        async with database.session() as session:
            trial = await journal.trial_balance(session)
        assert all(v == 0 for v in trial.values()), trial
    finally:
        await database.dispose()
    v, p = statistics.median(validated), statistics.median(plain)
    paired = statistics.median(one / other for one, other in zip(validated, plain, strict=True))
    return {
        "validated_entries_per_s": round(v, 1),
        "plain_entries_per_s": round(p, 1),
        "ratio": round(paired, 3),
        "ratio_of_medians": round(v / p, 3),
        "validated_runs": [round(x, 1) for x in validated],
        "plain_runs": [round(x, 1) for x in plain],
    }


async def _admin(server: str, sql: str) -> None:
    admin = create_async_engine(
        make_url(server).set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    try:
        async with admin.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await admin.dispose()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    repeats, batches = (7, 10) if args.quick else (9, 40)
    summary: dict[str, Any] = {
        "bench": "ledger",
        "mode": "quick" if args.quick else "full",
        "batch": args.batch,
        "batches_per_repeat": batches,
        "repeats": repeats,
    }
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = await measure(
            f"sqlite+aiosqlite:///{Path(tmp) / 'ledger.db'}", repeats=repeats, batches=batches, size=args.batch, seed=1
        )
    summary |= {
        "ratio": sqlite["ratio"],
        "validated_entries_per_s": sqlite["validated_entries_per_s"],
        "plain_entries_per_s": sqlite["plain_entries_per_s"],
        "sqlite": sqlite,
    }
    server = args.postgres or os.environ.get("BROKERLINK_TEST_POSTGRES_URL")
    met = sqlite["ratio"] >= GOAL
    if server:
        name = f"brokerlink_bench_{uuid.uuid4().hex[:12]}"
        await _admin(server, f'CREATE DATABASE "{name}"')
        try:
            url = make_url(server).set(database=name).render_as_string(hide_password=False)
            pg = await measure(url, repeats=repeats, batches=batches, size=args.batch, seed=2)
        finally:
            await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        summary |= {
            "ratio_postgresql": pg["ratio"],
            "validated_entries_per_s_postgresql": pg["validated_entries_per_s"],
            "plain_entries_per_s_postgresql": pg["plain_entries_per_s"],
            "postgresql": pg,
        }
        met = met and pg["ratio"] >= GOAL
    summary |= {"goal": f"ratio >= {GOAL} on each database measured", "met": met}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats (well under a minute)")
    parser.add_argument("--postgres", help="PostgreSQL server URL (default: $BROKERLINK_TEST_POSTGRES_URL)")
    parser.add_argument("--batch", type=int, default=100, help="entries per transaction (default 100)")
    args = parser.parse_args()
    configure_logging("warning")
    started = time.perf_counter()
    summary = asyncio.run(main_async(args))
    summary["wall_s"] = round(time.perf_counter() - started, 1)
    for db in ("sqlite", "postgresql"):
        if db in summary:
            s = summary[db]
            print(
                f"{db:<10} validated {s['validated_entries_per_s']:>9.1f} entries/s   plain "
                f"{s['plain_entries_per_s']:>9.1f} entries/s   ratio {s['ratio']}",
                file=sys.stderr,
            )
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
