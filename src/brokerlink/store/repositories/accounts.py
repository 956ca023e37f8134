"""Trading accounts. Returns domain :class:`~brokerlink.domain.models.Account` objects."""

from __future__ import annotations

from datetime import datetime

import msgspec
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.enums import AccountMode, ConnectionState
from brokerlink.domain.models import Account
from brokerlink.store.mapping import account_from_row
from brokerlink.store.models import AccountRow, BrokerConnectionRow

# Built once: building a select costs more than running it (~150 µs); this runs on most requests.
_FOR_USER = select(AccountRow).where(
    AccountRow.id == bindparam("account_id"), AccountRow.user_id == bindparam("user_id")
)


class AccountListing(msgspec.Struct, frozen=True, kw_only=True):
    """An account with the broker and state of its connection: one row of a user's account list."""

    id: str
    user_id: str
    connection_id: str
    venue_account_id: str
    name: str
    currency: str
    mode: AccountMode
    broker: str
    connection_label: str
    connection_status: ConnectionState
    created_at: datetime
    updated_at: datetime


class AccountRepository:
    """Queries on ``accounts``. Flushes, never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, account: Account, *, now: datetime) -> None:
        """Insert an account (its id from ``new_id("acc")``).

        The database refuses (``IntegrityError``) an account whose ``user_id`` is not the owner of
        ``connection_id``, and a second account with the same venue account id on one connection.
        """
        self.session.add(
            AccountRow(
                id=account.id,
                user_id=account.user_id,
                connection_id=account.connection_id,
                venue_account_id=account.venue_account_id,
                name=account.name,
                currency=account.currency,
                mode=account.mode.value,
                created_at=now,
                updated_at=now,
            )
        )
        await self.session.flush()

    async def get_for_user(self, user_id: str, account_id: str) -> Account | None:
        """The account if it belongs to ``user_id``; None if it does not exist or is someone else's."""
        row = await self._row_for_user(user_id, account_id)
        return None if row is None else account_from_row(row)

    async def get_by_id(self, account_id: str) -> Account | None:
        """The account with this id, whoever owns it. For workers; API code uses :meth:`get_for_user`."""
        row = await self.session.get(AccountRow, account_id)
        return None if row is None else account_from_row(row)

    async def get_by_venue_account_id(self, connection_id: str, venue_account_id: str) -> Account | None:
        """The account a connection knows under the broker's own account id."""
        stmt = select(AccountRow).where(
            AccountRow.connection_id == connection_id, AccountRow.venue_account_id == venue_account_id
        )
        row = (await self.session.execute(stmt)).scalar_one_or_none()
        return None if row is None else account_from_row(row)

    async def list_for_user(self, user_id: str) -> list[Account]:
        """A user's accounts across all connections, oldest first."""
        stmt = select(AccountRow).where(AccountRow.user_id == user_id).order_by(AccountRow.id)
        return [account_from_row(row) for row in (await self.session.execute(stmt)).scalars()]

    async def list_for_connection(self, connection_id: str) -> list[Account]:
        """The accounts reached through one connection, oldest first."""
        stmt = select(AccountRow).where(AccountRow.connection_id == connection_id).order_by(AccountRow.id)
        return [account_from_row(row) for row in (await self.session.execute(stmt)).scalars()]

    async def is_linked(self, user_id: str, broker: str, venue_account_id: str) -> bool:
        """Whether the user already links this venue account through a live (not revoked) connection."""
        stmt = (
            select(AccountRow.id)
            .join(BrokerConnectionRow, BrokerConnectionRow.id == AccountRow.connection_id)
            .where(
                AccountRow.user_id == user_id,
                AccountRow.venue_account_id == venue_account_id,
                BrokerConnectionRow.broker == broker,
                BrokerConnectionRow.status != ConnectionState.REVOKED.value,
            )
            .limit(1)
        )
        return (await self.session.execute(stmt)).first() is not None

    async def list_with_connections(self, user_id: str) -> list[AccountListing]:
        """A user's accounts, each with its connection's broker, label and state, oldest first."""
        stmt = (
            select(AccountRow, BrokerConnectionRow)
            .join(BrokerConnectionRow, BrokerConnectionRow.id == AccountRow.connection_id)
            .where(AccountRow.user_id == user_id)
            .order_by(AccountRow.id)
        )
        return [
            AccountListing(
                id=account.id,
                user_id=account.user_id,
                connection_id=account.connection_id,
                venue_account_id=account.venue_account_id,
                name=account.name,
                currency=account.currency,
                mode=AccountMode(account.mode),
                broker=connection.broker,
                connection_label=connection.label,
                connection_status=ConnectionState(connection.status),
                created_at=account.created_at,
                updated_at=account.updated_at,
            )
            for account, connection in await self.session.execute(stmt)
        ]

    async def rename(self, user_id: str, account_id: str, name: str, *, now: datetime) -> Account | None:
        """Rename the user's own account; None if it is not theirs."""
        row = await self._row_for_user(user_id, account_id)
        if row is None:
            return None
        row.name = name
        row.updated_at = now
        await self.session.flush()
        return account_from_row(row)

    async def _row_for_user(self, user_id: str, account_id: str) -> AccountRow | None:
        params = {"account_id": account_id, "user_id": user_id}
        return (await self.session.execute(_FOR_USER, params)).scalar_one_or_none()
