"""The Alpaca adapter: :class:`~brokerlink.brokers.base.BrokerAdapter` over Alpaca's Trading API v2.

Commands go over REST (``POST /v2/orders`` with our ``client_order_id``, ``PATCH`` to replace,
``DELETE`` to cancel); outcomes arrive on the ``trade_updates`` WebSocket stream (``/stream`` on the
trading host: ``auth``, then ``listen``). The stream reconnects by itself with backoff and full
jitter; Alpaca sends no heartbeats of its own, so a dead connection is found by WebSocket pings.
After every reconnect the adapter reconciles from reports: ``FILL`` activities after the last one
seen, and the state of every order still working, so nothing that happened meanwhile is lost or
counted twice (fills are deduplicated by the trade id of :func:`~.mapping.fill_trade_id`).

Credentials: ``api_key`` (the key id) and ``api_secret``. Base URL: ``https://paper-api.alpaca.markets``
(paper) or ``https://api.alpaca.markets`` (live); market data is then read from
``data.alpaca.markets`` and ``stream.data.alpaca.markets``, or from the options ``data_url`` and
``data_stream_url`` (a test venue serves everything on one port).

Quotes: the adapter is a :class:`~brokerlink.brokers.base.QuoteFeed` (stocks and crypto quotes and
trades over the market data streams). It keeps no order books: Alpaca's book data carries no update
ids to hold a local book in sync with, so it is not a :class:`~brokerlink.brokers.base.MarketDataAdapter`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Iterable, Mapping
from decimal import Decimal
from urllib.parse import urlsplit

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from brokerlink.brokers.alpaca import mapping
from brokerlink.brokers.alpaca.client import ALPACA_LIMITS, AlpacaClient, plain
from brokerlink.brokers.alpaca.marketdata import QuoteFeeds
from brokerlink.brokers.alpaca.wire import (
    ALPACA_HOSTS,
    CRYPTO_LATEST_QUOTES_PATH,
    CRYPTO_STREAM_PATH,
    DATA_STREAM_URL,
    DATA_URL,
    MAX_ACTIVITIES_PAGE,
    MAX_CLIENT_ORDER_ID,
    MAX_ORDERS_PAGE,
    STOCK_LATEST_QUOTES_PATH,
    STOCK_STREAM_PATH,
    TRADING_STREAM_PATH,
    Account,
    Asset,
    AuthorizationData,
    CancelResult,
    LatestQuotes,
    ListeningData,
    MarketKind,
    NewOrder,
    Order,
    Position,
    ReplaceOrder,
    StreamMessage,
    TradeActivity,
    TradeUpdate,
)
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
from brokerlink.domain.enums import ConnectionState, OrderStatus, OrderType, Side, TimeInForce
from brokerlink.domain.events import (
    ConnectionChanged,
    DomainEvent,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
)
from brokerlink.domain.models import Balance, Instrument, Quote, Trade
from brokerlink.domain.models import Order as DomainOrder
from brokerlink.domain.models import Position as DomainPosition
from brokerlink.kit.clock import Clock, SystemClock
from brokerlink.logs import get_logger

_log = get_logger("brokerlink.brokers.alpaca")

OPTION_DATA_URL = "data_url"
OPTION_DATA_STREAM_URL = "data_stream_url"
OPTION_STOCK_FEED = "stock_feed"
"""``iex`` (default, free) or ``sip``."""
MAX_CLIENT_ORDER_ID_LENGTH = MAX_CLIENT_ORDER_ID - 4
"""Alpaca takes 48 characters; 4 are kept for the ``~<n>`` of replacements (:mod:`.mapping`)."""
_REPLACE_CHAIN_LIMIT = 100


class StreamSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Timing of the WebSocket streams."""

    backoff: Backoff = Backoff()
    connect_timeout_s: float = 10.0
    ping_interval_s: float = 20.0
    """WebSocket pings find a dead connection (Alpaca's streams send no heartbeat messages)."""


class MalformedMessage(Exception):
    """The stream sent something the adapter cannot read; it reconnects and reconciles."""


def _ws(url: str) -> str:
    return "ws" + url.rstrip("/").removeprefix("http") if url.startswith("http") else url.rstrip("/")


def market_data_urls(base_url: str, options: Mapping[str, str]) -> tuple[str, str]:
    """``(REST, stream)`` base URLs of market data: Alpaca's data hosts for Alpaca's trading hosts,
    else the trading base URL itself (a test venue), unless the options name them."""
    on_alpaca = (urlsplit(base_url).hostname or "") in ALPACA_HOSTS
    rest = options.get(OPTION_DATA_URL) or (DATA_URL if on_alpaca else base_url)
    stream = options.get(OPTION_DATA_STREAM_URL) or (DATA_STREAM_URL if on_alpaca else _ws(base_url))
    return rest.rstrip("/"), stream.rstrip("/")


class AlpacaAdapter(BrokerAdapter, QuoteFeed):
    """One Alpaca account (one API key). Credentials: ``api_key`` (the key id) and ``api_secret``."""

    kind = "alpaca"
    credential_fields = ("api_key", "api_secret")

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
        key_id, secret = config.credentials.get("api_key"), config.credentials.get("api_secret")
        limits = ALPACA_LIMITS.with_options(config.options)
        self._client = AlpacaClient(config.base_url, key_id=key_id, secret_key=secret, limits=limits)
        data_url, data_stream = market_data_urls(config.base_url, config.options)
        self._data = AlpacaClient(data_url, key_id=key_id, secret_key=secret, limits=limits)
        feed = config.options.get(OPTION_STOCK_FEED, "iex")
        stock_path = STOCK_STREAM_PATH if feed == "iex" else f"/v2/{feed}"
        self._stock_feed = feed
        self._feeds = QuoteFeeds(
            urls={"stock": data_stream + stock_path, "crypto": data_stream + CRYPTO_STREAM_PATH},
            key_id=key_id,
            secret_key=secret,
            symbols=lambda: self._symbols,
            backoff=self.stream.backoff,
            rng=self._rng,
            connect_timeout_s=self.stream.connect_timeout_s,
            ping_interval_s=self.stream.ping_interval_s,
            name=config.account_id,
        )
        self._events: asyncio.Queue[DomainEvent | None] = asyncio.Queue()  # None ends the stream
        self._seen = SeenTradeIds()
        self._symbols = mapping.SymbolMap([])
        self._instruments: list[Instrument] = []
        self._venue_account_id = config.venue_account_id
        self._working: set[str] = set()  # base client order ids still working, as far as we know
        self._accepted: set[str] = set()
        self._client_ids: dict[str, str] = {}  # Alpaca order id -> base client order id
        self._fill_cursor: str | None = None
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
        return Capabilities(
            order_types=frozenset(OrderType),
            time_in_force=frozenset(TimeInForce),
            depth=False,
            max_client_order_id_length=MAX_CLIENT_ORDER_ID_LENGTH,
        )

    async def connect(self) -> None:
        account = await self._client.get("/v2/account", Account)  # proves the key
        configured = self.config.venue_account_id
        if configured and configured not in (account.account_number, account.id):
            raise OrderRefused(
                RefusalReason.AUTH, f"this key trades account {account.account_number}, not the one configured"
            )
        self._venue_account_id = account.account_number
        await self._load_assets()
        self._fill_cursor = await self._latest_activity_id()  # earlier fills are history, not news
        self._stream_task = asyncio.create_task(self._run_stream(), name=f"alpaca-stream-{self.account_id}")
        try:
            async with asyncio.timeout(self.stream.connect_timeout_s):
                await self._connected.wait()
        except TimeoutError:
            await self.close()
            raise TransientBrokerError("Alpaca's trade_updates stream did not come up") from None

    async def _load_assets(self) -> None:
        assets = await self._client.get("/v2/assets", list[Asset], params={"status": "active"})
        usable = []
        for asset in assets:
            if asset.asset_class not in ("us_equity", "crypto"):
                continue
            try:
                usable.append((asset, mapping.instrument(asset)))
            except ValueError:
                _log.info("alpaca_asset_skipped", symbol=asset.symbol)
        self._symbols = mapping.SymbolMap(a for a, _ in usable)
        self._instruments = [i for _, i in usable]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._stream_task is not None:
            self._stream_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stream_task
        await self._feeds.close()
        await self._client.close()
        await self._data.close()
        self._events.put_nowait(None)

    async def events(self) -> AsyncIterator[DomainEvent]:
        while (item := await self._events.get()) is not None:
            yield item

    async def venue_accounts(self) -> list[VenueAccount]:
        """The one account an Alpaca key trades (``account_number``), read with one call."""
        account = await self._client.get("/v2/account", Account)
        return [VenueAccount(venue_account_id=account.account_number, currency=account.currency)]

    # --- commands ----------------------------------------------------------------------------

    async def instruments(self) -> list[Instrument]:
        return list(self._instruments)

    def _venue_symbol(self, symbol: str) -> str:
        try:
            return self._symbols.venue(symbol)
        except KeyError:
            raise OrderRefused(RefusalReason.INVALID_ORDER, f"Alpaca does not list {symbol}") from None

    @staticmethod
    def _check_id(client_order_id: str) -> None:
        if len(client_order_id) > MAX_CLIENT_ORDER_ID_LENGTH or mapping.REPLACEMENT_MARK in client_order_id:
            raise OrderRefused(
                RefusalReason.INVALID_ORDER,
                f"client_order_id: at most {MAX_CLIENT_ORDER_ID_LENGTH} characters, without "
                f"{mapping.REPLACEMENT_MARK!r}",
            )

    def _remember(self, body: Order) -> Order:
        self._client_ids[body.id] = mapping.base_client_order_id(body.client_order_id)
        return body

    async def submit(self, order: OrderRequest) -> None:
        self._check_id(order.client_order_id)
        body = NewOrder(
            symbol=self._venue_symbol(order.symbol),
            side=order.side.value,
            type=order.type.value,
            time_in_force=mapping.TIF_WIRE[order.tif],  # type: ignore[arg-type]
            qty=plain(order.qty),
            limit_price=plain(order.limit_price) if order.limit_price is not None else None,
            stop_price=plain(order.stop_price) if order.stop_price is not None else None,
            client_order_id=order.client_order_id,
        )
        await self._send_new(body, order.client_order_id)

    async def submit_notional(
        self, *, client_order_id: str, symbol: str, side: Side, notional: Decimal, tif: TimeInForce | None = None
    ) -> None:
        """A market order for ``notional`` dollars of ``symbol`` (Alpaca works out the fractional quantity).

        Alpaca takes notional orders for stocks as ``day`` orders and for crypto as ``gtc`` or
        ``ioc`` (the default here, per asset class). Outcomes arrive as events, as for :meth:`submit`.
        """
        self._check_id(client_order_id)
        venue = self._venue_symbol(symbol)
        default = TimeInForce.GTC if self._symbols.asset_class(symbol) == "crypto" else TimeInForce.DAY
        body = NewOrder(
            symbol=venue,
            side=side.value,
            type="market",
            time_in_force=mapping.TIF_WIRE[tif or default],  # type: ignore[arg-type]
            notional=plain(notional),
            client_order_id=client_order_id,
        )
        await self._send_new(body, client_order_id)

    async def _send_new(self, body: NewOrder, client_order_id: str) -> None:
        # Tracked before sending: if the answer is lost, reconciliation still looks the order up.
        self._working.add(client_order_id)
        placed = await self._client.command("POST", "/v2/orders", Order, body=body, client_order_id=client_order_id)
        self._remember(placed)

    async def modify(self, change: ModifyRequest) -> None:
        """Replace the order (Alpaca makes a new order of it, named ``<id>~<n>``; events keep ``<id>``)."""
        current = await self._current_order(change.client_order_id)
        if current is None:
            raise OrderRefused(RefusalReason.UNKNOWN_ORDER, f"no order {change.client_order_id!r}")
        body = ReplaceOrder(
            qty=plain(change.qty) if change.qty is not None else None,
            limit_price=plain(change.limit_price) if change.limit_price is not None else None,
            stop_price=plain(change.stop_price) if change.stop_price is not None else None,
            client_order_id=mapping.next_client_order_id(current.client_order_id),
        )
        path = f"/v2/orders/{current.id}"
        replaced = await self._client.command("PATCH", path, Order, body=body, client_order_id=change.client_order_id)
        self._remember(replaced)

    async def cancel(self, client_order_id: str) -> None:
        current = await self._current_order(client_order_id)
        if current is None:
            raise OrderRefused(RefusalReason.UNKNOWN_ORDER, f"no order {client_order_id!r}")
        path = f"/v2/orders/{current.id}"
        await self._client.command("DELETE", path, type(None), client_order_id=client_order_id)

    async def cancel_all(self, symbol: str | None = None) -> None:
        if symbol is None:
            await self._client.command("DELETE", "/v2/orders", list[CancelResult], client_order_id="*")
            return
        venue = self._venue_symbol(symbol)
        for body in await self._open_bodies():
            if self._symbols.canonical(body.symbol) == self._symbols.canonical(venue):
                with contextlib.suppress(OrderRefused):  # finished meanwhile: nothing left to cancel
                    path = f"/v2/orders/{body.id}"
                    await self._client.command("DELETE", path, type(None), client_order_id=body.client_order_id)

    # --- reports -----------------------------------------------------------------------------

    async def _get_order(self, order_id: str) -> Order | None:
        try:
            return self._remember(await self._client.get(f"/v2/orders/{order_id}", Order))
        except OrderRefused as exc:
            if exc.reason is RefusalReason.UNKNOWN_ORDER:
                return None
            raise

    async def _current_order(self, client_order_id: str) -> Order | None:
        """The order brokerlink calls ``client_order_id`` as it stands now: its latest replacement."""
        try:
            body = await self._client.get(
                "/v2/orders:by_client_order_id", Order, params={"client_order_id": client_order_id}
            )
        except OrderRefused as exc:
            if exc.reason is RefusalReason.UNKNOWN_ORDER:
                return None
            raise
        self._remember(body)
        for _ in range(_REPLACE_CHAIN_LIMIT):
            if body.replaced_by is None:
                break
            newer = await self._get_order(body.replaced_by)
            if newer is None:
                break
            body = newer
        return body

    async def order(
        self, *, client_order_id: str | None = None, venue_order_id: str | None = None
    ) -> DomainOrder | None:
        if (client_order_id is None) == (venue_order_id is None):
            raise ValueError("name the order by exactly one of client_order_id and venue_order_id")
        if client_order_id is not None:
            body = await self._current_order(client_order_id)
        else:
            body = await self._get_order(venue_order_id or "")
        return None if body is None else mapping.order(body, account_id=self.account_id, symbols=self._symbols)

    async def _open_bodies(self) -> list[Order]:
        params: dict[str, str | int] = {"status": "open", "limit": MAX_ORDERS_PAGE, "direction": "asc"}
        return [self._remember(b) for b in await self._client.get("/v2/orders", list[Order], params=params)]

    async def open_orders(self) -> list[DomainOrder]:
        return [mapping.order(b, account_id=self.account_id, symbols=self._symbols) for b in await self._open_bodies()]

    async def _activities(self, after: str | None, *, page_size: int = MAX_ACTIVITIES_PAGE) -> list[TradeActivity]:
        params: dict[str, str | int] = {"direction": "asc", "page_size": min(page_size, MAX_ACTIVITIES_PAGE)}
        if after is not None:
            params["page_token"] = after
        return await self._client.get("/v2/account/activities/FILL", list[TradeActivity], params=params)

    async def _latest_activity_id(self) -> str | None:
        params: dict[str, str | int] = {"direction": "desc", "page_size": 1}
        latest = await self._client.get("/v2/account/activities/FILL", list[TradeActivity], params=params)
        return latest[0].id if latest else None

    async def _client_id_of(self, order_id: str) -> str:
        """The base client order id of an Alpaca order (activities name only the order id)."""
        known = self._client_ids.get(order_id)
        if known is None:
            body = await self._get_order(order_id)
            # An order Alpaca no longer knows gets a stable id of its own (events need one).
            known = mapping.base_client_order_id(body.client_order_id) if body else f"alpaca:{order_id}"
            self._client_ids[order_id] = known
        return known

    async def fills_since(self, cursor: str | None = None, *, limit: int = 500) -> FillPage:
        """``FILL`` activities after ``cursor`` (an activity id), oldest first, at most 100 a page."""
        page = await self._activities(cursor, page_size=limit)
        fills = [
            mapping.activity_fill(
                a,
                account_id=self.account_id,
                client_order_id=await self._client_id_of(a.order_id),
                symbols=self._symbols,
            )
            for a in page
        ]
        return FillPage(fills=fills, next_cursor=page[-1].id if page else None)

    async def positions(self) -> list[DomainPosition]:
        bodies = await self._client.get("/v2/positions", list[Position])
        return [mapping.position(b, account_id=self.account_id, symbols=self._symbols) for b in bodies]

    async def balance(self) -> Balance:
        body = await self._client.get("/v2/account", Account)
        return mapping.balance(body, account_id=self.account_id, ts=self.clock.now())

    # --- quotes (QuoteFeed; no books: see the module docstring) -------------------------------

    def _kind(self, symbol: str) -> MarketKind:
        self._venue_symbol(symbol)
        return "crypto" if self._symbols.asset_class(symbol) == "crypto" else "stock"

    async def subscribe_quotes(self, symbols: Iterable[str]) -> None:
        """Stream quotes (and trades) of ``symbols``; every symbol is checked before any is subscribed."""
        wanted = list(symbols)
        by_kind: dict[MarketKind, list[str]] = {"stock": [], "crypto": []}
        for symbol in wanted:
            by_kind[self._kind(symbol)].append(self._venue_symbol(symbol))
        for kind, venue_symbols in by_kind.items():
            if venue_symbols:
                await self._feeds.subscribe(kind, venue_symbols)

    def quote(self, symbol: str) -> Quote | None:
        """The latest streamed quote of ``symbol``; ``None`` if not subscribed or none since the last (re)connect."""
        self._venue_symbol(symbol)
        return self._feeds.quote(symbol)

    def last_trade(self, symbol: str) -> Trade | None:
        """The latest streamed trade of ``symbol`` (subscribed with its quotes)."""
        self._venue_symbol(symbol)
        return self._feeds.trade(symbol)

    async def quote_snapshot(self, symbol: str) -> Quote:
        """Alpaca's latest quote of ``symbol`` over REST (``.../latest/quotes?symbols=``)."""
        venue = self._venue_symbol(symbol)
        if self._kind(symbol) == "crypto":
            path, params = CRYPTO_LATEST_QUOTES_PATH, {"symbols": venue}
        else:
            path, params = STOCK_LATEST_QUOTES_PATH, {"symbols": venue, "feed": self._stock_feed}
        latest = await self._data.get(path, LatestQuotes, params=params)
        body = latest.quotes.get(venue)
        if body is None:
            raise TransientBrokerError(f"Alpaca has no quote of {symbol} now")
        return mapping.quote(body, symbol=symbol)

    # --- the trade_updates stream ---------------------------------------------------------------

    def _stopping(self) -> bool:
        # A method, not the attribute: close() flips it while the stream task is suspended.
        return self._closed

    def _emit(self, event: DomainEvent) -> None:
        if isinstance(event, OrderFilled) and not self._seen.first_time(event.trade_id):
            return  # the same fill reached us twice (stream and activities, or a repeated message)
        if isinstance(event, OrderAccepted):
            if event.client_order_id in self._accepted:
                return
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
        url = _ws(self.config.base_url) + TRADING_STREAM_PATH
        while not self._closed:
            try:
                async with connect(
                    url,
                    open_timeout=self.stream.connect_timeout_s,
                    ping_interval=self.stream.ping_interval_s,
                    ping_timeout=self.stream.ping_interval_s,
                ) as ws:
                    await self._handshake(ws)
                    if self.reconnects or attempt:
                        await self._reconcile()  # anything may have happened while we were away
                    self._connected.set()
                    self._connection_event(ConnectionState.CONNECTED, gap_possible=bool(self.reconnects))
                    attempt = 0
                    await self._pump(ws)
                    reason = "connection closed by Alpaca"
            except (
                ConnectionClosed,
                InvalidHandshake,
                OSError,
                TimeoutError,
                TransientBrokerError,
                MalformedMessage,
            ) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            except OrderRefused as exc:  # a refused key does not get better by retrying fast
                reason = f"refused: {exc.detail}"
            if self._stopping():
                return
            self.reconnects += 1
            self._connection_event(ConnectionState.DISCONNECTED, gap_possible=True, reason=reason)
            _log.warning("alpaca_stream_reconnecting", account_id=self.account_id, attempt=attempt, reason=reason)
            await asyncio.sleep(self.stream.backoff.delay(attempt, self._rng))
            attempt += 1

    async def _receive(self, ws: ClientConnection, stream: str) -> StreamMessage:
        """The next message of ``stream`` (the handshake's answers), within the connect timeout."""
        async with asyncio.timeout(self.stream.connect_timeout_s):
            while True:
                message = msgspec.json.decode(await ws.recv(), type=StreamMessage)
                if message.stream == stream:
                    return message

    async def _handshake(self, ws: ClientConnection) -> None:
        auth = {"action": "auth", "key": self._client.key_id, "secret": self._client.secret_key}
        await ws.send(msgspec.json.encode(auth).decode())
        reply = msgspec.json.decode((await self._receive(ws, "authorization")).data, type=AuthorizationData)
        if reply.status != "authorized":
            raise OrderRefused(RefusalReason.AUTH, "Alpaca refused the stream's credentials")
        await ws.send(msgspec.json.encode({"action": "listen", "data": {"streams": ["trade_updates"]}}).decode())
        listening = msgspec.json.decode((await self._receive(ws, "listening")).data, type=ListeningData)
        if "trade_updates" not in listening.streams:
            raise TransientBrokerError("Alpaca did not grant the trade_updates stream")

    async def _pump(self, ws: ClientConnection) -> None:
        async for raw in ws:  # Alpaca's paper stream sends binary frames, the live one text: both decode
            try:
                message = msgspec.json.decode(raw, type=StreamMessage)
                if message.stream != "trade_updates":
                    continue
                update = msgspec.json.decode(message.data, type=TradeUpdate)
                event = mapping.trade_update_event(
                    update, account_id=self.account_id, symbols=self._symbols, received=self.clock.now()
                )
                status = mapping.status(update.order)
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError, KeyError) as exc:
                # Skipping it could lose a fill; reconnecting reconciles from reports instead.
                raise MalformedMessage(f"unreadable trade update: {exc}") from exc
            self._remember(update.order)
            if event is not None:
                self._emit(event)
            if status.is_terminal and update.order.status != "replaced":
                self._working.discard(mapping.base_client_order_id(update.order.client_order_id))

    async def _reconcile(self) -> None:
        """Emit what the stream missed: fills after the last one seen, and final states of working orders."""
        while True:
            page = await self._activities(self._fill_cursor)
            for activity in page:
                self._fill_cursor = activity.id
                client_order_id = await self._client_id_of(activity.order_id)
                self._emit(
                    mapping.activity_fill_event(
                        activity,
                        account_id=self.account_id,
                        client_order_id=client_order_id,
                        symbols=self._symbols,
                        received=self.clock.now(),
                    )
                )
            if len(page) < MAX_ACTIVITIES_PAGE:
                break
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
                self._emit(OrderAccepted(**ids))  # accepted while we were away: say so before what followed
            if report.status is OrderStatus.CANCELED:
                self._emit(OrderCanceled(**ids, reason="seen in reconciliation"))
            elif report.status is OrderStatus.EXPIRED:
                self._emit(OrderExpired(**ids))
            elif report.status is OrderStatus.REJECTED:
                self._emit(OrderRejected(**ids, reason="rejected by Alpaca"))
            if report.status.is_terminal:
                self._working.discard(client_order_id)


def _make(config: AdapterConfig) -> BrokerAdapter:
    return AlpacaAdapter(config)


register_adapter(AlpacaAdapter.kind, _make, credential_fields=AlpacaAdapter.credential_fields)
