"""Statistics, equity curves and statements over the REST API, and who may see them.

Bob provides a public and a private strategy from his account; Alice follows the public one; Carol
is anyone else. Samples are written into the app's store by hand (the clock is a manual one), so the
figures are known: the statistics' own arithmetic is tested in tests/ledger/test_stats.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from litestar import Litestar

from brokerlink.ledger import chart
from brokerlink.store.db import Database
from brokerlink.store.models_stats import SnapshotKind
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.stats import EquitySnapshot, StatsRepository
from tests.api.support import ClientFactory, assert_problem, link_via_api
from tests.api.test_copy import create_strategy, subscribe
from tests.contract.harness import SimHarness
from tests.ledger.test_stats_support import book

T = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
SINCE = "2026-11-01T00:00:00Z"


@pytest.fixture
def app(venue: SimHarness, app: Litestar) -> Litestar:
    """The app, started after the venue its links reach (so its links close before the venue stops)."""
    return app


@pytest.fixture
async def carol(make_client: ClientFactory) -> httpx.AsyncClient:
    return await make_client("carol@example.com", "Carol")


class World:
    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


@pytest.fixture
async def world(app: Litestar, alice: httpx.AsyncClient, bob: httpx.AsyncClient, venue: SimHarness) -> World:
    bob_account = (await link_via_api(bob, venue.base_url, 2))["account"]["id"]
    alice_account = (await link_via_api(alice, venue.base_url, 1))["account"]["id"]
    public = await create_strategy(bob, bob_account, "Public")
    private = await create_strategy(bob, bob_account, "Private", visibility="private")
    response = await subscribe(alice, public["id"], alice_account)
    assert response.status_code == 201, response.text
    subscription = response.json()
    database: Database = app.state.db

    def sample(  # noqa: PLR0917 - a table row
        series: str, kind: SnapshotKind, account: str, day: int, equity: str, flow: str = "0"
    ) -> EquitySnapshot:
        return EquitySnapshot(
            series=series, kind=kind, account_id=account, currency="USD", cash=Decimal(equity),
            equity=Decimal(equity), net_flow=Decimal(flow), ts=T + timedelta(days=day),
            subscription_id=subscription["id"] if kind is SnapshotKind.SUBSCRIPTION else None,
        )  # fmt: skip

    acc, sub = SnapshotKind.ACCOUNT, SnapshotKind.SUBSCRIPTION
    async with database.session() as session:
        await StatsRepository(session).add_many([
            # Bob: +10%, a 900 deposit (no gain), +10%: TWR 0.21.
            sample(bob_account, acc, bob_account, 0, "1000"),
            sample(bob_account, acc, bob_account, 1, "1100"),
            sample(bob_account, acc, bob_account, 2, "2000", "900"),
            sample(bob_account, acc, bob_account, 3, "2200"),
            # Alice's subscription from day 1: +4%, +5%: 0.092; Bob over the same days: 0.1.
            sample(subscription["id"], sub, alice_account, 1, "500"),
            sample(subscription["id"], sub, alice_account, 2, "520"),
            sample(subscription["id"], sub, alice_account, 3, "546"),
        ])  # fmt: skip
        await session.commit()
    return World(
        bob_account=bob_account, alice_account=alice_account, public=public["id"], private=private["id"],
        subscription=subscription["id"], database=database,
    )  # fmt: skip


async def test_strategy_statistics_for_a_follower_and_the_provider(
    world: World, alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    for client in (alice, bob):
        response = await client.get(f"/v1/strategies/{world.public}/stats", params={"since": SINCE})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["time_weighted_return"] == "0.21000000"
        assert body["max_drawdown_equity"] == "0E-8" or Decimal(body["max_drawdown_equity"]) == 0
        assert (body["followers"], Decimal(body["assets_under_copy"])) == (1, Decimal(546))
        assert (body["samples"], body["periods_per_year"], body["currency"]) == (4, 252, "USD")


async def test_a_strategy_curve_shows_amounts_to_its_provider_only(
    world: World, alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    params = {"since": SINCE}
    theirs = (await alice.get(f"/v1/strategies/{world.public}/equity", params=params)).json()
    mine = (await bob.get(f"/v1/strategies/{world.public}/equity", params=params)).json()
    assert [Decimal(p["index"]) for p in theirs["points"]] == [
        Decimal(1),
        Decimal("1.1"),
        Decimal("1.1"),
        Decimal("1.21"),
    ]
    assert all(p.get("equity") is None and p.get("cash") is None for p in theirs["points"])
    assert theirs["currency"] is None
    assert [p["equity"] for p in mine["points"]] == ["1000", "1100", "2000", "2200"]
    assert mine["currency"] == "USD"
    thinned = (await bob.get(f"/v1/strategies/{world.public}/equity", params=params | {"interval": "2d"})).json()
    assert len(thinned["points"]) < len(mine["points"])
    bad = await bob.get(f"/v1/strategies/{world.public}/equity", params={"interval": "soon"})
    assert_problem(bad, 422, "invalid_input")
    naive = await bob.get(f"/v1/strategies/{world.public}/equity", params={"since": "2026-11-01T00:00:00"})
    assert_problem(naive, 422, "invalid_filter")


async def test_a_private_strategy_is_404_to_everyone_but_its_provider(
    world: World, alice: httpx.AsyncClient, bob: httpx.AsyncClient, carol: httpx.AsyncClient
) -> None:
    for client in (alice, carol):
        for path in ("stats", "equity"):
            assert_problem(await client.get(f"/v1/strategies/{world.private}/{path}"), 404, "not_found")
    assert_problem(await carol.get("/v1/strategies/stg_nope/stats"), 404, "not_found")
    assert (await bob.get(f"/v1/strategies/{world.private}/stats")).status_code == 200
    assert (await carol.get(f"/v1/strategies/{world.public}/stats")).status_code == 200  # public: any signed-in user


async def test_subscription_statistics_are_the_followers_alone(
    world: World, alice: httpx.AsyncClient, bob: httpx.AsyncClient, carol: httpx.AsyncClient
) -> None:
    response = await alice.get(f"/v1/subscriptions/{world.subscription}/stats")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["time_weighted_return"], body["provider_time_weighted_return"], body["tracking_difference"]) == (
        "0.09200000", "0.10000000", "-0.00800000",
    )  # fmt: skip
    curve = (await alice.get(f"/v1/subscriptions/{world.subscription}/equity")).json()
    assert [p["equity"] for p in curve["points"]] == ["500", "520", "546"]
    # The provider does not see his follower's subscription, nor does anyone else.
    for client in (bob, carol):
        for path in ("stats", "equity"):
            assert_problem(await client.get(f"/v1/subscriptions/{world.subscription}/{path}"), 404, "not_found")


async def test_statements_download_as_attachments_for_the_owner_only(
    world: World, alice: httpx.AsyncClient, carol: httpx.AsyncClient
) -> None:
    account, database = world.alice_account, world.database
    async with database.session() as session:
        found = await AccountRepository(session).get_by_id(account)
    assert found is not None
    owner = found.user_id
    await book(
        database, owner_id=owner, kind="deposit", description="deposit", at=T,
        legs=[(chart.cash(account), "USD", "250", "0"), (chart.owner_capital(account), "USD", "0", "250")],
    )  # fmt: skip
    url = f"/v1/accounts/{account}/statements"
    response = await alice.get(url, params={"period": "2026-11", "format": "csv"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == f'attachment; filename="statement-{account}-2026-11.csv"'
    assert "closing_cash,250" in response.text
    pdf = await alice.get(url, params={"period": "2026-11", "format": "pdf"})
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")
    assert account.encode() in pdf.content
    assert_problem(await alice.get(url, params={"period": "2026-13"}), 422, "invalid_input")
    assert_problem(await carol.get(url, params={"period": "2026-11"}), 404, "not_found")
    assert (await alice.get(url, params={"period": "2026-11", "format": "xml"})).status_code == 422


async def test_the_server_samples_linked_accounts_and_subscriptions(app: Litestar, world: World) -> None:
    written = await app.state.stats_sampler.sample()
    assert written == 3  # Bob's and Alice's accounts, Alice's subscription
    now = app.state.clock.now()
    async with world.database.session() as session:
        repo = StatsRepository(session)
        (bob,) = await repo.series(world.bob_account, until=now)
        (alice,) = await repo.series(world.alice_account, until=now)
        (copying,) = await repo.series(world.subscription, until=now)
    assert bob.ts == alice.ts == copying.ts == now
    assert (copying.kind, copying.account_id, copying.equity) == (
        SnapshotKind.SUBSCRIPTION,
        alice.account_id,
        alice.equity,
    )
    assert bob.equity > 0


async def test_the_routes_are_documented_and_need_a_session(
    make_client: ClientFactory, client: httpx.AsyncClient
) -> None:
    spec = (await (await make_client("dora@example.com", "Dora", mfa=False)).get("/openapi.json")).json()
    paths = {
        "/v1/strategies/{strategy_id}/stats",
        "/v1/strategies/{strategy_id}/equity",
        "/v1/subscriptions/{subscription_id}/stats",
        "/v1/subscriptions/{subscription_id}/equity",
        "/v1/accounts/{account_id}/statements",
    }
    assert paths <= set(spec["paths"])
    for path in ("/v1/strategies/stg_x/stats", "/v1/subscriptions/sub_x/equity", "/v1/accounts/acc_x/statements"):
        assert_problem(await client.get(path, params={"period": "2026-11"}), 401, "not_authenticated")
