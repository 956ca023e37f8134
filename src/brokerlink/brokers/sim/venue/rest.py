"""The venue's REST API under ``/api/v1`` (ADR 0006): thin handlers over :class:`Venue`.

Every request passes :func:`enter`: injected latency, then the rate limit (per presented API key,
before authentication, as venues count by key or IP), then authentication. The rate-limit headers
go on every answer, errors included. Bodies are decoded with msgspec against the wire structs, so
an unknown field or a float where a decimal string belongs is a 400 ``invalid_order``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from litestar import Request, Response, Router, delete, get, patch, post

from brokerlink.brokers.sim.gate import ApiKey, WireError
from brokerlink.brokers.sim.wire import API_PREFIX, HEADER_API_KEY, AmendOrder, ErrorBody, ErrorCode, NewOrder

if TYPE_CHECKING:
    from brokerlink.brokers.sim.venue.state import Venue

T = TypeVar("T")
AnyRequest = Request[Any, Any, Any]


@dataclass(frozen=True, slots=True)
class Entered:
    """An admitted, authenticated request: the venue, the caller's key, its body and the rate headers."""

    venue: Venue
    key: ApiKey
    body: bytes
    headers: dict[str, str]


def venue_of(request: AnyRequest) -> Venue:
    """The venue behind the app."""
    venue: Venue = request.app.state.venue
    return venue


async def enter(request: AnyRequest) -> Entered:
    """Latency fault, rate limit, authentication: what every REST request goes through first."""
    venue = venue_of(request)
    await venue.faults.delay()
    body = await request.body()
    presented = request.headers.get(HEADER_API_KEY) or f"ip:{request.client.host if request.client else '?'}"
    decision = venue.gate.admit(presented)
    headers = decision.headers()
    request.state.rate_headers = headers  # the error handler adds them to refusals raised deeper down
    if not decision.allowed:
        raise WireError(429, ErrorCode.RATE_LIMITED, "rate limit exceeded", headers)
    if venue.faults.take_rate_limit():
        raise WireError(429, ErrorCode.RATE_LIMITED, "rate limit exceeded (injected)", {"Retry-After": "1"})
    query = request.scope.get("query_string", b"").decode()
    path = request.url.path + (f"?{query}" if query else "")
    try:
        key = venue.gate.authenticate(request.headers, request.method, path, body)
    except WireError as exc:
        exc.headers.update(headers)
        raise
    return Entered(venue=venue, key=key, body=body, headers=headers)


def reply(ctx: Entered, body: object, status: int = 200) -> Response[bytes]:
    """A JSON answer with the rate-limit headers."""
    return Response(msgspec.json.encode(body), status_code=status, media_type="application/json", headers=ctx.headers)


def wire_error_response(request: AnyRequest, exc: WireError) -> Response[bytes]:
    """``{"code", "message"}`` with the error's status and headers."""
    body = msgspec.json.encode(ErrorBody(code=exc.code, message=exc.message))
    headers = {**getattr(request.state, "rate_headers", {}), **exc.headers}
    return Response(body, status_code=exc.status, media_type="application/json", headers=headers)


def _decode(body: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.DecodeError as exc:
        raise WireError(400, ErrorCode.INVALID_ORDER, f"invalid request body: {exc}") from None


def _int_param(request: AnyRequest, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise WireError(400, ErrorCode.INVALID_ORDER, f"{name} must be an integer") from None


def _fail_after_accept(ctx: Entered) -> None:
    """The injected 500 after an order request was executed: the client cannot know the outcome."""
    if ctx.venue.faults.take_fail_after_accept():
        raise WireError(500, ErrorCode.INTERNAL, "internal error (injected fault: fail_after_accept)", ctx.headers)


@get("/account")
async def get_account(request: AnyRequest) -> Response[bytes]:
    """Cash, equity, buying power, margin used."""
    ctx = await enter(request)
    return reply(ctx, ctx.venue.account_body(ctx.key.account_id))


@get("/instruments")
async def get_instruments(request: AnyRequest) -> Response[bytes]:
    """Every instrument with its grid and limits."""
    ctx = await enter(request)
    return reply(ctx, ctx.venue.instruments())


@post("/orders", status_code=201)
async def post_order(request: AnyRequest) -> Response[bytes]:
    """A new order; 201 with the order as it stands after matching."""
    ctx = await enter(request)
    order = ctx.venue.place(ctx.key.account_id, _decode(ctx.body, NewOrder))
    _fail_after_accept(ctx)
    return reply(ctx, order, 201)


@get("/orders")
async def get_orders(request: AnyRequest) -> Response[bytes]:
    """Working orders (``status=open``, the default) or every order (``status=all``)."""
    ctx = await enter(request)
    status = request.query_params.get("status") or "open"
    if status not in {"open", "all"}:
        raise WireError(400, ErrorCode.INVALID_ORDER, "status must be open or all", ctx.headers)
    return reply(ctx, ctx.venue.orders(ctx.key.account_id, open_only=status == "open"))


@delete("/orders", status_code=200)
async def delete_orders(request: AnyRequest) -> Response[bytes]:
    """Cancel every working order (of ``symbol`` when given); the canceled orders."""
    ctx = await enter(request)
    canceled = ctx.venue.cancel_all(ctx.key.account_id, request.query_params.get("symbol") or None)
    _fail_after_accept(ctx)
    return reply(ctx, canceled)


@get("/orders/by-client-id/{client_order_id:str}")
async def get_order_by_client_id(request: AnyRequest) -> Response[bytes]:
    """One order by client order id."""
    client_order_id: str = request.path_params["client_order_id"]
    ctx = await enter(request)
    return reply(ctx, ctx.venue.order_by_client_id(ctx.key.account_id, client_order_id))


@patch("/orders/by-client-id/{client_order_id:str}")
async def patch_order(request: AnyRequest) -> Response[bytes]:
    """Amend qty, limit price or stop price."""
    client_order_id: str = request.path_params["client_order_id"]
    ctx = await enter(request)
    order = ctx.venue.amend(ctx.key.account_id, client_order_id, _decode(ctx.body, AmendOrder))
    _fail_after_accept(ctx)
    return reply(ctx, order)


@delete("/orders/by-client-id/{client_order_id:str}", status_code=200)
async def delete_order(request: AnyRequest) -> Response[bytes]:
    """Cancel one order; the order as canceled."""
    client_order_id: str = request.path_params["client_order_id"]
    ctx = await enter(request)
    order = ctx.venue.cancel(ctx.key.account_id, client_order_id)
    _fail_after_accept(ctx)
    return reply(ctx, order)


@get("/orders/{order_id:str}")
async def get_order(request: AnyRequest) -> Response[bytes]:
    """One order by venue order id."""
    order_id: str = request.path_params["order_id"]
    ctx = await enter(request)
    return reply(ctx, ctx.venue.order(ctx.key.account_id, order_id))


@get("/fills")
async def get_fills(request: AnyRequest) -> Response[bytes]:
    """Fills after ``since_id``, oldest first, at most ``limit`` (default 100, at most 1000)."""
    ctx = await enter(request)
    since = _int_param(request, "since_id", 0)
    limit = _int_param(request, "limit", 100)
    return reply(ctx, ctx.venue.fills(ctx.key.account_id, since, limit))


@get("/positions")
async def get_positions(request: AnyRequest) -> Response[bytes]:
    """Open positions."""
    ctx = await enter(request)
    return reply(ctx, ctx.venue.positions(ctx.key.account_id))


@get("/quotes/{symbol:str}")
async def get_quote(request: AnyRequest) -> Response[bytes]:
    """Top of book."""
    symbol: str = request.path_params["symbol"]
    ctx = await enter(request)
    return reply(ctx, ctx.venue.quote(symbol))


@get("/depth/{symbol:str}")
async def get_depth(request: AnyRequest) -> Response[bytes]:
    """Depth snapshot with ``last_update_id``; ``levels`` per side (all when absent)."""
    symbol: str = request.path_params["symbol"]
    ctx = await enter(request)
    levels = _int_param(request, "levels", -1)
    if levels == 0 or levels < -1:
        raise WireError(400, ErrorCode.INVALID_ORDER, "levels must be a positive integer", ctx.headers)
    return reply(ctx, ctx.venue.depth(symbol, None if levels == -1 else levels))


def api_router() -> Router:
    """The ``/api/v1`` routes."""
    return Router(
        path=API_PREFIX,
        route_handlers=[
            get_account,
            get_instruments,
            post_order,
            get_orders,
            delete_orders,
            get_order_by_client_id,
            patch_order,
            delete_order,
            get_order,
            get_fills,
            get_positions,
            get_quote,
            get_depth,
        ],
    )
