"""Audit trail cost: audited writes per second against the same writes without the trail, on SQLite.

A migrated SQLite file (the server's engine and settings: WAL, ``synchronous=NORMAL``, lazy
``BEGIN IMMEDIATE``) in a temp dir, one user, connection and account. One *write* is the
transaction ``engine.links.orders.place_order`` runs to store an order, through the real
repository: the idempotency lookup by client order id, the order's ORM insert, commit:

* **plain**: the order, commit.
* **audited**: the order, then ``brokerlink.security.audit.record`` (``order.place`` with a user
  actor, request id, source IP and three details: the head row's ``UPDATE ... RETURNING``, the
  canonical JSON and SHA-256, the record INSERT, the head hash UPDATE), commit.

Transactions run one after another (concurrency on SQLite only queues on the write lock; it adds
nothing to either side). Within each round plain and audited alternate in blocks of 25 writes, so
load from other processes on a shared machine hits both alike; a round's rate per side is its
writes over the summed time of its blocks, and the figures are medians over rounds. After the run the whole trail is
verified (``verify``), so the benchmark also proves what it wrote is a valid chain, and its speed is
reported (``verify_records_per_s``: what the periodic checkpoint's full walk costs).

``.venv/bin/python bench/audit.py [--quick]``. ``--quick``: 5 rounds x 300 writes per side
(~10 s); full: 9 rounds x 2,000. The last line of output is one JSON object: ``plain_per_s``,
``audited_per_s``, ``ratio`` (audited / plain), ``goal`` (``ratio >= 0.7``: the trail costs at most
30% of write throughput) and ``met``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from brokerlink.domain.enums import OrderType, Side, TimeInForce
from brokerlink.domain.models import Account, Order
from brokerlink.kit.ids import new_id
from brokerlink.logs import configure_logging
from brokerlink.security.audit import Actor, AuditContext, record
from brokerlink.security.audit_sign import AuditSigner
from brokerlink.security.audit_verify import verify
from brokerlink.store.db import Database
from brokerlink.store.migrate import upgrade
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.connections import ConnectionRepository
from brokerlink.store.repositories.orders import OrderRepository
from brokerlink.store.repositories.users import UserRepository

GOAL = 0.7
BLOCK = 25


def _order(account_id: str, now: datetime) -> Order:
    return Order(
        id=new_id("ord"),
        client_order_id=new_id("cid"),
        account_id=account_id,
        symbol="EUR/USD",
        side=Side.BUY,
        qty=Decimal("0.10"),
        type=OrderType.LIMIT,
        tif=TimeInForce.GTC,
        limit_price=Decimal("1.08505"),
        created_at=now,
        updated_at=now,
    )


async def _setup(database: Database) -> tuple[str, str]:
    now = datetime.now(UTC)
    async with database.session() as session:
        user = await UserRepository(session).create(
            email="bench@example.com",
            display_name="Bench",
            password_hash="x",  # noqa: S106 - not a password; the bench user never signs in
            now=now,
        )
        connection = await ConnectionRepository(session).create(user_id=user.id, broker="sim", label="bench", now=now)
        account = Account(
            id=new_id("acc"),
            user_id=user.id,
            connection_id=connection.id,
            venue_account_id="SIM-BENCH",
            name="Main",
            currency="USD",
        )
        await AccountRepository(session).add(account, now=now)
        await session.commit()
        return user.id, account.id


async def _writes(database: Database, user_id: str, account_id: str, n: int, *, audited: bool) -> float:
    """Run ``n`` write transactions one after another; returns the seconds they took."""
    actor = Actor(kind="user", id=user_id)
    context = AuditContext(request_id="req_bench", source_ip="127.0.0.1")
    started = time.perf_counter()
    for _ in range(n):
        now = datetime.now(UTC)
        async with database.session() as session:
            order = _order(account_id, now)
            orders = OrderRepository(session)
            # What place_order's transaction does: the idempotency lookup, then the insert.
            if await orders.get_by_client_order_id(account_id, order.client_order_id) is not None:
                raise AssertionError("client order ids are fresh")
            await orders.add(order)
            if audited:
                await record(
                    session,
                    actor=actor,
                    action="order.place",
                    target=order.id,
                    now=now,
                    context=context,
                    details={"account_id": account_id, "symbol": order.symbol, "side": order.side.value},
                )
            await session.commit()
    return time.perf_counter() - started


async def main_async(rounds: int, per_round: int, data_dir: Path) -> dict[str, object]:
    url = f"sqlite+aiosqlite:///{data_dir / 'bench.db'}"
    await upgrade(url)
    database = Database(url)
    try:
        user_id, account_id = await _setup(database)
        await _writes(database, user_id, account_id, 50, audited=False)  # warm-up: caches, statement compilation
        await _writes(database, user_id, account_id, 50, audited=True)
        plain: list[float] = []
        audited: list[float] = []
        for i in range(rounds):
            # Within a round the two sides alternate in blocks of BLOCK writes (which goes first alternates
            # too), so a burst of load from other processes lands on both sides, not on one.
            spent = {False: 0.0, True: 0.0}
            for j in range(per_round // BLOCK):
                for side in (False, True) if (i + j) % 2 == 0 else (True, False):
                    spent[side] += await _writes(database, user_id, account_id, BLOCK, audited=side)
            plain.append(per_round / spent[False])
            audited.append(per_round / spent[True])
            print(f"round {i + 1}/{rounds}: plain {plain[-1]:.0f}/s  audited {audited[-1]:.0f}/s", file=sys.stderr)
        signer = AuditSigner(data_dir / "audit-signing-key.json")
        started = time.perf_counter()
        async with database.session() as session:
            result = await verify(session, public_keys=signer.public_keys())
        verify_s = time.perf_counter() - started
    finally:
        await database.dispose()
    plain_per_s = statistics.median(plain)
    audited_per_s = statistics.median(audited)
    ratio = audited_per_s / plain_per_s
    return {
        "benchmark": "audit",
        "database": "sqlite",
        "rounds": rounds,
        "writes_per_round": per_round,
        "plain_per_s": round(plain_per_s, 1),
        "audited_per_s": round(audited_per_s, 1),
        "ratio": round(ratio, 3),
        "plain_rounds": [round(r) for r in plain],
        "audited_rounds": [round(r) for r in audited],
        "audited_us_per_write_extra": round(1e6 / audited_per_s - 1e6 / plain_per_s, 1),
        "trail_verified": result.ok,
        "trail_records": result.records_checked,
        "verify_records_per_s": round(result.records_checked / verify_s),
        "goal": f"ratio >= {GOAL}",
        "met": ratio >= GOAL and result.ok,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 rounds x 300 writes per side (~10 s)")
    args = parser.parse_args()
    configure_logging("warning")
    rounds, per_round = (5, 300) if args.quick else (9, 2000)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="brokerlink-bench-audit-") as tmp:
        summary = asyncio.run(main_async(rounds, per_round, Path(tmp)))
    summary["wall_s"] = round(time.perf_counter() - started, 1)
    print(
        f"plain {summary['plain_per_s']}/s  audited {summary['audited_per_s']}/s  ratio {summary['ratio']}"
        f"  (goal {summary['goal']}: {'met' if summary['met'] else 'NOT met'})"
    )
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
