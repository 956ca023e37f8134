"""``brokerlink copy reconcile``: every follower's copies against what their broker holds, from the store.

A table by default, one JSON object with ``--json``. The exit status is 0 when nothing actionable is
left (``untracked``, ``in_flight`` and ``unverified`` findings are information), 1 when findings
remain, 2 for an unknown subscription: a cron job can alert on it.

``--repair`` writes its closing orders to the outbox and does not send them: the running server's
copy engine sends what the outbox holds within its retry interval. (Without a server they wait for
its next start, and are not sent late unless the follower opted in to catch-up trades.)
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import msgspec
from rich.console import Console
from rich.table import Table

from brokerlink.config import Settings
from brokerlink.domain.copy import CopyIntent
from brokerlink.engine.copy.reconcile import Finding, Repair, Report, reconcile
from brokerlink.kit.clock import SystemClock
from brokerlink.kit.errors import NotFound
from brokerlink.store.db import Database

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_UNKNOWN = 2


class ReportJson(msgspec.Struct, kw_only=True):
    """What ``--json`` prints (decimals as strings)."""

    checked_at: datetime
    subscriptions: int
    clean: bool
    counts: dict[str, int]
    findings: tuple[Finding, ...]
    repairs: tuple[Repair, ...]
    intents: tuple[CopyIntent, ...]


def run(
    settings: Settings,
    *,
    subscription_id: str | None,
    repair: bool,
    as_json: bool,
    console: Console,
    err: Console,
) -> int:
    """Reconcile, print, and return the exit status."""

    async def once() -> Report:
        database = Database.from_settings(settings)
        try:
            return await reconcile(database, SystemClock(), subscription_id=subscription_id, repair=repair)
        finally:
            await database.dispose()

    try:
        report = asyncio.run(once())
    except NotFound:
        err.print(f"[red]error:[/] no subscription {subscription_id}")
        return EXIT_UNKNOWN
    if as_json:
        console.file.write(to_json(report) + "\n")
    else:
        console.print(render(report))
        if report.repairs:
            console.print(render_repairs(report))
        if report.intents:
            console.print(
                f"{len(report.intents)} closing order(s) queued in the outbox; the running server sends them."
            )
    return EXIT_CLEAN if report.clean else EXIT_FINDINGS


def to_json(report: Report) -> str:
    """The report as one JSON object."""
    body = ReportJson(
        checked_at=report.checked_at,
        subscriptions=report.subscriptions,
        clean=report.clean,
        counts=report.counts(),
        findings=report.findings,
        repairs=report.repairs,
        intents=report.intents,
    )
    return msgspec.json.encode(body).decode()


def render(report: Report) -> Table:
    """The findings table."""
    table = Table(title="copy reconciliation", expand=False)
    for header in ("kind", "subscription", "account", "symbol", "expected", "actual", "link", "link qty", "held",
                   "detail"):  # fmt: skip
        table.add_column(header)
    for f in report.findings:
        table.add_row(
            f.kind.value, f.subscription_id or "-", f.account_id, f.symbol, f"{f.expected:f}", f"{f.actual:f}",
            f.link_id or "-", _qty(f.link_qty), _qty(f.held if f.excess is None else f.excess), f.detail,
        )  # fmt: skip
    counts = ", ".join(f"{kind} {n}" for kind, n in report.counts().items() if n)
    verdict = "clean" if report.clean else f"{len(report.remaining)} to fix"
    table.caption = f"{report.subscriptions} subscription(s) compared: {counts or 'nothing found'} ({verdict})"
    return table


def render_repairs(report: Report) -> Table:
    """What ``--repair`` did."""
    table = Table(title="repairs", expand=False)
    for header in ("subscription", "link", "kind", "action", "qty", "order", "detail"):
        table.add_column(header)
    for r in report.repairs:
        table.add_row(r.subscription_id, r.link_id, r.kind.value, r.action.value, f"{r.qty:f}", r.intent_id or "-",
                      r.detail)  # fmt: skip
    return table


def _qty(value: object) -> str:
    return "-" if value is None else f"{value:f}"
