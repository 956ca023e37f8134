"""Binance spot semantics on top of the sim venue core: orders by Binance's rules, spot balances, wire forms.

Matching, the market maker, fills and commissions are the sim venue's (:class:`~brokerlink.brokers.sim.
venue.state.Venue`); this module adds what makes it Binance spot:

* **Orders.** Binance parameters (``type``, ``timeInForce``, ``quantity``, ``price``, ``stopPrice``,
  ``newClientOrderId``) checked in Binance's order and with its error codes and messages (errors.md),
  the symbol filters (``PRICE_FILTER``, ``LOT_SIZE``, ``NOTIONAL``), integer order and trade ids.
  ``newClientOrderId`` is unique among *open* orders only, as documented: an id may be used again once
  its order is done. The sim core refuses any reuse, so it is given an internal id of its own (``b`` and
  the Binance order id) and never sees the client's.
* **Spot balances.** Binance spot holds assets, not margined positions. The sim account books each fill
  as a netting position in the quote currency; an asset's balance is read back from it: the quote
  asset is the cash minus the cost of the open positions, a base asset is its position. Orders lock
  what they may spend (a buy its quantity at its price, a sell its quantity), and an order that needs
  more than is free is refused (``-2010``), as a spot account cannot borrow.
* **Events.** The sim core's ``trade_updates`` (after the fault injector has duplicated or reordered
  them) become ``executionReport`` and ``outboundAccountPosition`` events.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

import msgspec

from brokerlink.brokers.ccxt.venue.wire import (
    AccountInfo,
    AssetBalance,
    BalanceEntry,
    CancelResult,
    ExchangeInfo,
    ExecutionReport,
    LotSize,
    MaxNumOrders,
    MyTrade,
    NewOrderResult,
    NotionalFilter,
    OrderFill,
    OrderQuery,
    OutboundAccountPosition,
    PriceFilter,
    RateLimit,
    SymbolInfo,
    TickerPrice,
    fmt,
)
from brokerlink.brokers.sim.gate import WireError
from brokerlink.brokers.sim.venue.state import Venue
from brokerlink.brokers.sim.wire import ErrorCode, FillBody, InstrumentBody, NewOrder, OrderBody, TradeUpdate
from brokerlink.domain.enums import OrderStatus, OrderType, Side, TimeInForce

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ZERO = Decimal(0)
ORDER_TYPES = ("LIMIT", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT")
"""The order types this venue takes (a subset of Binance's; ``exchangeInfo`` lists exactly these)."""
MAX_PRICE = Decimal(1_000_000)
MAX_NUM_ORDERS = 200
REQUEST_WEIGHT_PER_MINUTE = 6_000
ORDERS_PER_10S = 100
ORDERS_PER_DAY = 200_000
_CLIENT_ORDER_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
_DECIMAL = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
_TIFS = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK}
_STATUS = {
    OrderStatus.PENDING_NEW: "NEW",
    OrderStatus.NEW: "NEW",
    OrderStatus.PARTIALLY_FILLED: "PARTIALLY_FILLED",
    OrderStatus.FILLED: "FILLED",
    OrderStatus.PENDING_CANCEL: "NEW",
    OrderStatus.CANCELED: "CANCELED",
    OrderStatus.EXPIRED: "EXPIRED",
    OrderStatus.REJECTED: "REJECTED",
}


class BinanceError(WireError):
    """A refusal in Binance's form: HTTP status, ``code`` and ``msg``."""

    def __init__(self, status: int, code: int, msg: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status, ErrorCode.INVALID_ORDER, msg, headers)
        self.binance_code = code


def illegal(name: str) -> BinanceError:
    """``-1100`` for a malformed parameter."""
    return BinanceError(
        400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '{_DECIMAL.pattern}'."
    )


def mandatory(name: str) -> BinanceError:
    """``-1102`` for a missing parameter."""
    return BinanceError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def not_required(name: str) -> BinanceError:
    """``-1106`` for a parameter the order type does not take."""
    return BinanceError(400, -1106, f"Parameter '{name}' sent when not required.")


def filter_failure(name: str) -> BinanceError:
    """``-1013`` for an order outside a symbol filter."""
    return BinanceError(400, -1013, f"Filter failure: {name}")


def insufficient_balance() -> BinanceError:
    """``-2010`` when a spot account cannot pay for an order."""
    return BinanceError(400, -2010, "Account has insufficient balance for requested action.")


def ms(when: datetime) -> int:
    """Milliseconds since the epoch."""
    return (when - _EPOCH) // timedelta(milliseconds=1)


def decimal_param(params: Mapping[str, str], name: str) -> Decimal | None:
    """A DECIMAL parameter, ``None`` when absent; ``-1100`` when malformed."""
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not _DECIMAL.match(raw):
        raise illegal(name)
    try:
        return Decimal(raw)
    except InvalidOperation:
        raise illegal(name) from None


def int_param(params: Mapping[str, str], name: str) -> int | None:
    """A LONG/INT parameter, ``None`` when absent; ``-1100`` when malformed."""
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.lstrip("-").isdigit():
        raise BinanceError(
            400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
        )
    return int(raw)


@dataclass(frozen=True, slots=True)
class NewOrderParams:
    """The parameters of ``POST /api/v3/order``, checked for presence and form."""

    side: str
    type: str
    qty: Decimal
    price: Decimal | None
    stop: Decimal | None
    time_in_force: str | None
    client_order_id: str


def _one_of(params: Mapping[str, str], name: str, allowed: Iterable[str], code: int, message: str) -> str:
    value = params.get(name)
    if not value:
        raise mandatory(name)
    if value not in allowed:
        raise BinanceError(400, code, message)
    return value


def _presence(name: str, value: object, *, needed: bool) -> None:
    if needed and value is None:
        raise mandatory(name)
    if not needed and value is not None:
        raise not_required(name)


def parse_new_order(params: Mapping[str, str]) -> NewOrderParams:
    """Binance's checks of a new order's parameters, in its order, with its codes (the symbol aside)."""
    side = _one_of(params, "side", ("BUY", "SELL"), -1117, "Invalid side.")
    kind = _one_of(params, "type", ORDER_TYPES, -1116, "Invalid orderType.")
    qty = decimal_param(params, "quantity")
    price = decimal_param(params, "price")
    stop = decimal_param(params, "stopPrice")
    if "quoteOrderQty" in params:
        raise not_required("quoteOrderQty")
    if qty is None:
        raise mandatory("quantity")
    limit = kind in {"LIMIT", "STOP_LOSS_LIMIT"}
    _presence("price", price, needed=limit)
    _presence("stopPrice", stop, needed=kind in {"STOP_LOSS", "STOP_LOSS_LIMIT"})
    tif = params.get("timeInForce") or None
    _presence("timeInForce", tif, needed=limit)
    if tif is not None and tif not in _TIFS:
        raise BinanceError(400, -1115, "Invalid timeInForce.")
    client_order_id = params.get("newClientOrderId") or f"web_{secrets.token_hex(10)}"
    if not _CLIENT_ORDER_ID.match(client_order_id):
        raise BinanceError(400, -1100, "Illegal characters found in parameter 'newClientOrderId'.")
    return NewOrderParams(
        side=side, type=kind, qty=qty, price=price, stop=stop, time_in_force=tif, client_order_id=client_order_id
    )


@dataclass(slots=True)
class SpotOrder:
    """One Binance order and the sim core order behind it."""

    order_id: int
    account_id: str
    client_order_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    qty: Decimal
    price: Decimal | None
    stop_price: Decimal | None
    created_ms: int
    user_canceled: bool = False

    @property
    def sim_client_order_id(self) -> str:
        """The id the sim core knows the order by."""
        return f"b{self.order_id}"


@dataclass(slots=True)
class _FillLog:
    cursor: int = 0
    by_order: dict[str, list[FillBody]] = field(default_factory=dict)
    by_execution: dict[str, FillBody] = field(default_factory=dict)
    all: list[FillBody] = field(default_factory=list)


class SpotVenue:
    """Binance spot over a sim :class:`Venue` (one instrument set, accounts funded in the quote asset)."""

    def __init__(self, venue: Venue) -> None:
        self.venue = venue
        self._instruments = {body.symbol: body for body in venue.instruments()}
        self._orders: dict[int, SpotOrder] = {}
        self._by_sim: dict[str, SpotOrder] = {}
        self._latest: dict[tuple[str, str], SpotOrder] = {}
        self._fills: dict[str, _FillLog] = {}
        # Ids must not repeat across restarts of a venue that keeps no state: clients deduplicate by them.
        self._id_base = (secrets.randbelow(1 << 20) + 1) << 24
        self._next_order = 0
        self.order_counts: list[int] = []  # ms of accepted orders, for X-MBX-ORDER-COUNT-*

    # --- time and reference data -------------------------------------------------------------------

    def now_ms(self) -> int:
        """The venue clock in ms."""
        return self.venue.now_ms()

    def instrument(self, symbol: str | None) -> InstrumentBody:
        """The instrument of a Binance symbol (``-1121`` for an unknown one)."""
        if not symbol:
            raise mandatory("symbol")
        body = self._instruments.get(symbol)
        if body is None:
            raise BinanceError(400, -1121, "Invalid symbol.")
        return body

    def exchange_info(self) -> ExchangeInfo:
        """``GET /api/v3/exchangeInfo``: every symbol with its filters."""
        encoder = msgspec.json.Encoder()
        symbols = []
        for body in self._instruments.values():
            filters = [
                PriceFilter(min_price=fmt(body.tick_size), max_price=fmt(MAX_PRICE), tick_size=fmt(body.tick_size)),
                LotSize(
                    min_qty=fmt(body.min_qty), max_qty=fmt(body.max_qty or Decimal(9_000)), step_size=fmt(body.qty_step)
                ),
                NotionalFilter(min_notional=fmt(body.min_notional)),
                MaxNumOrders(max_num_orders=MAX_NUM_ORDERS),
            ]
            symbols.append(
                SymbolInfo(
                    symbol=body.symbol,
                    status="TRADING" if body.tradable else "HALT",
                    base_asset=body.base,
                    base_asset_precision=8,
                    quote_asset=body.quote,
                    quote_precision=8,
                    quote_asset_precision=8,
                    order_types=list(ORDER_TYPES),
                    filters=[msgspec.Raw(encoder.encode(f)) for f in filters],
                    permissions=["SPOT"],
                )
            )
        return ExchangeInfo(
            timezone="UTC",
            server_time=self.now_ms(),
            rate_limits=[
                RateLimit(
                    rate_limit_type="REQUEST_WEIGHT", interval="MINUTE", interval_num=1, limit=REQUEST_WEIGHT_PER_MINUTE
                ),
                RateLimit(rate_limit_type="ORDERS", interval="SECOND", interval_num=10, limit=ORDERS_PER_10S),
                RateLimit(rate_limit_type="ORDERS", interval="DAY", interval_num=1, limit=ORDERS_PER_DAY),
            ],
            symbols=symbols,
        )

    def ticker_prices(self, symbol: str | None) -> list[TickerPrice]:
        """``GET /api/v3/ticker/price``: the mid of the top of the book."""
        symbols = [self.instrument(symbol).symbol] if symbol else list(self._instruments)
        out = []
        for sym in symbols:
            quote = self.venue.quote(sym)
            out.append(TickerPrice(symbol=sym, price=fmt((quote.bid + quote.ask) / 2)))
        return out

    # --- orders -----------------------------------------------------------------------------------

    def place(self, account_id: str, params: Mapping[str, str]) -> tuple[SpotOrder, OrderBody]:
        """``POST /api/v3/order``: check as Binance does, then hand the order to the sim core."""
        body = self.instrument(params.get("symbol"))
        new_order = parse_new_order(params)
        side, kind, qty, price, stop = new_order.side, new_order.type, new_order.qty, new_order.price, new_order.stop
        raw_tif, client_order_id = new_order.time_in_force, new_order.client_order_id
        self._check_filters(body, qty, price, stop)
        previous = self._latest.get((account_id, client_order_id))
        if previous is not None and self._sim_order(previous).status in {
            OrderStatus.PENDING_NEW,
            OrderStatus.NEW,
            OrderStatus.PARTIALLY_FILLED,
        }:
            raise BinanceError(400, -2010, "Duplicate order sent.")
        if len(self.open_orders(account_id, body.symbol)) >= MAX_NUM_ORDERS:
            raise filter_failure("MAX_NUM_ORDERS")
        self._check_balance(account_id, body, side, qty, price or stop)
        self._next_order += 1
        order = SpotOrder(
            order_id=self._id_base + self._next_order,
            account_id=account_id,
            client_order_id=client_order_id,
            symbol=body.symbol,
            side=side,
            type=kind,
            time_in_force=raw_tif or "GTC",
            qty=qty,
            price=price,
            stop_price=stop,
            created_ms=self.now_ms(),
        )
        sim_type = {
            "LIMIT": OrderType.LIMIT,
            "MARKET": OrderType.MARKET,
            "STOP_LOSS": OrderType.STOP,
            "STOP_LOSS_LIMIT": OrderType.STOP_LIMIT,
        }[kind]
        # A MARKET order takes what the book has and expires the rest (Binance's rule): IOC in the core.
        tif = _TIFS[raw_tif] if raw_tif else (TimeInForce.IOC if kind == "MARKET" else TimeInForce.GTC)
        new = NewOrder(
            client_order_id=order.sim_client_order_id,
            symbol=body.symbol,
            side=Side.BUY if side == "BUY" else Side.SELL,
            qty=qty,
            type=sim_type,
            tif=tif,
            limit_price=price,
            stop_price=stop,
        )
        # Registered first: the core publishes the order's updates while placing it.
        self._by_sim[order.sim_client_order_id] = order
        try:
            result = self.venue.place(account_id, new)
        except WireError as exc:
            del self._by_sim[order.sim_client_order_id]
            raise _from_sim(exc) from None
        self._orders[order.order_id] = order
        self._latest[account_id, client_order_id] = order
        self.order_counts.append(order.created_ms)
        return order, result

    def _check_filters(self, body: InstrumentBody, qty: Decimal, price: Decimal | None, stop: Decimal | None) -> None:
        for value in (price, stop):
            if value is not None and (
                value < body.tick_size or value > MAX_PRICE or (value - body.tick_size) % body.tick_size
            ):
                raise filter_failure("PRICE_FILTER")
        max_qty = body.max_qty or Decimal(9_000)
        if qty < body.min_qty or qty > max_qty or (qty - body.min_qty) % body.qty_step:
            raise filter_failure("LOT_SIZE")
        reference = price or stop or self._mid(body.symbol)  # market orders: the current price
        if qty * reference < body.min_notional:
            raise filter_failure("NOTIONAL")

    def _mid(self, symbol: str) -> Decimal:
        quote = self.venue.quote(symbol)
        return (quote.bid + quote.ask) / 2

    def _check_balance(
        self, account_id: str, body: InstrumentBody, side: str, qty: Decimal, price: Decimal | None
    ) -> None:
        free = {b.asset: Decimal(b.free) for b in self.balances(account_id)}
        if side == "BUY":
            quote = self.venue.quote(body.symbol)
            cost = qty * (price or quote.ask)
            if cost > free.get(body.quote, _ZERO):
                raise insufficient_balance()
        elif qty > free.get(body.base, _ZERO):
            raise insufficient_balance()

    def _find(self, account_id: str, params: Mapping[str, str]) -> SpotOrder | None:
        body = self.instrument(params.get("symbol"))
        order_id = int_param(params, "orderId")
        coid = params.get("origClientOrderId")
        if order_id is None and not coid:
            raise BinanceError(
                400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
            )
        order = self._orders.get(order_id) if order_id is not None else self._latest.get((account_id, coid or ""))
        if order is None or order.account_id != account_id or order.symbol != body.symbol:
            return None
        if coid and order.client_order_id != coid:
            return None
        return order

    def query(self, account_id: str, params: Mapping[str, str]) -> OrderQuery:
        """``GET /api/v3/order`` (``-2013`` for an order the account does not have)."""
        order = self._find(account_id, params)
        if order is None:
            raise BinanceError(400, -2013, "Order does not exist.")
        return self.order_query(order)

    def cancel(self, account_id: str, params: Mapping[str, str]) -> CancelResult:
        """``DELETE /api/v3/order`` (``-2011`` for an unknown or finished order)."""
        order = self._find(account_id, params)
        if order is None or self._sim_order(order).status not in {OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED}:
            raise BinanceError(400, -2011, "Unknown order sent.")
        return self._cancel(order, params.get("newClientOrderId"))

    def _cancel(self, order: SpotOrder, cancel_id: str | None) -> CancelResult:
        order.user_canceled = True
        try:
            self.venue.cancel(order.account_id, order.sim_client_order_id)
        except WireError as exc:
            order.user_canceled = False
            raise _from_sim(exc) from None
        sim = self._sim_order(order)
        executed, quote_qty = self._executed(order)
        return CancelResult(
            symbol=order.symbol,
            orig_client_order_id=order.client_order_id,
            order_id=order.order_id,
            client_order_id=cancel_id or f"cancel_{secrets.token_hex(8)}",
            price=fmt(order.price or _ZERO),
            orig_qty=fmt(order.qty),
            executed_qty=fmt(executed),
            cummulative_quote_qty=fmt(quote_qty),
            status=self._status(order, sim),
            time_in_force=order.time_in_force,
            type=order.type,
            side=order.side,
        )

    def cancel_all(self, account_id: str, params: Mapping[str, str]) -> list[CancelResult]:
        """``DELETE /api/v3/openOrders``: every open order of one symbol (``-2011`` when there is none)."""
        body = self.instrument(params.get("symbol"))
        targets = [o for o in self._orders.values() if o.account_id == account_id and o.symbol == body.symbol]
        targets = [o for o in targets if self._sim_order(o).status in {OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED}]
        if not targets:
            raise BinanceError(400, -2011, "Unknown order sent.")
        return [self._cancel(order, None) for order in targets]

    def open_orders(self, account_id: str, symbol: str | None) -> list[OrderQuery]:
        """``GET /api/v3/openOrders`` (of every symbol when none is given)."""
        if symbol is not None:
            self.instrument(symbol)
        out = []
        for order in self._orders.values():
            if order.account_id != account_id or (symbol is not None and order.symbol != symbol):
                continue
            if self._sim_order(order).status in {OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED}:
                out.append(self.order_query(order))
        return out

    # --- reports ----------------------------------------------------------------------------------

    def _sim_order(self, order: SpotOrder) -> OrderBody:
        return self.venue.order_by_client_id(order.account_id, order.sim_client_order_id)

    def _status(self, order: SpotOrder, sim: OrderBody) -> str:
        if sim.status is OrderStatus.CANCELED and not order.user_canceled:
            return "EXPIRED"  # an IOC/FOK/MARKET remainder, or self-trade prevention: Binance calls it expired
        return _STATUS[sim.status]

    def _fill_log(self, account_id: str) -> _FillLog:
        log = self._fills.setdefault(account_id, _FillLog())
        while True:
            page = self.venue.fills(account_id, log.cursor, 1_000)
            for fill in page.fills:
                log.by_order.setdefault(fill.order_id, []).append(fill)
                log.by_execution[fill.execution_id] = fill
                log.all.append(fill)
                log.cursor = fill.id
            if len(page.fills) < 1_000:
                return log

    def _executed(self, order: SpotOrder) -> tuple[Decimal, Decimal]:
        sim = self._sim_order(order)
        fills = self._fill_log(order.account_id).by_order.get(sim.order_id, [])
        return sum((f.qty for f in fills), _ZERO), sum((f.qty * f.price for f in fills), _ZERO)

    def trade_id(self, fill: FillBody) -> int:
        """Binance's integer trade id of a fill."""
        return self._id_base + fill.id

    def order_query(self, order: SpotOrder) -> OrderQuery:
        """An order as ``GET /api/v3/order`` shows it."""
        sim = self._sim_order(order)
        executed, quote_qty = self._executed(order)
        status = self._status(order, sim)
        return OrderQuery(
            symbol=order.symbol,
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            price=fmt(order.price or _ZERO),
            orig_qty=fmt(order.qty),
            executed_qty=fmt(executed),
            cummulative_quote_qty=fmt(quote_qty),
            status=status,
            time_in_force=order.time_in_force,
            type=order.type,
            side=order.side,
            stop_price=fmt(order.stop_price or _ZERO),
            iceberg_qty=fmt(_ZERO),
            time=order.created_ms,
            update_time=ms(sim.updated_at),
            is_working=status in {"NEW", "PARTIALLY_FILLED"} and order.type in {"LIMIT", "MARKET"},
            orig_quote_order_qty=fmt(_ZERO),
        )

    def new_order_result(self, order: SpotOrder, response_type: str) -> NewOrderResult:
        """The answer to ``POST /api/v3/order`` (``fills`` with ``FULL``)."""
        sim = self._sim_order(order)
        executed, quote_qty = self._executed(order)
        fills = None
        if response_type == "FULL":
            fills = [
                OrderFill(
                    price=fmt(f.price),
                    qty=fmt(f.qty),
                    commission=fmt(f.commission),
                    commission_asset=f.commission_currency,
                    trade_id=self.trade_id(f),
                )
                for f in self._fill_log(order.account_id).by_order.get(sim.order_id, [])
            ]
        return NewOrderResult(
            symbol=order.symbol,
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            transact_time=order.created_ms,
            price=fmt(order.price or _ZERO),
            orig_qty=fmt(order.qty),
            executed_qty=fmt(executed),
            cummulative_quote_qty=fmt(quote_qty),
            status=self._status(order, sim),
            time_in_force=order.time_in_force,
            type=order.type,
            side=order.side,
            working_time=order.created_ms,
            fills=fills,
        )

    def my_trades(self, account_id: str, params: Mapping[str, str]) -> list[MyTrade]:
        """``GET /api/v3/myTrades``: one symbol, oldest first; ``fromId``, ``startTime``/``endTime``, ``orderId``."""
        body = self.instrument(params.get("symbol"))
        limit = int_param(params, "limit") or 500
        if not 1 <= limit <= 1_000:
            raise BinanceError(400, -1100, "Illegal characters found in parameter 'limit'.")
        from_id = int_param(params, "fromId")
        start = int_param(params, "startTime")
        end = int_param(params, "endTime")
        order_id = int_param(params, "orderId")
        if from_id is not None and (start is not None or end is not None):
            raise BinanceError(400, -1128, "Combination of optional parameters invalid.")
        if start is not None and end is not None and end - start > 24 * 3600 * 1000:
            raise BinanceError(400, -1127, "More than 24 hours between startTime and endTime.")
        trades = [f for f in self._fill_log(account_id).all if f.symbol == body.symbol]
        if order_id is not None:
            order = self._orders.get(order_id)
            sim_id = self._sim_order(order).order_id if order is not None else None
            trades = [f for f in trades if f.order_id == sim_id]
        if from_id is not None:
            trades = [f for f in trades if self.trade_id(f) >= from_id][:limit]
        elif start is not None or end is not None:
            lo = start if start is not None else (end or 0) - 24 * 3600 * 1000
            hi = end if end is not None else lo + 24 * 3600 * 1000
            trades = [f for f in trades if lo <= ms(f.ts) <= hi][:limit]
        else:
            trades = trades[-limit:]  # the most recent ones
        return [self._my_trade(f) for f in trades]

    def _my_trade(self, fill: FillBody) -> MyTrade:
        order = self._by_sim[fill.client_order_id]
        return MyTrade(
            symbol=fill.symbol,
            id=self.trade_id(fill),
            order_id=order.order_id,
            price=fmt(fill.price),
            qty=fmt(fill.qty),
            quote_qty=fmt(fill.qty * fill.price),
            commission=fmt(fill.commission),
            commission_asset=fill.commission_currency,
            time=ms(fill.ts),
            is_buyer=fill.side is Side.BUY,
            is_maker=fill.liquidity == "maker",
            is_best_match=True,
        )

    def balances(self, account_id: str) -> list[AssetBalance]:
        """Every asset of the instrument set: free and locked (see the module docstring)."""
        account = self.venue.accounts[account_id]
        totals: dict[str, Decimal] = {}
        for body in self._instruments.values():
            totals.setdefault(body.base, _ZERO)
            totals.setdefault(body.quote, _ZERO)
        by_symbol = {f"{b.base}/{b.quote}": b for b in self._instruments.values()}
        quote_total = account.cash
        for held in account.open_positions():
            pos = held.position
            rules = by_symbol.get(pos.symbol)
            if rules is None:
                continue
            totals[rules.base] += pos.qty
            quote_total -= pos.qty * pos.avg_price
        totals[account.currency] = totals.get(account.currency, _ZERO) + quote_total
        locked = dict.fromkeys(totals, _ZERO)
        for order in self._orders.values():
            if order.account_id != account_id:
                continue
            sim = self._sim_order(order)
            if sim.status not in {OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED}:
                continue
            body = self._instruments[order.symbol]
            leaves = order.qty - sim.filled_qty
            if order.side == "SELL":
                locked[body.base] += leaves
            elif order.price is not None:
                locked[body.quote] += leaves * order.price
        return [
            AssetBalance(asset=asset, free=fmt(total - locked[asset]), locked=fmt(locked[asset]))
            for asset, total in sorted(totals.items())
        ]

    def account_info(self, account_id: str, *, omit_zero: bool = False) -> AccountInfo:
        """``GET /api/v3/account``."""
        balances = self.balances(account_id)
        if omit_zero:
            balances = [b for b in balances if Decimal(b.free) or Decimal(b.locked)]
        return AccountInfo(
            maker_commission=2,
            taker_commission=5,
            buyer_commission=0,
            seller_commission=0,
            can_trade=True,
            can_withdraw=False,
            can_deposit=False,
            update_time=self.now_ms(),
            account_type="SPOT",
            balances=balances,
            permissions=["SPOT"],
        )

    # --- user data stream -------------------------------------------------------------------------

    def user_events(self, account_id: str, update: TradeUpdate) -> list[ExecutionReport | OutboundAccountPosition]:
        """The Binance events for one sim ``trade_updates`` message (none for what Binance does not report)."""
        order = self._by_sim.get(update.order.client_order_id)
        if order is None:
            return []
        now = self.now_ms()
        sim = update.order
        last_qty = last_price = _ZERO
        commission, commission_asset, trade_id, maker = _ZERO, None, -1, False
        cancel_id = ""
        if update.event in {"fill", "partial_fill"}:
            execution = "TRADE"
            fill = self._fill_log(account_id).by_execution.get(update.execution_id or "")
            if fill is None:
                return []
            last_qty, last_price = fill.qty, fill.price
            commission, commission_asset = fill.commission, fill.commission_currency
            trade_id, maker = self.trade_id(fill), fill.liquidity == "maker"
        elif update.event == "new":
            execution = "NEW"
        elif update.event == "canceled":
            execution = "CANCELED" if update.reason == "user" else "EXPIRED"
            if execution == "CANCELED":
                cancel_id = order.client_order_id
        elif update.event == "expired":
            execution = "EXPIRED"
        else:
            return []  # triggered, replaced: no executionReport of their own on Binance spot
        executed = sim.filled_qty
        quote_qty = sum((f.qty * f.price for f in self._fill_log(account_id).by_order.get(sim.order_id, [])), _ZERO)
        status = {"TRADE": "FILLED" if sim.status is OrderStatus.FILLED else "PARTIALLY_FILLED"}.get(
            execution, execution
        )
        report = ExecutionReport(
            event_time=now,
            symbol=order.symbol,
            client_order_id=f"cancel_{order.order_id}" if cancel_id else order.client_order_id,
            side=order.side,
            order_type=order.type,
            time_in_force=order.time_in_force,
            quantity=fmt(order.qty),
            price=fmt(order.price or _ZERO),
            stop_price=fmt(order.stop_price or _ZERO),
            original_client_order_id=cancel_id,
            execution_type=execution,
            order_status=status,
            order_id=order.order_id,
            last_executed_quantity=fmt(last_qty),
            cumulative_filled_quantity=fmt(executed),
            last_executed_price=fmt(last_price),
            commission_amount=fmt(commission),
            commission_asset=commission_asset,
            transaction_time=ms(sim.updated_at),
            trade_id=trade_id,
            is_on_book=status in {"NEW", "PARTIALLY_FILLED"} and order.type != "MARKET",
            is_maker=maker,
            creation_time=order.created_ms,
            cumulative_quote_quantity=fmt(quote_qty),
            last_quote_quantity=fmt(last_qty * last_price),
            working_time=order.created_ms,
        )
        body = self._instruments[order.symbol]
        changed = [b for b in self.balances(account_id) if b.asset in {body.base, body.quote}]
        position = OutboundAccountPosition(
            event_time=now,
            last_update_time=now,
            balances=[BalanceEntry(asset=b.asset, free=b.free, locked=b.locked) for b in changed],
        )
        return [report, position]


def _from_sim(exc: WireError) -> BinanceError:
    """A refusal of the sim core in Binance's words."""
    if isinstance(exc, BinanceError):
        return exc
    if exc.code is ErrorCode.INSUFFICIENT_FUNDS:
        return insufficient_balance()
    if exc.code is ErrorCode.MARKET_CLOSED:
        return BinanceError(400, -1013, "Market is closed.")
    if exc.code is ErrorCode.UNKNOWN_ORDER:
        return BinanceError(400, -2011, "Unknown order sent.")
    if exc.code is ErrorCode.DUPLICATE_CLIENT_ORDER_ID:
        return BinanceError(400, -2010, "Duplicate order sent.")
    return BinanceError(400, -2010, exc.message)  # NEW_ORDER_REJECTED, with the core's reason
