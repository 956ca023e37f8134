"""``/v1/consents``: the signed-in user's consents to third-party apps, and revoking them (SECURITY.md 22, 23).

Only the person who gave a consent sees it: anyone else's is a 404, and an app's token gets 403
(apps do not manage consents). Listing or reading a consent whose time is up marks it ``expired``
and revokes its tokens. ``DELETE`` revokes: the consent becomes ``revoked`` and every token issued
under it is revoked in the same transaction; after the commit every server process is told, so
requests and WebSockets using them stop at once, and the webhook endpoints the app registered under
the consent are disabled (``finish_ended``, ADR 0033).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Request, Router, delete, get
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.api.audit import unchanged
from brokerlink.api.consents.common import finish_ended, require_user
from brokerlink.api.deps import AppClock, CurrentPrincipal, DbSession
from brokerlink.api.paging import After, Limit, id_cursor
from brokerlink.api.schemas import ResponseBody
from brokerlink.security.oauth.clients import ClientRepository
from brokerlink.security.oauth.consents import Consent, ConsentService
from brokerlink.security.oauth.scopes import SCOPE_DESCRIPTIONS
from brokerlink.store.models_oauth import ConsentStatus

ConsentId = Annotated[str, Parameter(description="Consent id (cns_...)", max_length=40)]
StatusFilter = Annotated[ConsentStatus | None, Parameter(description="Only consents in this status")]


class ScopeGrant(ResponseBody, kw_only=True):
    """A granted scope and what it lets the app do, in plain words."""

    scope: str
    description: str


class ConsentResponse(ResponseBody, kw_only=True):
    """A consent: which app, what it may do (``scopes``), on which accounts, and until when."""

    id: str
    client_id: str
    client_name: str
    status: ConsentStatus
    scopes: list[ScopeGrant]
    account_ids: list[str]
    created_at: datetime
    decided_at: datetime | None
    expires_at: datetime
    revoked_at: datetime | None


class ConsentList(ResponseBody, kw_only=True):
    """One page of consents, newest first; pass ``next_after`` as ``after`` for the next page."""

    data: list[ConsentResponse]
    next_after: str | None


async def _responses(db: AsyncSession, consents: list[Consent]) -> list[ConsentResponse]:
    clients = ClientRepository(db)
    names: dict[str, str] = {}
    out = []
    for consent in consents:
        if consent.client_id not in names:
            client = await clients.get(consent.client_id)
            names[consent.client_id] = client.name if client is not None else consent.client_id
        out.append(
            ConsentResponse(
                id=consent.id,
                client_id=consent.client_id,
                client_name=names[consent.client_id],
                status=consent.status,
                scopes=[ScopeGrant(scope=s, description=SCOPE_DESCRIPTIONS[s]) for s in consent.scopes],
                account_ids=consent.account_ids,
                created_at=consent.created_at,
                decided_at=consent.decided_at,
                expires_at=consent.expires_at,
                revoked_at=consent.revoked_at,
            )
        )
    return out


@get("/", summary="List your consents")
async def list_consents(  # noqa: PLR0917 - Litestar injects by name
    request: Request[Any, Any, Any],
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    status: StatusFilter = None,
    limit: Limit = 50,
    after: After = None,
) -> ConsentList:
    """Every consent you gave (or were asked for), newest first, optionally only those in one ``status``."""
    require_user(principal)
    cursor = id_cursor(after, "cns")
    page, ended = await ConsentService(db, clock).page_for_user(
        principal.user_id, limit=limit, after=cursor, status=status
    )
    await finish_ended(request, db, ended)
    return ConsentList(data=await _responses(db, list(page.items)), next_after=page.next_after)


@get("/{consent_id:str}", summary="Get one of your consents")
async def get_consent(
    request: Request[Any, Any, Any], consent_id: ConsentId, principal: CurrentPrincipal, db: DbSession, clock: AppClock
) -> ConsentResponse:
    """One consent: the app, the scopes in plain words, the accounts it covers, its status and expiry."""
    require_user(principal)
    consent, ended = await ConsentService(db, clock).for_user(consent_id, principal.user_id)
    await finish_ended(request, db, [ended] if ended is not None else [])
    return (await _responses(db, [consent]))[0]


@delete("/{consent_id:str}", summary="Revoke one of your consents", status_code=204)
async def revoke_consent(
    request: Request[Any, Any, Any], consent_id: ConsentId, principal: CurrentPrincipal, db: DbSession, clock: AppClock
) -> None:
    """The app loses access at once: the consent is ``revoked``, every token issued under it stops
    working, and the webhook endpoints the app registered under it are disabled. Revoking a consent
    that has already ended changes nothing (still 204)."""
    require_user(principal)
    ended = await ConsentService(db, clock).revoke(consent_id, user_id=principal.user_id)
    if ended.action is None:
        unchanged(request)
    await finish_ended(request, db, [ended])


consents_router = Router(
    path="/consents", route_handlers=[list_consents, get_consent, revoke_consent], tags=["consents"]
)
