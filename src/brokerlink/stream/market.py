"""The market channels of ``/v1/stream`` (``quotes:``, ``depth:``, ``trades:{symbol}``): one source per process.

:class:`MarketSource` implements :class:`~brokerlink.stream.protocol.MarketSource` over the broker
links' live adapters (docs/adr/0031-market-data-channels.md). When the hub first wants a channel it
picks an adapter that can serve it: the configured market-data account's first
(``market_data_account``), otherwise any connected account whose broker lists the symbol and has the
capability (:class:`~brokerlink.brokers.base.QuoteFeed`, ``MarketDataAdapter``, ``TradeFeed``, each
with :class:`~brokerlink.brokers.base.MarketPush`). It subscribes there once, registers one listener
per adapter, and hands every update to the sink (the hub) as it arrives: push, never poll.

**Staleness.** When an adapter's stream drops (``FeedState.DOWN``), its channels' snapshots are
forgotten and subscribers get one ``unavailable`` event: nothing received before the drop is passed
on as live, and the next update after the reconnect is. **Loss.** When the adapter is closed (the
account unlinked, its link restarted, the server stopping), each of its channels moves to another
live source if one can serve it; otherwise its subscribers get ``unavailable`` and the channel stays
subscribed, looking for a source every ``market_retry_s`` (and resuming on the first one found). A
channel whose source stays down that long also moves when another can serve it.

Events are the structs below, as JSON objects tagged by ``type`` (decimals as strings, times as RFC
3339 UTC): :class:`QuoteEvent`, :class:`DepthEvent`, :class:`TradeEvent`, :class:`UnavailableEvent`;
snapshots are a quote, a depth, or :class:`TradesSnapshot` (the latest trades, oldest first).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, Literal, NamedTuple

import msgspec

from brokerlink.brokers.base import (
    BrokerAdapter,
    BrokerError,
    FeedState,
    MarketDataAdapter,
    MarketPush,
    OrderBookView,
    QuoteFeed,
    TradeFeed,
)
from brokerlink.domain.enums import ConnectionState, Side
from brokerlink.domain.models import Quote, Trade
from brokerlink.engine.links.live import LiveAccount
from brokerlink.kit.errors import NotFound
from brokerlink.logs import get_logger
from brokerlink.stream.protocol import MARKET_KINDS, MarketSink

_log = get_logger("brokerlink.stream.market")

MarketKind = Literal["quotes", "depth", "trades"]
Level = tuple[Decimal, Decimal]
MAX_SYMBOL_LENGTH: Final = 64

# --- what subscribers receive -----------------------------------------------------------------


class QuoteEvent(msgspec.Struct, kw_only=True, tag_field="type", tag="quote"):
    """A ``quotes:{symbol}`` event and snapshot: the top of book; ``ts`` is the venue's time of it."""

    symbol: str
    bid: Decimal
    ask: Decimal
    bid_size: Decimal
    ask_size: Decimal
    ts: datetime


class DepthEvent(msgspec.Struct, kw_only=True, tag_field="type", tag="depth"):
    """A ``depth:{symbol}`` event and snapshot: the best levels of each side, best first, as
    ``[price, qty]``, after a change among them; ``update_id`` is the venue's, where it has one."""

    symbol: str
    bids: list[Level]
    asks: list[Level]
    update_id: int


class TradeEvent(msgspec.Struct, kw_only=True, tag_field="type", tag="trade"):
    """A ``trades:{symbol}`` event: one public trade; ``side`` is the aggressor's, when the venue says."""

    symbol: str
    trade_id: str
    price: Decimal
    qty: Decimal
    side: Side | None
    ts: datetime


class TradesSnapshot(msgspec.Struct, kw_only=True, tag_field="type", tag="trades"):
    """A ``trades:{symbol}`` snapshot: the latest trades seen in this process, oldest first."""

    symbol: str
    trades: list[dict[str, Any]]


class UnavailableEvent(msgspec.Struct, kw_only=True, tag_field="type", tag="unavailable"):
    """The channel's data stopped: its source dropped (live data resumes on its own) or is gone and no
    other can serve it yet. The channel stays subscribed; the next quote, depth or trade is live."""

    symbol: str
    reason: str


def quote_event(quote: Quote) -> dict[str, Any]:
    """The wire form of a quote."""
    event = QuoteEvent(
        symbol=quote.symbol,
        bid=quote.bid,
        ask=quote.ask,
        bid_size=quote.bid_size,
        ask_size=quote.ask_size,
        ts=quote.ts,
    )
    return msgspec.to_builtins(event)  # type: ignore[no-any-return]


def depth_event(book: OrderBookView, levels: int) -> dict[str, Any]:
    """The wire form of a book's ``levels`` best levels per side."""
    event = DepthEvent(symbol=book.symbol, bids=book.bids[:levels], asks=book.asks[:levels], update_id=book.update_id)
    return msgspec.to_builtins(event)  # type: ignore[no-any-return]


def trade_event(trade: Trade) -> dict[str, Any]:
    """The wire form of a trade print."""
    event = TradeEvent(
        symbol=trade.symbol,
        trade_id=trade.trade_id,
        price=trade.price,
        qty=trade.size,
        side=trade.aggressor,
        ts=trade.ts,
    )
    return msgspec.to_builtins(event)  # type: ignore[no-any-return]


def parse_channel(channel: str) -> tuple[MarketKind, str]:
    """``(kind, symbol)`` of a market channel; :class:`NotFound` for anything else."""
    kind, sep, symbol = channel.partition(":")
    if not sep or kind not in MARKET_KINDS or not symbol or len(symbol) > MAX_SYMBOL_LENGTH:
        raise NotFound(f"no market channel {channel!r}", extra={"channel": channel})
    return kind, symbol  # type: ignore[return-value]


def serves(adapter: BrokerAdapter, kind: MarketKind) -> bool:
    """Whether ``adapter`` can push ``kind`` at all (before asking whether it lists a symbol)."""
    if not isinstance(adapter, MarketPush):
        return False
    if kind == "quotes":
        return isinstance(adapter, QuoteFeed) and adapter.capabilities.quotes
    if kind == "depth":
        return isinstance(adapter, MarketDataAdapter) and adapter.capabilities.depth
    return isinstance(adapter, TradeFeed)


# --- the source ---------------------------------------------------------------------------------


class DeferredSink:
    """A :class:`MarketSink` that forwards to whatever ``resolve()`` returns at each update: the app
    builds the source before the hub it feeds. Updates while there is no sink yet are dropped (no
    channel is wanted before the hub exists, so none is lost)."""

    def __init__(self, resolve: Callable[[], MarketSink | None]) -> None:
        self.resolve = resolve

    def publish_market(self, channel: str, event: dict[str, Any]) -> None:
        sink = self.resolve()
        if sink is not None:
            sink.publish_market(channel, event)


class _Channel:
    """One wanted channel: where its data comes from and its latest value."""

    __slots__ = ("kind", "levels", "name", "source", "symbol", "trades", "unavailable", "value")

    def __init__(self, name: str, kind: MarketKind, symbol: str, trades_kept: int) -> None:
        self.name = name
        self.kind: MarketKind = kind
        self.symbol = symbol
        self.source: _Binding | None = None
        self.value: dict[str, Any] | None = None  # the latest quote or depth, for snapshots
        self.levels: tuple[list[Level], list[Level]] | None = None  # the depth last sent
        self.trades: deque[dict[str, Any]] = deque(maxlen=trades_kept)
        self.unavailable = False  # subscribers were told, and nothing live has come since

    def forget(self) -> None:
        self.value = None
        self.levels = None


class _Binding:
    """The source's listener on one adapter (a :class:`~brokerlink.brokers.base.MarketListener`): it
    hands each update, with itself as the origin, to the source's handler of that kind."""

    def __init__(self, account_id: str, adapter: BrokerAdapter, handlers: _Handlers) -> None:
        if not isinstance(adapter, MarketPush):  # the source only offers MarketPush adapters
            raise TypeError(f"{type(adapter).__name__} does not push market data")
        self.account_id = account_id
        self.adapter = adapter
        self.subscribed: set[tuple[MarketKind, str]] = set()  # kept after unwant: cheap, and re-wants are instant
        self.down_since: float | None = None  # loop time the stream dropped; None while up
        self.closed = False
        self._handlers = handlers
        self.remove = adapter.add_market_listener(self)

    async def subscribe(self, kind: MarketKind, symbol: str) -> None:
        if (kind, symbol) in self.subscribed:
            return
        adapter = self.adapter
        if kind == "quotes" and isinstance(adapter, QuoteFeed):
            await adapter.subscribe_quotes([symbol])
        elif kind == "depth" and isinstance(adapter, MarketDataAdapter):
            await adapter.subscribe_depth(symbol)
        elif kind == "trades" and isinstance(adapter, TradeFeed):
            await adapter.subscribe_trades([symbol])
        self.subscribed.add((kind, symbol))

    def current(self, kind: MarketKind, symbol: str) -> Quote | OrderBookView | None:
        """What the adapter holds now (its latest quote or in-sync book), for a new channel's snapshot."""
        with contextlib.suppress(BrokerError):
            if kind == "quotes" and isinstance(self.adapter, QuoteFeed):
                return self.adapter.quote(symbol)
            if kind == "depth" and isinstance(self.adapter, MarketDataAdapter):
                return self.adapter.book(symbol)
        return None

    # MarketListener
    def on_quote(self, quote: Quote) -> None:
        self._handlers.quote(self, quote)

    def on_book(self, book: OrderBookView) -> None:
        self._handlers.book(self, book)

    def on_trade(self, trade: Trade) -> None:
        self._handlers.trade(self, trade)

    def on_feed(self, state: FeedState, reason: str | None) -> None:
        self._handlers.feed(self, state, reason)


class _Handlers(NamedTuple):
    quote: Callable[[_Binding, Quote], None]
    book: Callable[[_Binding, OrderBookView], None]
    trade: Callable[[_Binding, Trade], None]
    feed: Callable[[_Binding, FeedState, str | None], None]


class MarketSource:
    """The process's market data for the stream hub (module docstring).

    ``accounts`` lists the live accounts (``BrokerLinks.live_accounts``); ``sink`` is the hub (set it
    later with :attr:`sink` when the hub is built after the source). ``preferred`` is the account id
    tried first for every channel.
    """

    def __init__(
        self,
        accounts: Callable[[], Iterable[LiveAccount]],
        *,
        sink: MarketSink | None = None,
        preferred: str | None = None,
        depth_levels: int = 10,
        trades_kept: int = 50,
        retry_s: float = 2.0,
    ) -> None:
        self.accounts = accounts
        self.sink = sink
        self.preferred = preferred
        self.depth_levels = depth_levels
        self.trades_kept = trades_kept
        self.retry_s = retry_s
        self._channels: dict[str, _Channel] = {}
        self._bindings: dict[int, _Binding] = {}  # by id(adapter)
        self._retry: asyncio.Task[None] | None = None
        self._attaching: set[asyncio.Task[None]] = set()
        self._stopped = False
        self._handlers = _Handlers(self._on_quote, self._on_book, self._on_trade, self._on_feed)

    # --- MarketSource (the hub's side) ------------------------------------------------------------

    async def want(self, channel: str) -> None:
        """Start feeding ``channel``; :class:`NotFound` when no live adapter can serve it. Idempotent."""
        kind, symbol = parse_channel(channel)
        if channel in self._channels:
            return
        entry = _Channel(channel, kind, symbol, self.trades_kept)
        self._channels[channel] = entry
        try:
            found = await self._attach(entry, exclude=())
        except BaseException:
            self._drop(entry)
            raise
        if not found:
            self._drop(entry)
            raise NotFound(f"no live broker link serves {channel}", extra={"channel": channel})

    def unwant(self, channel: str) -> None:
        """Stop feeding ``channel`` (the adapter keeps its venue subscription, so wanting it again is instant)."""
        self._channels.pop(channel, None)

    def snapshot(self, channel: str) -> dict[str, Any] | None:
        """The channel's current value: the latest quote, the current depth, or the latest trades."""
        entry = self._channels.get(channel)
        if entry is None:
            return None
        if entry.kind == "trades":
            if not entry.trades:
                return None
            return msgspec.to_builtins(TradesSnapshot(symbol=entry.symbol, trades=list(entry.trades)))  # type: ignore[no-any-return]
        return entry.value

    # --- state, for tests and the admin -------------------------------------------------------------

    def source_of(self, channel: str) -> str | None:
        """The account id feeding ``channel`` now, if any."""
        entry = self._channels.get(channel)
        return entry.source.account_id if entry is not None and entry.source is not None else None

    @property
    def channels(self) -> list[str]:
        """The channels being fed."""
        return sorted(self._channels)

    async def stop(self) -> None:
        """Stop looking for sources and unregister from every adapter."""
        self._stopped = True
        tasks = [t for t in (self._retry, *self._attaching) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for binding in list(self._bindings.values()):
            binding.remove()
        self._bindings.clear()
        self._channels.clear()

    async def refresh(self) -> None:
        """Find a source now for every channel that has none, or whose source has been down for ``retry_s``."""
        now = asyncio.get_running_loop().time()
        for entry in list(self._channels.values()):
            source = entry.source
            if source is None:
                await self._attach(entry, exclude=())
            elif source.down_since is not None and now - source.down_since >= self.retry_s:
                await self._attach(entry, exclude=(source.adapter,), keep=source)

    # --- choosing and binding sources -------------------------------------------------------------

    def _candidates(self, kind: MarketKind, symbol: str, exclude: tuple[BrokerAdapter, ...]) -> list[LiveAccount]:
        found = [
            account
            for account in self.accounts()
            if account.adapter not in exclude and symbol in account.instruments and serves(account.adapter, kind)
        ]
        # The configured account first, then connected before reconnecting ones, then a stable order.
        found.sort(key=lambda a: (a.id != self.preferred, a.state is not ConnectionState.CONNECTED, a.id))
        return found

    def _binding(self, account: LiveAccount) -> _Binding:
        binding = self._bindings.get(id(account.adapter))
        if binding is None:
            binding = _Binding(account.id, account.adapter, self._handlers)
            self._bindings[id(account.adapter)] = binding
        return binding

    async def _attach(
        self, entry: _Channel, *, exclude: tuple[BrokerAdapter, ...], keep: _Binding | None = None
    ) -> bool:
        """Point ``entry`` at the best source that subscribes it; ``False`` (``entry`` unchanged, or its
        source ``keep`` left as it is) when none can."""
        for account in self._candidates(entry.kind, entry.symbol, exclude):
            binding = self._binding(account)
            previous = entry.source
            entry.source = binding  # before awaiting: updates that arrive meanwhile are this source's
            try:
                await binding.subscribe(entry.kind, entry.symbol)
            except (BrokerError, OSError) as exc:
                _log.warning("market_source_refused", channel=entry.name, account_id=account.id, error=str(exc))
                entry.source = previous
                continue
            if self._channels.get(entry.name) is not entry:
                return True  # unwanted while subscribing: the venue subscription stays, nothing is fed
            if previous is not binding:
                entry.forget()
                if previous is not None or entry.unavailable:
                    _log.info("market_source_moved", channel=entry.name, account_id=account.id)
            self._take_current(entry, binding)
            return True
        if keep is None:
            entry.source = None
        return False

    def _take_current(self, entry: _Channel, binding: _Binding) -> None:
        """Seed a newly bound channel with what its adapter already holds (live, by the adapter's contract)."""
        if binding.down_since is not None:
            return
        current = binding.current(entry.kind, entry.symbol)
        if isinstance(current, Quote):
            entry.value = quote_event(current)
        elif isinstance(current, OrderBookView):
            entry.value = depth_event(current, self.depth_levels)
            entry.levels = (entry.value["bids"], entry.value["asks"])

    def _drop(self, entry: _Channel) -> None:
        if self._channels.get(entry.name) is entry:
            del self._channels[entry.name]

    # --- updates from adapters ----------------------------------------------------------------------

    def _publish(self, entry: _Channel, event: dict[str, Any]) -> None:
        if self.sink is not None:
            self.sink.publish_market(entry.name, event)

    def _live_channel(self, binding: _Binding, name: str) -> _Channel | None:
        entry = self._channels.get(name)
        if entry is None or entry.source is not binding or binding.down_since is not None:
            return None
        entry.unavailable = False
        return entry

    def _on_quote(self, binding: _Binding, quote: Quote) -> None:
        entry = self._live_channel(binding, "quotes:" + quote.symbol)
        if entry is not None:
            entry.value = event = quote_event(quote)
            self._publish(entry, event)

    def _on_book(self, binding: _Binding, book: OrderBookView) -> None:
        entry = self._live_channel(binding, "depth:" + book.symbol)
        if entry is None:
            return
        n = self.depth_levels
        bids, asks = book.bids[:n], book.asks[:n]
        if entry.levels is not None and entry.levels == (bids, asks):
            return  # the change was deeper than subscribers see
        entry.levels = (bids, asks)
        entry.value = event = depth_event(book, n)
        self._publish(entry, event)

    def _on_trade(self, binding: _Binding, trade: Trade) -> None:
        entry = self._live_channel(binding, "trades:" + trade.symbol)
        if entry is not None:
            event = trade_event(trade)
            entry.trades.append(event)
            self._publish(entry, event)

    def _on_feed(self, binding: _Binding, state: FeedState, reason: str | None) -> None:
        if state is FeedState.UP:
            binding.down_since = None
            return
        if binding.down_since is None:
            binding.down_since = asyncio.get_running_loop().time()
        if state is FeedState.CLOSED:
            binding.closed = True
            binding.remove()
            if self._bindings.get(id(binding.adapter)) is binding:
                del self._bindings[id(binding.adapter)]
        affected = [entry for entry in self._channels.values() if entry.source is binding]
        for entry in affected:
            entry.forget()
            if state is FeedState.CLOSED:
                entry.source = None
                self._spawn(self._move(entry, binding, reason))
            else:
                self._unavailable(entry, f"broker connection lost ({reason or 'down'}); reconnecting")
        if affected:
            _log.info("market_source_" + state.value, account_id=binding.account_id, channels=len(affected))

    def _unavailable(self, entry: _Channel, reason: str) -> None:
        if entry.unavailable:
            return
        entry.unavailable = True
        event = msgspec.to_builtins(UnavailableEvent(symbol=entry.symbol, reason=reason))
        self._publish(entry, event)
        self._ensure_retry()

    async def _move(self, entry: _Channel, gone: _Binding, reason: str | None) -> None:
        """The channel's adapter was closed: to another source now, or ``unavailable`` until one appears."""
        if self._channels.get(entry.name) is not entry or entry.source is not None:
            return
        if not await self._attach(entry, exclude=(gone.adapter,)):
            _log.info("market_channel_unavailable", channel=entry.name, account_id=gone.account_id)
            self._unavailable(entry, f"the broker link serving it ended ({reason or 'closed'}); waiting for another")

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        if self._stopped:
            job.close()
            return
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(job, name="market-source-attach")
        self._attaching.add(task)
        task.add_done_callback(self._attaching.discard)

    def _ensure_retry(self) -> None:
        if self._stopped or (self._retry is not None and not self._retry.done()):
            return
        self._retry = asyncio.get_running_loop().create_task(self._retry_loop(), name="market-source-retry")

    def _waiting(self) -> bool:
        return any(e.source is None or e.source.down_since is not None for e in self._channels.values())

    async def _retry_loop(self) -> None:
        while self._waiting():
            await asyncio.sleep(self.retry_s)
            try:
                await self.refresh()
            except Exception:  # noqa: BLE001 - keep looking; the cause is logged
                _log.exception("market_source_retry_failed")
