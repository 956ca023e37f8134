"""``GET /metrics`` (ADR 0018): off without a token, a bearer token otherwise, and metrics that real
requests move: failed sign-ins, 429s, route templates (never raw paths), the outbox depth.

The registry belongs to the process, so each test compares two scrapes (before and after the cause)
rather than expecting absolute values.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import httpx
import pytest
from litestar import Litestar
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from brokerlink import observe
from brokerlink.app.factory import create_app
from brokerlink.config import Settings
from brokerlink.kit.clock import ManualClock
from brokerlink.observe import Observation
from tests.api.mfa_support import authenticator
from tests.api.support import PASSWORD, ClientFactory, asgi_client, assert_problem, running, with_csrf

TOKEN = "metrics-token-for-tests-0123456789"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"metrics_token": SecretStr(TOKEN)})


@pytest.fixture
def seen() -> Iterator[list[Observation]]:
    got: list[Observation] = []
    remove = observe.add_listener(got.append)
    yield got
    remove()


def client_at(app: Litestar, ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="https://testserver.local")


async def scrape(c: httpx.AsyncClient) -> Samples:
    response = await c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[s.name, frozenset(s.labels.items())] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_answer_404_when_no_token_is_configured(settings: Settings, clock: ManualClock) -> None:
    app = create_app(settings.model_copy(update={"metrics_token": None}), clock=clock, configure_logs=False)
    async with running(app), asgi_client(app) as c:
        assert_problem(await c.get("/metrics"), 404, "not_found")
        assert_problem(await c.get("/metrics", headers={"Authorization": "Bearer "}), 404, "not_found")


async def test_metrics_refuse_a_missing_or_wrong_token_with_401_and_count_it(
    client: httpx.AsyncClient, seen: list[Observation]
) -> None:
    before = await scrape(client)
    missing = await client.get("/metrics")
    assert_problem(missing, 401, "not_authenticated")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert_problem(
        await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"}), 401, "not_authenticated"
    )
    assert_problem(await client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"}), 401, "not_authenticated")
    after = await scrape(client)
    name = "brokerlink_auth_failures_total"
    assert value(after, name, reason="metrics_token") == value(before, name, reason="metrics_token") + 3
    assert [o.labels["ip"] for o in seen if o.kind == "auth_failure"] == ["127.0.0.1"] * 3


async def test_metrics_with_the_token_are_the_prometheus_exposition(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["cache-control"] == "no-store"
    names = {f.name for f in text_string_to_metric_families(response.text)}
    assert {"brokerlink_http_requests", "brokerlink_copy_outbox_depth", "brokerlink_copy_latency_seconds"} <= names
    assert all(n.startswith("brokerlink_") for n in names)


async def test_a_real_failed_login_raises_the_auth_failure_counter_and_tells_listeners_who_and_where(
    make_client: ClientFactory, client: httpx.AsyncClient, seen: list[Observation]
) -> None:
    await make_client("alice@example.com")
    await with_csrf(client)
    before = await scrape(client)
    response = await client.post("/v1/auth/login", json={"email": "alice@example.com", "password": "wrong guess"})
    assert_problem(response, 401, "invalid_credentials")
    ok = await client.post("/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD})
    assert ok.status_code == 200, ok.text
    after = await scrape(client)

    name = "brokerlink_auth_failures_total"
    assert value(after, name, reason="password") == value(before, name, reason="password") + 1
    success = "brokerlink_auth_successes_total"
    assert value(after, success, method="password") == value(before, success, method="password") + 1
    failures = [o.labels for o in seen if o.kind == "auth_failure"]
    assert failures == [{"principal": "alice@example.com", "ip": "127.0.0.1", "reason": "password"}]
    assert "alice@example.com" not in str(after)  # in the observation, never in a label set


async def test_locked_out_attempts_and_wrong_mfa_codes_are_auth_failures(
    make_client: ClientFactory, app: Litestar, client: httpx.AsyncClient, clock: ManualClock
) -> None:
    device = authenticator(await make_client("alice@example.com", mfa=True))
    c = await with_csrf(asgi_client(app))
    before = await scrape(client)
    assert (
        await c.post("/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD})
    ).status_code == 200
    for _ in range(5):
        assert_problem(await c.post("/v1/auth/mfa", json={"code": device.code(clock, 5)}), 401, "invalid_mfa_code")
    clock.advance(timedelta(seconds=30))
    assert_problem(await c.post("/v1/auth/mfa", json={"code": device.code(clock)}), 429, "rate_limited")
    after = await scrape(client)
    name = "brokerlink_auth_failures_total"
    assert value(after, name, reason="mfa_code") == value(before, name, reason="mfa_code") + 5
    assert value(after, name, reason="locked_out") == value(before, name, reason="locked_out") + 1


@pytest.fixture
async def limited_app(settings: Settings, clock: ManualClock) -> AsyncIterator[Litestar]:
    app = create_app(settings.model_copy(update={"rate_limit_ip": "3/hour"}), clock=clock, configure_logs=False)
    async with running(app):
        yield app


async def test_a_real_429_raises_the_rate_limit_counter_by_scope(limited_app: Litestar) -> None:
    async with client_at(limited_app, "10.0.0.1") as scraper, client_at(limited_app, "10.0.0.2") as caller:
        before = await scrape(scraper)
        statuses = [(await caller.get("/v1/auth/csrf")).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        after = await scrape(scraper)
    name = "brokerlink_rate_limited_total"
    assert value(after, name, scope="ip") == value(before, name, scope="ip") + 1
    requests = "brokerlink_http_requests_total"
    assert value(after, requests, route="/v1/auth/csrf", method="GET", status="429") >= 1


async def test_requests_are_counted_by_route_template_never_by_raw_path(
    alice: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    assert_problem(await alice.get("/v1/orders/ord_doesnotexist123"), 404, "not_found")
    assert_problem(await client.get("/v1/orders/ord_doesnotexist123"), 401, "not_authenticated")
    assert (await client.get("/no/such/path/xyzzy")).status_code == 404
    assert (await client.request("BREW", "/healthz")).status_code == 405
    after = await scrape(client)

    name = "brokerlink_http_requests_total"
    assert value(after, name, route="/v1/orders/{order_id}", method="GET", status="404") >= 1
    assert value(after, name, route="/v1/orders/{order_id}", method="GET", status="401") >= 1
    assert value(after, name, route=observe.UNMATCHED_ROUTE, method="GET", status="404") >= 1
    assert value(after, name, route=observe.UNMATCHED_ROUTE, method="OTHER", status="405") >= 1  # no route for BREW
    histogram = "brokerlink_http_request_duration_seconds_count"
    assert value(after, histogram, route="/v1/orders/{order_id}", method="GET", status="404") >= 1
    every_label = {v for (_, labels) in after for (_, v) in labels}
    assert not any("ord_doesnotexist123" in v or "xyzzy" in v or "BREW" in v for v in every_label)
