"""The market data side of the sim adapter's WebSocket: quotes, depth books and trades, by venue symbol.

Quotes (``quotes:SYM``): the latest one per subscribed symbol is kept, and forgotten when the
connection drops (:meth:`MarketFeed.disconnected`), so a quote from before a disconnect is never
served as live. Depth books (``depth:SYM``): each is kept by a
:class:`~brokerlink.brokers.sim.depth.DepthBook` and rebuilt from ``GET /depth/SYM`` plus the
buffered diffs when it starts, after a gap, and after every reconnect (diffs sent while the
adapter was away are lost, so the old book cannot be trusted). Trades (``trades:SYM``): pushed only.

Every quote, every change of an in-sync book and every trade is also pushed, as it arrives, to the
adapter's :class:`~brokerlink.brokers.base.MarketListeners` (``MarketPush``), and so is the stream's
state: :attr:`~brokerlink.brokers.base.FeedState.DOWN` from :meth:`MarketFeed.disconnected`, after
which nothing received before is pushed again.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable

import msgspec

from brokerlink.brokers.backoff import Backoff
from brokerlink.brokers.base import FeedState, MarketListeners, OrderBookView, OrderRefused, TransientBrokerError
from brokerlink.brokers.sim import mapping
from brokerlink.brokers.sim.client import SimClient
from brokerlink.brokers.sim.depth import DepthBook
from brokerlink.brokers.sim.wire import DepthBody, DepthDiff, QuoteBody, TradeBody
from brokerlink.domain.models import Quote, Trade
from brokerlink.logs import get_logger

_log = get_logger("brokerlink.brokers.sim")


class MarketFeed:
    """Quotes and books of one adapter. The adapter owns the connection and routes channel data here."""

    def __init__(
        self,
        client: SimClient,
        *,
        symbols: Callable[[], mapping.SymbolMap],
        backoff: Backoff,
        rng: random.Random,
        stopping: Callable[[], bool],
        name: str,
        listeners: MarketListeners | None = None,
    ) -> None:
        self._client = client
        self.listeners = listeners if listeners is not None else MarketListeners()
        self._symbols = symbols
        self._backoff = backoff
        self._rng = rng
        self._stopping = stopping
        self._name = name
        self.books: dict[str, DepthBook] = {}
        self._resyncs: dict[str, asyncio.Task[None]] = {}  # snapshot fetches in flight
        self.quote_symbols: set[str] = set()
        self._quotes: dict[str, Quote] = {}  # the latest on the live connection
        self.trade_symbols: set[str] = set()

    # --- subscriptions (return the channels to subscribe on a live connection) ------------------

    def add_book(self, venue_symbol: str) -> list[str]:
        """Keep the book of ``venue_symbol``; the channel to subscribe now, if it is new."""
        if venue_symbol in self.books:
            return []
        self.books[venue_symbol] = DepthBook(venue_symbol)
        return [f"depth:{venue_symbol}"]

    def add_quotes(self, venue_symbols: Iterable[str]) -> list[str]:
        """Stream the quotes of ``venue_symbols``; the channels to subscribe now (the new ones)."""
        new = [v for v in dict.fromkeys(venue_symbols) if v not in self.quote_symbols]
        self.quote_symbols.update(new)
        return [f"quotes:{v}" for v in new]

    def add_trades(self, venue_symbols: Iterable[str]) -> list[str]:
        """Stream the trades of ``venue_symbols``; the channels to subscribe now (the new ones)."""
        new = [v for v in dict.fromkeys(venue_symbols) if v not in self.trade_symbols]
        self.trade_symbols.update(new)
        return [f"trades:{v}" for v in new]

    def channels(self, *, stall_probe: str | None) -> list[str]:
        """Every market data channel for a new connection; the books start over from snapshots."""
        quoted = set(self.quote_symbols)
        if stall_probe is not None:
            quoted.add(stall_probe)
        channels = [f"quotes:{v}" for v in sorted(quoted)]
        channels += [f"trades:{v}" for v in sorted(self.trade_symbols)]
        for venue_symbol, book in self.books.items():
            book.reset()  # diffs sent while we were away are lost: rebuild from a snapshot
            channels.append(f"depth:{venue_symbol}")
        return channels

    # --- reading --------------------------------------------------------------------------------

    def book(self, symbol: str, venue_symbol: str) -> OrderBookView | None:
        """A copy of the book; ``None`` if not subscribed or not in sync right now."""
        book = self.books.get(venue_symbol)
        if book is None or not book.synced:
            return None
        return self._view(symbol, book)

    @staticmethod
    def _view(symbol: str, book: DepthBook) -> OrderBookView:
        bids, asks = book.levels()
        return OrderBookView(symbol=symbol, bids=bids, asks=asks, update_id=book.last_update_id, resyncs=book.resyncs)

    def _push_book(self, venue_symbol: str, book: DepthBook) -> None:
        if self.listeners and book.synced:
            self.listeners.book(self._view(self._symbols().canonical(venue_symbol), book))

    def quote(self, venue_symbol: str) -> Quote | None:
        """The latest streamed quote; ``None`` if not subscribed or none since the last (re)connect."""
        return self._quotes.get(venue_symbol)

    async def quote_snapshot(self, venue_symbol: str) -> Quote:
        """The venue's quote now, from ``GET /quotes/SYM``."""
        body = await self._client.get(f"/quotes/{venue_symbol}", QuoteBody)
        return mapping.quote(body, symbols=self._symbols())

    # --- channel data ---------------------------------------------------------------------------

    def on_market(self, channel: str, data: msgspec.Raw) -> bool:
        """Route a ``quotes:``, ``depth:`` or ``trades:`` message; ``False`` for any other channel."""
        kind, _, venue_symbol = channel.partition(":")
        if kind == "quotes":
            self.on_quote(venue_symbol, data)
        elif kind == "depth":
            self.on_depth(venue_symbol, data)
        elif kind == "trades":
            self.on_trade(venue_symbol, data)
        else:
            return False
        return True

    def on_quote(self, venue_symbol: str, data: msgspec.Raw) -> None:
        """A ``quotes:SYM`` message."""
        if venue_symbol not in self.quote_symbols:
            return  # the stall-detection channel: its quotes were not asked for
        try:
            body = msgspec.json.decode(data, type=QuoteBody)
        except msgspec.DecodeError as exc:  # ValidationError included
            # A bad quote is skipped, not fatal: the next tick replaces it, and the stream carries orders too.
            _log.warning("sim_quote_malformed", symbol=venue_symbol, error=str(exc))
            return
        quote = self._quotes[venue_symbol] = mapping.quote(body, symbols=self._symbols())
        self.listeners.quote(quote)

    def on_trade(self, venue_symbol: str, data: msgspec.Raw) -> None:
        """A ``trades:SYM`` message: pushed to the listeners, not kept."""
        if venue_symbol not in self.trade_symbols:
            return
        try:
            body = msgspec.json.decode(data, type=TradeBody)
        except msgspec.DecodeError as exc:
            # Like a bad quote: skipped; trades are information here, the account's own fills come elsewhere.
            _log.warning("sim_trade_malformed", symbol=venue_symbol, error=str(exc))
            return
        trade = Trade(
            symbol=self._symbols().canonical(venue_symbol),
            trade_id=body.trade_id,
            price=body.price,
            size=body.size,
            aggressor=body.aggressor,
            ts=body.ts,
        )
        self.listeners.trade(trade)

    def on_depth(self, venue_symbol: str, data: msgspec.Raw) -> None:
        """A ``depth:SYM`` diff."""
        book = self.books.get(venue_symbol)
        if book is None:
            return
        gaps = book.gaps
        if book.on_diff(msgspec.json.decode(data, type=DepthDiff)):
            self._push_book(venue_symbol, book)
        if book.gaps != gaps:
            _log.warning("sim_depth_gap", symbol=venue_symbol, after_update_id=book.last_update_id)
        self.want_snapshot(venue_symbol)

    def want_snapshot(self, venue_symbol: str) -> None:
        """Start fetching a snapshot for a book that needs one, unless a fetch is already running."""
        book = self.books.get(venue_symbol)
        if book is None or not book.needs_snapshot:
            return
        running = self._resyncs.get(venue_symbol)
        if running is not None and not running.done():
            return
        self._resyncs[venue_symbol] = asyncio.create_task(
            self._resync(venue_symbol, book), name=f"sim-depth-{venue_symbol}-{self._name}"
        )

    async def _resync(self, venue_symbol: str, book: DepthBook) -> None:
        """Load snapshots until the book is in sync; diffs keep buffering in the book meanwhile."""
        attempt = 0
        while book.needs_snapshot and not self._stopping():
            try:
                snapshot = await self._client.get(f"/depth/{venue_symbol}", DepthBody)
            except (TransientBrokerError, OrderRefused) as exc:
                # Refusals too are retried, with backoff: a skewed clock passes, and the book must not stay stale.
                _log.warning("sim_depth_snapshot_failed", symbol=venue_symbol, attempt=attempt, error=str(exc))
            else:
                if book.load_snapshot(snapshot):
                    _log.info("sim_depth_synced", symbol=venue_symbol, update_id=book.last_update_id)
                    self._push_book(venue_symbol, book)
                    return
                # The buffered diffs have a hole after this snapshot: a newer snapshot covers it.
            await asyncio.sleep(self._backoff.delay(attempt, self._rng))
            attempt = min(attempt + 1, 16)  # past the cap anyway; keeps 2**attempt small

    def connected(self) -> None:
        """A connection is up and every subscription renewed on it: what arrives now is live."""
        self.listeners.feed(FeedState.UP)

    async def disconnected(self, reason: str | None = None) -> None:
        """The connection is gone: forget its quotes, stop fetching snapshots for it, tell the listeners
        (unless the adapter is closing: its ``CLOSED`` says it all, and a ``DOWN`` first would have
        listeners report an outage for what is an orderly end)."""
        self._quotes.clear()
        if not self._stopping():
            self.listeners.feed(FeedState.DOWN, reason)
        tasks = list(self._resyncs.values())
        self._resyncs.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
