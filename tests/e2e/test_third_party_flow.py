"""The example third-party app (examples/third_party_app.py) end to end, against the app in-process.

The app runs its own functions, step by step, as its ``run`` does: metadata, PAR with
``private_key_jwt`` and ``dpop_jkt``, the code exchange with DPoP, and DPoP-bound reads. Only the
browser is played by the test: Alice, signed in with MFA, follows the authorization URL, lands on
the consent page, ticks one of her two accounts and approves with her authenticator code; the
redirect the app's loopback listener would catch is read from the 303 instead. At the end the app
sees exactly the consented account, and an access token without its DPoP proof gets nothing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from litestar import Litestar
from pydantic import SecretStr

from brokerlink.app.factory import create_app
from brokerlink.config import Settings
from brokerlink.domain.enums import Role
from brokerlink.kit.clock import ManualClock
from brokerlink.store.db import Database
from brokerlink.store.repositories.users import UserRepository
from tests.api.mfa_support import Authenticator, enrol_totp
from tests.api.support import PASSWORD, asgi_client, link_account, running, with_csrf

ISSUER = "https://testserver.local"  # the in-process clients' base URL (tests/api/support.py)
REDIRECT_URI = "http://127.0.0.1:8765/callback"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "third_party_app.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("third_party_app", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


example = load_example()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def app(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Litestar]:
    settings = Settings(
        data_dir=tmp_path,
        environment="test",
        secret_key=SecretStr("third-party-flow-secret-key-long-enough-0123456"),
        log_level="warning",
        log_format="console",
        oauth_issuer=ISSUER,
        rate_limit_user="1000/second",
        rate_limit_ip="1000/second",
    )
    created = create_app(settings, clock=clock, configure_logs=False)
    async with running(created):
        yield created


async def signed_in(
    app: Litestar, clock: ManualClock, email: str, name: str
) -> tuple[httpx.AsyncClient, Authenticator]:
    c = asgi_client(app)
    await with_csrf(c)
    registered = await c.post("/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": name})
    assert registered.status_code == 201, registered.text
    return c, await enrol_totp(c, clock)


async def register_app(app: Litestar, clock: ManualClock, public_jwks: dict[str, Any]) -> str:
    """An admin registers the third-party app (as ``brokerlink clients create`` would)."""
    admin, _ = await signed_in(app, clock, "admin@example.com", "Admin")
    database: Database = app.state.db
    async with database.session() as s:
        user = await UserRepository(s).get_by_email("admin@example.com")
        assert user is not None
        await UserRepository(s).set_role(user.id, Role.ADMIN, now=clock.now())
        await s.commit()
    body = {
        "name": "Portfolio Tracker",
        "redirect_uris": [REDIRECT_URI],
        "jwks": public_jwks,
        "scopes": ["accounts:read", "balances:read"],
    }
    try:
        created = await admin.post("/v1/admin/clients", json=body)
    finally:
        await admin.aclose()
    assert created.status_code == 201, created.text
    client_id: str = created.json()["id"]
    return client_id


async def test_the_example_app_runs_the_whole_flow_and_lists_the_consented_accounts(
    app: Litestar, clock: ManualClock, tmp_path: Path
) -> None:
    key_file = tmp_path / "app-key.json"
    public_jwks = example.new_key(key_file)
    client_id = await register_app(app, clock, json.loads(public_jwks))
    alice, device = await signed_in(app, clock, "alice@example.com", "Alice")
    _, shared_account = await link_account(app, "alice@example.com", "Alice")
    _, private_account = await link_account(app, "alice@example.com", "Savings")

    async with contextlib.aclosing(alice), asgi_client(app) as http:
        third_party = example.App(
            issuer=ISSUER, client_id=client_id, key=example.load_private_key(key_file), redirect_uri=REDIRECT_URI
        )
        third_party.clock = third_party.dpop.clock = lambda: clock.now().timestamp()  # the server's time
        await example.discover(http, third_party)
        authorization = await example.push_authorization_request(http, third_party)

        # The browser: /authorize, the consent page, approval with MFA.
        r = await alice.get(authorization.url)
        assert r.status_code == 303, r.text
        r = await alice.get(r.headers["location"])
        assert r.status_code == 303, r.text
        consent_path = r.headers["location"]
        page = await alice.get(consent_path)
        assert page.status_code == 200
        assert "Portfolio Tracker" in page.text
        clock.advance(timedelta(seconds=30))  # a fresh TOTP step (the enrolment used the current one)
        form = {"decision": "approve", "account_ids": [shared_account], "code": device.code(clock)}
        answer = await alice.post(f"{consent_path}/decision", data=form)
        assert answer.status_code == 303, answer.text
        redirected_to = answer.headers["location"]
        assert redirected_to.startswith(REDIRECT_URI + "?")

        code = example.read_callback(third_party, authorization, redirected_to)
        tokens = await example.exchange_code(http, third_party, authorization, code)
        assert tokens.token_type.lower() == "dpop"
        assert set(tokens.scope.split()) == {"accounts:read", "balances:read"}
        accounts = await example.list_accounts(http, third_party, tokens)
        assert [a["id"] for a in accounts] == [shared_account]
        assert private_account not in str(accounts)

        # The token alone (no proof, or as a Bearer token) opens nothing.
        bare = await http.get("/v1/accounts", headers={"Authorization": f"DPoP {tokens.access_token}"})
        assert bare.status_code == 401
        bearer = await http.get("/v1/accounts", headers={"Authorization": f"Bearer {tokens.access_token}"})
        assert bearer.status_code == 401


def test_the_redirect_is_checked_for_state_and_issuer() -> None:
    third_party = example.App(issuer=ISSUER, client_id="app_x", key=None, redirect_uri=REDIRECT_URI)
    pending = example.Authorization(url="", state="s1", verifier="v")
    ok = f"{REDIRECT_URI}?code=c1&state=s1&iss={ISSUER}"
    assert example.read_callback(third_party, pending, ok) == "c1"
    for bad in (
        f"{REDIRECT_URI}?code=c1&state=other&iss={ISSUER}",
        f"{REDIRECT_URI}?code=c1&state=s1&iss=https://evil.example",
        f"{REDIRECT_URI}?code=c1&state=s1",
        f"{REDIRECT_URI}?error=access_denied&state=s1&iss={ISSUER}",
    ):
        with pytest.raises(example.FlowError):
            example.read_callback(third_party, pending, bad)
