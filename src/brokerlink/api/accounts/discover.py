"""Choosing what to link: the broker kinds on offer, and the accounts a credential reaches.

Linking is two steps for brokers where one credential reaches several accounts (OANDA): the user
enters credentials, ``POST /v1/connections/discover`` lists the accounts they reach (one read-only
call; nothing stored), and ``POST /v1/connections`` links the chosen one (``venue_account_id``).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec
from litestar import Request, get, post
from litestar.params import JSONBody

from brokerlink.api.accounts.schemas import CredentialName, CredentialValue
from brokerlink.api.audit import audited
from brokerlink.api.auth.mfa import require_recent_mfa
from brokerlink.api.deps import AppClock, CurrentPrincipal, DbSession, Links
from brokerlink.api.schemas import RequestBody, ResponseBody
from brokerlink.api.scopes import first_party
from brokerlink.brokers.base import adapter_credential_fields, adapter_kinds, adapter_loaded
from brokerlink.engine.links.service import NewLink
from brokerlink.kit.errors import NotFound


class BrokerKind(ResponseBody, kw_only=True):
    """A kind of broker brokerlink can link, and the credential fields it takes."""

    kind: str
    credential_fields: list[str]


class BrokerKindList(ResponseBody, kw_only=True):
    """Every broker kind on offer."""

    data: list[BrokerKind]


class DiscoverRequest(RequestBody, kw_only=True):
    """Credentials to try, without linking anything."""

    broker: Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$", examples=["oanda"])]
    base_url: Annotated[
        str, msgspec.Meta(min_length=1, max_length=500, pattern=r"^https?://", examples=["http://127.0.0.1:8101"])
    ]
    credentials: Annotated[dict[CredentialName, CredentialValue], msgspec.Meta(min_length=1, max_length=10)]


class VenueAccountResponse(ResponseBody, kw_only=True):
    """One account the credentials reach; link it by passing ``venue_account_id`` when linking."""

    venue_account_id: str
    name: str | None
    currency: str | None


class VenueAccountList(ResponseBody, kw_only=True):
    """The accounts the credentials reach."""

    data: list[VenueAccountResponse]


@get("/brokers", summary="List broker kinds", tags=["accounts"], opt=first_party())
async def list_brokers() -> BrokerKindList:
    """The broker kinds this server can link, each with the credential fields it needs."""

    def kinds() -> list[BrokerKind]:
        return [BrokerKind(kind=k, credential_fields=list(adapter_credential_fields(k))) for k in adapter_kinds()]

    # Reading a kind's fields imports its adapter the first time (ccxt's import takes seconds): not on the loop.
    return BrokerKindList(data=kinds() if all(map(adapter_loaded, adapter_kinds())) else await asyncio.to_thread(kinds))


@post(
    "/connections/discover",
    summary="List the accounts a credential reaches",
    status_code=200,
    tags=["accounts"],
    guards=[require_recent_mfa(enrolment_optional=lambda settings: not settings.require_mfa_for_linking)],
)
async def discover_accounts(  # noqa: PLR0917 - Litestar injects by name
    request: Request[Any, Any, Any],
    data: JSONBody[DiscoverRequest],
    principal: CurrentPrincipal,
    db: DbSession,
    links: Links,
    clock: AppClock,
) -> VenueAccountList:
    """Ask the broker which accounts these credentials reach (one read-only call). Nothing is stored
    and the credentials are forgotten after the call; 422 if the broker refuses them, 503 if it
    cannot be reached. Needs the same recent MFA as linking. The attempt is audited (never the
    credentials)."""
    if principal.account_ids is not None:
        raise NotFound("not found")
    probe = NewLink(broker=data.broker, label="discover", base_url=data.base_url, credentials=data.credentials)
    found = await links.discover(probe)
    await audited(
        request,
        db,
        action="broker.discover",
        target=data.broker,
        now=clock.now(),
        details={"accounts": len(found)},
    )
    return VenueAccountList(
        data=[
            VenueAccountResponse(venue_account_id=a.venue_account_id, name=a.name, currency=a.currency) for a in found
        ]
    )


discover_routes = [list_brokers, discover_accounts]
