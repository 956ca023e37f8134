"""Alpaca's market data streams for one adapter: quotes and trades, stocks and crypto.

Stocks and crypto stream from different endpoints (``/v2/iex`` or ``/v2/sip``, and
``/v1beta3/crypto/us`` on ``stream.data.alpaca.markets``), so each asset class gets its own
connection, opened on the first subscription of one of its symbols. A connection is a small state
machine: ``[{"T":"success","msg":"connected"}]``, then our ``auth``, then
``[{"T":"success","msg":"authenticated"}]``, then ``subscribe`` (every wanted symbol, on every new
connection) answered by the whole subscription; after that each frame is an *array* of data points.

A quote is served only while the connection that brought it is up: when it drops, the class's
quotes are forgotten until fresh ones arrive (a stale quote must never pass for a live one).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Iterable

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from brokerlink.brokers.alpaca import mapping
from brokerlink.brokers.alpaca.wire import MarketKind, MdControl, MdKind, MdQuote, MdSubscription, MdTrade
from brokerlink.brokers.backoff import Backoff
from brokerlink.brokers.base import OrderRefused, RefusalReason, TransientBrokerError
from brokerlink.domain.enums import Side
from brokerlink.domain.models import Quote, Trade
from brokerlink.logs import get_logger

_log = get_logger("brokerlink.brokers.alpaca")
_FRAMES = msgspec.json.Decoder(list[msgspec.Raw])
AUTH_FAILED = 402
CONNECTION_LIMIT = 406


class MalformedFrame(Exception):
    """A market data frame that cannot be read: the connection is restarted."""


class QuoteFeeds:
    """The quote and trade streams of one API key, one connection per asset class."""

    def __init__(
        self,
        *,
        urls: dict[MarketKind, str],
        key_id: str,
        secret_key: str,
        symbols: Callable[[], mapping.SymbolMap],
        backoff: Backoff,
        rng: random.Random,
        connect_timeout_s: float,
        ping_interval_s: float,
        name: str,
    ) -> None:
        self._urls = urls
        self._auth = {"action": "auth", "key": key_id, "secret": secret_key}
        self._symbols = symbols
        self._backoff = backoff
        self._rng = rng
        self._connect_timeout_s = connect_timeout_s
        self._ping_interval_s = ping_interval_s
        self._name = name
        self._wanted: dict[MarketKind, set[str]] = {"stock": set(), "crypto": set()}
        self._sockets: dict[MarketKind, ClientConnection] = {}
        self._tasks: dict[MarketKind, asyncio.Task[None]] = {}
        self._quotes: dict[str, Quote] = {}  # by canonical symbol, from live connections only
        self._trades: dict[str, Trade] = {}
        self._closed = False
        self.connections = 0
        """Connections authenticated so far (tests read it)."""

    async def subscribe(self, kind: MarketKind, venue_symbols: Iterable[str]) -> None:
        """Want the quotes and trades of ``venue_symbols``; starts the class's connection if needed."""
        new = sorted(set(venue_symbols) - self._wanted[kind])
        if not new or self._closed:
            return
        self._wanted[kind].update(new)
        task = self._tasks.get(kind)
        if task is None or task.done():
            self._tasks[kind] = asyncio.create_task(self._run(kind), name=f"alpaca-md-{kind}-{self._name}")
            return
        socket = self._sockets.get(kind)
        if socket is not None:  # otherwise the next handshake subscribes everything wanted
            with contextlib.suppress(ConnectionClosed):
                await socket.send(msgspec.json.encode({"action": "subscribe", "trades": new, "quotes": new}).decode())

    def subscribed(self, canonical: str) -> bool:
        """Whether quotes of ``canonical`` are wanted."""
        symbols = self._symbols()
        try:
            venue = symbols.venue(canonical)
        except KeyError:
            return False
        return any(venue in wanted for wanted in self._wanted.values())

    def quote(self, canonical: str) -> Quote | None:
        """The latest quote of ``canonical`` on a live connection."""
        return self._quotes.get(canonical) if self.subscribed(canonical) else None

    def trade(self, canonical: str) -> Trade | None:
        """The latest trade of ``canonical`` on a live connection."""
        return self._trades.get(canonical) if self.subscribed(canonical) else None

    async def close(self) -> None:
        """Stop every connection. Idempotent."""
        self._closed = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    # --- one connection -------------------------------------------------------------------------

    async def _run(self, kind: MarketKind) -> None:
        attempt = 0
        while not self._closed:
            try:
                async with connect(
                    self._urls[kind],
                    open_timeout=self._connect_timeout_s,
                    ping_interval=self._ping_interval_s,
                    ping_timeout=self._ping_interval_s,
                ) as ws:
                    try:
                        await self._handshake(kind, ws)
                        attempt = 0
                        await self._pump(ws)
                        reason = "closed by Alpaca"
                    finally:
                        self._sockets.pop(kind, None)
                        self._forget(kind)
            except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError, MalformedFrame) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            except (OrderRefused, TransientBrokerError) as exc:
                reason = exc.detail or type(exc).__name__
            if self._stopping():
                return
            _log.warning(
                "alpaca_market_data_reconnecting", feed=kind, account=self._name, attempt=attempt, reason=reason
            )
            await asyncio.sleep(self._backoff.delay(attempt, self._rng))
            attempt += 1

    def _stopping(self) -> bool:
        # A method, not the attribute: close() flips it while a connection task is suspended.
        return self._closed

    def _forget(self, kind: MarketKind) -> None:
        symbols = self._symbols()
        gone = {symbols.canonical(v) for v in self._wanted[kind]}
        for canonical in gone:
            self._quotes.pop(canonical, None)
            self._trades.pop(canonical, None)

    async def _expect(self, ws: ClientConnection, kind: str, msg: str) -> None:
        async with asyncio.timeout(self._connect_timeout_s):
            frame = _FRAMES.decode(await ws.recv())
        for raw in frame:
            item = msgspec.json.decode(raw, type=MdControl)
            if item.T == "error":
                reason = RefusalReason.AUTH if item.code == AUTH_FAILED else None
                if reason is not None:
                    raise OrderRefused(reason, f"Alpaca market data: {item.msg}")
                raise TransientBrokerError(f"Alpaca market data error {item.code}: {item.msg}")
            if kind == item.T and item.msg == msg:
                return
        raise MalformedFrame(f"expected {kind} {msg!r}")

    async def _handshake(self, kind: MarketKind, ws: ClientConnection) -> None:
        await self._expect(ws, "success", "connected")
        await ws.send(msgspec.json.encode(self._auth).decode())
        await self._expect(ws, "success", "authenticated")
        self.connections += 1
        self._sockets[kind] = ws  # from here a new subscription is sent on this connection
        wanted = sorted(self._wanted[kind])
        await ws.send(msgspec.json.encode({"action": "subscribe", "trades": wanted, "quotes": wanted}).decode())

    async def _pump(self, ws: ClientConnection) -> None:
        async for message in ws:
            try:
                frame = _FRAMES.decode(message)
                for raw in frame:
                    self._on_item(raw)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise MalformedFrame(f"unreadable market data: {exc}") from exc

    def _on_item(self, raw: msgspec.Raw) -> None:
        kind = msgspec.json.decode(raw, type=MdKind).T
        symbols = self._symbols()
        if kind == "q":
            body = msgspec.json.decode(raw, type=MdQuote)
            canonical = symbols.canonical(body.S)
            self._quotes[canonical] = mapping.quote(body, symbol=canonical)
        elif kind == "t":
            trade = msgspec.json.decode(raw, type=MdTrade)
            canonical = symbols.canonical(trade.S)
            aggressor = {"B": Side.BUY, "S": Side.SELL}.get(trade.tks or "")
            self._trades[canonical] = Trade(
                symbol=canonical,
                trade_id=str(trade.i),
                price=trade.p,
                size=trade.s,
                aggressor=aggressor,
                ts=mapping.utc(trade.t),
            )
        elif kind == "subscription":
            msgspec.json.decode(raw, type=MdSubscription)  # the whole subscription: nothing to do
        elif kind == "error":
            error = msgspec.json.decode(raw, type=MdControl)
            _log.warning("alpaca_market_data_error", account=self._name, code=error.code, msg=error.msg)
        # Bars, statuses and other kinds are not subscribed; anything else is ignored.
