"""Copy links: which follower position was copied from which provider position.
Returns :class:`~brokerlink.domain.copy.CopyLink` objects.

A subscription has at most one open link per provider symbol (a partial unique index: ``add``
raises ``IntegrityError`` for a second one); closed links stay as history. Quantities are never
negative; that is checked here, because on SQLite the column is text and SQL would compare strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.copy import CopyLink, LinkStatus
from brokerlink.store.mapping import copy_link_from_row, struct_values
from brokerlink.store.models import CopyLinkRow, SubscriptionRow
from brokerlink.store.repositories._common import FRESH, Page, fetch_page, in_period, insert_rows, rowcount

_OPEN = LinkStatus.OPEN.value


class CopyLinkRepository:
    """Queries on ``copy_links``. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, link: CopyLink) -> None:
        """Insert a link (its id from ``new_id("lnk")``). A second open link for the same subscription
        and provider symbol raises ``IntegrityError``, a negative quantity ``ValueError``.
        """
        await self.add_many([link])

    async def add_many(self, links: Sequence[CopyLink]) -> None:
        """Insert links in one statement (a fan-out opening a position for many followers)."""
        for link in links:
            _check_qty(link.qty)
        if links:
            await insert_rows(self.session, CopyLinkRow, [struct_values(link) for link in links])

    async def get_by_id(self, link_id: str) -> CopyLink | None:
        """The link with this id."""
        stmt = select(CopyLinkRow).where(CopyLinkRow.id == link_id)
        row = (await self.session.execute(stmt, execution_options=FRESH)).scalar_one_or_none()
        return None if row is None else copy_link_from_row(row)

    async def get_open(self, subscription_id: str, provider_symbol: str) -> CopyLink | None:
        """The subscription's open link for a provider symbol, if any."""
        stmt = select(CopyLinkRow).where(
            CopyLinkRow.subscription_id == subscription_id,
            CopyLinkRow.provider_symbol == provider_symbol,
            CopyLinkRow.status == _OPEN,
        )
        row = (await self.session.execute(stmt, execution_options=FRESH)).scalar_one_or_none()
        return None if row is None else copy_link_from_row(row)

    async def list_open_for_subscription(self, subscription_id: str) -> list[CopyLink]:
        """A subscription's open links, oldest first (what reconciliation expects the follower to hold)."""
        stmt = (
            select(CopyLinkRow)
            .where(CopyLinkRow.subscription_id == subscription_id, CopyLinkRow.status == _OPEN)
            .order_by(CopyLinkRow.id)
        )
        return [copy_link_from_row(r) for r in (await self.session.execute(stmt, execution_options=FRESH)).scalars()]

    async def list_open_for_strategy(self, strategy_id: str, provider_symbol: str) -> list[CopyLink]:
        """Every open link of every subscription to a strategy for one provider symbol, in one query:
        what a provider fill in that symbol may reduce or close across all followers.
        """
        stmt = (
            select(CopyLinkRow)
            .join(SubscriptionRow, SubscriptionRow.id == CopyLinkRow.subscription_id)
            .where(
                SubscriptionRow.strategy_id == strategy_id,
                CopyLinkRow.provider_symbol == provider_symbol,
                CopyLinkRow.status == _OPEN,
            )
            .order_by(CopyLinkRow.id)
        )
        return [copy_link_from_row(r) for r in (await self.session.execute(stmt, execution_options=FRESH)).scalars()]

    async def list_open_for_subscriptions(self, subscription_ids: Sequence[str]) -> list[CopyLink]:
        """The open links of these subscriptions, every symbol, oldest first (SL/TP mirroring's scope)."""
        if not subscription_ids:
            return []
        stmt = (
            select(CopyLinkRow)
            .where(CopyLinkRow.subscription_id.in_(list(subscription_ids)), CopyLinkRow.status == _OPEN)
            .order_by(CopyLinkRow.id)
        )
        return [copy_link_from_row(r) for r in (await self.session.execute(stmt, execution_options=FRESH)).scalars()]

    async def list_for_subscription(
        self, subscription_id: str, *, limit: int = 50, after: str | None = None, descending: bool = False
    ) -> Page[CopyLink]:
        """One page of a subscription's links, open and closed, by id (opening order)."""
        stmt = select(CopyLinkRow).where(CopyLinkRow.subscription_id == subscription_id)
        return await fetch_page(
            self.session, stmt, CopyLinkRow.id, copy_link_from_row, limit=limit, after=after, descending=descending
        )

    async def set_qty(self, link_id: str, qty: Decimal, *, now: datetime) -> bool:
        """Record what the follower now holds in an open link. False if the link is unknown or closed."""
        _check_qty(qty)
        return await self._update_open(link_id, qty=qty, updated_at=now)

    async def close(self, link_id: str, *, now: datetime) -> bool:
        """Close an open link. ``qty`` stays as it was: zero after a complete close, what the follower
        kept after a stop without closing the copies. False if the link is unknown or already closed.
        """
        return await self._update_open(link_id, status=LinkStatus.CLOSED.value, closed_at=now, updated_at=now)

    async def set_qty_if(self, link_id: str, expected: Decimal, qty: Decimal, *, now: datetime) -> bool:
        """:meth:`set_qty`, only while the link still holds ``expected`` (exactly as read): a writer that
        decided from an earlier read (reconciliation) cannot undo a change made since. False otherwise.
        """
        _check_qty(qty)
        return await self._update_open(link_id, expected=expected, qty=qty, updated_at=now)

    async def close_if(self, link_id: str, expected: Decimal, *, now: datetime) -> bool:
        """Close an open link that still holds ``expected`` (exactly as read), setting its quantity to zero.
        False if the link is unknown, closed, or changed since.
        """
        return await self._update_open(
            link_id, expected=expected, qty=Decimal(0), status=LinkStatus.CLOSED.value, closed_at=now, updated_at=now
        )

    async def move_many(self, moves: Sequence[tuple[str, Decimal, bool]], *, now: datetime) -> None:
        """Set the quantity of many open links at once, closing those marked so: ``(link_id, qty, close)``.

        A fan-out moves one link per follower; two statements (executemany) instead of one each. A link
        closed since it was read is left alone, as :meth:`set_qty` and :meth:`close` would.
        """
        for _, qty, _ in moves:
            _check_qty(qty)
        table = cast("Table", CopyLinkRow.__table__)
        kept = [{"b_id": link_id, "b_qty": qty} for link_id, qty, close in moves if not close]
        closed = [{"b_id": link_id, "b_qty": qty} for link_id, qty, close in moves if close]
        connection = await self.session.connection()
        where = (table.c.id == bindparam("b_id"), table.c.status == _OPEN)
        if kept:
            stmt = update(table).where(*where).values(qty=bindparam("b_qty"), updated_at=now)
            await connection.execute(stmt, kept)
        if closed:
            stmt = (
                update(table)
                .where(*where)
                .values(qty=bindparam("b_qty"), status=LinkStatus.CLOSED.value, closed_at=now, updated_at=now)
            )
            await connection.execute(stmt, closed)

    async def _update_open(self, link_id: str, *, expected: Decimal | None = None, **values: object) -> bool:
        # Equality on the quantity is safe on SQLite's text column: the value read back is bound in the
        # same canonical form it was stored in.
        guard = () if expected is None else (CopyLinkRow.qty == expected,)
        stmt = (
            update(CopyLinkRow)
            .where(CopyLinkRow.id == link_id, CopyLinkRow.status == _OPEN, *guard)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return rowcount(await self.session.execute(stmt)) > 0

    # --- the list filtered by symbol and time --------------------------------------------------------

    async def page_filtered(
        self,
        subscription_id: str,
        *,
        symbol: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        after: str | None = None,
        descending: bool = True,
    ) -> Page[CopyLink]:
        """One page of a subscription's links by id, only those whose provider or follower symbol is
        ``symbol`` and opened in [since, until)."""
        stmt = select(CopyLinkRow).where(CopyLinkRow.subscription_id == subscription_id)
        if symbol is not None:
            stmt = stmt.where((CopyLinkRow.provider_symbol == symbol) | (CopyLinkRow.follower_symbol == symbol))
        stmt = in_period(stmt, CopyLinkRow.opened_at, since, until)
        return await fetch_page(
            self.session, stmt, CopyLinkRow.id, copy_link_from_row, limit=limit, after=after, descending=descending
        )


def _check_qty(qty: Decimal) -> None:
    if qty < 0:
        raise ValueError(f"a link holds a quantity of zero or more, not {qty}")
