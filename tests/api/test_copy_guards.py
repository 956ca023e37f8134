"""``/v1/subscriptions/{id}/paused-symbols``: listing the symbols repeated refusals paused, and resuming one.

The pause is stored as the engine stores it after refusals (the refusal path itself is
tests/engine/copy/test_rejects.py); the routes run against the real app, with Alice following Bob's
strategy at a real sim venue.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from litestar import Litestar

from brokerlink.kit.ids import new_id
from brokerlink.store.db import Database
from brokerlink.store.repositories.copy_symbol_pauses import CopySymbolPauseRepository
from tests.api.support import assert_problem
from tests.api.test_copy import (  # noqa: F401 - the copy API fixtures
    alice_account,
    app,
    bob_account,
    clock,
    get_json,
    strategy,
    subscription,
)


async def _pause(running_app: Litestar, subscription_id: str, symbol: str, rejects: int = 3) -> None:
    """Store a run of ``rejects`` refusals in ``symbol`` that paused it, as the engine does."""
    database: Database = running_app.state.db
    now = running_app.state.clock.now()
    async with database.session() as s:
        repo = CopySymbolPauseRepository(s)
        for n in range(rejects):
            await repo.count_reject(subscription_id, symbol, reason=f"refusal {n + 1}", now=now - timedelta(seconds=1))
        await repo.pause(subscription_id, symbol, now=now)
        await s.commit()


async def test_paused_symbols_are_listed_and_resumed_with_an_event(
    app: Litestar,  # noqa: F811
    alice: httpx.AsyncClient,
    subscription: dict[str, Any],  # noqa: F811
) -> None:
    url = f"/v1/subscriptions/{subscription['id']}/paused-symbols"
    assert await get_json(alice, url) == {"data": [], "next_after": None}
    await _pause(app, subscription["id"], "EUR/USD")
    await _pause(app, subscription["id"], "GBP/USD", rejects=5)
    listed = (await get_json(alice, url))["data"]
    assert [(p["symbol"], p["rejects"], p["reason"]) for p in listed] == [
        ("EUR/USD", 3, "refusal 3"),
        ("GBP/USD", 5, "refusal 5"),
    ]
    assert all(p["paused_at"] for p in listed)

    # A path cannot carry the slash: the symbol compares without punctuation, in any case.
    response = await alice.delete(f"{url}/eurusd")
    assert response.status_code == 204, response.text
    assert [p["symbol"] for p in (await get_json(alice, url))["data"]] == ["GBP/USD"]
    events = (await get_json(alice, f"/v1/subscriptions/{subscription['id']}/events"))["data"]
    assert (events[0]["kind"], events[0]["reason"]) == ("resumed", "symbol_resumed")
    assert "EUR/USD" in events[0]["detail"]

    assert_problem(await alice.delete(f"{url}/EURUSD"), 404, "not_found")  # not paused any more
    assert_problem(await alice.delete(f"{url}/USDJPY"), 404, "not_found")


async def test_another_users_subscription_answers_404_and_changes_nothing(
    app: Litestar,  # noqa: F811
    alice: httpx.AsyncClient,
    bob: httpx.AsyncClient,
    client: httpx.AsyncClient,
    subscription: dict[str, Any],  # noqa: F811
) -> None:
    await _pause(app, subscription["id"], "EUR/USD")
    url = f"/v1/subscriptions/{subscription['id']}/paused-symbols"
    assert_problem(await bob.get(url), 404, "not_found")  # Bob provides the strategy; the subscription is Alice's
    assert_problem(await bob.delete(f"{url}/EURUSD"), 404, "not_found")
    assert_problem(await alice.get(f"/v1/subscriptions/{new_id('sub')}/paused-symbols"), 404, "not_found")
    assert (await client.get(url)).status_code == 401
    assert [p["symbol"] for p in (await get_json(alice, url))["data"]] == ["EUR/USD"]
