"""The test venue's WebSockets: the trading stream (``/stream``) and the market data streams.

Trading stream: the client authenticates (``{"action": "auth", "key", "secret"}`` or the older
``{"action": "authenticate", "data": {"key_id", "secret_key"}}``) and is answered on the
``authorization`` stream; ``listen`` is answered on ``listening``; then ``trade_updates`` flow.
Frames are binary, as on Alpaca's paper endpoint.

Market data (``/v2/iex``, ``/v2/sip`` for stocks, ``/v1beta3/crypto/us`` for crypto): text frames,
each an array; ``[{"T":"success","msg":"connected"}]`` on connect, ``auth`` within a few seconds,
``subscribe`` / ``unsubscribe`` of ``trades`` and ``quotes`` answered with the whole subscription.
Data points queued while the writer was busy go out together in one array.

A connection is four-state (connected, authenticated, listening or subscribed, closed) and two
tasks (reader, writer) that end together; delivery never blocks the venue: a client too slow to
drain its bounded queue is closed (``[{"T":"error","code":407,"msg":"slow client"}]`` on market data).
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from brokerlink.brokers.alpaca.wire import ClientAction

if TYPE_CHECKING:
    from brokerlink.brokers.alpaca.venue.state import AlpacaVenue

AUTH_TIMEOUT_S = 10.0
CLOSE_SLOW = 4008
_MAX_BATCH = 200
_KNOWN_STREAMS = frozenset({"trade_updates"})


def _frame(stream: str, data: object) -> bytes:
    return msgspec.json.encode({"stream": stream, "data": data})


def _md(items: list[dict[str, object]]) -> bytes:
    return msgspec.json.encode(items)


class _Connection:
    """What both kinds of connection share: a bounded send queue, a writer, close and serve."""

    binary = False

    def __init__(self, socket: WebSocket[Any, Any, Any], venue: AlpacaVenue) -> None:
        self.socket = socket
        self.venue = venue
        self.account_id = ""
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(venue.config.ws_queue_size)
        self._done = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""

    def send(self, frame: bytes) -> None:
        """Queue one whole frame; never blocks."""
        if self._done.is_set():
            return
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.slow()

    def slow(self) -> None:
        """The client does not keep up: close it (it reconciles over REST)."""
        self.close(CLOSE_SLOW, "slow client")

    def close(self, code: int, reason: str) -> None:
        """End the connection with this code (the first reason wins)."""
        if not self._done.is_set():
            self.close_code, self.close_reason = code, reason
            self._done.set()

    async def _next_frame(self) -> bytes:
        return await self._queue.get()

    async def _writer(self) -> None:
        try:
            while True:
                frame = await self._next_frame()
                if self.binary:
                    await self.socket.send_bytes(frame)
                else:
                    await self.socket.send_text(frame.decode())
        except (WebSocketDisconnect, RuntimeError, OSError):
            self._done.set()

    async def _reader(self) -> None:
        try:
            while True:
                message = await self.socket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text, raw = message.get("text"), message.get("bytes")
                data = text.encode() if isinstance(text, str) else raw if isinstance(raw, bytes) else b""
                try:
                    action = msgspec.json.decode(data, type=ClientAction)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    self.malformed()
                    continue
                self.handle(action)
        except (WebSocketDisconnect, RuntimeError):
            pass
        self._done.set()

    def malformed(self) -> None:
        """A message that is not JSON of the expected shape."""

    def handle(self, action: ClientAction) -> None:
        """One client message."""

    def forget(self) -> None:
        """Leave the venue's listener sets."""

    async def serve(self) -> None:
        """Run until the client leaves or the venue closes the connection."""
        self.venue.connections.add(self)
        tasks = [asyncio.create_task(self._reader()), asyncio.create_task(self._writer())]
        try:
            await self._done.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.venue.connections.discard(self)
            self.forget()
        if self.close_code is not None:
            with suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.socket.close(code=self.close_code, reason=self.close_reason)


class TradeConnection(_Connection):
    """One ``/stream`` connection (a :class:`~.state.TradeSink` once it listens to ``trade_updates``)."""

    binary = True

    def __init__(self, socket: WebSocket[Any, Any, Any], venue: AlpacaVenue) -> None:
        super().__init__(socket, venue)
        self.streams: list[str] = []

    def push(self, frame: bytes) -> None:
        """A ``trade_updates`` message for this account."""
        self.send(frame)

    def forget(self) -> None:
        self.venue.trade_sinks.discard(self)

    def malformed(self) -> None:
        self.send(_frame("error", {"message": "invalid message"}))

    def handle(self, action: ClientAction) -> None:
        data = action.data or {}
        if action.action in ("auth", "authenticate"):
            key = action.key if action.action == "auth" else data.get("key_id")
            secret = action.secret if action.action == "auth" else data.get("secret_key")
            account_id = self.venue.account_id(str(key or ""), str(secret or ""))
            status = "authorized" if account_id is not None else "unauthorized"
            self.account_id = account_id or ""
            self.send(_frame("authorization", {"status": status, "action": "authenticate"}))
        elif action.action == "listen":
            if not self.account_id:
                self.send(_frame("authorization", {"status": "unauthorized", "action": "listen"}))
                return
            wanted = data.get("streams")
            self.streams = [s for s in wanted if s in _KNOWN_STREAMS] if isinstance(wanted, list) else []
            if "trade_updates" in self.streams:
                self.venue.trade_sinks.add(self)
            else:
                self.venue.trade_sinks.discard(self)
            self.send(_frame("listening", {"streams": self.streams}))
        else:
            self.send(_frame("error", {"message": f"unknown action {action.action!r}"}))


class MarketConnection(_Connection):
    """One market data connection of one feed (a :class:`~.state.MarketSink` once authenticated)."""

    def __init__(self, socket: WebSocket[Any, Any, Any], venue: AlpacaVenue, kind: str) -> None:
        super().__init__(socket, venue)
        self.kind = kind
        self.quotes: set[str] = set()
        self.trades: set[str] = set()
        self._points: asyncio.Queue[bytes] = asyncio.Queue(venue.config.ws_queue_size)
        self._wake = asyncio.Event()

    def push(self, item: bytes) -> None:
        """One encoded data point; queued points go out together as one array."""
        if self._done.is_set():
            return
        try:
            self._points.put_nowait(item)
        except asyncio.QueueFull:
            self.slow()
            return
        self._wake.set()

    def send(self, frame: bytes) -> None:
        super().send(frame)
        self._wake.set()

    def slow(self) -> None:
        with suppress(asyncio.QueueFull):
            self._queue.put_nowait(_md([{"T": "error", "code": 407, "msg": "slow client"}]))
        self.close(CLOSE_SLOW, "slow client")

    async def _next_frame(self) -> bytes:
        while True:
            if not self._queue.empty():
                return self._queue.get_nowait()
            if not self._points.empty():
                items = [self._points.get_nowait()]
                while not self._points.empty() and len(items) < _MAX_BATCH:
                    items.append(self._points.get_nowait())
                return b"[" + b",".join(items) + b"]"
            self._wake.clear()
            await self._wake.wait()

    def forget(self) -> None:
        self.venue.market_sinks.discard(self)

    def malformed(self) -> None:
        self.send(_md([{"T": "error", "code": 400, "msg": "invalid syntax"}]))

    def handle(self, action: ClientAction) -> None:
        if action.action == "auth":
            if self.account_id:
                self.send(_md([{"T": "error", "code": 403, "msg": "already authenticated"}]))
                return
            account_id = self.venue.account_id(action.key or "", action.secret or "")
            if account_id is None:
                self.send(_md([{"T": "error", "code": 402, "msg": "auth failed"}]))
                self.close(1008, "auth failed")
                return
            self.account_id = account_id
            self.venue.market_sinks.add(self)
            self.send(_md([{"T": "success", "msg": "authenticated"}]))
        elif action.action in ("subscribe", "unsubscribe"):
            if not self.account_id:
                self.send(_md([{"T": "error", "code": 401, "msg": "not authenticated"}]))
                return
            for wanted, mine in ((action.quotes, self.quotes), (action.trades, self.trades)):
                listed = {s for s in wanted or [] if self._listed(s)}
                if action.action == "subscribe":
                    mine.update(listed)
                else:
                    mine.difference_update(listed)
            subscription: dict[str, object] = {
                "T": "subscription",
                "trades": sorted(self.trades),
                "quotes": sorted(self.quotes),
                "bars": [],
            }
            self.send(_md([subscription]))
        else:
            self.send(_md([{"T": "error", "code": 400, "msg": "invalid syntax"}]))

    def _listed(self, symbol: str) -> bool:
        asset = self.venue.assets.get(symbol)
        return asset is not None and (asset.is_crypto == (self.kind == "crypto"))

    async def serve(self) -> None:
        self.send(_md([{"T": "success", "msg": "connected"}]))
        timeout = asyncio.get_running_loop().call_later(AUTH_TIMEOUT_S, self._auth_timeout)
        try:
            await super().serve()
        finally:
            timeout.cancel()

    def _auth_timeout(self) -> None:
        if not self.account_id:
            self.send(_md([{"T": "error", "code": 404, "msg": "auth timeout"}]))
            self.close(1008, "auth timeout")


def _venue(socket: WebSocket[Any, Any, Any]) -> AlpacaVenue:
    venue: AlpacaVenue = socket.app.state.venue
    return venue


@websocket("/stream")
async def trading_stream(socket: WebSocket[Any, Any, Any]) -> None:
    """``wss://paper-api.alpaca.markets/stream``."""
    await socket.accept()
    await TradeConnection(socket, _venue(socket)).serve()


@websocket("/v2/{feed:str}")
async def stock_stream(socket: WebSocket[Any, Any, Any]) -> None:
    """``wss://stream.data.alpaca.markets/v2/iex`` (or ``sip``)."""
    await socket.accept()
    if socket.path_params["feed"] not in ("iex", "sip", "test"):
        await socket.close(code=1008, reason="unknown feed")
        return
    await MarketConnection(socket, _venue(socket), "stock").serve()


@websocket("/v1beta3/crypto/{location:str}")
async def crypto_stream(socket: WebSocket[Any, Any, Any]) -> None:
    """``wss://stream.data.alpaca.markets/v1beta3/crypto/us``."""
    await socket.accept()
    await MarketConnection(socket, _venue(socket), "crypto").serve()


STREAM_HANDLERS = [trading_stream, stock_stream, crypto_stream]
