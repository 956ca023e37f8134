"""The test venue's REST API: Alpaca's Trading API v2 paths and the latest-quote paths of Market Data.

Every request passes :func:`enter`: injected latency, then the rate limit (200 requests a minute per
presented key, counted before authentication as Alpaca counts by key), then the key headers. Every
answer, errors included, carries ``X-Ratelimit-Limit``, ``X-Ratelimit-Remaining`` and
``X-Ratelimit-Reset`` (a Unix time in seconds); a refusal is ``429`` with
``{"code": 42910000, "message": "rate limit exceeded"}``. Errors are ``{"code", "message"}``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from litestar import Request, Response, Router, delete, get, patch, post

from brokerlink.brokers.alpaca.venue import reports
from brokerlink.brokers.alpaca.venue.orders import AlpacaError, invalid
from brokerlink.brokers.alpaca.wire import (
    CRYPTO_LATEST_QUOTES_PATH,
    HEADER_KEY_ID,
    HEADER_SECRET_KEY,
    MAX_ACTIVITIES_PAGE,
    STOCK_LATEST_QUOTES_PATH,
    ErrorBody,
    ErrorCode,
    LatestQuotes,
    NewOrder,
    ReplaceOrder,
)

if TYPE_CHECKING:
    from brokerlink.brokers.alpaca.venue.state import AlpacaVenue

T = TypeVar("T")
AnyRequest = Request[Any, Any, Any]


@dataclass(frozen=True, slots=True)
class Entered:
    """An admitted, authenticated request."""

    venue: AlpacaVenue
    account_id: str
    body: bytes
    headers: dict[str, str]


def venue_of(request: AnyRequest) -> AlpacaVenue:
    """The venue behind the app."""
    venue: AlpacaVenue = request.app.state.venue
    return venue


def _rate_headers(limit: int, remaining: int, reset_in_s: int) -> dict[str, str]:
    return {
        "X-Ratelimit-Limit": str(limit),
        "X-Ratelimit-Remaining": str(remaining),
        "X-Ratelimit-Reset": str(math.ceil(time.time()) + max(0, reset_in_s)),
    }


async def enter(request: AnyRequest) -> Entered:
    """Latency fault, rate limit, key headers: what every REST request goes through first."""
    venue = venue_of(request)
    await venue.faults.delay()
    body = await request.body()
    key_id = request.headers.get(HEADER_KEY_ID, "")
    decision = venue.core.gate.admit(key_id or f"ip:{request.client.host if request.client else '?'}")
    headers = _rate_headers(decision.limit, decision.remaining, decision.reset_s)
    request.state.rate_headers = headers
    if not decision.allowed:
        raise AlpacaError(429, ErrorCode.RATE_LIMITED, "rate limit exceeded", headers)
    if venue.faults.take_rate_limit():
        limited = _rate_headers(decision.limit, 0, 1)
        request.state.rate_headers = limited
        raise AlpacaError(429, ErrorCode.RATE_LIMITED, "rate limit exceeded", limited)
    account_id = venue.account_id(key_id, request.headers.get(HEADER_SECRET_KEY, ""))
    if account_id is None:
        raise AlpacaError(401, ErrorCode.UNAUTHORIZED, "request is not authorized", headers)
    return Entered(venue=venue, account_id=account_id, body=body, headers=headers)


def reply(ctx: Entered, body: object, status: int = 200) -> Response[bytes]:
    """A JSON answer with the rate-limit headers."""
    return Response(msgspec.json.encode(body), status_code=status, media_type="application/json", headers=ctx.headers)


def alpaca_error_response(request: AnyRequest, exc: AlpacaError) -> Response[bytes]:
    """``{"code", "message"}`` with the error's status, and the rate-limit headers."""
    body = msgspec.json.encode(ErrorBody(code=int(exc.code), message=exc.message))
    headers = {**getattr(request.state, "rate_headers", {}), **exc.headers}
    return Response(body, status_code=exc.status, media_type="application/json", headers=headers)


def _decode(body: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise invalid(str(exc)) from None
    except msgspec.DecodeError:
        raise AlpacaError(400, ErrorCode.INVALID_REQUEST, "request body format is invalid") from None


def _int_param(request: AnyRequest, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise invalid(f"{name} must be an integer") from None


def _fail_after_accept(ctx: Entered) -> None:
    """The injected 500 after an order request was executed: the client cannot know the outcome."""
    if ctx.venue.faults.take_fail_after_accept():
        raise AlpacaError(500, ErrorCode.INTERNAL, "internal server error (injected fault: fail_after_accept)")


@get("/v2/account")
async def get_account(request: AnyRequest) -> Response[bytes]:
    """The account: cash, equity, buying power."""
    ctx = await enter(request)
    return reply(ctx, reports.account(ctx.venue, ctx.account_id))


@get("/v2/assets")
async def get_assets(request: AnyRequest) -> Response[bytes]:
    """Assets, optionally ``status=active`` and ``asset_class=us_equity|crypto``."""
    ctx = await enter(request)
    params = request.query_params
    return reply(ctx, reports.assets(ctx.venue, status=params.get("status"), asset_class=params.get("asset_class")))


@post("/v2/orders", status_code=200)
async def post_order(request: AnyRequest) -> Response[bytes]:
    """A new order; the order as it stands after matching."""
    ctx = await enter(request)
    order = ctx.venue.place(ctx.account_id, _decode(ctx.body, NewOrder))
    _fail_after_accept(ctx)
    return reply(ctx, order)


@get("/v2/orders")
async def get_orders(request: AnyRequest) -> Response[bytes]:
    """Orders: ``status`` open (default), closed or all; ``limit`` (50, at most 500); ``direction``; ``symbols``."""
    ctx = await enter(request)
    params = request.query_params
    symbols = {s.strip() for s in (params.get("symbols") or "").split(",") if s.strip()}
    orders = ctx.venue.orders(
        ctx.account_id,
        status=params.get("status") or "open",
        limit=_int_param(request, "limit", 50),
        ascending=params.get("direction") == "asc",
        symbols=symbols or None,
    )
    return reply(ctx, orders)


@delete("/v2/orders", status_code=207)
async def delete_orders(request: AnyRequest) -> Response[bytes]:
    """Cancel every open order: HTTP 207 with the id and status of each cancel request."""
    ctx = await enter(request)
    results = ctx.venue.cancel_all(ctx.account_id)
    _fail_after_accept(ctx)
    return reply(ctx, results, 207)


@get("/v2/orders:by_client_order_id")
async def get_order_by_client_id(request: AnyRequest) -> Response[bytes]:
    """One order by ``client_order_id`` (a query parameter)."""
    ctx = await enter(request)
    client_order_id = request.query_params.get("client_order_id") or ""
    return reply(ctx, ctx.venue.order_by_client_id(ctx.account_id, client_order_id))


@get("/v2/orders/{order_id:str}")
async def get_order(request: AnyRequest) -> Response[bytes]:
    """One order by id."""
    order_id: str = request.path_params["order_id"]
    ctx = await enter(request)
    return reply(ctx, ctx.venue.order(ctx.account_id, order_id))


@patch("/v2/orders/{order_id:str}")
async def patch_order(request: AnyRequest) -> Response[bytes]:
    """Replace an order; the answer is the new order (new id)."""
    order_id: str = request.path_params["order_id"]
    ctx = await enter(request)
    order = ctx.venue.replace(ctx.account_id, order_id, _decode(ctx.body, ReplaceOrder))
    _fail_after_accept(ctx)
    return reply(ctx, order)


@delete("/v2/orders/{order_id:str}", status_code=204)
async def delete_order(request: AnyRequest) -> Response[None]:
    """Cancel an order: 204 once the cancel request is accepted."""
    order_id: str = request.path_params["order_id"]
    ctx = await enter(request)
    ctx.venue.cancel(ctx.account_id, order_id)
    _fail_after_accept(ctx)
    return Response(None, status_code=204, headers=ctx.headers)


@get("/v2/positions")
async def get_positions(request: AnyRequest) -> Response[bytes]:
    """Open positions."""
    ctx = await enter(request)
    return reply(ctx, reports.positions(ctx.venue, ctx.account_id))


@get("/v2/account/activities/{activity_type:str}")
async def get_activities(request: AnyRequest) -> Response[bytes]:
    """Account activities of one type; only ``FILL`` happens at this venue (others are empty)."""
    activity_type: str = request.path_params["activity_type"]
    ctx = await enter(request)
    page_size = _int_param(request, "page_size", MAX_ACTIVITIES_PAGE)
    if not 1 <= page_size <= MAX_ACTIVITIES_PAGE:
        raise invalid(f"page_size must be 1-{MAX_ACTIVITIES_PAGE}")
    if activity_type != "FILL":
        return reply(ctx, [])
    activities = ctx.venue.activities(
        ctx.account_id,
        ascending=request.query_params.get("direction") == "asc",
        page_size=page_size,
        page_token=request.query_params.get("page_token") or None,
    )
    return reply(ctx, activities)


def _latest(ctx: Entered, request: AnyRequest, *, crypto: bool) -> Response[bytes]:
    symbols = [s.strip() for s in (request.query_params.get("symbols") or "").split(",") if s.strip()]
    if not symbols:
        raise invalid("symbols is required")
    quotes = {}
    for symbol in symbols:
        asset = ctx.venue.asset(symbol)
        if asset.is_crypto != crypto:
            raise invalid(f"invalid symbol: {symbol}")
        quotes[symbol] = reports.latest_quote(ctx.venue, symbol)
    return reply(ctx, LatestQuotes(quotes=quotes))


@get(STOCK_LATEST_QUOTES_PATH)
async def get_stock_quotes(request: AnyRequest) -> Response[bytes]:
    """The latest stock quotes of ``symbols`` (``feed`` is accepted and ignored: one feed here)."""
    ctx = await enter(request)
    return _latest(ctx, request, crypto=False)


@get(CRYPTO_LATEST_QUOTES_PATH)
async def get_crypto_quotes(request: AnyRequest) -> Response[bytes]:
    """The latest crypto quotes of ``symbols`` (``BTC/USD``)."""
    ctx = await enter(request)
    return _latest(ctx, request, crypto=True)


def trading_router() -> Router:
    """Trading API v2 and the latest-quote routes of Market Data."""
    return Router(
        path="/",
        route_handlers=[
            get_account,
            get_assets,
            post_order,
            get_orders,
            delete_orders,
            get_order_by_client_id,
            get_order,
            patch_order,
            delete_order,
            get_positions,
            get_activities,
            get_stock_quotes,
            get_crypto_quotes,
        ],
    )
