"""Copy trading subscriptions. Returns domain :class:`~brokerlink.domain.copy.Subscription` objects.

The database refuses (``IntegrityError``) a subscription on an account that is not the follower's,
and a second live (not stopped) subscription of one account to one strategy. Copying a strategy's
own account into itself is refused here (the strategy's account never changes, so a read is safe).

Every change bumps ``version`` in a compare-and-set UPDATE (``WHERE version = <the version read>``),
so two concurrent changes cannot both succeed: the second raises :class:`StaleVersion`, as does a
caller's ``expected_version`` (an ``If-Match``) that is no longer current. A stopped subscription
never changes again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.copy import LIVE_SUBSCRIPTION_STATUSES, Subscription, SubscriptionStatus
from brokerlink.kit.errors import Conflict, InvalidInput
from brokerlink.store.mapping import struct_values, subscription_from_row
from brokerlink.store.models import StrategyRow, SubscriptionRow
from brokerlink.store.repositories._common import FRESH, Page, fetch_page, rowcount


class StaleVersion(Conflict):
    """The subscription changed since the caller read it (or since ``expected_version``)."""

    code = "stale_version"
    title = "Subscription changed"


class SubscriptionRepository:
    """Queries on ``subscriptions``. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, subscription: Subscription) -> None:
        """Insert a subscription (its id from ``new_id("sub")``).

        Raises :class:`~brokerlink.kit.errors.InvalidInput` when the account is the one backing the
        strategy (a copy into itself: every copied fill would be a new signal). The database refuses
        (``IntegrityError``) an unknown strategy, an account that is not the follower's, and a
        second live subscription of the account to the strategy.
        """
        stmt = select(StrategyRow.account_id).where(StrategyRow.id == subscription.strategy_id)
        if (await self.session.execute(stmt)).scalar_one_or_none() == subscription.account_id:
            raise InvalidInput("an account cannot follow the strategy it backs")
        self.session.add(SubscriptionRow(**struct_values(subscription)))
        await self.session.flush()

    async def get_by_id(self, subscription_id: str) -> Subscription | None:
        """The subscription with this id, whoever owns it. For workers; API code uses :meth:`get_for_user`."""
        row = await self._row(subscription_id)
        return None if row is None else subscription_from_row(row)

    async def get_for_user(self, user_id: str, subscription_id: str) -> Subscription | None:
        """The subscription if ``user_id`` is its follower; None if it does not exist or is someone else's."""
        stmt = select(SubscriptionRow).where(
            SubscriptionRow.id == subscription_id, SubscriptionRow.follower_user_id == user_id
        )
        row = (await self.session.execute(stmt, execution_options=FRESH)).scalar_one_or_none()
        return None if row is None else subscription_from_row(row)

    async def list_for_user(
        self,
        user_id: str,
        *,
        strategy_id: str | None = None,
        limit: int = 50,
        after: str | None = None,
        descending: bool = False,
    ) -> Page[Subscription]:
        """One page of a follower's subscriptions (or of those to one strategy), by id. Owner-scoped."""
        stmt = select(SubscriptionRow).where(SubscriptionRow.follower_user_id == user_id)
        if strategy_id is not None:
            stmt = stmt.where(SubscriptionRow.strategy_id == strategy_id)
        return await fetch_page(
            self.session,
            stmt,
            SubscriptionRow.id,
            subscription_from_row,
            limit=limit,
            after=after,
            descending=descending,
        )

    async def list_for_strategy(
        self, strategy_id: str, statuses: Iterable[SubscriptionStatus] = LIVE_SUBSCRIPTION_STATUSES
    ) -> list[Subscription]:
        """A strategy's subscriptions in these statuses (default: every one not stopped), oldest first.

        The engine's fan-out list: each carries its follower's ``account_id``, ``settings`` and ``version``.
        """
        stmt = (
            select(SubscriptionRow)
            .where(SubscriptionRow.strategy_id == strategy_id, SubscriptionRow.status.in_(_values(statuses)))
            .order_by(SubscriptionRow.id)
        )
        rows = (await self.session.execute(stmt, execution_options=FRESH)).scalars()
        return [subscription_from_row(row) for row in rows]

    async def list_for_account(
        self, account_id: str, statuses: Iterable[SubscriptionStatus] = LIVE_SUBSCRIPTION_STATUSES
    ) -> list[Subscription]:
        """The subscriptions copying into a follower account (default: every one not stopped), oldest first."""
        stmt = (
            select(SubscriptionRow)
            .where(SubscriptionRow.account_id == account_id, SubscriptionRow.status.in_(_values(statuses)))
            .order_by(SubscriptionRow.id)
        )
        rows = (await self.session.execute(stmt, execution_options=FRESH)).scalars()
        return [subscription_from_row(row) for row in rows]

    async def update_settings(
        self, subscription_id: str, settings: str, *, now: datetime, expected_version: int | None = None
    ) -> Subscription | None:
        """Replace the settings (JSON text). None for an unknown id; the same settings change nothing.

        Raises :class:`StaleVersion` (see the module) and :class:`~brokerlink.kit.errors.Conflict` once stopped.
        """
        return await self._change(subscription_id, now, expected_version, settings=settings)

    async def set_status(
        self,
        subscription_id: str,
        status: SubscriptionStatus,
        *,
        now: datetime,
        expected_version: int | None = None,
    ) -> Subscription | None:
        """Pause, resume, switch to close-only, or stop (which sets ``stopped_at``). None for an unknown id.

        Setting the current status changes nothing. Raises :class:`StaleVersion` (see the module), and
        :class:`~brokerlink.kit.errors.Conflict` for a change the transition table refuses (a stopped
        subscription stays stopped).
        """
        status = SubscriptionStatus(status)
        extra: dict[str, Any] = {"stopped_at": now} if status is SubscriptionStatus.STOPPED else {}
        return await self._change(subscription_id, now, expected_version, status=status, **extra)

    async def set_start_equity(
        self, subscription_id: str, start_equity: Decimal | None, *, now: datetime
    ) -> Subscription | None:
        """Record the copy stop-loss baseline (None: forget it). None for an unknown id; bumps ``version``."""
        return await self._change(subscription_id, now, None, start_equity=start_equity)

    async def _row(self, subscription_id: str) -> SubscriptionRow | None:
        stmt = select(SubscriptionRow).where(SubscriptionRow.id == subscription_id)
        return (await self.session.execute(stmt, execution_options=FRESH)).scalar_one_or_none()

    async def _change(
        self, subscription_id: str, now: datetime, expected_version: int | None, **changes: Any
    ) -> Subscription | None:
        row = await self._row(subscription_id)
        if row is None:
            return None
        current = subscription_from_row(row)
        if expected_version is not None and expected_version != current.version:
            raise StaleVersion(
                f"subscription {subscription_id} is at version {current.version}, not {expected_version}"
            )
        if all(_same(getattr(current, name), value) for name, value in changes.items() if name != "stopped_at"):
            return current
        target = changes.get("status", current.status)
        if current.status is SubscriptionStatus.STOPPED or (
            target is not current.status and not current.status.can_become(target)
        ):
            raise Conflict(f"subscription {subscription_id} is {current.status}: it cannot become {target}")
        values = {name: v.value if isinstance(v, SubscriptionStatus) else v for name, v in changes.items()}
        stmt = (
            update(SubscriptionRow)
            .where(SubscriptionRow.id == subscription_id, SubscriptionRow.version == current.version)
            .values(**values, version=current.version + 1, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if rowcount(await self.session.execute(stmt)) == 0:
            raise StaleVersion(f"subscription {subscription_id} changed concurrently")
        return await self.get_by_id(subscription_id)


def _values(statuses: Iterable[SubscriptionStatus]) -> list[str]:
    return [SubscriptionStatus(status).value for status in statuses]


def _same(stored: object, new: object) -> bool:
    # Decimals compare digit for digit: 1.0 -> 1.00 is a change, because the store keeps the scale.
    if isinstance(stored, Decimal) and isinstance(new, Decimal):
        return stored.as_tuple() == new.as_tuple()
    return stored == new
