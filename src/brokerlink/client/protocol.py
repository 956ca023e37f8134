"""The ``/v1/stream`` wire protocol, the client's copy (the client imports nothing from the server).

It matches :mod:`brokerlink.stream.protocol` field for field (tests/client/test_protocol_copy.py fails
when they drift). JSON text frames, each one object tagged by ``op``; see that module, the AsyncAPI
document and docs/client.md for the rules: per-channel ``seq`` within an ``epoch``, resume with
``after`` and ``epoch``, snapshots when the server cannot replay, heartbeats both ways.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

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
