"""An in-memory broker for benchmarks: a :class:`BrokerAdapter` with no network, honest to the protocol.

``submit`` takes the order the way a venue would (a duplicate client order id or an unlisted symbol
is refused) and returns; on the event loop's next turn (a real venue works in its own process, not
inside the caller's ``submit``) the venue fills it in full at a fixed price (a limit order only if its price allows:
otherwise an IOC expires and a GTC rests), keeps the account's net positions and fills (one fixed
price, so cash and equity never move), and reports the outcome asynchronously on
:meth:`FakeAdapter.events` (``OrderAccepted``, then ``OrderFilled`` or ``OrderExpired``), as real
venues do. ``order`` / ``open_orders`` / ``fills_since`` / ``positions`` / ``balance`` /
``instruments`` answer from that state. :meth:`FakeAdapter.trade` is a provider trading outside
brokerlink: a fill brokerlink learns of from the stream only.

Every adapter built by one :class:`FakeBroker` records when ``submit`` was called for each client
order id (``time.perf_counter_ns()``, taken on entry, before anything else), in
:attr:`FakeBroker.submitted`: the benchmark's "handed to the adapter" moment.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal

import msgspec

from brokerlink.brokers.base import (
    AdapterConfig,
    BrokerAdapter,
    Capabilities,
    FillPage,
    ModifyRequest,
    OrderRefused,
    OrderRequest,
    RefusalReason,
)
from brokerlink.domain.enums import AssetClass, OrderStatus, OrderType, Side, TimeInForce
from brokerlink.domain.events import (
    DomainEvent,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
)
from brokerlink.domain.models import Balance, Fill, Instrument, Order, Position

KIND = "bench-fake"
PRICE = Decimal("1.08500")
EURUSD = Instrument(
    symbol="EUR/USD",
    venue_symbol="EURUSD",
    asset_class=AssetClass.FX,
    base="EUR",
    quote="USD",
    tick_size=Decimal("0.00001"),
    qty_step=Decimal("0.01"),
    min_qty=Decimal("0.01"),
    max_qty=Decimal(100),
    contract_size=Decimal(100_000),
)
_CAPABILITIES = Capabilities(
    order_types=frozenset({OrderType.MARKET, OrderType.LIMIT}),
    time_in_force=frozenset({TimeInForce.GTC, TimeInForce.IOC}),
    modify=False,
    fills_since=True,
)


def _now() -> datetime:
    return datetime.now(UTC)


class FakeBroker:
    """The venue behind every :class:`FakeAdapter` it makes, and the record of their ``submit`` calls."""

    def __init__(self, *, cash: Decimal = Decimal(100_000)) -> None:
        self.cash = cash
        self.submitted: dict[str, int] = {}
        """client order id -> ``perf_counter_ns`` when ``submit`` was entered (the first time)."""
        self.last_submit_cpu_ns = 0
        """``process_time_ns`` at the latest ``submit``: CPU the process used, all threads."""
        self.adapters: dict[str, FakeAdapter] = {}  # by our account id
        self._ids = itertools.count(1)
        self._waiting: set[str] = set()
        self._all_in = asyncio.Event()
        self.on_all_in: Callable[[], None] | None = None
        """Called (synchronously, inside the last ``submit``) when the last expected order arrives."""

    def expect(self, client_order_ids: list[str]) -> asyncio.Event:
        """An event set once ``submit`` has been called for every one of these client order ids."""
        self._waiting = {c for c in client_order_ids if c not in self.submitted}
        self._all_in = asyncio.Event()
        if not self._waiting:
            self._all_in.set()
        return self._all_in

    def record_submit(self, client_order_id: str) -> None:
        """Note when ``submit`` was called (the first time) for this client order id."""
        self.submitted.setdefault(client_order_id, time.perf_counter_ns())
        self.last_submit_cpu_ns = time.process_time_ns()
        if client_order_id in self._waiting:
            self._waiting.discard(client_order_id)
            if not self._waiting:
                self._all_in.set()
                if self.on_all_in is not None:
                    self.on_all_in()

    def factory(self, kind: str, config: AdapterConfig) -> BrokerAdapter:
        """An ``adapter_factory`` for :class:`~brokerlink.engine.links.service.BrokerLinks`."""
        if kind != KIND:
            raise ValueError(f"the fake broker serves {KIND!r}, not {kind!r}")
        adapter = FakeAdapter(config, broker=self)
        self.adapters[config.account_id] = adapter
        return adapter

    def next_id(self) -> int:
        return next(self._ids)


class FakeAdapter(BrokerAdapter):
    """One account at the :class:`FakeBroker`."""

    kind = KIND

    def __init__(self, config: AdapterConfig, *, broker: FakeBroker | None = None) -> None:
        super().__init__(config)
        self.broker = broker or FakeBroker()
        self._venue_account_id = config.venue_account_id or f"FAKE-{config.account_id}"
        self._events: asyncio.Queue[DomainEvent | None] = asyncio.Queue()
        self._orders: dict[str, Order] = {}  # by client order id
        self._queued: set[str] = set()  # client order ids taken by submit, not yet worked on
        self._fills: list[Fill] = []
        self._positions: dict[str, Decimal] = {}
        self._cash = self.broker.cash
        self._connected = False
        self._closed = False

    @property
    def venue_account_id(self) -> str:
        return self._venue_account_id

    @property
    def capabilities(self) -> Capabilities:
        return _CAPABILITIES

    async def connect(self) -> None:
        if self._closed:
            raise OrderRefused(RefusalReason.AUTH, "closed")
        self._connected = True

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._events.put_nowait(None)

    async def instruments(self) -> list[Instrument]:
        return [EURUSD]

    async def submit(self, order: OrderRequest) -> None:
        self.broker.record_submit(order.client_order_id)
        if order.client_order_id in self._orders or order.client_order_id in self._queued:
            raise OrderRefused(RefusalReason.DUPLICATE_CLIENT_ORDER_ID)
        if order.symbol != EURUSD.symbol:
            raise OrderRefused(RefusalReason.INVALID_ORDER, f"the venue does not list {order.symbol}")
        if order.type not in _CAPABILITIES.order_types:
            raise OrderRefused(RefusalReason.NOT_SUPPORTED, f"{order.type.value} orders")
        # Taken: the venue works on it elsewhere (a real one in its own process), so its matching and
        # reports run after this call returns, on the loop's next turn, not inside the caller's hand-off.
        self._queued.add(order.client_order_id)
        asyncio.get_running_loop().call_soon(self._take, order)

    def _take(self, order: OrderRequest) -> None:
        self._queued.discard(order.client_order_id)
        now = _now()
        venue_id = f"F{self.broker.next_id()}"
        working = Order(
            id=venue_id,
            venue_order_id=venue_id,
            client_order_id=order.client_order_id,
            account_id=self.account_id,
            symbol=order.symbol,
            side=order.side,
            qty=order.qty,
            type=order.type,
            tif=order.tif,
            limit_price=order.limit_price,
            status=OrderStatus.NEW,
            created_at=now,
            updated_at=now,
        )
        self._orders[order.client_order_id] = working
        ids = {"account_id": self.account_id, "client_order_id": order.client_order_id, "venue_order_id": venue_id}
        self._events.put_nowait(OrderAccepted(**ids, ts=now, venue_ts=now))
        crosses = order.limit_price is None or (
            order.limit_price >= PRICE if order.side is Side.BUY else order.limit_price <= PRICE
        )
        if crosses:
            self._fill(working, ids, now)
        elif order.tif is TimeInForce.IOC:
            self._orders[order.client_order_id] = _replace(working, status=OrderStatus.EXPIRED, updated_at=now)
            self._events.put_nowait(OrderExpired(**ids, ts=now, venue_ts=now))

    def trade(self, side: Side, qty: Decimal) -> str:
        """A market order placed outside brokerlink (on the broker's own platform) and filled: brokerlink
        learns of it only from the stream. Returns the fill's trade id."""
        now = _now()
        client_order_id = f"ext-{self.broker.next_id()}"
        venue_id = f"F{self.broker.next_id()}"
        working = Order(
            id=venue_id, venue_order_id=venue_id, client_order_id=client_order_id, account_id=self.account_id,
            symbol=EURUSD.symbol, side=side, qty=qty, type=OrderType.MARKET, tif=TimeInForce.GTC,
            status=OrderStatus.NEW, created_at=now, updated_at=now,
        )  # fmt: skip
        self._orders[client_order_id] = working
        ids = {"account_id": self.account_id, "client_order_id": client_order_id, "venue_order_id": venue_id}
        self._events.put_nowait(OrderAccepted(**ids, ts=now, venue_ts=now))
        return self._fill(working, ids, now)

    def _fill(self, working: Order, ids: dict[str, str], now: datetime) -> str:
        trade_id = f"T{self.broker.next_id()}"
        signed = working.qty if working.side is Side.BUY else -working.qty
        self._positions[working.symbol] = self._positions.get(working.symbol, Decimal(0)) + signed
        self._orders[working.client_order_id] = _replace(
            working, status=OrderStatus.FILLED, filled_qty=working.qty, avg_fill_price=PRICE, updated_at=now
        )
        self._fills.append(
            Fill(
                trade_id=trade_id, order_id=working.id, client_order_id=working.client_order_id,
                account_id=self.account_id, symbol=working.symbol, side=working.side, qty=working.qty, price=PRICE,
                ts=now,
            )
        )  # fmt: skip
        self._events.put_nowait(
            OrderFilled(
                **ids, ts=now, venue_ts=now, trade_id=trade_id, symbol=working.symbol, side=working.side,
                last_qty=working.qty, last_price=PRICE,
            )
        )  # fmt: skip
        return trade_id

    async def modify(self, change: ModifyRequest) -> None:
        del change
        raise OrderRefused(RefusalReason.NOT_SUPPORTED, "modify")

    async def cancel(self, client_order_id: str) -> None:
        order = self._orders.get(client_order_id)
        if order is None or order.status.is_terminal:
            raise OrderRefused(RefusalReason.UNKNOWN_ORDER, f"no working order {client_order_id}")
        now = _now()
        self._orders[client_order_id] = _replace(order, status=OrderStatus.CANCELED, updated_at=now)
        ids = {"account_id": self.account_id, "client_order_id": client_order_id, "venue_order_id": order.id}
        self._events.put_nowait(OrderCanceled(**ids, ts=now, venue_ts=now))

    async def cancel_all(self, symbol: str | None = None) -> None:
        for order in await self.open_orders():
            if symbol is None or order.symbol == symbol:
                await self.cancel(order.client_order_id)

    async def order(self, *, client_order_id: str | None = None, venue_order_id: str | None = None) -> Order | None:
        if client_order_id is not None:
            return self._orders.get(client_order_id)
        return next((o for o in self._orders.values() if o.venue_order_id == venue_order_id), None)

    async def open_orders(self) -> list[Order]:
        return [o for o in self._orders.values() if not o.status.is_terminal]

    async def fills_since(self, cursor: str | None = None, *, limit: int = 500) -> FillPage:
        start = int(cursor) if cursor else 0
        page = self._fills[start : start + limit]
        return FillPage(fills=page, next_cursor=str(start + len(page)) if page else None)

    async def positions(self) -> list[Position]:
        return [
            Position(account_id=self.account_id, symbol=s, qty=q, avg_price=PRICE)
            for s, q in self._positions.items()
            if q != 0
        ]

    async def balance(self) -> Balance:
        return Balance(
            account_id=self.account_id, currency="USD", cash=self._cash, equity=self._cash, buying_power=self._cash,
            ts=_now(),
        )  # fmt: skip

    async def events(self) -> AsyncIterator[DomainEvent]:
        while (item := await self._events.get()) is not None:
            yield item


def _replace(order: Order, **changes: object) -> Order:
    return msgspec.structs.replace(order, **changes)
