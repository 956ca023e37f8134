"""``/v1/admin/stream``: the admin channel, a WebSocket that pushes every new or changed alert as JSON.

Each message is one :class:`~brokerlink.engine.alerts.events.AlertEvent`, exactly the bytes a
webhook receives. The alert writer publishes events on the bus topic ``alerts``; every server
process runs one :class:`AdminAlertHub` that reads the topic in a consumer group of its own (so
each process sees every event, wherever the alert was raised) and fans each event out to the admin
sockets connected to it.

The session cookie authenticates the socket like any request (the session middleware covers
WebSockets). The socket is accepted and then closed with 1008 (policy violation) when the principal
is not an admin, or when the browser's ``Origin`` is not this server (cross-site WebSocket
hijacking: a page elsewhere cannot ride an admin's cookie). A socket that cannot keep up loses its
oldest queued events rather than slowing the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from brokerlink import observe
from brokerlink.bus.base import EventBus
from brokerlink.domain.enums import Role
from brokerlink.engine.alerts.events import ALERTS_TOPIC
from brokerlink.kit.errors import Unavailable
from brokerlink.kit.ids import new_ulid
from brokerlink.logs import get_logger
from brokerlink.security.principal import Principal

_log = get_logger("brokerlink.stream.admin")

STATE_KEY = "admin_stream"
"""Where the app's state keeps the process's :class:`AdminAlertHub`."""
CHANNEL = "admin"
WS_POLICY_VIOLATION = 1008
_QUEUE = 256


class AdminAlertHub:
    """Reads the ``alerts`` topic once per process and hands each event to every admin socket here."""

    def __init__(self, bus: EventBus, *, node: str | None = None, retry_s: float = 1.0) -> None:
        self.bus = bus
        # A group per process start: every process must see every event (a shared group would split
        # them). Starting at "latest": an admin who connects sees what happens from then on; the
        # history is GET /v1/admin/alerts.
        self.group = f"admin-stream-{node or new_ulid().lower()}"
        self.retry_s = retry_s
        self.ready = asyncio.Event()
        """Set once the hub's group exists: events published after it reach the sockets."""
        self._subscribers: set[asyncio.Queue[str]] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start following the topic."""
        self._task = asyncio.create_task(self._follow(), name="admin-stream-hub")

    async def stop(self) -> None:
        """Stop following (connected sockets stop receiving; they close with the server)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @contextlib.contextmanager
    def subscription(self) -> Iterator[asyncio.Queue[str]]:
        """A queue that receives every event from now on, for as long as the ``with`` lasts."""
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=_QUEUE)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    async def _follow(self) -> None:
        consumer = self.bus.consumer(ALERTS_TOPIC, self.group, "hub", start="latest")
        block_ms = 0  # the first read creates the group at once, so `ready` means something
        while True:
            try:
                messages = await consumer.read(max_count=100, block_ms=block_ms)
            except Unavailable as exc:
                _log.warning("admin_stream_bus_unavailable", error=str(exc))
                await asyncio.sleep(self.retry_s)
                continue
            except Exception:  # noqa: BLE001 - the channel must outlive a bad read; logged with its cause
                _log.exception("admin_stream_read_failed")
                await asyncio.sleep(self.retry_s)
                continue
            self.ready.set()
            block_ms = 1000
            for message in messages:
                self._fan_out(message.payload.decode())
            if messages:
                await consumer.ack(*messages)

    def _fan_out(self, text: str) -> None:
        for queue in self._subscribers:
            if queue.full():  # a slow socket loses its oldest event, not everyone's time
                queue.get_nowait()
            queue.put_nowait(text)


def _same_origin(socket: WebSocket[Any, Any, Any]) -> bool:
    origin = socket.headers.get("origin")
    if origin is None:  # not a browser: cookies are not sent across sites by anything else
        return True
    return urlsplit(origin).netloc.lower() == socket.headers.get("host", "").lower()


@websocket("/admin/stream", name="admin_stream")
async def admin_stream(socket: WebSocket[Any, Any, Any]) -> None:
    """Push every new or changed alert (one JSON event per message) to a signed-in admin."""
    principal = socket.scope.get("user")
    await socket.accept()
    if not isinstance(principal, Principal) or principal.role is not Role.ADMIN:
        await socket.close(code=WS_POLICY_VIOLATION, reason="admins only")
        return
    if not _same_origin(socket):
        await socket.close(code=WS_POLICY_VIOLATION, reason="cross-origin")
        return
    hub: AdminAlertHub = socket.app.state[STATE_KEY]
    observe.ws_connection(channel=CHANNEL, opened=True)
    try:
        with hub.subscription() as queue:
            receiving = asyncio.create_task(_until_closed(socket))
            try:
                while not receiving.done():
                    getting = asyncio.create_task(queue.get())
                    done, _ = await asyncio.wait({getting, receiving}, return_when=asyncio.FIRST_COMPLETED)
                    if getting not in done:
                        getting.cancel()
                        break
                    await socket.send_text(getting.result())
                    observe.ws_message(channel=CHANNEL, direction="out")
            finally:
                receiving.cancel()
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                    await receiving
    except WebSocketDisconnect:
        pass
    finally:
        observe.ws_connection(channel=CHANNEL, opened=False)


async def _until_closed(socket: WebSocket[Any, Any, Any]) -> None:
    """Read (and ignore) what the client sends, until it disconnects: the channel is push-only."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await socket.receive_data(mode="text")
            observe.ws_message(channel=CHANNEL, direction="in")
