"""Scopes on every /v1 route (api/scopes.py): declared for each route, enforced for app tokens.

The route table is walked, so a new route that says nothing about apps fails here, and every
route an app may call is tried with a token lacking exactly its scope (403 ``insufficient_scope``)
and every first-party route with a token holding every scope (403 ``first_party_only``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute, WebSocketRoute

from brokerlink.api.scopes import FIRST_PARTY_OPT, PER_MESSAGE, SCOPE_OPT, is_first_party_path, required_scope
from brokerlink.config import Settings
from brokerlink.kit.clock import ManualClock
from brokerlink.security.oauth.scopes import SCOPES
from tests.api.resource_support import ORIGIN, Grant, call, grant
from tests.api.support import ClientFactory, assert_problem, link_account

_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The walk sends a burst of app requests; the client limit is not what is tested here.
    return settings.model_copy(update={"resource_origin": ORIGIN, "rate_limit_client": "1000/second"})


def v1_routes(app: Litestar) -> Iterator[tuple[str, str, dict[str, object]]]:
    """(method, path template, opt) of every /v1 route; ``WS`` for WebSockets; OPTIONS left out."""
    for route in app.routes:
        if not route.path.startswith("/v1"):
            continue
        if isinstance(route, WebSocketRoute):
            yield "WS", route.path, dict(route.route_handler.opt)
        elif isinstance(route, HTTPRoute):
            for handler in route.route_handlers:
                assert isinstance(handler, HTTPRouteHandler)
                for method in sorted(handler.http_methods - {"OPTIONS"}):
                    yield method, route.path, dict(handler.opt)


def concrete(template: str, account_id: str) -> str:
    """A request path for a template: the account id where one goes, ``x_missing`` elsewhere."""
    return _PARAM.sub(lambda m: account_id if m.group(1) == "account_id" else "x_missing", template)


def test_every_v1_route_declares_a_scope_or_is_first_party(app: Litestar) -> None:
    undeclared = []
    contradictions = []
    for method, path, opt in v1_routes(app):
        scope = opt.get(SCOPE_OPT)
        declared = scope in SCOPES or scope == PER_MESSAGE or opt.get(FIRST_PARTY_OPT) is True
        if not declared and not is_first_party_path(path) and not opt.get("exclude_from_auth"):
            undeclared.append(f"{method} {path}")
        if scope is not None and (is_first_party_path(path) or opt.get(FIRST_PARTY_OPT)):
            contradictions.append(f"{method} {path}")
        assert scope is None or scope in SCOPES or scope == PER_MESSAGE, (method, path, scope)
    assert undeclared == [], "declare opt=needs(<scope>) or opt=first_party() on: " + ", ".join(undeclared)
    assert contradictions == [], "first-party routes must not declare a scope: " + ", ".join(contradictions)


@pytest.fixture
async def account(app: Litestar, make_client: ClientFactory) -> str:
    await make_client("alice@example.com", "Alice")
    _, account_id = await link_account(app, "alice@example.com", "Main")
    return account_id


async def _tokens(app: Litestar, account_id: str) -> dict[str, Grant]:
    """One token per scope holding every scope but that one, and one holding them all (key ``*``)."""
    tokens: dict[str, Grant] = {}
    for missing in [*SCOPES, "*"]:
        scopes = [s for s in SCOPES if s != missing]
        tokens[missing] = await grant(app, email="alice@example.com", scopes=scopes, account_ids=[account_id])
    return tokens


async def test_security21_every_route_refuses_a_token_without_its_scope(
    app: Litestar, client: httpx.AsyncClient, clock: ManualClock, account: str
) -> None:
    tokens = await _tokens(app, account)
    checked = 0
    for method, template, opt in v1_routes(app):
        if method == "WS" or opt.get("exclude_from_auth"):
            continue
        path = concrete(template, account)
        scope = required_scope(opt, template)
        if scope is None:
            response = await call(client, tokens["*"], method, path, clock.now())
            assert response.status_code == 403, (method, template, response.text)
            assert response.json()["code"] == "first_party_only", (method, template)
        else:
            response = await call(client, tokens[scope], method, path, clock.now())
            problem = assert_problem(response, 403, "insufficient_scope")
            assert problem["scope"] == scope
            assert f'scope="{scope}"' in response.headers["www-authenticate"], (method, template)
            # With the scope, the request passes the route check (whatever the handler then says).
            allowed = await call(client, tokens["*"], method, path, clock.now())
            assert allowed.status_code != 403, (method, template, allowed.text)
        checked += 1
    assert checked > 50


async def test_security21_read_scopes_cannot_place_orders(
    app: Litestar, client: httpx.AsyncClient, clock: ManualClock, account: str
) -> None:
    reader = await grant(app, email="alice@example.com", scopes=["accounts:read", "orders:read"], account_ids=[account])
    body = {"symbol": "EUR/USD", "side": "buy", "qty": "0.10"}
    response = await call(client, reader, "POST", f"/v1/accounts/{account}/orders", clock.now(), json=body)
    assert_problem(response, 403, "insufficient_scope")
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    cancel = await call(client, reader, "DELETE", "/v1/orders/ord_x", clock.now())
    assert_problem(cancel, 403, "insufficient_scope")
