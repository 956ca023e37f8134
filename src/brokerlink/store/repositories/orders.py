"""Orders. Returns domain :class:`~brokerlink.domain.models.Order` objects.

``(account_id, client_order_id)`` is unique: the idempotency key that makes a replayed intent find
the order it already placed instead of placing a second one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.enums import OrderStatus
from brokerlink.domain.models import Order
from brokerlink.kit.errors import NotFound
from brokerlink.store.mapping import order_from_row, order_mutable_values, order_to_row, order_values
from brokerlink.store.models import AccountRow, OrderRow
from brokerlink.store.repositories._common import Page, fetch_page, in_period, insert_rows

# Built once: building a select costs more than running it (~150 µs); these run on every request.
_FOR_USER = (
    select(OrderRow)
    .join(AccountRow, AccountRow.id == OrderRow.account_id)
    .where(OrderRow.id == bindparam("order_id"), AccountRow.user_id == bindparam("user_id"))
)
_OPEN = [status.value for status in OrderStatus if not status.is_terminal]


class OrderRepository:
    """Queries on ``orders``. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, order: Order) -> None:
        """Insert an order. A ``client_order_id`` already used in the account raises ``IntegrityError``."""
        self.session.add(order_to_row(order))
        await self.session.flush()

    async def add_many(self, orders: Sequence[Order]) -> None:
        """Insert orders in one statement (a copy fan-out), all or none; a used client order id raises
        ``IntegrityError`` as :meth:`add` does."""
        if orders:
            await insert_rows(self.session, OrderRow, [order_values(order) for order in orders])

    async def update(self, order: Order) -> None:
        """Store an order's new state (status, fills, venue id, prices after a modify, ``updated_at``).

        Raises :class:`~brokerlink.kit.errors.NotFound` for an unknown id, and ``ValueError`` if the
        order's identity (account, client order id, symbol, side, type) differs from the stored one.
        """
        row = await self.session.get(OrderRow, order.id)
        if row is None:
            raise NotFound(f"order {order.id} does not exist")
        stored_identity = (row.account_id, row.client_order_id, row.symbol, row.side, row.type)
        identity = (order.account_id, order.client_order_id, order.symbol, order.side.value, order.type.value)
        if stored_identity != identity:
            raise ValueError(f"order {order.id}: account, client order id, symbol, side and type never change")
        for name, value in order_mutable_values(order).items():
            setattr(row, name, value)
        await self.session.flush()

    async def get_for_user(self, user_id: str, order_id: str) -> Order | None:
        """The order if its account belongs to ``user_id``; None if it does not exist or is someone else's."""
        params = {"order_id": order_id, "user_id": user_id}
        row = (await self.session.execute(_FOR_USER, params)).scalar_one_or_none()
        return None if row is None else order_from_row(row)

    async def get_by_id(self, order_id: str) -> Order | None:
        """The order with this id, whoever owns it. For workers; API code uses :meth:`get_for_user`."""
        row = await self.session.get(OrderRow, order_id)
        return None if row is None else order_from_row(row)

    async def get_by_client_order_id(self, account_id: str, client_order_id: str) -> Order | None:
        """The account's order with this client order id (how an unknown outcome is resolved)."""
        stmt = select(OrderRow).where(OrderRow.account_id == account_id, OrderRow.client_order_id == client_order_id)
        row = (await self.session.execute(stmt)).scalar_one_or_none()
        return None if row is None else order_from_row(row)

    async def get_by_venue_order_id(self, account_id: str, venue_order_id: str) -> Order | None:
        """The account's order the venue knows under ``venue_order_id``."""
        stmt = select(OrderRow).where(OrderRow.account_id == account_id, OrderRow.venue_order_id == venue_order_id)
        row = (await self.session.execute(stmt)).scalars().first()
        return None if row is None else order_from_row(row)

    async def list_for_account(
        self, account_id: str, *, limit: int = 50, after: str | None = None, descending: bool = False
    ) -> Page[Order]:
        """One page of an account's orders by id (creation order; ``descending`` for newest first)."""
        stmt = select(OrderRow).where(OrderRow.account_id == account_id)
        return await fetch_page(
            self.session, stmt, OrderRow.id, order_from_row, limit=limit, after=after, descending=descending
        )

    async def list_for_user(
        self,
        user_id: str,
        *,
        account_id: str | None = None,
        limit: int = 50,
        after: str | None = None,
        descending: bool = False,
    ) -> Page[Order]:
        """One page of the orders in a user's accounts (or in one of them), by id. Owner-scoped."""
        stmt = (
            select(OrderRow).join(AccountRow, AccountRow.id == OrderRow.account_id).where(AccountRow.user_id == user_id)
        )
        if account_id is not None:
            stmt = stmt.where(OrderRow.account_id == account_id)
        return await fetch_page(
            self.session, stmt, OrderRow.id, order_from_row, limit=limit, after=after, descending=descending
        )

    async def list_open(self, account_id: str) -> list[Order]:
        """An account's orders that are not in a terminal state, oldest first (for reconciliation)."""
        stmt = (
            select(OrderRow).where(OrderRow.account_id == account_id, OrderRow.status.in_(_OPEN)).order_by(OrderRow.id)
        )
        return [order_from_row(row) for row in (await self.session.execute(stmt)).scalars()]

    # --- lists filtered by symbol and time -----------------------------------------------------------

    async def page_for_account(
        self,
        account_id: str,
        *,
        symbol: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        after: str | None = None,
        descending: bool = True,
    ) -> Page[Order]:
        """One page of an account's orders by id, only those in ``symbol`` and created in [since, until)."""
        stmt = select(OrderRow).where(OrderRow.account_id == account_id)
        if symbol is not None:
            stmt = stmt.where(OrderRow.symbol == symbol)
        stmt = in_period(stmt, OrderRow.created_at, since, until)
        return await fetch_page(
            self.session, stmt, OrderRow.id, order_from_row, limit=limit, after=after, descending=descending
        )
