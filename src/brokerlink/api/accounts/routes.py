"""``/v1/accounts`` and ``/v1/connections``: the signed-in user's broker links and accounts.

Another user's object answers 404, exactly like a missing one: existence is never revealed.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Router, get, patch
from litestar.params import JSONBody, Parameter

from brokerlink.api.accounts.schemas import (
    AccountList,
    AccountResponse,
    AccountUpdate,
    ConnectionList,
    ConnectionResponse,
)
from brokerlink.api.deps import AppClock, CurrentPrincipal, DbSession
from brokerlink.kit.errors import InvalidInput, NotFound
from brokerlink.store.repositories.accounts import AccountListing, AccountRepository
from brokerlink.store.repositories.connections import ConnectionRepository

AccountId = Annotated[str, Parameter(description="Account id (acc_...)", max_length=40)]
ConnectionId = Annotated[str, Parameter(description="Connection id (con_...)", max_length=40)]


async def _listing(db: DbSession, principal: CurrentPrincipal, account_id: str) -> AccountListing:
    principal.require_account(account_id)
    for listing in await AccountRepository(db).list_with_connections(principal.user_id):
        if listing.id == account_id:
            return listing
    raise NotFound("account not found")


@get("/", summary="List accounts")
async def list_accounts(principal: CurrentPrincipal, db: DbSession) -> AccountList:
    """Every account the user has linked, across brokers."""
    listings = await AccountRepository(db).list_with_connections(principal.user_id)
    return AccountList(data=[AccountResponse.of(a) for a in listings if principal.can_reach_account(a.id)])


@get("/{account_id:str}", summary="Get an account")
async def get_account(account_id: AccountId, principal: CurrentPrincipal, db: DbSession) -> AccountResponse:
    """One account. 404 if it does not exist or is not the user's."""
    return AccountResponse.of(await _listing(db, principal, account_id))


@patch("/{account_id:str}", summary="Rename an account")
async def update_account(
    account_id: AccountId, data: JSONBody[AccountUpdate], principal: CurrentPrincipal, db: DbSession, clock: AppClock
) -> AccountResponse:
    """Change the account's display name."""
    principal.require_account(account_id)
    name = data.name.strip()
    if not name:
        raise InvalidInput("name must not be blank", extra={"field": "name"})
    if await AccountRepository(db).rename(principal.user_id, account_id, name, now=clock.now()) is None:
        raise NotFound("account not found")
    return AccountResponse.of(await _listing(db, principal, account_id))


@get("/", summary="List broker connections")
async def list_connections(principal: CurrentPrincipal, db: DbSession) -> ConnectionList:
    """The user's links to brokers (never their credentials)."""
    rows = await ConnectionRepository(db).list_for_user(principal.user_id)
    return ConnectionList(data=[ConnectionResponse.of(c) for c in rows])


@get("/{connection_id:str}", summary="Get a broker connection")
async def get_connection(connection_id: ConnectionId, principal: CurrentPrincipal, db: DbSession) -> ConnectionResponse:
    """One connection. 404 if it does not exist or is not the user's."""
    row = await ConnectionRepository(db).get_for_user(principal.user_id, connection_id)
    if row is None:
        raise NotFound("connection not found")
    return ConnectionResponse.of(row)


accounts_router = Router(
    path="/accounts", route_handlers=[list_accounts, get_account, update_account], tags=["accounts"]
)
connections_router = Router(path="/connections", route_handlers=[list_connections, get_connection], tags=["accounts"])
