"""The ``/v1/stream`` wire protocol: every message either side sends, as msgspec structs.

This module is the contract between the server (:mod:`brokerlink.stream.public`), the AsyncAPI
document (generated from these structs) and the Python client (:mod:`brokerlink.client`, which keeps
a copy of its own so that it imports nothing from the server). Messages are JSON text frames, each
one object tagged by ``op``.

**Channels.** ``quotes:{symbol}``, ``depth:{symbol}``, ``trades:{symbol}`` (market data, canonical
symbols such as ``BTC/USD``), ``account:{account id}`` (orders, fills, positions, balances),
``copy:{subscription id}`` (copies, skips, guard trips) and ``alerts``.

**Sequence numbers.** Every :class:`Event` carries ``seq``, counted per channel from 1 within one
``epoch`` (a server process's stream hub; :class:`Welcome` names it). Account, copy and alert
channels never skip a number; market-data channels may, for a consumer that fell behind and was
conflated to the latest value per channel.

**Resume.** A client that reconnects sends :class:`Subscribe` with ``after`` (the last ``seq`` it
processed) and ``epoch``. If the epoch is the server's and the channel's replay buffer still holds
every event after ``after``, the server sends them (``Subscribed.resumed`` true) and then live
events; otherwise it sends a :class:`Snapshot` of the channel's state as of a ``seq`` and live events
after it (``resumed`` false). A fresh subscription gets a snapshot where the channel has one.

**Heartbeats.** The server sends :class:`Heartbeat` every ``Welcome.heartbeat_s`` seconds; a client
sends :class:`Ping` (answered by :class:`Pong`) or any message at least that often, and a connection
silent for three intervals is closed (1001 from the server's side is going away; the codes below).

**Close codes.** 1008 policy violation (not authenticated, cross-origin, token or consent revoked or
expired, messages too fast, too many connections); 1013 slow consumer (its buffer of account, copy
or alert events overflowed: reconnect and resume from your sequence numbers); 1001 server going away
or heartbeat timeout.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Protocol

import msgspec

PROTOCOL_VERSION: Final = 1

MARKET_KINDS: Final = ("quotes", "depth", "trades")
"""Channel prefixes of market data: conflated for slow consumers, never account-specific."""
RELIABLE_KINDS: Final = ("account", "copy", "alerts")
"""Channel prefixes whose events are never dropped (the connection closes instead)."""

CLOSE_POLICY: Final = 1008
CLOSE_SLOW_CONSUMER: Final = 1013
CLOSE_GOING_AWAY: Final = 1001

# --- client to server -----------------------------------------------------------------------------


class Subscribe(msgspec.Struct, tag_field="op", tag="subscribe", forbid_unknown_fields=True, kw_only=True):
    """Follow a channel; ``after`` and ``epoch`` resume it (module docstring)."""

    channel: str
    after: int | None = None
    epoch: str | None = None


class Unsubscribe(msgspec.Struct, tag_field="op", tag="unsubscribe", forbid_unknown_fields=True, kw_only=True):
    """Stop following a channel."""

    channel: str


class Ping(msgspec.Struct, tag_field="op", tag="ping", forbid_unknown_fields=True, kw_only=True):
    """The client's heartbeat; answered by :class:`Pong` with the same ``id``."""

    id: str | None = None


ClientMessage = Subscribe | Unsubscribe | Ping
"""What a client may send (decode with ``msgspec.json.decode(text, type=ClientMessage)``)."""

# --- server to client -----------------------------------------------------------------------------


class Welcome(msgspec.Struct, tag_field="op", tag="welcome", kw_only=True):
    """The first message on every connection."""

    connection_id: str
    epoch: str
    heartbeat_s: int
    replay: int
    """How many events per channel the replay buffer keeps."""
    version: int = PROTOCOL_VERSION


class Subscribed(msgspec.Struct, tag_field="op", tag="subscribed", kw_only=True):
    """A subscription took effect; events that follow have ``seq`` greater than this one."""

    channel: str
    seq: int
    resumed: bool = False


class Unsubscribed(msgspec.Struct, tag_field="op", tag="unsubscribed", kw_only=True):
    channel: str


class Event(msgspec.Struct, tag_field="op", tag="event", kw_only=True):
    """One event of a channel. ``event`` has a ``type`` (``order_filled``, ``quote``, ``copied``...)."""

    channel: str
    seq: int
    event: dict[str, Any]


class Snapshot(msgspec.Struct, tag_field="op", tag="snapshot", kw_only=True):
    """The channel's state as of ``seq`` (a quote, a book, recent trades, an account's open orders,
    positions and balances, a subscription's state and recent copy events, open alerts)."""

    channel: str
    seq: int
    data: dict[str, Any]


class Heartbeat(msgspec.Struct, tag_field="op", tag="heartbeat", kw_only=True):
    time: datetime


class Pong(msgspec.Struct, tag_field="op", tag="pong", kw_only=True):
    id: str | None = None


class Error(msgspec.Struct, tag_field="op", tag="error", kw_only=True):
    """A refused message; ``code`` is stable (``not_found``, ``insufficient_scope``, ``invalid_message``,
    ``too_many_subscriptions``...). An object the principal may not see is ``not_found``, like a missing one."""

    status: int
    code: str
    detail: str
    channel: str | None = None


ServerMessage = Welcome | Subscribed | Unsubscribed | Event | Snapshot | Heartbeat | Pong | Error
"""What the server sends."""

# --- the market-data seam -------------------------------------------------------------------------


class MarketSink(Protocol):
    """Where a market-data source delivers updates (the process's stream hub)."""

    def publish_market(self, channel: str, event: dict[str, Any]) -> None:
        """One update of a market channel (``quotes:BTC/USD``...); the hub numbers and conflates it."""


class MarketSource(Protocol):
    """Feeds the market channels of one process. The hub calls :meth:`want` when the first socket of
    this process subscribes to a channel and :meth:`unwant` when the last one leaves."""

    async def want(self, channel: str) -> None:
        """Start feeding ``channel`` to the sink; raises ``brokerlink.kit.errors.NotFound`` for an
        unknown symbol or kind. Idempotent."""

    def unwant(self, channel: str) -> None:
        """Stop feeding ``channel`` (it may keep the venue subscription for a while)."""

    def snapshot(self, channel: str) -> dict[str, Any] | None:
        """The channel's current state (latest quote, top of book, recent trades), or None if none yet."""
