"""``AsyncStream``: the ``/v1/stream`` WebSocket as an async iterator that survives dropped connections.

Iterate it to receive :class:`~brokerlink.client.protocol.Event` and
:class:`~brokerlink.client.protocol.Snapshot` messages of the channels you follow, in order, each
event once. Behind the iterator (ADR 0032):

* **Heartbeats.** After the server's ``welcome`` a task sends ``ping`` every ``heartbeat_s``; a
  server silent for three intervals counts as a dropped connection.
* **Resume.** The stream remembers, per channel, the last ``seq`` it handed out and the ``epoch``
  it was counted in. On a dropped connection (or a 1001 or 1013 close) it reconnects with backoff
  and subscribes again with ``after`` and ``epoch``: the server replays what was missed, or sends a
  snapshot (a new epoch, a replay buffer that no longer reaches back), which the iterator yields.
* **No duplicates.** An event whose ``seq`` is not above the last one handed out in its epoch is
  dropped, so replays that overlap what was already seen never reach the caller.
* **Gaps.** On a reliable channel (account, copy, alerts) an event more than one above the last is a
  :class:`Gap`, yielded before it, as is a resume the server could not honour without a snapshot.
  Market channels are conflated for slow consumers and may skip numbers: no gap there.
* **Closes that reconnecting does not cure.** 1008 (policy: revoked consent, expired token...) ends
  the iteration with :class:`~brokerlink.client.errors.StreamClosed`, after one attempt with refreshed
  tokens when the auth can refresh; a refused handshake raises
  :class:`~brokerlink.client.errors.StreamError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Self

import httpx
import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from brokerlink.client.auth import Auth, DPoPAuth
from brokerlink.client.errors import StreamClosed, StreamError, problem_from_response
from brokerlink.client.protocol import (
    CLOSE_POLICY,
    RELIABLE_KINDS,
    Error,
    Event,
    Heartbeat,
    Ping,
    Pong,
    ServerMessage,
    Snapshot,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    Welcome,
)

__all__ = ["AsyncStream", "Gap", "StreamItem", "default_backoff", "stream_url"]


class Gap(msgspec.Struct, kw_only=True, frozen=True):
    """Events of a reliable channel that the stream could not deliver: those after ``after`` and before
    ``seq`` (in ``epoch``). The server never skips on these channels; re-read the state over REST."""

    channel: str
    after: int
    seq: int
    epoch: str | None


StreamItem = Event | Snapshot | Gap | Error
"""What iterating a stream yields (an ``Error`` is a refused subscription or message)."""


def default_backoff(attempt: int) -> float:
    """Seconds before reconnect ``attempt`` (1, 2...): 0.25 s doubling to 30 s, with jitter."""
    base = min(30.0, 0.25 * float(2 ** (attempt - 1)))
    jitter: float = random.random()  # noqa: S311 - jitter, not a secret
    return base * (0.5 + jitter / 2)


def stream_url(base_url: str) -> str:
    """``/v1/stream`` of a server: ws for http, wss for https."""
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base.removeprefix("https://") + "/v1/stream"
    if base.startswith("http://"):
        return "ws://" + base.removeprefix("http://") + "/v1/stream"
    return base + "/v1/stream"


@dataclass
class _Channel:
    name: str
    reliable: bool
    last: int | None = None
    """The last ``seq`` handed to the caller (or the baseline a snapshot or subscription set)."""
    epoch: str | None = None
    """The epoch ``last`` was counted in."""
    pending_gap: tuple[int, int] | None = None
    """A resume the server refused in the same epoch: (last, subscribed seq), a gap unless a snapshot comes."""
    snapshot_seen: bool = False
    """A snapshot arrived on this connection."""


_DECODER = msgspec.json.Decoder(ServerMessage)
_ENCODER = msgspec.json.Encoder()


class _Dropped(Exception):
    """The connection is gone: reconnect."""


class AsyncStream:
    """A resumable subscription to ``/v1/stream`` (module docstring). Use ``async with`` or :meth:`aclose`."""

    def __init__(
        self,
        url: str,
        *,
        auth: Auth | None = None,
        http: httpx.AsyncClient | None = None,
        channels: Iterable[str] = (),
        backoff: Callable[[int], float] = default_backoff,
        max_reconnects: int | None = None,
        open_timeout: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.url = url
        self.auth = auth
        self._http = http
        self.backoff = backoff
        self.max_reconnects = max_reconnects
        self.open_timeout = open_timeout
        self._sleep = sleep
        self._channels: dict[str, _Channel] = {}
        for name in channels:
            self._add(name)
        self.epoch: str | None = None
        """The epoch of the current (or last) connection's server hub."""
        self.heartbeat_s: float = 30.0
        self.connections = 0
        """How many connections were opened (1 plus the reconnects)."""
        self._ws: ClientConnection | None = None
        self._pinger: asyncio.Task[None] | None = None
        self._ready: deque[StreamItem] = deque()
        self._closed = False
        self._policy_retry_used = False

    # --- the caller's side ------------------------------------------------------------------------

    @property
    def positions(self) -> dict[str, int | None]:
        """The last ``seq`` handed out per channel (what a resume asks for)."""
        return {c.name: c.last for c in self._channels.values()}

    @property
    def channels(self) -> list[str]:
        """The channels followed."""
        return list(self._channels)

    async def subscribe(self, channel: str) -> None:
        """Follow ``channel`` (now if connected, else on connecting); a refusal comes as an ``Error`` item."""
        if channel in self._channels:
            return
        self._add(channel)
        if self._ws is not None:
            await self._send(Subscribe(channel=channel))

    async def unsubscribe(self, channel: str) -> None:
        """Stop following ``channel``; its events still in flight are dropped."""
        if self._channels.pop(channel, None) is not None and self._ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await self._send(Unsubscribe(channel=channel))

    async def drop(self) -> None:
        """Close the current connection as a network failure would (the next read reconnects and resumes)."""
        if self._ws is not None:
            await self._ws.close(code=1001, reason="client dropped the connection")

    async def aclose(self) -> None:
        """Stop: close the connection; iterating ends."""
        self._closed = True
        await self._disconnect()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[StreamItem]:
        return self

    async def __anext__(self) -> StreamItem:
        while True:
            if self._ready:
                return self._ready.popleft()
            if self._closed:
                raise StopAsyncIteration
            try:
                if self._ws is None:
                    await self._connect()
                    continue
                self._handle(await self._receive(self._ws))
            except _Dropped:
                await self._disconnect()

    # --- connecting ----------------------------------------------------------------------------------

    def _add(self, name: str) -> None:
        kind = name.split(":", 1)[0]
        self._channels[name] = _Channel(name=name, reliable=kind in RELIABLE_KINDS)

    async def _headers(self) -> dict[str, str]:
        if self.auth is None:
            return {}
        return await self.auth.headers(self._http, "GET", self.url)

    async def _connect(self) -> None:
        """Open a connection (with backoff between failed attempts) and subscribe to every channel."""
        attempt = 0
        auth_attempt = 0
        while not self._closed:
            if attempt:
                if self.max_reconnects is not None and attempt > self.max_reconnects:
                    raise StreamError(f"gave up after {attempt - 1} reconnection attempts")
                await self._sleep(self.backoff(attempt))
            try:
                ws = await connect(
                    self.url,
                    additional_headers=await self._headers(),
                    open_timeout=self.open_timeout,
                    ping_interval=None,  # the protocol's heartbeats do this job
                    max_size=2**22,
                )
            except InvalidStatus as exc:
                response = httpx.Response(
                    exc.response.status_code,
                    headers=list(exc.response.headers.raw_items()),
                    content=bytes(exc.response.body or b""),
                )
                response.read()
                retry = self.auth is not None and await self.auth.retry(self.url, response, auth_attempt)
                auth_attempt += 1
                if retry:
                    continue
                if response.status_code >= 500 or response.status_code == 429:
                    attempt += 1
                    continue
                raise StreamError(f"the handshake was refused: {problem_from_response(response)}") from None
            except (OSError, TimeoutError, InvalidHandshake):
                attempt += 1
                continue
            try:
                welcome = _DECODER.decode(await asyncio.wait_for(ws.recv(), self.open_timeout))
            except asyncio.CancelledError:
                await ws.close()
                raise
            except (ConnectionClosed, TimeoutError, msgspec.DecodeError) as exc:
                await ws.close()
                code = exc.rcvd.code if isinstance(exc, ConnectionClosed) and exc.rcvd else None
                if code == CLOSE_POLICY:
                    await self._policy_close(exc.rcvd.reason if isinstance(exc, ConnectionClosed) and exc.rcvd else "")
                    continue
                attempt += 1
                continue
            if not isinstance(welcome, Welcome):
                await ws.close()
                raise StreamError(f"expected a welcome message, got {type(welcome).__name__}")
            self._welcome(ws, welcome)
            for channel in list(self._channels.values()):
                resume = channel.last is not None and channel.epoch is not None
                await self._send(
                    Subscribe(
                        channel=channel.name,
                        after=channel.last if resume else None,
                        epoch=channel.epoch if resume else None,
                    )
                )
            return

    def _welcome(self, ws: ClientConnection, welcome: Welcome) -> None:
        self._ws = ws
        self.connections += 1
        self.epoch = welcome.epoch
        self.heartbeat_s = max(0.05, float(welcome.heartbeat_s))
        for channel in self._channels.values():
            channel.snapshot_seen = False
            channel.pending_gap = None
        self._pinger = asyncio.create_task(self._ping(ws), name="brokerlink-stream-ping")

    async def _ping(self, ws: ClientConnection) -> None:
        number = 0
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(self.heartbeat_s)
                number += 1
                await ws.send(_ENCODER.encode(Ping(id=str(number))).decode())

    async def _send(self, message: Subscribe | Unsubscribe | Ping) -> None:
        if self._ws is not None:
            await self._ws.send(_ENCODER.encode(message).decode())

    async def _disconnect(self) -> None:
        pinger, self._pinger = self._pinger, None
        if pinger is not None:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()

    async def _policy_close(self, reason: str) -> None:
        """1008: refresh the tokens once and reconnect, else end the stream."""
        if (
            isinstance(self.auth, DPoPAuth)
            and self.auth.can_refresh
            and not self._policy_retry_used
            and "expired" in reason
        ):
            self._policy_retry_used = True
            await self.auth.refresh(self.auth.tokens)
            return
        self._closed = True
        raise StreamClosed(CLOSE_POLICY, reason)

    async def _receive(self, ws: ClientConnection) -> Any:
        try:
            text = await asyncio.wait_for(ws.recv(), self.heartbeat_s * 3)
        except TimeoutError:
            raise _Dropped from None
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            if code == CLOSE_POLICY:
                await self._disconnect()
                await self._policy_close(exc.rcvd.reason if exc.rcvd else "")
            raise _Dropped from None
        try:
            return _DECODER.decode(text)
        except msgspec.DecodeError:
            return None  # a message this client does not know: a newer server's, ignored

    # --- the resume state machine ------------------------------------------------------------------

    def _handle(self, message: Any) -> None:
        if isinstance(message, Event):
            self._event(message)
        elif isinstance(message, Snapshot):
            self._snapshot(message)
        elif isinstance(message, Subscribed):
            self._subscribed(message)
        elif isinstance(message, Error):
            if message.channel is not None:
                self._channels.pop(message.channel, None)
            self._ready.append(message)
        elif isinstance(message, Welcome):  # a second welcome: a new hub behind the same socket
            self.epoch = message.epoch
        elif isinstance(message, Heartbeat | Pong | Unsubscribed) or message is None:
            pass

    def _subscribed(self, message: Subscribed) -> None:
        channel = self._channels.get(message.channel)
        if channel is None or message.resumed:
            return  # resumed: the replay follows; events already seen are dropped as they come
        if channel.snapshot_seen:
            return  # the snapshot set the baseline already
        same_epoch = channel.epoch == self.epoch and channel.last is not None
        if same_epoch and channel.last is not None and message.seq > channel.last:
            channel.pending_gap = (channel.last, message.seq)
        if not same_epoch or channel.last is None or message.seq > channel.last:
            channel.last, channel.epoch = message.seq, self.epoch

    def _snapshot(self, message: Snapshot) -> None:
        channel = self._channels.get(message.channel)
        if channel is None:
            return
        channel.pending_gap = None
        channel.snapshot_seen = True
        if channel.epoch != self.epoch or channel.last is None or message.seq > channel.last:
            channel.last, channel.epoch = message.seq, self.epoch
        self._ready.append(message)

    def _event(self, message: Event) -> None:
        channel = self._channels.get(message.channel)
        if channel is None:
            return  # unsubscribed, still in flight
        same_epoch = channel.epoch == self.epoch and channel.last is not None
        if same_epoch and channel.last is not None and message.seq <= channel.last:
            return  # a duplicate: replayed, or overlapping what a snapshot covered
        if channel.reliable:
            if channel.pending_gap is not None:  # a refused resume: lost from its ``after`` to this event
                self._ready.append(
                    Gap(channel=channel.name, after=channel.pending_gap[0], seq=message.seq, epoch=self.epoch)
                )
            elif same_epoch and channel.last is not None and message.seq > channel.last + 1:
                self._ready.append(Gap(channel=channel.name, after=channel.last, seq=message.seq, epoch=self.epoch))
        channel.pending_gap = None
        channel.last, channel.epoch = message.seq, self.epoch
        self._policy_retry_used = False  # the refreshed connection works: a later expiry may refresh again
        self._ready.append(message)
