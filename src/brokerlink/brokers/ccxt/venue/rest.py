"""The test venue's REST API under ``/api/v3``: Binance spot's paths, parameters, weights and errors.

Every request goes through :func:`enter`: the latency fault, the request weight of the caller's IP
(``X-MBX-USED-WEIGHT-1M`` on every answer, errors included; 429 ``-1003`` with ``Retry-After`` over the
limit, or when the ``rate_limit_next`` fault says so), then the endpoint's security type. The
``fail_after_accept`` fault answers an executed order command 503 ``-1007`` ("execution status
unknown"), as Binance documents for 5XX answers.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from litestar import Request, Response, Router, delete, get, post, put

from brokerlink.brokers.ccxt.venue.gate import Key
from brokerlink.brokers.ccxt.venue.spot import ORDERS_PER_10S, BinanceError
from brokerlink.brokers.ccxt.venue.wire import (
    API_V3,
    HEADER_ORDER_COUNT_1D,
    HEADER_ORDER_COUNT_10S,
    HEADER_USED_WEIGHT,
    ErrorBody,
    ListenKey,
    ServerTime,
)
from brokerlink.brokers.sim.gate import WireError

if TYPE_CHECKING:
    from brokerlink.brokers.ccxt.venue.app import BinanceVenue

AnyRequest = Request[Any, Any, Any]
Security = Literal["NONE", "USER_STREAM", "SIGNED"]


@dataclass(frozen=True, slots=True)
class Entered:
    """An admitted request: the venue, the caller's key (if the endpoint needs one), its parameters, headers."""

    venue: BinanceVenue
    key: Key | None
    params: dict[str, str]
    headers: dict[str, str]

    @property
    def account_id(self) -> str:
        """The account of the caller's key."""
        assert self.key is not None  # noqa: S101 - only SIGNED/USER_STREAM handlers ask
        return self.key.account_id


def venue_of(request: AnyRequest) -> BinanceVenue:
    """The venue behind the app."""
    venue: BinanceVenue = request.app.state.binance
    return venue


async def enter(request: AnyRequest, weight: int, security: Security) -> Entered:
    """Latency, request weight, injected 429, authentication: what every request goes through first."""
    venue = venue_of(request)
    await venue.core.faults.delay()
    ip = request.client.host if request.client else "?"
    used, retry_after = venue.gate.spend(ip, weight)
    headers = {HEADER_USED_WEIGHT: str(used)}
    request.state.binance_headers = headers
    if retry_after is not None:
        raise BinanceError(
            429,
            -1003,
            f"Too much request weight used; current limit is {venue.gate.weight_limit} request weight per 1 MINUTE. "
            "Please use WebSocket Streams for live updates to avoid polling the API.",
            {"Retry-After": str(retry_after)},
        )
    if venue.core.faults.take_rate_limit():
        raise BinanceError(
            429,
            -1003,
            "Too many requests; please use WebSocket Streams for live updates (injected).",
            {"Retry-After": "1"},
        )
    query = request.scope.get("query_string", b"").decode()
    body = (await request.body()).decode()
    if security == "NONE":
        params = dict(msgspec_qsl(query))
        return Entered(venue=venue, key=None, params=params, headers=headers)
    if security == "USER_STREAM":
        key = venue.gate.api_key(request.headers)
        params = dict(msgspec_qsl(body))
        params.update(msgspec_qsl(query))
        return Entered(venue=venue, key=key, params=params, headers=headers)
    key, params = venue.gate.signed(request.headers, query, body)
    return Entered(venue=venue, key=key, params=params, headers=headers)


def msgspec_qsl(raw: str) -> list[tuple[str, str]]:
    """``a=1&b=2`` as pairs (URL-decoded)."""
    from urllib.parse import parse_qsl

    return parse_qsl(raw, keep_blank_values=True)


def reply(ctx: Entered, body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response[bytes]:
    """A JSON answer with the weight header."""
    return Response(
        msgspec.json.encode(body),
        status_code=status,
        media_type="application/json",
        headers={**ctx.headers, **(headers or {})},
    )


def binance_error_response(request: AnyRequest, exc: WireError) -> Response[bytes]:
    """``{"code", "msg"}`` with the error's status and headers (a sim core refusal as ``-2010``)."""
    code = exc.binance_code if isinstance(exc, BinanceError) else -2010
    body = msgspec.json.encode(ErrorBody(code=code, msg=exc.message))
    headers = {**getattr(request.state, "binance_headers", {}), **exc.headers}
    return Response(body, status_code=exc.status, media_type="application/json", headers=headers)


def _fail_after_accept(ctx: Entered) -> None:
    if ctx.venue.core.faults.take_fail_after_accept():
        raise BinanceError(
            503,
            -1007,
            "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
        )


@get("/ping")
async def ping(request: AnyRequest) -> Response[bytes]:
    """Test connectivity."""
    ctx = await enter(request, 1, "NONE")
    return reply(ctx, {})


@get("/time")
async def server_time(request: AnyRequest) -> Response[bytes]:
    """The server time."""
    ctx = await enter(request, 1, "NONE")
    return reply(ctx, ServerTime(server_time=ctx.venue.spot.now_ms()))


@get("/exchangeInfo")
async def exchange_info(request: AnyRequest) -> Response[bytes]:
    """Trading rules and symbols."""
    ctx = await enter(request, 20, "NONE")
    return reply(ctx, ctx.venue.spot.exchange_info())


@get("/ticker/price")
async def ticker_price(request: AnyRequest) -> Response[bytes]:
    """Latest price of one symbol (an object) or of all (an array)."""
    symbol = request.query_params.get("symbol")
    ctx = await enter(request, 2 if symbol else 4, "NONE")
    prices = ctx.venue.spot.ticker_prices(symbol)
    return reply(ctx, prices[0] if symbol else prices)


@post("/order", status_code=200)
async def new_order(request: AnyRequest) -> Response[bytes]:
    """New order (TRADE)."""
    ctx = await enter(request, 1, "SIGNED")
    spot = ctx.venue.spot
    orders_10s = sum(1 for t in spot.order_counts if t > spot.now_ms() - 10_000)
    if orders_10s >= ORDERS_PER_10S:
        raise BinanceError(
            429, -1015, f"Too many new orders; current limit is {ORDERS_PER_10S} orders per TEN_SECONDS."
        )
    order, _ = spot.place(ctx.account_id, ctx.params)
    _fail_after_accept(ctx)
    response_type = ctx.params.get("newOrderRespType") or ("FULL" if order.type in {"LIMIT", "MARKET"} else "ACK")
    counts = {
        HEADER_ORDER_COUNT_10S: str(orders_10s + 1),
        HEADER_ORDER_COUNT_1D: str(sum(1 for t in spot.order_counts if t > spot.now_ms() - 86_400_000)),
    }
    if response_type == "ACK":
        ack = {
            "symbol": order.symbol,
            "orderId": order.order_id,
            "orderListId": -1,
            "clientOrderId": order.client_order_id,
            "transactTime": order.created_ms,
        }
        return reply(ctx, ack, headers=counts)
    return reply(ctx, spot.new_order_result(order, response_type), headers=counts)


@get("/order")
async def query_order(request: AnyRequest) -> Response[bytes]:
    """Query order (USER_DATA), by ``orderId`` or ``origClientOrderId``."""
    ctx = await enter(request, 4, "SIGNED")
    return reply(ctx, ctx.venue.spot.query(ctx.account_id, ctx.params))


@delete("/order", status_code=200)
async def cancel_order(request: AnyRequest) -> Response[bytes]:
    """Cancel order (TRADE)."""
    ctx = await enter(request, 1, "SIGNED")
    result = ctx.venue.spot.cancel(ctx.account_id, ctx.params)
    _fail_after_accept(ctx)
    return reply(ctx, result)


@delete("/openOrders", status_code=200)
async def cancel_open_orders(request: AnyRequest) -> Response[bytes]:
    """Cancel all open orders on a symbol (TRADE)."""
    ctx = await enter(request, 1, "SIGNED")
    result = ctx.venue.spot.cancel_all(ctx.account_id, ctx.params)
    _fail_after_accept(ctx)
    return reply(ctx, result)


@get("/openOrders")
async def open_orders(request: AnyRequest) -> Response[bytes]:
    """Current open orders (USER_DATA), of one symbol or all."""
    symbol = request.query_params.get("symbol")
    ctx = await enter(request, 6 if symbol else 80, "SIGNED")
    return reply(ctx, ctx.venue.spot.open_orders(ctx.account_id, ctx.params.get("symbol")))


@get("/myTrades")
async def my_trades(request: AnyRequest) -> Response[bytes]:
    """Account trade list (USER_DATA)."""
    ctx = await enter(request, 20, "SIGNED")
    return reply(ctx, ctx.venue.spot.my_trades(ctx.account_id, ctx.params))


@get("/account")
async def account(request: AnyRequest) -> Response[bytes]:
    """Account information (USER_DATA)."""
    ctx = await enter(request, 20, "SIGNED")
    omit_zero = ctx.params.get("omitZeroBalances") == "true"
    return reply(ctx, ctx.venue.spot.account_info(ctx.account_id, omit_zero=omit_zero))


@post("/userDataStream", status_code=200)
async def start_user_stream(request: AnyRequest) -> Response[bytes]:
    """Start a user data stream (USER_STREAM): the account's listen key (the active one, if any)."""
    ctx = await enter(request, 2, "USER_STREAM")
    keys = ctx.venue.listen_keys
    listen_key = next((k for k, a in keys.items() if a == ctx.account_id), None) or secrets.token_hex(32)
    keys[listen_key] = ctx.account_id
    return reply(ctx, ListenKey(listen_key=listen_key))


def _listen_key(ctx: Entered) -> str:
    listen_key = ctx.params.get("listenKey")
    if not listen_key:
        raise BinanceError(400, -1102, "Mandatory parameter 'listenKey' was not sent, was empty/null, or malformed.")
    if ctx.venue.listen_keys.get(listen_key) != ctx.account_id:
        raise BinanceError(400, -1125, "This listenKey does not exist.")
    return listen_key


@put("/userDataStream", status_code=200)
async def keepalive_user_stream(request: AnyRequest) -> Response[bytes]:
    """Keep a listen key alive (USER_STREAM)."""
    ctx = await enter(request, 2, "USER_STREAM")
    _listen_key(ctx)
    return reply(ctx, {})


@delete("/userDataStream", status_code=200)
async def close_user_stream(request: AnyRequest) -> Response[bytes]:
    """Close a user data stream (USER_STREAM)."""
    ctx = await enter(request, 2, "USER_STREAM")
    listen_key = _listen_key(ctx)
    del ctx.venue.listen_keys[listen_key]
    ctx.venue.close_listen_key(listen_key)
    return reply(ctx, {})


def api_router() -> Router:
    """The ``/api/v3`` routes."""
    return Router(
        path=API_V3,
        route_handlers=[
            ping,
            server_time,
            exchange_info,
            ticker_price,
            new_order,
            query_order,
            cancel_order,
            cancel_open_orders,
            open_orders,
            my_trades,
            account,
            start_user_stream,
            keepalive_user_stream,
            close_user_stream,
        ],
    )
