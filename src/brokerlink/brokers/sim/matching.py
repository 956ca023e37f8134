"""The sim venue's price-time priority matching engine, one per instrument.

Pure and deterministic: no I/O, no clock, no randomness, no asyncio. Every call returns the list of
events it caused (:mod:`brokerlink.brokers.sim.book`), in the order they happened.

The rules, as real venues apply them:

- **Price-time priority.** An incoming order trades with the best opposite price first and, within
  a price, with the order that has rested longest. Every trade is at the resting (maker) order's
  price, never outside the incoming order's limit.
- **Order types.** ``market`` trades what it can and never rests: a remainder is canceled with
  ``no_liquidity``. ``limit`` trades up to its price; the rest rests (GTC, DAY). ``stop`` and
  ``stop_limit`` wait outside the book until the last trade price crosses the stop (buy: last >=
  stop; sell: last <= stop), then work as a market or limit order with their time in force. A stop
  whose trigger is already crossed when it arrives triggers at once. Triggers cascade: a triggered
  order's trades can trigger further stops. Stops crossed together trigger one at a time in the
  order the price passed them (trigger price, then arrival).
- **Time in force.** GTC rests until canceled; DAY until :meth:`MatchingEngine.expire_day`. IOC
  cancels what does not fill at once (``ioc_remainder``). FOK first checks that the book can fill
  all of it within its limit; if not it is canceled (``fok_unfilled``) with no trade and no other
  side effect.
- **Modify.** Lowering the quantity keeps the order's place in the queue. Changing the price or
  raising the quantity sends it to the back of the queue at its (new) price, exactly as a cancel
  and a new order would, because that is how real venues treat it (otherwise a trader could jump
  the queue by amending); a new price that crosses the book trades at once. ``qty`` is the new
  total quantity, filled part included (FIX cancel/replace); it must exceed what is already filled.
  A pending stop's trigger price (and a stop-limit's limit price) can be modified too.
- **Self-trade prevention** per account, as configured (:class:`SelfTradePrevention`): two orders of
  the same account never trade with each other.

The core counts in integers, prices in ticks and quantities in lots (:class:`Grid`), because Decimal
arithmetic would cost the venue's hot path several times over. The ``*_ticks`` methods are that core;
:meth:`MatchingEngine.submit` and :meth:`MatchingEngine.modify` are a Decimal façade that refuses
off-grid values with a :class:`Rejected` event.
"""

from __future__ import annotations

from decimal import Context, Decimal, DivisionByZero, InvalidOperation, Overflow
from heapq import heappop, heappush

import msgspec

from brokerlink.brokers.sim.book import (
    Accepted,
    Canceled,
    CancelReason,
    Event,
    Expired,
    LevelUpdate,
    OrderBook,
    PriceLevel,
    Rejected,
    Replaced,
    RequestKind,
    SelfTradePrevention,
    Triggered,
    WorkingOrder,
)
from brokerlink.domain.enums import OrderType, Side, TimeInForce
from brokerlink.domain.models import Instrument
from brokerlink.kit.money import MoneyError, to_decimal

__all__ = ["Grid", "MatchingEngine", "OffGrid", "OrderView"]

# Module-level aliases: a global load is cheaper than an enum attribute lookup on the hot path.
_BUY = Side.BUY
_SELL = Side.SELL
_MARKET = OrderType.MARKET
_LIMIT = OrderType.LIMIT
_STOP = OrderType.STOP
_STOP_LIMIT = OrderType.STOP_LIMIT
_GTC = TimeInForce.GTC
_DAY = TimeInForce.DAY
_IOC = TimeInForce.IOC
_FOK = TimeInForce.FOK
_SUBMIT = RequestKind.SUBMIT
_CANCEL = RequestKind.CANCEL
_MODIFY = RequestKind.MODIFY
_USER = CancelReason.USER
_IOC_REMAINDER = CancelReason.IOC_REMAINDER
_FOK_UNFILLED = CancelReason.FOK_UNFILLED
_NO_LIQUIDITY = CancelReason.NO_LIQUIDITY

# A market order is a limit order at a price nothing lies beyond: prices are positive ticks, so a
# market sell's limit is 0 and a market buy's is above any price a venue will ever quote.
_NO_LIMIT_BUY = 1 << 62
_NO_LIMIT_SELL = 0

# Wide enough for any price or quantity a venue handles, and it traps instead of rounding, so a value
# that does not fit fails loudly rather than landing one tick off.
_EXACT = Context(prec=120, traps=[InvalidOperation, DivisionByZero, Overflow])


class OffGrid(MoneyError):
    """A price or quantity that is not a whole number of ticks or steps."""


class Grid:
    """Exact conversion between Decimal prices and quantities and the engine's ticks and lots."""

    __slots__ = ("qty_step", "tick_size")

    def __init__(self, tick_size: Decimal, qty_step: Decimal) -> None:
        for name, step in (("tick_size", tick_size), ("qty_step", qty_step)):
            if not isinstance(step, Decimal) or not step.is_finite() or step <= 0:
                raise MoneyError(f"{name} must be a positive finite Decimal, got {step!r}")
        self.tick_size = tick_size
        self.qty_step = qty_step

    @staticmethod
    def _steps(value: Decimal | int | str, step: Decimal, what: str) -> int:
        number = to_decimal(value)
        try:
            whole, remainder = _EXACT.divmod(number, step)
        except (InvalidOperation, Overflow) as exc:
            raise OffGrid(f"{what} {number} is out of range for a step of {step}") from exc
        if remainder:
            raise OffGrid(f"{what} {number} is not a multiple of {step}")
        return int(whole)

    def ticks(self, price: Decimal | int | str) -> int:
        """Price → ticks; :class:`OffGrid` unless it is a whole number of ticks (a float: MoneyError)."""
        return self._steps(price, self.tick_size, "price")

    def lots(self, qty: Decimal | int | str) -> int:
        """Quantity → lots; :class:`OffGrid` unless it is a whole number of steps (a float: MoneyError)."""
        return self._steps(qty, self.qty_step, "quantity")

    def price(self, ticks: int) -> Decimal:
        """Ticks → price, with the tick size's decimals (``12345`` ticks of ``0.00001`` → ``0.12345``)."""
        return _EXACT.multiply(Decimal(ticks), self.tick_size)

    def qty(self, lots: int) -> Decimal:
        """Lots → quantity, with the step's decimals."""
        return _EXACT.multiply(Decimal(lots), self.qty_step)

    def lots_at_least(self, qty: Decimal) -> int:
        """The fewest lots that make at least ``qty`` (for an instrument's ``min_qty``)."""
        whole, remainder = _EXACT.divmod(to_decimal(qty), self.qty_step)
        return int(whole) + (1 if remainder > 0 else 0)


class OrderView(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a working order: prices in ticks, quantities in lots."""

    order_id: int
    account: str
    side: Side
    order_type: OrderType
    tif: TimeInForce
    qty: int
    leaves: int
    price: int | None
    stop_price: int | None
    stop_pending: bool
    """True while a stop waits for its trigger; False once it rests in the book."""


class MatchingEngine(OrderBook):
    """Price-time priority matching for one instrument (the module docstring has the rules).

    Order ids are the caller's; the engine refuses one that is still working. ``trade_id_base`` and
    ``trade_id_step`` keep trade ids unique across a venue's engines while each engine's increase:
    engine ``i`` of ``n`` uses base ``i`` and step ``n``.
    """

    def __init__(
        self,
        instrument: Instrument,
        *,
        stp: SelfTradePrevention = SelfTradePrevention.CANCEL_TAKER,
        trade_id_base: int = 0,
        trade_id_step: int = 1,
    ) -> None:
        super().__init__(stp, trade_id_base, trade_id_step)
        self.instrument = instrument
        self.grid = Grid(instrument.tick_size, instrument.qty_step)
        self._min_lots = max(1, self.grid.lots_at_least(instrument.min_qty))
        max_qty = instrument.max_qty
        self._max_lots = _NO_LIMIT_BUY if max_qty is None else int(_EXACT.divide_int(max_qty, self.grid.qty_step))
        self._stops: dict[int, WorkingOrder] = {}  # waiting for their trigger
        # Trigger queues of (key, seq, order); entries of canceled or re-priced stops go stale and are
        # skipped when they surface.
        self._buy_stops: list[tuple[int, int, WorkingOrder]] = []  # key: stop price, lowest first
        self._sell_stops: list[tuple[int, int, WorkingOrder]] = []  # key: -stop price, highest first
        self._stop_seq = 0

    def order(self, order_id: int) -> OrderView | None:
        """The working order with this id (resting or a pending stop), or None once it is done."""
        order = self._orders.get(order_id)
        pending = order is None
        if order is None:
            order = self._stops.get(order_id)
            if order is None:
                return None
        return OrderView(
            order_id=order.id,
            account=order.account,
            side=order.side,
            order_type=order.kind,
            tif=order.tif,
            qty=order.qty,
            leaves=order.leaves,
            price=order.price if order.kind is _LIMIT or order.kind is _STOP_LIMIT else None,
            stop_price=order.stop,
            stop_pending=pending,
        )

    def open_order_ids(self) -> list[int]:
        """Ids of every working order: resting ones, then pending stops."""
        return [*self._orders, *self._stops]

    # ------------------------------------------------------------------ integer API: the hot path

    def submit_ticks(  # noqa: PLR0917 - positional on purpose: the venue's hot path calls it
        self,
        order_id: int,
        account: str,
        side: Side,
        qty: int,
        order_type: OrderType = OrderType.LIMIT,
        tif: TimeInForce = TimeInForce.GTC,
        price: int | None = None,
        stop_price: int | None = None,
    ) -> list[Event]:
        """Submit an order: ``qty`` in lots, limit ``price`` and ``stop_price`` in ticks.

        ``price`` is required for limit and stop-limit orders and refused for the others;
        ``stop_price`` likewise for stop and stop-limit. Returns the events it caused, starting with
        :class:`Accepted` or :class:`Rejected`.
        """
        if order_id in self._orders or order_id in self._stops:
            return [Rejected(order_id, _SUBMIT, "duplicate order id: an order with this id is still working")]
        if (
            order_type is _LIMIT
            and price is not None
            and price > 0
            and stop_price is None
            and self._min_lots <= qty <= self._max_lots
            and (side is _BUY or side is _SELL)
            and (tif is _GTC or tif is _DAY or tif is _IOC or tif is _FOK)
        ):
            limit = price  # the common case, checked inline
        else:
            reason = self._refusal(side, qty, order_type, tif, price, stop_price)
            if reason:
                return [Rejected(order_id, _SUBMIT, reason)]
            limit = price if price is not None else (_NO_LIMIT_BUY if side is _BUY else _NO_LIMIT_SELL)
        order = WorkingOrder(order_id, account, side, limit, qty, qty, tif, order_type, stop_price)
        accepted = Accepted(order_id, account, side, order_type, tif, qty, price, stop_price)
        if order_type is _LIMIT and (tif is _GTC or tif is _DAY):
            # The common case, short-cut: a limit order that does not cross rests at once.
            if side is _BUY:
                if not self._ask_prices or self._ask_prices[0] > limit:
                    return [accepted, self._rest(order)]
            elif not self._bid_prices or self._bid_prices[-1] < limit:
                return [accepted, self._rest(order)]
        events: list[Event] = [accepted]
        if stop_price is not None:
            self._arm_stop(order, stop_price, events)
            return events
        last = self._last
        self._execute(order, events)
        if self._last != last and (self._buy_stops or self._sell_stops):
            self._run_stops(events)
        return events

    def cancel(self, order_id: int) -> list[Event]:
        """Cancel a working order (resting or a pending stop): :class:`Canceled` with reason ``user``."""
        order = self._orders.pop(order_id, None)
        if order is None:
            stop = self._stops.pop(order_id, None)
            if stop is None:
                return [Rejected(order_id, _CANCEL, "unknown order: never seen, or already done")]
            return [Canceled(order_id, _USER, stop.leaves)]
        return [Canceled(order_id, _USER, order.leaves), self._unrest(order)]

    def modify_ticks(
        self, order_id: int, qty: int | None = None, price: int | None = None, stop_price: int | None = None
    ) -> list[Event]:
        """Modify a working order: new total ``qty`` (lots), limit ``price``, ``stop_price`` (ticks).

        Lowering the quantity keeps time priority; a new price or a larger quantity loses it, and a
        new price that crosses the book trades at once. ``stop_price`` applies to pending stops only.
        """
        order = self._orders.get(order_id)
        pending = order is None
        if order is None:
            order = self._stops.get(order_id)
            if order is None:
                return [Rejected(order_id, _MODIFY, "unknown order: never seen, or already done")]
        reason = self._modify_refusal(order, qty, price, stop_price, pending=pending)
        if reason:
            return [Rejected(order_id, _MODIFY, reason)]
        new_qty = order.qty if qty is None else qty
        new_leaves = new_qty - (order.qty - order.leaves)
        if pending:
            return self._modify_stop(order, new_qty, new_leaves, price, stop_price)
        new_price = order.price if price is None else price
        if new_price == order.price and new_leaves <= order.leaves:
            # Same price, same or smaller size: the order keeps its place in the queue.
            delta = order.leaves - new_leaves
            order.qty, order.leaves = new_qty, new_leaves
            events: list[Event] = [Replaced(order_id, new_qty, new_leaves, new_price, order.stop, priority_kept=True)]
            if delta:
                level = (self._bids if order.side is _BUY else self._asks)[new_price]
                level.total -= delta
                self._update_id += 1
                events.append(LevelUpdate(self._update_id, order.side, new_price, level.total))
            return events
        # Otherwise out of the queue and back in as a new arrival, which may trade at once.
        del self._orders[order_id]
        events = [Replaced(order_id, new_qty, new_leaves, new_price, order.stop, priority_kept=False)]
        events.append(self._unrest(order))
        replacement = WorkingOrder(
            order_id, order.account, order.side, new_price, new_qty, new_leaves, order.tif, order.kind, order.stop
        )
        last = self._last
        self._execute(replacement, events)
        if self._last != last and (self._buy_stops or self._sell_stops):
            self._run_stops(events)
        return events

    def expire_day(self) -> list[Event]:
        """End of the trading day: every DAY order, resting or a pending stop, expires (in arrival order)."""
        events: list[Event] = []
        touched: dict[tuple[Side, int], PriceLevel] = {}
        for order_id, order in list(self._orders.items()):
            if order.tif is _DAY:
                del self._orders[order_id]
                events.append(Expired(order_id, order.leaves))
                level = (self._bids if order.side is _BUY else self._asks)[order.price]
                level.total -= order.leaves
                level.dead += 1
                order.leaves = 0
                touched[order.side, order.price] = level
        for (side, price), level in touched.items():
            self._update_id += 1
            events.append(LevelUpdate(self._update_id, side, price, level.total))
            if level.total:
                if level.dead * 2 > len(level.orders):
                    self._compact(level)
            else:
                self._drop_level(side, price)
        for order_id, order in list(self._stops.items()):
            if order.tif is _DAY:
                del self._stops[order_id]
                events.append(Expired(order_id, order.leaves))
        return events

    # ------------------------------------------------------------------ Decimal façade

    def submit(
        self,
        order_id: int,
        account: str,
        side: Side,
        qty: Decimal,
        *,
        order_type: OrderType = OrderType.LIMIT,
        tif: TimeInForce = TimeInForce.GTC,
        price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> list[Event]:
        """:meth:`submit_ticks` with Decimal quantity and prices; off-grid values are :class:`Rejected`.

        Enum arguments may be given as their strings (``"buy"``). The events still carry ticks and
        lots: :attr:`grid` converts them.
        """
        grid = self.grid
        try:
            side, order_type, tif = Side(side), OrderType(order_type), TimeInForce(tif)
            lots = grid.lots(qty)
            ticks = None if price is None else grid.ticks(price)
            stop_ticks = None if stop_price is None else grid.ticks(stop_price)
        except ValueError as exc:  # MoneyError and OffGrid are ValueErrors too
            return [Rejected(order_id, _SUBMIT, str(exc))]
        return self.submit_ticks(order_id, account, side, lots, order_type, tif, ticks, stop_ticks)

    def modify(
        self,
        order_id: int,
        *,
        qty: Decimal | None = None,
        price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> list[Event]:
        """:meth:`modify_ticks` with Decimal quantity and prices; off-grid values are :class:`Rejected`."""
        grid = self.grid
        try:
            lots = None if qty is None else grid.lots(qty)
            ticks = None if price is None else grid.ticks(price)
            stop_ticks = None if stop_price is None else grid.ticks(stop_price)
        except MoneyError as exc:
            return [Rejected(order_id, _MODIFY, str(exc))]
        return self.modify_ticks(order_id, lots, ticks, stop_ticks)

    # ------------------------------------------------------------------ internals

    def _execute(self, order: WorkingOrder, events: list[Event]) -> None:
        """Match an incoming (new, triggered or re-priced) order, then rest or cancel what is left."""
        if order.tif is _FOK and not self._fillable(order):
            events.append(Canceled(order.id, _FOK_UNFILLED, order.leaves))
            order.leaves = 0
            return
        if order.side is _BUY:
            if self._ask_prices and self._ask_prices[0] <= order.price:
                self._take_buy(order, events)
        elif self._bid_prices and self._bid_prices[-1] >= order.price:
            self._take_sell(order, events)
        leaves = order.leaves
        if not leaves:
            return
        if order.kind is _MARKET or order.kind is _STOP:
            events.append(Canceled(order.id, _NO_LIQUIDITY, leaves))
        elif order.tif is _IOC or order.tif is _FOK:
            events.append(Canceled(order.id, _IOC_REMAINDER, leaves))
        else:
            events.append(self._rest(order))
            return
        order.leaves = 0

    def _arm_stop(self, order: WorkingOrder, stop: int, events: list[Event]) -> None:
        """Queue a stop for its trigger, and trigger it now if the last trade already crossed it."""
        self._stops[order.id] = order
        self._stop_seq += 1
        if order.side is _BUY:
            heappush(self._buy_stops, (stop, self._stop_seq, order))
        else:
            heappush(self._sell_stops, (-stop, self._stop_seq, order))
        self._run_stops(events)

    def _run_stops(self, events: list[Event]) -> None:
        """Trigger the stops the last trade price has crossed, one at a time, until none is left (cascades)."""
        stops, buys, sells = self._stops, self._buy_stops, self._sell_stops
        while (last := self._last) is not None:
            while buys and stops.get(buys[0][2].id) is not buys[0][2]:
                heappop(buys)  # stale: canceled, triggered, expired or re-priced
            while sells and stops.get(sells[0][2].id) is not sells[0][2]:
                heappop(sells)
            if buys and buys[0][0] <= last:
                stop, _, order = heappop(buys)
            elif sells and -sells[0][0] >= last:
                key, _, order = heappop(sells)
                stop = -key
            else:
                return
            del stops[order.id]
            events.append(Triggered(order.id, stop, last))
            self._execute(order, events)

    def _modify_stop(
        self, order: WorkingOrder, new_qty: int, new_leaves: int, price: int | None, stop_price: int | None
    ) -> list[Event]:
        if price is not None:
            order.price = price
        order.qty, order.leaves = new_qty, new_leaves
        shown_price = order.price if order.kind is _STOP_LIMIT else None
        if stop_price is None or stop_price == order.stop:
            return [Replaced(order.id, new_qty, new_leaves, shown_price, order.stop, priority_kept=True)]
        # A new trigger price takes a new place among the stops; a fresh object makes the old entry stale.
        moved = WorkingOrder(
            order.id, order.account, order.side, order.price, new_qty, new_leaves, order.tif, order.kind, stop_price
        )
        events: list[Event] = [Replaced(order.id, new_qty, new_leaves, shown_price, stop_price, priority_kept=False)]
        self._arm_stop(moved, stop_price, events)
        return events

    def _qty_refusal(self, qty: int) -> str:
        if qty < self._min_lots:
            return f"quantity of {qty} lots is below the minimum of {self._min_lots} lots"
        if qty > self._max_lots:
            return f"quantity of {qty} lots is above the maximum of {self._max_lots} lots"
        return ""

    def _refusal(  # noqa: PLR0911, PLR0917 - one reason per way an order can be malformed
        self,
        side: Side,
        qty: int,
        order_type: OrderType,
        tif: TimeInForce,
        price: int | None,
        stop_price: int | None,
    ) -> str:
        """Why a new order is refused ('' if it is fine). Enums must be the members themselves."""
        if side is not _BUY and side is not _SELL:
            return f"unknown side {side!r}"
        if tif is not _GTC and tif is not _DAY and tif is not _IOC and tif is not _FOK:
            return f"unknown time in force {tif!r}"
        if (
            order_type is not _MARKET
            and order_type is not _LIMIT
            and order_type is not _STOP
            and order_type is not _STOP_LIMIT
        ):
            return f"unknown order type {order_type!r}"
        needs_price = order_type is _LIMIT or order_type is _STOP_LIMIT
        needs_stop = order_type is _STOP or order_type is _STOP_LIMIT
        if needs_price != (price is not None):
            return f"a {order_type.value} order {'needs a' if needs_price else 'takes no'} limit price"
        if needs_stop != (stop_price is not None):
            return f"a {order_type.value} order {'needs a' if needs_stop else 'takes no'} stop price"
        if (price is not None and price <= 0) or (stop_price is not None and stop_price <= 0):
            return "prices must be positive"
        return self._qty_refusal(qty)

    def _modify_refusal(  # noqa: PLR0911 - one reason per way a modify can be wrong
        self, order: WorkingOrder, qty: int | None, price: int | None, stop_price: int | None, *, pending: bool
    ) -> str:
        """Why a modify is refused ('' if it is fine)."""
        if qty is None and price is None and stop_price is None:
            return "nothing to modify"
        if qty is not None:
            filled = order.qty - order.leaves
            if qty <= filled:
                return f"new quantity of {qty} lots does not exceed the {filled} lots already filled"
            if reason := self._qty_refusal(qty):
                return reason
        if price is not None and (order.kind is _MARKET or order.kind is _STOP):
            return f"a {order.kind.value} order has no limit price"
        if stop_price is not None and not pending:
            return "only a stop order waiting for its trigger has a stop price to modify"
        if (price is not None and price <= 0) or (stop_price is not None and stop_price <= 0):
            return "prices must be positive"
        return ""
