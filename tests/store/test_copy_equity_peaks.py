"""The drawdown guard's peaks: one per subscription, replaced by a new high or a new period."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.store.repositories.copy_equity_peaks import CopyEquityPeakRepository, EquityPeak, next_peak
from brokerlink.store.repositories.strategies import StrategyRepository
from brokerlink.store.repositories.subscriptions import SubscriptionRepository
from tests.store.copy_factories import strategy, subscription
from tests.store.factories import NOW, make_account

D = Decimal
DAY = NOW.replace(hour=0, minute=0, second=0, microsecond=0)


def test_next_peak_keeps_the_high_and_starts_over_each_period() -> None:
    first = next_peak(None, "sub_1", DAY, D("10000.50"))
    assert first == EquityPeak(subscription_id="sub_1", period_start=DAY, peak_equity=D("10000.50"))
    assert next_peak(first, "sub_1", DAY, D("9000")) is first  # lower: the peak stays (nothing to store)
    assert next_peak(first, "sub_1", DAY, D("10000.50")) is first  # equal: unchanged
    higher = next_peak(first, "sub_1", DAY, D("10000.51"))
    assert higher.peak_equity == D("10000.51")
    tomorrow = next_peak(higher, "sub_1", DAY + timedelta(days=1), D("9000"))
    assert (tomorrow.period_start, tomorrow.peak_equity) == (DAY + timedelta(days=1), D("9000"))


async def test_peaks_are_stored_replaced_and_read_back_exactly(session: AsyncSession) -> None:
    provider = await make_account(session)
    stg = strategy(provider)
    await StrategyRepository(session).add(stg)
    subs = [subscription(stg, await make_account(session)), subscription(stg, await make_account(session))]
    for sub in subs:
        await SubscriptionRepository(session).add(sub)
    peaks = CopyEquityPeakRepository(session)
    assert await peaks.get_many([s.id for s in subs]) == {}
    first = [EquityPeak(subscription_id=s.id, period_start=DAY, peak_equity=D("12345.678901")) for s in subs]
    await peaks.save_many(first, now=NOW)
    assert await peaks.get_many([s.id for s in subs]) == {p.subscription_id: p for p in first}
    moved = EquityPeak(subscription_id=subs[0].id, period_start=DAY + timedelta(days=1), peak_equity=D("99.5"))
    await peaks.save_many([moved], now=NOW)
    assert await peaks.get_many([subs[0].id]) == {subs[0].id: moved}
    assert (await peaks.get_many([subs[1].id]))[subs[1].id] == first[1]
