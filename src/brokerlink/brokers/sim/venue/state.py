"""The venue core: engines, the market maker, accounts, orders, fills and what is published.

One :class:`Venue` serves one instrument set. Everything runs on one event loop and no method awaits
while it changes state, so a request is applied atomically. Each matching-engine call goes through
:meth:`Venue._run`, which turns the engine's events into order updates, account bookings, fills, and
``trade_updates`` / ``trades`` / ``depth`` / ``quotes`` messages, in the order they happened.

The market maker is an account of the engine only (``MM_ACCOUNT``): it is never booked, so its funds
are unlimited, and the engine's self-trade prevention keeps it from ever trading with itself. Its
resting orders are reconciled to :func:`liquidity_ladder` around the generator's mid at every
:meth:`Venue.step`, so market orders walk a real book.
"""

from __future__ import annotations

import asyncio
import bisect
import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from brokerlink.brokers.sim.accounts import InsufficientFunds, SimAccount
from brokerlink.brokers.sim.book import (
    Accepted,
    Canceled,
    Event,
    Expired,
    Fill,
    LevelUpdate,
    Rejected,
    Replaced,
    SelfTradePrevention,
    Triggered,
)
from brokerlink.brokers.sim.gate import ApiKey, Gate, WireError
from brokerlink.brokers.sim.instruments import Liquidity, SimInstrument, instrument_set
from brokerlink.brokers.sim.marketdata import MarketDataGenerator, MidRates, liquidity_ladder
from brokerlink.brokers.sim.matching import MatchingEngine
from brokerlink.brokers.sim.venue.config import VenueConfig
from brokerlink.brokers.sim.venue.faults import Faults
from brokerlink.brokers.sim.venue.hub import TRADE_UPDATES, Hub
from brokerlink.brokers.sim.venue.orders import VenueOrder
from brokerlink.brokers.sim.venue.reports import account_body, depth_body, instrument_bodies, position_bodies
from brokerlink.brokers.sim.venue.rules import check_amend, check_new_order
from brokerlink.brokers.sim.wire import (
    AccountBody,
    AmendOrder,
    DepthBody,
    DepthDiff,
    ErrorCode,
    FillBody,
    FillsPage,
    InstrumentBody,
    NewOrder,
    OrderBody,
    PositionBody,
    QuoteBody,
    TradeBody,
    TradeUpdate,
    TradeUpdateEvent,
)
from brokerlink.domain.enums import AccountMode, OrderStatus, OrderType, Side, TimeInForce
from brokerlink.domain.models import Quote
from brokerlink.kit.clock import Clock, SystemClock
from brokerlink.kit.errors import InvalidInput, NotFound

MM_ACCOUNT = "__market_maker__"
MAX_FILLS_PAGE = 1_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(when: datetime) -> datetime:
    """Truncate to milliseconds: the wire's time resolution."""
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


class Venue:
    """A sim venue's whole state; the REST and WebSocket layers are thin shells around it."""

    def __init__(
        self,
        config: VenueConfig,
        *,
        clock: Clock | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        instruments: Sequence[SimInstrument] | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.faults = Faults(seed=config.seed, sleep=sleep)
        self.hub = Hub()
        # ``instruments`` replaces the configured set: a vendor's test venue (issue 7) lists its own mix.
        listed = tuple(instruments) if instruments is not None else instrument_set(config.instrument_set).instruments
        self._entries: dict[str, SimInstrument] = {e.instrument.venue_symbol: e for e in listed}
        self._canonical = {e.instrument.symbol: e for e in listed}
        n = len(self._entries)
        self._engines = {
            sym: MatchingEngine(e.instrument, stp=SelfTradePrevention.CANCEL_TAKER, trade_id_base=i, trade_id_step=n)
            for i, (sym, e) in enumerate(self._entries.items())
        }
        self._market = MarketDataGenerator(listed, seed=config.seed, clock=self.clock)
        self._rates = MidRates([e.instrument for e in listed])
        self._rates.set_rate("USDT", "USD", Decimal(1))
        self.accounts = {
            a.account_id: SimAccount(
                a.account_id, a.currency, cash=a.cash, clock=self.clock, mode=a.mode, rates=self._rates
            )
            for a in config.accounts
        }
        keys = {a.api_key: ApiKey(key=a.api_key, secret=a.api_secret, account_id=a.account_id) for a in config.accounts}
        self.gate = Gate(
            keys, signed=config.signed, rate_limits=config.rate_limits, now_ms=self.now_ms, skew_ms=self.faults.skew_ms
        )
        self._orders: dict[int, VenueOrder] = {}
        self._by_client: dict[tuple[str, str], VenueOrder] = {}
        self._fills: dict[str, list[FillBody]] = {a: [] for a in self.accounts}
        self._order_seq = 0
        self._fill_seq = 0
        # Execution ids must never repeat, even across venue restarts (this venue keeps no state):
        # clients deduplicate fills by them, forever. A per-start prefix keeps them unique.
        self._session = secrets.token_hex(4)
        self._mm: dict[str, dict[tuple[Side, int], int]] = {sym: {} for sym in self._entries}
        self._tops: dict[str, tuple[Decimal, Decimal, Decimal, Decimal]] = {}
        self._session_day = self.clock.now().date()
        for quote in self._market.quotes():
            self._mark(quote)
        for sym in self._entries:
            self._reconcile(sym)

    @property
    def symbols(self) -> list[str]:
        """The venue's symbols (its own spelling: ``EURUSD``)."""
        return list(self._entries)

    # --- time and market data ---------------------------------------------------------------------

    def now_ms(self) -> int:
        """The venue clock in ms since the epoch (the gate's receive window uses it)."""
        return (self.clock.now() - _EPOCH) // timedelta(milliseconds=1)

    def _now(self) -> datetime:
        return _ms(self.clock.now())

    def step(self, dt: timedelta | None = None) -> None:
        """Advance market data one tick: new mids, marks, the market maker's ladder, quotes.

        Also releases a held-back (reordered) trade update and ends the session when the venue
        clock has crossed midnight UTC. Tests call it with a ManualClock and no background loop.
        """
        for quote in self._market.step(dt or timedelta(seconds=self.config.tick_interval_s)):
            self._mark(quote)
        for sym in self._entries:
            self._reconcile(sym)
            self._publish_quote(sym, force=True)
        for account_id, update in self.faults.flush():
            self.hub.publish(TRADE_UPDATES, update, account_id=account_id)
        today = self.clock.now().date()
        if today != self._session_day:
            self._session_day = today
            self.end_session()

    async def run(self) -> None:
        """The market data loop: :meth:`step` every ``tick_interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.config.tick_interval_s)
            self.step()

    def set_mid(self, symbol: str, price: Decimal) -> None:
        """Move an instrument's mid by hand and re-quote the market maker around it (tests, demo)."""
        entry = self._entry(symbol)
        self._market.set_mid(entry.instrument.symbol, price)
        self._mark(self._market.quote(entry.instrument.symbol))
        self._reconcile(symbol)

    def end_session(self) -> int:
        """End of the trading day: every DAY order expires. Returns how many did."""
        expired = 0
        for sym, engine in self._engines.items():
            events = engine.expire_day()
            expired += sum(1 for e in events if isinstance(e, Expired) and e.order_id in self._orders)
            self._run(sym, events)
        return expired

    def _mark(self, quote: Quote) -> None:
        self._rates.update(quote)
        for account in self.accounts.values():
            account.update_quote(quote)

    def _reconcile(self, sym: str) -> None:
        """Bring the market maker's resting orders in line with the ladder around the current mid."""
        entry, engine = self._entries[sym], self._engines[sym]
        grid = engine.grid
        ladder = liquidity_ladder(entry, self._market.mid(entry.instrument.symbol))
        desired = {(lvl.side, grid.ticks(lvl.price)): grid.lots(lvl.qty) for lvl in ladder}
        mine = self._mm[sym]
        for key, order_id in list(mine.items()):
            view = engine.order(order_id)
            if view is None or desired.get(key) != view.leaves:
                del mine[key]
                if view is not None:
                    self._run(sym, engine.cancel(order_id))
        for (side, ticks), lots in desired.items():
            if (side, ticks) not in mine:
                order_id = self._next_order_id()
                mine[side, ticks] = order_id
                self._run(
                    sym, engine.submit_ticks(order_id, MM_ACCOUNT, side, lots, OrderType.LIMIT, TimeInForce.GTC, ticks)
                )

    def _next_order_id(self) -> int:
        self._order_seq += 1
        return self._order_seq

    # --- lookups ------------------------------------------------------------------------------------

    def _entry(self, symbol: str) -> SimInstrument:
        entry = self._entries.get(symbol)
        if entry is None:
            raise WireError(404, ErrorCode.INVALID_ORDER, f"unknown symbol {symbol!r}")
        return entry

    def _account(self, account_id: str) -> SimAccount:
        return self.accounts[account_id]

    def order(self, account_id: str, order_id: str) -> OrderBody:
        """One of the account's orders by venue id (404 ``unknown_order``)."""
        order = self._orders.get(int(order_id)) if order_id.isdigit() else None
        if order is None or order.account_id != account_id:
            raise WireError(404, ErrorCode.UNKNOWN_ORDER, f"no order {order_id!r}")
        return order.body()

    def _by_coid(self, account_id: str, client_order_id: str) -> VenueOrder:
        order = self._by_client.get((account_id, client_order_id))
        if order is None:
            raise WireError(404, ErrorCode.UNKNOWN_ORDER, f"no order with client order id {client_order_id!r}")
        return order

    def order_by_client_id(self, account_id: str, client_order_id: str) -> OrderBody:
        """One of the account's orders by client order id (404 ``unknown_order``)."""
        return self._by_coid(account_id, client_order_id).body()

    def orders(self, account_id: str, *, open_only: bool = True) -> list[OrderBody]:
        """The account's working orders (or all of them), oldest first."""
        return [o.body() for o in self._orders.values() if o.account_id == account_id and (o.is_open or not open_only)]

    # --- commands -------------------------------------------------------------------------------------

    def place(self, account_id: str, new: NewOrder) -> OrderBody:
        """Validate, check margin, match. Raises :class:`WireError` for every refusal (ADR 0006)."""
        if self.faults.take_reject():
            raise WireError(400, ErrorCode.INVALID_ORDER, "order refused (injected fault: reject_next)")
        entry = self._entries.get(new.symbol)
        if entry is None:
            raise WireError(400, ErrorCode.INVALID_ORDER, f"unknown symbol {new.symbol!r}")
        if (account_id, new.client_order_id) in self._by_client:
            raise WireError(
                409, ErrorCode.DUPLICATE_CLIENT_ORDER_ID, f"client order id {new.client_order_id!r} is already used"
            )
        engine = self._engines[new.symbol]
        price = check_new_order(entry.instrument, engine, new, self._touch(new.symbol, new.side))
        self._check_funds(account_id, entry, new.side, new.qty, price)
        order = VenueOrder(
            order_id=self._next_order_id(),
            account_id=account_id,
            client_order_id=new.client_order_id,
            symbol=new.symbol,
            side=new.side,
            qty=new.qty,
            type=new.type,
            tif=new.tif,
            limit_price=new.limit_price,
            stop_price=new.stop_price,
            tick_size=entry.instrument.tick_size,
            now=self._now(),
        )
        self._orders[order.order_id] = order
        events = engine.submit(
            order.order_id,
            account_id,
            new.side,
            new.qty,
            order_type=new.type,
            tif=new.tif,
            price=new.limit_price,
            stop_price=new.stop_price,
        )
        if isinstance(events[0], Rejected):
            del self._orders[order.order_id]
            raise WireError(400, ErrorCode.INVALID_ORDER, events[0].reason)
        self._by_client[account_id, new.client_order_id] = order
        self._run(new.symbol, events)
        return order.body()

    def amend(self, account_id: str, client_order_id: str, amend: AmendOrder) -> OrderBody:
        """Change a working order's qty, limit or stop price (the engine's modify rules apply)."""
        order = self._by_coid(account_id, client_order_id)
        if not order.is_open:
            raise WireError(
                400, ErrorCode.INVALID_ORDER, f"order {client_order_id!r} is {order.status}: nothing to amend"
            )
        entry, engine = self._entries[order.symbol], self._engines[order.symbol]
        check_amend(entry.instrument, engine, amend)
        if amend.qty is not None and amend.qty > order.qty:
            price = amend.limit_price or order.limit_price or amend.stop_price or order.stop_price
            price = price or self._touch(order.symbol, order.side)
            self._check_funds(account_id, entry, order.side, amend.qty - order.qty, price)
        events = engine.modify(order.order_id, qty=amend.qty, price=amend.limit_price, stop_price=amend.stop_price)
        if isinstance(events[0], Rejected):
            raise WireError(400, ErrorCode.INVALID_ORDER, events[0].reason)
        self._run(order.symbol, events)
        return order.body()

    def cancel(self, account_id: str, client_order_id: str) -> OrderBody:
        """Cancel one working order."""
        order = self._by_coid(account_id, client_order_id)
        if not order.is_open:
            raise WireError(
                400, ErrorCode.INVALID_ORDER, f"order {client_order_id!r} is {order.status}: not cancelable"
            )
        self._run(order.symbol, self._engines[order.symbol].cancel(order.order_id))
        return order.body()

    def cancel_all(self, account_id: str, symbol: str | None = None) -> list[OrderBody]:
        """Cancel every working order of the account (of one symbol when given)."""
        if symbol is not None and symbol not in self._entries:
            raise WireError(400, ErrorCode.INVALID_ORDER, f"unknown symbol {symbol!r}")
        targets = [
            o for o in self._orders.values() if o.account_id == account_id and o.is_open and symbol in {None, o.symbol}
        ]
        for order in targets:
            self._run(order.symbol, self._engines[order.symbol].cancel(order.order_id))
        return [o.body() for o in targets]

    def _touch(self, symbol: str, side: Side) -> Decimal:
        """The price a market order would start at: best opposite level, else the generator's quote."""
        engine = self._engines[symbol]
        ticks = engine.best_ask() if side is Side.BUY else engine.best_bid()
        if ticks is not None:
            return engine.grid.price(ticks)
        quote = self._market.quote(self._entries[symbol].instrument.symbol)
        return quote.ask if side is Side.BUY else quote.bid

    def _check_funds(self, account_id: str, entry: SimInstrument, side: Side, qty: Decimal, price: Decimal) -> None:
        account = self._account(account_id)
        try:
            account.check_order(entry.instrument, side, qty, price)
        except InsufficientFunds as exc:
            raise WireError(422, ErrorCode.INSUFFICIENT_FUNDS, exc.detail) from None
        except (InvalidInput, NotFound) as exc:
            raise WireError(400, ErrorCode.INVALID_ORDER, exc.detail) from None

    # --- reports --------------------------------------------------------------------------------------

    def account_body(self, account_id: str) -> AccountBody:
        """Cash, equity, buying power and margin of one account."""
        return account_body(self._account(account_id), self._now())

    def instruments(self) -> list[InstrumentBody]:
        """Every instrument the venue trades, in the venue's spelling."""
        return instrument_bodies(self._entries.items())

    def positions(self, account_id: str) -> list[PositionBody]:
        """Open positions, marked at close-out prices (one per symbol, or per position id when hedging)."""
        return position_bodies(self._account(account_id), self._canonical)

    def _position_qty(self, account_id: str, symbol: str) -> Decimal:
        canonical = self._entries[symbol].instrument.symbol
        positions = self._account(account_id).open_positions()
        return sum((p.position.qty for p in positions if p.position.symbol == canonical), Decimal(0))

    def fills(self, account_id: str, since_id: int = 0, limit: int = 100) -> FillsPage:
        """The account's fills with id > ``since_id``, oldest first; ``next_since_id`` is the last id returned."""
        if not 1 <= limit <= MAX_FILLS_PAGE:
            raise WireError(400, ErrorCode.INVALID_ORDER, f"limit must be 1-{MAX_FILLS_PAGE}")
        log = self._fills[account_id]
        start = bisect.bisect_right(log, since_id, key=lambda f: f.id)
        page = log[start : start + limit]
        return FillsPage(fills=page, next_since_id=page[-1].id if page else None)

    def quote(self, symbol: str) -> QuoteBody:
        """Top of the book (the generator's quote for a side that is empty)."""
        bid, bid_size, ask, ask_size = self._top(symbol)
        return QuoteBody(symbol=symbol, bid=bid, ask=ask, bid_size=bid_size, ask_size=ask_size, ts=self._now())

    def _top(self, symbol: str) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        entry, engine = self._entry(symbol), self._engines[symbol]
        depth, grid = engine.depth(1), engine.grid
        fallback = self._market.quote(entry.instrument.symbol)
        bid, bid_size = (
            (grid.price(depth.bids[0][0]), grid.qty(depth.bids[0][1])) if depth.bids else (fallback.bid, Decimal(0))
        )
        ask, ask_size = (
            (grid.price(depth.asks[0][0]), grid.qty(depth.asks[0][1])) if depth.asks else (fallback.ask, Decimal(0))
        )
        return bid, bid_size, ask, ask_size

    def depth(self, symbol: str, levels: int | None = None) -> DepthBody:
        """A depth snapshot, best levels first, with the update id it reflects."""
        self._entry(symbol)
        engine = self._engines[symbol]
        return depth_body(symbol, engine.grid, engine.depth(levels))

    # --- engine events → state and messages ---------------------------------------------------------

    def _run(self, sym: str, events: list[Event]) -> None:
        """Apply one engine call's events, then publish its depth diff and a changed top of book."""
        grid = self._engines[sym].grid
        first_update: int | None = None
        last_update = 0
        bids: dict[int, int] = {}
        asks: dict[int, int] = {}
        for event in events:
            if isinstance(event, LevelUpdate):
                first_update = event.update_id if first_update is None else first_update
                last_update = event.update_id
                (bids if event.side is Side.BUY else asks)[event.price] = event.qty
            elif isinstance(event, Fill):
                self._on_fill(sym, event)
            else:
                self._on_order_event(sym, event)
        if first_update is not None:
            diff = DepthDiff(
                first_update_id=first_update,
                last_update_id=last_update,
                bids=[(grid.price(p), grid.qty(q)) for p, q in sorted(bids.items(), reverse=True)],
                asks=[(grid.price(p), grid.qty(q)) for p, q in sorted(asks.items())],
            )
            if not self.faults.take_depth_gap():
                self.hub.publish(f"depth:{sym}", diff)
            self._publish_quote(sym, force=False)

    def _publish_quote(self, sym: str, *, force: bool) -> None:
        top = self._top(sym)
        if force or self._tops.get(sym) != top:
            self._tops[sym] = top
            bid, bid_size, ask, ask_size = top
            body = QuoteBody(symbol=sym, bid=bid, ask=ask, bid_size=bid_size, ask_size=ask_size, ts=self._now())
            self.hub.publish(f"quotes:{sym}", body)

    def _on_order_event(self, sym: str, event: Event) -> None:
        order = self._orders.get(getattr(event, "order_id", -1))
        if order is None:  # the market maker's, or a refused request
            return
        grid = self._engines[sym].grid
        kind: TradeUpdateEvent
        reason: str | None = None
        match event:
            case Accepted():
                order.status, kind = OrderStatus.NEW, "new"
            case Canceled(reason=cancel_reason):
                order.status, kind, reason = OrderStatus.CANCELED, "canceled", cancel_reason.value
            case Expired():
                order.status, kind = OrderStatus.EXPIRED, "expired"
            case Triggered():
                kind = "triggered"
            case Replaced(qty=lots, price=price, stop_price=stop):
                order.qty = grid.qty(lots)
                if price is not None and order.type in {OrderType.LIMIT, OrderType.STOP_LIMIT}:
                    order.limit_price = grid.price(price)
                if stop is not None and order.stop_price is not None:
                    order.stop_price = grid.price(stop)
                kind = "replaced"
            case _:
                return
        order.updated_at = self._now()
        self._trade_update(order.account_id, TradeUpdate(event=kind, order=order.body(), reason=reason))

    def _on_fill(self, sym: str, fill: Fill) -> None:
        entry, grid = self._entries[sym], self._engines[sym].grid
        price, qty, now = grid.price(fill.price), grid.qty(fill.qty), self._now()
        self.hub.publish(
            f"trades:{sym}",
            TradeBody(trade_id=str(fill.trade_id), price=price, size=qty, aggressor=fill.aggressor, ts=now),
        )
        sides = (
            (fill.taker_order_id, Liquidity.TAKER, fill.taker_leaves),
            (fill.maker_order_id, Liquidity.MAKER, fill.maker_leaves),
        )
        for order_id, liquidity, leaves in sides:
            order = self._orders.get(order_id)
            if order is not None:
                self._book_fill(entry, order, qty, price, liquidity, done=leaves == 0, now=now)

    def _book_fill(
        self,
        entry: SimInstrument,
        order: VenueOrder,
        qty: Decimal,
        price: Decimal,
        liquidity: Liquidity,
        *,
        done: bool,
        now: datetime,
    ) -> None:
        account = self._account(order.account_id)
        self._fill_seq += 1
        execution_id = f"E{self._session}-{self._fill_seq}"
        booking = account.apply_fill(
            entry.instrument,
            order.side,
            qty,
            price,
            trade_id=execution_id,
            liquidity=liquidity,
            position_id=order.position_id,
        )
        if account.mode is AccountMode.HEDGING and order.position_id is None and booking.position_ids:
            order.position_id = booking.position_ids[0]
        kind = order.add_fill(qty, price, done=done, now=now)
        self._fills[order.account_id].append(
            FillBody(
                id=self._fill_seq,
                execution_id=execution_id,
                order_id=str(order.order_id),
                client_order_id=order.client_order_id,
                symbol=order.symbol,
                side=order.side,
                qty=qty,
                price=price,
                commission=booking.commission,
                commission_currency=booking.currency,
                liquidity="maker" if liquidity is Liquidity.MAKER else "taker",
                ts=now,
            )
        )
        update = TradeUpdate(
            event=kind,
            order=order.body(),
            execution_id=execution_id,
            qty=qty,
            price=price,
            commission=booking.commission,
            commission_currency=booking.currency,
            position_qty=self._position_qty(order.account_id, order.symbol),
        )
        self._trade_update(order.account_id, update)

    def _trade_update(self, account_id: str, update: TradeUpdate) -> None:
        for target, message in self.faults.shape((account_id, update)):
            self.hub.publish(TRADE_UPDATES, message, account_id=target)
