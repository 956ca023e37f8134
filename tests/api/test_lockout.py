"""Sign-in lockout with backoff (SECURITY.md 29): 429 with Retry-After after repeated failures, per account and per IP.

A lock is a key in the ``limits`` storage that expires when the lock ends; where a test needs a
lock to have run out, it deletes that key (what the storage's expiry does), rather than sleeping.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import httpx
import pytest
from limits.aio.storage import MemoryStorage, RedisStorage
from litestar import Litestar

from brokerlink.api.auth.lockout import LoginLockout, account_subject, lock_key, lockout_of
from brokerlink.config import Settings
from brokerlink.kit.clock import ManualClock
from brokerlink.kit.errors import RateLimited
from brokerlink.logs import configure_logging
from tests.api.mfa_support import authenticator
from tests.api.support import PASSWORD, ClientFactory, asgi_client, assert_problem, with_csrf
from tests.api.test_linking import restore_logging

__all__ = ["restore_logging"]  # a fixture, used by name
WRONG = "not the password at all"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The request rate limits off (tests/api/test_ratelimit.py covers them): these tests count
    sign-in failures, several within a second, and a 429 must come from the lockout alone."""
    return settings.model_copy(update={"rate_limit_enabled": False})


async def attempt(c: httpx.AsyncClient, email: str = "alice@example.com", password: str = WRONG) -> httpx.Response:
    return await c.post("/v1/auth/login", json={"email": email, "password": password})


async def test_lockout_after_five_failures_refuses_even_the_right_password_with_429_and_retry_after(
    make_client: ClientFactory, client: httpx.AsyncClient, capfd: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    configure_logging("info", "json")
    await make_client("alice@example.com")
    await with_csrf(client)
    for _ in range(5):
        assert_problem(await attempt(client), 401, "invalid_credentials")
    locked = await attempt(client, password=PASSWORD)
    problem = assert_problem(locked, 429, "rate_limited")
    assert problem["type"] == "urn:brokerlink:problem:rate_limited"
    assert 55 <= int(locked.headers["retry-after"]) <= 60
    assert "brokerlink_session" not in client.cookies

    _, err = capfd.readouterr()
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{") and "auth_locked" in line]
    assert {e["subject"].split(":")[0] for e in events} == {"account", "ip"}
    assert all(e["level"] == "warning" and e["failures"] == 5 for e in events)
    assert WRONG not in err
    assert PASSWORD not in err
    assert "alice@example.com" not in "".join(map(str, events))


def client_at(app: Litestar, ip: str) -> httpx.AsyncClient:
    """A client whose requests come from ``ip``."""
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="https://testserver.local")


async def test_lockout_success_resets_the_accounts_count_but_not_the_ips(
    make_client: ClientFactory, app: Litestar
) -> None:
    await make_client("alice@example.com")
    first, second = await with_csrf(client_at(app, "192.0.2.1")), await with_csrf(client_at(app, "192.0.2.2"))
    for _ in range(4):
        assert_problem(await attempt(first), 401, "invalid_credentials")
    assert (await attempt(first, password=PASSWORD)).status_code == 200
    for _ in range(4):  # 8 for the account without the reset: it would be locked
        assert_problem(await attempt(second), 401, "invalid_credentials")
    assert (await attempt(second, password=PASSWORD)).status_code == 200
    # The first IP's four failures still count: one more, and that IP is locked for everyone.
    assert_problem(await attempt(first, "bob@example.com"), 401, "invalid_credentials")
    assert_problem(await attempt(first, password=PASSWORD), 429, "rate_limited")
    assert (await attempt(second, password=PASSWORD)).status_code == 200


async def test_lockout_backoff_doubles_per_further_failure_up_to_fifteen_minutes(
    make_client: ClientFactory, app: Litestar, client: httpx.AsyncClient
) -> None:
    await make_client("alice@example.com")
    await with_csrf(client)
    lockout = lockout_of(app.state, app.state.settings)
    subjects = [account_subject("alice@example.com"), "ip:127.0.0.1"]
    for _ in range(5):
        await attempt(client)
    seen = []
    for _ in range(5):
        locked = await attempt(client)
        assert locked.status_code == 429
        seen.append(int(locked.headers["retry-after"]))
        for subject in subjects:  # the lock runs out
            await lockout.storage.clear(lock_key(subject))
        assert_problem(await attempt(client), 401, "invalid_credentials")  # checked, and wrong again
    assert [round(s, -1) for s in seen] == [60, 120, 240, 480, 900]
    assert int((await attempt(client)).headers["retry-after"]) <= 900, "capped at 15 minutes"
    assert [LoginLockout(MemoryStorage()).lock_seconds(n) for n in (4, 5, 6, 7, 8, 9, 40)] == [
        0, 60, 120, 240, 480, 900, 900,
    ]  # fmt: skip


async def test_lockout_counts_failures_from_one_ip_across_accounts(client: httpx.AsyncClient) -> None:
    await with_csrf(client)
    for i in range(5):
        assert_problem(await attempt(client, f"user{i}@example.com"), 401, "invalid_credentials")
    assert_problem(await attempt(client, "someone-else@example.com"), 429, "rate_limited")


async def test_lockout_an_unknown_email_locks_like_a_real_one(make_client: ClientFactory, app: Litestar) -> None:
    await make_client("alice@example.com")
    answers = []
    for email in ["nobody@example.com", "alice@example.com"]:
        for i in range(5):  # from five addresses: only the account's count reaches the threshold
            async with client_at(app, f"198.51.100.{i}") as c:
                assert_problem(await attempt(await with_csrf(c), email), 401, "invalid_credentials")
        async with client_at(app, "198.51.100.99") as c:
            locked = await attempt(await with_csrf(c), email)
        answers.append((locked.status_code, locked.json()["detail"], locked.headers["retry-after"]))
    assert answers[0] == answers[1]
    assert answers[0][:2] == (429, "too many failed sign-in attempts: try again later")


async def test_lockout_wrong_mfa_codes_count_as_failed_sign_ins(
    make_client: ClientFactory, app: Litestar, clock: ManualClock
) -> None:
    device = authenticator(await make_client("alice@example.com", mfa=True))
    c = await with_csrf(asgi_client(app))
    assert (await attempt(c, password=PASSWORD)).status_code == 200
    for _ in range(5):
        assert_problem(await c.post("/v1/auth/mfa", json={"code": device.code(clock, 5)}), 401, "invalid_mfa_code")
    clock.advance(timedelta(seconds=30))
    assert_problem(await c.post("/v1/auth/mfa", json={"code": device.code(clock)}), 429, "rate_limited")


async def test_lockout_web_sign_in_shows_the_form_with_429(
    make_client: ClientFactory, client: httpx.AsyncClient
) -> None:
    await make_client("alice@example.com")
    page = await client.get("/login", headers={"accept": "text/html"})
    token = client.cookies["brokerlink_csrf"]
    assert page.status_code == 200
    form = {"email": "alice@example.com", "password": WRONG, "_csrf_token": token}
    for _ in range(5):
        assert (await client.post("/login", data=form, headers={"accept": "text/html"})).status_code == 200
    locked = await client.post("/login", data=form | {"password": PASSWORD}, headers={"accept": "text/html"})
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) > 0
    assert "too many failed sign-in attempts" in locked.text
    assert "brokerlink_session" not in client.cookies


async def test_lockout_is_shared_by_processes_through_redis(settings: Settings, redis_url: str) -> None:
    shared = settings.model_copy(update={"rate_limit_backend": "redis", "redis_url": redis_url})
    one, two = LoginLockout.from_settings(shared), LoginLockout.from_settings(shared)
    assert isinstance(one.storage, RedisStorage)
    subject = account_subject(f"{uuid.uuid4().hex}@example.com")
    try:
        for _ in range(5):
            await one.failed(subject)
        with pytest.raises(RateLimited) as locked:
            await two.check(subject)
        assert 55 <= locked.value.retry_after <= 60
        await two.succeeded(subject)
        await one.check(subject)
    finally:
        await one.succeeded(subject)
        await one.close()
        await two.close()
