"""TOTP MFA through the API: enrolment, two-step sign-in, step-up before linking, recovery codes, turning it off.

Time is the app's :class:`~brokerlink.kit.clock.ManualClock`, moved in 30-second TOTP steps;
nothing sleeps. Linking runs against a real sim venue on loopback.
"""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import text

from brokerlink.app.factory import create_app
from brokerlink.config import Settings
from brokerlink.kit.clock import ManualClock
from brokerlink.logs import configure_logging
from brokerlink.store.db import Database
from tests.api.mfa_support import Authenticator, authenticator, enrol_totp
from tests.api.support import (
    PASSWORD,
    ClientFactory,
    asgi_client,
    assert_problem,
    link_body,
    running,
    table_counts,
    with_csrf,
)
from tests.api.test_linking import Recorder, restore_logging
from tests.contract.harness import SimHarness

__all__ = ["restore_logging"]  # a fixture, used by name
STEP = timedelta(seconds=30)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The request rate limits off (tests/api/test_ratelimit.py covers them): these tests sign in
    several times within a second, and sign-in is one of the heavier routes."""
    return settings.model_copy(update={"rate_limit_enabled": False})


@pytest.fixture
def app(venue: SimHarness, app: Litestar) -> Litestar:
    """The app, started after the venue its links reach (so its links close before the venue stops)."""
    return app


async def sign_in(app: Litestar, email: str = "alice@example.com") -> httpx.AsyncClient:
    """A new client that has passed the password step (and waits at the MFA step if the user has MFA)."""
    c = await with_csrf(asgi_client(app))
    r = await c.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return c


async def test_mfa_enrolment_shows_the_secret_once_and_activates_only_when_confirmed(
    make_client: ClientFactory, clock: ManualClock
) -> None:
    alice = await make_client(mfa=False)
    assert (await alice.get("/v1/me/mfa")).json() | {"session_verified_at": None} == {
        "enrolled": False, "pending": False, "enrolled_at": None, "recovery_codes_left": 0, "session_verified_at": None,
    }  # fmt: skip
    started = await alice.post("/v1/me/mfa/totp")
    assert started.status_code == 201, started.text
    assert started.headers["cache-control"] == "no-store"
    body = started.json()
    secret = body["secret"]
    assert body["otpauth_uri"].startswith("otpauth://totp/brokerlink:alice%40example.com?")
    assert f"secret={secret}" in body["otpauth_uri"]
    assert body["qr_svg"].startswith("<svg")
    assert (body["digits"], body["period"], body["algorithm"]) == (6, 30, "SHA1")
    status = (await alice.get("/v1/me/mfa")).json()
    assert (status["enrolled"], status["pending"]) == (False, True)

    device = Authenticator(secret=secret)
    wrong = await alice.post("/v1/me/mfa/totp/confirm", json={"code": device.code(clock, 3)})
    assert assert_problem(wrong, 422, "invalid_input")["field"] == "code"
    confirmed = await alice.post("/v1/me/mfa/totp/confirm", json={"code": device.code(clock)})
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.headers["cache-control"] == "no-store"
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == len(set(codes)) == 10
    status = (await alice.get("/v1/me/mfa")).json()
    assert (status["enrolled"], status["pending"], status["recovery_codes_left"]) == (True, False, 10)
    assert status["session_verified_at"] is not None, "confirming counts as this session's MFA check"
    # Confirming twice is a 409: nothing is pending any more.
    assert_problem(await alice.post("/v1/me/mfa/totp/confirm", json={"code": device.code(clock, 1)}), 409, "conflict")


async def test_mfa_sign_in_takes_two_steps_and_the_password_step_reaches_nothing_else(
    app: Litestar, make_client: ClientFactory, clock: ManualClock
) -> None:
    device = authenticator(await make_client())
    c = await sign_in(app)
    r = await c.post("/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD})
    assert r.json()["mfa_required"] is True
    assert "user" not in r.json()
    pending_token = c.cookies["brokerlink_session"]
    for path in ["/v1/me", "/v1/accounts", "/v1/me/mfa", "/v1/connections"]:
        assert_problem(await c.get(path), 401, "mfa_pending")
    assert_problem(await c.post("/v1/connections", json=link_body("http://127.0.0.1:1")), 401, "mfa_pending")
    assert_problem(await c.post("/v1/auth/mfa", json={"code": device.code(clock, 5)}), 401, "invalid_mfa_code")

    clock.advance(STEP)
    r = await c.post("/v1/auth/mfa", json={"code": device.code(clock)})
    assert r.status_code == 200, r.text
    assert (r.json()["method"], r.json()["user"]["email"]) == ("totp", "alice@example.com")
    assert c.cookies["brokerlink_session"] != pending_token, "a new token once MFA passes"
    assert (await c.get("/v1/me")).status_code == 200
    async with asgi_client(app, cookies={"brokerlink_session": pending_token}) as old:
        assert (await old.get("/v1/me")).status_code == 401

    # Replay: the same code, on another sign-in, within its 90 seconds.
    other = await sign_in(app)
    assert_problem(await other.post("/v1/auth/mfa", json={"code": device.code(clock)}), 401, "invalid_mfa_code")


async def test_mfa_step_expires_after_a_few_minutes(
    app: Litestar, make_client: ClientFactory, clock: ManualClock
) -> None:
    device = authenticator(await make_client())
    c = await sign_in(app)
    clock.advance(timedelta(minutes=5, seconds=1))
    assert_problem(await c.post("/v1/auth/mfa", json={"code": device.code(clock)}), 401, "not_authenticated")


async def test_mfa_recovery_code_signs_in_once(app: Litestar, make_client: ClientFactory) -> None:
    device = authenticator(await make_client())
    c = await sign_in(app)
    r = await c.post("/v1/auth/mfa", json={"code": device.recovery_codes[0]})
    assert r.status_code == 200, r.text
    assert (r.json()["method"], r.json()["recovery_codes_left"]) == ("recovery_code", 9)
    assert (await c.get("/v1/me/mfa")).json()["recovery_codes_left"] == 9
    again = await sign_in(app)
    assert_problem(await again.post("/v1/auth/mfa", json={"code": device.recovery_codes[0]}), 401, "invalid_mfa_code")
    assert (await again.post("/v1/auth/mfa", json={"code": device.recovery_codes[1]})).status_code == 200


async def test_mfa_linking_is_refused_without_a_recent_check_and_allowed_after_step_up(
    app: Litestar, make_client: ClientFactory, venue: SimHarness, clock: ManualClock
) -> None:
    alice = await make_client()
    device = authenticator(alice)
    clock.advance(timedelta(minutes=10, seconds=1))
    before = await table_counts(app)
    refused = await alice.post("/v1/connections", json=link_body(venue.base_url, 1))
    problem = assert_problem(refused, 403, "mfa_required")
    assert problem["type"] == "urn:brokerlink:problem:mfa_required"
    assert await table_counts(app) == before, "nothing was linked or stored"
    stepped_up = await alice.post("/v1/auth/mfa", json={"code": device.code(clock)})
    assert stepped_up.status_code == 200, stepped_up.text
    assert (await alice.post("/v1/connections", json=link_body(venue.base_url, 1))).status_code == 201


async def test_mfa_linking_without_mfa_enrolled_is_refused(
    app: Litestar, make_client: ClientFactory, venue: SimHarness
) -> None:
    bob = await make_client("bob@example.com", "Bob", mfa=False)
    before = await table_counts(app)
    refused = await bob.post("/v1/connections", json=link_body(venue.base_url, 2))
    assert assert_problem(refused, 403, "mfa_enrollment_required")["type"].endswith(":mfa_enrollment_required")
    assert await table_counts(app) == before


async def test_mfa_for_linking_can_be_made_optional_for_users_without_it(
    settings: Settings, clock: ManualClock, venue: SimHarness
) -> None:
    optional = create_app(
        settings.model_copy(update={"require_mfa_for_linking": False}), clock=clock, configure_logs=False
    )
    async with running(optional), asgi_client(optional) as c:
        await with_csrf(c)
        body = {"email": "carol@example.com", "password": PASSWORD, "display_name": "Carol"}
        assert (await c.post("/v1/auth/register", json=body)).status_code == 201
        assert (await c.post("/v1/connections", json=link_body(venue.base_url, 3))).status_code == 201
        # A user who has MFA still needs a recent check.
        await enrol_totp(c, clock)
        clock.advance(timedelta(minutes=11))
        assert_problem(await c.post("/v1/connections", json=link_body(venue.base_url, 4)), 403, "mfa_required")


async def test_mfa_replacing_the_authenticator_needs_a_recent_check(
    make_client: ClientFactory, clock: ManualClock
) -> None:
    alice = await make_client()
    clock.advance(timedelta(minutes=11))
    assert_problem(await alice.post("/v1/me/mfa/totp"), 403, "mfa_required")
    assert (await alice.post("/v1/auth/mfa", json={"code": authenticator(alice).code(clock)})).status_code == 200
    assert (await alice.post("/v1/me/mfa/totp")).status_code == 201


async def test_mfa_turning_off_needs_a_valid_code_then_sign_in_is_one_step(
    app: Litestar, make_client: ClientFactory, clock: ManualClock
) -> None:
    alice = await make_client()
    device = authenticator(alice)
    wrong = await alice.request("DELETE", "/v1/me/mfa/totp", json={"code": "AAAA-BBBB-CCCC-DDDD"})
    assert assert_problem(wrong, 422, "invalid_input")["field"] == "code"
    assert (await alice.get("/v1/me/mfa")).json()["enrolled"] is True
    clock.advance(STEP)
    r = await alice.request("DELETE", "/v1/me/mfa/totp", json={"code": device.code(clock)})
    assert r.status_code == 204, r.text
    assert (await alice.get("/v1/me/mfa")).json()["enrolled"] is False
    assert (await table_counts(app))["vault_secrets:totp_secret"] == 0
    c = await sign_in(app)
    assert (await c.get("/v1/me")).status_code == 200
    assert_problem(await alice.request("DELETE", "/v1/me/mfa/totp", json={"code": "123456"}), 404, "not_found")


async def test_mfa_secret_and_recovery_codes_never_appear_after_enrolment_in_responses_logs_or_tables(
    app: Litestar,
    make_client: ClientFactory,
    clock: ManualClock,
    capfd: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:
    configure_logging("debug", "json")
    alice = await make_client()
    device = authenticator(alice)
    recorder = Recorder()
    alice.event_hooks["response"].append(recorder)
    c = await sign_in(app)
    c.event_hooks["response"].append(recorder)
    clock.advance(STEP)
    assert (await c.post("/v1/auth/mfa", json={"code": device.code(clock)})).status_code == 200
    assert (await c.post("/v1/auth/mfa", json={"code": device.recovery_codes[0]})).status_code == 200
    for path in ["/v1/me", "/v1/me/mfa", "/openapi.json"]:
        assert (await c.get(path)).status_code == 200
        assert (await alice.get(path)).status_code == 200
    assert len(recorder.seen) >= 8

    raw_key = base64.b32decode(device.secret + "=" * (-len(device.secret) % 8))
    secrets: list[Any] = [
        device.secret,
        *device.recovery_codes,
        *(code.replace("-", "") for code in device.recovery_codes),
    ]
    out, err = capfd.readouterr()
    assert err or out, "the logs were captured"
    for secret in secrets:
        assert not [seen for seen in recorder.seen if secret in seen], f"a response carries {secret!r}"
        assert secret not in out + err, f"a log line carries {secret!r}"
    database: Database = app.state.db
    async with database.session() as s:
        tables = [r[0] for r in await s.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))]
        for table in tables:
            for row in await s.execute(text(f'SELECT * FROM "{table}"')):  # noqa: S608 - our own table names
                for value in row:
                    blob = value if isinstance(value, bytes) else str(value).encode()
                    assert raw_key not in blob, table
                    for secret in secrets:
                        assert secret.encode() not in blob, (table, secret)


async def test_mfa_step_up_without_an_authenticator_says_to_enrol(make_client: ClientFactory) -> None:
    bob = await make_client("bob@example.com", "Bob", mfa=False)
    assert_problem(await bob.post("/v1/auth/mfa", json={"code": "123456"}), 403, "mfa_enrollment_required")
    assert (await bob.get("/v1/me")).status_code == 200
