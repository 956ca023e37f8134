"""Broker connections: a user's link to a broker. No domain struct: returns :class:`BrokerConnectionRow`.

No secret is ever stored here; ``credentials_ref`` names the vault entry that holds them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.enums import ConnectionState
from brokerlink.kit.ids import new_id
from brokerlink.store.models import BrokerConnectionRow
from brokerlink.store.repositories._common import rowcount


class ConnectionRepository:
    """Queries on ``broker_connections``. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(
        self,
        *,
        user_id: str,
        broker: str,
        label: str,
        now: datetime,
        status: ConnectionState = ConnectionState.DISCONNECTED,
        credentials_ref: str | None = None,
    ) -> BrokerConnectionRow:
        """Insert a connection. A label the user already uses raises ``IntegrityError`` at the flush."""
        row = BrokerConnectionRow(
            id=new_id("con"),
            user_id=user_id,
            broker=broker,
            label=label,
            status=ConnectionState(status).value,
            credentials_ref=credentials_ref,
            created_at=now,
            updated_at=now,
        )
        self.session.add(row)
        await self.session.flush()
        return row

    async def get_for_user(self, user_id: str, connection_id: str) -> BrokerConnectionRow | None:
        """The connection if it belongs to ``user_id``; None if it does not exist or is someone else's."""
        stmt = select(BrokerConnectionRow).where(
            BrokerConnectionRow.id == connection_id, BrokerConnectionRow.user_id == user_id
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def get_by_id(self, connection_id: str) -> BrokerConnectionRow | None:
        """The connection with this id, whoever owns it. For workers; API code uses :meth:`get_for_user`."""
        return await self.session.get(BrokerConnectionRow, connection_id)

    async def list_for_user(self, user_id: str) -> list[BrokerConnectionRow]:
        """A user's connections, oldest first."""
        stmt = (
            select(BrokerConnectionRow).where(BrokerConnectionRow.user_id == user_id).order_by(BrokerConnectionRow.id)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def list_by_status(self, *statuses: ConnectionState) -> list[BrokerConnectionRow]:
        """Every user's connections in one of these states (e.g. the ones to reconnect at startup)."""
        values = [ConnectionState(s).value for s in statuses]
        stmt = (
            select(BrokerConnectionRow).where(BrokerConnectionRow.status.in_(values)).order_by(BrokerConnectionRow.id)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def count_by_broker(self) -> dict[str, dict[str, int]]:
        """How many connections each broker kind has, per status (every user's: for administrators)."""
        stmt = select(BrokerConnectionRow.broker, BrokerConnectionRow.status, func.count()).group_by(
            BrokerConnectionRow.broker, BrokerConnectionRow.status
        )
        counts: dict[str, dict[str, int]] = {}
        for broker, status, count in (await self.session.execute(stmt)).all():
            counts.setdefault(broker, {})[status] = int(count)
        return counts

    async def set_status(self, connection_id: str, status: ConnectionState, *, now: datetime) -> bool:
        """Record a connection state change. Returns whether the connection exists."""
        return await self._update(connection_id, now, status=ConnectionState(status).value)

    async def set_credentials_ref(self, connection_id: str, credentials_ref: str | None, *, now: datetime) -> bool:
        """Point the connection at its vault entry (None: forget it). Returns whether it exists."""
        return await self._update(connection_id, now, credentials_ref=credentials_ref)

    async def rename(self, user_id: str, connection_id: str, label: str, *, now: datetime) -> bool:
        """Change the label of the user's own connection. Returns False if it is not theirs."""
        row = await self.get_for_user(user_id, connection_id)
        if row is None:
            return False
        row.label = label
        row.updated_at = now
        await self.session.flush()
        return True

    async def delete_for_user(self, user_id: str, connection_id: str) -> bool:
        """Delete the user's own connection and, by cascade, its accounts with their positions and
        balances. Refused by the database (``IntegrityError``) while any account has orders or fills.
        """
        stmt = delete(BrokerConnectionRow).where(
            BrokerConnectionRow.id == connection_id, BrokerConnectionRow.user_id == user_id
        )
        return rowcount(await self.session.execute(stmt.execution_options(synchronize_session="fetch"))) > 0

    async def _update(self, connection_id: str, now: datetime, **values: object) -> bool:
        row = await self.session.get(BrokerConnectionRow, connection_id)
        if row is None:
            return False
        for name, value in values.items():
            setattr(row, name, value)
        row.updated_at = now
        await self.session.flush()
        return True
