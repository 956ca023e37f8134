"""Joining a provider's open positions (``joining._plan_existing``): the policy sees the provider's entry
as stored, never the follower's own price standing in for it.

A follower can subscribe between a provider's fill and the refresh that stores the provider's
position with its entry price (the links service re-reads holdings just after fills). Until then
the entry is unknown: ``if_not_worse`` cannot compare and skips for want of a price, ``market``
sizes at the follower's price, ``skip`` skips by policy.
"""

from __future__ import annotations

from decimal import Decimal

from brokerlink.domain.copy import IntentAction
from brokerlink.domain.enums import Side
from brokerlink.domain.models import Quote
from brokerlink.engine.copy import CopySettings, OnSubscribe, SizingMode, SkipReason
from brokerlink.engine.copy.joining import _plan_existing
from brokerlink.engine.copy.planner import Plan
from brokerlink.engine.copy.reasons import Skip
from tests.engine.copy.test_planner_scenarios import MONDAY_NOON, follower, quote

D = Decimal


def _join(policy: OnSubscribe, entry: Decimal | None, shown: Quote | None) -> tuple[Skip | None, Plan | None]:
    settings = CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=D(1), on_subscribe=policy)
    return _plan_existing(
        follower(settings), "EUR/USD", D("0.30"), entry, D(100_000), quote_of=lambda _symbol: shown, now=MONDAY_NOON
    )


def _opened(result: tuple[Skip | None, Plan | None]) -> tuple[IntentAction, Side, Decimal]:
    skip, plan = result
    assert skip is None, skip
    assert plan is not None
    assert plan.skip is None, plan.skip
    assert len(plan.orders) == 1, plan.orders
    order = plan.orders[0]
    return order.action, order.side, order.qty


def _skipped(result: tuple[Skip | None, Plan | None]) -> SkipReason:
    skip, _ = result
    assert skip is not None, result
    return skip.reason


def test_if_not_worse_without_the_providers_entry_skips_for_want_of_a_price() -> None:
    # The follower's ask (1.10000) is there; the provider's entry is not stored yet (None, or a
    # position stored flat with 0). Comparing the follower's price with itself would pass anything.
    assert _skipped(_join(OnSubscribe.IF_NOT_WORSE, None, quote())) is SkipReason.NO_PRICE
    assert _skipped(_join(OnSubscribe.IF_NOT_WORSE, D(0), quote())) is SkipReason.NO_PRICE


def test_if_not_worse_compares_the_followers_price_with_the_stored_entry() -> None:
    # A buy at 1.10000 against an entry of 1.09000 is worse; against 1.11000 it is not.
    assert _skipped(_join(OnSubscribe.IF_NOT_WORSE, D("1.09000"), quote())) is SkipReason.WORSE_THAN_ENTRY
    assert _opened(_join(OnSubscribe.IF_NOT_WORSE, D("1.11000"), quote())) == (IntentAction.OPEN, Side.BUY, D("0.30"))


def test_market_sizes_at_the_followers_price_until_the_entry_is_stored() -> None:
    assert _opened(_join(OnSubscribe.MARKET, None, quote())) == (IntentAction.OPEN, Side.BUY, D("0.30"))
    # Neither an entry nor a quote: nothing to size with.
    assert _skipped(_join(OnSubscribe.MARKET, None, None)) is SkipReason.NO_PRICE


def test_skip_skips_by_policy_with_or_without_prices() -> None:
    assert _skipped(_join(OnSubscribe.SKIP, None, None)) is SkipReason.ON_SUBSCRIBE_SKIP
    assert _skipped(_join(OnSubscribe.SKIP, D("1.10000"), quote())) is SkipReason.ON_SUBSCRIBE_SKIP
