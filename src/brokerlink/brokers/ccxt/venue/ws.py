"""The test venue's user data stream: the WebSocket API (``/ws-api/v3``) and the listen-key stream (``/ws/<key>``).

The WebSocket API takes requests ``{"id", "method", "params"}`` and answers ``{"id", "status", "result"}``
or ``{"id", "status", "error": {"code", "msg"}}``; ``userDataStream.subscribe.signature`` (signed like a
REST request, over the parameters sorted by name) subscribes the connection to its account's events,
which then arrive as ``{"subscriptionId": N, "event": {...}}``. ccxt 4.5's Binance class uses this for
spot. The older listen-key stream (``POST /api/v3/userDataStream``, then ``/ws/<listenKey>``) sends the
same events bare. Both are subscribers of the sim core's hub, so its ``drop_connections``,
``duplicate_events`` and ``reorder_events`` faults reach them as they reach the sim's own stream.
"""

from __future__ import annotations

import asyncio
import itertools
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from brokerlink.brokers.ccxt.venue.spot import BinanceError
from brokerlink.brokers.ccxt.venue.wire import (
    WS_API_PATH,
    StreamEvent,
    SubscribeResult,
    WsError,
    WsRequest,
    WsResponse,
)
from brokerlink.brokers.sim.venue.hub import TRADE_UPDATES
from brokerlink.brokers.sim.wire import TradeUpdate

if TYPE_CHECKING:
    from brokerlink.brokers.ccxt.venue.app import BinanceVenue

CLOSE_NORMAL = 1000
_subscription_ids = itertools.count()
_encode = msgspec.json.Encoder().encode


class UserStream:
    """One WebSocket connection; a hub subscriber once it is subscribed to an account."""

    def __init__(self, socket: WebSocket[Any, Any, Any], venue: BinanceVenue, *, wrapped: bool) -> None:
        self.socket = socket
        self.venue = venue
        self.wrapped = wrapped
        self.account_id = ""
        self.channels: set[str] = set()
        self.subscription_id = -1
        self.listen_key: str | None = None
        self._queue: asyncio.Queue[bytes | msgspec.Raw] = asyncio.Queue(venue.core.config.ws_queue_size)
        self._done = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""

    # --- the hub's side ---------------------------------------------------------------------------

    def deliver(self, channel: str, data: msgspec.Raw) -> None:
        """A ``trade_updates`` message of the account: converted when it is written (never blocks)."""
        if channel == TRADE_UPDATES:
            self._put(data)

    def close(self, code: int, reason: str) -> None:
        """End the connection with this code (the first reason wins)."""
        if not self._done.is_set():
            self.close_code, self.close_reason = code, reason
            self._done.set()

    def _put(self, item: bytes | msgspec.Raw) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.close(1008, "slow consumer")

    # --- serving ----------------------------------------------------------------------------------

    def subscribe(self, account_id: str) -> None:
        """Start delivering the account's events."""
        self.account_id = account_id
        self.channels = {TRADE_UPDATES}
        self.venue.core.hub.add(self)

    async def serve(self) -> None:
        """Run until the client leaves or the server closes the connection."""
        tasks = [asyncio.create_task(self._reader()), asyncio.create_task(self._writer())]
        try:
            await self._done.wait()
        finally:
            self.venue.core.hub.remove(self)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.close_code is not None:
            with suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.socket.close(code=self.close_code, reason=self.close_reason)

    async def _reader(self) -> None:
        try:
            while True:
                text = await self.socket.receive_text()
                if self.wrapped:
                    self._handle(text)
        except WebSocketDisconnect:
            self._done.set()

    def _handle(self, text: str) -> None:
        try:
            request = msgspec.json.decode(text, type=WsRequest)
        except msgspec.DecodeError:
            self._put(_encode(WsResponse(id=None, status=400, error=WsError(-1100, "Malformed request."))))
            return
        try:
            result = self._call(request)
        except BinanceError as exc:
            self._put(
                _encode(WsResponse(id=request.id, status=exc.status, error=WsError(exc.binance_code, exc.message)))
            )
            return
        self._put(_encode(WsResponse(id=request.id, status=200, result=msgspec.Raw(_encode(result)))))

    def _call(self, request: WsRequest) -> object:
        if request.method == "ping":
            return {}
        if request.method == "time":
            return {"serverTime": self.venue.spot.now_ms()}
        if request.method == "userDataStream.subscribe.signature":
            key = self.venue.gate.ws_signed(request.params)
            if self.subscription_id < 0:
                self.subscription_id = next(_subscription_ids)
            self.subscribe(key.account_id)
            return SubscribeResult(subscription_id=self.subscription_id)
        if request.method == "userDataStream.unsubscribe":
            self.venue.core.hub.remove(self)
            self.channels = set()
            return {}
        raise BinanceError(400, -1102, f"Unknown method '{request.method}'.")

    async def _writer(self) -> None:
        try:
            while True:
                item = await self._queue.get()
                if not isinstance(item, msgspec.Raw):  # an answer to a request, already encoded
                    await self.socket.send_text(item.decode())
                    continue
                update = msgspec.json.decode(item, type=TradeUpdate)
                for event in self.venue.spot.user_events(self.account_id, update):
                    payload = _encode(event)
                    if self.wrapped:
                        payload = _encode(StreamEvent(subscription_id=self.subscription_id, event=msgspec.Raw(payload)))
                    await self.socket.send_text(payload.decode())
        except (WebSocketDisconnect, RuntimeError, OSError):
            self._done.set()


@websocket(WS_API_PATH)
async def ws_api(socket: WebSocket[Any, Any, Any]) -> None:
    """The WebSocket API: requests and, once subscribed, the account's user data events."""
    venue: BinanceVenue = socket.app.state.binance
    await socket.accept()
    await UserStream(socket, venue, wrapped=True).serve()


@websocket("/ws/{listen_key:str}")
async def listen_key_stream(socket: WebSocket[Any, Any, Any]) -> None:
    """The listen-key user data stream: bare events of the key's account."""
    venue: BinanceVenue = socket.app.state.binance
    listen_key: str = socket.path_params["listen_key"]
    await socket.accept()
    account_id = venue.listen_keys.get(listen_key)
    if account_id is None:
        with suppress(WebSocketDisconnect, RuntimeError, OSError):
            await socket.close(code=4001, reason="invalid listen key")
        return
    stream = UserStream(socket, venue, wrapped=False)
    stream.listen_key = listen_key
    stream.subscribe(account_id)
    venue.streams.add(stream)
    try:
        await stream.serve()
    finally:
        venue.streams.discard(stream)
