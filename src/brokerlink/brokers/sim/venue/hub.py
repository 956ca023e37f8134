"""Fan-out of venue events to WebSocket subscribers, by channel (and account for ``trade_updates``)."""

from __future__ import annotations

from typing import Protocol

import msgspec

TRADE_UPDATES = "trade_updates"


class Subscriber(Protocol):
    """A connection as the hub sees it: its account, its channels, and a non-blocking delivery."""

    account_id: str
    channels: set[str]

    def deliver(self, channel: str, data: msgspec.Raw) -> None:
        """Queue one message; must never block (a slow subscriber closes itself instead)."""
        ...

    def close(self, code: int, reason: str) -> None:
        """Ask the connection to close with this code and reason."""
        ...


class Hub:
    """Registry of live subscribers; encodes each message once and hands it to every interested one."""

    def __init__(self) -> None:
        self._subscribers: dict[int, Subscriber] = {}

    def add(self, subscriber: Subscriber) -> None:
        """Register a connection."""
        self._subscribers[id(subscriber)] = subscriber

    def remove(self, subscriber: Subscriber) -> None:
        """Forget a connection (idempotent)."""
        self._subscribers.pop(id(subscriber), None)

    def __len__(self) -> int:
        return len(self._subscribers)

    def publish(self, channel: str, data: msgspec.Struct, *, account_id: str | None = None) -> None:
        """Deliver ``data`` on ``channel`` to its subscribers (only ``account_id``'s when given)."""
        targets = [
            s
            for s in self._subscribers.values()
            if channel in s.channels and (account_id is None or s.account_id == account_id)
        ]
        if not targets:
            return
        raw = msgspec.Raw(msgspec.json.encode(data))
        for subscriber in targets:
            subscriber.deliver(channel, raw)

    def close_all(self, code: int, reason: str) -> int:
        """Close every connection; returns how many there were."""
        subscribers = list(self._subscribers.values())
        for subscriber in subscribers:
            subscriber.close(code, reason)
        return len(subscribers)
