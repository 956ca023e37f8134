"""The venue's v20 REST API under ``/v3``: thin handlers over :class:`~brokerlink.brokers.oanda.venue.core.OandaCore`.

Every request passes :func:`enter`: injected latency, OANDA's 120 requests/s per client IP (a 429
``{"errorMessage": ...}`` beyond it), an injected 429, then the bearer token
(``Authorization: Bearer <token>``; 401 ``Insufficient authorization to perform request.``), and
the account must be one the token reaches (403). Request bodies are decoded with the wire structs;
a malformed one is a 400 ``INVALID_REQUEST``-style error, as v20 answers.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from litestar import Request, Response, Router, get, post, put
from litestar.response import Stream

from brokerlink.brokers.oanda import wire
from brokerlink.brokers.oanda.venue import commands
from brokerlink.brokers.oanda.venue.commands import OandaError
from brokerlink.brokers.oanda.venue.core import OandaCore
from brokerlink.brokers.oanda.venue.instruments import instrument_body
from brokerlink.brokers.oanda.venue.streams import pricing_stream, transaction_stream

T = TypeVar("T")
AnyRequest = Request[Any, Any, Any]
UNAUTHORIZED = "Insufficient authorization to perform request."
STREAM_MEDIA_TYPE = "application/octet-stream"


def core_of(request: AnyRequest) -> OandaCore:
    """The venue behind the app."""
    core: OandaCore = request.app.state.venue
    return core


async def enter(request: AnyRequest, account_id: str | None = None) -> OandaCore:
    """Latency fault, rate limit, token: what every v20 request goes through first."""
    core = core_of(request)
    await core.faults.delay()
    ip = request.client.host if request.client else "?"
    decision = core.gate.admit(f"ip:{ip}")
    if not decision.allowed or core.faults.take_rate_limit():
        raise OandaError(429, wire.ErrorBody(error_message="Rate limit violation: too many requests"))
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    reachable = core.tokens.get(token) if scheme.lower() == "bearer" else None
    if not reachable:
        raise OandaError(401, wire.ErrorBody(error_message=UNAUTHORIZED))
    if account_id is not None and account_id not in reachable:
        raise OandaError(403, wire.ErrorBody(error_message="The provided request was forbidden."))
    return core


def reply(body: msgspec.Struct, status: int = 200) -> Response[bytes]:
    """A JSON answer."""
    return Response(msgspec.json.encode(body), status_code=status, media_type="application/json")


def error_response(_: AnyRequest, exc: OandaError) -> Response[bytes]:
    """``{"errorMessage", "errorCode"?, ...}`` with the error's status."""
    return Response(
        msgspec.json.encode(exc.body), status_code=exc.status, media_type="application/json", headers=exc.headers
    )


def _fail_after_accept(core: OandaCore) -> None:
    """The injected 500 after a command was executed: the client cannot know the outcome."""
    if core.faults.take_fail_after_accept():
        raise OandaError(500, wire.ErrorBody(error_message="An internal server error occurred"))


async def _body(request: AnyRequest, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(await request.body() or b"{}", type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise OandaError(400, wire.ErrorBody(error_message=f"Invalid value specified: {exc}")) from None


@get("/accounts")
async def list_accounts(request: AnyRequest) -> Response[bytes]:
    """The accounts the token reaches."""
    core = await enter(request)
    token = request.headers["authorization"].partition(" ")[2]
    return reply(wire.AccountsResponse(accounts=[wire.AccountProperties(id=a, tags=[]) for a in core.tokens[token]]))


@get("/accounts/{account_id:str}/summary")
async def account_summary(request: AnyRequest) -> Response[bytes]:
    """Balance, NAV, margin."""
    account_id: str = request.path_params["account_id"]
    core = await enter(request, account_id)
    summary = core.summary(account_id)
    return reply(wire.AccountSummaryResponse(account=summary, last_transaction_id=summary.last_transaction_id or "0"))


@get("/accounts/{account_id:str}/instruments")
async def account_instruments(request: AnyRequest) -> Response[bytes]:
    """Every instrument with its precisions and limits."""
    account_id: str = request.path_params["account_id"]
    core = await enter(request, account_id)
    bodies = [instrument_body(e) for e in core.entries.values()]
    wanted = request.query_params.get("instruments")
    if wanted:
        bodies = [b for b in bodies if b.name in wanted.split(",")]
    return reply(
        wire.InstrumentsResponse(instruments=bodies, last_transaction_id=core.ledgers[account_id].last_transaction_id)
    )


@post("/accounts/{account_id:str}/orders", status_code=201)
async def create_order(request: AnyRequest) -> Response[bytes]:
    """A new order: 201 with its creation and what became of it (fill, cancel)."""
    account_id: str = request.path_params["account_id"]
    core = await enter(request, account_id)
    body = await _body(request, wire.CreateOrderBody)
    answer = commands.create_order(core, account_id, body.order)
    _fail_after_accept(core)
    return reply(answer, 201)


def _orders(core: OandaCore, account_id: str, state: str, instrument: str | None) -> wire.OrdersResponse:
    ledger = core.ledgers[account_id]
    orders = [
        o.body()
        for o in reversed(ledger.orders.values())  # newest first, as v20 lists them
        if state in {"ALL", o.state} and instrument in (None, o.instrument)
    ]
    return wire.OrdersResponse(orders=orders, last_transaction_id=ledger.last_transaction_id)


@get("/accounts/{account_id:str}/orders")
async def list_orders(request: AnyRequest) -> Response[bytes]:
    """Orders by ``state`` (default ``PENDING``) and ``instrument``."""
    account_id: str = request.path_params["account_id"]
    core = await enter(request, account_id)
    state = request.query_params.get("state") or "PENDING"
    return reply(_orders(core, account_id, state, request.query_params.get("instrument")))


@get("/accounts/{account_id:str}/pendingOrders")
async def pending_orders(request: AnyRequest) -> Response[bytes]:
    """Every pending order."""
    account_id: str = request.path_params["account_id"]
    core = await enter(request, account_id)
    return reply(_orders(core, account_id, "PENDING", None))


@get("/accounts/{account_id:str}/orders/{specifier:str}")
async def get_order(request: AnyRequest) -> Response[bytes]:
    """One order by id or ``@<client extension id>``."""
    account_id: str = request.path_params["account_id"]
    specifier: str = request.path_params["specifier"]
    core = await enter(request, account_id)
    ledger = core.ledgers[account_id]
    order = ledger.find(specifier)
    if order is None:
        raise OandaError(
            404, wire.ErrorBody(error_message="The Order specified does not exist", error_code=commands.NOT_FOUND)
        )
    return reply(wire.OrderResponse(order=order.body(), last_transaction_id=ledger.last_transaction_id))


@put("/accounts/{account_id:str}/orders/{specifier:str}", status_code=201)
async def replace_order(request: AnyRequest) -> Response[bytes]:
    """Replace a pending order: its cancellation and the replacement's creation."""
    account_id: str = request.path_params["account_id"]
    specifier: str = request.path_params["specifier"]
    core = await enter(request, account_id)
    body = await _body(request, wire.CreateOrderBody)
    answer = commands.replace_order(core, account_id, specifier, body.order)
    _fail_after_accept(core)
    return reply(answer, 201)


@put("/accounts/{account_id:str}/orders/{specifier:str}/cancel")
async def cancel_order(request: AnyRequest) -> Response[bytes]:
    """Cancel a pending order."""
    account_id: str = request.path_params["account_id"]
    specifier: str = request.path_params["specifier"]
    core = await enter(request, account_id)
    answer = commands.cancel_order(core, account_id, specifier)
    _fail_after_accept(core)
    return reply(answer)


@get("/accounts/{account_id:str}/openTrades")
async def open_trades(request: AnyRequest) -> Response[bytes]:
    """Open trades, newest first, marked to the price now."""
    account_id: str = request.path_params["account_id"]
    core = await enter(request, account_id)
    ledger = core.ledgers[account_id]
    trades = [
        t.body(core.unrealized(account_id, t.instrument, t.current_units, t.price))
        for t in reversed(ledger.open_trades())
    ]
    return reply(wire.TradesResponse(trades=trades, last_transaction_id=ledger.last_transaction_id))


@get("/accounts/{account_id:str}/trades")
async def list_trades(request: AnyRequest) -> Response[bytes]:
    """Trades by ``state`` (default ``OPEN``)."""
    account_id: str = request.path_params["account_id"]
    core = await enter(request, account_id)
    ledger = core.ledgers[account_id]
    state = request.query_params.get("state") or "OPEN"
    trades = [
        t.body(core.unrealized(account_id, t.instrument, t.current_units, t.price) if t.is_open else None)
        for t in reversed(ledger.trades.values())
        if state == "ALL" or (state == "OPEN") == t.is_open
    ]
    return reply(wire.TradesResponse(trades=trades, last_transaction_id=ledger.last_transaction_id))


@get("/accounts/{account_id:str}/openPositions")
async def open_positions(request: AnyRequest) -> Response[bytes]:
    """Positions with units on either side."""
    account_id: str = request.path_params["account_id"]
    core = await enter(request, account_id)
    last = core.ledgers[account_id].last_transaction_id
    return reply(wire.PositionsResponse(positions=core.positions_of(account_id), last_transaction_id=last))


@put("/accounts/{account_id:str}/positions/{instrument:str}/close")
async def close_position(request: AnyRequest) -> Response[bytes]:
    """Close a position's long and/or short side."""
    account_id: str = request.path_params["account_id"]
    instrument: str = request.path_params["instrument"]
    core = await enter(request, account_id)
    body = await _body(request, wire.ClosePositionBody)
    answer = commands.close_position(core, account_id, instrument, body)
    _fail_after_accept(core)
    return reply(answer)


def _instruments(core: OandaCore, request: AnyRequest) -> list[str]:
    names = [n for n in (request.query_params.get("instruments") or "").split(",") if n]
    unknown = [n for n in names if n not in core.entries]
    if not names or unknown:
        raise OandaError(
            400, wire.ErrorBody(error_message=f"Invalid value specified for 'instruments': {unknown or names}")
        )
    return names


@get("/accounts/{account_id:str}/pricing")
async def pricing(request: AnyRequest) -> Response[bytes]:
    """The prices of ``instruments`` now."""
    account_id: str = request.path_params["account_id"]
    core = await enter(request, account_id)
    prices = [core.price_of(i) for i in _instruments(core, request)]
    return reply(wire.PricingResponse(prices=prices, time=core.now()))


@get("/accounts/{account_id:str}/pricing/stream")
async def pricing_stream_endpoint(request: AnyRequest) -> Stream:
    """The pricing stream (NDJSON)."""
    account_id: str = request.path_params["account_id"]
    core = await enter(request, account_id)
    return Stream(pricing_stream(core, account_id, _instruments(core, request)), media_type=STREAM_MEDIA_TYPE)


@get("/accounts/{account_id:str}/transactions/stream")
async def transactions_stream_endpoint(request: AnyRequest) -> Stream:
    """The transaction stream (NDJSON)."""
    account_id: str = request.path_params["account_id"]
    core = await enter(request, account_id)
    return Stream(transaction_stream(core, account_id), media_type=STREAM_MEDIA_TYPE)


@get("/accounts/{account_id:str}/transactions/sinceid")
async def transactions_since(request: AnyRequest) -> Response[bytes]:
    """Every transaction after ``id`` (of the ``type`` list when given)."""
    account_id: str = request.path_params["account_id"]
    core = await enter(request, account_id)
    raw = request.query_params.get("id") or ""
    if not raw.isdigit():
        raise OandaError(400, wire.ErrorBody(error_message="Invalid value specified for 'id'"))
    types = {t for t in (request.query_params.get("type") or "").split(",") if t} or None
    ledger = core.ledgers[account_id]
    return reply(
        wire.TransactionsResponse(
            transactions=ledger.since(int(raw), types), last_transaction_id=ledger.last_transaction_id
        )
    )


@get("/accounts/{account_id:str}/transactions/{transaction_id:str}")
async def get_transaction(request: AnyRequest) -> Response[bytes]:
    """One transaction."""
    account_id: str = request.path_params["account_id"]
    transaction_id: str = request.path_params["transaction_id"]
    core = await enter(request, account_id)
    ledger = core.ledgers[account_id]
    txn = ledger.transaction(transaction_id)
    if txn is None:
        raise OandaError(404, wire.ErrorBody(error_message="The Transaction specified does not exist"))
    return reply(wire.TransactionResponse(transaction=txn, last_transaction_id=ledger.last_transaction_id))


def v3_router() -> Router:
    """The ``/v3`` routes."""
    return Router(
        path=wire.API_PREFIX,
        route_handlers=[
            list_accounts,
            account_summary,
            account_instruments,
            create_order,
            list_orders,
            pending_orders,
            get_order,
            replace_order,
            cancel_order,
            open_trades,
            list_trades,
            open_positions,
            close_position,
            pricing,
            pricing_stream_endpoint,
            transactions_stream_endpoint,
            transactions_since,
            get_transaction,
        ],
    )
