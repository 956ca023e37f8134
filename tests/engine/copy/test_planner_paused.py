"""The planner and a follower symbol paused after repeated refusals: no opens or increases in it, closes always.

The scenarios use the planner scenarios' follower (EUR/USD at a broker whose step is 0.01); the
property compares, for any provider move, status and link, the plan with the symbol paused against
the plan without: the closing orders are exactly the same, and the only difference is that no
opening order is planned in the paused symbol.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from brokerlink.domain.copy import IntentAction, SubscriptionStatus
from brokerlink.domain.enums import Side
from brokerlink.engine.copy import SkipReason
from brokerlink.engine.copy.planner import Plan
from tests.engine.copy.test_planner_scenarios import follower, link, plan, signal

D = Decimal
PAUSED = frozenset({"EUR/USD"})
OPENING = (IntentAction.OPEN, IntentAction.INCREASE)
CLOSING = (IntentAction.REDUCE, IntentAction.CLOSE)


def _skip(result: Plan) -> SkipReason | None:
    return None if result.skip is None else result.skip.reason


def test_an_open_in_a_paused_symbol_is_skipped_with_symbol_paused() -> None:
    result = plan(signal("0", "0.50"), follower(paused_symbols=PAUSED))
    assert result.orders == ()
    assert _skip(result) is SkipReason.SYMBOL_PAUSED
    assert result.skip is not None
    assert "EUR/USD" in result.skip.detail


def test_an_increase_in_a_paused_symbol_is_skipped() -> None:
    result = plan(signal("0.50", "0.80"), follower(link=link(Side.BUY, "0.50"), paused_symbols=PAUSED))
    assert (result.orders, _skip(result)) == ((), SkipReason.SYMBOL_PAUSED)


def test_reduce_and_close_in_a_paused_symbol_go_through() -> None:
    held = link(Side.BUY, "0.50")
    reduced = plan(signal("1.00", "0.50"), follower(link=held, paused_symbols=PAUSED))
    assert [(o.action, o.side, o.qty) for o in reduced.orders] == [(IntentAction.REDUCE, Side.SELL, D("0.25"))]
    assert reduced.skip is None
    closed = plan(signal("1.00", "0"), follower(link=held, paused_symbols=PAUSED))
    assert [(o.action, o.qty) for o in closed.orders] == [(IntentAction.CLOSE, D("0.50"))]
    assert closed.skip is None


def test_a_reversal_in_a_paused_symbol_closes_and_does_not_open_the_other_side() -> None:
    result = plan(signal("0.50", "-0.30"), follower(link=link(Side.BUY, "0.50"), paused_symbols=PAUSED))
    assert [(o.action, o.side, o.qty) for o in result.orders] == [(IntentAction.CLOSE, Side.SELL, D("0.50"))]
    assert _skip(result) is SkipReason.SYMBOL_PAUSED


def test_another_paused_symbol_changes_nothing() -> None:
    result = plan(signal("0", "0.50"), follower(paused_symbols=frozenset({"GBP/USD"})))
    assert [(o.action, o.qty) for o in result.orders] == [(IntentAction.OPEN, D("0.50"))]


def test_status_skips_come_before_the_symbol_pause() -> None:
    # A paused subscription says "paused", not "symbol_paused": the status is the follower's own choice.
    result = plan(signal("0", "0.50"), follower(status=SubscriptionStatus.PAUSED, paused_symbols=PAUSED))
    assert _skip(result) is SkipReason.PAUSED


_LOTS = st.integers(min_value=-300, max_value=300).map(lambda n: D(n).scaleb(-2))


@given(
    before=_LOTS,
    after=_LOTS,
    held=st.integers(min_value=0, max_value=300).map(lambda n: D(n).scaleb(-2)),
    status=st.sampled_from(
        [SubscriptionStatus.ACTIVE, SubscriptionStatus.ACTIVE, SubscriptionStatus.PAUSED, SubscriptionStatus.CLOSE_ONLY]
    ),
)
def test_pausing_the_symbol_removes_exactly_the_opening_orders(
    before: Decimal, after: Decimal, held: Decimal, status: SubscriptionStatus
) -> None:
    if before == after:
        return  # not a fill
    side = Side.BUY if before > 0 else Side.SELL
    has_link = before != 0 and held > 0
    base = follower(status=status, link=link(side, format(held, "f")) if has_link else None)
    free = plan(signal(format(before, "f"), format(after, "f")), base)
    paused = plan(
        signal(format(before, "f"), format(after, "f")),
        follower(status=status, link=base.link, paused_symbols=PAUSED),
    )
    closes = [o for o in free.orders if o.action in CLOSING]
    # Every close or reduce goes out exactly as without the pause; nothing opens in the paused symbol.
    assert list(paused.orders) == closes
    assert all(o.action not in OPENING for o in paused.orders)
    if any(o.action in OPENING for o in free.orders):
        assert _skip(paused) is SkipReason.SYMBOL_PAUSED
    elif free.skip is None or free.skip.reason in (SkipReason.PAUSED, SkipReason.CLOSE_ONLY):
        assert paused.skip == free.skip  # nothing opening, or held back before the symbol is looked at
    else:
        assert _skip(paused) is SkipReason.SYMBOL_PAUSED  # a later guard would have skipped it anyway
