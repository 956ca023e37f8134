"""``/v1/admin/alerts`` and ``/v1/admin/alert-webhooks``: what the alert rules raised, and where alerts are sent.

Admins only: any other principal gets 403 (the routes' existence is no secret; the OpenAPI
document lists them). Lists are paged by cursor (``limit``, ``after`` = the previous
``next_after``), alerts newest first and filtered by when they were first seen (``since``,
``until``). Acknowledging and resolving are idempotent; acknowledging a resolved alert is a 409
``alert_resolved``. A webhook's signing secret is in the response that creates it and nowhere else
(adding one takes an ``Idempotency-Key``; its stored response is sealed, :mod:`brokerlink.api.idempotency`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from litestar import Request, Response, Router, delete, get, post
from litestar.datastructures import State
from litestar.params import JSONBody, Parameter

from brokerlink.api.audit import audited, unchanged
from brokerlink.api.deps import CurrentPrincipal, DbSession
from brokerlink.api.idempotency import IdempotencyKey, idempotent
from brokerlink.api.paging import After, Limit, Since, Until, id_cursor, page_of, time_range
from brokerlink.api.schemas import RequestBody, ResponseBody
from brokerlink.domain.enums import Role
from brokerlink.engine.alerts.events import EventType
from brokerlink.engine.alerts.service import AlertService
from brokerlink.kit.clock import Clock
from brokerlink.kit.errors import Conflict, NotFound
from brokerlink.security.principal import Principal
from brokerlink.store.models_alerts import AlertStatus, DeliveryStatus
from brokerlink.store.repositories.alerts import Alert, AlertDeliveryRepository, AlertRepository, AlertWebhookRepository

AlertId = Annotated[str, Parameter(description="Alert id (alr_...)", max_length=40)]
WebhookId = Annotated[str, Parameter(description="Webhook id (awh_...)", max_length=40)]
StatusFilter = Annotated[AlertStatus | None, Parameter(description="Only alerts in this status")]
RuleFilter = Annotated[str | None, Parameter(description="Only alerts of this rule", max_length=32)]


class AlertResponse(ResponseBody, kw_only=True):
    """An alert. ``count`` is how many times its rule fired while it was active."""

    id: str
    rule: str
    severity: str
    subject: str
    status: AlertStatus
    message: str
    labels: dict[str, str]
    count: int
    first_seen: datetime
    last_seen: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None


class AlertList(ResponseBody, kw_only=True):
    """One page of alerts, newest first; pass ``next_after`` as ``after`` for the next page."""

    data: list[AlertResponse]
    next_after: str | None


class DeliveryResponse(ResponseBody, kw_only=True):
    """One event of an alert sent to one webhook: attempts so far and the last answer."""

    id: str
    event_id: str
    webhook_id: str
    status: DeliveryStatus
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


class DeliveryList(ResponseBody, kw_only=True):
    """A page of an alert's deliveries, oldest first."""

    data: list[DeliveryResponse]
    next_after: str | None


class WebhookCreate(RequestBody, kw_only=True):
    """A webhook to POST every alert event to: an ``https`` URL on a public address."""

    url: Annotated[str, Parameter(min_length=1, max_length=2048)]


class WebhookResponse(ResponseBody, kw_only=True):
    """A configured webhook (its secret is never shown again)."""

    id: str
    url: str
    created_by: str
    created_at: datetime


class WebhookCreated(WebhookResponse, kw_only=True):
    """A new webhook and its signing secret (``whsec_...``), shown this once: keep it now."""

    secret: str


class WebhookList(ResponseBody, kw_only=True):
    """A page of the configured webhooks, oldest first."""

    data: list[WebhookResponse]
    next_after: str | None


class AlertResolved(Conflict):
    """A resolved alert cannot be acknowledged (if its rule fires again, a new alert opens)."""

    code = "alert_resolved"
    title = "Alert resolved"


def _admin(principal: Principal) -> Principal:
    principal.require_role(Role.ADMIN)
    return principal


def _service(state: State) -> AlertService:
    service: AlertService = state.alerts
    return service


def _clock(state: State) -> Clock:
    clock: Clock = state.clock
    return clock


async def _alert(repository: AlertRepository, alert_id: str) -> Alert:
    alert = await repository.get(alert_id)
    if alert is None:
        raise NotFound("alert not found")
    return alert


# --- alerts ------------------------------------------------------------------------------------------


@get("/alerts", summary="List alerts")
async def list_alerts(  # noqa: PLR0917 - Litestar injects by name
    principal: CurrentPrincipal,
    db: DbSession,
    status: StatusFilter = None,
    rule: RuleFilter = None,
    limit: Limit = 50,
    after: After = None,
    since: Since = None,
    until: Until = None,
) -> AlertList:
    """Alerts, newest first, optionally only those in one ``status`` or of one ``rule``, first seen
    in [``since``, ``until``)."""
    _admin(principal)
    cursor, period = id_cursor(after, "alr"), time_range(since, until)
    page = await AlertRepository(db).list_alerts(
        status=status, rule=rule, since=period.since, until=period.until, limit=limit, after=cursor
    )
    return AlertList(data=[AlertResponse.of(a) for a in page.items], next_after=page.next_after)


@get("/alerts/{alert_id:str}", summary="Get an alert")
async def get_alert(alert_id: AlertId, principal: CurrentPrincipal, db: DbSession) -> AlertResponse:
    """One alert."""
    _admin(principal)
    return AlertResponse.of(await _alert(AlertRepository(db), alert_id))


@get("/alerts/{alert_id:str}/deliveries", summary="An alert's webhook deliveries")
async def list_deliveries(
    alert_id: AlertId, principal: CurrentPrincipal, db: DbSession, limit: Limit = 50, after: After = None
) -> DeliveryList:
    """Each event of the alert sent to each webhook: status, attempts and the last answer; oldest first."""
    _admin(principal)
    cursor = id_cursor(after, "adl")
    await _alert(AlertRepository(db), alert_id)
    deliveries = await AlertDeliveryRepository(db).list_for_alert(alert_id)
    page, next_after = page_of(deliveries, lambda d: d.id, limit=limit, after=cursor)
    return DeliveryList(data=[DeliveryResponse.of(d) for d in page], next_after=next_after)


async def _change(  # noqa: PLR0917 - one change's inputs
    request: Request[Any, Any, Any],
    state: State,
    principal: Principal,
    db: DbSession,
    alert_id: str,
    event_type: EventType,
) -> AlertResponse:
    _admin(principal)
    repository = AlertRepository(db)
    alert = await _alert(repository, alert_id)
    now = _clock(state).now()
    if event_type == "alert.acknowledged":
        if alert.status is AlertStatus.RESOLVED:
            raise AlertResolved("the alert is resolved")
        changed = await repository.acknowledge(alert_id, by=principal.user_id, now=now)
    else:
        changed = await repository.resolve(alert_id, by=principal.user_id, now=now)
    alert = await _alert(repository, alert_id)
    if changed:
        action = "alert.acknowledge" if event_type == "alert.acknowledged" else "alert.resolve"
        await audited(request, db, action=action, target=alert_id, now=now)
        await db.commit()  # the event goes out only for a change that is stored
        _service(state).announce(alert, event_type)
    else:
        unchanged(request)
    return AlertResponse.of(alert)


@post("/alerts/{alert_id:str}/acknowledge", summary="Acknowledge an alert", status_code=200)
async def acknowledge_alert(
    request: Request[Any, Any, Any], alert_id: AlertId, principal: CurrentPrincipal, db: DbSession, state: State
) -> AlertResponse:
    """Mark an open alert as seen. Idempotent; 409 for a resolved alert."""
    return await _change(request, state, principal, db, alert_id, "alert.acknowledged")


@post("/alerts/{alert_id:str}/resolve", summary="Resolve an alert", status_code=200)
async def resolve_alert(
    request: Request[Any, Any, Any], alert_id: AlertId, principal: CurrentPrincipal, db: DbSession, state: State
) -> AlertResponse:
    """Close an alert. Idempotent. If its rule fires again, a new alert opens."""
    return await _change(request, state, principal, db, alert_id, "alert.resolved")


# --- webhooks ----------------------------------------------------------------------------------------


@get("/alert-webhooks", summary="List alert webhooks")
async def list_webhooks(
    principal: CurrentPrincipal, db: DbSession, limit: Limit = 50, after: After = None
) -> WebhookList:
    """Every URL alerts are sent to, oldest first."""
    _admin(principal)
    cursor = id_cursor(after, "awh")
    webhooks = await AlertWebhookRepository(db).list_all()
    page, next_after = page_of(webhooks, lambda w: w.id, limit=limit, after=cursor)
    return WebhookList(data=[WebhookResponse.of(w) for w in page], next_after=next_after)


@idempotent(sealed=True)
@post("/alert-webhooks", summary="Add an alert webhook", status_code=201)
async def create_webhook(  # noqa: PLR0917 - Litestar injects by name
    request: Request[Any, Any, Any],
    data: JSONBody[WebhookCreate],
    principal: CurrentPrincipal,
    db: DbSession,
    state: State,
    idempotency_key: IdempotencyKey = None,  # noqa: ARG001 - claimed by @idempotent before this runs
) -> Response[WebhookCreated]:
    """Send every alert event to ``url``, signed (Standard Webhooks). The response carries the
    signing secret, once. 422 for a URL that is not https or resolves to a non-public address."""
    _admin(principal)
    webhook, secret = await _service(state).create_webhook(db, url=data.url.strip(), created_by=principal.user_id)
    await audited(
        request, db, action="alert_webhook.create", target=webhook.id, now=_clock(state).now(),
        details={"host": urlsplit(webhook.url).hostname},  # not the URL: webhook paths often embed a secret
    )  # fmt: skip
    body = WebhookCreated(
        id=webhook.id, url=webhook.url, created_by=webhook.created_by, created_at=webhook.created_at, secret=secret
    )
    return Response(
        body,
        status_code=201,
        headers={"Location": f"/v1/admin/alert-webhooks/{webhook.id}", "Cache-Control": "no-store"},
    )


@delete("/alert-webhooks/{webhook_id:str}", summary="Remove an alert webhook", status_code=204)
async def delete_webhook(
    request: Request[Any, Any, Any], webhook_id: WebhookId, principal: CurrentPrincipal, db: DbSession, state: State
) -> None:
    """Stop sending alerts to this webhook and destroy its secret."""
    _admin(principal)
    if not await _service(state).delete_webhook(db, webhook_id):
        raise NotFound("webhook not found")
    await audited(request, db, action="alert_webhook.delete", target=webhook_id, now=_clock(state).now())


admin_alerts_router = Router(
    path="/admin",
    route_handlers=[
        list_alerts,
        get_alert,
        list_deliveries,
        acknowledge_alert,
        resolve_alert,
        list_webhooks,
        create_webhook,
        delete_webhook,
    ],
    tags=["admin"],
)
