"""``/v1/admin/clients``: registering third-party apps (admins only; SECURITY.md 21, 30).

Any other principal gets 403, an app's token included. A registration names the app, its exact
redirect URIs (``https``, or ``http`` on a loopback host for native apps), its public keys (``jwks``)
or where to fetch them (``jwks_uri``, on a public address unless allow-listed), the scopes it may
ever ask for and its grant types. A bad registration is one 422 whose ``errors`` name every bad
field. ``DELETE`` disables the app and revokes every token it holds. Registering takes an
``Idempotency-Key``; an app carries an ETag, and changing it takes an optional ``If-Match``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, delete, get, patch, post
from litestar.params import JSONBody, Parameter

from brokerlink.api.audit import audited, unchanged
from brokerlink.api.consents.common import publish_after_commit, require_admin
from brokerlink.api.deps import AppClock, AppSettings, CurrentPrincipal, DbSession
from brokerlink.api.etags import ETAG_HEADER, IfMatch, check_if_match, content_tag, lock_if_matched, with_etag
from brokerlink.api.idempotency import IdempotencyKey, idempotent
from brokerlink.api.paging import After, Limit, id_cursor
from brokerlink.api.schemas import RequestBody, ResponseBody
from brokerlink.kit.errors import NotFound
from brokerlink.security.oauth.clients import (
    DEFAULT_GRANT_TYPES,
    MAX_REDIRECT_URIS,
    ClientChanges,
    ClientDraft,
    ClientPolicy,
    ClientRegistry,
    ClientRepository,
    OAuthClient,
)
from brokerlink.security.oauth.revocation import TokensRevoked
from brokerlink.store.models_oauth import OAuthClientRow

ClientId = Annotated[str, Parameter(description="Client id (app_...)", max_length=40)]
_CLIENT_PREFIXES = ("app", "cli")
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Uri = Annotated[str, msgspec.Meta(max_length=2048)]
RedirectUris = Annotated[list[Uri], msgspec.Meta(max_length=MAX_REDIRECT_URIS)]
Names = Annotated[list[Annotated[str, msgspec.Meta(max_length=64)]], msgspec.Meta(max_length=16)]
Jwks = dict[str, Any]


class ClientCreate(RequestBody, kw_only=True):
    """A new app. Exactly one of ``jwks`` (a JSON Web Key Set of public keys for PS256, ES256 or EdDSA)
    and ``jwks_uri``. ``scopes`` from the published list; ``grant_types`` from ``authorization_code``,
    ``refresh_token``, ``client_credentials``."""

    name: Name
    redirect_uris: RedirectUris = msgspec.field(default_factory=list)
    jwks: Jwks | None = None
    jwks_uri: Uri | None = None
    scopes: Names
    grant_types: Names = msgspec.field(default_factory=lambda: list(DEFAULT_GRANT_TYPES))


class ClientUpdate(RequestBody, kw_only=True):
    """Fields to change (the others stay). Giving ``jwks`` drops ``jwks_uri``, and the other way round."""

    name: Name | None = None
    redirect_uris: RedirectUris | None = None
    jwks: Jwks | None = None
    jwks_uri: Uri | None = None
    scopes: Names | None = None
    grant_types: Names | None = None


class ClientResponse(ResponseBody, kw_only=True):
    """A registered app. ``active`` is false once it is disabled."""

    id: str
    name: str
    redirect_uris: list[str]
    jwks: Jwks | None
    jwks_uri: str | None
    scopes: list[str]
    grant_types: list[str]
    token_endpoint_auth_method: str = "private_key_jwt"  # noqa: S105 - a method's name, not a secret
    active: bool
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    disabled_at: datetime | None


class ClientList(ResponseBody, kw_only=True):
    """One page of apps in registration order; pass ``next_after`` as ``after`` for the next page."""

    data: list[ClientResponse]
    next_after: str | None


def _body(client: OAuthClient) -> ClientResponse:
    return ClientResponse(
        id=client.id,
        name=client.name,
        redirect_uris=client.redirect_uris,
        jwks=client.jwks,
        jwks_uri=client.jwks_uri,
        scopes=client.scopes,
        grant_types=client.grant_types,
        active=client.active,
        created_by=client.created_by,
        created_at=client.created_at,
        updated_at=client.updated_at,
        disabled_at=client.disabled_at,
    )


def _registry(db: DbSession, clock: AppClock, settings: AppSettings) -> ClientRegistry:
    return ClientRegistry(db, clock, ClientPolicy.from_settings(settings))


@idempotent
@post("/", summary="Register an app", status_code=201, response_headers=ETAG_HEADER)
async def create_client(  # noqa: PLR0917 - Litestar injects by name
    request: Request[Any, Any, Any],
    data: JSONBody[ClientCreate],
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    settings: AppSettings,
    idempotency_key: IdempotencyKey = None,  # noqa: ARG001 - claimed by @idempotent before this runs
) -> Response[ClientResponse]:
    """Register a third-party app; it authenticates with ``private_key_jwt`` using the keys given."""
    require_admin(principal)
    draft = ClientDraft(
        name=data.name, redirect_uris=data.redirect_uris, jwks=data.jwks, jwks_uri=data.jwks_uri,
        scopes=data.scopes, grant_types=data.grant_types,
    )  # fmt: skip
    client = await _registry(db, clock, settings).create(draft, created_by=principal.user_id)
    await audited(
        request, db, action="oauth_client.create", target=client.id, now=clock.now(),
        details={"name": client.name, "scope": " ".join(client.scopes)},
    )  # fmt: skip
    body = _body(client)
    return with_etag(body, content_tag(body), 201, location=f"/v1/admin/clients/{client.id}")


@get("/", summary="List apps")
async def list_clients(
    principal: CurrentPrincipal,
    db: DbSession,
    limit: Limit = 50,
    after: After = None,
    include_disabled: Annotated[bool, Parameter(description="Also list disabled apps")] = True,
) -> ClientList:
    """Registered apps in registration order."""
    require_admin(principal)
    cursor = id_cursor(after, _CLIENT_PREFIXES)
    page = await ClientRepository(db).page(limit=limit, after=cursor, include_disabled=include_disabled)
    return ClientList(data=[_body(c) for c in page.items], next_after=page.next_after)


async def _client(db: DbSession, client_id: str) -> OAuthClient:
    client = await ClientRepository(db).get(client_id)
    if client is None:
        raise NotFound("client not found")
    return client


@get("/{client_id:str}", summary="Get an app", response_headers=ETAG_HEADER)
async def get_client(client_id: ClientId, principal: CurrentPrincipal, db: DbSession) -> Response[ClientResponse]:
    """One registered app, with its ETag."""
    require_admin(principal)
    body = _body(await _client(db, client_id))
    return with_etag(body, content_tag(body))


@patch("/{client_id:str}", summary="Change an app's registration", response_headers=ETAG_HEADER)
async def update_client(  # noqa: PLR0917 - Litestar injects by name
    request: Request[Any, Any, Any],
    client_id: ClientId,
    data: JSONBody[ClientUpdate],
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    settings: AppSettings,
    if_match: IfMatch = None,
) -> Response[ClientResponse]:
    """Change some fields; the registration that results is checked as a whole (422 naming bad fields).
    With ``If-Match``, only if the app is still at that ETag (412 otherwise)."""
    require_admin(principal)
    await lock_if_matched(db, if_match, OAuthClientRow, client_id)
    check_if_match(if_match, content_tag(_body(await _client(db, client_id))), what="app")
    changes = ClientChanges(
        name=data.name, redirect_uris=data.redirect_uris, jwks=data.jwks, jwks_uri=data.jwks_uri,
        scopes=data.scopes, grant_types=data.grant_types,
    )  # fmt: skip
    client = await _registry(db, clock, settings).update(client_id, changes)
    changed = sorted(f for f in msgspec.structs.asdict(data) if getattr(data, f) is not None)
    await audited(
        request, db, action="oauth_client.update", target=client.id, now=clock.now(),
        details={"fields": " ".join(changed)},
    )  # fmt: skip
    body = _body(client)
    return with_etag(body, content_tag(body))


@delete("/{client_id:str}", summary="Disable an app", status_code=204)
async def disable_client(  # noqa: PLR0917 - Litestar injects by name
    request: Request[Any, Any, Any],
    client_id: ClientId,
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    settings: AppSettings,
) -> None:
    """Disable the app: it can no longer authenticate, and every token it holds is revoked now. Idempotent."""
    require_admin(principal)
    disabled = await _registry(db, clock, settings).disable(client_id)
    if not disabled.changed:
        unchanged(request)
        return
    now = clock.now()
    await audited(
        request, db, action="oauth_client.disable", target=client_id, now=now,
        details={"revoked": len(disabled.token_ids)},
    )  # fmt: skip
    if disabled.token_ids:
        message = TokensRevoked(token_ids=disabled.token_ids, reason="client_disabled", at=now)
        await publish_after_commit(request, db, [message])


admin_clients_router = Router(
    path="/admin/clients",
    route_handlers=[create_client, list_clients, get_client, update_client, disable_client],
    tags=["admin"],
)
