"""Bad input on every write route: a clear problem+json error, and nothing changes.

The routes are discovered from the app itself, so a write route added later is covered without
editing this file: the test fails if it meets a write route it has no valid body for.

Alice's account is linked through the API to a real sim venue on loopback, so the trading and
linking routes run for real: a valid body is genuinely accepted, and a bad one is refused before
anything reaches the broker or the database.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from joserfc import jwk
from litestar import Litestar
from sqlalchemy import select

from brokerlink.config import Settings
from brokerlink.domain.copy import StrategyVisibility
from brokerlink.domain.enums import Role
from brokerlink.engine.copy.manage import create_strategy
from brokerlink.kit.clock import ManualClock
from brokerlink.kit.ids import new_id
from brokerlink.store.db import Database
from brokerlink.store.models import RecoveryCodeRow, SessionRow, TotpCredentialRow
from brokerlink.store.models_oauth import ConsentStatus, OAuthClientRow, OAuthConsentRow
from brokerlink.store.repositories.alerts import AlertRepository, AlertWebhookRepository
from brokerlink.store.repositories.copy_symbol_pauses import CopySymbolPauseRepository
from brokerlink.store.repositories.users import UserRepository
from tests.api.mfa_support import Authenticator, authenticator
from tests.api.support import (
    MARKET_ORDER,
    PASSWORD,
    RESTING_ORDER,
    eventually,
    ledger_caught_up,
    link_account,
    link_body,
    link_via_api,
    snapshot,
)
from tests.api.test_copy import copy_rows
from tests.contract.harness import SimHarness

CLIENT_KEY = jwk.ECKey.generate_key("P-256").as_dict(private=False)
"""A third-party app's public key (ES256), for registering OAuth clients."""
BASE_URL = "<venue base url>"
"""Stands for the sim venue's URL, known only once the venue runs (see :func:`valid_body`)."""
ACCOUNT_ID = "<account_id>"
"""Stands for Alice's linked account (see :func:`valid_body`)."""
FOLLOWABLE = "<followable strategy id>"
"""Stands for a strategy of Bob's that Alice does not follow yet (see :func:`copy_ids`)."""
TOTP_CODE = "<totp code>"
"""Stands for a code of Alice's authenticator that was not used yet (see :func:`path_ids`)."""
PENDING_TOTP_CODE = "<pending totp code>"
"""Stands for a code of the authenticator Alice is enrolling (see :func:`path_ids`)."""
SUBSCRIPTION = "/v1/subscriptions/{subscription_id}"
SUBSCRIPTION_ID = "<subscription id>"
"""Stands for Alice's subscription (see :func:`copy_ids`)."""

# A valid body per JSON write route, and the status it gets. Each case below breaks it in one way.
VALID_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/auth/register"): {"email": "new@example.com", "password": PASSWORD, "display_name": "New"},
    ("POST", "/v1/auth/login"): {"email": "alice@example.com", "password": PASSWORD},
    ("PATCH", "/v1/accounts/{account_id}"): {"name": "Renamed"},
    # A venue account other than the one Alice's fixture links: the same one twice is a 409.
    ("POST", "/v1/connections"): link_body(BASE_URL, 1, label="Spare"),
    ("POST", "/v1/accounts/{account_id}/orders"): MARKET_ORDER,
    ("POST", "/v1/strategies"): {"name": "Published", "account_id": ACCOUNT_ID, "visibility": "public"},
    ("PATCH", "/v1/strategies/{strategy_id}"): {"name": "Renamed strategy", "visibility": "unlisted"},
    ("POST", "/v1/subscriptions"): {
        "strategy_id": FOLLOWABLE,
        "account_id": ACCOUNT_ID,
        "settings": {"sizing": "multiplier", "multiplier": "0.5"},
    },
    ("PUT", f"{SUBSCRIPTION}/settings"): {"sizing": "fixed_qty", "fixed_qty": "0.02"},
    ("POST", f"{SUBSCRIPTION}/stop"): {"close_copies": True},
    ("POST", f"{SUBSCRIPTION}/reconciliation"): {"repair": True},
    # Alice is enrolled in MFA (tests with a venue are: linking needs it).
    ("POST", "/v1/auth/mfa"): {"code": TOTP_CODE},
    ("POST", "/v1/me/mfa/totp/confirm"): {"code": PENDING_TOTP_CODE},
    ("DELETE", "/v1/me/mfa/totp"): {"code": TOTP_CODE},
    # Alice is an admin in this module (:func:`alice_is_admin`), so the admin routes accept her.
    ("PUT", "/v1/strategies/{strategy_id}/fees"): {"performance_pct": "20", "management_pct": "2"},
    ("POST", "/v1/admin/fees/flows"): {
        "subscription_id": SUBSCRIPTION_ID,
        "kind": "deposit",
        "amount": "1000",
        "reference": "transfer-1",
    },
    ("POST", "/v1/admin/alert-webhooks"): {"url": "https://127.0.0.1:9/alerts"},
    ("PATCH", "/v1/admin/users/{user_id}"): {"role": "provider"},  # Bob (see :func:`copy_ids`)
    ("POST", "/v1/connections/discover"): {
        "broker": "sim",
        "base_url": BASE_URL,
        "credentials": link_body(BASE_URL, 1)["credentials"],
    },
    ("POST", "/v1/admin/clients"): {
        "name": "Tracker",
        "redirect_uris": ["https://tracker.example/callback"],
        "jwks": {"keys": [CLIENT_KEY]},
        "scopes": ["accounts:read"],
    },
    ("PATCH", "/v1/admin/clients/{client_id}"): {"name": "Renamed tracker"},  # see :func:`oauth_ids`
    ("POST", "/v1/webhooks"): {"url": "https://127.0.0.1:9/hooks", "event_types": ["order.filled"]},
    ("PATCH", "/v1/webhooks/{endpoint_id}"): {"description": "Fills"},  # see :func:`webhook_ids`
}
ACCEPTED_WITH = {
    ("POST", "/v1/auth/register"): 201,
    ("POST", "/v1/auth/login"): 200,
    ("PATCH", "/v1/accounts/{account_id}"): 200,
    ("POST", "/v1/connections"): 201,
    ("POST", "/v1/accounts/{account_id}/orders"): 201,
    ("POST", "/v1/strategies"): 201,
    ("PATCH", "/v1/strategies/{strategy_id}"): 200,
    ("POST", "/v1/subscriptions"): 201,
    ("PUT", f"{SUBSCRIPTION}/settings"): 200,
    ("POST", f"{SUBSCRIPTION}/stop"): 200,
    ("POST", f"{SUBSCRIPTION}/reconciliation"): 200,
    ("POST", "/v1/auth/mfa"): 200,
    ("POST", "/v1/me/mfa/totp/confirm"): 200,
    ("DELETE", "/v1/me/mfa/totp"): 204,
    ("PUT", "/v1/strategies/{strategy_id}/fees"): 200,
    ("POST", "/v1/admin/fees/flows"): 200,
    ("POST", "/v1/admin/alert-webhooks"): 201,
    ("PATCH", "/v1/admin/users/{user_id}"): 200,
    ("POST", "/v1/connections/discover"): 200,
    ("POST", "/v1/admin/clients"): 201,
    ("PATCH", "/v1/admin/clients/{client_id}"): 200,
    ("POST", "/v1/webhooks"): 201,
    ("PATCH", "/v1/webhooks/{endpoint_id}"): 200,
}
# Headers a valid request needs besides its body: replacing settings needs the ETag read (a fresh
# subscription is at version 1).
VALID_HEADERS: dict[tuple[str, str], dict[str, str]] = {("PUT", f"{SUBSCRIPTION}/settings"): {"if-match": '"1"'}}
# Routes whose body is optional: without one they do their default (a stop that keeps the copies),
# so the missing_body case does not apply.
OPTIONAL_BODY = {("POST", f"{SUBSCRIPTION}/stop")}
# Routes where ``role`` is the field itself (an admin granting a role), not something smuggled in.
ROLE_IS_THE_FIELD = {("PATCH", "/v1/admin/users/{user_id}")}
# The pages' form posts, with a valid form each (tests/web/test_form_validation.py breaks them).
VALID_FORMS: dict[tuple[str, str], dict[str, str]] = {
    ("POST", "/login"): {"email": "alice@example.com", "password": PASSWORD},
    ("POST", "/register"): {"email": "new@example.com", "password": PASSWORD, "display_name": "New"},
    # Well-formed but wrong codes: each page answers with a redirect (back where the user was headed,
    # or to the security page with a notice), which is what the form tests expect of a valid form.
    ("POST", "/login/mfa"): {"code": "123456", "next": "/"},
    ("POST", "/account/security/totp/confirm"): {"code": "123456"},
    ("POST", "/account/security/totp/disable"): {"code": "123456"},
}
# Write routes that take no body: a body in the wrong media type is still refused.
BODILESS = {
    ("POST", "/v1/auth/logout"),
    ("POST", "/logout"),
    ("DELETE", "/v1/connections/{connection_id}"),
    ("DELETE", "/v1/orders/{order_id}"),
    ("POST", f"{SUBSCRIPTION}/pause"),
    ("POST", f"{SUBSCRIPTION}/resume"),
    ("POST", f"{SUBSCRIPTION}/close-only"),
    ("DELETE", f"{SUBSCRIPTION}/paused-symbols/{{symbol}}"),
    ("POST", "/v1/me/mfa/totp"),
    ("POST", "/account/security/totp"),
    ("POST", "/v1/admin/fees/settle"),
    ("POST", "/v1/admin/alerts/{alert_id}/acknowledge"),
    ("POST", "/v1/admin/alerts/{alert_id}/resolve"),
    ("DELETE", "/v1/admin/alert-webhooks/{webhook_id}"),
    ("DELETE", "/v1/admin/clients/{client_id}"),
    ("DELETE", "/v1/consents/{consent_id}"),
    ("DELETE", "/v1/webhooks/{endpoint_id}"),
    ("POST", "/v1/webhooks/{endpoint_id}/test"),
    ("POST", "/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}/replay"),
}
# Write routes whose input is not JSON checked here, each with where it is checked instead.
CHECKED_ELSEWHERE = {
    # OAuth 2 protocol endpoints: form bodies authenticated by a client assertion, refused in RFC 6749's
    # error format ({"error": ...}), not problem+json (tests/api/oauth/).
    ("POST", "/oauth/par"),
    ("POST", "/oauth/token"),
    ("POST", "/oauth/introspect"),
    ("POST", "/oauth/revoke"),
    # The consent page's forms: CSRF, codes and account choices (tests/web/test_consent_pages.py).
    ("POST", "/consents/{consent_id}/decision"),
    ("POST", "/consents/{consent_id}/revoke"),
}
# Routes that need an OAuth client and a consent of Alice's to act on.
NEEDS_OAUTH_IDS = {
    ("PATCH", "/v1/admin/clients/{client_id}"),
    ("DELETE", "/v1/admin/clients/{client_id}"),
    ("DELETE", "/v1/consents/{consent_id}"),
}
# Routes that need a webhook endpoint of Alice's and one of its deliveries.
NEEDS_WEBHOOK_IDS = {
    ("PATCH", "/v1/webhooks/{endpoint_id}"),
    ("DELETE", "/v1/webhooks/{endpoint_id}"),
    ("POST", "/v1/webhooks/{endpoint_id}/test"),
    ("POST", "/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}/replay"),
}
# Routes that need an enrolment of Alice's waiting for confirmation.
NEEDS_PENDING_TOTP = {("POST", "/v1/me/mfa/totp/confirm")}
# Routes that need Alice's strategy, her subscription to one of Bob's, or another strategy of Bob's.
NEEDS_COPY_IDS = {
    ("PATCH", "/v1/strategies/{strategy_id}"),
    ("POST", "/v1/subscriptions"),
    ("PUT", f"{SUBSCRIPTION}/settings"),
    ("POST", f"{SUBSCRIPTION}/stop"),
    ("POST", f"{SUBSCRIPTION}/pause"),
    ("POST", f"{SUBSCRIPTION}/resume"),
    ("POST", f"{SUBSCRIPTION}/close-only"),
    ("POST", f"{SUBSCRIPTION}/reconciliation"),
    ("DELETE", f"{SUBSCRIPTION}/paused-symbols/{{symbol}}"),
    ("PUT", "/v1/strategies/{strategy_id}/fees"),
    ("POST", "/v1/admin/fees/flows"),
    ("PATCH", "/v1/admin/users/{user_id}"),
}
# Routes that need an alert or an alert webhook to act on.
NEEDS_ALERT_IDS = {
    ("POST", "/v1/admin/alerts/{alert_id}/acknowledge"),
    ("POST", "/v1/admin/alerts/{alert_id}/resolve"),
    ("DELETE", "/v1/admin/alert-webhooks/{webhook_id}"),
}
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
_TYPED_PARAM = re.compile(r"\{(\w+):\w+\}")


def write_routes(app: Litestar) -> list[tuple[str, str]]:
    """Every (method, path template) in the app that changes state, path parameters as ``{name}``."""
    return sorted(
        (method, _TYPED_PARAM.sub(r"{\1}", route.path))
        for route in app.routes
        for method in getattr(route, "methods", set()) & WRITE_METHODS
    )


def valid_body(route: tuple[str, str], venue: SimHarness, path_ids: dict[str, str]) -> dict[str, Any]:
    """The route's valid body, pointed at the running venue and at the objects the test made."""
    values = {
        BASE_URL: venue.base_url,
        ACCOUNT_ID: path_ids["account_id"],
        FOLLOWABLE: path_ids.get(FOLLOWABLE),
        TOTP_CODE: path_ids.get(TOTP_CODE),
        PENDING_TOTP_CODE: path_ids.get(PENDING_TOTP_CODE),
        SUBSCRIPTION_ID: path_ids.get("subscription_id"),
    }
    return {k: values[v] if isinstance(v, str) and v in values else v for k, v in VALID_BODIES[route].items()}


async def mfa_rows(app: Litestar) -> list[tuple[str, ...]]:
    """The MFA state: authenticators (status, last step), recovery codes (used or not), sessions' MFA columns."""
    database: Database = app.state.db
    async with database.session() as s:
        rows: list[tuple[str, ...]] = [
            ("totp", t.id, t.status, str(t.last_step)) for t in await s.scalars(select(TotpCredentialRow))
        ]
        rows += [("recovery", r.id, str(r.used_at)) for r in await s.scalars(select(RecoveryCodeRow))]
        rows += [
            ("session", x.id, str(x.mfa_pending), str(x.mfa_at), str(x.revoked_at))
            for x in await s.scalars(select(SessionRow))
        ]
    return sorted(rows)


async def state(app: Litestar) -> tuple[Any, ...]:
    """Everything a write could change: :func:`snapshot`, the copy-trading rows and the MFA state."""
    return await snapshot(app), await copy_rows(app), await mfa_rows(app)


def test_every_write_route_has_a_case(app: Litestar) -> None:
    routes = set(write_routes(app))
    covered = set(VALID_BODIES) | set(VALID_FORMS) | BODILESS | CHECKED_ELSEWHERE
    assert routes == covered, "a write route was added or removed: give it a valid body here"
    assert set(ACCEPTED_WITH) == set(VALID_BODIES)
    assert set(VALID_HEADERS) | OPTIONAL_BODY | NEEDS_COPY_IDS <= covered


def test_write_routes_normalizes_every_typed_path_parameter(app: Litestar) -> None:
    assert not [path for _, path in write_routes(app) if ":" in path]


@pytest.fixture
def app(venue: SimHarness, app: Litestar) -> Litestar:
    """The app, started after the venue its links reach (so its links close before the venue stops)."""
    return app


@pytest.fixture
async def linked(app: Litestar, alice: httpx.AsyncClient, venue: SimHarness) -> dict[str, Any]:
    """Alice's account at the venue (``SIM-CONF``), linked through ``POST /v1/connections``, its
    opening balance booked (so the booking cannot land between a test's two snapshots)."""
    body = await link_via_api(alice, venue.base_url, label="Main")
    await ledger_caught_up(app, body["account"]["id"])
    return body


@pytest.fixture
def account_id(linked: dict[str, Any]) -> str:
    account: str = linked["account"]["id"]
    return account


@pytest.fixture
async def mfa_codes(request: pytest.FixtureRequest, alice: httpx.AsyncClient, clock: ManualClock) -> dict[str, str]:
    """A code of Alice's authenticator for the next 30-second step (the current one was spent
    confirming it), and for the routes that need one, an enrolment waiting for confirmation."""
    codes = {TOTP_CODE: authenticator(alice).code(clock, steps_ahead=1)}
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("route") in NEEDS_PENDING_TOTP:
        started = await alice.post("/v1/me/mfa/totp")
        assert started.status_code == 201, started.text
        codes[PENDING_TOTP_CODE] = Authenticator(secret=started.json()["secret"]).code(clock, steps_ahead=1)
    return codes


@pytest.fixture
def path_ids(request: pytest.FixtureRequest, linked: dict[str, Any], mfa_codes: dict[str, str]) -> dict[str, str]:
    """Values for the path parameters of the write routes (and the copy-trading objects, for the
    routes that need them: made only for those, since they take a user and several requests), and
    the MFA codes of :func:`mfa_codes`."""
    ids = {"account_id": linked["account"]["id"], "connection_id": linked["connection"]["id"]} | mfa_codes
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("route") in NEEDS_COPY_IDS:
        ids |= request.getfixturevalue("copy_ids")
    if callspec is not None and callspec.params.get("route") in NEEDS_ALERT_IDS:
        ids |= request.getfixturevalue("alert_ids")
    if callspec is not None and callspec.params.get("route") in NEEDS_OAUTH_IDS:
        ids |= request.getfixturevalue("oauth_ids")
    if callspec is not None and callspec.params.get("route") in NEEDS_WEBHOOK_IDS:
        ids |= request.getfixturevalue("webhook_ids")
    return ids


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Alert and user webhooks may point at loopback here (the valid webhook bodies do). A failed user
    webhook delivery waits a uniform time of up to two hours before its retry (full jitter on a 1 h
    base): a retry inside a test's few hundred milliseconds has odds of about 1 in 20,000."""
    return settings.model_copy(
        update={
            "alert_webhook_allow_loopback": True,
            "webhook_allowed_hosts": ["127.0.0.1"],
            "webhook_backoff_s": 3600.0,
        }
    )


@pytest.fixture(autouse=True)
async def alice_is_admin(app: Litestar, alice: httpx.AsyncClient) -> None:
    """Alice holds the admin role, so the admin routes' bodies are checked and accepted for real."""
    database: Database = app.state.db
    async with database.session() as session:
        user = await UserRepository(session).get_by_email("alice@example.com")
        assert user is not None
        assert await UserRepository(session).set_role(user.id, Role.ADMIN, now=app.state.clock.now())
        await session.commit()


@pytest.fixture
async def alert_ids(app: Litestar) -> dict[str, str]:
    """An open alert and an alert webhook, written to the store directly."""
    database: Database = app.state.db
    now = app.state.clock.now()
    async with database.session() as session:
        alert, _ = await AlertRepository(session).record(
            rule="broker_down", severity="warning", subject="con_test", dedup_key="broker_down:con_test",
            message="a test alert", labels={}, now=now,
        )  # fmt: skip
        webhook = await AlertWebhookRepository(session).add(
            webhook_id=new_id("awh"), url="https://127.0.0.1:9/alerts", created_by="usr_test", now=now
        )
        await session.commit()
    return {"alert_id": alert.id, "webhook_id": webhook.id}


@pytest.fixture
async def webhook_ids(alice: httpx.AsyncClient) -> dict[str, str]:
    """A webhook endpoint of Alice's, registered through the API, and the delivery of a test event to it."""
    created = await alice.post(
        "/v1/webhooks", json={"url": "https://127.0.0.1:9/hooks", "event_types": ["order.filled"]}
    )
    assert created.status_code == 201, created.text
    endpoint_id: str = created.json()["id"]
    sent = await alice.post(f"/v1/webhooks/{endpoint_id}/test")
    assert sent.status_code == 202, sent.text
    # The delivery worker's first attempt (refused: nothing listens on port 9) updates the delivery;
    # wait for it here, or it can land between a test's two snapshots. Its retry is hours off in
    # all likelihood (``settings``: webhook_backoff_s).
    for _ in range(200):  # bounded: 10 s
        deliveries = (await alice.get(f"/v1/webhooks/{endpoint_id}/deliveries")).json()["data"]
        if deliveries and deliveries[0]["attempts"] >= 1:
            return {"endpoint_id": endpoint_id, "delivery_id": deliveries[0]["id"]}
        await asyncio.sleep(0.05)
    raise AssertionError(f"the test delivery was not attempted: {deliveries}")


@pytest.fixture
async def oauth_ids(app: Litestar, linked: dict[str, Any]) -> dict[str, str]:
    """A registered OAuth client and Alice's consent to it, written to the store directly."""
    database: Database = app.state.db
    now = app.state.clock.now()
    client_id, consent_id = new_id("app"), new_id("cns")
    async with database.session() as session:
        alice = await UserRepository(session).get_by_email("alice@example.com")
        assert alice is not None
        session.add(
            OAuthClientRow(
                id=client_id, name="Tracker", redirect_uris='["https://tracker.example/callback"]',
                jwks=json.dumps({"keys": [CLIENT_KEY]}), jwks_uri=None, scopes='["accounts:read"]',
                grant_types='["authorization_code", "refresh_token"]', created_by=None, created_at=now,
                updated_at=now, disabled_at=None,
            )
        )  # fmt: skip
        await session.flush()
        session.add(
            OAuthConsentRow(
                id=consent_id, client_id=client_id, user_id=alice.id,
                scopes='["accounts:read"]', account_ids=json.dumps([linked["account"]["id"]]),
                status=ConsentStatus.AUTHORISED, par_id=None, created_at=now, decided_at=now,
                expires_at=now + timedelta(days=90), revoked_at=None,
            )
        )  # fmt: skip
        await session.commit()
    return {"client_id": client_id, "consent_id": consent_id}


@pytest.fixture
async def copy_ids(app: Litestar, alice: httpx.AsyncClient, linked: dict[str, Any]) -> dict[str, str]:
    """Alice's strategy, her subscription to one of Bob's, and another of Bob's she does not follow.

    Bob, his account and his strategies are written to the store directly (no sign-up, no broker:
    nothing here trades), which keeps these many tests quick.
    """
    database: Database = app.state.db
    now = app.state.clock.now()
    async with database.session() as session:
        bob = await UserRepository(session).create(
            email="bob@example.com", display_name="Bob", password_hash="-", now=now
        )
        await session.commit()
    _, bob_account = await link_account(app, "bob@example.com", "Bob")
    async with database.session() as session:
        followed, followable = [
            await create_strategy(
                session, provider_user_id=bob.id, account_id=bob_account, name=name,
                visibility=StrategyVisibility.PUBLIC, now=now,
            )
            for name in ("Followed", "Followable")
        ]  # fmt: skip
        await session.commit()

    async def created(url: str, body: dict[str, Any]) -> str:
        response = await alice.post(url, json=body)
        assert response.status_code == 201, response.text
        object_id: str = response.json()["id"]
        return object_id

    account_id = linked["account"]["id"]
    own = await created("/v1/strategies", {"name": "Alice's", "account_id": account_id})
    settings = {"sizing": "multiplier", "multiplier": "1"}
    subscription = await created(
        "/v1/subscriptions", {"strategy_id": followed.id, "account_id": account_id, "settings": settings}
    )
    async with database.session() as session:  # a symbol paused after rejects, for the route that resumes it
        pauses = CopySymbolPauseRepository(session)
        await pauses.count_reject(subscription, "EUR/USD", reason="insufficient funds", now=now)
        await pauses.pause(subscription, "EUR/USD", now=now)
        await session.commit()
    return {
        "strategy_id": own,
        "subscription_id": subscription,
        FOLLOWABLE: followable.id,
        "symbol": "EURUSD",
        "user_id": bob.id,
    }


@pytest.fixture
async def resting_order_id(app: Litestar, alice: httpx.AsyncClient, account_id: str) -> str:
    """An open order of Alice's, acknowledged by the venue."""
    placed = await alice.post(f"/v1/accounts/{account_id}/orders", json=RESTING_ORDER)
    assert placed.status_code == 201, placed.text
    order_id: str = placed.json()["id"]

    async def acknowledged() -> bool | None:
        return (await alice.get(f"/v1/orders/{order_id}")).json()["status"] == "new" or None

    await eventually(acknowledged, "the venue to acknowledge the order")
    return order_id


Sender = Callable[[httpx.AsyncClient, str, str, dict[str, str]], Awaitable[httpx.Response]]


def _raw(content: bytes, content_type: str = "application/json") -> Sender:
    async def send(c: httpx.AsyncClient, method: str, url: str, headers: dict[str, str]) -> httpx.Response:
        return await c.request(method, url, content=content, headers=headers | {"content-type": content_type})

    return send


def _json(body: Any) -> Sender:
    async def send(c: httpx.AsyncClient, method: str, url: str, headers: dict[str, str]) -> httpx.Response:
        return await c.request(method, url, json=body, headers=headers)

    return send


def cases(valid: dict[str, Any]) -> dict[str, tuple[Sender, int, str]]:
    """Name -> (how to send it, expected status, expected problem code)."""
    first = next(iter(valid))
    wrong_type = {**valid, first: 12345}
    unknown = {**valid, "owner_id": "usr_01ATTACKER0000000000000000"}
    smuggled = {**valid, "role": "admin"}
    return {
        "malformed_json": (_raw(b'{"email": "a@example.com", '), 400, "malformed_request"),
        "not_an_object": (_json([valid]), 422, "invalid_input"),
        "wrong_type": (_json(wrong_type), 422, "invalid_input"),
        "unknown_field": (_json(unknown), 422, "invalid_input"),
        "smuggled_role": (_json(smuggled), 422, "invalid_input"),
        "missing_body": (_raw(b""), 422, "invalid_input"),
        "oversized": (_raw(b'{"x": "' + b"a" * (80 * 1024) + b'"}'), 413, "payload_too_large"),
        "not_json": (
            _raw(b"email=a%40example.com", "application/x-www-form-urlencoded"),
            415,
            "unsupported_media_type",
        ),
    }


CASE_NAMES = list(cases({"x": 1}))
ROUTE_CASES = [
    pytest.param(route, case, id=f"{route}-{case}")
    for route in sorted(VALID_BODIES)
    for case in CASE_NAMES
    if not (case == "missing_body" and route in OPTIONAL_BODY)
    and not (case == "smuggled_role" and route in ROLE_IS_THE_FIELD)
]


@pytest.mark.parametrize(("route", "case"), ROUTE_CASES)
async def test_bad_input_is_refused_with_a_problem_and_changes_nothing(  # noqa: PLR0917 - pytest fixtures
    app: Litestar,
    venue: SimHarness,
    alice: httpx.AsyncClient,
    path_ids: dict[str, str],
    route: tuple[str, str],
    case: str,
) -> None:
    method, template = route
    url = template.format(**path_ids)
    send, status, code = cases(valid_body(route, venue, path_ids))[case]
    before = await state(app)
    response = await send(alice, method, url, VALID_HEADERS.get(route, {}))
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status
    assert problem["code"] == code
    assert problem["type"] == f"urn:brokerlink:problem:{code}"
    assert problem["detail"]
    assert problem["instance"] == url
    assert await state(app) == before
    if status == 422 and case != "missing_body":
        assert problem["errors"], "a 422 names the offending fields"


@pytest.mark.parametrize("route", sorted(VALID_BODIES))
async def test_the_valid_body_is_accepted(
    app: Litestar, venue: SimHarness, alice: httpx.AsyncClient, path_ids: dict[str, str], route: tuple[str, str]
) -> None:
    """Guards the cases above: they fail for the reason they name, not because the valid body is wrong."""
    method, template = route
    before = await state(app)
    body, headers = valid_body(route, venue, path_ids), VALID_HEADERS.get(route, {})
    response = await alice.request(method, template.format(**path_ids), json=body, headers=headers)
    assert response.status_code == ACCEPTED_WITH[route], response.text
    assert await state(app) != before, "an accepted write changed something"


async def test_unknown_field_error_names_the_field(alice: httpx.AsyncClient, account_id: str) -> None:
    r = await alice.patch(f"/v1/accounts/{account_id}", json={"name": "x", "balance": "1000000"})
    assert r.status_code == 422
    assert "balance" in r.json()["detail"]


@pytest.mark.parametrize("route", sorted(BODILESS))
async def test_bodiless_write_routes_refuse_a_body_of_the_wrong_type(
    app: Litestar, alice: httpx.AsyncClient, path_ids: dict[str, str], resting_order_id: str, route: tuple[str, str]
) -> None:
    method, template = route
    url = template.format(**path_ids, order_id=resting_order_id)
    before = await state(app)
    r = await alice.request(method, url, content=b"x=1", headers={"content-type": "text/plain"})
    assert r.status_code == 415, r.text
    assert r.json()["code"] == "unsupported_media_type"
    assert await state(app) == before, "the refused request cancelled, unlinked, paused or ended nothing"
    assert (await alice.get("/v1/me")).status_code == 200, "the refused logout ended nothing"
    assert (await alice.get(f"/v1/orders/{resting_order_id}")).json()["status"] == "new"
    assert (await alice.get(f"/v1/connections/{path_ids['connection_id']}")).json()["status"] == "connected"


@pytest.mark.parametrize("route", sorted(BODILESS))
async def test_bodiless_write_routes_work_without_a_body(
    alice: httpx.AsyncClient, path_ids: dict[str, str], resting_order_id: str, route: tuple[str, str]
) -> None:
    """Guards the test above: the 415 is for the body, not for the request."""
    method, template = route
    r = await alice.request(method, template.format(**path_ids, order_id=resting_order_id))
    assert r.status_code in {200, 201, 202, 204, 303}, r.text
