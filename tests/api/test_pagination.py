"""Lists (issue 8, ADR 0033): one envelope and one set of parameters on every /v1 list, filters by time
and symbol, and 422s with stable codes for bad cursors and filters.

The route table is walked, so a new list that forgets ``limit``/``after`` or the ``{data, next_after}``
envelope fails here. Orders and fills are written straight into the store (no venue needed).
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute

from brokerlink.api.paging import InvalidCursor, InvalidFilter, id_cursor, key_cursor, page_of, time_range
from brokerlink.config import Settings
from brokerlink.domain.models import Balance, Position
from brokerlink.kit.clock import ManualClock
from brokerlink.store.db import Database
from brokerlink.store.repositories.fills import FillRepository
from brokerlink.store.repositories.orders import OrderRepository
from brokerlink.store.repositories.positions import BalanceRepository, PositionRepository
from tests.api.resource_support import ORIGIN, call, grant
from tests.api.support import ClientFactory, assert_problem, link_account
from tests.store.factories import make_fill, make_order

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

NOT_PAGED: dict[str, str] = {
    "QuoteList": "a lookup of the symbols named in the request (at most 50), not a list",
    "BalanceList@/v1/ledger/balances": "the books at one time `at`: one row per ledger account and currency",
    "BrokerKindList": "the broker kinds this server can link: a fixed handful",
    "ReconciliationResponse": "a report on one account: one row per currency",
}
"""List-shaped responses that are deliberately not paged, and why."""


# --- the helpers ----------------------------------------------------------------------------------


def test_page_of_cuts_by_key_with_the_same_cursor_rule_as_stored_lists() -> None:
    items = ["EUR", "USD", "BTC", "GBP", "JPY"]
    first, cursor = page_of(items, str, limit=2, after=None)
    assert (first, cursor) == (["BTC", "EUR"], "EUR")
    second, cursor = page_of(items, str, limit=2, after=cursor)
    third, last = page_of(items, str, limit=2, after=cursor)
    assert (second, third, last) == (["GBP", "JPY"], ["USD"], None)
    assert page_of(items, str, limit=5, after=None)[1] is None
    assert page_of(items, str, limit=2, after=None, descending=True) == (["USD", "JPY"], "JPY")


def test_cursor_and_time_checks() -> None:
    assert id_cursor(None, "ord") is None
    assert id_cursor("ord_01JD3X4T2W6N9Q8R7S5V4B3C2A", "ord") == "ord_01JD3X4T2W6N9Q8R7S5V4B3C2A"
    assert id_cursor("cli_x1", ("app", "cli")) == "cli_x1"
    for bad in ("fil_01JD3X", "ord_", "ord", "ord_01' OR 1=1", "ord_01\n"):
        with pytest.raises(InvalidCursor) as refused:
            id_cursor(bad, "ord")
        assert refused.value.to_problem()["errors"][0]["field"] == "after"
    assert key_cursor("EUR/USD") == "EUR/USD"
    with pytest.raises(InvalidCursor):
        key_cursor("EUR USD")
    span = time_range(T0, T0 + timedelta(hours=1))
    assert span.contains(T0)
    assert not span.contains(T0 + timedelta(hours=1))
    paris = datetime(2026, 3, 2, 10, 0, tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris"))
    assert time_range(paris, None).since == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    naive = T0.replace(tzinfo=None)
    for since, until, field in ((naive, None, "since"), (T0, T0, "until"), (T0, T0 - timedelta(1), "until")):
        with pytest.raises(InvalidFilter) as refused:
            time_range(since, until)
        assert refused.value.to_problem()["errors"][0]["field"] == field


# --- every list, from the route table -------------------------------------------------------------


@dataclass(frozen=True)
class ListRoute:
    path: str
    handler: HTTPRouteHandler
    body: type[msgspec.Struct]


def _response_struct(handler: HTTPRouteHandler) -> type[msgspec.Struct] | None:
    hint: Any = typing.get_type_hints(handler.fn, include_extras=False).get("return")
    if typing.get_origin(hint) is not None and typing.get_args(hint):
        hint = typing.get_args(hint)[0]  # Response[X]
    return hint if isinstance(hint, type) and issubclass(hint, msgspec.Struct) else None


def list_routes(app: Litestar) -> Iterator[ListRoute]:
    for route in app.routes:
        if not route.path.startswith("/v1") or not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if "GET" not in handler.http_methods:
                continue
            body = _response_struct(handler)
            if body is None or "data" not in body.__struct_fields__:
                continue
            hints = typing.get_type_hints(body)
            if typing.get_origin(hints["data"]) is list:
                yield ListRoute(route.path, handler, body)


def test_every_list_has_the_same_parameters_and_envelope(app: Litestar) -> None:
    checked, wrong = 0, []
    for item in list_routes(app):
        name = item.body.__name__
        if name in NOT_PAGED or f"{name}@{item.path}" in NOT_PAGED:
            continue
        params = item.handler.parsed_fn_signature.parameters
        missing = [p for p in ("limit", "after") if p not in params]
        if "next_after" not in item.body.__struct_fields__:
            missing.append("next_after in the response")
        if missing:
            wrong.append(f"{item.path}: {', '.join(missing)}")
        checked += 1
    assert wrong == [], "every list takes limit and after and answers {data, next_after}: " + "; ".join(wrong)
    assert checked >= 25


TIMED: frozenset[str] = frozenset(
    {
        "/v1/accounts/{account_id:str}/orders",
        "/v1/accounts/{account_id:str}/fills",
        "/v1/orders/{order_id:str}/fills",
        "/v1/subscriptions/{subscription_id:str}/events",
        "/v1/subscriptions/{subscription_id:str}/intents",
        "/v1/subscriptions/{subscription_id:str}/links",
        "/v1/webhooks/{endpoint_id:str}/deliveries",
        "/v1/admin/alerts",
        "/v1/admin/audit",
        "/v1/ledger/entries",
        "/v1/ledger/postings",
    }
)
"""Lists of things that happen, filtered by when (``since``, ``until``). Lists of things that exist
(accounts, strategies, subscriptions, endpoints, consents, apps, users) are filtered by their state."""


def test_lists_of_events_filter_by_time_and_lists_of_instruments_by_symbol(app: Litestar) -> None:
    routes = {item.path: item for item in list_routes(app)}
    assert set(TIMED) <= set(routes)
    for path in TIMED:
        params = routes[path].handler.parsed_fn_signature.parameters
        assert {"since", "until"} <= set(params), path
    for path, item in routes.items():
        element = typing.get_args(typing.get_type_hints(item.body)["data"])[0]
        if isinstance(element, type) and issubclass(element, msgspec.Struct):
            fields = set(element.__struct_fields__)
            one_symbol = path == "/v1/orders/{order_id:str}/fills"  # an order's fills share its symbol
            if fields & {"symbol", "provider_symbol"} and item.body.__name__ not in NOT_PAGED and not one_symbol:
                assert "symbol" in item.handler.parsed_fn_signature.parameters, path


# --- on the running app ---------------------------------------------------------------------------


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"resource_origin": ORIGIN})


@dataclass
class World:
    alice: httpx.AsyncClient
    bob: httpx.AsyncClient
    account: str
    other: str
    orders: list[str]


@pytest.fixture
async def world(app: Litestar, make_client: ClientFactory) -> World:
    """Alice's two accounts; in the first, 6 orders over 6 hours alternating EUR/USD and GBP/USD, each
    with one fill, plus 3 balances and 3 positions."""
    alice = await make_client("alice@example.com", "Alice")
    bob = await make_client("bob@example.com", "Bob")
    _, account = await link_account(app, "alice@example.com", "Main")
    _, other = await link_account(app, "alice@example.com", "Other")
    database: Database = app.state.db
    orders: list[str] = []
    async with database.session() as s:
        for i in range(6):
            at = T0 + timedelta(hours=i)
            symbol = "EUR/USD" if i % 2 == 0 else "GBP/USD"
            order = make_order(account, symbol=symbol, created_at=at, updated_at=at)
            await OrderRepository(s).add(order)
            orders.append(order.id)
            fill = make_fill(account, order_id=order.id, symbol=symbol, ts=at + timedelta(minutes=1))
            await FillRepository(s).add_if_new(fill)
        for currency in ("USD", "EUR", "BTC"):
            balance = Balance(account_id=account, currency=currency, cash=Decimal(1), equity=Decimal(1),
                              buying_power=Decimal(1), ts=T0)  # fmt: skip
            await BalanceRepository(s).upsert(balance)
        for symbol in ("EUR/USD", "GBP/USD", "USD/JPY"):
            await PositionRepository(s).upsert(Position(account_id=account, symbol=symbol, qty=Decimal(1)), now=T0)
        await s.commit()
    return World(alice=alice, bob=bob, account=account, other=other, orders=orders)


async def _walk(client: httpx.AsyncClient, url: str, limit: int, **params: str) -> list[dict[str, Any]]:
    """Every item of a list, page by page; checks the envelope on the way."""
    items: list[dict[str, Any]] = []
    after: str | None = None
    for _ in range(50):
        query = {**params, "limit": str(limit)} | ({"after": after} if after else {})
        response = await client.get(url, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"data", "next_after"}, body
        assert len(body["data"]) <= limit
        items += body["data"]
        after = body["next_after"]
        if after is None:
            return items
    raise AssertionError("the cursor never ended")


async def test_orders_are_paged_newest_first_and_filtered_by_symbol_and_time(world: World) -> None:
    url = f"/v1/accounts/{world.account}/orders"
    every = await _walk(world.alice, url, 4)
    assert [o["id"] for o in every] == world.orders[::-1]
    eur = await _walk(world.alice, url, 2, symbol="EUR/USD")
    assert [o["id"] for o in eur] == [world.orders[4], world.orders[2], world.orders[0]]
    window = {"since": (T0 + timedelta(hours=1)).isoformat(), "until": (T0 + timedelta(hours=4)).isoformat()}
    timed = await _walk(world.alice, url, 1, **window)
    assert [o["id"] for o in timed] == [world.orders[3], world.orders[2], world.orders[1]]
    both = await _walk(world.alice, url, 10, symbol="GBP/USD", **window)
    assert [o["id"] for o in both] == [world.orders[3], world.orders[1]]
    offset = {"since": "2026-03-02T11:00:00+02:00"}  # 09:00 UTC: every order
    assert len(await _walk(world.alice, url, 10, **offset)) == 6


async def test_fills_of_an_account_and_of_an_order(world: World) -> None:
    url = f"/v1/accounts/{world.account}/fills"
    every = await _walk(world.alice, url, 4)
    assert len(every) == 6
    assert [f["order_id"] for f in every] == world.orders[::-1]
    later = await _walk(world.alice, url, 10, since=(T0 + timedelta(hours=4, minutes=1)).isoformat())
    assert [f["order_id"] for f in later] == world.orders[:3:-1]
    gbp = await _walk(world.alice, url, 10, symbol="GBP/USD")
    assert {f["symbol"] for f in gbp} == {"GBP/USD"}
    assert len(gbp) == 3
    of_order = await _walk(world.alice, f"/v1/orders/{world.orders[2]}/fills", 10)
    assert [f["order_id"] for f in of_order] == [world.orders[2]]
    assert of_order[0]["qty"] == "50000"  # decimals as strings


async def test_balances_positions_and_accounts_are_paged_by_key(world: World) -> None:
    balances = await _walk(world.alice, f"/v1/accounts/{world.account}/balances", 2)
    assert [b["currency"] for b in balances] == ["BTC", "EUR", "USD"]
    positions = await _walk(world.alice, f"/v1/accounts/{world.account}/positions", 2)
    assert [p["symbol"] for p in positions] == ["EUR/USD", "GBP/USD", "USD/JPY"]
    one = await _walk(world.alice, f"/v1/accounts/{world.account}/positions", 2, symbol="USD/JPY")
    assert [p["symbol"] for p in one] == ["USD/JPY"]
    accounts = await _walk(world.alice, "/v1/accounts", 1)
    assert [a["id"] for a in accounts] == [world.account, world.other]  # oldest first, as before paging


async def test_bad_cursors_and_filters_are_422_with_stable_codes(world: World) -> None:
    url = f"/v1/accounts/{world.account}/orders"
    for after in ("fil_01ABCDEF", "ord_", "nonsense", "ord_01%27"):
        problem = assert_problem(await world.alice.get(url, params={"after": after}), 422, "invalid_cursor")
        assert problem["errors"][0] == {"field": "after", "source": "query", "message": problem["errors"][0]["message"]}
    for params in (
        {"since": "yesterday"},
        {"until": "2026-13-01T00:00:00Z"},
        {"since": "2026-03-02T09:00:00"},  # no offset
        {"since": "2026-03-02T10:00:00Z", "until": "2026-03-02T09:00:00Z"},
        {"symbol": " "},
    ):
        problem = assert_problem(await world.alice.get(url, params=params), 422, "invalid_filter")
        assert problem["errors"][0]["field"] in params, problem
    assert_problem(await world.alice.get(url, params={"limit": "501"}), 400, "page_size_too_large")  # hardening
    assert_problem(await world.alice.get("/v1/webhooks", params={"limit": "101"}), 422, "invalid_input")
    fills = f"/v1/orders/{world.orders[0]}/fills"
    assert_problem(await world.alice.get(fills, params={"after": world.orders[0]}), 422, "invalid_cursor")


async def test_security19_order_fills_are_the_owners_and_within_the_consent(
    app: Litestar, client: httpx.AsyncClient, clock: ManualClock, world: World
) -> None:
    url = f"/v1/orders/{world.orders[0]}/fills"
    assert_problem(await world.bob.get(url), 404, "not_found")
    assert_problem(await world.bob.get(f"/v1/accounts/{world.account}/fills"), 404, "not_found")
    inside = await grant(app, email="alice@example.com", scopes=["orders:read"], account_ids=[world.account])
    outside = await grant(app, email="alice@example.com", scopes=["orders:read"], account_ids=[world.other])
    unscoped = await grant(app, email="alice@example.com", scopes=["accounts:read"], account_ids=[world.account])
    allowed = await call(client, inside, "GET", url, clock.now())
    assert allowed.status_code == 200, allowed.text
    assert len(allowed.json()["data"]) == 1
    assert_problem(await call(client, outside, "GET", url, clock.now()), 404, "not_found")
    assert_problem(await call(client, unscoped, "GET", url, clock.now()), 403, "insufficient_scope")
