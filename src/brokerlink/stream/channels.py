"""Channels of ``/v1/stream``: their names, their views, and the numbered log each one keeps.

A public channel name (``account:acc_1``) may have several *views*, one per kind of reader that
sees a different subset of its events: an app whose consent grants ``balances:read`` only does not
see orders, so it follows ``account:acc_1`` through its own view, with its own sequence numbers and
replay buffer, and its numbers never skip (ADR 0030). Account views are keyed by the scopes that
filter them, alert views by who reads them; copy and market channels have one view each.

A :class:`ChannelLog` numbers a view's events from 1 within the hub's epoch and keeps the last
``replay`` of them. ``start`` is the sequence number after which the log holds every event: a
resume from ``after`` is possible when ``start <= after <= seq``.
"""

from __future__ import annotations

from collections import deque
from typing import Final

import msgspec

from brokerlink.stream.protocol import MARKET_KINDS

KINDS: Final = (*MARKET_KINDS, "account", "copy", "alerts")
_MAX_ARG = 64


class ChannelName(msgspec.Struct, frozen=True):
    """A parsed public channel name: ``kind`` and its argument (``""`` for ``alerts``)."""

    kind: str
    arg: str

    @property
    def market(self) -> bool:
        return self.kind in MARKET_KINDS


def parse_channel(name: str) -> ChannelName | None:
    """The channel's kind and argument, or None when no channel has that name."""
    if name == "alerts":
        return ChannelName("alerts", "")
    kind, sep, arg = name.partition(":")
    if not sep or kind not in KINDS or kind == "alerts" or not arg or len(arg) > _MAX_ARG:
        return None
    if not arg.isprintable() or any(c.isspace() for c in arg):
        return None
    return ChannelName(kind, arg)


class ChannelLog:
    """One view of a channel: its followers, its sequence number and its replay buffer."""

    __slots__ = ("channel", "followers", "head", "idle_since", "key", "replay", "seq", "start")

    def __init__(self, key: str, channel: str, *, seq: int, replay: int) -> None:
        self.key = key
        self.channel = channel
        self.seq = seq
        self.start = seq
        self.replay: deque[tuple[int, str]] = deque(maxlen=replay)
        self.followers: set[str] = set()
        """Ids of the connections that receive this view."""
        self.idle_since: float | None = None
        """Monotonic seconds since the last follower left (None while followed)."""
        self.head = '{"op":"event","channel":' + msgspec.json.encode(channel).decode() + ',"seq":'

    def append(self, payload: str) -> str:
        """Number one event (its JSON object as text) and keep it; returns the message to send."""
        self.seq += 1
        text = f'{self.head}{self.seq},"event":{payload}}}'
        if self.replay.maxlen:
            if len(self.replay) == self.replay.maxlen:
                self.start = self.replay[0][0]
            self.replay.append((self.seq, text))
        else:
            self.start = self.seq
        return text

    def can_resume(self, after: int) -> bool:
        """Whether every event after ``after`` is still here."""
        return self.start <= after <= self.seq

    def since(self, after: int) -> list[str]:
        """The kept messages with a sequence number above ``after`` (call :meth:`can_resume` first)."""
        if after >= self.seq:
            return []
        first = self.seq - len(self.replay) + 1  # seq of replay[0]
        return [text for _, text in list(self.replay)[max(0, after + 1 - first) :]]
