"""``/v1/subscriptions/{id}/reconciliation`` against a real sim venue on loopback.

Bob provides a strategy from his account (venue account ``SIM-CONF-2``); Alice follows it with hers
(``SIM-CONF-1``). An orphan copy is planted in the store (a link the provider is flat in, which
Alice holds nothing of): the follower sees it, a repair closes the link; nobody else sees anything.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from litestar import Litestar

from brokerlink.domain.copy import CopyLink, LinkStatus
from brokerlink.domain.enums import Side
from brokerlink.kit.clock import ManualClock
from brokerlink.kit.ids import new_id
from brokerlink.store.db import Database
from brokerlink.store.repositories.copy_events import CopyEventRepository
from brokerlink.store.repositories.copy_links import CopyLinkRepository
from tests.api.support import assert_problem, link_via_api
from tests.contract.harness import SimHarness


@pytest.fixture
def app(venue: SimHarness, app: Litestar) -> Litestar:
    """The app, started after the venue its links reach (so its links close before the venue stops)."""
    return app


@pytest.fixture
async def subscription(alice: httpx.AsyncClient, bob: httpx.AsyncClient, venue: SimHarness) -> dict[str, Any]:
    """Alice following Bob's public strategy one for one."""
    bob_account = (await link_via_api(bob, venue.base_url, 2))["account"]["id"]
    alice_account = (await link_via_api(alice, venue.base_url, 1))["account"]["id"]
    response = await bob.post(
        "/v1/strategies", json={"name": "Trend", "account_id": bob_account, "visibility": "public"}
    )
    assert response.status_code == 201, response.text
    body = {
        "strategy_id": response.json()["id"],
        "account_id": alice_account,
        "settings": {"sizing": "multiplier", "multiplier": "1"},
    }
    response = await alice.post("/v1/subscriptions", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _plant_orphan(app: Litestar, clock: ManualClock, subscription_id: str) -> str:
    """A copy of GBP/USD the provider does not hold (his close never reached Alice's link)."""
    database: Database = app.state.db
    now = clock.now()
    link = CopyLink(
        id=new_id("lnk"), subscription_id=subscription_id, provider_symbol="GBP/USD", follower_symbol="GBP/USD",
        side=Side.BUY, qty=Decimal("0.20"), opened_at=now, updated_at=now,
    )  # fmt: skip
    async with database.session() as session:
        await CopyLinkRepository(session).add(link)
        await session.commit()
    return link.id


async def test_the_follower_sees_the_orphan_and_a_repair_closes_it(
    app: Litestar, clock: ManualClock, alice: httpx.AsyncClient, subscription: dict[str, Any]
) -> None:
    sub_id = subscription["id"]
    link_id = await _plant_orphan(app, clock, sub_id)
    url = f"/v1/subscriptions/{sub_id}/reconciliation"

    response = await alice.get(url)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["subscription_id"] == sub_id
    assert report["clean"] is False
    [finding] = report["findings"]
    assert finding | {"detail": None} == {
        "kind": "orphan_link", "symbol": "GBP/USD", "expected": "0.20", "actual": "0", "link_id": link_id,
        "provider_symbol": "GBP/USD", "side": "buy", "link_qty": "0.20", "held": "0.00", "provider_qty": "0",
        "excess": None, "detail": None,
    }  # fmt: skip
    assert report["counts"]["orphan_link"] == 1
    assert (report["repairs"], report["intents"]) == ([], [])

    # A run without repair reports the same and changes nothing.
    response = await alice.post(url, json={})
    assert response.status_code == 200, response.text
    assert [f["kind"] for f in response.json()["findings"]] == ["orphan_link"]

    response = await alice.post(url, json={"repair": True})
    assert response.status_code == 200, response.text
    repaired = response.json()
    assert repaired["clean"] is True
    assert [(r["link_id"], r["action"], r["qty"]) for r in repaired["repairs"]] == [(link_id, "link_closed", "0")]
    assert repaired["intents"] == []  # nothing held: nothing to sell
    database: Database = app.state.db
    async with database.session() as session:
        link = await CopyLinkRepository(session).get_by_id(link_id)
        events = (await CopyEventRepository(session).list_for_subscription(sub_id)).items
    assert link is not None
    assert link.status is LinkStatus.CLOSED
    # Newest first: the repair's run and its change, then the run without repair (which changed nothing).
    assert [(e.kind.value, e.reason, e.detail) for e in events][:3] == [
        ("reconciled", None, "reconciled on request: orphan_link 1; 1 repaired"),
        ("reconciled", "orphan_link", "buy 0.20 GBP/USD: nothing held, the link is closed"),
        ("reconciled", None, "reconciled on request: orphan_link 1"),
    ]

    after = (await alice.get(url)).json()
    assert (after["clean"], after["findings"]) == (True, [])


async def test_nobody_else_sees_or_repairs_it(
    *,
    app: Litestar,
    clock: ManualClock,
    bob: httpx.AsyncClient,
    make_client: Any,
    alice: httpx.AsyncClient,
    subscription: dict[str, Any],
) -> None:
    sub_id = subscription["id"]
    link_id = await _plant_orphan(app, clock, sub_id)
    url = f"/v1/subscriptions/{sub_id}/reconciliation"
    carol = await make_client("carol@example.com", "Carol")
    for other in (bob, carol):  # the provider is not the follower either
        assert_problem(await other.get(url), 404, "not_found")
        assert_problem(await other.post(url, json={"repair": True}), 404, "not_found")
    assert_problem(await alice.get(f"/v1/subscriptions/{new_id('sub')}/reconciliation"), 404, "not_found")
    database: Database = app.state.db
    async with database.session() as session:
        link = await CopyLinkRepository(session).get_by_id(link_id)
    assert link is not None
    assert link.status is LinkStatus.OPEN


async def test_a_bad_body_is_a_problem_and_changes_nothing(
    app: Litestar, clock: ManualClock, alice: httpx.AsyncClient, subscription: dict[str, Any]
) -> None:
    sub_id = subscription["id"]
    link_id = await _plant_orphan(app, clock, sub_id)
    url = f"/v1/subscriptions/{sub_id}/reconciliation"
    before = await _feed(app, sub_id)
    assert_problem(await alice.post(url, json={"repair": "yes"}), 422, "invalid_input")
    assert_problem(await alice.post(url, json={"repair": True, "force": True}), 422, "invalid_input")
    assert_problem(await alice.post(url, json=[{"repair": True}]), 422, "invalid_input")
    json_type = {"content-type": "application/json"}
    assert_problem(await alice.post(url, content=b"", headers=json_type), 422, "invalid_input")
    assert_problem(await alice.post(url, content=b"{", headers=json_type), 400, "malformed_request")
    form = {"content-type": "application/x-www-form-urlencoded"}
    assert_problem(await alice.post(url, content=b"repair=true", headers=form), 415, "unsupported_media_type")
    assert await _feed(app, sub_id) == before
    database: Database = app.state.db
    async with database.session() as session:
        link = await CopyLinkRepository(session).get_by_id(link_id)
    assert link is not None
    assert link.status is LinkStatus.OPEN


async def _feed(app: Litestar, subscription_id: str) -> list[str]:
    database: Database = app.state.db
    async with database.session() as session:
        return [e.id for e in (await CopyEventRepository(session).list_for_subscription(subscription_id)).items]
