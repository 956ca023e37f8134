"""What the stream hub reads from the database: copy events, and whose accounts and subscriptions are whose.

The copy engine stores copy events in ``copy_events`` (it does not publish them on the bus). One
:class:`CopyEventPoller` per process reads new rows by id every ``stream_copy_poll_s`` and publishes
each to ``copy:{subscription id}`` (and the alert kinds to the follower's ``alerts``), the way the
webhook service follows them. Ids are ULIDs, so a row committed late may carry an id below one
already read: the poller re-reads the last ``settle_s`` of ids every few polls and publishes only
the ids it has not published yet.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.copy import CopyEventKind
from brokerlink.kit.clock import Clock
from brokerlink.logs import get_logger
from brokerlink.store.db import Database
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.subscriptions import SubscriptionRepository
from brokerlink.store.repositories.webhooks import WebhookSourceRepository
from brokerlink.stream.access import copy_payload
from brokerlink.stream.connections import ALERT_COPY_KINDS, StreamHub

_log = get_logger("brokerlink.stream.feeds")

_KINDS = tuple(kind.value for kind in CopyEventKind)
_BATCH = 500
_MAX_PAGES = 20
_RESCAN_EVERY = 5
_CACHE = 10_000


class CopyEventPoller:
    """Follows ``copy_events`` by id cursor and publishes new rows to the hub (module docstring)."""

    def __init__(
        self, database: Database, hub: StreamHub, clock: Clock, *, every_s: float, settle_s: float = 5.0
    ) -> None:
        self.database = database
        self.hub = hub
        self.clock = clock
        self.every_s = every_s
        self.settle = timedelta(seconds=settle_s)
        self.high = ""
        """The highest id published."""
        self.settled = ""
        """Every id up to this one was published (or is older than any row still to commit)."""
        self._recent: dict[str, datetime] = {}
        """Ids above ``settled`` already published -> their ``created_at``."""
        self._polls = 0
        self._subscriptions: dict[str, tuple[str, str]] = {}
        self._owners: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Place the cursor at the newest row (history is the snapshots' business) and start polling."""
        async with self.database.session() as db:
            last = await WebhookSourceRepository(db).last_copy_event_id()
        self.high = self.settled = last or "cpe_"
        self.hub.owners = self.account_owner
        self._task = asyncio.create_task(self._loop(), name="public-stream-copy-events")

    async def stop(self) -> None:
        """Stop polling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            try:
                await self.poll()
            except Exception:  # noqa: BLE001 - the next poll tries again; logged with its cause
                _log.exception("public_stream_copy_poll_failed")

    async def poll(self) -> int:
        """Publish the copy events stored since the last poll; returns how many."""
        self._polls += 1
        published = 0
        async with self.database.session() as db:
            source = WebhookSourceRepository(db)
            rescan = self._polls % _RESCAN_EVERY == 0 and self.settled < self.high  # late commits below `high`
            after = self.settled if rescan else self.high
            for _ in range(_MAX_PAGES):
                events = await source.copy_events_after(after, _KINDS, limit=_BATCH)
                for event in events:
                    if event.id in self._recent or event.id <= self.settled:
                        continue
                    self._recent[event.id] = event.created_at
                    self.high = max(self.high, event.id)
                    payload = copy_payload(event)
                    published += 1
                    self.hub.publish_copy(event.subscription_id, payload)
                    if event.kind in ALERT_COPY_KINDS and self.hub.wants_alerts:
                        owner = await self._subscription(db, event.subscription_id)
                        if owner is not None:
                            self.hub.publish_alert(owner[0], owner[1], "copy:read", payload)
                if len(events) < _BATCH:
                    break
                after = events[-1].id
        self._settle()
        return published

    def _settle(self) -> None:
        cutoff = self.clock.now() - self.settle
        for event_id in sorted(self._recent):
            if self._recent[event_id] > cutoff:
                break
            self.settled = event_id
            del self._recent[event_id]

    async def _subscription(self, db: AsyncSession, subscription_id: str) -> tuple[str, str] | None:
        known = self._subscriptions.get(subscription_id)
        if known is None:
            subscription = await SubscriptionRepository(db).get_by_id(subscription_id)
            if subscription is None:
                return None
            if len(self._subscriptions) >= _CACHE:
                self._subscriptions.clear()
            known = self._subscriptions[subscription_id] = (subscription.follower_user_id, subscription.account_id)
        return known

    async def account_owner(self, account_id: str) -> str | None:
        """The user whose account this is (cached: accounts never change hands)."""
        owner = self._owners.get(account_id)
        if owner is None:
            async with self.database.session() as db:
                account = await AccountRepository(db).get_by_id(account_id)
            if account is None:
                return None
            if len(self._owners) >= _CACHE:
                self._owners.clear()
            owner = self._owners[account_id] = account.user_id
        return owner
