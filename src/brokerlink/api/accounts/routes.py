"""``/v1/accounts`` and ``/v1/connections``: the signed-in user's broker links and accounts.

Another user's object answers 404, exactly like a missing one: existence is never revealed. An
account carries an ETag; renaming it takes ``If-Match`` (412 when it changed since). Linking takes an
``Idempotency-Key``. Lists are paged by cursor, oldest first as they always were (the dashboard and
existing clients show them in that order; :mod:`brokerlink.api.paging`).
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, Router, delete, get, patch, post
from litestar.params import JSONBody, Parameter

from brokerlink.api.accounts.schemas import (
    AccountList,
    AccountResponse,
    AccountUpdate,
    ConnectionCreate,
    ConnectionList,
    ConnectionResponse,
    LinkResponse,
)
from brokerlink.api.audit import audited, stamp
from brokerlink.api.auth.mfa import require_recent_mfa
from brokerlink.api.deps import AppClock, CurrentPrincipal, DbSession, Links
from brokerlink.api.etags import ETAG_HEADER, IfMatch, check_if_match, content_tag, lock_if_matched, with_etag
from brokerlink.api.idempotency import IdempotencyKey, idempotent
from brokerlink.api.paging import After, Limit, id_cursor, page_of
from brokerlink.api.scopes import first_party, needs
from brokerlink.engine.links.service import NewLink
from brokerlink.kit.errors import InvalidInput, NotFound
from brokerlink.store.models import AccountRow
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


@get("/", summary="List accounts", opt=needs("accounts:read"))
async def list_accounts(
    principal: CurrentPrincipal, db: DbSession, limit: Limit = 50, after: After = None
) -> AccountList:
    """Every account the user has linked, across brokers, oldest first."""
    cursor = id_cursor(after, "acc")
    listings = await AccountRepository(db).list_with_connections(principal.user_id)
    reachable = [a for a in listings if principal.can_reach_account(a.id)]
    page, next_after = page_of(reachable, lambda a: a.id, limit=limit, after=cursor)
    return AccountList(data=[AccountResponse.of(a) for a in page], next_after=next_after)


@get("/{account_id:str}", summary="Get an account", response_headers=ETAG_HEADER, opt=needs("accounts:read"))
async def get_account(account_id: AccountId, principal: CurrentPrincipal, db: DbSession) -> Response[AccountResponse]:
    """One account, with its ETag. 404 if it does not exist or is not the user's."""
    body = AccountResponse.of(await _listing(db, principal, account_id))
    return with_etag(body, content_tag(body))


@patch("/{account_id:str}", summary="Rename an account", response_headers=ETAG_HEADER, opt=first_party())
async def update_account(  # noqa: PLR0917 - Litestar injects by name
    request: Request[Any, Any, Any],
    account_id: AccountId,
    data: JSONBody[AccountUpdate],
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    if_match: IfMatch = None,
) -> Response[AccountResponse]:
    """Change the account's display name. With ``If-Match``, only if the account is still at that ETag (412)."""
    principal.require_account(account_id)
    name = data.name.strip()
    if not name:
        raise InvalidInput("name must not be blank", extra={"field": "name"})
    await lock_if_matched(db, if_match, AccountRow, account_id)
    check_if_match(if_match, content_tag(AccountResponse.of(await _listing(db, principal, account_id))), what="account")
    if await AccountRepository(db).rename(principal.user_id, account_id, name, now=clock.now()) is None:
        raise NotFound("account not found")
    await audited(request, db, action="account.rename", target=account_id, now=clock.now())
    body = AccountResponse.of(await _listing(db, principal, account_id))
    return with_etag(body, content_tag(body))


@get("/", summary="List broker connections")
async def list_connections(
    principal: CurrentPrincipal, db: DbSession, limit: Limit = 50, after: After = None
) -> ConnectionList:
    """The user's links to brokers (never their credentials), oldest first."""
    cursor = id_cursor(after, "con")
    rows = await ConnectionRepository(db).list_for_user(principal.user_id)
    page, next_after = page_of(rows, lambda c: c.id, limit=limit, after=cursor)
    return ConnectionList(data=[ConnectionResponse.of(c) for c in page], next_after=next_after)


@get("/{connection_id:str}", summary="Get a broker connection")
async def get_connection(connection_id: ConnectionId, principal: CurrentPrincipal, db: DbSession) -> ConnectionResponse:
    """One connection. 404 if it does not exist or is not the user's."""
    row = await ConnectionRepository(db).get_for_user(principal.user_id, connection_id)
    if row is None:
        raise NotFound("connection not found")
    return ConnectionResponse.of(row)


@idempotent
@post(
    "/",
    summary="Link a broker account",
    status_code=201,
    # Linking hands brokerlink the keys to a brokerage account: MFA verified within the step-up window.
    guards=[require_recent_mfa(enrolment_optional=lambda settings: not settings.require_mfa_for_linking)],
)
async def create_connection(  # noqa: PLR0917 - Litestar injects by name
    request: Request[Any, Any, Any],
    data: JSONBody[ConnectionCreate],
    principal: CurrentPrincipal,
    db: DbSession,
    links: Links,
    idempotency_key: IdempotencyKey = None,  # noqa: ARG001 - claimed by @idempotent before this runs
) -> LinkResponse:
    """Connect with the credentials (422 if the broker refuses them, 503 if it cannot be reached);
    only then store the connection, its sealed credentials and the account. Needs a full user
    session that verified MFA recently (403 ``mfa_required``; 403 ``mfa_enrollment_required`` for a
    user without MFA): a third-party grant cannot link accounts. With an ``Idempotency-Key``, a retry
    gets the first response again and links nothing twice."""
    if principal.account_ids is not None:
        raise NotFound("not found")
    label = data.label.strip()
    if not label:
        raise InvalidInput("label must not be blank", extra={"field": "label"})
    account_name = data.account_name.strip() if data.account_name is not None else None
    if account_name == "":
        raise InvalidInput("account_name must not be blank", extra={"field": "account_name"})
    await db.commit()  # linking writes through its own session
    new_link = NewLink(
        broker=data.broker,
        label=label,
        base_url=data.base_url,
        credentials=data.credentials,
        venue_account_id=data.venue_account_id,
        account_name=account_name,
    )
    account = await links.link(principal.user_id, new_link, audit=stamp(request))
    connection = await ConnectionRepository(db).get_for_user(principal.user_id, account.connection_id)
    if connection is None:  # unlinked in the meantime
        raise NotFound("connection not found")
    return LinkResponse(
        connection=ConnectionResponse.of(connection),
        account=AccountResponse.of(await _listing(db, principal, account.id)),
    )


@delete("/{connection_id:str}", summary="Unlink a broker", status_code=204)
async def delete_connection(
    request: Request[Any, Any, Any],
    connection_id: ConnectionId,
    principal: CurrentPrincipal,
    db: DbSession,
    links: Links,
) -> None:
    """Disconnect and destroy the stored credentials. Accounts with orders or fills stay (their history
    is the user's record) with the connection marked revoked; others are removed."""
    if principal.account_ids is not None:
        raise NotFound("connection not found")
    if await ConnectionRepository(db).get_for_user(principal.user_id, connection_id) is None:
        raise NotFound("connection not found")
    await db.commit()
    await links.unlink(principal.user_id, connection_id, audit=stamp(request))


accounts_router = Router(
    path="/accounts", route_handlers=[list_accounts, get_account, update_account], tags=["accounts"]
)
connections_router = Router(
    path="/connections",
    route_handlers=[list_connections, get_connection, create_connection, delete_connection],
    tags=["accounts"],
)
