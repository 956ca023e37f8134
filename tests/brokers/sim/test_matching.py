"""Scenario tests of the sim venue's matching engine: one table row per rule, in ticks and lots."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from brokerlink.brokers.sim.book import (
    Accepted,
    Canceled,
    CancelReason,
    Depth,
    Event,
    Expired,
    Fill,
    LevelUpdate,
    Rejected,
    Replaced,
    RequestKind,
    SelfTradePrevention,
    Triggered,
)
from brokerlink.brokers.sim.matching import Grid, MatchingEngine, OffGrid
from brokerlink.domain.enums import AssetClass, OrderType, Side, TimeInForce
from brokerlink.domain.models import Instrument
from brokerlink.kit.money import MoneyError

BUY, SELL = Side.BUY, Side.SELL
MARKET, LIMIT, STOP, STOP_LIMIT = OrderType.MARKET, OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT
GTC, DAY, IOC, FOK = TimeInForce.GTC, TimeInForce.DAY, TimeInForce.IOC, TimeInForce.FOK
R = CancelReason

INSTRUMENT = Instrument(
    symbol="EUR/USD",
    venue_symbol="EUR_USD",
    asset_class=AssetClass.FX,
    base="EUR",
    quote="USD",
    tick_size=Decimal("0.00001"),
    qty_step=Decimal("0.01"),
    min_qty=Decimal("0.01"),
    max_qty=Decimal(1000),
    contract_size=Decimal(100000),
)


def engine(stp: SelfTradePrevention = SelfTradePrevention.CANCEL_TAKER) -> MatchingEngine:
    return MatchingEngine(INSTRUMENT, stp=stp)


# A resting order for a book: (order id, account, side, qty, price).
Resting = tuple[int, str, Side, int, int]


def book(eng: MatchingEngine, *orders: Resting) -> None:
    for oid, account, side, qty, price in orders:
        events = eng.submit_ticks(oid, account, side, qty, LIMIT, GTC, price)
        assert isinstance(events[0], Accepted), events
        assert not any(isinstance(e, Fill) for e in events), "book() only places non-crossing orders"


def fills(events: list[Event]) -> list[tuple[int, int, int]]:
    """(maker order id, price, qty) per fill."""
    return [(e.maker_order_id, e.price, e.qty) for e in events if isinstance(e, Fill)]


def cancels(events: list[Event]) -> list[tuple[int, CancelReason, int]]:
    return [(e.order_id, e.reason, e.qty) for e in events if isinstance(e, Canceled)]


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


ASKS: tuple[Resting, ...] = (
    (1, "m1", SELL, 5, 100),
    (2, "m2", SELL, 5, 100),
    (3, "m1", SELL, 10, 101),
    (4, "m3", SELL, 10, 103),
)
BIDS: tuple[Resting, ...] = (
    (11, "m1", BUY, 5, 99),
    (12, "m2", BUY, 5, 99),
    (13, "m3", BUY, 10, 97),
)


# ----------------------------------------------------------------------------- one incoming order


@pytest.mark.parametrize(
    ("incoming", "expected_fills", "expected_cancels", "bids_after", "asks_after"),
    [
        pytest.param(
            (BUY, 3, LIMIT, GTC, 99),
            [],
            [],
            [(99, 13), (97, 10)],
            [(100, 10), (101, 10), (103, 10)],
            id="limit-buy-below-ask-rests-behind-earlier-orders",
        ),
        pytest.param(
            (BUY, 3, LIMIT, GTC, 100),
            [(1, 100, 3)],
            [],
            [(99, 10), (97, 10)],
            [(100, 7), (101, 10), (103, 10)],
            id="limit-buy-partial-fill-of-first-in-queue",
        ),
        pytest.param(
            (BUY, 8, LIMIT, GTC, 100),
            [(1, 100, 5), (2, 100, 3)],
            [],
            [(99, 10), (97, 10)],
            [(100, 2), (101, 10), (103, 10)],
            id="fifo-within-a-level",
        ),
        pytest.param(
            (BUY, 30, LIMIT, GTC, 102),
            [(1, 100, 5), (2, 100, 5), (3, 101, 10)],
            [],
            [(102, 10), (99, 10), (97, 10)],
            [(103, 10)],
            id="limit-walks-levels-up-to-its-limit-then-rests",
        ),
        pytest.param(
            (SELL, 12, LIMIT, DAY, 97),
            [(11, 99, 5), (12, 99, 5), (13, 97, 2)],
            [],
            [(97, 8)],
            [(100, 10), (101, 10), (103, 10)],
            id="sell-limit-walks-bids-at-maker-prices",
        ),
        pytest.param(
            (BUY, 22, MARKET, GTC, None),
            [(1, 100, 5), (2, 100, 5), (3, 101, 10), (4, 103, 2)],
            [],
            [(99, 10), (97, 10)],
            [(103, 8)],
            id="market-walks-the-book",
        ),
        pytest.param(
            (SELL, 25, MARKET, DAY, None),
            [(11, 99, 5), (12, 99, 5), (13, 97, 10)],
            [(100, R.NO_LIQUIDITY, 5)],
            [],
            [(100, 10), (101, 10), (103, 10)],
            id="market-remainder-canceled-no-liquidity",
        ),
        pytest.param(
            (BUY, 12, LIMIT, IOC, 100),
            [(1, 100, 5), (2, 100, 5)],
            [(100, R.IOC_REMAINDER, 2)],
            [(99, 10), (97, 10)],
            [(101, 10), (103, 10)],
            id="ioc-remainder-canceled",
        ),
        pytest.param(
            (BUY, 4, LIMIT, IOC, 99),
            [],
            [(100, R.IOC_REMAINDER, 4)],
            [(99, 10), (97, 10)],
            [(100, 10), (101, 10), (103, 10)],
            id="ioc-that-cannot-trade-never-rests",
        ),
        pytest.param(
            (BUY, 20, LIMIT, FOK, 101),
            [(1, 100, 5), (2, 100, 5), (3, 101, 10)],
            [],
            [(99, 10), (97, 10)],
            [(103, 10)],
            id="fok-filled-entirely",
        ),
        pytest.param(
            (BUY, 21, LIMIT, FOK, 101),
            [],
            [(100, R.FOK_UNFILLED, 21)],
            [(99, 10), (97, 10)],
            [(100, 10), (101, 10), (103, 10)],
            id="fok-short-by-one-lot-fills-nothing",
        ),
        pytest.param(
            (SELL, 21, MARKET, FOK, None),
            [],
            [(100, R.FOK_UNFILLED, 21)],
            [(99, 10), (97, 10)],
            [(100, 10), (101, 10), (103, 10)],
            id="fok-market-larger-than-the-book",
        ),
        pytest.param(
            (SELL, 20, MARKET, IOC, None),
            [(11, 99, 5), (12, 99, 5), (13, 97, 10)],
            [],
            [],
            [(100, 10), (101, 10), (103, 10)],
            id="market-ioc-exactly-the-book",
        ),
    ],
)
def test_incoming_order(
    incoming: tuple[Side, int, OrderType, TimeInForce, int | None],
    expected_fills: list[tuple[int, int, int]],
    expected_cancels: list[tuple[int, CancelReason, int]],
    bids_after: list[tuple[int, int]],
    asks_after: list[tuple[int, int]],
) -> None:
    eng = engine()
    book(eng, *ASKS, *BIDS)
    side, qty, order_type, tif, price = incoming
    events = eng.submit_ticks(100, "taker", side, qty, order_type, tif, price)
    assert isinstance(events[0], Accepted)
    assert fills(events) == expected_fills
    assert cancels(events) == expected_cancels
    depth = eng.depth()
    assert (depth.bids, depth.asks) == (bids_after, asks_after)
    for fill in (e for e in events if isinstance(e, Fill)):
        assert fill.aggressor is side
        assert fill.taker_account == "taker"
    if expected_cancels and expected_cancels[0][1] is R.FOK_UNFILLED:
        assert kinds(events) == ["Accepted", "Canceled"], "an unfilled FOK has no side effect"


def test_fill_reports_leaves_and_increasing_trade_ids() -> None:
    eng = MatchingEngine(INSTRUMENT, trade_id_base=3, trade_id_step=4)
    book(eng, *ASKS)
    events = eng.submit_ticks(100, "t", BUY, 12, LIMIT, GTC, 101)
    got = [(f.trade_id, f.taker_leaves, f.maker_leaves) for f in events if isinstance(f, Fill)]
    assert got == [(7, 7, 0), (11, 2, 0), (15, 0, 8)]
    assert eng.last_trade_price == 101
    more = eng.submit_ticks(101, "t", BUY, 1, MARKET, IOC)
    assert [f.trade_id for f in more if isinstance(f, Fill)] == [19]


def test_market_into_an_empty_book_is_canceled() -> None:
    events = engine().submit_ticks(1, "a", BUY, 5, MARKET, GTC)
    assert kinds(events) == ["Accepted", "Canceled"]
    assert cancels(events) == [(1, R.NO_LIQUIDITY, 5)]


def test_events_of_a_crossing_limit_in_order() -> None:
    eng = engine()
    book(eng, (1, "m", SELL, 5, 100), (2, "m", SELL, 5, 101))
    events = eng.submit_ticks(3, "t", BUY, 12, LIMIT, GTC, 101)
    assert kinds(events) == ["Accepted", "Fill", "LevelUpdate", "Fill", "LevelUpdate", "LevelUpdate"]
    updates = [(e.side, e.price, e.qty) for e in events if isinstance(e, LevelUpdate)]
    assert updates == [(SELL, 100, 0), (SELL, 101, 0), (BUY, 101, 2)]


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        pytest.param((BUY, 5, LIMIT, GTC, None, None), "limit price", id="limit-without-price"),
        pytest.param((BUY, 5, MARKET, GTC, 100, None), "limit price", id="market-with-price"),
        pytest.param((BUY, 5, STOP, GTC, None, None), "stop price", id="stop-without-stop-price"),
        pytest.param((BUY, 5, STOP, GTC, 100, 100), "limit price", id="stop-with-limit-price"),
        pytest.param((BUY, 5, STOP_LIMIT, GTC, None, 100), "limit price", id="stop-limit-without-price"),
        pytest.param((BUY, 5, LIMIT, GTC, 100, 99), "stop price", id="limit-with-stop-price"),
        pytest.param((BUY, 5, LIMIT, GTC, 0, None), "positive", id="zero-price"),
        pytest.param((SELL, 5, STOP, GTC, None, -1), "positive", id="negative-stop"),
        pytest.param((BUY, 0, LIMIT, GTC, 100, None), "below the minimum", id="zero-qty"),
        pytest.param((BUY, 100_001, LIMIT, GTC, 100, None), "above the maximum", id="above-max-qty"),
        pytest.param(("buy", 5, LIMIT, GTC, 100, None), "unknown side", id="side-not-an-enum"),
        pytest.param((BUY, 5, LIMIT, "gtc", 100, None), "time in force", id="tif-not-an-enum"),
        pytest.param((BUY, 5, "limit", GTC, 100, None), "order type", id="type-not-an-enum"),
    ],
)
def test_malformed_orders_are_rejected(args: tuple[object, ...], reason: str) -> None:
    eng = engine()
    side, qty, order_type, tif, price, stop = args
    events = eng.submit_ticks(1, "a", side, qty, order_type, tif, price, stop)  # type: ignore[arg-type]
    assert len(events) == 1
    rejected = events[0]
    assert isinstance(rejected, Rejected)
    assert rejected.request is RequestKind.SUBMIT
    assert reason in rejected.reason
    assert eng.depth() == Depth(0, [], [])
    assert eng.order(1) is None


def test_a_working_order_id_cannot_be_reused_but_a_finished_one_can() -> None:
    eng = engine()
    book(eng, (1, "a", BUY, 5, 100))
    events = eng.submit_ticks(1, "a", BUY, 5, LIMIT, GTC, 99)
    assert isinstance(events[0], Rejected)
    assert "duplicate" in events[0].reason
    eng.cancel(1)
    assert isinstance(eng.submit_ticks(1, "a", BUY, 5, LIMIT, GTC, 99)[0], Accepted)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        pytest.param({"price": Decimal("1.100005")}, "not a multiple of 0.00001", id="price-off-tick"),
        pytest.param({"qty": Decimal("0.015")}, "not a multiple of 0.01", id="qty-off-step"),
        pytest.param({"stop_price": Decimal("1.1")}, "stop price", id="stop-on-a-limit"),
        pytest.param({"qty": 0.5}, "floats", id="float-qty"),
        pytest.param({"price": 1.1}, "floats", id="float-price"),
        pytest.param({"side": "up"}, "Side", id="unknown-side-string"),
        pytest.param({"qty": Decimal("NaN")}, "finite", id="nan-qty"),
    ],
)
def test_decimal_facade_refuses_off_grid_and_bad_input(kwargs: dict[str, object], reason: str) -> None:
    eng = engine()
    args: dict[str, object] = {"side": BUY, "qty": Decimal("0.5"), "price": Decimal("1.10001")} | kwargs
    side, qty = args.pop("side"), args.pop("qty")
    events = eng.submit(1, "a", side, qty, **args)  # type: ignore[arg-type]
    assert len(events) == 1
    assert isinstance(events[0], Rejected)
    assert reason in events[0].reason
    assert eng.depth().bids == []


def test_decimal_facade_converts_exactly() -> None:
    eng = engine()
    # Enum arguments may come as their wire strings.
    events = eng.submit(1, "a", "sell", Decimal("1.25"), order_type="limit", tif="day", price=Decimal("1.10001"))  # type: ignore[arg-type]
    assert events[0] == Accepted(1, "a", SELL, LIMIT, DAY, 125, 110001, None)
    assert eng.grid.price(eng.best_ask() or 0) == Decimal("1.10001")
    buy = eng.submit(2, "b", BUY, Decimal("0.5"), order_type=MARKET)
    fill = next(e for e in buy if isinstance(e, Fill))
    assert (eng.grid.price(fill.price), eng.grid.qty(fill.qty)) == (Decimal("1.10001"), Decimal("0.50"))
    replaced = eng.modify(1, qty=Decimal("1.00"))
    assert isinstance(replaced[0], Replaced)
    assert (replaced[0].qty, replaced[0].leaves) == (100, 50)
    assert isinstance(eng.modify(1, price=Decimal("1.100011"))[0], Rejected)


def test_grid_round_trips_and_refuses() -> None:
    grid = Grid(Decimal("0.00001"), Decimal("0.01"))
    assert grid.ticks(Decimal("1.23456")) == 123456
    assert grid.ticks("1.2") == 120000
    assert str(grid.price(123456)) == "1.23456"
    assert str(grid.qty(150)) == "1.50"
    assert grid.lots_at_least(Decimal("0.015")) == 2
    with pytest.raises(OffGrid):
        grid.lots(Decimal("0.001"))
    with pytest.raises(MoneyError):
        grid.ticks(1.5)  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        Grid(Decimal(0), Decimal(1))


def test_min_qty_not_on_the_step_rounds_up_to_lots() -> None:
    eng = MatchingEngine(msgspec.structs.replace(INSTRUMENT, min_qty=Decimal("0.015")))
    assert isinstance(eng.submit_ticks(1, "a", BUY, 1, LIMIT, GTC, 100)[0], Rejected)
    assert isinstance(eng.submit_ticks(1, "a", BUY, 2, LIMIT, GTC, 100)[0], Accepted)


def test_trade_ids_must_increase() -> None:
    with pytest.raises(ValueError, match="trade ids"):
        MatchingEngine(INSTRUMENT, trade_id_step=0)


# ----------------------------------------------------------------------------- cancel


def test_cancel_resting_order() -> None:
    eng = engine()
    book(eng, (1, "a", BUY, 5, 99), (2, "b", BUY, 3, 99))
    events = eng.cancel(1)
    assert kinds(events) == ["Canceled", "LevelUpdate"]
    assert cancels(events) == [(1, R.USER, 5)]
    assert eng.depth().bids == [(99, 3)]
    assert eng.order(1) is None
    again = eng.cancel(1)
    assert isinstance(again[0], Rejected)
    assert again[0].request is RequestKind.CANCEL


def test_cancel_partially_filled_order_cancels_the_rest() -> None:
    eng = engine()
    book(eng, (1, "a", SELL, 10, 100))
    eng.submit_ticks(2, "b", BUY, 4, MARKET, IOC)
    assert cancels(eng.cancel(1)) == [(1, R.USER, 6)]
    assert eng.depth().asks == []


def test_canceled_orders_in_the_middle_of_a_queue_are_skipped() -> None:
    eng = engine()
    book(eng, *[(i, f"a{i}", SELL, 1, 100) for i in range(1, 101)])
    for i in range(2, 100):  # leave the first and the last; the rest become dead entries
        eng.cancel(i)
    assert eng.depth().asks == [(100, 2)]
    events = eng.submit_ticks(500, "t", BUY, 5, LIMIT, IOC, 100)
    assert fills(events) == [(1, 100, 1), (100, 100, 1)]
    assert eng.depth().asks == []


# ----------------------------------------------------------------------------- modify


QUEUE: tuple[Resting, ...] = ((1, "a", BUY, 10, 99), (2, "b", BUY, 10, 99))


@pytest.mark.parametrize(
    ("change", "kept", "first_filled"),
    [
        pytest.param({"qty": 6}, True, 1, id="qty-down-keeps-priority"),
        pytest.param({"qty": 10}, True, 1, id="same-qty-keeps-priority"),
        pytest.param({"qty": 12}, False, 2, id="qty-up-loses-priority"),
        pytest.param({"price": 98}, False, 2, id="price-change-loses-priority"),
    ],
)
def test_modify_priority(change: dict[str, int], kept: bool, first_filled: int) -> None:
    eng = engine()
    book(eng, *QUEUE)
    events = eng.modify_ticks(1, **change)
    replaced = events[0]
    assert isinstance(replaced, Replaced)
    assert replaced.priority_kept is kept
    if "price" in change:
        eng.modify_ticks(1, price=99)  # back to the original price, now behind order 2
    sold = eng.submit_ticks(9, "t", SELL, 1, MARKET, IOC)
    assert fills(sold) == [(first_filled, 99, 1)]


def test_modify_qty_is_the_new_total_including_what_filled() -> None:
    eng = engine()
    book(eng, (1, "a", BUY, 10, 99))
    eng.submit_ticks(2, "b", SELL, 4, MARKET, IOC)
    events = eng.modify_ticks(1, qty=7)
    assert events == [Replaced(1, 7, 3, 99, None, priority_kept=True), LevelUpdate(3, BUY, 99, 3)]
    refused = eng.modify_ticks(1, qty=4)
    assert isinstance(refused[0], Rejected)
    assert "already filled" in refused[0].reason
    assert eng.depth().bids == [(99, 3)]


def test_modify_to_a_crossing_price_trades_at_once() -> None:
    eng = engine()
    book(eng, (1, "a", BUY, 10, 99), (2, "b", SELL, 4, 101))
    events = eng.modify_ticks(1, price=102)
    assert kinds(events) == ["Replaced", "LevelUpdate", "Fill", "LevelUpdate", "LevelUpdate"]
    assert fills(events) == [(2, 101, 4)]
    assert eng.depth().bids == [(102, 6)]


@pytest.mark.parametrize(
    ("order_id", "change", "reason"),
    [
        pytest.param(1, {}, "nothing to modify", id="nothing"),
        pytest.param(7, {"qty": 5}, "unknown order", id="unknown"),
        pytest.param(1, {"stop_price": 95}, "stop price", id="stop-price-of-a-limit"),
        pytest.param(1, {"qty": 0}, "does not exceed", id="qty-zero"),
        pytest.param(1, {"qty": 100_001}, "maximum", id="qty-above-max"),
        pytest.param(1, {"price": 0}, "positive", id="price-zero"),
    ],
)
def test_bad_modifies_are_rejected_and_change_nothing(order_id: int, change: dict[str, int], reason: str) -> None:
    eng = engine()
    book(eng, (1, "a", BUY, 10, 99))
    events = eng.modify_ticks(order_id, **change)
    assert len(events) == 1
    assert isinstance(events[0], Rejected)
    assert events[0].request is RequestKind.MODIFY
    assert reason in events[0].reason
    assert eng.depth() == Depth(1, [(99, 10)], [])


# ----------------------------------------------------------------------------- stops


def trade_at(eng: MatchingEngine, price: int, oid: int) -> list[Event]:
    """Print one lot at ``price`` between two fresh accounts."""
    eng.submit_ticks(oid, f"mk{oid}", SELL, 1, LIMIT, GTC, price)
    return eng.submit_ticks(oid + 1, f"tk{oid}", BUY, 1, MARKET, IOC)


@pytest.mark.parametrize(
    ("side", "stop", "print_at", "triggers"),
    [
        pytest.param(BUY, 102, 101, False, id="buy-stop-below-last"),
        pytest.param(BUY, 102, 102, True, id="buy-stop-at-last"),
        pytest.param(BUY, 102, 103, True, id="buy-stop-through-last"),
        pytest.param(SELL, 98, 99, False, id="sell-stop-above-last"),
        pytest.param(SELL, 98, 98, True, id="sell-stop-at-last"),
        pytest.param(SELL, 98, 97, True, id="sell-stop-through-last"),
    ],
)
def test_stop_triggers_when_the_last_trade_crosses(side: Side, stop: int, print_at: int, triggers: bool) -> None:
    eng = engine()
    trade_at(eng, 100, 900)
    accepted = eng.submit_ticks(1, "s", side, 2, STOP, GTC, None, stop)
    assert kinds(accepted) == ["Accepted"]
    assert eng.order(1) is not None
    assert eng.order(1).stop_pending  # type: ignore[union-attr]
    events = trade_at(eng, print_at, 910)
    assert any(isinstance(e, Triggered) and e.order_id == 1 for e in events) is triggers
    if triggers:
        trig = next(e for e in events if isinstance(e, Triggered))
        assert (trig.stop_price, trig.last_price) == (stop, print_at)
        # It now works as a market order, and the other side is empty: canceled for no liquidity.
        assert cancels(events) == [(1, R.NO_LIQUIDITY, 2)]
    else:
        assert eng.order(1) is not None


def test_stop_waits_without_a_last_trade_and_triggers_at_once_when_already_crossed() -> None:
    eng = engine()
    assert kinds(eng.submit_ticks(1, "s", BUY, 1, STOP, GTC, None, 90)) == ["Accepted"]
    trade_at(eng, 100, 900)  # the print at 100 crosses the waiting buy stop at 90
    assert eng.order(1) is None
    book(eng, (5, "m", SELL, 3, 105))
    events = eng.submit_ticks(2, "s", BUY, 2, STOP, GTC, None, 95)
    assert kinds(events) == ["Accepted", "Triggered", "Fill", "LevelUpdate"]
    assert fills(events) == [(5, 105, 2)]


def test_stop_limit_rests_at_its_limit_after_triggering() -> None:
    eng = engine()
    trade_at(eng, 100, 900)
    book(eng, (5, "m", SELL, 3, 104))
    eng.submit_ticks(1, "s", BUY, 5, STOP_LIMIT, GTC, 103, 102)
    events = trade_at(eng, 102, 910)
    assert [e.order_id for e in events if isinstance(e, Triggered)] == [1]
    assert fills(events) == [(910, 102, 1)]
    view = eng.order(1)
    assert view is not None
    assert (view.stop_pending, view.price, view.leaves) == (False, 103, 5)
    assert eng.depth().bids == [(103, 5)]


def test_stops_cascade_in_trigger_price_order_then_arrival() -> None:
    eng = engine()
    book(eng, (1, "m1", BUY, 1, 100), (2, "m2", BUY, 1, 99), (3, "m3", BUY, 1, 98), (4, "m4", BUY, 5, 90))
    trade_at(eng, 101, 900)
    eng.submit_ticks(10, "s1", SELL, 1, STOP, GTC, None, 98)  # triggered by stop 11's trade at 98
    eng.submit_ticks(11, "s2", SELL, 1, STOP, GTC, None, 99)  # triggered by the first trade at 99
    eng.submit_ticks(12, "s3", SELL, 1, STOP, GTC, None, 99)  # same trigger price, later arrival
    eng.submit_ticks(13, "s4", SELL, 1, STOP, GTC, None, 50)  # never reached
    events = eng.submit_ticks(20, "t", SELL, 2, MARKET, IOC)  # trades at 100 and 99
    order = [
        (type(e).__name__, e.order_id if isinstance(e, Triggered) else e.maker_order_id)
        for e in events
        if isinstance(e, Triggered | Fill)
    ]
    assert order == [
        ("Fill", 1),
        ("Fill", 2),
        ("Triggered", 11),
        ("Fill", 3),
        ("Triggered", 12),
        ("Fill", 4),
        ("Triggered", 10),
        ("Fill", 4),
    ]
    assert eng.last_trade_price == 90
    assert eng.order(13) is not None


def test_modify_and_cancel_a_pending_stop() -> None:
    eng = engine()
    trade_at(eng, 100, 900)
    book(eng, (5, "m", SELL, 10, 104))
    eng.submit_ticks(1, "s", BUY, 2, STOP_LIMIT, GTC, 104, 110)
    eng.submit_ticks(2, "s", BUY, 2, STOP, GTC, None, 110)
    assert eng.modify_ticks(1, qty=3, price=105) == [Replaced(1, 3, 3, 105, 110, priority_kept=True)]
    assert isinstance(eng.modify_ticks(2, price=105)[0], Rejected)  # a stop has no limit price
    moved = eng.modify_ticks(1, stop_price=100)  # already crossed: triggers now
    assert kinds(moved) == ["Replaced", "Triggered", "Fill", "LevelUpdate"]
    assert fills(moved) == [(5, 104, 3)]
    assert cancels(eng.cancel(2)) == [(2, R.USER, 2)]
    eng.cancel(5)
    events = trade_at(eng, 111, 920)  # would have triggered order 2
    assert not any(isinstance(e, Triggered) for e in events)
    assert eng.open_order_ids() == []


# ----------------------------------------------------------------------------- DAY expiry


def test_day_orders_expire_and_gtc_orders_stay() -> None:
    eng = engine()
    eng.submit_ticks(1, "a", BUY, 5, LIMIT, DAY, 99)
    eng.submit_ticks(2, "b", BUY, 3, LIMIT, GTC, 99)
    eng.submit_ticks(3, "c", SELL, 4, LIMIT, DAY, 101)
    eng.submit_ticks(4, "d", SELL, 1, STOP, DAY, None, 90)
    eng.submit_ticks(5, "e", SELL, 1, STOP, GTC, None, 90)
    before = eng.last_update_id
    events = eng.expire_day()
    assert [(e.order_id, e.qty) for e in events if isinstance(e, Expired)] == [(1, 5), (3, 4), (4, 1)]
    updates = [(e.update_id, e.side, e.price, e.qty) for e in events if isinstance(e, LevelUpdate)]
    assert updates == [(before + 1, BUY, 99, 3), (before + 2, SELL, 101, 0)]
    assert eng.depth().bids == [(99, 3)]
    assert eng.depth().asks == []
    assert sorted(eng.open_order_ids()) == [2, 5]
    assert eng.expire_day() == []


# ----------------------------------------------------------------------------- self-trade prevention


STP_BOOK: tuple[Resting, ...] = ((1, "other", SELL, 3, 100), (2, "me", SELL, 3, 100), (3, "other", SELL, 3, 101))


@pytest.mark.parametrize(
    ("stp", "expected_fills", "expected_cancels", "asks_after"),
    [
        pytest.param(
            SelfTradePrevention.CANCEL_TAKER,
            [(1, 100, 3)],
            [(100, R.SELF_TRADE, 5)],
            [(100, 3), (101, 3)],
            id="cancel-taker",
        ),
        pytest.param(
            SelfTradePrevention.CANCEL_MAKER,
            [(1, 100, 3), (3, 101, 3)],
            [(2, R.SELF_TRADE, 3), (100, R.IOC_REMAINDER, 2)],
            [],
            id="cancel-maker",
        ),
        pytest.param(
            SelfTradePrevention.CANCEL_BOTH,
            [(1, 100, 3)],
            [(2, R.SELF_TRADE, 3), (100, R.SELF_TRADE, 5)],
            [(101, 3)],
            id="cancel-both",
        ),
    ],
)
def test_self_trade_prevention(
    stp: SelfTradePrevention,
    expected_fills: list[tuple[int, int, int]],
    expected_cancels: list[tuple[int, CancelReason, int]],
    asks_after: list[tuple[int, int]],
) -> None:
    eng = engine(stp)
    book(eng, *STP_BOOK)
    events = eng.submit_ticks(100, "me", BUY, 8, LIMIT, IOC, 101)
    assert fills(events) == expected_fills
    assert cancels(events) == expected_cancels
    assert all(f.maker_account != f.taker_account for f in events if isinstance(f, Fill))
    assert eng.depth().asks == asks_after


@pytest.mark.parametrize(
    ("stp", "fillable"),
    [
        pytest.param(SelfTradePrevention.CANCEL_TAKER, False, id="cancel-taker-own-order-blocks"),
        pytest.param(SelfTradePrevention.CANCEL_BOTH, False, id="cancel-both-own-order-blocks"),
        pytest.param(SelfTradePrevention.CANCEL_MAKER, True, id="cancel-maker-own-order-skipped"),
    ],
)
def test_fok_counts_only_liquidity_it_could_trade_with(stp: SelfTradePrevention, fillable: bool) -> None:
    eng = engine(stp)
    book(eng, *STP_BOOK)
    depth = eng.depth()
    events = eng.submit_ticks(100, "me", BUY, 6, LIMIT, FOK, 101)
    if fillable:
        assert fills(events) == [(1, 100, 3), (3, 101, 3)]
        assert (2, R.SELF_TRADE, 3) in cancels(events)
    else:
        assert kinds(events) == ["Accepted", "Canceled"]
        assert cancels(events) == [(100, R.FOK_UNFILLED, 6)]
        assert eng.depth() == depth


def test_a_resting_order_is_never_filled_by_its_own_account_via_a_stop() -> None:
    eng = engine()
    trade_at(eng, 100, 900)
    book(eng, (1, "me", SELL, 5, 103))
    eng.submit_ticks(2, "me", BUY, 5, STOP, GTC, None, 101)
    events = trade_at(eng, 101, 910)
    assert (2, R.SELF_TRADE, 5) in cancels(events)
    assert eng.depth().asks == [(103, 5)]


# ----------------------------------------------------------------------------- depth


def replay(events: list[Event], bids: dict[int, int], asks: dict[int, int], last_id: int) -> int:
    for e in events:
        if isinstance(e, LevelUpdate):
            assert e.update_id == last_id + 1, "update ids are consecutive"
            last_id = e.update_id
            side = bids if e.side is BUY else asks
            if e.qty:
                side[e.price] = e.qty
            else:
                side.pop(e.price, None)
    return last_id


def test_depth_diffs_replay_to_the_snapshot() -> None:
    eng = engine(SelfTradePrevention.CANCEL_MAKER)
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    last_id = 0
    calls = [
        lambda: eng.submit_ticks(1, "a", BUY, 5, LIMIT, GTC, 99),
        lambda: eng.submit_ticks(2, "b", BUY, 5, LIMIT, DAY, 98),
        lambda: eng.submit_ticks(3, "c", SELL, 7, LIMIT, GTC, 101),
        lambda: eng.submit_ticks(4, "a", SELL, 4, LIMIT, GTC, 102),
        lambda: eng.modify_ticks(1, qty=3),
        lambda: eng.modify_ticks(2, price=99),
        lambda: eng.submit_ticks(5, "d", SELL, 6, LIMIT, GTC, 99),
        lambda: eng.submit_ticks(6, "a", BUY, 20, LIMIT, GTC, 102),
        lambda: eng.cancel(3),
        eng.expire_day,
    ]
    for call in calls:
        last_id = replay(call(), bids, asks, last_id)
        snap = eng.depth()
        assert snap.last_update_id == last_id == eng.last_update_id
        assert snap.bids == sorted(bids.items(), reverse=True)
        assert snap.asks == sorted(asks.items())
        if snap.bids and snap.asks:
            assert snap.bids[0][0] < snap.asks[0][0]


def test_depth_levels_and_best_prices() -> None:
    eng = engine()
    assert (eng.best_bid(), eng.best_ask(), eng.last_trade_price) == (None, None, None)
    book(eng, *ASKS, *BIDS)
    assert (eng.best_bid(), eng.best_ask()) == (99, 100)
    snap = eng.depth(2)
    assert snap.bids == [(99, 10), (97, 10)]
    assert snap.asks == [(100, 10), (101, 10)]
    assert eng.depth(0) == Depth(eng.last_update_id, [], [])
    with pytest.raises(ValueError, match="levels"):
        eng.depth(-1)


def test_order_view() -> None:
    eng = engine()
    book(eng, (1, "a", BUY, 10, 99))
    eng.submit_ticks(2, "b", SELL, 4, MARKET, IOC)
    view = eng.order(1)
    assert view is not None
    assert (view.side, view.order_type, view.tif, view.qty, view.leaves, view.price) == (BUY, LIMIT, GTC, 10, 6, 99)
    assert eng.order(2) is None
