"""Positions and balances: the latest snapshot per account. Returns domain structs.

Both are written with an upsert on their primary key, so a stream update and a reconciliation
report racing for the same row cannot fail with a duplicate key; the later write wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.models import Balance, Position
from brokerlink.store.mapping import balance_from_row, position_from_row
from brokerlink.store.models import BalanceRow, PositionRow
from brokerlink.store.repositories._common import FRESH, rowcount, upsert_insert


class PositionRepository:
    """Queries on ``positions``. Flushes, never commits.

    ``unrealized_pnl`` is not stored (it moves with every quote); positions come back with zero there.
    """

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def upsert(self, position: Position, *, now: datetime) -> None:
        """Store the position as the current one for its account and symbol (a flat one included)."""
        values = {
            "account_id": position.account_id,
            "symbol": position.symbol,
            "qty": position.qty,
            "avg_price": position.avg_price,
            "realized_pnl": position.realized_pnl,
            "updated_at": now,
        }
        stmt = upsert_insert(self.session, PositionRow).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["account_id", "symbol"],
            set_={name: stmt.excluded[name] for name in ("qty", "avg_price", "realized_pnl", "updated_at")},
        )
        await self.session.execute(stmt)

    async def get(self, account_id: str, symbol: str) -> Position | None:
        """The account's position in ``symbol``, or None if there never was one."""
        stmt = select(PositionRow).where(PositionRow.account_id == account_id, PositionRow.symbol == symbol)
        row = (await self.session.execute(stmt, execution_options=FRESH)).scalar_one_or_none()
        return None if row is None else position_from_row(row)

    async def list_for_account(self, account_id: str, *, include_flat: bool = False) -> list[Position]:
        """The account's positions by symbol; flat ones only when asked.

        Flatness is decided in Python: on SQLite the quantity is text, and SQL would compare strings.
        """
        stmt = select(PositionRow).where(PositionRow.account_id == account_id).order_by(PositionRow.symbol)
        positions = [
            position_from_row(r) for r in (await self.session.execute(stmt, execution_options=FRESH)).scalars()
        ]
        return positions if include_flat else [p for p in positions if not p.is_flat]

    async def list_for_accounts(self, account_ids: Iterable[str]) -> dict[str, list[Position]]:
        """The open positions of many accounts in one query, by account (accounts holding none are absent)."""
        found: dict[str, list[Position]] = {}
        for chunk in _chunks(sorted(set(account_ids))):
            stmt = (
                select(PositionRow)
                .where(PositionRow.account_id.in_(chunk))
                .order_by(PositionRow.account_id, PositionRow.symbol)
            )
            for row in (await self.session.execute(stmt, execution_options=FRESH)).scalars():
                position = position_from_row(row)
                if not position.is_flat:
                    found.setdefault(position.account_id, []).append(position)
        return found

    async def delete(self, account_id: str, symbol: str) -> bool:
        """Forget the account's position in ``symbol``. Returns whether there was one."""
        stmt = delete(PositionRow).where(PositionRow.account_id == account_id, PositionRow.symbol == symbol)
        return rowcount(await self.session.execute(stmt.execution_options(synchronize_session="fetch"))) > 0


class BalanceRepository:
    """Queries on ``balances``. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def upsert(self, balance: Balance) -> None:
        """Store the balance as the current one for its account and currency (``ts`` is the report time)."""
        values = {
            "account_id": balance.account_id,
            "currency": balance.currency,
            "cash": balance.cash,
            "equity": balance.equity,
            "buying_power": balance.buying_power,
            "margin_used": balance.margin_used,
            "ts": balance.ts,
        }
        stmt = upsert_insert(self.session, BalanceRow).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["account_id", "currency"],
            set_={name: stmt.excluded[name] for name in ("cash", "equity", "buying_power", "margin_used", "ts")},
        )
        await self.session.execute(stmt)

    async def get(self, account_id: str, currency: str) -> Balance | None:
        """The account's balance in ``currency``."""
        stmt = select(BalanceRow).where(BalanceRow.account_id == account_id, BalanceRow.currency == currency)
        row = (await self.session.execute(stmt, execution_options=FRESH)).scalar_one_or_none()
        return None if row is None else balance_from_row(row)

    async def list_for_account(self, account_id: str) -> list[Balance]:
        """The account's balances by currency."""
        stmt = select(BalanceRow).where(BalanceRow.account_id == account_id).order_by(BalanceRow.currency)
        return [balance_from_row(r) for r in (await self.session.execute(stmt, execution_options=FRESH)).scalars()]

    async def first_for_accounts(self, account_ids: Iterable[str]) -> dict[str, Balance]:
        """Each account's first balance by currency (what :meth:`list_for_account` lists first), in one query."""
        found: dict[str, Balance] = {}
        for chunk in _chunks(sorted(set(account_ids))):
            stmt = (
                select(BalanceRow)
                .where(BalanceRow.account_id.in_(chunk))
                .order_by(BalanceRow.account_id, BalanceRow.currency)
            )
            for row in (await self.session.execute(stmt, execution_options=FRESH)).scalars():
                found.setdefault(row.account_id, balance_from_row(row))
        return found


_IN_CHUNK = 500  # bound parameters per IN list: far below SQLite's and asyncpg's limits


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]
