"""The dashboard pages as a browser uses them: forms with CSRF tokens, redirects, cookies, CSP."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from litestar import Litestar

from brokerlink.domain.enums import OrderStatus, OrderType, Side, TimeInForce
from brokerlink.domain.models import Balance, Order, Position
from brokerlink.kit.ids import new_id
from brokerlink.store.db import Database
from brokerlink.store.repositories.orders import OrderRepository
from brokerlink.store.repositories.positions import BalanceRepository, PositionRepository
from brokerlink.web import WEB_DIR
from brokerlink.web.routes import plain
from tests.api.support import PASSWORD, ClientFactory, link_account

HTML = {"accept": "text/html"}


def form_token(html: str) -> str:
    match = re.search(r'name="_csrf_token" value="([^"]+)"', html)
    assert match, "the form carries a CSRF token"
    return match.group(1)


async def sign_up(client: httpx.AsyncClient, email: str = "alice@example.com") -> httpx.Response:
    page = await client.get("/register", headers=HTML)
    assert page.status_code == 200
    data = {"_csrf_token": form_token(page.text), "email": email, "password": PASSWORD, "display_name": "Alice"}
    return await client.post("/register", data=data, headers=HTML)


async def test_dashboard_redirects_to_login_without_a_session(client: httpx.AsyncClient) -> None:
    r = await client.get("/", headers=HTML)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=/"


async def test_login_page_has_a_strict_csp_and_no_inline_script(client: httpx.AsyncClient) -> None:
    r = await client.get("/login", headers=HTML)
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert "<script>" not in r.text
    assert r.headers["x-frame-options"] == "DENY"


async def test_register_then_dashboard_shows_the_honest_empty_state(client: httpx.AsyncClient) -> None:
    r = await sign_up(client)
    assert r.status_code == 303
    assert r.headers["location"] == "/"
    page = await client.get("/", headers=HTML)
    assert page.status_code == 200
    assert "Alice" in page.text
    assert 'id="no-accounts"' in page.text
    assert 'id="accounts"' not in page.text
    # The sim broker exists: the page says how to link it, and no longer that there is nothing to link.
    assert "no broker adapters" not in page.text
    assert "brokerlink sim serve" in page.text
    assert "POST /v1/connections" in page.text


async def seed_trading(app: Litestar, account_id: str) -> dict[str, str]:
    """A balance, a long and a flat position, a filled and a working order; returns the order ids."""
    database: Database = app.state.db
    now = app.state.clock.now()
    filled = Order(
        id=new_id("ord"), client_order_id="dash-1", account_id=account_id, symbol="EUR/USD", side=Side.BUY,
        qty=Decimal("0.50"), type=OrderType.MARKET, tif=TimeInForce.GTC, status=OrderStatus.FILLED,
        filled_qty=Decimal("0.50"), avg_fill_price=Decimal("1.08512"), created_at=now, updated_at=now,
    )  # fmt: skip
    working = Order(
        id=new_id("ord"), client_order_id="dash-2", account_id=account_id, symbol="GBP/USD", side=Side.SELL,
        qty=Decimal("0.25"), type=OrderType.LIMIT, tif=TimeInForce.GTC, limit_price=Decimal("1.31000"),
        status=OrderStatus.NEW, created_at=now + timedelta(seconds=1), updated_at=now + timedelta(seconds=1),
    )  # fmt: skip
    async with database.session() as s:
        await BalanceRepository(s).upsert(
            Balance(account_id=account_id, currency="USD", cash=Decimal("99876.54"), equity=Decimal("100012.34"),
                    buying_power=Decimal("3000370.20"), margin_used=Decimal("1808.53"), ts=now)
        )  # fmt: skip
        await PositionRepository(s).upsert(
            Position(account_id=account_id, symbol="EUR/USD", qty=Decimal("0.50"), avg_price=Decimal("1.08512"),
                     realized_pnl=Decimal("-3.25")), now=now,
        )  # fmt: skip
        await PositionRepository(s).upsert(Position(account_id=account_id, symbol="USD/JPY"), now=now)
        await OrderRepository(s).add(filled)
        await OrderRepository(s).add(working)
        await s.commit()
    return {"filled": filled.id, "working": working.id}


def rows(page: str, table_role: str) -> list[list[str]]:
    """The text of each body row of one of the dashboard's tables (tags stripped)."""
    table = re.search(rf'data-role="{table_role}">(.*?)</table>', page, re.DOTALL)
    assert table, f"the page has a {table_role} table"
    body = table.group(1).split("<tbody>", 1)[1]
    return [
        [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.DOTALL)]
        for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.DOTALL)
    ]


def rows_time(page: str) -> str:
    """The balance's report time as the page shows it."""
    match = re.search(r'data-role="balances">.*?<time datetime="[^"]+">([^<]+)</time>', page, re.DOTALL)
    assert match
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", match.group(1))
    return match.group(1)


async def test_dashboard_shows_each_account_with_balances_positions_and_orders(
    app: Litestar, make_client: ClientFactory
) -> None:
    alice = await make_client("alice@example.com", "Alice")
    _, account_id = await link_account(app, "alice@example.com", "Swing FX")
    orders = await seed_trading(app, account_id)

    page = await alice.get("/", headers=HTML)

    assert page.status_code == 200
    text = page.text
    assert 'id="no-accounts"' not in text
    overview = re.search(rf'<tr data-account-id="{account_id}">(.*?)</tr>', text, re.DOTALL)
    assert overview, "the account is listed"
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", overview.group(1), re.DOTALL)]
    assert cells == ["Swing FX", "sim", "SIM-Swing FX", "USD", "netting", "disconnected"]
    assert f'<section class="card account" id="acc-{account_id}"' in text
    assert rows(text, "balances") == [["USD", "99876.54", "100012.34", "3000370.20", "1808.53", rows_time(text)]]
    # Flat positions are not shown; mark and unrealized P&L need a live quote, which only the script has.
    assert rows(text, "positions") == [["EUR/USD", "0.50", "1.08512", "—", "—", "-3.25"]]
    order_rows = rows(text, "orders")
    assert [r[1:9] for r in order_rows] == [
        ["GBP/USD", "sell", "limit", "0.25", "1.31", "new", "0", "—"],  # trailing zeros trimmed to two places
        ["EUR/USD", "buy", "market", "0.50", "—", "filled", "0.50", "1.08512"],
    ]  # newest first
    assert text.index(orders["working"]) < text.index(orders["filled"])


async def test_dashboard_shows_only_the_users_own_accounts(app: Litestar, make_client: ClientFactory) -> None:
    alice = await make_client("alice@example.com", "Alice")
    await make_client("bob@example.com", "Bob")
    _, alice_account = await link_account(app, "alice@example.com", "alice-main")
    _, bob_account = await link_account(app, "bob@example.com", "bob-main")
    await seed_trading(app, bob_account)

    text = (await alice.get("/", headers=HTML)).text

    assert alice_account in text
    assert bob_account not in text
    assert "bob-main" not in text
    assert "99876.54" not in text
    assert rows(text, "orders") == [["No orders yet."]]


async def test_dashboard_escapes_names_users_and_brokers_chose(app: Litestar, make_client: ClientFactory) -> None:
    evil = '<img src=x onerror="alert(1)">'
    alice = await make_client("alice@example.com", "<b>Alice</b>")
    await link_account(app, "alice@example.com", evil)

    text = (await alice.get("/", headers=HTML)).text

    assert "<img" not in text
    assert "<b>Alice" not in text
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in text
    assert "&lt;b&gt;Alice&lt;/b&gt;" in text


async def test_dashboard_loads_its_script_from_static_under_the_strict_csp(
    app: Litestar, make_client: ClientFactory
) -> None:
    alice = await make_client("alice@example.com", "Alice")
    await link_account(app, "alice@example.com", "main")
    page = await alice.get("/", headers=HTML)
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp
    assert "unsafe-inline" not in csp
    assert re.findall(r"<script[^>]*>", page.text) == ['<script src="/static/dashboard.js" defer>']
    script = await alice.get("/static/dashboard.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (Decimal("1.08503000000"), "1.08503"),  # the store's fixed scale
        (Decimal("-0.7000000000000"), "-0.70"),
        (Decimal("0.10"), "0.10"),
        (Decimal(100000), "100000"),
        (Decimal("0E-8"), "0.00"),
        (Decimal("1E+2"), "100"),
        (Decimal("1.5E-7"), "0.00000015"),
        (None, "—"),
    ],
)
def test_dashboard_numbers_are_exact_without_padding(value: Decimal | None, shown: str) -> None:
    assert plain(value) == shown


def test_dashboard_script_never_writes_html() -> None:
    # Broker and user strings reach the page only through textContent; these sinks would parse them as HTML.
    source = (WEB_DIR / "static" / "dashboard.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in source


async def test_sign_in_goes_where_the_user_was_headed(client: httpx.AsyncClient) -> None:
    await sign_up(client)
    logout_page = await client.get("/", headers=HTML)
    await client.post("/logout", data={"_csrf_token": form_token(logout_page.text)}, headers=HTML)
    assert (await client.get("/", headers=HTML)).status_code == 303
    page = await client.get("/login?next=/docs", headers=HTML)
    data = {"_csrf_token": form_token(page.text), "email": "alice@example.com", "password": PASSWORD, "next": "/docs"}
    r = await client.post("/login", data=data, headers=HTML)
    assert r.status_code == 303
    assert r.headers["location"] == "/docs"


@pytest.mark.parametrize(
    "target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"]
)
async def test_login_never_redirects_off_site(client: httpx.AsyncClient, target: str) -> None:
    await sign_up(client)
    page = await client.get("/login", headers=HTML)
    data = {"_csrf_token": form_token(page.text), "email": "alice@example.com", "password": PASSWORD, "next": target}
    r = await client.post("/login", data=data, headers=HTML)
    assert r.status_code == 303
    assert r.headers["location"] == "/"


async def test_wrong_password_shows_the_form_again_with_an_error(client: httpx.AsyncClient) -> None:
    await sign_up(client, "bob@example.com")
    page = await client.get("/login", headers=HTML)
    data = {"_csrf_token": form_token(page.text), "email": "bob@example.com", "password": "wrong password!!"}
    r = await client.post("/login", data=data, headers=HTML)
    assert r.status_code == 200
    assert "email or password is incorrect" in r.text
    assert "brokerlink_session" not in r.headers.get("set-cookie", "")
    assert 'value="bob@example.com"' in r.text


async def test_form_post_without_csrf_token_is_refused(client: httpx.AsyncClient) -> None:
    await client.get("/login", headers=HTML)  # has the CSRF cookie, but the form omits the token
    r = await client.post("/login", data={"email": "a@example.com", "password": PASSWORD}, headers=HTML)
    assert r.status_code == 403


async def test_registration_errors_are_shown_on_the_form(client: httpx.AsyncClient) -> None:
    page = await client.get("/register", headers=HTML)
    data = {"_csrf_token": form_token(page.text), "email": "x@example.com", "password": "short", "display_name": "X"}
    r = await client.post("/register", data=data, headers=HTML)
    assert r.status_code == 422
    assert "at least 12 characters" in r.text


async def test_static_assets_are_public(client: httpx.AsyncClient) -> None:
    r = await client.get("/static/app.css")
    assert r.status_code == 200
    assert "text/css" in r.headers["content-type"]
