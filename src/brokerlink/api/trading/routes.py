"""Trading in a linked account: balances, positions, instruments, quotes, orders and fills.

Every route checks that the account (or order) is the signed-in user's and inside the
principal's grant; another user's answers 404, exactly like a missing one. Reads come from the
store (what the broker last reported); instruments and quotes need the live connection (503
while it is down). Handlers that send commands commit the request's own session first: the
commands write through their own sessions, and SQLite allows one writer at a time.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, Router, delete, get, post
from litestar.params import JSONBody, Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.api.audit import stamp
from brokerlink.api.deps import CurrentPrincipal, DbSession, Links
from brokerlink.api.idempotency import IdempotencyKey, idempotent
from brokerlink.api.paging import (
    After,
    Limit,
    Since,
    Symbol,
    Until,
    checked_symbol,
    id_cursor,
    key_cursor,
    page_of,
    time_range,
)
from brokerlink.api.scopes import needs
from brokerlink.api.trading.schemas import (
    BalanceList,
    BalanceResponse,
    FillList,
    FillResponse,
    InstrumentList,
    InstrumentResponse,
    OrderCreate,
    OrderList,
    OrderResponse,
    PositionList,
    PositionResponse,
    QuoteList,
    QuoteResponse,
)
from brokerlink.brokers.base import QuoteFeed
from brokerlink.domain.enums import ConnectionState
from brokerlink.domain.models import Account, Position
from brokerlink.domain.positions import Holding, mark
from brokerlink.engine.links.live import LiveAccount
from brokerlink.engine.links.orders import OrderTicket, cancel_order, place_order
from brokerlink.kit.errors import Conflict, InvalidInput, NotFound
from brokerlink.security.principal import Principal
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.connections import ConnectionRepository
from brokerlink.store.repositories.fills import FillRepository
from brokerlink.store.repositories.orders import OrderRepository
from brokerlink.store.repositories.positions import BalanceRepository, PositionRepository

AccountId = Annotated[str, Parameter(description="Account id (acc_...)", max_length=40)]
OrderId = Annotated[str, Parameter(description="Order id (ord_...)", max_length=40)]
MAX_QUOTES = 50


async def _account(db: AsyncSession, principal: Principal, account_id: str) -> Account:
    principal.require_account(account_id)
    account = await AccountRepository(db).get_for_user(principal.user_id, account_id)
    if account is None:
        raise NotFound("account not found")
    return account


@get("/{account_id:str}/balances", summary="Balances of an account", opt=needs("balances:read"))
async def list_balances(
    account_id: AccountId, principal: CurrentPrincipal, db: DbSession, limit: Limit = 50, after: After = None
) -> BalanceList:
    """Cash, equity and buying power per currency, as the broker last reported them, by currency."""
    cursor = key_cursor(after)
    await _account(db, principal, account_id)
    balances = await BalanceRepository(db).list_for_account(account_id)
    page, next_after = page_of(balances, lambda b: b.currency, limit=limit, after=cursor)
    return BalanceList(data=[BalanceResponse.of(b) for b in page], next_after=next_after)


@get("/{account_id:str}/positions", summary="Open positions of an account", opt=needs("positions:read"))
async def list_positions(  # noqa: PLR0917 - Litestar injects by name
    account_id: AccountId,
    principal: CurrentPrincipal,
    db: DbSession,
    links: Links,
    limit: Limit = 50,
    after: After = None,
    symbol: Symbol = None,
) -> PositionList:
    """Open positions by symbol, marked to the live quote (the price they would close at) when there is one."""
    cursor, wanted = key_cursor(after), checked_symbol(symbol)
    await _account(db, principal, account_id)
    positions = [p for p in await PositionRepository(db).list_for_account(account_id) if wanted in (None, p.symbol)]
    page, next_after = page_of(positions, lambda p: p.symbol, limit=limit, after=cursor)
    live = links.live(account_id) if links.is_live(account_id) else None
    return PositionList(data=[_marked(p, live) for p in page], next_after=next_after)


def _marked(position: Position, live: LiveAccount | None) -> PositionResponse:
    body = PositionResponse.of(position)
    if live is None or position.symbol not in live.instruments:
        return body
    quote = live.quote(position.symbol)
    if quote is None:
        return body
    price = quote.bid if position.qty > 0 else quote.ask
    cost_basis = position.avg_price * position.qty
    marked = mark(
        Holding(position=position, cost_basis=cost_basis), price, live.instruments[position.symbol].contract_size
    )
    body.mark_price = price
    body.unrealized_pnl = marked.position.unrealized_pnl
    return body


@get("/{account_id:str}/instruments", summary="Instruments an account can trade", opt=needs("accounts:read"))
async def list_instruments(  # noqa: PLR0917 - Litestar injects by name
    account_id: AccountId,
    principal: CurrentPrincipal,
    db: DbSession,
    links: Links,
    limit: Limit = 500,
    after: After = None,
    symbol: Symbol = None,
) -> InstrumentList:
    """The broker's instruments for this account with their rules (tick size, qty step, minimum and
    maximum quantity, minimum notional, contract size), by symbol. Needs the live connection (503
    while it is down)."""
    cursor, wanted = key_cursor(after), checked_symbol(symbol)
    await _account(db, principal, account_id)
    live = links.live(account_id)
    instruments = [i for i in live.instruments.values() if wanted in (None, i.symbol)]
    page, next_after = page_of(instruments, lambda i: i.symbol, limit=limit, after=cursor)
    return InstrumentList(data=[InstrumentResponse.of(i) for i in page], next_after=next_after)


@get("/{account_id:str}/quotes", summary="Live quotes", opt=needs("accounts:read"))
async def list_quotes(
    account_id: AccountId,
    principal: CurrentPrincipal,
    db: DbSession,
    links: Links,
    symbols: Annotated[str, Parameter(description="Comma-separated symbols, e.g. EUR/USD,GBP/USD", max_length=2000)],
) -> QuoteList:
    """Best bid and offer at the account's broker. The first request for a symbol subscribes to it."""
    await _account(db, principal, account_id)
    wanted = list(dict.fromkeys(s.strip() for s in symbols.split(",") if s.strip()))
    if not wanted or len(wanted) > MAX_QUOTES:
        raise InvalidInput(f"symbols: give 1 to {MAX_QUOTES} symbols", extra={"field": "symbols"})
    live = links.live(account_id)
    for symbol in wanted:
        live.instrument(symbol)
    adapter = live.adapter
    if not isinstance(adapter, QuoteFeed):
        raise InvalidInput(f"{live.broker} does not stream quotes")
    await adapter.subscribe_quotes(wanted)
    quotes = []
    for symbol in wanted:
        quote = adapter.quote(symbol) or await adapter.quote_snapshot(symbol)
        quotes.append(QuoteResponse.of(quote))
    return QuoteList(data=quotes)


@get("/{account_id:str}/orders", summary="Orders of an account", opt=needs("orders:read"))
async def list_orders(  # noqa: PLR0917 - Litestar injects by name
    account_id: AccountId,
    principal: CurrentPrincipal,
    db: DbSession,
    limit: Limit = 50,
    after: After = None,
    symbol: Symbol = None,
    since: Since = None,
    until: Until = None,
) -> OrderList:
    """The account's orders, newest first; ``symbol``, ``since`` and ``until`` (creation time) narrow them."""
    cursor, wanted, period = id_cursor(after, "ord"), checked_symbol(symbol), time_range(since, until)
    await _account(db, principal, account_id)
    page = await OrderRepository(db).page_for_account(
        account_id, symbol=wanted, since=period.since, until=period.until, limit=limit, after=cursor
    )
    return OrderList(data=[OrderResponse.of(o) for o in page.items], next_after=page.next_after)


@idempotent
@post("/{account_id:str}/orders", summary="Place an order", status_code=201, opt=needs("orders:write"))
async def create_order(  # noqa: PLR0917 - Litestar injects by name
    request: Request[Any, Any, Any],
    account_id: AccountId,
    data: JSONBody[OrderCreate],
    principal: CurrentPrincipal,
    db: DbSession,
    links: Links,
    idempotency_key: IdempotencyKey = None,  # noqa: ARG001 - claimed by @idempotent before this runs
) -> Response[OrderResponse]:
    """Validate against the broker's rules, store, send, and return the order once the broker answered
    (or after two seconds, as it stands). 201 for a new order, 200 when ``client_order_id`` repeats
    an identical earlier request. With an ``Idempotency-Key``, a retry gets the first response again."""
    account = await _account(db, principal, account_id)
    connection = await ConnectionRepository(db).get_by_id(account.connection_id)
    if connection is None or connection.status == ConnectionState.REVOKED:
        raise Conflict("the account's broker link was removed; link the account again to trade it")
    await db.commit()
    ticket = OrderTicket(
        symbol=data.symbol,
        side=data.side,
        qty=data.qty,
        type=data.type,
        tif=data.tif,
        limit_price=data.limit_price,
        stop_price=data.stop_price,
        client_order_id=data.client_order_id,
    )
    order, created = await place_order(links, account_id, ticket, audit=stamp(request))
    return Response(OrderResponse.of(order), status_code=201 if created else 200)


@get("/{account_id:str}/fills", summary="Fills of an account", opt=needs("orders:read"))
async def list_fills(  # noqa: PLR0917 - Litestar injects by name
    account_id: AccountId,
    principal: CurrentPrincipal,
    db: DbSession,
    limit: Limit = 50,
    after: After = None,
    symbol: Symbol = None,
    since: Since = None,
    until: Until = None,
) -> FillList:
    """The account's executions, newest first (including those of orders placed outside brokerlink);
    ``symbol``, ``since`` and ``until`` (execution time) narrow them."""
    cursor, wanted, period = id_cursor(after, "fil"), checked_symbol(symbol), time_range(since, until)
    await _account(db, principal, account_id)
    page = await FillRepository(db).page_filtered(
        account_id=account_id, symbol=wanted, since=period.since, until=period.until, limit=limit, after=cursor
    )
    return FillList(data=[FillResponse.of(f) for f in page.items], next_after=page.next_after)


@get("/{order_id:str}", summary="Get an order", opt=needs("orders:read"))
async def get_order(order_id: OrderId, principal: CurrentPrincipal, db: DbSession) -> OrderResponse:
    """One order. 404 if it does not exist or is not the user's."""
    order = await OrderRepository(db).get_for_user(principal.user_id, order_id)
    if order is None or not principal.can_reach_account(order.account_id):
        raise NotFound("order not found")
    return OrderResponse.of(order)


@get("/{order_id:str}/fills", summary="Fills of an order", opt=needs("orders:read"))
async def list_order_fills(  # noqa: PLR0917 - Litestar injects by name
    order_id: OrderId,
    principal: CurrentPrincipal,
    db: DbSession,
    limit: Limit = 50,
    after: After = None,
    since: Since = None,
    until: Until = None,
) -> FillList:
    """The order's executions, newest first. 404 if the order does not exist or is not the user's."""
    cursor, period = id_cursor(after, "fil"), time_range(since, until)
    order = await OrderRepository(db).get_for_user(principal.user_id, order_id)
    if order is None or not principal.can_reach_account(order.account_id):
        raise NotFound("order not found")
    page = await FillRepository(db).page_filtered(
        account_id=order.account_id,
        order_id=order.id,
        since=period.since,
        until=period.until,
        limit=limit,
        after=cursor,
    )
    return FillList(data=[FillResponse.of(f) for f in page.items], next_after=page.next_after)


@delete("/{order_id:str}", summary="Cancel an order", status_code=200, opt=needs("orders:write"))
async def delete_order(
    request: Request[Any, Any, Any], order_id: OrderId, principal: CurrentPrincipal, db: DbSession, links: Links
) -> OrderResponse:
    """Ask the broker to cancel; returns the order once the broker answered (or as it stands after
    two seconds). 409 when the order already ended or the broker refused the cancel."""
    order = await OrderRepository(db).get_for_user(principal.user_id, order_id)
    if order is None or not principal.can_reach_account(order.account_id):
        raise NotFound("order not found")
    await db.commit()
    return OrderResponse.of(await cancel_order(links, principal.user_id, order_id, audit=stamp(request)))


account_trading_router = Router(
    path="/accounts",
    route_handlers=[
        list_balances,
        list_positions,
        list_instruments,
        list_quotes,
        list_orders,
        create_order,
        list_fills,
    ],
    tags=["trading"],
)
orders_router = Router(path="/orders", route_handlers=[get_order, list_order_fills, delete_order], tags=["trading"])
