"""Fills (executions). Returns domain :class:`~brokerlink.domain.models.Fill` objects.

The same fill may arrive twice - over the stream and over REST - so it is stored once per
``(account_id, trade_id)``, and :meth:`FillRepository.add_if_new` tells the caller whether this
delivery was the first (only then are positions and the ledger updated).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.models import Fill
from brokerlink.kit.ids import new_id
from brokerlink.store.mapping import fill_from_row, fill_values
from brokerlink.store.models import FillRow
from brokerlink.store.repositories._common import Page, check_limit, fetch_page, in_period, upsert_insert


class FillRepository:
    """Queries on ``fills``. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_if_new(self, fill: Fill) -> bool:
        """Store the fill unless the account already has its trade id. True if this call stored it.

        ``INSERT ... ON CONFLICT DO NOTHING`` rather than look-then-insert, so two workers receiving
        the same fill at once cannot both store it (the database waits for the first to finish and
        then skips), and no IntegrityError poisons the caller's transaction.
        """
        await self.session.flush()  # pending ORM changes first (e.g. the order this fill references)
        insert = upsert_insert(self.session, FillRow).values(fill_values(fill, new_id("fil")))
        stmt = insert.on_conflict_do_nothing(index_elements=["account_id", "trade_id"]).returning(FillRow.id)
        inserted = (await self.session.execute(stmt)).scalar_one_or_none()
        return inserted is not None

    async def list_since(self, account_id: str, after_id: str | None, *, limit: int = 100) -> list[tuple[str, Fill]]:
        """The account's fills stored after the fill ``after_id`` (all when None), oldest first, with their ids.

        Ids grow with storage order within an account (each account's fills are written one at a
        time), so this is how a consumer follows an account's fills from a cursor.
        """
        check_limit(limit)
        stmt = select(FillRow).where(FillRow.account_id == account_id)
        if after_id is not None:
            stmt = stmt.where(FillRow.id > after_id)
        rows = (await self.session.execute(stmt.order_by(FillRow.id).limit(limit))).scalars()
        return [(row.id, fill_from_row(row)) for row in rows]

    async def trade_ids(self, account_id: str) -> set[str]:
        """Every trade id stored for the account (what a catch-up from the venue's history skips)."""
        stmt = select(FillRow.trade_id).where(FillRow.account_id == account_id)
        return set((await self.session.execute(stmt)).scalars())

    async def latest_id(self, account_id: str) -> str | None:
        """The id of the account's most recently stored fill."""
        stmt = select(FillRow.id).where(FillRow.account_id == account_id).order_by(FillRow.id.desc()).limit(1)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def get_by_trade_id(self, account_id: str, trade_id: str) -> Fill | None:
        """The account's fill with this venue trade id."""
        stmt = select(FillRow).where(FillRow.account_id == account_id, FillRow.trade_id == trade_id)
        row = (await self.session.execute(stmt)).scalar_one_or_none()
        return None if row is None else fill_from_row(row)

    async def list_for_order(self, order_id: str) -> list[Fill]:
        """An order's fills by row id (storage order, to the millisecond of the ULID)."""
        stmt = select(FillRow).where(FillRow.order_id == order_id).order_by(FillRow.id)
        return [fill_from_row(row) for row in (await self.session.execute(stmt)).scalars()]

    async def list_for_account(
        self, account_id: str, *, limit: int = 100, after: str | None = None, descending: bool = False
    ) -> Page[Fill]:
        """One page of an account's fills by row id (storage order to the millisecond; the cursor is that id)."""
        stmt = select(FillRow).where(FillRow.account_id == account_id)
        return await fetch_page(
            self.session, stmt, FillRow.id, fill_from_row, limit=limit, after=after, descending=descending
        )

    async def page_filtered(
        self,
        *,
        account_id: str | None = None,
        order_id: str | None = None,
        symbol: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        after: str | None = None,
        descending: bool = True,
    ) -> Page[Fill]:
        """One page of an account's (or an order's) fills by row id, only those in ``symbol`` and
        executed (``ts``) in [since, until). At least one of ``account_id`` and ``order_id``."""
        if account_id is None and order_id is None:
            raise ValueError("give account_id or order_id")
        stmt = select(FillRow)
        if account_id is not None:
            stmt = stmt.where(FillRow.account_id == account_id)
        if order_id is not None:
            stmt = stmt.where(FillRow.order_id == order_id)
        if symbol is not None:
            stmt = stmt.where(FillRow.symbol == symbol)
        stmt = in_period(stmt, FillRow.ts, since, until)
        return await fetch_page(
            self.session, stmt, FillRow.id, fill_from_row, limit=limit, after=after, descending=descending
        )
