"""``/v1/admin/brokers``: the broker kinds this server links, and how their links stand (admins only).

A broker kind is registered in code (an adapter, ``brokers.base.adapter_kinds``), and which hosts its
links may reach is configuration (``BROKERLINK_BROKER_HOSTS``); this is the administrator's view of
both sides: each kind, the credential fields it asks for, and every user's connections to it counted
by state (``connected``, ``degraded``, ``revoked``...), so a broker that went down or revoked its
links shows at once. Paged by kind like every list (:mod:`brokerlink.api.paging`).
"""

from __future__ import annotations

from typing import Annotated

from litestar import Router, get
from litestar.params import Parameter

from brokerlink.api.deps import DbSession
from brokerlink.api.paging import After, Limit, key_cursor, page_of
from brokerlink.api.schemas import ResponseBody
from brokerlink.api.scopes import require_roles
from brokerlink.brokers.base import adapter_credential_fields, adapter_kinds
from brokerlink.domain.enums import ConnectionState, Role
from brokerlink.kit.errors import NotFound
from brokerlink.store.repositories.connections import ConnectionRepository

BrokerKindName = Annotated[str, Parameter(description="Broker kind, e.g. sim, alpaca, oanda", max_length=32)]
ADMINS_ONLY = [require_roles(Role.ADMIN)]


class BrokerSummary(ResponseBody, kw_only=True):
    """A broker kind, the credential fields linking it needs, and its links counted by state."""

    kind: str
    credential_fields: list[str]
    connections: dict[str, int]
    """Every state (``connecting``, ``connected``, ``degraded``, ``disconnected``, ``revoked``) with its count."""
    total: int


class BrokerSummaryList(ResponseBody, kw_only=True):
    """One page of broker kinds, by kind."""

    data: list[BrokerSummary]
    next_after: str | None


def _summary(kind: str, counts: dict[str, int]) -> BrokerSummary:
    by_state = {state.value: counts.get(state.value, 0) for state in ConnectionState}
    return BrokerSummary(
        kind=kind,
        credential_fields=list(adapter_credential_fields(kind)),
        connections=by_state,
        total=sum(by_state.values()),
    )


@get("/", summary="List broker kinds and their links", guards=ADMINS_ONLY)
async def list_brokers(db: DbSession, limit: Limit = 50, after: After = None) -> BrokerSummaryList:
    """Every broker kind this server can link, with its links counted by state. Admins only."""
    cursor = key_cursor(after)
    counts = await ConnectionRepository(db).count_by_broker()
    page, next_after = page_of(list(adapter_kinds()), str, limit=limit, after=cursor)
    return BrokerSummaryList(data=[_summary(k, counts.get(k, {})) for k in page], next_after=next_after)


@get("/{kind:str}", summary="Get a broker kind and its links", guards=ADMINS_ONLY)
async def get_broker(kind: BrokerKindName, db: DbSession) -> BrokerSummary:
    """One broker kind. 404 for a kind this server cannot link. Admins only."""
    if kind not in adapter_kinds():
        raise NotFound("broker kind not found")
    return _summary(kind, (await ConnectionRepository(db).count_by_broker()).get(kind, {}))


admin_brokers_router = Router(path="/admin/brokers", route_handlers=[list_brokers, get_broker], tags=["admin"])
