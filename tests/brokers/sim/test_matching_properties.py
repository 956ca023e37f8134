"""Property tests of the matching engine: random submits, cancels, modifies and day ends across accounts.

Each call's events are checked against a shadow of the book that is rebuilt from the events alone,
so the invariants are stated independently of how the engine stores anything:

- the book is never crossed at rest;
- quantity is conserved: per order, filled + canceled + expired + still working == its quantity
  (as last modified), and every fill's leaves agree with the shadow; total bought == total sold;
- price-time priority: each fill's maker is the best resting order of its side (best price, then
  earliest at that price), so no fill happens at a level while a better one had quantity;
- every fill is at the maker's price and inside the taker's limit, and never between two orders of
  the same account;
- stops trigger only once the last trade crossed them, and none stays pending past its trigger;
- FOK fills completely or not at all, IOC and market orders never rest;
- replaying the depth diffs from an empty book reproduces ``depth()``, with consecutive update ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from brokerlink.brokers.sim.book import (
    Accepted,
    Canceled,
    CancelReason,
    Event,
    Expired,
    Fill,
    LevelUpdate,
    Rejected,
    Replaced,
    SelfTradePrevention,
    Triggered,
)
from brokerlink.brokers.sim.matching import MatchingEngine
from brokerlink.domain.enums import AssetClass, OrderType, Side, TimeInForce
from brokerlink.domain.models import Instrument

BUY, SELL = Side.BUY, Side.SELL
MARKET, LIMIT, STOP, STOP_LIMIT = OrderType.MARKET, OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT
INSTRUMENT = Instrument(
    symbol="BTC/USDT",
    venue_symbol="BTCUSDT",
    asset_class=AssetClass.CRYPTO,
    base="BTC",
    quote="USDT",
    tick_size=Decimal("0.01"),
    qty_step=Decimal("0.00001"),
    min_qty=Decimal("0.00001"),
)


@dataclass
class Shadow:
    """What the events say about one order."""

    side: Side
    account: str
    kind: OrderType
    tif: TimeInForce
    qty: int
    price: int | None
    stop: int | None
    leaves: int
    state: str  # pending (stop) | active (taking liquidity now) | resting | done
    seq: int = 0
    filled: int = 0
    canceled: int = 0
    expired: int = 0
    cancel_reasons: list[CancelReason] = field(default_factory=list)


class Checker:
    """Rebuilds the book from events and asserts the invariants on every event."""

    def __init__(self, engine: MatchingEngine) -> None:
        self.engine = engine
        self.orders: dict[int, Shadow] = {}
        self.seq = 0
        self.active: int | None = None
        self.last: int | None = None
        self.last_trade_id = -1
        self.last_update_id = 0
        self.depth: dict[tuple[Side, int], int] = {}
        self.prev: Event | None = None

    # -- the shadow book

    def resting(self, side: Side) -> list[tuple[int, Shadow]]:
        """Resting orders of a side, best first: price, then time."""
        rows = [(oid, o) for oid, o in self.orders.items() if o.state == "resting" and o.side is side]
        sign = -1 if side is BUY else 1
        return sorted(rows, key=lambda r: (sign * (r[1].price or 0), r[1].seq))

    def fillable(self, taker: Shadow) -> bool:
        """Whether the resting orders could fill all of ``taker`` within its limit, given self-trade prevention."""
        need = taker.leaves
        for _, maker in self.resting(taker.side.opposite):
            assert maker.price is not None
            if taker.price is not None and (
                maker.price > taker.price if taker.side is BUY else maker.price < taker.price
            ):
                break
            if maker.account == taker.account:
                if self.engine.stp is SelfTradePrevention.CANCEL_MAKER:
                    continue
                break
            need -= maker.leaves
            if need <= 0:
                return True
        return False

    def level_total(self, side: Side, price: int) -> int:
        return sum(o.leaves for _, o in self.resting(side) if o.price == price)

    # -- one call

    def apply(self, events: list[Event], request: str) -> None:
        self.prev = None
        for event in events:
            self.on(event, request)
            self.prev = event
        assert self.active is None or self.orders[self.active].state != "active", "a taker was left hanging"
        self.active = None
        self.check_at_rest()

    def on(self, event: Event, request: str) -> None:
        if isinstance(event, Rejected):
            return
        if isinstance(event, Accepted):
            assert event.order_id not in self.orders or self.orders[event.order_id].state == "done"
            pending = event.order_type in (STOP, STOP_LIMIT)
            self.orders[event.order_id] = Shadow(
                event.side,
                event.account,
                event.order_type,
                event.tif,
                event.qty,
                event.price,
                event.stop_price,
                event.qty,
                "pending" if pending else "active",
            )
            if not pending:
                self.activate(event.order_id)
        elif isinstance(event, Triggered):
            order = self.orders[event.order_id]
            assert order.state == "pending"
            assert event.last_price == self.last
            assert event.stop_price == order.stop
            assert self.last is not None
            assert self.last >= event.stop_price if order.side is BUY else self.last <= event.stop_price
            order.state = "active"
            self.activate(event.order_id)
        elif isinstance(event, Fill):
            self.on_fill(event)
        elif isinstance(event, Canceled):
            self.on_cancel(event, request)
        elif isinstance(event, Expired):
            order = self.orders[event.order_id]
            assert request == "expire"
            assert order.tif is TimeInForce.DAY
            assert order.state in ("resting", "pending")
            assert event.qty == order.leaves
            order.expired += order.leaves
            order.leaves = 0
            order.state = "done"
        elif isinstance(event, Replaced):
            self.on_replace(event)
        elif isinstance(event, LevelUpdate):
            self.on_level(event)

    def activate(self, order_id: int) -> None:
        assert self.active is None or self.orders[self.active].state != "active", "one taker at a time"
        self.active = order_id

    def on_fill(self, fill: Fill) -> None:
        taker, maker = self.orders[fill.taker_order_id], self.orders[fill.maker_order_id]
        assert self.active == fill.taker_order_id
        assert taker.state == "active"
        if taker.tif is TimeInForce.FOK and not taker.filled and isinstance(self.prev, Accepted | Triggered | Replaced):
            assert self.fillable(taker), "a FOK started trading that the book could not fill"
        assert maker.state == "resting"
        assert fill.trade_id > self.last_trade_id, "trade ids increase"
        self.last_trade_id = fill.trade_id
        assert fill.taker_account == taker.account != maker.account == fill.maker_account, "no self-trade"
        assert fill.aggressor is taker.side is not maker.side
        # At the maker's price, inside the taker's limit.
        assert fill.price == maker.price
        if taker.price is not None:
            assert fill.price <= taker.price if taker.side is BUY else fill.price >= taker.price
        # Price-time priority: the maker is the best resting order on its side.
        best = self.resting(maker.side)[0][0]
        assert fill.maker_order_id == best, f"filled {fill.maker_order_id} while {best} had priority"
        assert fill.qty == min(taker.leaves, maker.leaves) > 0
        for order, leaves in ((taker, fill.taker_leaves), (maker, fill.maker_leaves)):
            order.leaves -= fill.qty
            order.filled += fill.qty
            assert order.leaves == leaves
            if not order.leaves:
                order.state = "done"
        self.last = fill.price

    def on_cancel(self, event: Canceled, request: str) -> None:
        order = self.orders[event.order_id]
        assert order.state != "done"
        assert event.qty == order.leaves > 0
        reason = event.reason
        if reason is CancelReason.USER:
            assert request == "cancel"
        elif reason is CancelReason.FOK_UNFILLED:
            assert order.tif is TimeInForce.FOK
            assert order.filled == 0
            # No side effect: nothing happened between the order's start and its cancel.
            assert isinstance(self.prev, Accepted | Triggered)
            assert self.prev.order_id == event.order_id
            assert not self.fillable(order), "a FOK the book could fill was refused"
        elif reason is CancelReason.IOC_REMAINDER:
            assert order.tif in (TimeInForce.IOC, TimeInForce.FOK)
            assert order.tif is TimeInForce.IOC, "a FOK that passed its check fills completely"
        elif reason is CancelReason.NO_LIQUIDITY:
            assert order.kind in (MARKET, STOP)
        else:
            self.check_self_trade_cancel(event.order_id, order)
        order.canceled += order.leaves
        order.cancel_reasons.append(reason)
        order.leaves = 0
        order.state = "done"

    def check_self_trade_cancel(self, order_id: int, order: Shadow) -> None:
        stp = self.engine.stp
        assert self.active is not None
        taker = self.orders[self.active]
        if order_id == self.active:
            assert stp is not SelfTradePrevention.CANCEL_MAKER
            if stp is SelfTradePrevention.CANCEL_BOTH and isinstance(self.prev, Canceled):
                assert self.prev.reason is CancelReason.SELF_TRADE  # the maker went just before
            else:
                best = self.resting(taker.side.opposite)[0][1]
                assert best.account == taker.account
        else:
            assert stp is not SelfTradePrevention.CANCEL_TAKER
            assert order.state == "resting"
            assert self.resting(order.side)[0][0] == order_id
            assert order.account == taker.account

    def on_replace(self, event: Replaced) -> None:
        order = self.orders[event.order_id]
        assert order.state in ("resting", "pending")
        assert event.leaves == event.qty - order.filled > 0
        if order.state == "resting" and event.priority_kept:
            assert event.price == order.price
            assert event.leaves <= order.leaves
        elif order.state == "resting":
            order.state = "active"
            self.activate(event.order_id)
        order.qty, order.leaves = event.qty, event.leaves
        if event.price is not None:
            order.price = event.price
        order.stop = event.stop_price

    def on_level(self, event: LevelUpdate) -> None:
        assert event.update_id == self.last_update_id + 1, "update ids are consecutive"
        self.last_update_id = event.update_id
        key = (event.side, event.price)
        if event.qty:
            self.depth[key] = event.qty
        else:
            self.depth.pop(key, None)
        total = self.level_total(event.side, event.price)
        active = self.orders[self.active] if self.active is not None else None
        if (
            active is not None
            and active.state == "active"
            and active.side is event.side
            and active.price == event.price
            and total + active.leaves == event.qty
        ):
            # The taker is done taking and rests: at the back of its level.
            assert active.kind in (LIMIT, STOP_LIMIT)
            assert active.tif in (TimeInForce.GTC, TimeInForce.DAY), "IOC and FOK never rest"
            self.seq += 1
            active.seq = self.seq
            active.state = "resting"
        else:
            assert total == event.qty, f"level {key}: shadow {total} != update {event.qty}"

    # -- between calls

    def check_at_rest(self) -> None:
        engine = self.engine
        bid, ask = engine.best_bid(), engine.best_ask()
        if bid is not None and ask is not None:
            assert bid < ask, "crossed book at rest"
        snapshot = engine.depth()
        assert snapshot.last_update_id == self.last_update_id
        bids = sorted(((p, q) for (s, p), q in self.depth.items() if s is BUY), reverse=True)
        asks = sorted((p, q) for (s, p), q in self.depth.items() if s is SELL)
        assert (snapshot.bids, snapshot.asks) == (bids, asks), "replayed diffs != snapshot"
        working = {oid for oid, o in self.orders.items() if o.state in ("resting", "pending")}
        assert set(engine.open_order_ids()) == working
        for oid in working:
            view, order = engine.order(oid), self.orders[oid]
            assert view is not None
            assert (view.leaves, view.qty, view.stop_pending) == (order.leaves, order.qty, order.state == "pending")
            if order.state == "pending" and self.last is not None:
                assert order.stop is not None
                crossed = self.last >= order.stop if order.side is BUY else self.last <= order.stop
                assert not crossed, f"stop {oid} at {order.stop} still pending with last {self.last}"

    def check_conservation(self) -> None:
        bought = sold = 0
        for order in self.orders.values():
            assert order.filled + order.canceled + order.expired + order.leaves == order.qty
            if order.tif is TimeInForce.FOK and order.state == "done" and order.filled:
                assert order.filled == order.qty, "FOK is all or nothing"
            if order.side is BUY:
                bought += order.filled
            else:
                sold += order.filled
        assert bought == sold


ACCOUNTS = st.sampled_from(["a", "b", "c"])
PRICES = st.integers(96, 104)
QTY = st.integers(1, 12)
# Drawn by weight: mostly new orders (mostly limits), so that books build up and trade.
KINDS = st.sampled_from(["submit"] * 6 + ["cancel"] * 2 + ["modify"] * 2 + ["expire"])
TYPES = st.sampled_from([LIMIT] * 5 + [MARKET, STOP, STOP_LIMIT])
TIFS = st.sampled_from([TimeInForce.GTC] * 3 + [TimeInForce.DAY] * 2 + [TimeInForce.IOC, TimeInForce.FOK])


@st.composite
def operation(draw: st.DrawFn) -> tuple[object, ...]:
    """One request: submit, cancel or modify (of any order seen so far, done or not), or end of day."""
    kind = draw(KINDS)
    if kind == "submit":
        return (
            kind,
            draw(ACCOUNTS),
            draw(st.sampled_from([BUY, SELL])),
            draw(QTY),
            draw(TYPES),
            draw(TIFS),
            draw(PRICES),
            draw(PRICES),
        )
    if kind == "cancel":
        return (kind, draw(st.integers(0, 10_000)))
    if kind == "modify":
        changes = (draw(st.none() | QTY), draw(st.none() | PRICES), draw(st.none() | PRICES))
        return (kind, draw(st.integers(0, 10_000)), *changes)
    return (kind,)


OPS = st.lists(operation(), min_size=20, max_size=80)


def run(stp: SelfTradePrevention, ops: list[tuple[object, ...]]) -> Checker:
    engine = MatchingEngine(INSTRUMENT, stp=stp)
    checker = Checker(engine)
    next_id = 0
    for op in ops:
        kind = op[0]
        if kind == "submit":
            _, account, side, qty, order_type, tif, price, stop = op
            next_id += 1
            limit = price if order_type in (LIMIT, STOP_LIMIT) else None
            stop_price = stop if order_type in (STOP, STOP_LIMIT) else None
            events = engine.submit_ticks(next_id, account, side, qty, order_type, tif, limit, stop_price)  # type: ignore[arg-type]
            assert isinstance(events[0], Accepted), events[0]
        elif kind == "expire":
            events = engine.expire_day()
        elif not next_id:
            continue
        elif kind == "cancel":
            events = engine.cancel(1 + op[1] % next_id)  # type: ignore[operator]
        else:
            _, pick, qty, price, stop = op
            events = engine.modify_ticks(1 + pick % next_id, qty, price, stop)  # type: ignore[operator, arg-type]
        checker.apply(events, str(kind))
    checker.check_conservation()
    return checker


@settings(max_examples=150)
@given(stp=st.sampled_from(list(SelfTradePrevention)), ops=OPS)
def test_matching_invariants(stp: SelfTradePrevention, ops: list[tuple[object, ...]]) -> None:
    run(stp, ops)


def test_the_checker_sees_fills_cascades_and_self_trades() -> None:
    """A fixed busy sequence, so the properties above are known to exercise the interesting paths."""
    ops: list[tuple[object, ...]] = [
        ("submit", "a", SELL, 5, LIMIT, TimeInForce.GTC, 101, 0),
        ("submit", "b", SELL, 5, LIMIT, TimeInForce.GTC, 100, 0),
        ("submit", "c", BUY, 2, LIMIT, TimeInForce.GTC, 100, 0),
        ("submit", "a", SELL, 3, STOP, TimeInForce.GTC, 0, 99),
        ("submit", "b", BUY, 4, LIMIT, TimeInForce.DAY, 99, 0),
        ("submit", "c", BUY, 4, LIMIT, TimeInForce.GTC, 98, 0),
        ("submit", "c", SELL, 2, MARKET, TimeInForce.IOC, 0, 0),
        ("submit", "a", BUY, 9, LIMIT, TimeInForce.FOK, 101, 0),
        ("modify", 5, 2, None, None),
        ("submit", "b", BUY, 20, LIMIT, TimeInForce.IOC, 103, 0),
        ("expire",),
    ]
    for stp in SelfTradePrevention:
        checker = run(stp, ops)
        reasons = {r for o in checker.orders.values() for r in o.cancel_reasons}
        assert CancelReason.SELF_TRADE in reasons or stp is SelfTradePrevention.CANCEL_MAKER
        assert checker.last_trade_id > 3
        assert any(o.state == "done" and o.filled for o in checker.orders.values())
