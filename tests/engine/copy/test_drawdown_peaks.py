"""The drawdown guard measures from the period's peak equity, which the engine tracks and stores.

The peak is read at every signal and sampled between signals (``sample_peaks``), so a high reached
and lost between two signals still counts. Stored balances stand for the follower's broker here.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from brokerlink.bus.memory import MemoryEventBus
from brokerlink.domain.copy import StrategyVisibility, Subscription
from brokerlink.domain.models import Balance
from brokerlink.engine.copy.guards import period_start
from brokerlink.engine.copy.manage import create_strategy, subscribe
from brokerlink.engine.copy.service import CopyEngine
from brokerlink.engine.copy.settings import CopySettings, DrawdownPeriod, SizingMode
from brokerlink.kit.clock import Clock, SystemClock
from brokerlink.store.db import Database
from brokerlink.store.repositories.copy_equity_peaks import CopyEquityPeakRepository
from brokerlink.store.repositories.positions import BalanceRepository
from tests.links_fixtures import LinksFactory
from tests.store.factories import make_account

D = Decimal


class FixedClock(Clock):
    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now


async def _set_equity(database: Database, account_id: str, equity: str) -> None:
    async with database.session() as session:
        await BalanceRepository(session).upsert(
            Balance(
                account_id=account_id, currency="USD", cash=D(equity), equity=D(equity), buying_power=D(equity),
                ts=SystemClock().now(),
            )
        )  # fmt: skip
        await session.commit()


async def _subscribed(database: Database, settings: CopySettings) -> Subscription:
    async with database.session() as session:
        provider, follower = await make_account(session), await make_account(session)
        await session.commit()
    async with database.session() as session:
        stg = await create_strategy(
            session, provider_user_id=provider.user_id, account_id=provider.id, name="Trend",
            visibility=StrategyVisibility.PUBLIC, now=SystemClock().now(),
        )  # fmt: skip
        sub = await subscribe(
            session, follower_user_id=follower.user_id, strategy_id=stg.id, account_id=follower.id,
            settings=settings, now=SystemClock().now(),
        )  # fmt: skip
        await session.commit()
    return sub


async def test_sampling_keeps_the_periods_high_and_a_new_period_starts_over(
    make_links: LinksFactory, database: Database, bus: MemoryEventBus
) -> None:
    guarded = CopySettings(sizing=SizingMode.MULTIPLIER, max_drawdown_pct=D(10), drawdown_period=DrawdownPeriod.DAY)
    sub = await _subscribed(database, guarded)
    unguarded = await _subscribed(database, CopySettings(sizing=SizingMode.MULTIPLIER))
    monday = datetime.fromisoformat("2026-11-23T10:00:00+00:00")
    clock = FixedClock(monday)
    engine = CopyEngine(database, bus, make_links(), clock)
    for equity, moved in (("10000", 1), ("12000", 1), ("11000", 0)):
        await _set_equity(database, sub.account_id, equity)
        await _set_equity(database, unguarded.account_id, equity)
        assert await engine.sample_peaks() == moved  # only guarded subscriptions are tracked
    async with database.session() as session:
        peaks = await CopyEquityPeakRepository(session).get_many([sub.id, unguarded.id])
    assert list(peaks) == [sub.id]
    assert (peaks[sub.id].period_start, peaks[sub.id].peak_equity) == (period_start(DrawdownPeriod.DAY, monday), 12000)

    # The follower's view at a signal: 10,800 is 10% below the day's peak (12,000): tripped.
    await _set_equity(database, sub.account_id, "10800")
    async with database.session() as session:
        follower = await engine.follower_view(BalanceRepository(session), sub, None)
    assert (follower.equity, follower.period_peak_equity) == (D(10800), D(12000))

    clock._now = datetime.fromisoformat("2026-11-24T00:00:01+00:00")  # a new day: the peak starts over
    assert await engine.sample_peaks() == 1
    async with database.session() as session:
        follower = await engine.follower_view(BalanceRepository(session), sub, None)
    assert follower.period_peak_equity == D(10800)
