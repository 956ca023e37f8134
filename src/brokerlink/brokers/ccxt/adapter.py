"""The CCXT adapter: :class:`~brokerlink.brokers.base.BrokerAdapter` over any exchange ccxt supports.

Credentials: ``exchange`` (the ccxt id, e.g. ``binance``), ``api_key``, ``api_secret`` and, for the
exchanges that have one, ``password``. ``base_url`` (empty for ccxt's own URLs) re-hosts the
exchange's API, REST and WebSocket, on another origin: the Binance spot test venue.

Commands and reports use ccxt's unified methods (``create_order`` with the client order id,
``fetch_order``, ``cancel_order``, ``fetch_open_orders``, ``fetch_my_trades``, ``fetch_balance``).
Events come from ccxt.pro's ``watch_orders`` / ``watch_my_trades`` where the exchange ``has`` them,
else from polling the reports; after every reconnect the adapter reconciles from the reports, as the
sim adapter does. Capabilities come from ccxt's ``has``, instrument rules from ``load_markets``.

Three things ccxt does not settle, decided here:

* **Duplicate client order ids.** Some exchanges (Binance: "a unique id among open orders") accept a
  client order id again once its order is done, so a blind resend after an unknown outcome could
  trade twice. Before sending, the adapter looks the id up; an existing order is refused as a
  duplicate (option ``check_duplicates``, on by default).
* **Symbols.** Exchanges that need a symbol to look an order up or list trades (Binance) are asked
  per market: the one the order was placed in when known, else the ``symbols`` option, else every
  market when the exchange lists at most :data:`SCAN_ALL_MARKETS_UP_TO`.
* **Events.** Option ``events``: ``poll`` reads the reports every ``poll_interval_s`` even where the
  exchange streams (a fallback when its stream misbehaves); by default the stream is used when it exists.
* **Spot positions.** A spot account holds assets: a position is a non-zero balance of an asset
  that has a market against the account currency (option ``currency``, default ``USDT``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections.abc import AsyncIterator, Mapping
from decimal import Decimal
from typing import Any

import msgspec
from ccxt.base import errors as ccxt_errors  # type: ignore[import-untyped]

from brokerlink.brokers.backoff import Backoff
from brokerlink.brokers.base import (
    AdapterConfig,
    BrokerAdapter,
    BrokerRateLimited,
    Capabilities,
    FillPage,
    ModifyRequest,
    OrderRefused,
    OrderRequest,
    OutcomeUnknown,
    RefusalReason,
    TransientBrokerError,
    register_adapter,
)
from brokerlink.brokers.ccxt import exchange as ccxt_exchange
from brokerlink.brokers.ccxt import mapping, markets
from brokerlink.brokers.ccxt.errors import translate
from brokerlink.brokers.ccxt.tracker import EventTracker
from brokerlink.brokers.limits import BrokerLimiter, BrokerLimits, RateRule, limiter_for
from brokerlink.domain.enums import ConnectionState, OrderType, TimeInForce
from brokerlink.domain.events import ConnectionChanged, DomainEvent
from brokerlink.domain.models import Balance, Fill, Instrument, Order, Position
from brokerlink.kit.clock import Clock, SystemClock
from brokerlink.logs import get_logger

_log = get_logger("brokerlink.brokers.ccxt")
SCAN_ALL_MARKETS_UP_TO = 20
MAX_CLIENT_ORDER_ID = {"binance": 36}
"""Longest client order id per exchange (Binance: ``^[.A-Z:/a-z0-9_-]{1,36}$``); others default to 32."""
ORDER_LIMITS: Mapping[str, tuple[RateRule, ...]] = {
    "binance": (RateRule(100, 10.0).under(0.9), RateRule(200_000, 86_400.0).under(0.9)),
}
"""Order-rate limits per account (Binance's ``ORDERS`` limits), on top of the request limits."""
WEIGHT_HEADERS: Mapping[str, tuple[str, int]] = {"binance": ("x-mbx-used-weight-1m", 6_000)}
"""A used-weight header per exchange and its limit per minute: near the limit, the endpoint pauses."""
FROM_THE_START: Mapping[str, Mapping[str, object]] = {"binance": {"fromId": 0}}
"""Parameters that make ``fetch_my_trades`` start at the first trade (without them Binance returns the latest)."""
_TIF = {TimeInForce.GTC: "GTC", TimeInForce.IOC: "IOC", TimeInForce.FOK: "FOK", TimeInForce.DAY: "DAY"}


class StreamSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Timing of the event stream."""

    backoff: Backoff = Backoff()
    connect_timeout_s: float = 10.0
    settle_s: float = 0.2
    """After the private stream connects, before reconciling: the exchange's subscription takes effect."""
    poll_interval_s: float = 2.0
    """Polling mode (no ``watchOrders``): how often the reports are read."""
    reconcile_every_s: float = 60.0
    """Streaming mode: a reconciliation from the reports this often anyway (a message can be lost)."""


class CcxtAdapter(BrokerAdapter):
    """One account at a ccxt exchange (see the module docstring for credentials and options)."""

    kind = "ccxt"

    def __init__(
        self,
        config: AdapterConfig,
        *,
        clock: Clock | None = None,
        stream: StreamSettings | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(config)
        creds = config.credentials
        self.exchange_id = creds.get("exchange")
        api_key = creds.get("api_key")
        self.clock = clock or SystemClock()
        self.stream = stream or StreamSettings()
        self._rng = random.Random(seed)  # noqa: S311 - jitter, not secrecy
        options = config.options
        pro = self.exchange_id in _pro_exchanges()
        self._exchange = ccxt_exchange.create_exchange(
            self.exchange_id,
            api_key=api_key,
            secret=creds.get("api_secret"),
            password=creds.values.get("password"),
            base_url=config.base_url or None,
            pro=pro,
        )
        self._exchange.brokerlink_on_headers = self._on_headers
        self._exchange.brokerlink_on_message = self._on_message
        self.currency = options.get("currency", "USDT")
        self._check_duplicates = options.get("check_duplicates", "true").lower() != "false"
        self._configured_symbols = [s for s in options.get("symbols", "").split(",") if s]
        self._limit_key = hashlib.sha256(api_key.encode()).hexdigest()[:16]
        self._venue_account_id = config.venue_account_id or f"{self.exchange_id}-{self._limit_key}"
        endpoint = config.base_url or f"https://{self.exchange_id}.ccxt"
        rate = max(1, int(1000 / max(float(self._exchange.rateLimit or 50), 1.0)))
        default = BrokerLimits(per_endpoint=(RateRule(rate, 1.0).under(0.9),))
        self._limits = default.with_options(options)
        self._endpoint = endpoint
        self._limiter: BrokerLimiter | None = None
        self._order_limiter: BrokerLimiter | None = None
        self._instruments: dict[str, Instrument] = {}  # canonical -> rules
        self._by_market: dict[str, Instrument] = {}  # ccxt symbol -> rules
        self._market_of: dict[str, str] = {}  # canonical -> ccxt symbol
        self._symbol_of: dict[str, str] = {}  # client order id -> ccxt symbol
        self._needs_symbol: set[str] = set()  # unified methods that raised ArgumentsRequired without one
        self._tracker = EventTracker(config.account_id, self._by_market.get)
        self._working: set[str] = set()
        self._fill_cursor: str | None = None
        self._events: asyncio.Queue[DomainEvent | None] = asyncio.Queue()
        self._wakeup = asyncio.Event()
        self._stream_task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closed = False
        self.reconnects = 0

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def venue_account_id(self) -> str:
        return self._venue_account_id

    @property
    def capabilities(self) -> Capabilities:
        has = self._has
        order_types = {OrderType.MARKET, OrderType.LIMIT}
        if has("createStopMarketOrder") or has("createStopOrder") or has("createTriggerOrder"):
            order_types.add(OrderType.STOP)
        if has("createStopLimitOrder") or has("createTriggerOrder"):
            order_types.add(OrderType.STOP_LIMIT)
        return Capabilities(
            order_types=frozenset(order_types),
            time_in_force=frozenset({TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK}),
            modify=False,
            cancel_all=has("cancelAllOrders"),
            quotes=False,
            depth=False,
            fills_since=has("fetchMyTrades"),
            max_client_order_id_length=MAX_CLIENT_ORDER_ID.get(self.exchange_id, 32),
        )

    def _has(self, feature: str) -> bool:
        return ccxt_exchange.has(self._exchange, feature)

    @property
    def streaming(self) -> bool:
        """Whether events come from ccxt.pro's private streams (else from polling the reports)."""
        if self.config.options.get("events") == "poll":
            return False
        return self._has("watchOrders") and hasattr(self._exchange, "watch_orders")

    async def connect(self) -> None:
        try:
            loaded = await self._call("load_markets")
            self._load_instruments(loaded)
            await self.balance()  # proves the credentials: a refusal here is an auth refusal
            self._fill_cursor = str(await self._server_ms())
        except BaseException:
            await self._exchange.close()
            raise
        self._stream_task = asyncio.create_task(self._run_stream(), name=f"ccxt-stream-{self.account_id}")
        try:
            async with asyncio.timeout(self.stream.connect_timeout_s + self.stream.settle_s):
                await self._connected.wait()
        except TimeoutError:
            await self.close()
            raise TransientBrokerError("the exchange's event stream did not come up") from None

    def _load_instruments(self, loaded: Mapping[str, Any]) -> None:
        mode = int(self._exchange.precisionMode)
        for symbol, market in loaded.items():
            rules = markets.instrument(market, mode)
            if rules is None or rules.symbol in self._instruments:
                continue
            self._instruments[rules.symbol] = rules
            self._by_market[str(symbol)] = rules
            self._market_of[rules.symbol] = str(symbol)

    async def _server_ms(self) -> int:
        if self._has("fetchTime"):
            with contextlib.suppress(TransientBrokerError, OrderRefused):
                return int(await self._call("fetch_time"))
        return time.time_ns() // 1_000_000

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._stream_task is not None:
            self._stream_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stream_task
        with contextlib.suppress(Exception):
            await self._exchange.close()
        self._events.put_nowait(None)

    async def events(self) -> AsyncIterator[DomainEvent]:
        while (item := await self._events.get()) is not None:
            yield item

    # --- requests ------------------------------------------------------------------------------

    def _on_headers(self, headers: Mapping[str, str]) -> None:
        rule = WEIGHT_HEADERS.get(self.exchange_id)
        if rule is None or self._limiter is None:
            return
        name, limit = rule
        used = next((v for k, v in headers.items() if k.lower() == name), None)
        if used is not None and used.isdigit() and int(used) >= limit * 0.9:
            # Near the minute's weight limit: wait for the next minute rather than earn a 429.
            now = time.time()
            self._limiter.penalize(60 - now % 60)

    def _on_message(self) -> None:
        self._wakeup.set()

    @property
    def limiter(self) -> BrokerLimiter:
        """The endpoint's request limiter (shared by every account of the exchange in this process)."""
        if self._limiter is None:
            self._limiter = limiter_for(self.kind, self._endpoint, self._limits)
        return self._limiter

    async def _call(
        self, method: str, *args: Any, command: str | None = None, order: bool = False, probe: bool = False
    ) -> Any:
        """One unified method through the limiters; ccxt's errors as the protocol's (``command``: the client
        order id of a state-changing request, whose failure after sending is an unknown outcome; ``probe``:
        let ccxt's ``ArgumentsRequired`` through, the caller tries again with a symbol)."""
        limiter = self.limiter
        async with contextlib.AsyncExitStack() as stack:
            if order and self.exchange_id in ORDER_LIMITS:
                if self._order_limiter is None:
                    rules = BrokerLimits(per_account=ORDER_LIMITS[self.exchange_id])
                    self._order_limiter = limiter_for(f"{self.kind}-orders", self._endpoint, rules)
                await stack.enter_async_context(self._order_limiter.slot(self._limit_key))
            await stack.enter_async_context(limiter.slot(self._limit_key))
            try:
                return await getattr(self._exchange, method)(*args)
            except ccxt_errors.ArgumentsRequired:
                if probe:
                    raise
                raise OrderRefused(
                    RefusalReason.INVALID_ORDER, f"{self.exchange_id}.{method} needs more arguments"
                ) from None
            except Exception as exc:
                error = translate(exc, client_order_id=command)
                if isinstance(error, BrokerRateLimited):
                    limiter.penalize((error.retry_after_ms or 1000) / 1000)
                raise error from exc

    async def _per_symbol(self, method: str, symbol: str | None, *args: Any) -> Any:
        """``method(symbol, *args)``, or ``None`` when the exchange needs a symbol and none is known."""
        if symbol is None and method in self._needs_symbol:
            return None
        try:
            return await self._call(method, symbol, *args, probe=True)
        except ccxt_errors.ArgumentsRequired:
            self._needs_symbol.add(method)
            return None

    def _scan_symbols(self) -> list[str]:
        """Markets to ask when the exchange needs a symbol and the order's is unknown."""
        symbols = dict.fromkeys(self._market_of[s] for s in self._configured_symbols if s in self._market_of)
        symbols.update(dict.fromkeys(self._symbol_of.values()))
        if len(self._by_market) <= SCAN_ALL_MARKETS_UP_TO:
            symbols.update(dict.fromkeys(self._by_market))
        return list(symbols)

    def _instrument(self, symbol: str) -> tuple[str, Instrument]:
        market = self._market_of.get(symbol)
        if market is None:
            raise OrderRefused(RefusalReason.INVALID_ORDER, f"{self.exchange_id} does not list {symbol}")
        return market, self._instruments[symbol]

    # --- commands ----------------------------------------------------------------------------

    async def instruments(self) -> list[Instrument]:
        return list(self._instruments.values())

    async def submit(self, order: OrderRequest) -> None:
        market, _ = self._instrument(order.symbol)
        kind, price, params = self._order_shape(order)
        coid = order.client_order_id
        # Tracked before sending: if the answer is lost, reconciliation still looks this order up.
        self._symbol_of[coid] = market
        self._working.add(coid)
        if self._check_duplicates and await self.order(client_order_id=coid) is not None:
            raise OrderRefused(RefusalReason.DUPLICATE_CLIENT_ORDER_ID, f"client order id {coid!r} is already used")
        amount = markets.text(order.qty)
        raw = await self._call(
            "create_order", market, kind, order.side.value, amount, price, params, command=coid, order=True
        )
        if raw.get("id") is not None:
            self._tracker.client_ids[str(raw["id"])] = coid

    def _order_shape(self, order: OrderRequest) -> tuple[str, str | None, dict[str, object]]:
        caps = self.capabilities
        if order.type not in caps.order_types:
            raise OrderRefused(RefusalReason.NOT_SUPPORTED, f"{self.exchange_id} takes no {order.type} orders here")
        params: dict[str, object] = {"clientOrderId": order.client_order_id}
        limit = order.type in {OrderType.LIMIT, OrderType.STOP_LIMIT}
        if order.type in {OrderType.STOP, OrderType.STOP_LIMIT}:
            if order.stop_price is None:
                raise OrderRefused(RefusalReason.INVALID_ORDER, f"a {order.type} order needs a stop price")
            params["triggerPrice"] = markets.text(order.stop_price)
        if limit:
            if order.limit_price is None:
                raise OrderRefused(RefusalReason.INVALID_ORDER, f"a {order.type} order needs a limit price")
            if order.tif not in caps.time_in_force:
                raise OrderRefused(RefusalReason.NOT_SUPPORTED, f"{self.exchange_id} takes no {order.tif} orders")
            params["timeInForce"] = _TIF[order.tif]
            return "limit", markets.text(order.limit_price), params
        return "market", None, params  # market orders take what the book has: no time in force to send

    async def modify(self, change: ModifyRequest) -> None:  # noqa: ARG002 - the protocol's signature
        raise OrderRefused(RefusalReason.NOT_SUPPORTED, "orders at ccxt exchanges are changed by cancel and replace")

    async def cancel(self, client_order_id: str) -> None:
        market = self._symbol_of.get(client_order_id)
        if market is None:
            found = await self.order(client_order_id=client_order_id)
            if found is None:
                raise OrderRefused(RefusalReason.UNKNOWN_ORDER, f"no order {client_order_id!r}")
            market = self._market_of[found.symbol]
        params = {"clientOrderId": client_order_id}
        await self._call("cancel_order", None, market, params, command=client_order_id, order=True)

    async def cancel_all(self, symbol: str | None = None) -> None:
        if symbol is not None:
            targets = [self._instrument(symbol)[0]]
        else:
            targets = sorted({self._market_of[o.symbol] for o in await self.open_orders()})
        for market in targets:
            with contextlib.suppress(OrderRefused):  # nothing open there (any more): nothing to cancel
                await self._call("cancel_all_orders", market, command="*", order=True)

    # --- reports -----------------------------------------------------------------------------

    def _order(self, raw: Mapping[str, Any]) -> Order | None:
        rules = self._by_market.get(str(raw.get("symbol")))
        if rules is None:
            return None
        coid = self._tracker.client_order_id(raw)
        return mapping.order(
            raw, account_id=self.account_id, instrument=rules, client_order_id=coid, now=self.clock.now()
        )

    async def order(self, *, client_order_id: str | None = None, venue_order_id: str | None = None) -> Order | None:
        if (client_order_id is None) == (venue_order_id is None):
            raise ValueError("name the order by exactly one of client_order_id and venue_order_id")
        raw = await self._fetch_order(client_order_id, venue_order_id)
        return None if raw is None else self._order(raw)

    async def _fetch_order(self, client_order_id: str | None, venue_order_id: str | None) -> Any:
        params = {"clientOrderId": client_order_id} if client_order_id else {}
        known = self._symbol_of.get(client_order_id or "")
        candidates: list[str | None] = [known] if known else [None, *self._scan_symbols()]
        for market in candidates:
            if market is None and "fetch_order" in self._needs_symbol:
                continue
            try:
                return await self._call("fetch_order", venue_order_id, market, params, probe=market is None)
            except ccxt_errors.ArgumentsRequired:
                self._needs_symbol.add("fetch_order")
            except OrderRefused as exc:
                if exc.reason is not RefusalReason.UNKNOWN_ORDER:
                    raise
        return None

    async def open_orders(self) -> list[Order]:
        raws = await self._per_symbol("fetch_open_orders", None)
        if raws is None:
            raws = [o for market in self._scan_symbols() for o in await self._call("fetch_open_orders", market)]
        return [order for raw in raws if (order := self._order(raw)) is not None]

    async def _trades(self, since_ms: int | None, limit: int) -> list[Any]:
        params = dict(FROM_THE_START.get(self.exchange_id, {})) if since_ms is None else {}
        trades = await self._per_symbol("fetch_my_trades", None, since_ms, limit, params)
        if trades is None:
            trades = [
                trade
                for market in self._scan_symbols()
                for trade in await self._call("fetch_my_trades", market, since_ms, limit, dict(params))
            ]
        return list(trades)

    async def _learn_client_ids(self, trades: list[Any]) -> None:
        """Client order ids of trades whose order this adapter has not seen (placed before a restart)."""
        for trade in trades:
            venue_id = str(trade.get("order"))
            if venue_id in self._tracker.client_ids or trade.get("order") is None:
                continue
            with contextlib.suppress(OrderRefused, TransientBrokerError):
                raw = await self._call("fetch_order", venue_id, trade.get("symbol"), {})
                self._tracker.client_order_id(raw)

    async def fills_since(self, cursor: str | None = None, *, limit: int = 500) -> FillPage:
        since_ms, seen = _parse_cursor(cursor)
        # The fills already returned at the cursor's millisecond come back too: ask for that many more.
        trades = await self._trades(since_ms, min(limit + len(seen), 1_000))
        await self._learn_client_ids(trades)
        fills = self._fills(trades, since_ms, seen)[:limit]
        if not fills:
            return FillPage(fills=[], next_cursor=None)
        return FillPage(fills=fills, next_cursor=_cursor(fills, since_ms, seen))

    def _fills(self, trades: list[Any], since_ms: int | None, seen: set[str]) -> list[Fill]:
        out: list[Fill] = []
        now = self.clock.now()
        for trade in trades:
            rules = self._by_market.get(str(trade.get("symbol")))
            if rules is None:
                continue
            venue_id = str(trade.get("order"))
            coid = self._tracker.client_ids.get(venue_id)
            fill = mapping.fill(trade, account_id=self.account_id, instrument=rules, client_order_id=coid, now=now)
            ms = _ms(fill)
            if since_ms is not None and (ms < since_ms or (ms == since_ms and fill.trade_id in seen)):
                continue
            out.append(fill)
        out.sort(key=lambda f: (f.ts, f.trade_id))
        return list({f.trade_id: f for f in out}.values())

    async def balances(self) -> dict[str, tuple[Decimal, Decimal]]:
        """Every asset with a balance: ``(total, free)``."""
        raw = await self._call("fetch_balance")
        totals, free = raw.get("total") or {}, raw.get("free") or {}
        out: dict[str, tuple[Decimal, Decimal]] = {}
        for asset, value in totals.items():
            total = markets.to_decimal(value, markets.EIGHT_PLACES)
            if total:
                out[str(asset)] = (total, markets.to_decimal(free.get(asset), markets.EIGHT_PLACES) or Decimal(0))
        return out

    async def positions(self) -> list[Position]:
        out = []
        for asset, (total, _) in (await self.balances()).items():
            symbol = f"{asset}/{self.currency}"
            if asset != self.currency and symbol in self._instruments:
                out.append(Position(account_id=self.account_id, symbol=symbol, qty=total))
        return out

    async def balance(self) -> Balance:
        held = await self.balances()
        cash, free = held.get(self.currency, (Decimal(0), Decimal(0)))
        equity = cash + await self._holdings_value(held)
        return Balance(
            account_id=self.account_id,
            currency=self.currency,
            cash=cash,
            equity=equity,
            buying_power=free,
            ts=self.clock.now(),
        )

    async def _holdings_value(self, held: Mapping[str, tuple[Decimal, Decimal]]) -> Decimal:
        """Other assets at their last price in the account currency (zero when the exchange has no prices)."""
        symbols = [self._market_of[f"{a}/{self.currency}"] for a in held if f"{a}/{self.currency}" in self._market_of]
        if not symbols or not self._has("fetchLastPrices"):
            return Decimal(0)
        prices = await self._call("fetch_last_prices", symbols)
        value = Decimal(0)
        for market in symbols:
            rules = self._by_market[market]
            price = markets.to_decimal((prices.get(market) or {}).get("price"), rules.tick_size)
            if price is not None:
                value += held[rules.base][0] * price
        return value.quantize(markets.EIGHT_PLACES)

    # --- the stream --------------------------------------------------------------------------

    def _emit_all(self, events: list[DomainEvent]) -> None:
        for event in events:
            coid = getattr(event, "client_order_id", None)
            if coid in self._tracker.finished:
                self._working.discard(coid)
            self._events.put_nowait(event)

    def _connection_event(self, state: ConnectionState, *, gap_possible: bool, reason: str | None = None) -> None:
        self._events.put_nowait(
            ConnectionChanged(
                account_id=self.account_id, ts=self.clock.now(), state=state, gap_possible=gap_possible, reason=reason
            )
        )

    def _drain(self) -> None:
        """Report what the stream's caches hold that was not reported yet."""
        orders = list(self._exchange.orders or [])
        trades = list(getattr(self._exchange, "myTrades", None) or [])
        self._emit_all(self._tracker.events(orders, trades, now=self.clock.now()))

    async def _reconcile(self) -> None:
        """Emit what the stream missed: fills after the last one seen, and the state of working orders."""
        orders = []
        for coid in sorted(self._working):
            raw = await self._fetch_order(coid, None)
            if raw is not None:
                orders.append(raw)
        since_ms, seen = _parse_cursor(self._fill_cursor)
        trades = await self._trades(since_ms, 1_000)
        await self._learn_client_ids(trades)
        fills = self._fills(trades, since_ms, seen)
        if fills:
            self._fill_cursor = _cursor(fills, since_ms, seen)
        by_id = {f.trade_id for f in fills}
        new_trades = [
            t for t in trades if (r := self._by_market.get(str(t.get("symbol")))) and mapping.trade_id(t, r) in by_id
        ]
        # Order states first (acceptances), then fills, then terminal states: the tracker orders them.
        self._emit_all(self._tracker.events(orders, new_trades, now=self.clock.now()))

    async def _run_stream(self) -> None:
        attempt = 0
        reason = "stream ended"
        while not self._closed:
            watchers: list[asyncio.Task[None]] = []
            try:
                if self.streaming:
                    watchers = await self._subscribe()
                if self.reconnects or attempt or not self.streaming:
                    await self._reconcile()
                self._connected.set()
                self._connection_event(ConnectionState.CONNECTED, gap_possible=bool(self.reconnects))
                attempt = 0
                await (self._pump(watchers) if watchers else self._poll())
            except (TransientBrokerError, OutcomeUnknown, ccxt_errors.BaseError, OSError, TimeoutError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            except OrderRefused as exc:  # bad credentials do not get better by retrying fast
                reason = f"refused: {exc.detail}"
            finally:
                for task in watchers:
                    task.cancel()
                await asyncio.gather(*watchers, return_exceptions=True)
            if self._stopping():
                return
            self.reconnects += 1
            self._connection_event(ConnectionState.DISCONNECTED, gap_possible=True, reason=reason)
            _log.warning("ccxt_stream_reconnecting", account_id=self.account_id, attempt=attempt, reason=reason)
            await asyncio.sleep(self.stream.backoff.delay(attempt, self._rng))
            attempt += 1

    def _stopping(self) -> bool:
        # A method, not the attribute: close() flips it while this task is suspended.
        return self._closed

    async def _subscribe(self) -> list[asyncio.Task[None]]:
        """Start the private stream's watchers; return once its connection is up and has settled."""
        methods = ["watch_orders"]
        if self._has("watchMyTrades"):
            methods.append("watch_my_trades")
        watchers = [asyncio.create_task(self._watch(m)) for m in methods]
        async with asyncio.timeout(self.stream.connect_timeout_s):
            while not self._stream_connected():
                done = [t for t in watchers if t.done()]
                if done:
                    done[0].result()  # an error while connecting: raise it
                    raise TransientBrokerError("the private stream ended while connecting")
                await asyncio.sleep(0.01)
        await asyncio.sleep(self.stream.settle_s)
        for task in watchers:
            if task.done():
                task.result()
        return watchers

    def _stream_connected(self) -> bool:
        for client in list(getattr(self._exchange, "clients", {}).values()):
            connected = getattr(client, "connected", None)
            up = connected is not None and connected.done() and not connected.cancelled() and not connected.exception()
            if up and client.subscriptions:
                return True
        return False

    async def _watch(self, method: str) -> None:
        while True:
            await getattr(self._exchange, method)()
            self._wakeup.set()

    async def _pump(self, watchers: list[asyncio.Task[None]]) -> None:
        """Report the caches after every message until a watcher fails (the connection ended)."""
        loop = asyncio.get_running_loop()
        last_reconcile = loop.time()
        while True:
            self._wakeup.clear()
            self._drain()
            wake = asyncio.create_task(self._wakeup.wait())
            try:
                await asyncio.wait(
                    {wake, *watchers}, timeout=self.stream.reconcile_every_s, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                wake.cancel()
            for task in watchers:
                if task.done():
                    self._drain()  # whatever arrived before the connection ended
                    task.result()
                    raise TransientBrokerError("the private stream ended")
            if loop.time() - last_reconcile >= self.stream.reconcile_every_s:
                last_reconcile = loop.time()
                await self._reconcile()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.stream.poll_interval_s)
            await self._reconcile()


# --- fill cursors: "<ms>" or "<ms>|<trade id>,<trade id>" (the ids already returned at that ms) ---------------


def _ms(fill: Fill) -> int:
    return int(fill.ts.timestamp() * 1000)


def _parse_cursor(cursor: str | None) -> tuple[int | None, set[str]]:
    if not cursor:
        return None, set()
    ms, _, ids = cursor.partition("|")
    return int(ms), {i for i in ids.split(",") if i}


def _cursor(fills: list[Fill], since_ms: int | None, seen: set[str]) -> str:
    last = _ms(fills[-1])
    at_last = {f.trade_id for f in fills if _ms(f) == last}
    if last == since_ms:
        at_last |= seen
    return f"{last}|{','.join(sorted(at_last))}"


def _pro_exchanges() -> set[str]:
    import ccxt.pro  # type: ignore[import-untyped]

    return set(ccxt.pro.exchanges)


def _make(config: AdapterConfig) -> BrokerAdapter:
    return CcxtAdapter(config)


register_adapter(CcxtAdapter.kind, _make)
