"""The venue's two streams, as OANDA serves them: one long HTTP response in chunked transfer encoding,
one JSON object per line (NDJSON), and a ``HEARTBEAT`` line whenever nothing else was sent for a
heartbeat interval (5 s at OANDA).

* ``GET .../transactions/stream``: the account's transactions as they happen, and heartbeats
  carrying ``lastTransactionID`` (a client compares it with the last transaction it saw).
* ``GET .../pricing/stream?instruments=``: a ``PRICE`` per instrument at once (``snapshot``), then
  every change, and heartbeats ``{"type": "HEARTBEAT", "time": ...}``.

A stream is a hub subscriber: the venue's publications reach it without blocking; a client too slow
to drain its queue, and every stream at ``drop_connections``, sees its response end (it reconnects).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import msgspec

from brokerlink.brokers.oanda import wire
from brokerlink.brokers.oanda.venue.core import OandaCore
from brokerlink.brokers.sim.venue.hub import TRADE_UPDATES
from brokerlink.brokers.sim.wire import QuoteBody

_Item = tuple[str, msgspec.Raw] | None


class StreamSubscriber:
    """One open stream as the hub sees it (the sim hub's ``Subscriber`` protocol)."""

    def __init__(self, account_id: str, channels: set[str], queue_size: int) -> None:
        self.account_id = account_id
        self.channels = channels
        self.queue: asyncio.Queue[_Item] = asyncio.Queue(queue_size)
        self.closed = False

    def deliver(self, channel: str, data: msgspec.Raw) -> None:
        """Queue a publication; a full queue ends the stream (the client reconnects and catches up)."""
        if self.closed:
            return
        try:
            self.queue.put_nowait((channel, data))
        except asyncio.QueueFull:
            self.close(4008, "slow consumer")

    def close(self, code: int, reason: str) -> None:  # noqa: ARG002 - the hub's protocol
        """End the stream after what is queued... or at once when the queue is full."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)
        if self.queue.full():
            self.queue = asyncio.Queue(1)
            self.queue.put_nowait(None)


async def _lines(
    core: OandaCore,
    subscriber: StreamSubscriber,
    render: Callable[[str, msgspec.Raw], bytes | None],
    heartbeat: Callable[[], bytes],
) -> AsyncIterator[bytes]:
    core.hub.add(subscriber)
    try:
        while True:
            try:
                async with asyncio.timeout(core.oanda.heartbeat_interval_s):
                    item = await subscriber.queue.get()
            except TimeoutError:
                yield heartbeat()
                continue
            if item is None:
                return
            line = render(*item)
            if line is not None:
                yield line
    finally:
        core.hub.remove(subscriber)


def transaction_stream(core: OandaCore, account_id: str) -> AsyncIterator[bytes]:
    """The lines of ``GET .../transactions/stream``."""
    subscriber = StreamSubscriber(account_id, {TRADE_UPDATES}, core.oanda.stream_queue_size)

    def render(_: str, data: msgspec.Raw) -> bytes:
        return bytes(data) + b"\n"

    def heartbeat() -> bytes:
        last = core.ledgers[account_id].last_transaction_id
        beat = wire.Transaction(type="HEARTBEAT", last_transaction_id=last, time=core.now())
        return msgspec.json.encode(beat) + b"\n"

    return _lines(core, subscriber, render, heartbeat)


def pricing_stream(core: OandaCore, account_id: str, instruments: list[str]) -> AsyncIterator[bytes]:
    """The lines of ``GET .../pricing/stream``: a snapshot of every instrument, then its changes."""
    subscriber = StreamSubscriber(account_id, {f"quotes:{i}" for i in instruments}, core.oanda.stream_queue_size)

    def render(channel: str, data: msgspec.Raw) -> bytes:
        quote = msgspec.json.decode(data, type=QuoteBody)
        price = msgspec.structs.replace(core.price_of(channel.removeprefix("quotes:")), time=quote.ts)
        return msgspec.json.encode(price) + b"\n"

    def heartbeat() -> bytes:
        return msgspec.json.encode(wire.ClientPrice(type="HEARTBEAT", time=core.now())) + b"\n"

    async def lines() -> AsyncIterator[bytes]:
        for instrument in instruments:
            yield msgspec.json.encode(core.price_of(instrument)) + b"\n"
        async for line in _lines(core, subscriber, render, heartbeat):
            yield line

    return lines()
