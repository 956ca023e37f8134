"""The order book under the sim venue's matching engine, and the events both speak.

Everything here counts in integers: prices in ticks (multiples of the instrument's ``tick_size``)
and quantities in lots (multiples of its ``qty_step``), because integer arithmetic is exact and
several times faster than ``Decimal``; :class:`brokerlink.brokers.sim.matching.Grid` converts at
the boundary.

Events are frozen msgspec structs in one tagged union (:data:`Event`), encoded as arrays and kept out
of the cyclic garbage collector (``gc=False``: they hold only ints, strings and enums), which makes
them about as cheap to create as a tuple.

Layout, chosen for speed: per side a dict price → :class:`PriceLevel` (a deque of orders in time
order plus the level's total, kept exact) and a sorted list of the prices that have a level
(``bisect``); a dict id → order for O(1) cancel. A canceled order is only marked dead
(``leaves == 0``) in its level's deque, which is O(1); matching drops dead orders when it reaches
them, and a level that fills up with them is compacted.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from enum import StrEnum
from typing import TypeAlias

import msgspec

from brokerlink.domain.enums import OrderType, Side, TimeInForce


class CancelReason(StrEnum):
    """Why the engine canceled (all or the rest of) an order."""

    USER = "user"
    """The owner asked."""
    IOC_REMAINDER = "ioc_remainder"
    """Immediate-or-cancel: what did not fill at once."""
    FOK_UNFILLED = "fok_unfilled"
    """Fill-or-kill: the book could not fill all of it, so none of it was filled."""
    NO_LIQUIDITY = "no_liquidity"
    """A market order (or triggered stop) ran out of opposite orders; market orders never rest."""
    SELF_TRADE = "self_trade"
    """Self-trade prevention: it would have traded with an order of the same account."""


class SelfTradePrevention(StrEnum):
    """What happens when a taker meets a resting order of its own account (never a fill)."""

    CANCEL_TAKER = "cancel_taker"
    """Cancel the rest of the incoming order; the resting one stays (the usual venue default)."""
    CANCEL_MAKER = "cancel_maker"
    """Cancel the resting order and keep matching the incoming one."""
    CANCEL_BOTH = "cancel_both"
    """Cancel both."""


class RequestKind(StrEnum):
    """Which request a :class:`Rejected` refuses."""

    SUBMIT = "submit"
    CANCEL = "cancel"
    MODIFY = "modify"


class _Event(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=True):
    """Base of the engine's events: frozen, positional on the wire, tagged with the class name."""


class Accepted(_Event, frozen=True):
    """The order was accepted: always the first event about an order. ``price`` is None for market and stop."""

    order_id: int
    account: str
    side: Side
    order_type: OrderType
    tif: TimeInForce
    qty: int
    price: int | None
    stop_price: int | None


class Rejected(_Event, frozen=True):
    """A request was refused and changed nothing; a refused cancel or modify leaves the order as it was."""

    order_id: int
    request: RequestKind
    reason: str


class Fill(_Event, frozen=True):
    """One trade between the incoming (taker) and a resting (maker) order, at the maker's price.

    ``trade_id`` is unique per venue and increases; ``*_leaves`` is what each order still has to
    fill after this trade (0: done).
    """

    trade_id: int
    price: int
    qty: int
    aggressor: Side
    taker_order_id: int
    maker_order_id: int
    taker_account: str
    maker_account: str
    taker_leaves: int
    maker_leaves: int


class Canceled(_Event, frozen=True):
    """The order's remaining ``qty`` was canceled; the order is done."""

    order_id: int
    reason: CancelReason
    qty: int


class Replaced(_Event, frozen=True):
    """A modify took effect: ``qty`` is the new total (filled part included), ``leaves`` what is left.

    ``priority_kept`` is False when the order went to the back of the queue at its (new) price.
    """

    order_id: int
    qty: int
    leaves: int
    price: int | None
    stop_price: int | None
    priority_kept: bool


class Triggered(_Event, frozen=True):
    """The last trade price crossed a stop's trigger; it now works as a market or limit order."""

    order_id: int
    stop_price: int
    last_price: int


class Expired(_Event, frozen=True):
    """A DAY order reached the end of the day with ``qty`` unfilled.

    Not a :class:`Canceled`: the order's status becomes ``expired``, which clients treat differently.
    """

    order_id: int
    qty: int


class LevelUpdate(_Event, frozen=True):
    """The total resting quantity at one price changed to ``qty`` (0: the level is gone).

    ``update_id`` increases by one per update within an engine, so a venue can publish depth diffs
    with first and last update ids and a client can detect a gap. A matching pass gives each level
    it touches one update, with the level's total after the pass.
    """

    update_id: int
    side: Side
    price: int
    qty: int


Event: TypeAlias = Accepted | Rejected | Fill | Canceled | Replaced | Triggered | Expired | LevelUpdate
"""Everything a matching engine call can return."""


class Depth(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A depth snapshot: ``(price, qty)`` levels, best first, as of update ``last_update_id``.

    A client applies the diffs with ``update_id > last_update_id`` on top of it.
    """

    last_update_id: int
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]


class WorkingOrder(msgspec.Struct, gc=False):
    """An order resting in the book or a stop waiting for its trigger. Mutable; the engine's own state.

    A msgspec struct rather than a slotted class: it is created about three times faster, and
    ``gc=False`` keeps it out of the cyclic collector (it refers only to ints, a str and enums, so it
    can never be part of a cycle), which would otherwise walk every working order over and over and
    stall the venue for milliseconds at a time.
    """

    id: int
    account: str
    side: Side
    price: int
    """Limit price in ticks; for market and stop orders the no-limit price of their side."""
    qty: int
    """Total quantity, filled part included."""
    leaves: int
    """Quantity still to fill. 0 marks a dead order left in a level's deque."""
    tif: TimeInForce
    kind: OrderType
    stop: int | None


class PriceLevel:
    """The orders resting at one price, in time order, with their total and a count of dead entries."""

    __slots__ = ("dead", "orders", "total")

    def __init__(self, order: WorkingOrder) -> None:
        self.orders = deque((order,))
        self.total = order.leaves
        self.dead = 0


# A level's deque is rebuilt without its dead orders once this many sit in it and they outnumber
# the live ones: amortized O(1) per cancel, and a level never grows without bound.
_COMPACT_DEAD = 32

_BUY = Side.BUY
_SELL = Side.SELL
_SELF_TRADE = CancelReason.SELF_TRADE
_CANCEL_TAKER = SelfTradePrevention.CANCEL_TAKER
_CANCEL_MAKER = SelfTradePrevention.CANCEL_MAKER


class OrderBook:
    """Both sides of one instrument's book and the price-time matching of a taker against it.

    Knows nothing of order types or time in force: :class:`brokerlink.brokers.sim.matching.MatchingEngine`
    builds on it (as a subclass, so the hot path reaches the book's state without an extra hop).
    """

    def __init__(self, stp: SelfTradePrevention, trade_id_base: int, trade_id_step: int) -> None:
        if trade_id_step < 1 or trade_id_base < 0:
            raise ValueError("trade ids must increase: trade_id_base >= 0 and trade_id_step >= 1")
        self.stp = SelfTradePrevention(stp)
        self._trade_id = trade_id_base
        self._trade_step = trade_id_step
        self._update_id = 0
        self._last: int | None = None
        self._bids: dict[int, PriceLevel] = {}
        self._asks: dict[int, PriceLevel] = {}
        self._bid_prices: list[int] = []  # ascending: the best bid is the last
        self._ask_prices: list[int] = []  # ascending: the best ask is the first
        self._orders: dict[int, WorkingOrder] = {}  # resting in the book

    @property
    def last_trade_price(self) -> int | None:
        """Price of the last trade in ticks (None before the first trade)."""
        return self._last

    @property
    def last_update_id(self) -> int:
        """The ``update_id`` of the last :class:`LevelUpdate` (0 before the first)."""
        return self._update_id

    def best_bid(self) -> int | None:
        """The highest bid price in ticks, or None."""
        return self._bid_prices[-1] if self._bid_prices else None

    def best_ask(self) -> int | None:
        """The lowest ask price in ticks, or None."""
        return self._ask_prices[0] if self._ask_prices else None

    def depth(self, levels: int | None = None) -> Depth:
        """The ``levels`` best levels of each side (all of them with None), as of :attr:`last_update_id`."""
        if levels is not None and levels < 0:
            raise ValueError("levels must be >= 0")
        bid_prices = self._bid_prices[::-1] if levels is None else self._bid_prices[: -levels - 1 : -1]
        ask_prices = self._ask_prices if levels is None else self._ask_prices[:levels]
        bids, asks = self._bids, self._asks
        return Depth(
            self._update_id, [(p, bids[p].total) for p in bid_prices], [(p, asks[p].total) for p in ask_prices]
        )

    def _rest(self, order: WorkingOrder) -> LevelUpdate:
        """Put an order at the back of the queue at its price; returns the level's update."""
        price = order.price
        if order.side is _BUY:
            levels, prices = self._bids, self._bid_prices
        else:
            levels, prices = self._asks, self._ask_prices
        level = levels.get(price)
        if level is None:
            level = levels[price] = PriceLevel(order)
            insort(prices, price)
        else:
            level.orders.append(order)
            level.total += order.leaves
        self._orders[order.id] = order
        self._update_id = update_id = self._update_id + 1
        return LevelUpdate(update_id, order.side, price, level.total)

    def _unrest(self, order: WorkingOrder) -> LevelUpdate:
        """Take a resting order (already out of ``_orders``) out of its level; it stays in the deque, dead.

        Returns the level's update for the caller to place among its events.
        """
        side, price = order.side, order.price
        level = (self._bids if side is _BUY else self._asks)[price]
        level.total = total = level.total - order.leaves
        order.leaves = 0
        self._update_id = update_id = self._update_id + 1
        if not total:
            self._drop_level(side, price)
        elif level.orders[-1] is order:
            # Most cancels hit the newest order; dropping it from the tail keeps deques short for free.
            level.orders.pop()
        else:
            level.dead = dead = level.dead + 1
            if dead >= _COMPACT_DEAD and dead * 2 > len(level.orders):
                self._compact(level)
        return LevelUpdate(update_id, side, price, total)

    @staticmethod
    def _compact(level: PriceLevel) -> None:
        """Rebuild a level's deque without its dead orders."""
        level.orders = deque(o for o in level.orders if o.leaves)
        level.dead = 0

    def _drop_level(self, side: Side, price: int) -> None:
        if side is _BUY:
            del self._bids[price]
            prices = self._bid_prices
        else:
            del self._asks[price]
            prices = self._ask_prices
        del prices[bisect_left(prices, price)]

    def _fillable(self, order: WorkingOrder) -> bool:
        """Whether the book can fill all of ``order`` within its limit right now (for FOK), touching nothing.

        Orders of the same account do not count; under cancel_taker and cancel_both meeting one ends the
        walk, because matching would cancel the taker there.
        """
        need, limit, account = order.leaves, order.price, order.account
        stop_at_own = self.stp is not _CANCEL_MAKER
        if order.side is _BUY:
            levels, prices = self._asks, [p for p in self._ask_prices if p <= limit]
        else:
            levels, prices = self._bids, [p for p in reversed(self._bid_prices) if p >= limit]
        for price in prices:
            for resting in levels[price].orders:
                if not resting.leaves:
                    continue
                if resting.account == account:
                    if stop_at_own:
                        return False
                    continue
                need -= resting.leaves
                if need <= 0:
                    return True
        return False

    def _self_trade(self, taker: WorkingOrder, maker: WorkingOrder, level: PriceLevel, events: list[Event]) -> bool:
        """Apply self-trade prevention to a taker meeting its own account's maker (at the front of
        ``level``); True if the taker is done."""
        stp = self.stp
        if stp is not _CANCEL_TAKER:
            level.orders.popleft()
            del self._orders[maker.id]
            level.total -= maker.leaves
            events.append(Canceled(maker.id, _SELF_TRADE, maker.leaves))
            maker.leaves = 0
            if stp is _CANCEL_MAKER:
                return False
        events.append(Canceled(taker.id, _SELF_TRADE, taker.leaves))
        taker.leaves = 0
        return True

    # The two taker loops mirror each other. They are written out per side because this is the
    # venue's hottest code and a side-generic loop pays for its indirection on every fill.

    def _take_buy(self, taker: WorkingOrder, events: list[Event]) -> None:  # noqa: PLR0912, PLR0915 - see above
        """Match a buy taker against the asks, lowest first, up to its limit; sets its ``leaves``."""
        prices, levels, orders, append = self._ask_prices, self._asks, self._orders, events.append
        limit, leaves, taker_id, account = taker.price, taker.leaves, taker.id, taker.account
        trade_id, step = self._trade_id, self._trade_step
        while prices:
            price = prices[0]
            if price > limit:
                break
            level = levels[price]
            queue = level.orders
            total = before = level.total
            while total:
                maker = queue[0]
                maker_leaves = maker.leaves
                if not maker_leaves:  # dead: canceled or replaced while resting
                    queue.popleft()
                    level.dead -= 1
                    continue
                if maker.account == account:
                    taker.leaves, level.total = leaves, total
                    done = self._self_trade(taker, maker, level, events)
                    total = level.total
                    if done:
                        leaves = 0
                        break
                    continue
                trade_id += step
                if maker_leaves <= leaves:
                    queue.popleft()
                    del orders[maker.id]
                    maker.leaves = 0
                    leaves -= maker_leaves
                    total -= maker_leaves
                    append(
                        Fill(trade_id, price, maker_leaves, _BUY, taker_id, maker.id, account, maker.account, leaves, 0)
                    )
                    if not leaves:
                        break
                else:
                    maker.leaves = rest = maker_leaves - leaves
                    total -= leaves
                    append(Fill(trade_id, price, leaves, _BUY, taker_id, maker.id, account, maker.account, 0, rest))
                    leaves = 0
                    break
            if total != before:
                level.total = total
                self._update_id += 1
                append(LevelUpdate(self._update_id, _SELL, price, total))
                if not total:
                    del levels[price]
                    del prices[0]
            if trade_id != self._trade_id:
                self._last, self._trade_id = price, trade_id
            if not leaves:
                break
        taker.leaves = leaves

    def _take_sell(self, taker: WorkingOrder, events: list[Event]) -> None:  # noqa: PLR0912, PLR0915 - see above
        """Match a sell taker against the bids, highest first, down to its limit; sets its ``leaves``."""
        prices, levels, orders, append = self._bid_prices, self._bids, self._orders, events.append
        limit, leaves, taker_id, account = taker.price, taker.leaves, taker.id, taker.account
        trade_id, step = self._trade_id, self._trade_step
        while prices:
            price = prices[-1]
            if price < limit:
                break
            level = levels[price]
            queue = level.orders
            total = before = level.total
            while total:
                maker = queue[0]
                maker_leaves = maker.leaves
                if not maker_leaves:  # dead: canceled or replaced while resting
                    queue.popleft()
                    level.dead -= 1
                    continue
                if maker.account == account:
                    taker.leaves, level.total = leaves, total
                    done = self._self_trade(taker, maker, level, events)
                    total = level.total
                    if done:
                        leaves = 0
                        break
                    continue
                trade_id += step
                if maker_leaves <= leaves:
                    queue.popleft()
                    del orders[maker.id]
                    maker.leaves = 0
                    leaves -= maker_leaves
                    total -= maker_leaves
                    append(
                        Fill(
                            trade_id, price, maker_leaves, _SELL, taker_id, maker.id, account, maker.account, leaves, 0
                        )
                    )
                    if not leaves:
                        break
                else:
                    maker.leaves = rest = maker_leaves - leaves
                    total -= leaves
                    append(Fill(trade_id, price, leaves, _SELL, taker_id, maker.id, account, maker.account, 0, rest))
                    leaves = 0
                    break
            if total != before:
                level.total = total
                self._update_id += 1
                append(LevelUpdate(self._update_id, _BUY, price, total))
                if not total:
                    del levels[price]
                    prices.pop()
            if trade_id != self._trade_id:
                self._last, self._trade_id = price, trade_id
            if not leaves:
                break
        taker.leaves = leaves
