"""``/v1/webhooks``: register endpoints, see their deliveries with every attempt, replay, test.

A user sees only their own endpoints and deliveries: another user's answer 404 exactly like missing
ones (SECURITY.md 19). Events reach an endpoint only for its owner's accounts and subscriptions (the
service looks the owner up per event).

**Apps** (ADR 0033). An app acting for a user, with the scope ``webhooks:manage``, registers
endpoints for that user's events too, but only for event types its consent can read (403
``insufficient_scope`` naming the missing read scope), and receives only events of the consent's
accounts; it sees and changes only the endpoints it registered. The user sees every endpoint,
``client_id`` naming the app of an app's. When the consent ends the app's endpoints are disabled
and can no longer be enabled (409 ``consent_ended``).

A URL must be ``https`` on a public address (422 naming ``url`` otherwise, SECURITY.md 30) unless
``webhook_allowed_hosts`` lists it. The signing secret is in the creation response and nowhere else
(``Cache-Control: no-store``); it is sealed in the vault. Creation takes an ``Idempotency-Key``; its
stored response (with the secret) is sealed under a key derived from the ``Idempotency-Key``, which
is not stored (:mod:`brokerlink.api.idempotency`). An endpoint carries an ETag; changing it takes an
optional ``If-Match``. Lists are newest first, paged by cursor (``limit`` up to 100, ``after`` = the
previous ``next_after``). Every change writes one audit record; the audit details name the URL's
host, not the URL (paths often carry a token).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
from litestar import Request, Response, Router, delete, get, patch, post
from litestar.datastructures import State
from litestar.params import JSONBody, Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.api.audit import audited, unchanged
from brokerlink.api.deps import AppClock, CurrentPrincipal, DbSession
from brokerlink.api.etags import ETAG_HEADER, IfMatch, check_if_match, content_tag, lock_if_matched, with_etag
from brokerlink.api.idempotency import IdempotencyKey, idempotent
from brokerlink.api.paging import After, Since, SmallLimit, Until, id_cursor, time_range
from brokerlink.api.scopes import InsufficientScope, needs
from brokerlink.api.webhooks.schemas import (
    AttemptResponse,
    DeliveryList,
    DeliveryResponse,
    EndpointCreate,
    EndpointCreated,
    EndpointList,
    EndpointResponse,
    EndpointUpdate,
)
from brokerlink.config import Settings
from brokerlink.engine.webhooks.consents import MANAGE_SCOPE, ConsentGate, missing_scopes
from brokerlink.engine.webhooks.service import STATE_KEY, WebhookService
from brokerlink.kit.errors import Conflict, NotFound
from brokerlink.security.principal import Principal
from brokerlink.store.models_webhooks import EndpointStatus, WebhookEndpointRow
from brokerlink.store.repositories.webhooks import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookDeliveryRepository,
    WebhookEndpoint,
    WebhookEndpointRepository,
)

EndpointId = Annotated[str, Parameter(description="Webhook endpoint id (whe_...)", max_length=40)]
DeliveryId = Annotated[str, Parameter(description="Delivery id (whd_...)", max_length=40)]
EventTypeFilter = Annotated[
    str | None, Parameter(description="Only deliveries of this event type (e.g. order.filled)", max_length=64)
]
_OPT = needs(MANAGE_SCOPE)


class EndpointLimitReached(Conflict):
    """The user has as many webhook endpoints as ``webhook_max_endpoints`` allows."""

    code = "webhook_endpoint_limit"
    title = "Too many webhook endpoints"


class EndpointDisabled(Conflict):
    """The endpoint is disabled: enable it before replaying deliveries to it."""

    code = "webhook_endpoint_disabled"
    title = "Webhook endpoint disabled"


class ConsentEnded(Conflict):
    """The consent an app's endpoint was registered under has ended: the endpoint stays disabled."""

    code = "consent_ended"
    title = "Consent ended"


def _service(state: State) -> WebhookService:
    service: WebhookService = state[STATE_KEY]
    return service


def _host(url: str) -> str:
    return urlsplit(url).hostname or ""


async def _own(db: AsyncSession, principal: Principal, endpoint_id: str) -> WebhookEndpoint:
    """The endpoint, if the principal may see it: the user's any, an app's only those it registered."""
    endpoint = await WebhookEndpointRepository(db).get_for_user(principal.user_id, endpoint_id)
    if endpoint is None or (principal.kind == "client" and endpoint.client_id != principal.client_id):
        raise NotFound("webhook endpoint not found")
    return endpoint


def _readable(principal: Principal, event_types: list[str]) -> None:
    """403 ``insufficient_scope`` when an app asks for events its consent cannot read."""
    if principal.kind == "client":
        missing = missing_scopes(event_types, principal.scopes or ())
        if missing:
            raise InsufficientScope(missing[0])


def _tagged(endpoint: WebhookEndpoint) -> Response[EndpointResponse]:
    body = EndpointResponse.of(endpoint)
    return with_etag(body, content_tag(body))


async def _own_delivery(db: AsyncSession, endpoint: WebhookEndpoint, delivery_id: str) -> WebhookDelivery:
    delivery = await WebhookDeliveryRepository(db).get(delivery_id)
    if delivery is None or delivery.endpoint_id != endpoint.id:
        raise NotFound("delivery not found")
    return delivery


def _delivery(delivery: WebhookDelivery, attempts: list[WebhookAttempt]) -> DeliveryResponse:
    return DeliveryResponse(
        id=delivery.id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        status=delivery.status,
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at,
        last_status=delivery.last_status,
        last_error=delivery.last_error,
        created_at=delivery.created_at,
        updated_at=delivery.updated_at,
        attempt_log=[AttemptResponse.of(a) for a in attempts],
    )


def _description(value: str) -> str:
    return value.strip()


@idempotent(sealed=True)
@post("/", summary="Register a webhook endpoint", status_code=201, response_headers=ETAG_HEADER, opt=_OPT)
async def create_endpoint(  # noqa: PLR0917 - injected parameters
    request: Request[Any, Any, Any],
    data: JSONBody[EndpointCreate],
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    state: State,
    idempotency_key: IdempotencyKey = None,  # noqa: ARG001 - claimed by @idempotent before this runs
) -> Response[EndpointCreated]:
    """Receive the listed event types at ``url``, signed (Standard Webhooks). The response carries
    the signing secret, once. 422 for a URL that is not https or resolves to a non-public address,
    409 ``webhook_endpoint_limit`` past ``webhook_max_endpoints``. An app receives only the events
    its consent can read, of the consent's accounts (403 ``insufficient_scope`` for a type it cannot)."""
    _readable(principal, list(data.event_types))
    settings: Settings = state.settings
    repository = WebhookEndpointRepository(db)
    if await repository.count_for_user(principal.user_id) >= settings.webhook_max_endpoints:
        raise EndpointLimitReached(f"at most {settings.webhook_max_endpoints} webhook endpoints per user")
    endpoint, secret = await _service(state).create_endpoint(
        db,
        user_id=principal.user_id,
        url=data.url.strip(),
        description=_description(data.description),
        event_types=data.event_types,
        client_id=principal.client_id if principal.kind == "client" else None,
        consent_id=principal.consent_id if principal.kind == "client" else None,
    )
    await audited(
        request, db, action="webhook.create", target=endpoint.id, now=clock.now(),
        details={"host": _host(endpoint.url), "event_types": ",".join(endpoint.event_types)},
    )  # fmt: skip
    shown = EndpointResponse.of(endpoint)
    body = msgspec.convert({**msgspec.structs.asdict(shown), "secret": secret}, EndpointCreated)
    headers = {"Location": f"/v1/webhooks/{endpoint.id}", "Cache-Control": "no-store", "ETag": content_tag(shown)}
    return Response(body, status_code=201, headers=headers)


@get("/", summary="List webhook endpoints", opt=_OPT)
async def list_endpoints(
    principal: CurrentPrincipal, db: DbSession, limit: SmallLimit = 50, after: After = None
) -> EndpointList:
    """Your endpoints (an app: those it registered), newest first."""
    page = await WebhookEndpointRepository(db).list_for_user(
        principal.user_id,
        limit=limit,
        after=id_cursor(after, "whe"),
        client_id=principal.client_id if principal.kind == "client" else None,
    )
    return EndpointList(data=[EndpointResponse.of(e) for e in page.items], next_after=page.next_after)


@get("/{endpoint_id:str}", summary="Get a webhook endpoint", response_headers=ETAG_HEADER, opt=_OPT)
async def get_endpoint(
    endpoint_id: EndpointId, principal: CurrentPrincipal, db: DbSession
) -> Response[EndpointResponse]:
    """One of your endpoints, with its ETag; ``status`` and ``disabled_reason`` say whether it receives events."""
    return _tagged(await _own(db, principal, endpoint_id))


@patch("/{endpoint_id:str}", summary="Change a webhook endpoint", response_headers=ETAG_HEADER, opt=_OPT)
async def update_endpoint(  # noqa: PLR0917 - injected parameters
    request: Request[Any, Any, Any],
    endpoint_id: EndpointId,
    data: JSONBody[EndpointUpdate],
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    state: State,
    if_match: IfMatch = None,
) -> Response[EndpointResponse]:
    """Change the URL (checked again), event types or description, or enable/disable the endpoint.
    With ``If-Match``, only if the endpoint is still at that ETag (412 otherwise). An app's endpoint
    whose consent ended cannot be enabled again (409 ``consent_ended``)."""
    await lock_if_matched(db, if_match, WebhookEndpointRow, endpoint_id)
    current = await _own(db, principal, endpoint_id)
    check_if_match(if_match, content_tag(EndpointResponse.of(current)), what="webhook endpoint")
    changes: dict[str, Any] = {}
    if data.url is not msgspec.UNSET and data.url.strip() != current.url:
        changes["url"] = await _service(state).check_url(data.url.strip())
    if data.event_types is not msgspec.UNSET and sorted(set(data.event_types)) != current.event_types:
        _readable(principal, list(data.event_types))
        changes["event_types"] = list(data.event_types)
    if data.description is not msgspec.UNSET and _description(data.description) != current.description:
        changes["description"] = _description(data.description)
    if data.enabled is not msgspec.UNSET and data.enabled != current.enabled:
        if data.enabled:
            ended = await ConsentGate(db, clock.now()).ended(current)
            if ended is not None:
                raise ConsentEnded(f"this endpoint cannot be enabled again: {ended}")
            changes |= {"status": EndpointStatus.ENABLED.value, "disabled_reason": None, "disabled_at": None}
        else:
            changes |= {
                "status": EndpointStatus.DISABLED.value, "disabled_reason": "disabled by its owner",
                "disabled_at": clock.now(),
            }  # fmt: skip
    if not changes:
        unchanged(request)
        return _tagged(current)
    repository = WebhookEndpointRepository(db)
    await repository.update(endpoint_id, now=clock.now(), **changes)
    details: dict[str, str] = {"changed": ",".join(sorted(changes))}
    if "url" in changes:
        details["host"] = _host(changes["url"])
    await audited(request, db, action="webhook.update", target=endpoint_id, now=clock.now(), details=details)
    return _tagged(await _own(db, principal, endpoint_id))


@delete("/{endpoint_id:str}", summary="Delete a webhook endpoint", status_code=204, opt=_OPT)
async def delete_endpoint(  # noqa: PLR0917 - injected parameters
    request: Request[Any, Any, Any],
    endpoint_id: EndpointId,
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    state: State,
) -> None:
    """Stop sending to this endpoint, forget its deliveries and destroy its secret."""
    endpoint = await _own(db, principal, endpoint_id)
    await _service(state).delete_endpoint(db, endpoint)
    await audited(request, db, action="webhook.delete", target=endpoint_id, now=clock.now())


@get("/{endpoint_id:str}/deliveries", summary="List an endpoint's deliveries", opt=_OPT)
async def list_deliveries(  # noqa: PLR0917 - injected parameters
    endpoint_id: EndpointId,
    principal: CurrentPrincipal,
    db: DbSession,
    limit: SmallLimit = 50,
    after: After = None,
    event_type: EventTypeFilter = None,
    since: Since = None,
    until: Until = None,
) -> DeliveryList:
    """Events sent to the endpoint, newest first, each with its attempts (status code or error, time);
    ``event_type``, ``since`` and ``until`` (when the delivery was recorded) narrow them."""
    cursor, period = id_cursor(after, "whd"), time_range(since, until)
    endpoint = await _own(db, principal, endpoint_id)
    deliveries = WebhookDeliveryRepository(db)
    page = await deliveries.page_filtered(
        endpoint.id, event_type=event_type, since=period.since, until=period.until, limit=limit, after=cursor
    )
    attempts = await deliveries.attempts_of([d.id for d in page.items])
    return DeliveryList(data=[_delivery(d, attempts[d.id]) for d in page.items], next_after=page.next_after)


@post(
    "/{endpoint_id:str}/deliveries/{delivery_id:str}/replay",
    summary="Send a delivery again",
    status_code=202,
    opt=_OPT,
)
async def replay_delivery(  # noqa: PLR0917 - injected parameters
    request: Request[Any, Any, Any],
    endpoint_id: EndpointId,
    delivery_id: DeliveryId,
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    state: State,
) -> DeliveryResponse:
    """Send the same event again, with the same ``webhook-id`` (receivers that processed it drop it)
    and a fresh retry window. 409 when the endpoint is disabled."""
    endpoint = await _own(db, principal, endpoint_id)
    delivery = await _own_delivery(db, endpoint, delivery_id)
    if not endpoint.enabled:
        raise EndpointDisabled("the endpoint is disabled; enable it first")
    service = _service(state)
    replayed = await service.replay(db, delivery)
    await audited(request, db, action="webhook.replay", target=delivery.id, now=clock.now(),
                  details={"endpoint_id": endpoint.id, "event_id": delivery.event_id})  # fmt: skip
    attempts = await WebhookDeliveryRepository(db).attempts_of([replayed.id])
    await db.commit()  # due now: wake the sender only once it can see the row
    service.wake()
    return _delivery(replayed, attempts[replayed.id])


@idempotent
@post("/{endpoint_id:str}/test", summary="Send a test event", status_code=202, opt=_OPT)
async def send_test(  # noqa: PLR0917 - injected parameters
    request: Request[Any, Any, Any],
    endpoint_id: EndpointId,
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    state: State,
    idempotency_key: IdempotencyKey = None,  # noqa: ARG001 - claimed by @idempotent before this runs
) -> DeliveryResponse:
    """Send a ``webhook.test`` event to the endpoint now (also to a disabled one, to check a fix before
    enabling it). Follow it in the deliveries list."""
    endpoint = await _own(db, principal, endpoint_id)
    service = _service(state)
    delivery = await service.send_test(db, endpoint)
    await audited(request, db, action="webhook.test", target=endpoint.id, now=clock.now(),
                  details={"delivery_id": delivery.id})  # fmt: skip
    await db.commit()
    service.wake()
    return _delivery(delivery, [])


webhooks_router = Router(
    path="/webhooks",
    route_handlers=[
        create_endpoint,
        list_endpoints,
        get_endpoint,
        update_endpoint,
        delete_endpoint,
        list_deliveries,
        replay_delivery,
        send_test,
    ],
    tags=["webhooks"],
)

__all__ = ["webhooks_router"]
