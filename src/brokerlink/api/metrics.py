"""``GET /metrics``: the Prometheus exposition of :data:`brokerlink.observe.REGISTRY` (ADR 0018).

Metrics say who signs in how often, which brokers are down and how much copy trading flows: not for
the public. The route is outside the session authentication (Prometheus has no session) and asks
for its own credential instead: ``Authorization: Bearer <metrics_token>``, compared in constant
time. Without a configured token the route answers 404, as if it did not exist: metrics are off
until an operator turns them on. A wrong token is a 401 and an ``auth_failure`` observation, so
guessing at it shows up like guessing at a password; the IP rate limit applies as to any route.

The outbox depth is a count in the database, not an event: it is read at each scrape, so the gauge
is right even when nothing happens (and after a restart, before the engine has sent anything).
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Request, Response, get

from brokerlink import observe
from brokerlink.api.deps import AppSettings, DbSession
from brokerlink.kit.errors import NotAuthenticated, NotFound
from brokerlink.store.repositories.copy_intents import CopyIntentRepository

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="metrics"'}


def _bearer(request: Request[Any, Any, Any]) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


@get(
    "/metrics",
    opt={"exclude_from_auth": True},
    include_in_schema=False,
    summary="Prometheus metrics",
    tags=["health"],
)
async def metrics(request: Request[Any, Any, Any], settings: AppSettings, db: DbSession) -> Response[bytes]:
    """The metrics in Prometheus' text format, for a scraper holding the metrics token."""
    if settings.metrics_token is None:
        raise NotFound("metrics are not enabled on this server")
    expected = settings.metrics_token.get_secret_value().encode()
    given = _bearer(request)
    if given is None or not hmac.compare_digest(given.encode(), expected):
        ip = request.client.host if request.client else ""
        observe.auth_failure(principal="metrics", ip=ip, reason="metrics_token")
        raise NotAuthenticated("GET /metrics needs Authorization: Bearer <metrics token>", headers=_CHALLENGE)
    observe.outbox_depth(depth=await CopyIntentRepository(db).count_unanswered())
    body, content_type = observe.exposition()
    return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})
