"""Copy trading strategies. Returns domain :class:`~brokerlink.domain.copy.Strategy` objects.

A strategy is backed by one of its provider's accounts; the database refuses any other account
(``IntegrityError``), and the account never changes afterwards.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.copy import Strategy, StrategyStatus, StrategyVisibility
from brokerlink.kit.errors import NotFound
from brokerlink.store.mapping import strategy_from_row, struct_values
from brokerlink.store.models import StrategyPositionRow, StrategyRow
from brokerlink.store.repositories._common import FRESH, Page, fetch_page, rowcount, upsert_insert

# Fields an update may change; the id, the provider, the account and created_at never do.
_MUTABLE = ("name", "description", "visibility", "min_follower_equity", "status", "updated_at")
# Visible to anyone who knows the id; PRIVATE only to the provider.
_SHARED = [StrategyVisibility.PUBLIC.value, StrategyVisibility.UNLISTED.value]


class StrategyRepository:
    """Queries on ``strategies``. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, strategy: Strategy) -> None:
        """Insert a strategy (its id from ``new_id("stg")``).

        The database refuses (``IntegrityError``) an account that is not the provider's and a name
        the provider already uses.
        """
        self.session.add(StrategyRow(**struct_values(strategy)))
        await self.session.flush()

    async def update(self, strategy: Strategy) -> None:
        """Store a strategy's new name, description, visibility, minimum equity, status and ``updated_at``.

        Raises :class:`~brokerlink.kit.errors.NotFound` for an unknown id, and ``ValueError`` if the
        provider or the account differs from the stored one.
        """
        row = await self.session.get(StrategyRow, strategy.id, populate_existing=True)
        if row is None:
            raise NotFound(f"strategy {strategy.id} does not exist")
        if (row.provider_user_id, row.account_id) != (strategy.provider_user_id, strategy.account_id):
            raise ValueError(f"strategy {strategy.id}: provider and account never change")
        values = struct_values(strategy)
        for name in _MUTABLE:
            setattr(row, name, values[name])
        await self.session.flush()

    async def set_fill_cursor(self, strategy_id: str, fill_id: str, *, now: datetime) -> bool:
        """Record the last provider fill the engine consumed. Returns whether the strategy exists."""
        stmt = (
            update(StrategyRow)
            .where(StrategyRow.id == strategy_id)
            .values(fill_cursor=fill_id, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        return rowcount(await self.session.execute(stmt)) > 0

    async def get_by_id(self, strategy_id: str) -> Strategy | None:
        """The strategy with this id, whoever owns it. For workers; API code uses the owner-scoped reads."""
        stmt = select(StrategyRow).where(StrategyRow.id == strategy_id)
        row = (await self.session.execute(stmt, execution_options=FRESH)).scalar_one_or_none()
        return None if row is None else strategy_from_row(row)

    async def get_for_user(self, user_id: str, strategy_id: str) -> Strategy | None:
        """The strategy if ``user_id`` is its provider; None if it does not exist or is someone else's."""
        stmt = select(StrategyRow).where(StrategyRow.id == strategy_id, StrategyRow.provider_user_id == user_id)
        row = (await self.session.execute(stmt, execution_options=FRESH)).scalar_one_or_none()
        return None if row is None else strategy_from_row(row)

    async def get_visible(self, user_id: str, strategy_id: str) -> Strategy | None:
        """The strategy if ``user_id`` may see it (and so follow it): their own, or a public or unlisted one.

        None for a private strategy of someone else, exactly as for one that does not exist.
        """
        stmt = select(StrategyRow).where(
            StrategyRow.id == strategy_id,
            or_(StrategyRow.provider_user_id == user_id, StrategyRow.visibility.in_(_SHARED)),
        )
        row = (await self.session.execute(stmt, execution_options=FRESH)).scalar_one_or_none()
        return None if row is None else strategy_from_row(row)

    async def list_for_user(self, user_id: str) -> list[Strategy]:
        """The strategies ``user_id`` provides, oldest first."""
        stmt = select(StrategyRow).where(StrategyRow.provider_user_id == user_id).order_by(StrategyRow.id)
        return [strategy_from_row(row) for row in (await self.session.execute(stmt, execution_options=FRESH)).scalars()]

    async def list_public(
        self, *, limit: int = 50, after: str | None = None, descending: bool = False
    ) -> Page[Strategy]:
        """One page of the directory: active public strategies by id (creation order)."""
        stmt = select(StrategyRow).where(
            StrategyRow.visibility == StrategyVisibility.PUBLIC.value,
            StrategyRow.status == StrategyStatus.ACTIVE.value,
        )
        return await fetch_page(
            self.session, stmt, StrategyRow.id, strategy_from_row, limit=limit, after=after, descending=descending
        )

    async def list_active(self) -> list[Strategy]:
        """Every active strategy, oldest first (the engine's catch-up scan)."""
        stmt = select(StrategyRow).where(StrategyRow.status == StrategyStatus.ACTIVE.value).order_by(StrategyRow.id)
        return [strategy_from_row(row) for row in (await self.session.execute(stmt, execution_options=FRESH)).scalars()]

    async def list_active_for_account(self, account_id: str) -> list[Strategy]:
        """The active strategies an account backs, oldest first: what a fill on that account is copied to."""
        stmt = (
            select(StrategyRow)
            .where(StrategyRow.account_id == account_id, StrategyRow.status == StrategyStatus.ACTIVE.value)
            .order_by(StrategyRow.id)
        )
        return [strategy_from_row(row) for row in (await self.session.execute(stmt, execution_options=FRESH)).scalars()]


class StrategyPositionRepository:
    """Queries on ``strategy_positions``: the provider's net position per symbol as the engine counts it."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, strategy_id: str, symbol: str) -> Decimal:
        """The signed position (zero when never set)."""
        stmt = select(StrategyPositionRow.qty).where(
            StrategyPositionRow.strategy_id == strategy_id, StrategyPositionRow.symbol == symbol
        )
        qty = (await self.session.execute(stmt)).scalar_one_or_none()
        return Decimal(0) if qty is None else qty

    async def set(self, strategy_id: str, symbol: str, qty: Decimal, *, now: datetime) -> None:
        """Store the signed position."""
        values = {"strategy_id": strategy_id, "symbol": symbol, "qty": qty, "updated_at": now}
        stmt = upsert_insert(self.session, StrategyPositionRow).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["strategy_id", "symbol"], set_={"qty": stmt.excluded.qty, "updated_at": now}
        )
        await self.session.execute(stmt)

    async def all(self, strategy_id: str) -> dict[str, Decimal]:
        """Every symbol's signed position."""
        stmt = select(StrategyPositionRow.symbol, StrategyPositionRow.qty).where(
            StrategyPositionRow.strategy_id == strategy_id
        )
        rows = await self.session.execute(stmt)
        return {str(row[0]): Decimal(row[1]) for row in rows}
