"""The market data side of the sim adapter's WebSocket: quotes and depth books, by venue symbol.

Quotes (``quotes:SYM``): the latest one per subscribed symbol is kept, and forgotten when the
connection drops (:meth:`MarketFeed.disconnected`), so a quote from before a disconnect is never
served as live. Depth books (``depth:SYM``): each is kept by a
:class:`~brokerlink.brokers.sim.depth.DepthBook` and rebuilt from ``GET /depth/SYM`` plus the
buffered diffs when it starts, after a gap, and after every reconnect (diffs sent while the
adapter was away are lost, so the old book cannot be trusted).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable

import msgspec

from brokerlink.brokers.backoff import Backoff
from brokerlink.brokers.base import OrderBookView, OrderRefused, TransientBrokerError
from brokerlink.brokers.sim import mapping
from brokerlink.brokers.sim.client import SimClient
from brokerlink.brokers.sim.depth import DepthBook
from brokerlink.brokers.sim.wire import DepthBody, DepthDiff, QuoteBody
from brokerlink.domain.models import Quote
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
    ) -> None:
        self._client = client
        self._symbols = symbols
        self._backoff = backoff
        self._rng = rng
        self._stopping = stopping
        self._name = name
        self.books: dict[str, DepthBook] = {}
        self._resyncs: dict[str, asyncio.Task[None]] = {}  # snapshot fetches in flight
        self.quote_symbols: set[str] = set()
        self._quotes: dict[str, Quote] = {}  # the latest on the live connection

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

    def channels(self, *, stall_probe: str | None) -> list[str]:
        """Every market data channel for a new connection; the books start over from snapshots."""
        quoted = set(self.quote_symbols)
        if stall_probe is not None:
            quoted.add(stall_probe)
        channels = [f"quotes:{v}" for v in sorted(quoted)]
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
        bids, asks = book.levels()
        return OrderBookView(symbol=symbol, bids=bids, asks=asks, update_id=book.last_update_id, resyncs=book.resyncs)

    def quote(self, venue_symbol: str) -> Quote | None:
        """The latest streamed quote; ``None`` if not subscribed or none since the last (re)connect."""
        return self._quotes.get(venue_symbol)

    async def quote_snapshot(self, venue_symbol: str) -> Quote:
        """The venue's quote now, from ``GET /quotes/SYM``."""
        body = await self._client.get(f"/quotes/{venue_symbol}", QuoteBody)
        return mapping.quote(body, symbols=self._symbols())

    # --- channel data ---------------------------------------------------------------------------

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
        self._quotes[venue_symbol] = mapping.quote(body, symbols=self._symbols())

    def on_depth(self, venue_symbol: str, data: msgspec.Raw) -> None:
        """A ``depth:SYM`` diff."""
        book = self.books.get(venue_symbol)
        if book is None:
            return
        gaps = book.gaps
        book.on_diff(msgspec.json.decode(data, type=DepthDiff))
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
                    return
                # The buffered diffs have a hole after this snapshot: a newer snapshot covers it.
            await asyncio.sleep(self._backoff.delay(attempt, self._rng))
            attempt = min(attempt + 1, 16)  # past the cap anyway; keeps 2**attempt small

    async def disconnected(self) -> None:
        """The connection is gone: forget its quotes and stop fetching snapshots for it."""
        self._quotes.clear()
        tasks = list(self._resyncs.values())
        self._resyncs.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
