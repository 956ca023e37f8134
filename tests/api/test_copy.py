"""Copy trading over the REST API, against a real sim venue on loopback.

Bob provides strategies from his account (venue account ``SIM-CONF-2``); Alice follows them with
hers (``SIM-CONF-1``); Carol is anyone else. The provider trades through the normal order route
and the app's own copy engine places Alice's copies. Bounded polling; no wall-clock asserts.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import msgspec
import pytest
from litestar import Litestar
from sqlalchemy import select

from brokerlink.api.copy.routes import _scoped_page, _subscription
from brokerlink.domain.enums import Role
from brokerlink.engine.copy.settings import CopySettings
from brokerlink.kit.clock import Clock, SystemClock
from brokerlink.kit.errors import NotFound
from brokerlink.kit.ids import new_id
from brokerlink.security.principal import Principal
from brokerlink.store.db import Database
from brokerlink.store.models import StrategyRow, SubscriptionRow
from brokerlink.store.repositories.subscriptions import SubscriptionRepository
from tests.api.support import (
    ClientFactory,
    assert_problem,
    eventually,
    ledger_caught_up,
    link_via_api,
    numbers_in,
    snapshot,
)
from tests.contract.harness import SimHarness

EURUSD = "EUR/USD"
MULTIPLIER_1 = {"sizing": "multiplier", "multiplier": "1"}
INT_FIELDS = {"$.version", "$.settings.max_open_positions", "$.settings.pause_symbol_after_rejects"}
"""The only JSON numbers a subscription carries: counts, never amounts."""


@pytest.fixture
def clock() -> Clock:
    """The system clock: copy latencies compare brokerlink's time with the venue's fill times."""
    return SystemClock()


@pytest.fixture
def app(venue: SimHarness, app: Litestar) -> Litestar:
    """The app, started after the venue its links reach (so its links close before the venue stops)."""
    return app


@pytest.fixture
async def bob_account(app: Litestar, bob: httpx.AsyncClient, venue: SimHarness) -> str:
    account: str = (await link_via_api(bob, venue.base_url, 2))["account"]["id"]
    await ledger_caught_up(app, account)
    return account


@pytest.fixture
async def alice_account(app: Litestar, alice: httpx.AsyncClient, venue: SimHarness) -> str:
    account: str = (await link_via_api(alice, venue.base_url, 1))["account"]["id"]
    await ledger_caught_up(app, account)
    return account


async def create_strategy(c: httpx.AsyncClient, account_id: str, name: str = "Trend", **fields: Any) -> dict[str, Any]:
    body = {"name": name, "account_id": account_id, "visibility": "public"} | fields
    response = await c.post("/v1/strategies", json=body)
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"/v1/strategies/{response.json()['id']}"
    created: dict[str, Any] = response.json()
    return created


@pytest.fixture
async def strategy(bob: httpx.AsyncClient, bob_account: str) -> dict[str, Any]:
    """Bob's public strategy on his account."""
    return await create_strategy(bob, bob_account)


async def subscribe(
    c: httpx.AsyncClient, strategy_id: str, account_id: str, settings: dict[str, Any] | None = None
) -> httpx.Response:
    body = {"strategy_id": strategy_id, "account_id": account_id, "settings": settings or MULTIPLIER_1}
    return await c.post("/v1/subscriptions", json=body)


@pytest.fixture
async def subscription(alice: httpx.AsyncClient, alice_account: str, strategy: dict[str, Any]) -> dict[str, Any]:
    """Alice following Bob's strategy, copying his quantities one for one."""
    response = await subscribe(alice, strategy["id"], alice_account)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def get_json(c: httpx.AsyncClient, url: str, status: int = 200) -> Any:
    response = await c.get(url)
    assert response.status_code == status, response.text
    return response.json()


async def copy_rows(app: Litestar) -> list[tuple[str, ...]]:
    """Every strategy's and subscription's changeable columns: :func:`snapshot` does not look at them."""
    database: Database = app.state.db
    async with database.session() as s:
        rows = [
            ("strategy", r.id, r.name, r.description, r.visibility, str(r.min_follower_equity), r.status)
            for r in await s.scalars(select(StrategyRow))
        ]
        rows += [
            ("subscription", r.id, r.status, str(r.version), r.settings)
            for r in await s.scalars(select(SubscriptionRow))
        ]
    return sorted(rows)


def settings_json(settings: dict[str, Any]) -> Any:
    """What the API renders for these settings: every field, decimals and times as strings."""
    return msgspec.json.decode(
        msgspec.json.encode(msgspec.json.decode(msgspec.json.encode(settings), type=CopySettings))
    )


# --- strategies ------------------------------------------------------------------------------------


async def test_strategies_are_listed_for_their_provider_and_in_the_directory_by_visibility(
    bob: httpx.AsyncClient, alice: httpx.AsyncClient, bob_account: str
) -> None:
    public = await create_strategy(bob, bob_account, "Public", description="  majors  ", min_follower_equity="500")
    unlisted = await create_strategy(bob, bob_account, "Unlisted", visibility="unlisted")
    private = await create_strategy(bob, bob_account, "Private", visibility="private")
    assert (public["description"], public["min_follower_equity"], public["status"]) == ("majors", "500", "active")
    assert (public["account_id"], public["is_mine"]) == (bob_account, True)
    assert numbers_in(public) == []

    mine = await get_json(bob, "/v1/strategies")
    assert [s["id"] for s in mine["data"]] == [private["id"], unlisted["id"], public["id"]]  # newest first
    first = await get_json(bob, "/v1/strategies?limit=2")
    rest = await get_json(bob, f"/v1/strategies?limit=2&after={first['next_after']}")
    assert [s["id"] for s in first["data"] + rest["data"]] == [s["id"] for s in mine["data"]]
    assert rest["next_after"] is None
    assert (await get_json(alice, "/v1/strategies"))["data"] == []

    directory = await get_json(alice, "/v1/strategies/public")
    assert [s["id"] for s in directory["data"]] == [public["id"]]
    assert (directory["data"][0]["account_id"], directory["data"][0]["is_mine"]) == (None, False)

    assert (await get_json(alice, f"/v1/strategies/{unlisted['id']}"))["name"] == "Unlisted"
    theirs = assert_problem(await alice.get(f"/v1/strategies/{private['id']}"), 404, "not_found")
    missing = assert_problem(await alice.get(f"/v1/strategies/{new_id('stg')}"), 404, "not_found")
    assert theirs["detail"] == missing["detail"]
    assert (await get_json(bob, f"/v1/strategies/{private['id']}"))["account_id"] == bob_account


async def test_the_directory_pages_by_cursor(
    bob: httpx.AsyncClient, alice: httpx.AsyncClient, bob_account: str
) -> None:
    ids = [(await create_strategy(bob, bob_account, f"S{i}"))["id"] for i in range(3)]
    seen: list[str] = []
    after = ""
    while True:
        page = await get_json(alice, f"/v1/strategies/public?limit=2{after}")
        seen += [s["id"] for s in page["data"]]
        if page["next_after"] is None:
            break
        after = f"&after={page['next_after']}"
    assert seen == ids[::-1]
    # As on every list: a page larger than the cap is a 400 (SECURITY.md 27).
    assert_problem(await alice.get("/v1/strategies/public?limit=501"), 400, "page_size_too_large")


async def test_a_provider_changes_and_closes_a_strategy(
    app: Litestar, bob: httpx.AsyncClient, alice: httpx.AsyncClient, bob_account: str, alice_account: str
) -> None:
    strategy = await create_strategy(bob, bob_account, min_follower_equity="100")
    url = f"/v1/strategies/{strategy['id']}"
    changed = await bob.patch(url, json={"name": " Trend v2 ", "visibility": "unlisted", "min_follower_equity": None})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["name"], changed.json()["visibility"]) == ("Trend v2", "unlisted")
    assert changed.json()["min_follower_equity"] is None
    assert changed.json()["description"] == ""  # left out: unchanged
    assert (await get_json(alice, "/v1/strategies/public"))["data"] == []

    await create_strategy(bob, bob_account, "Other")
    assert_problem(await bob.patch(url, json={"name": "Other"}), 409, "conflict")
    assert assert_problem(await bob.patch(url, json={"name": "  "}), 422, "invalid_input")["field"] == "name"
    problem = assert_problem(await bob.patch(url, json={"min_follower_equity": "-1"}), 422, "invalid_input")
    assert problem["field"] == "min_follower_equity"
    assert_problem(await bob.patch(url, json={"status": "active"}), 422, "invalid_input")  # only closing

    closed = await bob.patch(url, json={"status": "closed"})
    assert closed.json()["status"] == "closed"
    assert_problem(await bob.patch(url, json={"name": "Reopened"}), 409, "conflict")
    assert (await bob.patch(url, json={"status": "closed"})).status_code == 200  # nothing to change
    before = await copy_rows(app)
    problem = assert_problem(await subscribe(alice, strategy["id"], alice_account), 409, "conflict")
    assert problem["field"] == "strategy_id"
    assert await copy_rows(app) == before


async def test_publishing_needs_ones_own_account_and_a_free_name(
    bob: httpx.AsyncClient, alice: httpx.AsyncClient, bob_account: str, alice_account: str
) -> None:
    await create_strategy(bob, bob_account)
    assert_problem(await bob.post("/v1/strategies", json={"name": "Trend", "account_id": bob_account}), 409, "conflict")
    assert_problem(
        await bob.post("/v1/strategies", json={"name": "Alices", "account_id": alice_account}), 404, "not_found"
    )
    problem = assert_problem(
        await bob.post("/v1/strategies", json={"name": " ", "account_id": bob_account}), 422, "invalid_input"
    )
    assert problem["field"] == "name"
    private_default = await bob.post("/v1/strategies", json={"name": "Quiet", "account_id": bob_account})
    assert private_default.json()["visibility"] == "private"


# --- subscriptions ---------------------------------------------------------------------------------


async def test_subscribing_stores_the_settings_and_returns_them_as_an_object(
    alice: httpx.AsyncClient, alice_account: str, strategy: dict[str, Any]
) -> None:
    settings = {
        "sizing": "fixed_qty",
        "fixed_qty": "0.05",
        "max_qty_per_order": "1.5",
        "max_open_positions": 3,
        "allow_symbols": ["EUR/USD", "GBP/USD"],
        "symbol_map": {"EUR/USD": "EURUSD"},
        "direction": "reversed",
        "max_slippage_bps": "25",
        "slippage_action": "limit",
        "trading_hours": [{"weekdays": ["mon", "tue"], "start": "08:00:00", "end": "17:30:00"}],
    }
    response = await subscribe(alice, strategy["id"], alice_account, settings)
    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["etag"] == '"1"'
    assert response.headers["location"] == f"/v1/subscriptions/{created['id']}"
    assert (created["strategy_id"], created["account_id"], created["status"]) == (
        strategy["id"],
        alice_account,
        "active",
    )
    assert created["version"] == 1
    assert Decimal(created["start_equity"]) == 100_000  # the account's equity when it subscribed
    assert set(numbers_in(created)) <= INT_FIELDS

    read = await alice.get(f"/v1/subscriptions/{created['id']}")
    assert read.headers["etag"] == '"1"'
    assert read.json()["settings"] == settings_json(settings) == created["settings"]
    assert read.json()["settings"]["fixed_qty"] == "0.05"
    alone = await alice.get(f"/v1/subscriptions/{created['id']}/settings")
    assert (alone.json(), alone.headers["etag"]) == (settings_json(settings), '"1"')

    listed = await get_json(alice, "/v1/subscriptions")
    assert [s["id"] for s in listed["data"]] == [created["id"]]
    events = (await get_json(alice, f"/v1/subscriptions/{created['id']}/events"))["data"]
    assert [e["kind"] for e in events] == ["subscribed"]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        pytest.param({"sizing": "fixed_qty"}, "fixed_qty", id="fixed_qty mode without fixed_qty"),
        pytest.param({"fixed_qty": "5"}, "fixed_qty", id="fixed_qty in another mode"),
        pytest.param({"sizing": "multiplier", "multiplier": "-1"}, "multiplier", id="negative multiplier"),
        pytest.param({"copy_stop_loss_pct": "150"}, "copy_stop_loss_pct", id="percentage over 100"),
        pytest.param({"slippage_action": "limit"}, "max_slippage_bps", id="limit guard without tolerance"),
        pytest.param({"allow_symbols": []}, "allow_symbols", id="empty allow list"),
        pytest.param({"leverage": "10"}, "leverage", id="unknown field"),
        pytest.param({"sizing": "martingale"}, "sizing", id="unknown sizing mode"),
        pytest.param(
            {"trading_hours": [{"start": "25:00:00", "end": "01:00:00"}]}, "trading_hours[0].start", id="bad time"
        ),
        pytest.param(
            {"trading_hours": [{"weekdays": [], "start": "08:00:00", "end": "09:00:00"}]},
            "trading_hours.weekdays",
            id="no weekday",
        ),
        pytest.param({"trading_hours": [{"end": "09:00:00"}]}, "trading_hours[0].start", id="missing start"),
    ],
)
async def test_invalid_settings_are_a_422_naming_the_field_and_store_nothing(  # noqa: PLR0917 - pytest fixtures
    app: Litestar,
    alice: httpx.AsyncClient,
    alice_account: str,
    strategy: dict[str, Any],
    bad: dict[str, Any],
    field: str,
) -> None:
    before = (await snapshot(app), await copy_rows(app))
    problem = assert_problem(await subscribe(alice, strategy["id"], alice_account, bad), 422, "invalid_input")
    assert problem["field"] == f"settings.{field}", problem
    assert [e["field"] for e in problem["errors"]] == [f"settings.{field}"]
    assert problem["detail"].startswith(f"settings.{field}: ")
    assert (await snapshot(app), await copy_rows(app)) == before


@pytest.mark.parametrize("settings_value", ["fast", None, ["sizing"], "<missing>"])
async def test_settings_that_are_not_an_object_are_a_422(
    app: Litestar, alice: httpx.AsyncClient, alice_account: str, strategy: dict[str, Any], settings_value: Any
) -> None:
    """Not a 500: Litestar mistakes an error at ``$.settings`` for one in the app's ``settings`` dependency."""
    body = {"strategy_id": strategy["id"], "account_id": alice_account, "settings": settings_value}
    if settings_value == "<missing>":
        del body["settings"]
    before = await copy_rows(app)
    problem = assert_problem(await alice.post("/v1/subscriptions", json=body), 422, "invalid_input")
    assert problem["field"] == "settings"
    assert await copy_rows(app) == before


async def test_invalid_settings_on_replace_are_a_422_too(
    app: Litestar, alice: httpx.AsyncClient, subscription: dict[str, Any]
) -> None:
    before = await copy_rows(app)
    url = f"/v1/subscriptions/{subscription['id']}/settings"
    response = await alice.put(url, json={"sizing": "fixed_qty"}, headers={"if-match": '"1"'})
    problem = assert_problem(response, 422, "invalid_input")
    assert (problem["field"], [e["field"] for e in problem["errors"]]) == ("fixed_qty", ["fixed_qty"])
    response = await alice.put(url, json={"leverage": "10"}, headers={"if-match": '"1"'})
    assert assert_problem(response, 422, "invalid_input")["field"] == "leverage"
    assert await copy_rows(app) == before


async def test_an_account_cannot_follow_the_strategy_it_backs(
    app: Litestar, bob: httpx.AsyncClient, bob_account: str, strategy: dict[str, Any]
) -> None:
    before = await copy_rows(app)
    problem = assert_problem(await subscribe(bob, strategy["id"], bob_account), 422, "invalid_input")
    assert problem["field"] == "account_id"
    assert await copy_rows(app) == before


async def test_one_live_subscription_per_account_and_strategy(
    alice: httpx.AsyncClient, alice_account: str, strategy: dict[str, Any], subscription: dict[str, Any]
) -> None:
    problem = assert_problem(await subscribe(alice, strategy["id"], alice_account), 409, "conflict")
    assert problem["field"] == "account_id"
    assert (await alice.post(f"/v1/subscriptions/{subscription['id']}/stop")).status_code == 200
    again = await subscribe(alice, strategy["id"], alice_account)  # a stopped one is history
    assert again.status_code == 201, again.text
    listed = await get_json(alice, "/v1/subscriptions")
    assert [s["id"] for s in listed["data"]] == [again.json()["id"], subscription["id"]]
    page = await get_json(alice, "/v1/subscriptions?limit=1")
    assert page["next_after"] == again.json()["id"]
    rest = await get_json(alice, f"/v1/subscriptions?limit=1&after={page['next_after']}")
    assert ([s["id"] for s in rest["data"]], rest["next_after"]) == ([subscription["id"]], None)
    filtered = await get_json(alice, f"/v1/subscriptions?strategy_id={new_id('stg')}")
    assert filtered["data"] == []


async def test_a_minimum_follower_equity_is_enforced(
    bob: httpx.AsyncClient, alice: httpx.AsyncClient, bob_account: str, alice_account: str
) -> None:
    rich_only = await create_strategy(bob, bob_account, "Rich", min_follower_equity="1000000")
    problem = assert_problem(await subscribe(alice, rich_only["id"], alice_account), 422, "invalid_input")
    assert problem["field"] == "account_id"


async def test_settings_change_only_with_the_current_etag(
    alice: httpx.AsyncClient, subscription: dict[str, Any]
) -> None:
    url = f"/v1/subscriptions/{subscription['id']}"
    new = {"sizing": "fixed_qty", "fixed_qty": "0.02"}
    assert (await alice.get(url)).headers["etag"] == '"1"'

    missing = assert_problem(await alice.put(f"{url}/settings", json=new), 428, "precondition_required")
    assert '"1"' in missing["detail"]
    assert_problem(
        await alice.put(f"{url}/settings", json=new, headers={"if-match": '"7"'}), 412, "precondition_failed"
    )
    weak = await alice.put(f"{url}/settings", json=new, headers={"if-match": 'W/"1"'})
    assert_problem(weak, 412, "precondition_failed")  # If-Match compares strongly
    assert (await alice.get(url)).json()["version"] == 1

    changed = await alice.put(f"{url}/settings", json=new, headers={"if-match": '"0", "1"'})
    assert changed.status_code == 200, changed.text
    assert (changed.headers["etag"], changed.json()) == ('"2"', settings_json(new))
    read = await alice.get(url)
    assert (read.headers["etag"], read.json()["version"], read.json()["settings"]) == ('"2"', 2, settings_json(new))

    stale = await alice.put(f"{url}/settings", json=MULTIPLIER_1, headers={"if-match": '"1"'})
    assert assert_problem(stale, 412, "precondition_failed")["etag"] == '"2"'
    same = await alice.put(f"{url}/settings", json=new, headers={"if-match": '"2"'})
    assert (same.status_code, same.headers["etag"]) == (200, '"2"')  # the same settings change nothing
    anything = await alice.put(f"{url}/settings", json=MULTIPLIER_1, headers={"if-match": "*"})
    assert (anything.status_code, anything.headers["etag"]) == (200, '"3"')

    # Status changes move the version too, so a settings ETag read before a pause is stale after it.
    assert_problem(await alice.post(f"{url}/pause", headers={"if-match": '"2"'}), 412, "precondition_failed")
    paused = await alice.post(f"{url}/pause", headers={"if-match": '"3"'})
    assert (paused.status_code, paused.headers["etag"]) == (200, '"4"')
    assert_problem(
        await alice.put(f"{url}/settings", json=new, headers={"if-match": '"3"'}), 412, "precondition_failed"
    )

    kinds = [e["kind"] for e in (await get_json(alice, f"{url}/events"))["data"]]
    assert kinds == ["paused", "settings_changed", "settings_changed", "subscribed"]


async def test_pause_resume_close_only_and_stop(alice: httpx.AsyncClient, subscription: dict[str, Any]) -> None:
    """Stopping is final and idempotent: a second stop answers 200 with the subscription unchanged;
    any other change afterwards is a 409."""
    url = f"/v1/subscriptions/{subscription['id']}"

    async def command(name: str, **kwargs: Any) -> dict[str, Any]:
        response = await alice.post(f"{url}/{name}", **kwargs)
        assert response.status_code == 200, response.text
        assert response.headers["etag"] == f'"{response.json()["version"]}"'
        body: dict[str, Any] = response.json()
        return body

    assert ((await command("pause"))["status"], (await command("pause"))["version"]) == ("paused", 2)
    assert (await command("close-only"))["status"] == "close_only"
    assert (await command("resume"))["status"] == "active"
    stopped = await command("stop", json={})
    assert (stopped["status"], stopped["version"]) == ("stopped", 5)
    assert stopped["stopped_at"] is not None
    assert await command("stop") == stopped  # idempotent
    for name in ("resume", "pause", "close-only"):
        assert_problem(await alice.post(f"{url}/{name}"), 409, "conflict")
    put = await alice.put(
        f"{url}/settings", json={"sizing": "fixed_qty", "fixed_qty": "1"}, headers={"if-match": '"5"'}
    )
    assert_problem(put, 409, "conflict")
    assert (await alice.get(url)).json() == stopped
    kinds = [e["kind"] for e in (await get_json(alice, f"{url}/events"))["data"]]
    assert kinds == ["stopped", "resumed", "close_only", "paused", "subscribed"]


async def alice_holds(alice: httpx.AsyncClient, account_id: str, qty: str) -> bool | None:
    positions = (await get_json(alice, f"/v1/accounts/{account_id}/positions"))["data"]
    held = sum((Decimal(p["qty"]) for p in positions if p["symbol"] == EURUSD), Decimal(0))
    return True if held == Decimal(qty) else None


async def filled_intents(alice: httpx.AsyncClient, subscription_id: str, count: int) -> list[dict[str, Any]]:
    """The subscription's copy orders, once there are ``count`` and all of them filled (newest first)."""

    async def settled() -> list[dict[str, Any]] | None:
        intents: list[dict[str, Any]] = (await get_json(alice, f"/v1/subscriptions/{subscription_id}/intents"))["data"]
        done = len(intents) == count and all(i["status"] == "filled" for i in intents)
        return intents if done else None

    return await eventually(settled, f"{count} filled copy orders")


async def provider_buys(bob: httpx.AsyncClient, account_id: str, qty: str) -> None:
    placed = await bob.post(f"/v1/accounts/{account_id}/orders", json={"symbol": EURUSD, "side": "buy", "qty": qty})
    assert placed.status_code == 201, placed.text


async def test_a_provider_trade_is_copied_and_stop_closes_the_copy(
    bob: httpx.AsyncClient, alice: httpx.AsyncClient, bob_account: str, alice_account: str, subscription: dict[str, Any]
) -> None:
    url = f"/v1/subscriptions/{subscription['id']}"
    await provider_buys(bob, bob_account, "0.10")
    await eventually(lambda: alice_holds(alice, alice_account, "0.10"), "Alice's copy of Bob's buy")
    (opened,) = await filled_intents(alice, subscription["id"], 1)
    assert (opened["action"], opened["side"], opened["qty"], opened["symbol"]) == ("open", "buy", "0.10", EURUSD)
    assert opened["client_order_id"].startswith("cp-")
    assert opened["order_id"]
    for latency in ("engine_us", "broker_us"):
        assert isinstance(opened[latency], int), latency
        assert opened[latency] >= 0, latency
    assert Decimal(opened["slippage_bps"]).is_finite()  # a decimal string
    assert set(numbers_in(opened)) <= {"$.signal_us", "$.engine_us", "$.broker_us", "$.attempts"}

    async def copied() -> list[dict[str, Any]] | None:
        events: list[dict[str, Any]] = (await get_json(alice, f"{url}/events"))["data"]
        return events if events[0]["kind"] == "copied" else None

    events = await eventually(copied, "the copied event")
    assert events[0]["intent_id"] == opened["id"]
    assert EURUSD in events[0]["detail"]
    (link,) = (await get_json(alice, f"{url}/links"))["data"]
    assert (link["status"], link["side"], link["qty"], link["provider_symbol"]) == ("open", "buy", "0.10", EURUSD)

    stopped = await alice.post(f"{url}/stop", json={"close_copies": True})
    assert (stopped.status_code, stopped.json()["status"]) == (200, "stopped"), stopped.text
    await eventually(lambda: alice_holds(alice, alice_account, "0"), "Alice's copy to be closed")
    closing, _ = await filled_intents(alice, subscription["id"], 2)
    assert (closing["action"], closing["side"], closing["qty"], closing["signal_id"]) == ("close", "sell", "0.10", None)
    (link,) = (await get_json(alice, f"{url}/links"))["data"]
    assert (link["status"], link["qty"]) == ("closed", "0")
    bob_positions = (await get_json(bob, f"/v1/accounts/{bob_account}/positions"))["data"]
    assert [(p["symbol"], p["qty"]) for p in bob_positions] == [(EURUSD, "0.10")]  # the provider keeps his

    again = await alice.post(f"{url}/stop", json={"close_copies": True})
    assert again.json() == stopped.json()  # nothing left to close, nothing changes
    assert len(await filled_intents(alice, subscription["id"], 2)) == 2


async def test_a_copy_records_its_signal_latency(
    bob: httpx.AsyncClient, alice: httpx.AsyncClient, bob_account: str, alice_account: str, subscription: dict[str, Any]
) -> None:
    await provider_buys(bob, bob_account, "0.10")
    (opened,) = await filled_intents(alice, subscription["id"], 1)
    assert isinstance(opened["signal_us"], int)
    assert opened["signal_us"] >= 0


async def test_another_user_gets_404_everywhere_and_changes_nothing(  # noqa: PLR0917 - pytest fixtures
    app: Litestar,
    venue: SimHarness,
    make_client: ClientFactory,
    bob: httpx.AsyncClient,
    bob_account: str,
    alice_account: str,
    strategy: dict[str, Any],
    subscription: dict[str, Any],
) -> None:
    """SECURITY.md 19: Carol reading, changing or subscribing with someone else's objects gets 404."""
    carol = await make_client("carol@example.com", "Carol", role=Role.PROVIDER)
    private = await create_strategy(bob, bob_account, "Private", visibility="private")
    sub, missing_sub = subscription["id"], new_id("sub")
    before = (await snapshot(app), await copy_rows(app))
    etag = {"if-match": '"1"'}
    settings = {"sizing": "fixed_qty", "fixed_qty": "1"}
    attempts: list[tuple[str, str, str, dict[str, Any] | None, dict[str, str] | None]] = [
        ("GET", f"/v1/subscriptions/{sub}{tail}", f"/v1/subscriptions/{missing_sub}{tail}", None, None)
        for tail in ("", "/settings", "/events", "/intents", "/links")
    ]
    attempts += [
        ("PUT", f"/v1/subscriptions/{sub}/settings", f"/v1/subscriptions/{missing_sub}/settings", settings, etag),
        ("PUT", f"/v1/subscriptions/{sub}/settings", f"/v1/subscriptions/{missing_sub}/settings", settings, None),
    ]
    attempts += [
        ("POST", f"/v1/subscriptions/{sub}/{name}", f"/v1/subscriptions/{missing_sub}/{name}", None, None)
        for name in ("pause", "resume", "close-only", "stop")
    ]
    attempts += [
        (
            "POST",
            f"/v1/subscriptions/{sub}/stop",
            f"/v1/subscriptions/{missing_sub}/stop",
            {"close_copies": True},
            None,
        ),
        ("GET", f"/v1/strategies/{private['id']}", f"/v1/strategies/{new_id('stg')}", None, None),
        ("PATCH", f"/v1/strategies/{strategy['id']}", f"/v1/strategies/{new_id('stg')}", {"status": "closed"}, None),
    ]
    for method, theirs_url, missing_url, body, headers in attempts:
        theirs = await carol.request(method, theirs_url, json=body, headers=headers)
        missing = await carol.request(method, missing_url, json=body, headers=headers)
        assert theirs.status_code == missing.status_code == 404, (method, theirs_url, theirs.text)
        assert theirs.json()["code"] == "not_found"
        assert theirs.json()["detail"] == missing.json()["detail"], (method, theirs_url)
    assert (await snapshot(app), await copy_rows(app)) == before
    assert (await bob.get(f"/v1/strategies/{strategy['id']}")).json()["status"] == "active"

    # Subscribing to a private strategy, or with someone else's account, is as if neither existed.
    carol_account = (await link_via_api(carol, venue.base_url, 3))["account"]["id"]
    await ledger_caught_up(app, carol_account)
    before = (await snapshot(app), await copy_rows(app))
    assert_problem(await subscribe(carol, private["id"], carol_account), 404, "not_found")
    assert_problem(await subscribe(carol, strategy["id"], alice_account), 404, "not_found")
    assert_problem(
        await carol.post("/v1/strategies", json={"name": "Mine", "account_id": alice_account}), 404, "not_found"
    )
    assert (await get_json(carol, "/v1/subscriptions"))["data"] == []
    assert (await get_json(carol, "/v1/strategies"))["data"] == []
    assert (await snapshot(app), await copy_rows(app)) == before


async def test_a_grant_narrowed_to_other_accounts_reaches_no_subscription(
    app: Litestar, alice: httpx.AsyncClient, alice_account: str, subscription: dict[str, Any]
) -> None:
    """SECURITY.md 23: a consent limited to some accounts gives no access to the others."""
    database: Database = app.state.db
    user_id = (await get_json(alice, "/v1/me"))["id"]
    narrowed = Principal(kind="client", user_id=user_id, account_ids=frozenset({new_id("acc")}))
    granted = Principal(kind="client", user_id=user_id, account_ids=frozenset({alice_account}))
    async with database.session() as session:
        with pytest.raises(NotFound):
            await _subscription(session, narrowed, subscription["id"])
        assert (await _subscription(session, granted, subscription["id"])).id == subscription["id"]
        repo = SubscriptionRepository(session)

        async def fetch(cursor: str | None) -> Any:
            return await repo.list_for_user(user_id, limit=1, after=cursor, descending=True)

        assert await _scoped_page(fetch, lambda s: narrowed.can_reach_account(s.account_id), limit=1, after=None) == (
            [],
            None,
        )
        items, next_after = await _scoped_page(
            fetch, lambda s: granted.can_reach_account(s.account_id), limit=1, after=None
        )
        assert ([s.id for s in items], next_after) == ([subscription["id"]], None)
