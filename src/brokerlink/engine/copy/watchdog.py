"""The stall watchdog: the copy engine's view of a provider whose broker connection stays down.

A provider's adapter reconnects by itself (and the sim adapter reconnects when its stream goes
silent while pings continue), and recovery reads back whatever was missed. What no adapter can
decide is what the *followers* want while their provider cannot be seen: a provider that trades
during the outage is copied late or not at all (``catch_up``), and a provider that never comes back
leaves the copies unmanaged. The watchdog, run every few seconds, looks at each active strategy's
provider account:

- not live (:meth:`BrokerLinks.is_live` false: disconnected, connecting, degraded or revoked)
  since when? The first check that sees it down, or the stored connection's last status change if
  that is earlier (after a restart, what the store remembers);
- after ``warn_after_s``: one ``stalled`` copy event per live subscription (once per stall, not at
  every check) and a ``copy_provider_stalled`` warning in the log;
- after ``act_after_s``: each subscription's ``on_provider_stall``: ``warn`` does nothing more;
  ``pause`` pauses an active subscription; ``close_all`` switches an active or paused one to
  close-only and closes every open copy at market (the closing intents are returned, committed, for
  the engine to dispatch). Each action also leaves a ``guard_tripped`` event saying why;
- when the provider is live again: a ``resumed`` event with reason ``provider_recovered`` for each
  subscription that was warned.

The watchdog never resumes a subscription it paused. After an outage the provider's book may have
moved without the follower (trades missed, or copied late only with ``catch_up``), and a follower
who chose to pause on a stall chose to look before copying again; a status does not record who set
it either, so an automatic resume could undo a pause the follower made during the outage.

The state of each stall is in memory: a restart during a stall warns once more. Run one watchdog
per deployment, in the process that runs the broker links (the one whose ``is_live`` it asks).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.copy import (
    CopyEvent,
    CopyEventKind,
    CopyIntent,
    Strategy,
    Subscription,
    SubscriptionStatus,
)
from brokerlink.domain.enums import ConnectionState
from brokerlink.engine.copy import manage
from brokerlink.engine.copy.settings import StallAction, decode_settings
from brokerlink.engine.links.service import BrokerLinks
from brokerlink.kit.clock import Clock
from brokerlink.kit.errors import BrokerlinkError, InvalidInput
from brokerlink.kit.ids import new_id
from brokerlink.logs import get_logger
from brokerlink.store.db import Database
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.connections import ConnectionRepository
from brokerlink.store.repositories.copy_events import CopyEventRepository
from brokerlink.store.repositories.strategies import StrategyRepository
from brokerlink.store.repositories.subscriptions import SubscriptionRepository

_log = get_logger("brokerlink.engine.copy")

PROVIDER_STALLED = "provider_stalled"
"""The reason on the watchdog's ``stalled`` and ``guard_tripped`` events."""
PROVIDER_RECOVERED = "provider_recovered"
"""The reason on the ``resumed`` event once the provider's connection is back."""

Dispatch = Callable[[Iterable[CopyIntent]], None]


@dataclass
class _Stall:
    """One provider outage as the watchdog follows it."""

    since: datetime
    warned: bool = False
    acted: bool = False


class StallWatchdog:
    """Warns the followers of a provider whose connection stays down, then applies their ``on_provider_stall``."""

    def __init__(
        self,
        database: Database,
        links: BrokerLinks,
        clock: Clock,
        *,
        warn_after_s: float = 30.0,
        act_after_s: float = 120.0,
        dispatch: Dispatch | None = None,
    ) -> None:
        if not 0 < warn_after_s <= act_after_s:
            raise ValueError(f"need 0 < warn_after_s <= act_after_s, got {warn_after_s} and {act_after_s}")
        self.database = database
        self.links = links
        self.clock = clock
        self.warn_after = timedelta(seconds=warn_after_s)
        self.act_after = timedelta(seconds=act_after_s)
        self.dispatch = dispatch
        """What :meth:`run` hands the closing intents to (the engine's ``dispatch``)."""
        self._stalls: dict[str, _Stall] = {}  # by strategy id

    def stalled(self) -> dict[str, datetime]:
        """The strategies whose provider is down now, and since when (as of the last check)."""
        return {strategy_id: stall.since for strategy_id, stall in self._stalls.items()}

    async def run(self, every_s: float = 5.0) -> None:
        """Check every ``every_s`` seconds until cancelled, dispatching the closing intents of each round."""
        while True:
            try:
                intents = await self.check_once()
                if intents and self.dispatch is not None:
                    self.dispatch(intents)
            except BrokerlinkError as exc:
                _log.warning("copy_watchdog_failed", error=str(exc))
            except Exception:  # noqa: BLE001 - the loop must outlive a bug in one round; it is logged
                _log.exception("copy_watchdog_crashed")
            await asyncio.sleep(every_s)

    async def check_once(self) -> list[CopyIntent]:
        """One look at every active strategy's provider. Returns the closing intents of ``close_all``
        subscriptions, already committed: the caller dispatches them (``CopyEngine.dispatch``)."""
        now = self.clock.now()
        async with self.database.session() as session:
            strategies = await StrategyRepository(session).list_active()
        intents: list[CopyIntent] = []
        for strategy in strategies:
            if self.links.is_live(strategy.account_id):
                stall = self._stalls.pop(strategy.id, None)
                if stall is not None and stall.warned:
                    await self._recovered(strategy, stall, now)
                continue
            stall = self._stalls.get(strategy.id)
            if stall is None:
                stall = self._stalls[strategy.id] = _Stall(since=await self._down_since(strategy, now))
            down = now - stall.since
            if down >= self.warn_after and not stall.warned:
                stall.warned = True
                await self._warn(strategy, down, now)
            if down >= self.act_after and not stall.acted:
                stall.acted = True
                intents += await self._act(strategy, down, now)
        active = {strategy.id for strategy in strategies}
        for strategy_id in set(self._stalls) - active:  # closed since: nothing left to watch
            del self._stalls[strategy_id]
        return intents

    async def _down_since(self, strategy: Strategy, now: datetime) -> datetime:
        """When the provider's connection went down: now, or its stored last status change if earlier."""
        async with self.database.session() as session:
            account = await AccountRepository(session).get_by_id(strategy.account_id)
            row = None if account is None else await ConnectionRepository(session).get_by_id(account.connection_id)
        if row is None or row.status == ConnectionState.CONNECTED.value:
            return now
        return min(now, row.updated_at)

    async def _warn(self, strategy: Strategy, down: timedelta, now: datetime) -> None:
        detail = (
            f"the provider's broker connection has been down for {_seconds(down)} s: "
            "its trades cannot be copied until it is back"
        )
        async with self.database.session() as session:
            subscriptions = await SubscriptionRepository(session).list_for_strategy(strategy.id)
            await CopyEventRepository(session).add_many(
                [_event(s.id, CopyEventKind.STALLED, PROVIDER_STALLED, detail, now) for s in subscriptions]
            )
            await session.commit()
        _log.warning(
            "copy_provider_stalled",
            strategy_id=strategy.id,
            account_id=strategy.account_id,
            down_s=_seconds(down),
            subscriptions=len(subscriptions),
        )

    async def _act(self, strategy: Strategy, down: timedelta, now: datetime) -> list[CopyIntent]:
        async with self.database.session() as session:
            subscriptions = await SubscriptionRepository(session).list_for_strategy(strategy.id)
        intents: list[CopyIntent] = []
        for subscription in subscriptions:
            action = _action(subscription)
            if action is StallAction.WARN:
                continue
            # One transaction per subscription: a follower who changed theirs meanwhile fails alone.
            try:
                async with self.database.session() as session:
                    intents += await _apply(session, subscription, action, down, now)
                    await session.commit()
            except BrokerlinkError as exc:
                _log.warning(
                    "copy_stall_action_failed", subscription_id=subscription.id, action=action.value, error=str(exc)
                )
                continue
            _log.warning(
                "copy_stall_action", strategy_id=strategy.id, subscription_id=subscription.id, action=action.value
            )
        return intents

    async def _recovered(self, strategy: Strategy, stall: _Stall, now: datetime) -> None:
        down = _seconds(now - stall.since)
        async with self.database.session() as session:
            subscriptions = await SubscriptionRepository(session).list_for_strategy(strategy.id)
            events = []
            for subscription in subscriptions:
                detail = f"the provider's broker connection is back after {down} s: its trades are copied again"
                if stall.acted and subscription.status is not SubscriptionStatus.ACTIVE:
                    detail += f" (this subscription stays {subscription.status.value} until you resume it)"
                events.append(_event(subscription.id, CopyEventKind.RESUMED, PROVIDER_RECOVERED, detail, now))
            await CopyEventRepository(session).add_many(events)
            await session.commit()
        _log.info("copy_provider_recovered", strategy_id=strategy.id, account_id=strategy.account_id, down_s=down)


def _action(subscription: Subscription) -> StallAction:
    try:
        return decode_settings(subscription.settings).on_provider_stall
    except InvalidInput:
        return StallAction.WARN  # settings a newer rule refuses: warning is all that is safe


async def _apply(
    session: AsyncSession, subscription: Subscription, action: StallAction, down: timedelta, now: datetime
) -> list[CopyIntent]:
    """Pause, or switch to close-only and close the copies; the event says why. Flushes, the caller commits."""
    target = SubscriptionStatus.PAUSED if action is StallAction.PAUSE else SubscriptionStatus.CLOSE_ONLY
    if subscription.status is SubscriptionStatus.ACTIVE or (
        action is StallAction.CLOSE_ALL and subscription.status is SubscriptionStatus.PAUSED
    ):
        await manage.set_status(
            session,
            user_id=subscription.follower_user_id,
            subscription_id=subscription.id,
            status=target,
            expected_version=subscription.version,
            now=now,
        )
    intents = (
        await manage.close_open_copies(session, subscription, cause="stall", now=now)
        if action is StallAction.CLOSE_ALL
        else []
    )
    done = "paused" if action is StallAction.PAUSE else f"close-only, closing {len(intents)} copies"
    detail = (
        f"the provider's broker connection has been down for {_seconds(down)} s: {done} "
        f"(on_provider_stall: {action.value}); resume the subscription to copy again"
    )
    await CopyEventRepository(session).add(
        _event(subscription.id, CopyEventKind.GUARD_TRIPPED, PROVIDER_STALLED, detail, now)
    )
    return intents


def _event(subscription_id: str, kind: CopyEventKind, reason: str, detail: str, now: datetime) -> CopyEvent:
    return CopyEvent(
        id=new_id("cpe"), subscription_id=subscription_id, kind=kind, reason=reason, detail=detail, created_at=now
    )


def _seconds(delta: timedelta) -> int:
    return int(delta.total_seconds())
