"""Account statements: one linked account over one calendar month (UTC), as CSV or PDF.

A statement is built from the journal, so it adds up by construction: the opening cash is the
balance of the account's cash account (:func:`brokerlink.ledger.chart.cash`) before the period, each
line is one posting to it in the period (fills' P&L, commissions, deposits, withdrawals, fees settled
in cash), and the closing cash is the opening plus the lines; :func:`build_statement` checks it
against the journal's own balance at the end and refuses to render a statement that does not match.
Beside the cash lines it lists the period's fills (trades, informational: their cash effect is in the
postings) and the owner's fee postings, and the opening and closing equity from the equity snapshots
with the period's equity curve (drawn in the PDF with plain lines).
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from decimal import Decimal
from itertools import pairwise

import msgspec
from fpdf import FPDF
from fpdf.enums import XPos, YPos
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.models import Account, Fill
from brokerlink.kit.errors import InvalidInput
from brokerlink.ledger import chart
from brokerlink.store.repositories.stats import EquitySnapshot, PostingLine, StatsRepository

_ZERO = Decimal(0)
_PERIOD = re.compile(r"(\d{4})-(\d{2})")
_FEE_PREFIXES = ("expenses:fees:", "income:fees:")


class StatementLine(msgspec.Struct, frozen=True, kw_only=True):
    """One posting to the account's cash: ``amount`` is debit minus credit, ``balance`` the running cash."""

    occurred_at: datetime
    entry_id: str
    kind: str
    description: str
    debit: Decimal
    credit: Decimal
    amount: Decimal
    balance: Decimal


class Statement(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a statement shows; ``opening_cash + sum(line.amount) == closing_cash`` always holds."""

    account_id: str
    account_name: str
    currency: str
    period: str
    start: datetime
    end: datetime
    opening_cash: Decimal
    closing_cash: Decimal
    total_debits: Decimal
    total_credits: Decimal
    lines: list[StatementLine]
    trades: list[Fill]
    fees: list[PostingLine]
    opening_equity: Decimal | None
    closing_equity: Decimal | None
    curve: list[EquitySnapshot]

    @property
    def net_change(self) -> Decimal:
        """What the period's lines add up to."""
        return self.total_debits - self.total_credits


def parse_period(period: str) -> tuple[datetime, datetime]:
    """``"2026-11"`` -> the month's UTC start and the next month's start; 422 for anything else."""
    match = _PERIOD.fullmatch(period)
    if match is None or not 1 <= int(match.group(2)) <= 12:
        raise InvalidInput("period must be a month, YYYY-MM", extra={"field": "period"})
    year, month = int(match.group(1)), int(match.group(2))
    if year < 1970:
        raise InvalidInput("period must be 1970-01 or later", extra={"field": "period"})
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC) if month == 12 else datetime(year, month + 1, 1, tzinfo=UTC)
    return start, end


async def build_statement(session: AsyncSession, account: Account, period: str) -> Statement:
    """The account's statement for ``period`` (``YYYY-MM``), in the account's currency."""
    start, end = parse_period(period)
    repo = StatsRepository(session)
    code = chart.cash(account.id)
    opening = await repo.posting_total(code, account.currency, before=start)
    balance = opening
    lines: list[StatementLine] = []
    total_debit = total_credit = _ZERO
    for posting in await repo.postings(code, account.currency, since=start, until=end):
        amount = posting.debit - posting.credit
        balance += amount
        total_debit += posting.debit
        total_credit += posting.credit
        lines.append(
            StatementLine(
                occurred_at=posting.occurred_at, entry_id=posting.entry_id, kind=posting.kind,
                description=posting.description, debit=posting.debit, credit=posting.credit,
                amount=amount, balance=balance,
            )
        )  # fmt: skip
    closing = await repo.posting_total(code, account.currency, before=end)
    if opening + total_debit - total_credit != closing:  # pragma: no cover - a journal written while we read
        raise RuntimeError(f"statement of {account.id} for {period} does not add up; read it again")
    opening_snapshot = await repo.last_before(account.id, start)
    closing_snapshot = await repo.last_before(account.id, end)
    return Statement(
        account_id=account.id,
        account_name=account.name,
        currency=account.currency,
        period=period,
        start=start,
        end=end,
        opening_cash=opening,
        closing_cash=closing,
        total_debits=total_debit,
        total_credits=total_credit,
        lines=lines,
        trades=await repo.fills_for_account(account.id, since=start, until=end),
        fees=await repo.postings_of_owner(account.user_id, _FEE_PREFIXES, since=start, until=end),
        opening_equity=None if opening_snapshot is None else opening_snapshot.equity,
        closing_equity=None if closing_snapshot is None else closing_snapshot.equity,
        curve=await repo.series(account.id, since=start, until=end),
    )


def _d(value: Decimal | None) -> str:
    """A Decimal as fixed-point text (never ``1E+3``); empty for None."""
    return "" if value is None else format(value, "f")


def _t(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def to_csv(statement: Statement) -> str:
    """The statement as CSV: a header block, then the cash lines, trades and fees, each with its header row."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    s = statement
    w.writerow(["statement", s.account_id, s.account_name, s.currency, s.period])
    w.writerow(["period_start", _t(s.start)])
    w.writerow(["period_end", _t(s.end)])
    w.writerow(["opening_cash", _d(s.opening_cash)])
    w.writerow(["opening_equity", _d(s.opening_equity)])
    w.writerow([])
    w.writerow(["section", "cash"])
    w.writerow(["occurred_at", "entry_id", "kind", "description", "debit", "credit", "amount", "balance"])
    for line in s.lines:
        w.writerow(
            [_t(line.occurred_at), line.entry_id, line.kind, line.description,
             _d(line.debit), _d(line.credit), _d(line.amount), _d(line.balance)]
        )  # fmt: skip
    w.writerow(["total", "", "", "", _d(s.total_debits), _d(s.total_credits), _d(s.net_change), ""])
    w.writerow(["closing_cash", _d(s.closing_cash)])
    w.writerow(["closing_equity", _d(s.closing_equity)])
    w.writerow([])
    w.writerow(["section", "trades"])
    w.writerow(["ts", "trade_id", "symbol", "side", "qty", "price", "fee", "fee_currency"])
    for fill in s.trades:
        w.writerow(
            [_t(fill.ts), fill.trade_id, fill.symbol, fill.side.value, _d(fill.qty), _d(fill.price),
             _d(fill.fee), fill.fee_currency or ""]
        )  # fmt: skip
    w.writerow([])
    w.writerow(["section", "fees"])
    w.writerow(["occurred_at", "entry_id", "account", "description", "currency", "debit", "credit"])
    for fee in s.fees:
        w.writerow(
            [_t(fee.occurred_at), fee.entry_id, fee.account, fee.description, fee.currency,
             _d(fee.debit), _d(fee.credit)]
        )  # fmt: skip
    return out.getvalue()


def _latin(text: str) -> str:
    """The PDF's core fonts speak Latin-1: anything else becomes '?'."""
    return text.encode("latin-1", "replace").decode("latin-1")


def _chart(pdf: FPDF, curve: list[EquitySnapshot], *, x: float, y: float, w: float, h: float) -> None:
    """The equity curve as line segments in a framed box; a note instead when there is nothing to draw."""
    pdf.set_draw_color(0, 0, 0)
    pdf.rect(x, y, w, h)
    if len(curve) < 2:
        pdf.set_xy(x + 2, y + h / 2 - 3)
        pdf.cell(w - 4, 6, "Not enough equity samples in the period for a chart.")
        return
    values = [p.equity for p in curve]
    low, high = min(values), max(values)
    span = high - low or Decimal(1)
    t0, t1 = curve[0].ts, curve[-1].ts
    seconds = (t1 - t0).total_seconds() or 1.0

    def at(point: EquitySnapshot) -> tuple[float, float]:
        # Floats here are drawing coordinates on the page, not money.
        px = x + 2 + (w - 4) * (point.ts - t0).total_seconds() / seconds
        py = y + h - 2 - (h - 4) * float((point.equity - low) / span)
        return px, py

    pdf.set_draw_color(20, 80, 160)
    pdf.set_line_width(0.4)
    for a, b in pairwise(curve):
        (x1, y1), (x2, y2) = at(a), at(b)
        pdf.line(x1, y1, x2, y2)
    pdf.set_line_width(0.2)
    pdf.set_draw_color(0, 0, 0)
    pdf.set_font("Helvetica", size=7)
    pdf.set_xy(x, y - 4)
    pdf.cell(w, 4, _latin(f"equity {_d(low)} .. {_d(high)} {curve[-1].currency}"))


def to_pdf(statement: Statement) -> bytes:
    """The statement as a PDF (uncompressed, so its text can be searched): totals, lines, trades, fees, chart."""
    s = statement
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.compress = False
    pdf.set_title(_latin(f"Statement {s.account_id} {s.period}"))
    pdf.add_page()
    pdf.set_font("Helvetica", style="B", size=14)
    pdf.cell(0, 8, _latin(f"Statement {s.period}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Helvetica", size=9)
    rows = [
        f"Account: {s.account_id} ({s.account_name})",
        f"Period: {_t(s.start)} to {_t(s.end)} (UTC)",
        f"Currency: {s.currency}",
        f"Opening cash: {_d(s.opening_cash)}",
        f"Total debits: {_d(s.total_debits)}   Total credits: {_d(s.total_credits)}   Net: {_d(s.net_change)}",
        f"Closing cash: {_d(s.closing_cash)}",
        f"Opening equity: {_d(s.opening_equity) or 'n/a'}   Closing equity: {_d(s.closing_equity) or 'n/a'}",
    ]
    for row in rows:
        pdf.cell(0, 5, _latin(row), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(6)
    _chart(pdf, s.curve, x=pdf.l_margin, y=pdf.get_y(), w=pdf.epw, h=50)
    pdf.set_y(pdf.get_y() + 54)
    pdf.set_font("Helvetica", style="B", size=10)
    pdf.cell(0, 6, "Cash", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Helvetica", size=7)
    for line in s.lines:
        text = f"{_t(line.occurred_at)[:19]}  {line.kind[:12]:<12}  {_d(line.amount):>16}  {_d(line.balance):>16}  "
        pdf.cell(0, 4, _latin(text + line.description[:60]), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Helvetica", style="B", size=10)
    pdf.cell(0, 6, f"Trades ({len(s.trades)})", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Helvetica", size=7)
    for fill in s.trades:
        text = (
            f"{_t(fill.ts)[:19]}  {fill.symbol:<10} {fill.side.value:<4} {_d(fill.qty):>12} @ {_d(fill.price):<12} "
            f"fee {_d(fill.fee)} {fill.fee_currency or ''}"
        )
        pdf.cell(0, 4, _latin(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Helvetica", style="B", size=10)
    pdf.cell(0, 6, f"Fees ({len(s.fees)})", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Helvetica", size=7)
    for fee in s.fees:
        text = f"{_t(fee.occurred_at)[:19]}  {fee.account:<40} {_d(fee.debit - fee.credit):>14} {fee.currency}"
        pdf.cell(0, 4, _latin(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return bytes(pdf.output())
