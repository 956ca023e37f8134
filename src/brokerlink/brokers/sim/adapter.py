"""The sim adapter: :class:`~brokerlink.brokers.base.BrokerAdapter` over the sim venue's HTTP and WebSocket API.

It talks to the venue exactly as the Alpaca, OANDA and CCXT adapters talk to theirs: commands over
signed REST, outcomes over the ``trade_updates`` WebSocket channel. The stream reconnects by itself
with exponential backoff and full jitter, treats "pings but no data" as a stall, and after every
reconnect reconciles from reports (fills since the last one seen, the state of every order still
working) so that nothing that happened while it was away is lost or counted twice.

Market data (:class:`~brokerlink.brokers.base.MarketDataAdapter`) rides the same WebSocket and is
kept by a :class:`~brokerlink.brokers.sim.feed.MarketFeed`. Every handshake renews every subscription.
Quotes, book changes and public trades (:class:`~brokerlink.brokers.base.TradeFeed`) are also pushed
to listeners as they arrive (:class:`~brokerlink.brokers.base.MarketPush`), with the stream's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import TypeVar

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from brokerlink.brokers.backoff import Backoff
from brokerlink.brokers.base import (
    AdapterConfig,
    BrokerAdapter,
    BrokerRateLimited,
    Capabilities,
    FeedState,
    FillPage,
    MarketDataAdapter,
    MarketListener,
    MarketListeners,
    MarketPush,
    ModifyRequest,
    OrderBookView,
    OrderRefused,
    OrderRequest,
    RefusalReason,
    SeenTradeIds,
    TradeFeed,
    TransientBrokerError,
    VenueAccount,
    register_adapter,
)
from brokerlink.brokers.limits import BrokerLimiter, BrokerLimits, RateRule, limiter_for
from brokerlink.brokers.sim import mapping
from brokerlink.brokers.sim.client import SimClient
from brokerlink.brokers.sim.feed import MarketFeed
from brokerlink.brokers.sim.gate import DEFAULT_RATE_LIMITS
from brokerlink.brokers.sim.wire import (
    AccountBody,
    AmendOrder,
    FillBody,
    FillsPage,
    InstrumentBody,
    NewOrder,
    OrderBody,
    PositionBody,
    TradeUpdate,
    sign,
)
from brokerlink.domain.enums import AccountMode, ConnectionState, OrderStatus, OrderType, TimeInForce
from brokerlink.domain.events import (
    ConnectionChanged,
    DomainEvent,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
)
from brokerlink.domain.models import Balance, Instrument, Order, Position, Quote
from brokerlink.kit.clock import Clock, SystemClock
from brokerlink.logs import get_logger

_log = get_logger("brokerlink.brokers.sim")
T = TypeVar("T")

SIM_LIMITS = BrokerLimits(
    per_account=tuple(RateRule(rule.limit, float(rule.per_seconds)).under(0.9) for rule in DEFAULT_RATE_LIMITS)
)
"""The client's limits at a sim venue: just under what the venue enforces per API key (20/s and 600/min
by default, :data:`~brokerlink.brokers.sim.gate.DEFAULT_RATE_LIMITS`), so network jitter between our
count and the venue's does not cost a 429. A venue started with other limits is matched with the
``account_rate_limits`` / ``endpoint_rate_limits`` options (:mod:`brokerlink.brokers.limits`)."""


class StreamSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Timing of the event stream."""

    backoff: Backoff = Backoff()
    stall_after_s: float = 15.0
    """Reconnect when no data arrived for this long although the connection is up."""
    connect_timeout_s: float = 10.0
    close_timeout_s: float = 1.0
    """How long closing waits for the venue's half of the close handshake. Short: a connection we are
    leaving has nothing more to tell us, and a client that stopped reading may not see the venue's
    close frame behind the market data queued before it (seen as a 10 s hang in close())."""


class MalformedMessage(Exception):
    """The venue sent something the adapter cannot read; the stream reconnects and reconciles."""


_RECONNECT_ON = (ConnectionClosed, InvalidHandshake, OSError, TimeoutError, TransientBrokerError, MalformedMessage)


class _Envelope(msgspec.Struct, frozen=True):
    """Any message from the venue's WebSocket: an op (auth, ping...) or channel data."""

    op: str | None = None
    status: str | None = None
    ch: str | None = None
    seq: int | None = None
    data: msgspec.Raw = msgspec.Raw(b"")  # decoded only for the channels we read
    ts: int | None = None
    channels: list[str] | None = None  # in a subscribe reply: the connection's channels now


class _LimitedClient(SimClient):
    """The venue's REST client, with every request (commands, reports, market-data snapshots) first
    taking a slot of the endpoint's shared limiter (:func:`~brokerlink.brokers.limits.limiter_for`).

    A 429 pauses the whole endpoint for the venue's ``Retry-After``: the answer does not say which
    limit was hit, and with our own counts kept under the venue's, a 429 means something we do not
    count (another process, a venue-wide limit), which every account of the endpoint runs into alike.
    """

    def __init__(self, config: AdapterConfig, limits: BrokerLimits) -> None:
        api_key = config.credentials.get("api_key")
        super().__init__(config.base_url, api_key=api_key, api_secret=config.credentials.values.get("api_secret"))
        self._base_url = config.base_url
        self._limits = limits
        # The venue limits per API key; a digest names the key's bucket without keeping the key in it.
        self._limit_key = hashlib.sha256(api_key.encode()).hexdigest()[:16]
        self._limiter: BrokerLimiter | None = None

    @property
    def limiter(self) -> BrokerLimiter:
        """The endpoint's limiter (looked up in the running loop at first use)."""
        if self._limiter is None:
            self._limiter = limiter_for(SimAdapter.kind, self._base_url, self._limits)
        return self._limiter

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        limiter = self.limiter
        async with limiter.slot(self._limit_key):
            try:
                yield
            except BrokerRateLimited as exc:
                limiter.penalize((exc.retry_after_ms or 1000) / 1000)
                raise

    async def get(self, path: str, type_: type[T], *, params: Mapping[str, str | int] | None = None) -> T:
        async with self._slot():
            return await super().get(path, type_, params=params)

    async def command(
        self, method: str, path: str, type_: type[T], *, body: msgspec.Struct | None = None, client_order_id: str
    ) -> T:
        async with self._slot():
            return await super().command(method, path, type_, body=body, client_order_id=client_order_id)


class SimAdapter(BrokerAdapter, MarketDataAdapter, TradeFeed, MarketPush):
    """One account at a sim venue. Credentials: ``api_key`` and, for a signed venue, ``api_secret``."""

    kind = "sim"

    def __init__(
        self,
        config: AdapterConfig,
        *,
        clock: Clock | None = None,
        stream: StreamSettings | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(config)
        self.clock = clock or SystemClock()
        self.stream = stream or StreamSettings()
        self._rng = random.Random(seed)  # noqa: S311 - jitter, not secrecy
        self._client = _LimitedClient(config, SIM_LIMITS.with_options(config.options))
        self._events: asyncio.Queue[DomainEvent | None] = asyncio.Queue()  # None ends the stream
        self._seen = SeenTradeIds()
        self._symbols = mapping.SymbolMap([])
        self._instruments: list[Instrument] = []
        self._mode = AccountMode.NETTING
        self._venue_account_id = config.venue_account_id
        self._working: set[str] = set()
        self._accepted: set[str] = set()  # working orders whose acceptance we have reported
        self._fill_cursor: int | None = None
        self._stream_task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closed = False
        self.reconnects = 0
        self._feed = MarketFeed(
            self._client,
            symbols=lambda: self._symbols,
            backoff=self.stream.backoff,
            rng=self._rng,
            stopping=self._stopping,
            name=self.account_id,
            listeners=MarketListeners(),
        )
        self._ws: ClientConnection | None = None  # the live, authenticated connection

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def venue_account_id(self) -> str:
        return self._venue_account_id

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            order_types=frozenset(OrderType),
            time_in_force=frozenset(TimeInForce),
            hedging=self._mode is AccountMode.HEDGING,
            depth=True,
        )

    async def connect(self) -> None:
        account = await self._client.get("/account", AccountBody)  # proves the credentials
        if self.config.venue_account_id and self.config.venue_account_id != account.account_id:
            raise OrderRefused(
                RefusalReason.AUTH, f"these credentials trade account {account.account_id}, not the one configured"
            )
        self._venue_account_id = account.account_id
        self._mode = account.mode
        bodies = await self._client.get("/instruments", list[InstrumentBody])
        self._symbols = mapping.SymbolMap(bodies)
        self._instruments = [mapping.instrument(b) for b in bodies]
        # Start from the venue's latest fill: earlier ones are history, not news.
        self._fill_cursor = await self._latest_fill_id()
        self._stream_task = asyncio.create_task(self._run_stream(), name=f"sim-stream-{self.account_id}")
        try:
            async with asyncio.timeout(self.stream.connect_timeout_s):
                await self._connected.wait()
        except TimeoutError:
            await self.close()
            raise TransientBrokerError("the venue's event stream did not come up") from None

    async def venue_accounts(self) -> list[VenueAccount]:
        account = await self._client.get("/account", AccountBody)  # one read-only call: proves the credentials
        return [VenueAccount(venue_account_id=account.account_id, currency=account.currency)]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._stream_task is not None:
            self._stream_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stream_task
        await self._feed.disconnected("adapter closed")
        self._feed.listeners.feed(FeedState.CLOSED, "adapter closed")
        await self._client.close()
        self._events.put_nowait(None)

    async def events(self) -> AsyncIterator[DomainEvent]:
        while (item := await self._events.get()) is not None:
            yield item

    # --- commands ----------------------------------------------------------------------------

    async def instruments(self) -> list[Instrument]:
        return list(self._instruments)

    def _venue_symbol(self, symbol: str) -> str:
        try:
            return self._symbols.venue(symbol)
        except KeyError:
            raise OrderRefused(RefusalReason.INVALID_ORDER, f"the venue does not list {symbol}") from None

    async def submit(self, order: OrderRequest) -> None:
        body = NewOrder(
            client_order_id=order.client_order_id,
            symbol=self._venue_symbol(order.symbol),
            side=order.side,
            qty=order.qty,
            type=order.type,
            tif=order.tif,
            limit_price=order.limit_price,
            stop_price=order.stop_price,
        )
        # Tracked before sending: if the answer is lost, reconciliation still looks this order up.
        self._working.add(order.client_order_id)
        await self._client.command("POST", "/orders", OrderBody, body=body, client_order_id=order.client_order_id)

    async def modify(self, change: ModifyRequest) -> None:
        body = AmendOrder(qty=change.qty, limit_price=change.limit_price, stop_price=change.stop_price)
        path = f"/orders/by-client-id/{change.client_order_id}"
        await self._client.command("PATCH", path, OrderBody, body=body, client_order_id=change.client_order_id)

    async def cancel(self, client_order_id: str) -> None:
        path = f"/orders/by-client-id/{client_order_id}"
        await self._client.command("DELETE", path, OrderBody, client_order_id=client_order_id)

    async def cancel_all(self, symbol: str | None = None) -> None:
        path = "/orders" + (f"?symbol={self._venue_symbol(symbol)}" if symbol else "")
        await self._client.command("DELETE", path, list[OrderBody], client_order_id="*")

    # --- reports -----------------------------------------------------------------------------

    async def order(self, *, client_order_id: str | None = None, venue_order_id: str | None = None) -> Order | None:
        if (client_order_id is None) == (venue_order_id is None):
            raise ValueError("name the order by exactly one of client_order_id and venue_order_id")
        path = f"/orders/by-client-id/{client_order_id}" if client_order_id else f"/orders/{venue_order_id}"
        try:
            body = await self._client.get(path, OrderBody)
        except OrderRefused as exc:
            if exc.reason is RefusalReason.UNKNOWN_ORDER:
                return None
            raise
        return mapping.order(body, account_id=self.account_id, symbols=self._symbols)

    async def open_orders(self) -> list[Order]:
        bodies = await self._client.get("/orders", list[OrderBody], params={"status": "open"})
        return [mapping.order(b, account_id=self.account_id, symbols=self._symbols) for b in bodies]

    async def fills_since(self, cursor: str | None = None, *, limit: int = 500) -> FillPage:
        params: dict[str, str | int] = {"limit": limit}
        if cursor is not None:
            params["since_id"] = cursor
        page = await self._client.get("/fills", FillsPage, params=params)
        fills = [mapping.fill(f, account_id=self.account_id, symbols=self._symbols) for f in page.fills]
        next_cursor = str(page.next_since_id) if page.next_since_id is not None else None
        return FillPage(fills=fills, next_cursor=next_cursor)

    async def positions(self) -> list[Position]:
        bodies = await self._client.get("/positions", list[PositionBody])
        return [mapping.position(b, account_id=self.account_id, symbols=self._symbols) for b in bodies]

    async def balance(self) -> Balance:
        return mapping.balance(await self._client.get("/account", AccountBody), account_id=self.account_id)

    # --- market data (kept by the feed; see brokerlink.brokers.sim.feed) ----------------------

    async def subscribe_depth(self, symbol: str) -> None:
        """Keep the book of ``symbol``; it is in sync (see :meth:`book`) once its snapshot has been applied."""
        await self._subscribe(self._feed.add_book(self._venue_symbol(symbol)))

    def book(self, symbol: str) -> OrderBookView | None:
        """A copy of the book of ``symbol``; ``None`` if not subscribed or not in sync right now."""
        return self._feed.book(symbol, self._venue_symbol(symbol))

    async def subscribe_quotes(self, symbols: Iterable[str]) -> None:
        """Stream the quotes of ``symbols``; each is available from :meth:`quote` once one has arrived."""
        venue_symbols = [self._venue_symbol(s) for s in symbols]  # all checked before any is subscribed
        await self._subscribe(self._feed.add_quotes(venue_symbols))

    def quote(self, symbol: str) -> Quote | None:
        """The latest streamed quote of ``symbol``; ``None`` if not subscribed or none since the last (re)connect."""
        return self._feed.quote(self._venue_symbol(symbol))

    async def quote_snapshot(self, symbol: str) -> Quote:
        """The venue's quote of ``symbol`` now, from ``GET /quotes/SYM``."""
        return await self._feed.quote_snapshot(self._venue_symbol(symbol))

    async def subscribe_trades(self, symbols: Iterable[str]) -> None:
        """Stream the public trades of ``symbols``: pushed to the market listeners, not kept."""
        venue_symbols = [self._venue_symbol(s) for s in symbols]  # all checked before any is subscribed
        await self._subscribe(self._feed.add_trades(venue_symbols))

    def add_market_listener(self, listener: MarketListener) -> Callable[[], None]:
        """Push quotes, book changes, trades and the stream's state to ``listener`` (see MarketPush)."""
        return self._feed.listeners.add(listener)

    async def _subscribe(self, channels: list[str]) -> None:
        ws = self._ws
        if channels and ws is not None:
            # Without a live connection there is nothing to do now: every handshake subscribes everything.
            with contextlib.suppress(ConnectionClosed):
                await self._send(ws, {"op": "subscribe", "channels": channels})

    # --- the stream --------------------------------------------------------------------------

    def _ws_url(self) -> str:
        base = self.config.base_url.rstrip("/")
        return "ws" + base.removeprefix("http") + "/ws"

    def _emit(self, event: DomainEvent) -> None:
        if isinstance(event, OrderFilled) and not self._seen.first_time(event.trade_id):
            return  # the same fill reached us twice (stream and report, or a duplicated message)
        if isinstance(event, OrderAccepted):
            if event.client_order_id in self._accepted:
                return  # reconciliation already reported it
            self._accepted.add(event.client_order_id)
        self._events.put_nowait(event)

    def _connection_event(self, state: ConnectionState, *, gap_possible: bool, reason: str | None = None) -> None:
        self._events.put_nowait(
            ConnectionChanged(
                account_id=self.account_id, ts=self.clock.now(), state=state, gap_possible=gap_possible, reason=reason
            )
        )

    async def _run_stream(self) -> None:
        attempt = 0
        while not self._closed:
            try:
                async with connect(
                    self._ws_url(),
                    open_timeout=self.stream.connect_timeout_s,
                    close_timeout=self.stream.close_timeout_s,
                ) as ws:
                    try:
                        await self._handshake(ws)
                        if self.reconnects or attempt:
                            # Anything may have happened while we were away: read it back from reports.
                            await self._reconcile()
                        self._connected.set()
                        self._connection_event(ConnectionState.CONNECTED, gap_possible=bool(self.reconnects))
                        attempt = 0
                        self._feed.connected()
                        await self._pump(ws)
                        reason = "connection closed by the venue"
                    finally:
                        # A snapshot fetched for this connection must not land in the next one's books,
                        # nor may its quotes pass for live ones until the next connection sends fresh ones.
                        self._ws = None
                        await self._feed.disconnected("connection lost")
            except (
                ConnectionClosed,
                InvalidHandshake,
                OSError,
                TimeoutError,
                TransientBrokerError,
                MalformedMessage,
            ) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            except OrderRefused as exc:  # bad credentials will not get better by retrying fast
                reason = f"refused: {exc.detail}"
            if self._stopping():
                return
            self.reconnects += 1
            self._connection_event(ConnectionState.DISCONNECTED, gap_possible=True, reason=reason)
            _log.warning("sim_stream_reconnecting", account_id=self.account_id, attempt=attempt, reason=reason)
            await asyncio.sleep(self.stream.backoff.delay(attempt, self._rng))
            attempt += 1

    def _stopping(self) -> bool:
        # A method, not the attribute: close() flips it while this task is suspended.
        return self._closed

    async def _send(self, ws: ClientConnection, message: dict[str, object]) -> None:
        # JSON travels in text frames (the venue, like real ones, reads text).
        await ws.send(msgspec.json.encode(message).decode())

    async def _handshake(self, ws: ClientConnection) -> None:
        auth: dict[str, object] = {"op": "auth", "api_key": self._client.api_key}
        if self._client.api_secret is not None:
            ts = time.time_ns() // 1_000_000
            auth |= {"ts": ts, "signature": sign(self._client.api_secret, ts, "GET", "/ws", b"")}
        await self._send(ws, auth)
        async with asyncio.timeout(self.stream.connect_timeout_s):
            reply = msgspec.json.decode(await ws.recv(), type=_Envelope)
        if reply.op != "auth" or reply.status != "ok":
            raise OrderRefused(RefusalReason.AUTH, "the venue refused the stream's credentials")
        # Set before building the channel list, so a subscribe_depth() or subscribe_quotes() from now on
        # either is in the list or sends its own subscribe on this connection.
        self._ws = ws
        # A market-data channel that ticks steadily: its silence while pings continue is a stall.
        probe = self._instruments[0].venue_symbol if self._instruments else None
        channels = ["trade_updates", *self._feed.channels(stall_probe=probe)]
        await self._send(ws, {"op": "subscribe", "channels": channels})

    async def _pump(self, ws: ClientConnection) -> None:
        while True:
            try:
                # asyncio.timeout, not wait_for: wait_for runs recv() in an inner task that can outlive
                # a cancellation of ours (seen as close() hanging); timeout() cancels this task itself.
                async with asyncio.timeout(self.stream.stall_after_s):
                    raw = await ws.recv()
            except TimeoutError:
                _log.warning("sim_stream_stalled", account_id=self.account_id, after_s=self.stream.stall_after_s)
                await ws.close(code=1000, reason="stalled")
                return
            try:
                message = msgspec.json.decode(raw, type=_Envelope)
            except msgspec.DecodeError as exc:
                raise MalformedMessage(f"undecodable frame: {exc}") from exc
            if message.op == "ping":
                await self._send(ws, {"op": "pong", "ts": message.ts})
                continue
            if message.op == "subscribe" and message.channels:
                # The subscription is live: diffs from now on reach us, so a snapshot fetched now is enough.
                for channel in message.channels:
                    kind, _, venue_symbol = channel.partition(":")
                    if kind == "depth":
                        self._feed.want_snapshot(venue_symbol)
                continue
            if message.ch is not None and message.data and self._feed.on_market(message.ch, message.data):
                continue  # quotes:, depth: or trades:
            if message.ch == "trade_updates" and message.data:
                try:
                    update = msgspec.json.decode(message.data, type=TradeUpdate)
                    event = mapping.trade_update_event(
                        update, account_id=self.account_id, symbols=self._symbols, received=self.clock.now()
                    )
                except (msgspec.DecodeError, ValueError, KeyError) as exc:
                    # Skipping it could lose a fill; reconnecting reconciles from reports instead.
                    raise MalformedMessage(f"unreadable trade update: {exc}") from exc
                self._emit(event)
                if update.order.status.is_terminal:  # nothing more to reconcile for it
                    self._working.discard(update.order.client_order_id)

    async def _fill_bodies(self, since_id: int | None) -> AsyncIterator[FillBody]:
        """Every fill after ``since_id``, oldest first, page by page."""
        while True:
            params: dict[str, str | int] = {"limit": 500}
            if since_id is not None:
                params["since_id"] = since_id
            page = await self._client.get("/fills", FillsPage, params=params)
            for body in page.fills:
                yield body
            if page.next_since_id is None or not page.fills:
                return
            since_id = page.fills[-1].id

    async def _latest_fill_id(self) -> int | None:
        latest: int | None = None
        async for body in self._fill_bodies(None):
            latest = body.id
        return latest

    async def _reconcile(self) -> None:
        """Emit what the stream missed: fills after the last one seen, and final states of working orders."""
        async for body in self._fill_bodies(self._fill_cursor):
            self._fill_cursor = body.id
            now = self.clock.now()
            self._emit(mapping.fill_event(body, account_id=self.account_id, symbols=self._symbols, received=now))
        for client_order_id in sorted(self._working):
            report = await self.order(client_order_id=client_order_id)
            if report is None:
                continue
            ids = mapping.EventIds(
                account_id=self.account_id,
                client_order_id=client_order_id,
                venue_order_id=report.venue_order_id or report.id,
                ts=self.clock.now(),
                venue_ts=report.updated_at,
            )
            if client_order_id not in self._accepted and report.status is not OrderStatus.REJECTED:
                # Accepted while we were away: report it before anything that happened to it since.
                self._emit(OrderAccepted(**ids))
            if report.status is OrderStatus.CANCELED:
                self._emit(OrderCanceled(**ids, reason="seen in reconciliation"))
            elif report.status is OrderStatus.EXPIRED:
                self._emit(OrderExpired(**ids))
            elif report.status is OrderStatus.REJECTED:
                self._emit(OrderRejected(**ids, reason=report.reject_reason or "rejected by the venue"))
            if report.status.is_terminal:
                self._working.discard(client_order_id)


def _make(config: AdapterConfig) -> BrokerAdapter:
    return SimAdapter(config)


register_adapter(SimAdapter.kind, _make, credential_fields=("api_key", "api_secret"))
