"""``brokerlink copy status``: every subscription at a glance, from the store (the server may be running).

One row per subscription: strategy, follower, status, what the links hold, the follower's realized
P&L, copies filled, skips by reason, and latency percentiles (engine and broker) over its
recent copies. ``--watch`` redraws it every second until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from statistics import quantiles

import msgspec
from rich.console import Console
from rich.live import Live
from rich.table import Table

from brokerlink.config import Settings
from brokerlink.domain.copy import CopyEventKind, IntentStatus
from brokerlink.store.db import Database
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.copy_events import CopyEventRepository
from brokerlink.store.repositories.copy_intents import CopyIntentRepository
from brokerlink.store.repositories.copy_links import CopyLinkRepository
from brokerlink.store.repositories.positions import PositionRepository
from brokerlink.store.repositories.strategies import StrategyRepository
from brokerlink.store.repositories.subscriptions import SubscriptionRepository
from brokerlink.store.repositories.users import UserRepository

_RECENT = 500


class Row(msgspec.Struct, frozen=True, kw_only=True):
    """One subscription's line."""

    strategy: str
    follower: str
    account: str
    status: str
    holding: str
    realized_pnl: Decimal
    copies: int
    skips: dict[str, int]
    engine_ms: tuple[float, float] | None
    broker_ms: tuple[float, float] | None


def _percentiles(values: list[int]) -> tuple[float, float] | None:
    """p50 and p99 in milliseconds (display only)."""
    if not values:
        return None
    if len(values) == 1:
        return values[0] / 1000, values[0] / 1000
    cuts = quantiles(values, n=100, method="inclusive")
    return cuts[49] / 1000, cuts[98] / 1000


async def collect(database: Database) -> list[Row]:
    """Read every live subscription's figures."""
    rows: list[Row] = []
    async with database.session() as session:
        strategies = await StrategyRepository(session).list_active()
        for strategy in strategies:
            for sub in await SubscriptionRepository(session).list_for_strategy(strategy.id):
                user = await UserRepository(session).get(sub.follower_user_id)
                account = await AccountRepository(session).get_by_id(sub.account_id)
                links = await CopyLinkRepository(session).list_open_for_subscription(sub.id)
                positions = await PositionRepository(session).list_for_account(sub.account_id, include_flat=True)
                intents = (await CopyIntentRepository(session).list_for_subscription(sub.id, limit=_RECENT)).items
                skips = await CopyEventRepository(session).count_by_reason(sub.id, kind=CopyEventKind.SKIPPED)
                rows.append(
                    Row(
                        strategy=strategy.name,
                        follower=user.email if user is not None else sub.follower_user_id,
                        account=account.name if account is not None else sub.account_id,
                        status=sub.status.value,
                        holding=", ".join(f"{lk.side.value} {lk.qty} {lk.follower_symbol}" for lk in links) or "flat",
                        realized_pnl=sum((p.realized_pnl for p in positions), Decimal(0)),
                        copies=sum(1 for i in intents if i.status is IntentStatus.FILLED),
                        skips=skips,
                        engine_ms=_percentiles([i.engine_us for i in intents if i.engine_us is not None]),
                        broker_ms=_percentiles([i.broker_us for i in intents if i.broker_us is not None]),
                    )
                )
    return rows


def render(rows: list[Row]) -> Table:
    """The table ``copy status`` prints."""
    table = Table(title="copy trading", expand=False)
    for header in ("strategy", "follower", "account", "status", "holding", "realized P&L", "copies", "skips",
                   "engine ms p50/p99", "broker ms p50/p99"):  # fmt: skip
        table.add_column(header)
    for row in rows:
        skips = ", ".join(f"{reason} {n}" for reason, n in sorted(row.skips.items())) or "-"
        table.add_row(
            row.strategy, row.follower, row.account, row.status, row.holding, f"{row.realized_pnl:f}",
            str(row.copies), skips, _ms(row.engine_ms), _ms(row.broker_ms),
        )  # fmt: skip
    if not rows:
        table.caption = "no live subscriptions"
    return table


def _ms(pair: tuple[float, float] | None) -> str:
    return "-" if pair is None else f"{pair[0]:.1f} / {pair[1]:.1f}"


def show(settings: Settings, *, watch: bool, console: Console, rounds: int | None = None) -> None:
    """Print the table once, or redraw it every second (``rounds`` bounds it, for tests)."""

    async def once() -> Table:
        database = Database.from_settings(settings)
        try:
            return render(await collect(database))
        finally:
            await database.dispose()

    if not watch:
        console.print(asyncio.run(once()))
        return
    with Live(asyncio.run(once()), console=console, refresh_per_second=2) as live:
        done = 0
        while rounds is None or done < rounds:
            time.sleep(1)
            live.update(asyncio.run(once()))
            done += 1
