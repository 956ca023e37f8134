"""The fee arithmetic and the settlement periods, checked by hand (derivations in the comments)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerlink.kit.errors import InvalidInput
from brokerlink.ledger.fee_math import (
    deposit_hwm,
    hwm_after_settlement,
    management_day,
    minor_unit,
    notional,
    performance_fee,
    round_fee,
    scale_hwm,
    split,
    volume_per_lot,
    volume_per_million,
)
from brokerlink.ledger.fee_periods import next_period_start, parse_period, period_of, previous_period
from brokerlink.ledger.fees import FeeConfig, FeeTerms, check_terms
from brokerlink.store.models_fees import VolumeBasis

D = Decimal


def test_performance_fee_only_above_the_mark() -> None:
    # 20% of (11000 - 10000) = 200; at or below the mark nothing.
    assert performance_fee(D(11000), D(10000), D(20)) == D(200)
    assert performance_fee(D(10000), D(10000), D(20)) == 0
    assert performance_fee(D(9500), D(11000), D(20)) == 0


def test_mark_moves_up_never_down_at_settlement() -> None:
    assert hwm_after_settlement(D(11000), D(10000)) == D(11000)
    assert hwm_after_settlement(D(9500), D(11000)) == D(11000)


def test_withdrawal_scales_the_mark_and_rounds_up() -> None:
    # 1900 out of 9500 is 20%: the mark 11000 keeps 80% = 8800.
    assert scale_hwm(D(11000), D(9500), D(1900), "USD") == D("8800.00")
    # 1 out of 3 leaves 2/3 of 100 = 66.666... -> 66.67 (up: a higher mark is the follower's side).
    assert scale_hwm(D(100), D(3), D(1), "USD") == D("66.67")
    # Everything withdrawn: the mark is zero.
    assert scale_hwm(D(100), D(50), D(50), "USD") == 0


def test_deposit_raises_the_mark_by_the_amount() -> None:
    assert deposit_hwm(D("10100"), D(2000)) == D(12100)


def test_management_day_is_a_365th_of_the_yearly_rate() -> None:
    # 10000 x 2% / 365 = 0.547945205479... -> 0.54794520 (8 places, down).
    assert management_day(D(10000), D(2)) == D("0.54794520")
    assert management_day(D(-5), D(2)) == 0


def test_volume_fees() -> None:
    # 2.5 lots x 3 = 7.5
    assert volume_per_lot(D("2.5"), D(3)) == D("7.5")
    # 1.5 lots x 100000 x 1.1 = 165000 notional; 0.165 million x 25 = 4.125
    assert notional(D("1.5"), D("1.1"), D(100000)) == D(165000)
    assert volume_per_million(D(165000), D(25)) == D("4.125")


def test_fees_round_down_to_the_minor_unit() -> None:
    assert round_fee(D("16.4383560"), "USD") == D("16.43")
    assert round_fee(D("16.999"), "JPY") == D(16)
    assert round_fee(D("0.123456789"), "BTC") == D("0.12345678")
    assert round_fee(D(-1), "USD") == D("0.00")
    assert minor_unit("EUR") == D("0.01")


def test_split_platform_rounds_down_provider_gets_the_rest() -> None:
    # 20% of 16.43 = 3.286 -> platform 3.28, provider 16.43 - 3.28 = 13.15
    assert split(D("16.43"), D(20), "USD") == (D("13.15"), D("3.28"))


@given(
    amount=st.decimals(min_value=0, max_value=10**9, places=2),
    share=st.integers(min_value=0, max_value=100),
)
def test_split_always_adds_up(amount: Decimal, share: int) -> None:
    provider, platform = split(amount, D(share), "USD")
    assert provider + platform == amount
    assert provider >= 0
    assert platform >= 0


def test_periods() -> None:
    nov = period_of("monthly", datetime(2026, 11, 21, 13, 0, tzinfo=UTC))
    assert (nov.key, nov.start, nov.end) == (
        "2026-11",
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
    )
    assert len(nov.days()) == 30
    assert nov.days()[0] == date(2026, 11, 1)
    assert previous_period("monthly", nov).key == "2026-10"
    assert period_of("monthly", datetime(2026, 12, 31, 23, 59, tzinfo=UTC)).end == datetime(2027, 1, 1, tzinfo=UTC)
    q4 = period_of("quarterly", datetime(2026, 11, 21, tzinfo=UTC))
    assert (q4.key, q4.start, q4.end) == (
        "2026-Q4",
        datetime(2026, 10, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert next_period_start("monthly", datetime(2026, 11, 15, tzinfo=UTC)) == datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_period("monthly", "2026-11") == nov
    assert parse_period("quarterly", "2026-Q4") == q4
    with pytest.raises(InvalidInput) as caught:
        parse_period("monthly", "2026-13")
    assert caught.value.extra["field"] == "period"


@pytest.mark.parametrize(
    ("terms", "field"),
    [
        (FeeTerms(performance_pct=D(51)), "performance_pct"),
        (FeeTerms(management_pct=D("5.01")), "management_pct"),
        (FeeTerms(volume_fee=D("10.5")), "volume_fee"),
        (FeeTerms(volume_fee=D(101), volume_basis=VolumeBasis.MILLION), "volume_fee"),
        (FeeTerms(performance_pct=D(-1)), "performance_pct"),
        (FeeTerms(volume_currency="usd"), "volume_currency"),
    ],
)
def test_limits_refuse_naming_the_field(terms: FeeTerms, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_terms(terms, FeeConfig())
    assert caught.value.extra["field"] == field


def test_limits_accept_the_maximum() -> None:
    check_terms(FeeTerms(performance_pct=D(50), management_pct=D(5), volume_fee=D(10)), FeeConfig())
    check_terms(FeeTerms(volume_fee=D(100), volume_basis=VolumeBasis.MILLION), FeeConfig())


@given(
    equities=st.lists(st.decimals(min_value=1, max_value=10**6, places=2), min_size=1, max_size=24),
    start=st.decimals(min_value=1, max_value=10**6, places=2),
)
def test_a_gain_is_charged_once(equities: list[Decimal], start: Decimal) -> None:
    # Settling period after period without flows, the follower pays 20% of the highest equity's gain over
    # the start, once, whatever the path (each fee rounded down, so at most a cent less per period).
    mark, paid = start, D(0)
    for equity in equities:
        paid += round_fee(performance_fee(equity, mark, D(20)), "USD")
        mark = hwm_after_settlement(equity, mark)
    owed = (max([*equities, start]) - start) * D("0.2")
    assert owed - D("0.01") * len(equities) <= paid <= owed
    assert mark == max([*equities, start])
