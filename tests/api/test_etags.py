"""ETags and ``If-Match`` on every object whose settings change (issue 8, ADR 0033).

Each object is read (``ETag``), changed with that tag (200, a new tag), changed again with the stale
tag (412 ``precondition_failed`` naming the current tag, nothing changed), with a weak tag (412),
and with ``*`` (accepted). A subscription's settings require the header (428); their own tests are in
``test_copy.py``. The comparison itself is unit-tested first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from litestar import Litestar

from brokerlink.api.etags import (
    PreconditionFailed,
    PreconditionRequired,
    check_if_match,
    content_tag,
    matches,
    version_tag,
)
from brokerlink.config import Settings
from brokerlink.domain.enums import Role
from tests.api.consents.support import jwks
from tests.api.resource_support import user_id
from tests.api.support import ClientFactory, assert_problem, grant_role, link_account


def test_if_match_compares_strongly() -> None:
    tag = version_tag(3)
    assert tag == '"3"'
    assert matches('"3"', tag)
    assert matches('"1", "3"', tag)
    assert matches("*", tag)
    assert not matches('W/"3"', tag)
    assert not matches('"4"', tag)
    assert not matches("3", tag)
    assert check_if_match(None, tag) is False
    assert check_if_match('"3"', tag) is True
    with pytest.raises(PreconditionRequired):
        check_if_match(" ", tag, required=True)
    with pytest.raises(PreconditionFailed) as failed:
        check_if_match('"2"', tag)
    assert failed.value.to_problem()["etag"] == tag


def test_content_tags_follow_the_representation() -> None:
    assert content_tag({"a": 1, "b": "x"}) == content_tag({"b": "x", "a": 1})
    assert content_tag({"a": 1}) != content_tag({"a": 2})
    assert content_tag({"a": 1}).startswith('"')


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_allowed_hosts": ["127.0.0.1"]})


Change = Callable[[dict[str, str]], Awaitable[httpx.Response]]


async def _check(read: Callable[[], Awaitable[httpx.Response]], change: Change, what: str) -> None:
    """Read, change with the tag, then refuse the stale, weak and missing-object cases."""
    current = await read()
    assert current.status_code == 200, current.text
    tag = current.headers["etag"]
    assert tag.startswith('"'), (what, tag)
    changed = await change({"If-Match": tag})
    assert changed.status_code == 200, (what, changed.text)
    new_tag = changed.headers["etag"]
    assert new_tag != tag, what
    assert (await read()).headers["etag"] == new_tag, what  # the tag of a change is the tag of the next read
    stale = assert_problem(await change({"If-Match": tag}), 412, "precondition_failed")
    assert stale["etag"] == new_tag, what
    assert (await read()).headers["etag"] == new_tag, f"{what}: a refused change changed something"
    assert_problem(await change({"If-Match": f"W/{new_tag}"}), 412, "precondition_failed")
    assert (await change({"If-Match": "*"})).status_code == 200, what
    assert (await change({})).status_code == 200, what  # optional here


async def test_strategy_account_and_fees(app: Litestar, make_client: ClientFactory) -> None:
    bob = await make_client("bob@example.com", "Bob", role=Role.PROVIDER)
    _, account = await link_account(app, "bob@example.com", "Main")
    created = await bob.post("/v1/strategies", json={"name": "Trend", "account_id": account})
    assert created.status_code == 201, created.text
    strategy = created.json()["id"]
    assert created.headers["etag"] == (await bob.get(f"/v1/strategies/{strategy}")).headers["etag"]
    names = iter(range(100))

    def rename(path: str, field: str = "name") -> Change:
        async def change(headers: dict[str, str]) -> httpx.Response:
            return await bob.patch(path, json={field: f"Name {next(names)}"}, headers=headers)

        return change

    await _check(lambda: bob.get(f"/v1/strategies/{strategy}"), rename(f"/v1/strategies/{strategy}"), "strategy")
    await _check(lambda: bob.get(f"/v1/accounts/{account}"), rename(f"/v1/accounts/{account}"), "account")
    fees = f"/v1/strategies/{strategy}/fees"

    async def set_fees(headers: dict[str, str]) -> httpx.Response:
        body = {"performance_pct": str(next(names) % 30), "management_pct": "0", "volume_fee": "0"}
        return await bob.put(fees, json=body, headers=headers)

    await _check(lambda: bob.get(fees), set_fees, "fee schedule")


async def test_webhook_endpoint(make_client: ClientFactory) -> None:
    alice = await make_client("alice@example.com", "Alice")
    created = await alice.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h", "event_types": ["order.filled"]})
    assert created.status_code == 201, created.text
    path = f"/v1/webhooks/{created.json()['id']}"
    assert created.headers["etag"] == (await alice.get(path)).headers["etag"]
    count = iter(range(100))

    async def describe(headers: dict[str, str]) -> httpx.Response:
        return await alice.patch(path, json={"description": f"v{next(count)}"}, headers=headers)

    await _check(lambda: alice.get(path), describe, "webhook endpoint")


async def test_admin_objects(app: Litestar, make_client: ClientFactory) -> None:
    admin = await make_client("ops@example.com", "Ops")
    await grant_role(app, "ops@example.com", Role.ADMIN)
    await make_client("pat@example.com", "Pat")
    pat = await user_id(app, "pat@example.com")
    roles = iter([Role.PROVIDER, Role.USER] * 10)

    async def set_role(headers: dict[str, str]) -> httpx.Response:
        return await admin.patch(f"/v1/admin/users/{pat}", json={"role": next(roles).value}, headers=headers)

    await _check(lambda: admin.get(f"/v1/admin/users/{pat}"), set_role, "user")
    body: dict[str, Any] = {"name": "Tracker", "redirect_uris": ["https://t.example/cb"], "jwks": jwks(),
                            "scopes": ["accounts:read"]}  # fmt: skip
    created = await admin.post("/v1/admin/clients", json=body)
    assert created.status_code == 201, created.text
    path = f"/v1/admin/clients/{created.json()['id']}"
    names = iter(range(100))

    async def rename(headers: dict[str, str]) -> httpx.Response:
        return await admin.patch(path, json={"name": f"Tracker {next(names)}"}, headers=headers)

    await _check(lambda: admin.get(path), rename, "app")
