"""``/v1/webhooks``: register endpoints, see their deliveries with every attempt, replay, test.

A user sees only their own endpoints and deliveries: another user's answer 404 exactly like missing
ones (SECURITY.md 19). Events reach an endpoint only for its owner's accounts and subscriptions (the
service looks the owner up per event). First-party only for now: :mod:`brokerlink.api.scopes`
has no ``webhooks`` scope, so apps get 403 ``first_party_only`` (ADR 0028).

A URL must be ``https`` on a public address (422 naming ``url`` otherwise, SECURITY.md 30) unless
``webhook_allowed_hosts`` lists it. The signing secret is in the creation response and nowhere else
(``Cache-Control: no-store``); it is sealed in the vault. Creation takes no ``Idempotency-Key``: a
stored replay would keep the secret outside the vault (ADR 0028). Lists are newest first, paged
by cursor (``limit`` up to 100, ``after`` = the previous ``next_after``). Every change writes one
audit record; the audit details name the URL's host, not the URL (paths often carry a token).
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
from brokerlink.api.scopes import first_party
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
from brokerlink.engine.webhooks.service import STATE_KEY, WebhookService
from brokerlink.kit.errors import Conflict, NotFound
from brokerlink.security.principal import Principal
from brokerlink.store.models_webhooks import EndpointStatus
from brokerlink.store.repositories.webhooks import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookDeliveryRepository,
    WebhookEndpoint,
    WebhookEndpointRepository,
)

EndpointId = Annotated[str, Parameter(description="Webhook endpoint id (whe_...)", max_length=40)]
DeliveryId = Annotated[str, Parameter(description="Delivery id (whd_...)", max_length=40)]
Limit = Annotated[int, Parameter(description="Page size", ge=1, le=100)]
After = Annotated[str | None, Parameter(description="Cursor: next_after of the previous page", max_length=40)]
_OPT = first_party()


def _service(state: State) -> WebhookService:
    service: WebhookService = state[STATE_KEY]
    return service


def _host(url: str) -> str:
    return urlsplit(url).hostname or ""


async def _own(db: AsyncSession, principal: Principal, endpoint_id: str) -> WebhookEndpoint:
    endpoint = await WebhookEndpointRepository(db).get_for_user(principal.user_id, endpoint_id)
    if endpoint is None:
        raise NotFound("webhook endpoint not found")
    return endpoint


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


@post("/", summary="Register a webhook endpoint", status_code=201, opt=_OPT)
async def create_endpoint(  # noqa: PLR0917 - injected parameters
    request: Request[Any, Any, Any],
    data: JSONBody[EndpointCreate],
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    state: State,
) -> Response[EndpointCreated]:
    """Receive the listed event types at ``url``, signed (Standard Webhooks). The response carries
    the signing secret, once. 422 for a URL that is not https or resolves to a non-public address,
    409 past ``webhook_max_endpoints``."""
    settings: Settings = state.settings
    repository = WebhookEndpointRepository(db)
    if await repository.count_for_user(principal.user_id) >= settings.webhook_max_endpoints:
        raise Conflict(f"at most {settings.webhook_max_endpoints} webhook endpoints per user")
    endpoint, secret = await _service(state).create_endpoint(
        db,
        user_id=principal.user_id,
        url=data.url.strip(),
        description=_description(data.description),
        event_types=data.event_types,
    )
    await audited(
        request, db, action="webhook.create", target=endpoint.id, now=clock.now(),
        details={"host": _host(endpoint.url), "event_types": ",".join(endpoint.event_types)},
    )  # fmt: skip
    body = msgspec.convert({**msgspec.structs.asdict(EndpointResponse.of(endpoint)), "secret": secret}, EndpointCreated)
    return Response(
        body, status_code=201, headers={"Location": f"/v1/webhooks/{endpoint.id}", "Cache-Control": "no-store"}
    )


@get("/", summary="List webhook endpoints", opt=_OPT)
async def list_endpoints(
    principal: CurrentPrincipal, db: DbSession, limit: Limit = 50, after: After = None
) -> EndpointList:
    """Your endpoints, newest first."""
    page = await WebhookEndpointRepository(db).list_for_user(principal.user_id, limit=limit, after=after)
    return EndpointList(data=[EndpointResponse.of(e) for e in page.items], next_after=page.next_after)


@get("/{endpoint_id:str}", summary="Get a webhook endpoint", opt=_OPT)
async def get_endpoint(endpoint_id: EndpointId, principal: CurrentPrincipal, db: DbSession) -> EndpointResponse:
    """One of your endpoints; ``status`` and ``disabled_reason`` say whether it receives events."""
    return EndpointResponse.of(await _own(db, principal, endpoint_id))


@patch("/{endpoint_id:str}", summary="Change a webhook endpoint", opt=_OPT)
async def update_endpoint(  # noqa: PLR0917 - injected parameters
    request: Request[Any, Any, Any],
    endpoint_id: EndpointId,
    data: JSONBody[EndpointUpdate],
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    state: State,
) -> EndpointResponse:
    """Change the URL (checked again), event types or description, or enable/disable the endpoint."""
    current = await _own(db, principal, endpoint_id)
    changes: dict[str, Any] = {}
    if data.url is not msgspec.UNSET and data.url.strip() != current.url:
        changes["url"] = await _service(state).check_url(data.url.strip())
    if data.event_types is not msgspec.UNSET and sorted(set(data.event_types)) != current.event_types:
        changes["event_types"] = list(data.event_types)
    if data.description is not msgspec.UNSET and _description(data.description) != current.description:
        changes["description"] = _description(data.description)
    if data.enabled is not msgspec.UNSET and data.enabled != current.enabled:
        if data.enabled:
            changes |= {"status": EndpointStatus.ENABLED.value, "disabled_reason": None, "disabled_at": None}
        else:
            changes |= {
                "status": EndpointStatus.DISABLED.value, "disabled_reason": "disabled by its owner",
                "disabled_at": clock.now(),
            }  # fmt: skip
    if not changes:
        unchanged(request)
        return EndpointResponse.of(current)
    repository = WebhookEndpointRepository(db)
    await repository.update(endpoint_id, now=clock.now(), **changes)
    details: dict[str, str] = {"changed": ",".join(sorted(changes))}
    if "url" in changes:
        details["host"] = _host(changes["url"])
    await audited(request, db, action="webhook.update", target=endpoint_id, now=clock.now(), details=details)
    return EndpointResponse.of(await _own(db, principal, endpoint_id))


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
async def list_deliveries(
    endpoint_id: EndpointId, principal: CurrentPrincipal, db: DbSession, limit: Limit = 50, after: After = None
) -> DeliveryList:
    """Events sent to the endpoint, newest first, each with its attempts (status code or error, time)."""
    endpoint = await _own(db, principal, endpoint_id)
    deliveries = WebhookDeliveryRepository(db)
    page = await deliveries.list_for_endpoint(endpoint.id, limit=limit, after=after)
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
        raise Conflict("the endpoint is disabled; enable it first")
    service = _service(state)
    replayed = await service.replay(db, delivery)
    await audited(request, db, action="webhook.replay", target=delivery.id, now=clock.now(),
                  details={"endpoint_id": endpoint.id, "event_id": delivery.event_id})  # fmt: skip
    attempts = await WebhookDeliveryRepository(db).attempts_of([replayed.id])
    await db.commit()  # due now: wake the sender only once it can see the row
    service.wake()
    return _delivery(replayed, attempts[replayed.id])


@post("/{endpoint_id:str}/test", summary="Send a test event", status_code=202, opt=_OPT)
async def send_test(  # noqa: PLR0917 - injected parameters
    request: Request[Any, Any, Any],
    endpoint_id: EndpointId,
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    state: State,
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
