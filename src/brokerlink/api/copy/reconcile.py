"""``/v1/subscriptions/{id}/reconciliation``: a follower's copies compared with what their broker holds.

``GET`` reports (:mod:`brokerlink.engine.copy.reconcile`); ``POST`` runs it again and, with
``{"repair": true}``, repairs what it safely can: orphan copies are closed at market, links that
claim more than is held shrink or close. It never opens anything and never touches positions the
follower took by hand. Only the subscription's follower sees it; anyone else gets 404, as for a
subscription that does not exist. Accounts whose broker connection is down are not compared.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from litestar import Request, Router, get, post
from litestar.datastructures import State
from litestar.params import JSONBody

from brokerlink.api.audit import audited
from brokerlink.api.copy.routes import SubscriptionId, _subscription
from brokerlink.api.copy.schemas import CopyIntentResponse
from brokerlink.api.deps import AppClock, CurrentPrincipal, DbSession, Links
from brokerlink.api.idempotency import IdempotencyKey, idempotent
from brokerlink.api.schemas import RequestBody, ResponseBody
from brokerlink.api.scopes import needs
from brokerlink.domain.enums import Side
from brokerlink.engine.copy.reconcile import FindingKind, RepairAction, Report, reconcile
from brokerlink.engine.copy.service import CopyEngine
from brokerlink.store.db import Database


class ReconciliationRequest(RequestBody, kw_only=True):
    """Reconcile now; ``repair: true`` also repairs (off by default: a report only)."""

    repair: bool = False


class FindingResponse(ResponseBody, kw_only=True):
    """One discrepancy. ``expected`` and ``actual`` are the account's signed totals in ``symbol`` (every
    copy into it, and the broker's position); the link fields are set for ``drift``, ``orphan_link`` and
    ``missing_position``, ``excess`` for ``untracked``."""

    kind: FindingKind
    symbol: str
    expected: Decimal
    actual: Decimal
    link_id: str | None
    provider_symbol: str | None
    side: Side | None
    link_qty: Decimal | None
    held: Decimal | None
    provider_qty: Decimal | None
    excess: Decimal | None
    detail: str


class RepairResponse(ResponseBody, kw_only=True):
    """What a repair did to one link; ``intent_id`` is the closing order, if one was placed."""

    link_id: str
    kind: FindingKind
    action: RepairAction
    qty: Decimal
    intent_id: str | None
    detail: str


class ReconciliationResponse(ResponseBody, kw_only=True):
    """A reconciliation of one subscription. ``clean``: no ``drift``, ``orphan_link`` or ``missing_position``
    is left unrepaired (``untracked``, ``in_flight`` and ``unverified`` are information)."""

    subscription_id: str
    checked_at: datetime
    clean: bool
    counts: dict[str, int]
    findings: list[FindingResponse]
    repairs: list[RepairResponse]
    intents: list[CopyIntentResponse]

    @classmethod
    def render(cls, subscription_id: str, report: Report) -> ReconciliationResponse:
        """The response for one subscription's report."""
        return cls(
            subscription_id=subscription_id,
            checked_at=report.checked_at,
            clean=report.clean,
            counts=report.counts(),
            findings=[FindingResponse.of(f) for f in report.findings],
            repairs=[RepairResponse.of(r) for r in report.repairs],
            intents=[CopyIntentResponse.of(i) for i in report.intents],
        )


@get(
    "/{subscription_id:str}/reconciliation",
    summary="Compare a subscription's copies with the broker",
    opt=needs("copy:read"),
)
async def get_reconciliation(  # noqa: PLR0917 - injected parameters
    subscription_id: SubscriptionId,
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    links: Links,
    state: State,
) -> ReconciliationResponse:
    """What the subscription's copies should hold against what the follower's broker reports: ``drift``,
    ``orphan_link`` (the provider is flat, nobody will close the copy), ``missing_position``, and
    ``untracked`` holdings (the follower's own trades). Changes nothing."""
    await _subscription(db, principal, subscription_id)
    database: Database = state.db
    report = await reconcile(database, clock, subscription_id=subscription_id, is_live=links.is_live)
    return ReconciliationResponse.render(subscription_id, report)


@idempotent
@post(
    "/{subscription_id:str}/reconciliation",
    summary="Reconcile a subscription now (and repair)",
    status_code=200,
    opt=needs("copy:manage"),
)
async def run_reconciliation(  # noqa: PLR0917 - injected parameters
    request: Request[Any, Any, Any],
    subscription_id: SubscriptionId,
    data: JSONBody[ReconciliationRequest],
    principal: CurrentPrincipal,
    db: DbSession,
    clock: AppClock,
    links: Links,
    state: State,
    idempotency_key: IdempotencyKey = None,  # noqa: ARG001 - claimed by @idempotent before this runs
) -> ReconciliationResponse:
    """Reconcile now. With ``repair: true``: orphan copies are closed at market (the closing orders are
    in ``intents``), links claiming more than is held shrink to it or close. Nothing is ever opened
    (no catch-up trades), and ``untracked`` holdings are never touched."""
    await _subscription(db, principal, subscription_id)
    await db.commit()  # the reconciliation writes through sessions of its own
    database: Database = state.db
    # A run the follower asked for is recorded in their feed, even when it finds nothing.
    report = await reconcile(
        database, clock, subscription_id=subscription_id, repair=data.repair, is_live=links.is_live, record=True
    )
    # The run wrote through its own sessions; its record follows in the request's (ADR 0016).
    await audited(
        request, db, action="subscription.reconcile", target=subscription_id, now=clock.now(),
        details={"repair": data.repair, "findings": len(report.findings), "closing_orders": len(report.intents)},
    )  # fmt: skip
    engine: CopyEngine | None = state.get("copy_engine")
    if engine is not None and report.intents:
        engine.dispatch(report.intents)
    return ReconciliationResponse.render(subscription_id, report)


reconciliation_router = Router(
    path="/subscriptions", route_handlers=[get_reconciliation, run_reconciliation], tags=["copy"]
)
