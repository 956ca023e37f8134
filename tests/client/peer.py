"""A scripted ``/v1/stream`` peer: a real WebSocket server on loopback that plays protocol messages.

Each test gives a script per connection (``scripts[0]`` for the first connection, ``[1]`` for the
reconnection...): a coroutine that receives a :class:`Conn` to send server messages with and read
the client's. It unit-tests the client's resume state machine without the real hub (the end-to-end
test against the app is tests/client/test_stream_e2e.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from brokerlink.stream import protocol

WAIT_S = 10.0
"""Bound of every wait on the client (never reached unless something is broken)."""


@dataclass
class Conn:
    """One accepted connection, as its script sees it."""

    ws: ServerConnection
    headers: Headers

    async def send(self, message: msgspec.Struct) -> None:
        await self.ws.send(msgspec.json.encode(message).decode())

    async def welcome(self, epoch: str = "E1", heartbeat_s: int = 30) -> None:
        await self.send(protocol.Welcome(connection_id="c", epoch=epoch, heartbeat_s=heartbeat_s, replay=100))

    async def receive(self) -> protocol.Subscribe | protocol.Unsubscribe | protocol.Ping:
        """The client's next message (bounded wait)."""
        text = await asyncio.wait_for(self.ws.recv(), WAIT_S)
        message: protocol.Subscribe | protocol.Unsubscribe | protocol.Ping = msgspec.json.decode(
            text, type=protocol.ClientMessage
        )
        return message

    async def subscribe_request(self) -> protocol.Subscribe:
        """The client's next message, which must be a subscribe (pings in between are answered)."""
        while True:
            message = await self.receive()
            if isinstance(message, protocol.Ping):
                await self.send(protocol.Pong(id=message.id))
                continue
            assert isinstance(message, protocol.Subscribe), message
            return message

    async def events(self, channel: str, *seqs: int) -> None:
        for seq in seqs:
            await self.send(protocol.Event(channel=channel, seq=seq, event={"type": "order_updated", "n": seq}))

    async def heartbeat(self) -> None:
        await self.send(protocol.Heartbeat(time=datetime.now(UTC)))

    async def drop(self) -> None:
        """Cut the connection without a close frame (a network failure)."""
        self.ws.transport.abort()

    async def hold(self) -> None:
        """Keep the connection open until the client closes it."""
        with contextlib.suppress(Exception):
            await self.ws.wait_closed()


Script = Callable[[Conn], Awaitable[None]]


@dataclass
class Peer:
    """The server: its URL, the handshake headers it saw, and how many connections it accepted."""

    url: str
    handshakes: list[Headers] = field(default_factory=list)
    connections: int = 0
    failures: list[BaseException] = field(default_factory=list)


@contextlib.asynccontextmanager
async def scripted_peer(
    scripts: list[Script], *, refuse: Callable[[Request, int], Response | None] | None = None
) -> AsyncIterator[Peer]:
    """A peer on a free loopback port running ``scripts`` in order (one per connection).

    ``refuse(request, handshake_index)`` may answer a handshake with an HTTP response instead.
    """
    peer = Peer(url="")

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        index = len(peer.handshakes)
        peer.handshakes.append(request.headers)
        return refuse(request, index) if refuse is not None else None

    async def handler(ws: ServerConnection) -> None:
        index = peer.connections
        peer.connections += 1
        if index >= len(scripts):
            await ws.close(code=1011, reason="no script for this connection")
            return
        try:
            await scripts[index](Conn(ws=ws, headers=ws.request.headers if ws.request else Headers()))
        except Exception as exc:  # surfaced by the test through peer.failures
            peer.failures.append(exc)
            raise

    async with serve(handler, "127.0.0.1", 0, process_request=process_request, ping_interval=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        peer.url = f"ws://127.0.0.1:{port}/v1/stream"
        yield peer


def json_response(status: int, body: dict[str, Any], **headers: str) -> Response:
    """An HTTP answer to a handshake (what the app sends for a refused upgrade)."""
    content = msgspec.json.encode(body)
    all_headers = Headers({"Content-Type": "application/problem+json", "Content-Length": str(len(content))})
    for name, value in headers.items():
        all_headers[name.replace("_", "-")] = value
    return Response(status, "Refused", all_headers, content)
