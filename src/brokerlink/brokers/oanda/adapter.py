"""The OANDA v20 adapter: :class:`~brokerlink.brokers.base.BrokerAdapter` over OANDA's REST API and its
transaction stream.

Commands go over REST (``POST .../orders`` with our client order id as ``clientExtensions.id``,
``PUT .../orders/@<id>/cancel``, the replace ``PUT .../orders/@<id>``); their outcomes are
transactions (``MARKET_ORDER`` / ``LIMIT_ORDER`` / ``STOP_ORDER``, ``ORDER_FILL``, ``ORDER_CANCEL``),
which reach us twice: in the command's answer and on the transaction stream (chunked NDJSON with
``HEARTBEAT`` lines). Both paths feed one handler that takes each transaction id once.

Transaction ids are consecutive per account, which makes catching up exact: the adapter keeps the
highest id below which it has seen everything (:attr:`OandaAdapter.cursor`), and after every
reconnect, or when a heartbeat names a newer transaction that has not arrived, reads
``GET .../transactions/sinceid?id=<cursor>`` and handles what it missed. ``fills_since`` is the same
endpoint filtered to ``ORDER_FILL``.

Credentials: ``token`` (a personal access token, sent as ``Authorization: Bearer``). The base URL is
the REST host (``https://api-fxpractice.oanda.com`` or ``https://api-fxtrade.oanda.com``); the
streaming host is derived from it, or set with the ``stream_url`` option (the test venue serves both).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Iterable

import httpx
import msgspec

from brokerlink.brokers.backoff import Backoff
from brokerlink.brokers.base import (
    AdapterConfig,
    BrokerAdapter,
    Capabilities,
    FillPage,
    ModifyRequest,
    OrderRefused,
    OrderRequest,
    QuoteFeed,
    RefusalReason,
    SeenTradeIds,
    TransientBrokerError,
    VenueAccount,
    register_adapter,
)
from brokerlink.brokers.oanda import mapping, wire
from brokerlink.brokers.oanda.client import OANDA_LIMITS, OandaClient
from brokerlink.domain.enums import ConnectionState, OrderType, TimeInForce
from brokerlink.domain.events import (
    ConnectionChanged,
    DomainEvent,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderUpdated,
)
from brokerlink.domain.models import Balance, Instrument, Order, Position, Quote
from brokerlink.kit.clock import Clock, SystemClock
from brokerlink.logs import get_logger

_log = get_logger("brokerlink.brokers.oanda")

STREAM_HOSTS = {wire.PRACTICE_URL: wire.PRACTICE_STREAM_URL, wire.LIVE_URL: wire.LIVE_STREAM_URL}
OPTION_STREAM_URL = "stream_url"
_CREATES = frozenset({"MARKET_ORDER", "LIMIT_ORDER", "STOP_ORDER"})


class StreamSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Timing of the transaction and pricing streams."""

    backoff: Backoff = Backoff()
    stall_after_s: float = 20.0
    """Reconnect when no line (not even a heartbeat, sent every 5 s) arrived for this long."""
    connect_timeout_s: float = 10.0


class MalformedLine(Exception):
    """A stream line the adapter cannot read; the stream reconnects and catches up."""


class _Head(msgspec.Struct, frozen=True):
    type: str | None = None


class OandaAdapter(BrokerAdapter, QuoteFeed):
    """One OANDA v20 account. Credentials: ``token``."""

    kind = "oanda"

    def __init__(
        self,
        config: AdapterConfig,
        *,
        clock: Clock | None = None,
        stream: StreamSettings | None = None,
        seed: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(config)
        self.clock = clock or SystemClock()
        self.stream = stream or StreamSettings()
        self._rng = random.Random(seed)  # noqa: S311 - jitter, not secrecy
        base = config.base_url.rstrip("/")
        stream_url = config.options.get(OPTION_STREAM_URL) or STREAM_HOSTS.get(base, base)
        self._client = OandaClient(
            base,
            token=config.credentials.get("token"),
            stream_url=stream_url,
            limits=OANDA_LIMITS.with_options(config.options),
            transport=transport,
        )
        self._venue_account_id = config.venue_account_id
        self._currency = "USD"
        self._hedging = False
        self._instruments: dict[str, Instrument] = {}
        self._events: asyncio.Queue[DomainEvent | None] = asyncio.Queue()  # None ends the stream
        self._seen_fills = SeenTradeIds()
        self._coids: dict[str, str] = {}  # OANDA order id -> our client order id
        self.cursor = 0
        """Every transaction with an id up to here has been handled."""
        self._ahead: set[int] = set()  # handled ids above the cursor (arrived out of order)
        self._gap_noticed: int | None = None
        self._stream_task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closed = False
        self.reconnects = 0
        self._quotes: dict[str, Quote] = {}
        self._quote_symbols: set[str] = set()
        self._price_task: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def venue_account_id(self) -> str:
        return self._venue_account_id

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            order_types=frozenset({OrderType.MARKET, OrderType.LIMIT, OrderType.STOP}),
            time_in_force=frozenset(TimeInForce),
            hedging=self._hedging,
            quotes=True,
            depth=False,
        )

    def _path(self, rest: str = "") -> str:
        return f"/accounts/{self._venue_account_id}{rest}"

    async def connect(self) -> None:
        if not self._venue_account_id:
            accounts = await self._client.get("/accounts", wire.AccountsResponse)
            if not accounts.accounts:
                raise OrderRefused(RefusalReason.AUTH, "the token reaches no account")
            self._venue_account_id = accounts.accounts[0].id
        summary = await self._client.get(self._path("/summary"), wire.AccountSummaryResponse)  # proves the token
        self._currency = summary.account.currency
        self._hedging = summary.account.hedging_enabled
        await self._load_instruments()
        # Start from the account's latest transaction: earlier ones are history, not news.
        self.cursor = int(summary.last_transaction_id)
        self._stream_task = asyncio.create_task(self._run_stream(), name=f"oanda-stream-{self.account_id}")
        try:
            async with asyncio.timeout(self.stream.connect_timeout_s):
                await self._connected.wait()
        except TimeoutError:
            await self.close()
            raise TransientBrokerError("OANDA's transaction stream did not come up") from None

    async def _load_instruments(self) -> None:
        body = await self._client.get(self._path("/instruments"), wire.InstrumentsResponse)
        self._instruments = {i.symbol: i for i in (mapping.instrument(b) for b in body.instruments)}

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in (self._stream_task, self._price_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._client.close()
        self._events.put_nowait(None)

    async def events(self) -> AsyncIterator[DomainEvent]:
        while (item := await self._events.get()) is not None:
            yield item

    async def venue_accounts(self) -> list[VenueAccount]:
        """Every account the token reaches (``GET /v3/accounts``), each with its alias and currency."""
        listed = await self._client.get("/accounts", wire.AccountsResponse)
        out = []
        for entry in listed.accounts:
            summary = await self._client.get(f"/accounts/{entry.id}/summary", wire.AccountSummaryResponse)
            out.append(
                VenueAccount(venue_account_id=entry.id, name=summary.account.alias, currency=summary.account.currency)
            )
        return out

    # --- commands ----------------------------------------------------------------------------

    async def instruments(self) -> list[Instrument]:
        return list(self._instruments.values())

    def _venue_symbol(self, symbol: str) -> str:
        inst = self._instruments.get(symbol)
        if inst is None:
            raise OrderRefused(RefusalReason.INVALID_ORDER, f"OANDA does not list {symbol} for this account")
        return inst.venue_symbol

    async def submit(self, order: OrderRequest) -> None:
        """``POST .../orders``: a MARKET (FOK/IOC; GTC and DAY become IOC, as a market order never
        rests), LIMIT or STOP order with ``clientExtensions.id`` = our client order id."""
        oanda_type = mapping.ORDER_TYPES.get(order.type)
        if oanda_type is None:
            raise OrderRefused(RefusalReason.NOT_SUPPORTED, f"OANDA has no {order.type} orders")
        tif = mapping.TIF_OUT[order.tif]
        if order.type is OrderType.MARKET and tif in ("GTC", "GFD"):
            tif = "IOC"
        price = order.limit_price if order.type is OrderType.LIMIT else order.stop_price
        if order.type is not OrderType.MARKET and price is None:
            raise OrderRefused(RefusalReason.INVALID_ORDER, f"a {order.type} order needs a price")
        body = wire.CreateOrderBody(
            order=wire.OrderRequest(
                type=oanda_type,
                instrument=self._venue_symbol(order.symbol),
                units=mapping.signed_units(order.side, order.qty),
                price=price,
                time_in_force=tif,
                client_extensions=wire.ClientExtensions(id=order.client_order_id),
            )
        )
        answer = await self._client.command(
            "POST", self._path("/orders"), wire.CreateOrderResponse, body=body, client_order_id=order.client_order_id
        )
        self._handle_all(
            [answer.order_create_transaction, answer.order_fill_transaction, answer.order_cancel_transaction]
        )

    async def modify(self, change: ModifyRequest) -> None:
        """The replace ``PUT .../orders/@<id>``: OANDA cancels the order and creates its replacement
        (a new order id, the same ``clientExtensions``), reported as :class:`OrderUpdated`."""
        current = await self._client.get(self._path(f"/orders/@{change.client_order_id}"), wire.OrderResponse)
        was = current.order
        if was.type not in ("LIMIT", "STOP") or was.units is None or was.instrument is None:
            raise OrderRefused(RefusalReason.INVALID_ORDER, f"a {was.type} order cannot be amended")
        units = was.units if change.qty is None else (change.qty if was.units > 0 else -change.qty)
        price = change.limit_price if was.type == "LIMIT" else change.stop_price
        body = wire.CreateOrderBody(
            order=wire.OrderRequest(
                type="LIMIT" if was.type == "LIMIT" else "STOP",
                instrument=was.instrument,
                units=units,
                price=price if price is not None else was.price,
                time_in_force=was.time_in_force,
                gtd_time=was.gtd_time,
            )
        )
        answer = await self._client.command(
            "PUT",
            self._path(f"/orders/@{change.client_order_id}"),
            wire.CreateOrderResponse,
            body=body,
            client_order_id=change.client_order_id,
        )
        self._handle_all(
            [answer.order_cancel_transaction, answer.order_create_transaction, answer.order_fill_transaction]
        )

    async def cancel(self, client_order_id: str) -> None:
        answer = await self._client.command(
            "PUT",
            self._path(f"/orders/@{client_order_id}/cancel"),
            wire.CancelOrderResponse,
            client_order_id=client_order_id,
        )
        self._handle_all([answer.order_cancel_transaction])

    async def cancel_all(self, symbol: str | None = None) -> None:
        """Cancel every pending MARKET/LIMIT/STOP order (of ``symbol``); orders attached to trades
        (take profit, stop loss) stay."""
        instrument = self._venue_symbol(symbol) if symbol is not None else None
        pending = await self._client.get(self._path("/pendingOrders"), wire.OrdersResponse)
        for order in pending.orders:
            if order.type in ("LIMIT", "STOP", "MARKET") and instrument in (None, order.instrument):
                coid = mapping.client_order_id(order.client_extensions, order.id)
                answer = await self._client.command(
                    "PUT", self._path(f"/orders/{order.id}/cancel"), wire.CancelOrderResponse, client_order_id=coid
                )
                self._handle_all([answer.order_cancel_transaction])

    async def close_position(self, symbol: str) -> None:
        """Close a whole position, both sides (``PUT .../positions/{instrument}/close``); the fills arrive as events."""
        instrument = self._venue_symbol(symbol)
        held = [p for p in await self.positions() if p.symbol == symbol]
        body = wire.ClosePositionBody(
            long_units="ALL" if any(p.qty > 0 for p in held) else "NONE",
            short_units="ALL" if any(p.qty < 0 for p in held) else "NONE",
        )
        if body.long_units == body.short_units == "NONE":
            return
        answer = await self._client.command(
            "PUT",
            self._path(f"/positions/{instrument}/close"),
            wire.ClosePositionResponse,
            body=body,
            client_order_id="*",
        )
        self._handle_all(
            [
                answer.long_order_create_transaction,
                answer.long_order_fill_transaction,
                answer.long_order_cancel_transaction,
                answer.short_order_create_transaction,
                answer.short_order_fill_transaction,
                answer.short_order_cancel_transaction,
            ]
        )

    # --- reports -----------------------------------------------------------------------------

    async def order(self, *, client_order_id: str | None = None, venue_order_id: str | None = None) -> Order | None:
        if (client_order_id is None) == (venue_order_id is None):
            raise ValueError("name the order by exactly one of client_order_id and venue_order_id")
        specifier = f"@{client_order_id}" if client_order_id is not None else str(venue_order_id)
        try:
            body = (await self._client.get(self._path(f"/orders/{specifier}"), wire.OrderResponse)).order
        except OrderRefused as exc:
            if exc.reason is RefusalReason.UNKNOWN_ORDER:
                return None
            raise
        fill = await self._transaction(body.filling_transaction_id)
        cancel = await self._transaction(body.cancelling_transaction_id)
        return mapping.order(body, account_id=self.account_id, fill=fill, cancel=cancel)

    async def _transaction(self, transaction_id: str | None) -> wire.Transaction | None:
        if transaction_id is None:
            return None
        path = self._path(f"/transactions/{transaction_id}")
        return (await self._client.get(path, wire.TransactionResponse)).transaction

    async def open_orders(self) -> list[Order]:
        pending = await self._client.get(self._path("/pendingOrders"), wire.OrdersResponse)
        return [
            mapping.order(o, account_id=self.account_id)
            for o in pending.orders
            if o.type in ("MARKET", "LIMIT", "STOP")
        ]

    async def fills_since(self, cursor: str | None = None, *, limit: int = 500) -> FillPage:
        """``ORDER_FILL`` transactions after transaction id ``cursor`` (all of them when ``None``)."""
        params = {"id": cursor or "0", "type": "ORDER_FILL"}
        body = await self._client.get(self._path("/transactions/sinceid"), wire.TransactionsResponse, params=params)
        fills = [
            mapping.fill(t, account_id=self.account_id, currency=self._currency)
            for t in body.transactions
            if t.type == "ORDER_FILL"
        ][:limit]
        return FillPage(fills=fills, next_cursor=fills[-1].trade_id if fills else None)

    async def positions(self) -> list[Position]:
        body = await self._client.get(self._path("/openPositions"), wire.PositionsResponse)
        return [p for position in body.positions for p in mapping.positions(position, account_id=self.account_id)]

    async def trades(self) -> list[wire.Trade]:
        """The open trades (``GET .../openTrades``), OANDA's own view below positions."""
        return (await self._client.get(self._path("/openTrades"), wire.TradesResponse)).trades

    async def balance(self) -> Balance:
        body = await self._client.get(self._path("/summary"), wire.AccountSummaryResponse)
        return mapping.balance(body.account, account_id=self.account_id, now=self.clock.now())

    # --- quotes: the pricing stream ----------------------------------------------------------

    async def subscribe_quotes(self, symbols: Iterable[str]) -> None:
        """Stream the prices of ``symbols`` (every symbol checked first); :meth:`quote` has them once arrived."""
        wanted = {self._venue_symbol(s) for s in symbols}
        if wanted <= self._quote_symbols:
            return
        self._quote_symbols |= wanted
        if self._price_task is not None:  # one stream carries every instrument: restart it with the new set
            self._price_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._price_task
        self._price_task = asyncio.create_task(self._run_prices(), name=f"oanda-prices-{self.account_id}")

    def quote(self, symbol: str) -> Quote | None:
        """The latest streamed quote of ``symbol``; ``None`` before one arrived on the current connection."""
        return self._quotes.get(symbol)

    async def quote_snapshot(self, symbol: str) -> Quote:
        """``GET .../pricing?instruments=``: the price now."""
        params = {"instruments": self._venue_symbol(symbol)}
        body = await self._client.get(self._path("/pricing"), wire.PricingResponse, params=params)
        if not body.prices:
            raise TransientBrokerError(f"OANDA has no price for {symbol} now")
        return mapping.quote(body.prices[0])

    async def _run_prices(self) -> None:
        attempt = 0
        while not self._closed:
            params = {"instruments": ",".join(sorted(self._quote_symbols))}
            try:
                async with self._client.stream(self._path("/pricing/stream"), params=params) as response:
                    attempt = 0
                    async for line in self._lines(response):
                        if msgspec.json.decode(line, type=_Head).type not in (None, "PRICE"):
                            continue
                        price = msgspec.json.decode(line, type=wire.ClientPrice)
                        if price.bids and price.asks:
                            quote = mapping.quote(price)
                            self._quotes[quote.symbol] = quote
            except (
                httpx.HTTPError,
                OSError,
                TimeoutError,
                TransientBrokerError,
                MalformedLine,
                msgspec.DecodeError,
            ) as exc:
                _log.warning(
                    "oanda_prices_reconnecting", account_id=self.account_id, reason=f"{type(exc).__name__}: {exc}"
                )
            except OrderRefused as exc:
                _log.warning("oanda_prices_refused", account_id=self.account_id, reason=exc.detail)
            self._quotes.clear()  # a quote from a dropped connection must not pass for a live one
            if self._stopping():
                return
            await asyncio.sleep(self.stream.backoff.delay(attempt, self._rng))
            attempt += 1

    # --- the transaction stream ----------------------------------------------------------------

    def _stopping(self) -> bool:
        # A method, not the attribute: close() flips it while the stream tasks are suspended.
        return self._closed

    def _put(self, event: DomainEvent) -> None:
        if isinstance(event, OrderFilled) and not self._seen_fills.first_time(event.trade_id):
            return
        self._events.put_nowait(event)

    def _connection_event(self, state: ConnectionState, *, gap_possible: bool, reason: str | None = None) -> None:
        now = self.clock.now()
        self._events.put_nowait(
            ConnectionChanged(account_id=self.account_id, ts=now, state=state, gap_possible=gap_possible, reason=reason)
        )

    def _handle_all(self, transactions: Iterable[wire.Transaction | None]) -> None:
        for txn in transactions:
            if txn is not None:
                self._handle(txn)

    def _mark(self, transaction_id: int) -> bool:
        """Record a transaction id as handled; ``False`` if it already was."""
        if transaction_id <= self.cursor or transaction_id in self._ahead:
            return False
        self._ahead.add(transaction_id)
        while self.cursor + 1 in self._ahead:
            self.cursor += 1
            self._ahead.discard(self.cursor)
        return True

    def _handle(self, txn: wire.Transaction) -> None:
        """One transaction, from an answer, the stream or a catch-up: each id is handled once."""
        if txn.id is None or not txn.id.isdigit() or not self._mark(int(txn.id)):
            return
        event = self._event_for(txn)
        if event is not None:
            self._put(event)

    def _event_for(self, txn: wire.Transaction) -> DomainEvent | None:  # noqa: PLR0911 - one event per kind
        now = self.clock.now()
        if txn.type in _CREATES and txn.id is not None:
            coid = mapping.client_order_id(txn.client_extensions, txn.id)
            self._coids[txn.id] = coid
            if txn.reason == "REPLACEMENT":
                price = txn.price
                return OrderUpdated(
                    account_id=self.account_id,
                    client_order_id=coid,
                    venue_order_id=txn.id,
                    ts=now,
                    venue_ts=txn.time,
                    qty=abs(txn.units) if txn.units is not None else None,
                    limit_price=price if txn.type == "LIMIT_ORDER" else None,
                    stop_price=price if txn.type == "STOP_ORDER" else None,
                )
            return OrderAccepted(
                account_id=self.account_id, client_order_id=coid, venue_order_id=txn.id, ts=now, venue_ts=txn.time
            )
        if txn.type == "ORDER_FILL":
            if txn.client_order_id is None and txn.order_id in self._coids:
                txn = msgspec.structs.replace(txn, client_order_id=self._coids[txn.order_id])
            try:
                return mapping.fill_event(txn, account_id=self.account_id, currency=self._currency, received=now)
            except ValueError as exc:
                _log.error("oanda_unreadable_fill", account_id=self.account_id, transaction_id=txn.id, error=str(exc))
                return None
        if txn.type == "ORDER_CANCEL" and txn.order_id is not None:
            if txn.reason == "CLIENT_REQUEST_REPLACED":
                return None  # the replacement's creation (reason REPLACEMENT) says what changed
            coid = txn.client_order_id or self._coids.get(txn.order_id) or f"{mapping.FOREIGN_PREFIX}{txn.order_id}"
            ids = {"account_id": self.account_id, "client_order_id": coid, "venue_order_id": txn.order_id}
            if txn.reason == "TIME_IN_FORCE_EXPIRED":
                return OrderExpired(**ids, ts=now, venue_ts=txn.time)
            return OrderCanceled(**ids, ts=now, venue_ts=txn.time, reason=txn.reason)
        # *_REJECT: the command that caused it already raised; funding, financing...: not order events.
        return None

    async def _catch_up(self) -> None:
        """Handle every transaction after the cursor (``GET .../transactions/sinceid``)."""
        params = {"id": str(self.cursor)}
        body = await self._client.get(self._path("/transactions/sinceid"), wire.TransactionsResponse, params=params)
        self._handle_all(body.transactions)
        self._gap_noticed = None

    async def _lines(self, response: httpx.Response) -> AsyncIterator[bytes]:
        """The stream's lines, each within ``stall_after_s`` of the previous (a stall ends the stream)."""
        lines = response.aiter_lines().__aiter__()
        while True:
            try:
                async with asyncio.timeout(self.stream.stall_after_s):
                    line = await lines.__anext__()
            except StopAsyncIteration:
                return
            if line.strip():
                yield line.encode()

    async def _pump(self, response: httpx.Response) -> None:
        async for line in self._lines(response):
            try:
                txn = msgspec.json.decode(line, type=wire.Transaction)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                # Skipping it could lose a fill; reconnecting catches up from the cursor instead.
                raise MalformedLine(f"unreadable transaction line: {exc}") from exc
            if txn.type == "HEARTBEAT":
                await self._on_heartbeat(txn)
            else:
                self._handle(txn)

    async def _on_heartbeat(self, beat: wire.Transaction) -> None:
        latest = int(beat.last_transaction_id or 0)
        if latest <= self.cursor:
            self._gap_noticed = None
        elif self._gap_noticed is not None and self._gap_noticed <= self.cursor:
            self._gap_noticed = latest  # the earlier gap closed; watch this one for a heartbeat
        elif self._gap_noticed is not None:
            await self._catch_up()  # still missing one heartbeat later: not in flight, lost
        else:
            self._gap_noticed = latest

    async def _run_stream(self) -> None:
        attempt = 0
        while not self._closed:
            try:
                async with self._client.stream(self._path("/transactions/stream")) as response:
                    # Anything may have happened since the cursor (while away, or between connect()'s
                    # summary and now); the stream is open, so a later transaction arrives on it.
                    await self._catch_up()
                    self._connected.set()
                    self._connection_event(ConnectionState.CONNECTED, gap_possible=bool(self.reconnects))
                    attempt = 0
                    await self._pump(response)
                    reason = "stream closed by OANDA"
            except (httpx.HTTPError, OSError, TimeoutError, TransientBrokerError, MalformedLine) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            except OrderRefused as exc:  # a revoked token will not get better by retrying fast
                reason = f"refused: {exc.detail}"
            if self._stopping():
                return
            self.reconnects += 1
            self._connection_event(ConnectionState.DISCONNECTED, gap_possible=True, reason=reason)
            _log.warning("oanda_stream_reconnecting", account_id=self.account_id, attempt=attempt, reason=reason)
            await asyncio.sleep(self.stream.backoff.delay(attempt, self._rng))
            attempt += 1


def _make(config: AdapterConfig) -> BrokerAdapter:
    return OandaAdapter(config)


register_adapter(OandaAdapter.kind, _make)
