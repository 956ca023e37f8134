"""SL/TP mirroring, the pure part (ADR 0027): recognising the provider's stop-loss and take-profit,
and the follower's protective orders, with hand-checked numbers."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from brokerlink.domain.copy import IntentAction
from brokerlink.domain.enums import AssetClass, OrderStatus, OrderType, Side, TimeInForce
from brokerlink.domain.models import Instrument, Order
from brokerlink.engine.copy.protective import (
    Protection,
    ProviderLevel,
    follower_orders,
    provider_protection,
)
from brokerlink.engine.copy.reasons import SkipReason

NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)
EURUSD = "EUR/USD"
D = Decimal
ALL = frozenset(OrderType)


def _order(
    oid: str,
    side: Side,
    qty: str,
    kind: OrderType,
    *,
    limit: str | None = None,
    stop: str | None = None,
    status: OrderStatus = OrderStatus.NEW,
    filled: str = "0",
    symbol: str = EURUSD,
) -> Order:
    return Order(
        id=oid, client_order_id=f"c-{oid}", account_id="acc", symbol=symbol, side=side, qty=D(qty), type=kind,
        tif=TimeInForce.GTC, limit_price=None if limit is None else D(limit),
        stop_price=None if stop is None else D(stop), status=status, filled_qty=D(filled),
        created_at=NOW, updated_at=NOW,
    )  # fmt: skip


def _instrument(tick: str = "0.0001", step: str = "0.01", min_qty: str = "0.01") -> Instrument:
    return Instrument(
        symbol=EURUSD, venue_symbol="EURUSD", asset_class=AssetClass.FX, base="EUR", quote="USD",
        tick_size=D(tick), qty_step=D(step), min_qty=D(min_qty),
    )  # fmt: skip


# --- the provider's protective orders -------------------------------------------------------------


def test_a_long_position_s_closing_stop_is_its_stop_loss_and_closing_limit_its_take_profit() -> None:
    orders = [
        _order("sl", Side.SELL, "1.00", OrderType.STOP, stop="1.0950"),
        _order("tp", Side.SELL, "1.00", OrderType.LIMIT, limit="1.1100"),
    ]
    found = provider_protection(orders, symbol=EURUSD, position=D("1.00"), reference=D("1.1000"))
    assert found.stop_loss == ProviderLevel(order_id="sl", price=D("1.0950"), share=D(1))
    assert found.take_profit == ProviderLevel(order_id="tp", price=D("1.1100"), share=D(1))


def test_opening_side_orders_flat_positions_and_orders_that_do_not_work_are_ignored() -> None:
    orders = [
        _order("add", Side.BUY, "1", OrderType.STOP, stop="1.1050"),  # a breakout add to the long
        _order("dip", Side.BUY, "1", OrderType.LIMIT, limit="1.0900"),  # an add on a dip
        _order("pending", Side.SELL, "1", OrderType.STOP, stop="1.0950", status=OrderStatus.PENDING_NEW),
        _order("canceling", Side.SELL, "1", OrderType.STOP, stop="1.0960", status=OrderStatus.PENDING_CANCEL),
        _order("other", Side.SELL, "1", OrderType.STOP, stop="1.0950", symbol="GBP/USD"),
    ]
    assert provider_protection(orders, symbol=EURUSD, position=D(1), reference=D("1.1000")) == Protection()
    sl = [_order("sl", Side.SELL, "1", OrderType.STOP, stop="1.0950")]
    assert provider_protection(sl, symbol=EURUSD, position=D(0), reference=D("1.1000")) == Protection()


def test_prices_on_the_wrong_side_of_the_market_are_not_protection() -> None:
    orders = [
        _order("stop_above", Side.SELL, "1", OrderType.STOP, stop="1.1010"),  # would trigger at once
        _order("limit_below", Side.SELL, "1", OrderType.LIMIT, limit="1.0990"),  # marketable: a close
    ]
    assert provider_protection(orders, symbol=EURUSD, position=D(1), reference=D("1.1000")) == Protection()
    # Without a reference price (no quote), a working order is taken as it rests.
    found = provider_protection(orders, symbol=EURUSD, position=D(1))
    assert found.stop_loss is not None
    assert found.take_profit is not None


def test_under_a_short_the_buy_side_protects_and_the_nearest_level_wins() -> None:
    orders = [
        _order("far", Side.BUY, "2", OrderType.STOP, stop="1.1100"),
        _order("near", Side.BUY, "2", OrderType.STOP_LIMIT, stop="1.1050", limit="1.1060"),
        _order("tp_far", Side.BUY, "2", OrderType.LIMIT, limit="1.0800"),
        _order("tp_near", Side.BUY, "2", OrderType.LIMIT, limit="1.0900"),
    ]
    found = provider_protection(orders, symbol=EURUSD, position=D(-2), reference=D("1.1000"))
    assert found.stop_loss is not None
    assert found.stop_loss.order_id == "near"
    assert found.take_profit is not None
    assert found.take_profit.order_id == "tp_near"


def test_a_partial_stop_protects_its_share_and_an_oversized_one_only_the_position() -> None:
    half = [_order("sl", Side.SELL, "2", OrderType.STOP, stop="1.0950", filled="0")]
    found = provider_protection(half, symbol=EURUSD, position=D(4), reference=D("1.1"))
    assert found.stop_loss is not None
    assert found.stop_loss.share == D("0.5")
    # 10 working against a position of 6 (the provider reduced by market): a netting account has no
    # reduce-only, so only the position's worth counts.
    big = [_order("sl", Side.SELL, "10", OrderType.STOP, stop="1.0950")]
    found = provider_protection(big, symbol=EURUSD, position=D(6), reference=D("1.1"))
    assert found.stop_loss is not None
    assert found.stop_loss.share == D(1)


# --- the follower's protective orders -------------------------------------------------------------


PROTECTION = Protection(
    stop_loss=ProviderLevel(order_id="sl", price=D("1.09503"), share=D(1)),
    take_profit=ProviderLevel(order_id="tp", price=D("1.11007"), share=D(1)),
)


def test_same_direction_stop_and_limit_round_towards_the_market() -> None:
    desired, skips = follower_orders(
        PROTECTION, link_side=Side.BUY, link_qty=D("0.80"), reversed_direction=False,
        instrument=_instrument(), order_types=ALL,
    )  # fmt: skip
    assert skips == []
    by_action = {d.action: d for d in desired}
    sl, tp = by_action[IntentAction.STOP_LOSS], by_action[IntentAction.TAKE_PROFIT]
    # A sell stop under a long rounds up (closer: never further than the provider's 1.09503).
    assert (sl.side, sl.qty, sl.price, sl.provider_order_id) == (Side.SELL, D("0.80"), D("1.0951"), "sl")
    # A sell limit above a long rounds down (exits no later than the provider at 1.11007).
    assert (tp.side, tp.qty, tp.price, tp.provider_order_id) == (Side.SELL, D("0.80"), D("1.1100"), "tp")


def test_a_reversed_follower_takes_profit_at_the_provider_s_stop_and_stops_at_its_take_profit() -> None:
    desired, _ = follower_orders(
        PROTECTION, link_side=Side.SELL, link_qty=D("0.20"), reversed_direction=True,
        instrument=_instrument(), order_types=ALL,
    )  # fmt: skip
    by_action = {d.action: d for d in desired}
    sl, tp = by_action[IntentAction.STOP_LOSS], by_action[IntentAction.TAKE_PROFIT]
    # The follower is short: the provider's take-profit (1.11007, price rising) is where it loses:
    # a buy stop, rounded down (closer to the market).
    assert (sl.side, sl.qty, sl.price, sl.provider_order_id) == (Side.BUY, D("0.20"), D("1.1100"), "tp")
    # The provider's stop-loss (1.09503, price falling) is where it wins: a buy limit, rounded up.
    assert (tp.side, tp.qty, tp.price, tp.provider_order_id) == (Side.BUY, D("0.20"), D("1.0951"), "sl")


def test_a_partial_share_is_rounded_down_and_a_dust_share_is_skipped() -> None:
    half = Protection(stop_loss=ProviderLevel(order_id="sl", price=D("1.09"), share=D("0.5")))
    desired, _ = follower_orders(
        half, link_side=Side.BUY, link_qty=D("0.37"), reversed_direction=False,
        instrument=_instrument(), order_types=ALL,
    )  # fmt: skip
    assert [d.qty for d in desired] == [D("0.18")]  # 0.185 rounded down to the step
    tiny = Protection(stop_loss=ProviderLevel(order_id="sl", price=D("1.09"), share=D("0.01")))
    desired, skips = follower_orders(
        tiny, link_side=Side.BUY, link_qty=D("0.37"), reversed_direction=False,
        instrument=_instrument(), order_types=ALL,
    )  # fmt: skip
    assert desired == []
    assert [s.reason for s in skips] == [SkipReason.BELOW_MIN_QTY]


def test_a_broker_without_stop_orders_skips_the_stop_loss_with_a_reason() -> None:
    desired, skips = follower_orders(
        PROTECTION, link_side=Side.BUY, link_qty=D(1), reversed_direction=False, instrument=_instrument(),
        order_types=frozenset({OrderType.MARKET, OrderType.LIMIT}),
    )  # fmt: skip
    assert [d.action for d in desired] == [IntentAction.TAKE_PROFIT]
    assert [s.reason for s in skips] == [SkipReason.NO_STOP_ORDERS]
    desired, skips = follower_orders(
        PROTECTION, link_side=Side.BUY, link_qty=D(1), reversed_direction=False, instrument=_instrument(),
        order_types=frozenset({OrderType.MARKET}),
    )  # fmt: skip
    assert desired == []
    assert sorted(s.reason for s in skips) == [SkipReason.NO_LIMIT_ORDERS, SkipReason.NO_STOP_ORDERS]


def test_an_empty_link_carries_nothing() -> None:
    assert follower_orders(
        PROTECTION, link_side=Side.BUY, link_qty=D(0), reversed_direction=False, instrument=_instrument(),
        order_types=ALL,
    ) == ([], [])  # fmt: skip


# --- properties ----------------------------------------------------------------------------------

_prices = st.decimals(min_value=D("0.5"), max_value=D("2"), places=6)
_qtys = st.decimals(min_value=D("0.01"), max_value=D("50"), places=2)


@settings(max_examples=200, deadline=None)
@given(
    position=_qtys,
    long=st.booleans(),
    link_qty=st.decimals(min_value=D(0), max_value=D("100"), places=2),
    reversed_direction=st.booleans(),
    reference=_prices,
    levels=st.lists(st.tuples(st.sampled_from([OrderType.STOP, OrderType.LIMIT]), _prices, _qtys), max_size=4),
)
def test_follower_protection_never_exceeds_the_link_never_opens_and_never_stops_further(
    *,
    position: Decimal,
    long: bool,
    link_qty: Decimal,
    reversed_direction: bool,
    reference: Decimal,
    levels: list[tuple[OrderType, Decimal, Decimal]],
) -> None:
    closing = Side.SELL if long else Side.BUY
    orders = [
        _order(f"o{n}", closing, str(qty), kind, stop=str(price))
        if kind is OrderType.STOP
        else _order(f"o{n}", closing, str(qty), kind, limit=str(price))
        for n, (kind, price, qty) in enumerate(levels)
    ]
    signed = position if long else -position
    protection = provider_protection(orders, symbol=EURUSD, position=signed, reference=reference)
    link_side = closing.opposite if not reversed_direction else closing  # the follower's position side
    desired, _ = follower_orders(
        protection, link_side=link_side, link_qty=link_qty, reversed_direction=reversed_direction,
        instrument=_instrument(), order_types=ALL,
    )  # fmt: skip
    assert len({d.action for d in desired}) == len(desired)  # at most one stop-loss and one take-profit
    for d in desired:
        assert 0 < d.qty <= link_qty  # never more than the follower holds: a close never flips it
        assert d.side is not link_side  # always on the closing side
        level = (
            protection.stop_loss
            if (d.action is IntentAction.STOP_LOSS) != reversed_direction
            else protection.take_profit
        )
        assert level is not None
        assert abs(d.price - level.price) < D("0.0001")  # on the tick grid, within one tick
        if d.action is IntentAction.STOP_LOSS:  # never further from the market than the provider's level
            assert d.price >= level.price if d.side is Side.SELL else d.price <= level.price
        else:
            assert d.price <= level.price if d.side is Side.SELL else d.price >= level.price
    # A flat provider protects nothing, so no link carries anything.
    assert provider_protection(orders, symbol=EURUSD, position=D(0), reference=reference) == Protection()
