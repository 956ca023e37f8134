"""Copy events: what a follower is shown about a subscription. Returns :class:`~brokerlink.domain.copy.CopyEvent`.

Every skip and rejection is recorded with a machine-readable ``reason``; :meth:`CopyEventRepository.count_by_reason`
is the summary ("12 skipped: below_min_qty") and :meth:`~CopyEventRepository.list_for_subscription` the feed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.copy import CopyEvent, CopyEventKind
from brokerlink.store.mapping import copy_event_from_row, struct_values
from brokerlink.store.models import CopyEventRow
from brokerlink.store.repositories._common import Page, fetch_page, in_period, insert_rows


class CopyEventRepository:
    """Queries on ``copy_events``. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, event: CopyEvent) -> None:
        """Insert an event (its id from ``new_id("cpe")``)."""
        await self.add_many([event])

    async def add_many(self, events: Sequence[CopyEvent]) -> None:
        """Insert events in one statement (a fan-out that skipped or copied for many followers)."""
        if events:
            await insert_rows(self.session, CopyEventRow, [struct_values(event) for event in events])

    async def list_for_subscription(
        self, subscription_id: str, *, limit: int = 50, after: str | None = None, descending: bool = True
    ) -> Page[CopyEvent]:
        """One page of a subscription's events by id, newest first unless ``descending=False``."""
        stmt = select(CopyEventRow).where(CopyEventRow.subscription_id == subscription_id)
        return await fetch_page(
            self.session, stmt, CopyEventRow.id, copy_event_from_row, limit=limit, after=after, descending=descending
        )

    async def exists(self, subscription_id: str, *, kind: CopyEventKind, reason: str, detail: str) -> bool:
        """Whether the subscription already has this exact event: a level-triggered check (SL/TP
        mirroring runs again and again on the same state) records each skip once."""
        stmt = (
            select(CopyEventRow.id)
            .where(
                CopyEventRow.subscription_id == subscription_id,
                CopyEventRow.kind == CopyEventKind(kind).value,
                CopyEventRow.reason == reason,
                CopyEventRow.detail == detail,
            )
            .limit(1)
        )
        return (await self.session.execute(stmt)).first() is not None

    async def count_by_reason(
        self, subscription_id: str, *, kind: CopyEventKind | None = None, since: datetime | None = None
    ) -> dict[str, int]:
        """How many of the subscription's events (of one kind; since a time) carry each reason.

        Events without a reason are not counted.
        """
        stmt = (
            select(CopyEventRow.reason, func.count())
            .where(CopyEventRow.subscription_id == subscription_id, CopyEventRow.reason.is_not(None))
            .group_by(CopyEventRow.reason)
        )
        if kind is not None:
            stmt = stmt.where(CopyEventRow.kind == CopyEventKind(kind).value)
        if since is not None:
            stmt = stmt.where(CopyEventRow.created_at >= since)
        return {str(reason): int(count) for reason, count in await self.session.execute(stmt)}

    # --- the feed filtered by kind and time ----------------------------------------------------------

    async def page_filtered(
        self,
        subscription_id: str,
        *,
        kinds: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        after: str | None = None,
        descending: bool = True,
    ) -> Page[CopyEvent]:
        """One page of a subscription's events by id, only those of ``kinds`` created in [since, until)."""
        stmt = select(CopyEventRow).where(CopyEventRow.subscription_id == subscription_id)
        if kinds is not None:
            stmt = stmt.where(CopyEventRow.kind.in_(list(kinds)))
        stmt = in_period(stmt, CopyEventRow.created_at, since, until)
        return await fetch_page(
            self.session, stmt, CopyEventRow.id, copy_event_from_row, limit=limit, after=after, descending=descending
        )
