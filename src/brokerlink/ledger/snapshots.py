"""Equity snapshots: periodic samples of every linked account and every live subscription.

The statistics need a history of equity, and the store keeps only the latest balance. The
:class:`EquitySampler` (started by the server) writes one sample per series every
``stats_snapshot_every_s`` seconds:

- **cash**: the account's balance as last reported by the broker (its first currency, as the copy
  engine reads it);
- **equity**: cash plus the unrealized P&L of each open position, marked at its close-out price (the
  bid for a long, the ask for a short) from the account's live quote, or the broker's current quote
  over REST. When a position cannot be marked in the account's currency (no quote, an instrument
  quoted in another currency, an unknown instrument), the broker's own last reported equity is used
  for the whole account instead: it is stale between fills, but never mixes currencies;
- **net flow**: deposits minus withdrawals booked in the journal (the account's owner-capital
  account, :func:`brokerlink.ledger.chart.owner_capital`) after the series' previous sample. A
  series' first sample has none: there is nothing before it to neutralise.

A subscription's series measures the subscription alone, exactly as its fees do (ADR 0021,
:func:`brokerlink.ledger.fee_equity.subscription_equity`): its capital (start equity plus its recorded
deposits minus withdrawals) plus the P&L of its own copies, open copies marked at the same quotes as
the account. Its cash is that without the unrealized part, and its flows are its recorded deposits
and withdrawals since its previous sample. A subscription whose equity cannot be valued in the
account's currency is not sampled that round (nothing is better than a wrong number).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.brokers.base import BrokerAdapter, BrokerError, QuoteFeed
from brokerlink.domain.models import Position, Quote
from brokerlink.kit.clock import Clock
from brokerlink.kit.periodic import Periodic
from brokerlink.ledger import chart
from brokerlink.ledger.fee_equity import Marks, subscription_equity
from brokerlink.logs import get_logger
from brokerlink.store.db import Database
from brokerlink.store.models_fees import FlowKind
from brokerlink.store.models_stats import SnapshotKind
from brokerlink.store.repositories.fees import FeeRepository
from brokerlink.store.repositories.positions import BalanceRepository, PositionRepository
from brokerlink.store.repositories.stats import EquitySnapshot, SampledAccount, StatsRepository

_log = get_logger("brokerlink.ledger.snapshots")
_ZERO = Decimal(0)

MarkOf = Callable[[str, str], Awaitable[Quote | None]]
"""``await mark(account_id, symbol)``: the quote to mark the account's position in ``symbol`` at, if any."""


class Measured:
    """An account's cash and equity at one instant, in its currency, and the quotes its positions were marked at."""

    __slots__ = ("cash", "currency", "equity", "quotes")

    def __init__(self, cash: Decimal, equity: Decimal, currency: str, quotes: dict[str, Quote] | None = None) -> None:
        self.cash = cash
        self.equity = equity
        self.currency = currency
        self.quotes = quotes or {}


def close_out_price(position: Position, quote: Quote) -> Decimal:
    """Where the position would close now: a long sells at the bid, a short buys at the ask."""
    return quote.bid if position.qty > 0 else quote.ask


def marked_equity(
    cash: Decimal,
    currency: str,
    positions: Sequence[Position],
    quotes: dict[str, Quote],
    terms: dict[str, tuple[Decimal, str, str]],
) -> Decimal | None:
    """Cash plus each open position's ``qty x (close-out price - average price) x contract size``.

    None when any open position cannot be marked in ``currency``: no quote, an unknown instrument,
    or one quoted in another currency (the caller falls back to the broker's equity).
    """
    equity = cash
    for position in positions:
        if position.is_flat:
            continue
        quote = quotes.get(position.symbol)
        term = terms.get(position.symbol)
        if quote is None or term is None or term[1] != currency:
            return None
        contract_size = term[0]
        equity += position.qty * (close_out_price(position, quote) - position.avg_price) * contract_size
    return equity


async def measure(session: AsyncSession, account: SampledAccount, mark: MarkOf | None) -> Measured | None:
    """The account's cash and marked equity now; None before the broker has reported a balance."""
    balances = await BalanceRepository(session).list_for_account(account.account_id)
    if not balances:
        return None
    balance = balances[0]
    positions = await PositionRepository(session).list_for_account(account.account_id)
    if not positions:
        return Measured(balance.cash, balance.cash, balance.currency)
    quotes: dict[str, Quote] = {}
    if mark is not None:
        for position in positions:
            quote = await mark(account.account_id, position.symbol)
            if quote is not None:
                quotes[position.symbol] = quote
    terms = await StatsRepository(session).instrument_terms(account.broker, [p.symbol for p in positions])
    equity = marked_equity(balance.cash, balance.currency, positions, quotes, terms)
    return Measured(balance.cash, balance.equity if equity is None else equity, balance.currency, quotes)


class LiveQuotes(Protocol):
    """A connected account as the links service holds it: streamed quotes, and its adapter."""

    adapter: BrokerAdapter

    def quote(self, symbol: str) -> Quote | None:
        """The latest streamed quote, if any."""
        ...


def live_marks(is_live: Callable[[str], bool], live: Callable[[str], LiveQuotes]) -> MarkOf:
    """Marks from the running broker links: the streamed quote, else the broker's quote over REST.

    Takes the links service's ``is_live`` and ``live`` (the ledger does not import the engine).
    """

    async def mark(account_id: str, symbol: str) -> Quote | None:
        if not is_live(account_id):
            return None
        account = live(account_id)
        quote = account.quote(symbol)
        if quote is not None or not isinstance(account.adapter, QuoteFeed):
            return quote
        try:
            return await account.adapter.quote_snapshot(symbol)
        except (BrokerError, OSError) as exc:
            _log.info("mark_unavailable", account_id=account_id, symbol=symbol, error=str(exc))
            return None

    return mark


def _fixed_marks(quotes: dict[str, Quote]) -> Marks:
    """The fee equity's marks from quotes already fetched: the close-out side of each."""

    def marks(_account_id: str, symbol: str, signed_qty: Decimal) -> Decimal | None:
        quote = quotes.get(symbol)
        if quote is None:
            return None
        return quote.bid if signed_qty > 0 else quote.ask

    return marks


async def _subscription_flow(session: AsyncSession, subscription_id: str, since: datetime, until: datetime) -> Decimal:
    """Deposits minus withdrawals recorded for the subscription with ``since <= occurred_at < until``
    (what its equity at ``until`` counts and its equity at ``since`` did not)."""
    total = _ZERO
    for flow in await FeeRepository(session).list_flows(subscription_id, until=until):
        if flow.occurred_at >= since:
            total += flow.amount if flow.kind is FlowKind.DEPOSIT else -flow.amount
    return total


async def take_snapshots(session: AsyncSession, *, now: datetime, mark: MarkOf | None = None) -> int:
    """Sample every account and live subscription at ``now``, in the caller's transaction. Returns rows written."""
    repo = StatsRepository(session)
    accounts = await repo.sampled_accounts()
    subscriptions = await repo.live_subscriptions()
    latest = await repo.latest_many([a.account_id for a in accounts] + [s.id for s in subscriptions])
    measured: dict[str, Measured] = {}
    snapshots: list[EquitySnapshot] = []

    async def flow(account_id: str) -> Decimal:
        previous = latest.get(account_id)
        if previous is None:
            return _ZERO
        return await repo.capital_flow(chart.owner_capital(account_id), after=previous.ts, until=now)

    for account in accounts:
        found = await measure(session, account, mark)
        if found is None:
            continue
        measured[account.account_id] = found
        snapshots.append(
            EquitySnapshot(
                series=account.account_id, kind=SnapshotKind.ACCOUNT, account_id=account.account_id,
                currency=found.currency, cash=found.cash, equity=found.equity,
                net_flow=await flow(account.account_id), ts=now,
            )
        )  # fmt: skip
    for subscription in subscriptions:
        found = measured.get(subscription.account_id)
        if found is None:  # the follower's broker has not reported a balance yet
            continue
        valued = await subscription_equity(session, subscription, at=now, marks=_fixed_marks(found.quotes))
        if valued.equity is None:
            _log.info("subscription_not_valued", subscription_id=subscription.id, detail=valued.detail)
            continue
        previous = latest.get(subscription.id)
        flows = _ZERO if previous is None else await _subscription_flow(session, subscription.id, previous.ts, now)
        snapshots.append(
            EquitySnapshot(
                series=subscription.id, kind=SnapshotKind.SUBSCRIPTION, account_id=subscription.account_id,
                subscription_id=subscription.id, currency=valued.currency,
                cash=valued.capital + valued.realized_pnl - valued.commissions, equity=valued.equity,
                net_flow=flows, ts=now,
            )
        )  # fmt: skip
    return await repo.add_many(snapshots)


class EquitySampler:
    """Writes snapshots every ``every_s`` seconds while the server runs (one transaction per round)."""

    def __init__(self, database: Database, clock: Clock, *, every_s: float, mark: MarkOf | None = None) -> None:
        if every_s <= 0:
            raise ValueError("every_s must be positive")
        self.database = database
        self.clock = clock
        self.every_s = every_s
        self.mark = mark
        # The first round waits too: at startup the links are still reconnecting.
        self.schedule = Periodic("equity_sample", every_s, self.sample)

    def start(self) -> None:
        """Start sampling in the background (the first round after ``every_s``)."""
        self.schedule.start()

    async def stop(self) -> None:
        """Stop sampling; a round under way is cancelled (it commits nothing)."""
        await self.schedule.stop()

    async def sample(self) -> int:
        """One round now: every account and live subscription. Returns rows written."""
        async with self.database.session() as session:
            written = await take_snapshots(session, now=self.clock.now(), mark=self.mark)
            await session.commit()
        return written
