"""The example third-party app (examples/third_party_app.py) end to end, against the app in-process.

The app runs its own steps, as its ``run`` does, through ``brokerlink.client``: metadata, PAR with
``private_key_jwt`` and ``dpop_jkt``, the code exchange with DPoP, and DPoP-bound reads. Only the
browser is played by the test: Alice, signed in with MFA, follows the authorization URL, lands on
the consent page, ticks one of her two accounts and approves with her authenticator code; the
redirect the app's loopback listener would catch is read from the 303 instead. At the end the app
sees exactly the consented account, and an access token without its DPoP proof gets nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from litestar import Litestar

from brokerlink.app.factory import create_app
from brokerlink.client import AsyncBrokerlink, Authorization, FlowError, OAuthClient
from brokerlink.kit.clock import ManualClock
from tests.api.support import asgi_client, link_account, running
from tests.client.support import ORIGIN, approve, register_app, registered, serve, server_time, settings
from tests.contract.harness import free_port

ISSUER = ORIGIN  # the in-process clients' base URL (tests/api/support.py)
REDIRECT_URI = "http://127.0.0.1:8765/callback"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "third_party_app.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("third_party_app", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


example = load_example()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def app(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Litestar]:
    created = create_app(settings(tmp_path), clock=clock, configure_logs=False)
    async with running(created):
        yield created


async def test_the_example_app_runs_the_whole_flow_and_lists_the_consented_accounts(
    app: Litestar, clock: ManualClock, tmp_path: Path
) -> None:
    key_file = tmp_path / "app-key.json"
    public_jwks = example.new_key(key_file)
    client_id = await register_app(
        app, clock, json.loads(public_jwks), redirect_uri=REDIRECT_URI, scopes=["accounts:read", "balances:read"]
    )
    alice, device = await registered(app, clock, "alice@example.com", "Alice")
    _, shared_account = await link_account(app, "alice@example.com", "Alice")
    _, private_account = await link_account(app, "alice@example.com", "Savings")

    async with contextlib.aclosing(alice), asgi_client(app) as http:
        oauth = OAuthClient(
            http, issuer=ISSUER, client_id=client_id, key=example.load_private_key(key_file), clock=server_time(clock)
        )
        authorization = await example.start(oauth, REDIRECT_URI)
        redirected_to = await approve(alice, device, clock, authorization.url, [shared_account])
        assert redirected_to.startswith(REDIRECT_URI + "?")

        tokens = await example.finish(oauth, authorization, redirected_to)
        assert tokens.token_type.lower() == "dpop"
        assert set(tokens.scope.split()) == {"accounts:read", "balances:read"}
        api = AsyncBrokerlink.with_tokens(ISSUER, tokens, oauth.dpop, oauth=oauth, http=http)
        accounts = await example.list_accounts(api)
        assert [a.id for a in accounts] == [shared_account]
        assert private_account not in str(accounts)

        # The token alone (no proof, or as a Bearer token) opens nothing.
        bare = await http.get("/v1/accounts", headers={"Authorization": f"DPoP {tokens.access_token}"})
        assert bare.status_code == 401
        bearer = await http.get("/v1/accounts", headers={"Authorization": f"Bearer {tokens.access_token}"})
        assert bearer.status_code == 401


def test_the_redirect_is_checked_for_state_and_issuer() -> None:
    oauth = OAuthClient(None, issuer=ISSUER, client_id="app_x", key=None)  # type: ignore[arg-type]
    pending = Authorization(url="", state="s1", verifier="v", redirect_uri=REDIRECT_URI)
    ok = f"{REDIRECT_URI}?code=c1&state=s1&iss={ISSUER}"
    assert oauth.read_callback(pending, ok) == "c1"
    for bad in (
        f"{REDIRECT_URI}?code=c1&state=other&iss={ISSUER}",
        f"{REDIRECT_URI}?code=c1&state=s1&iss=https://evil.example",
        f"{REDIRECT_URI}?code=c1&state=s1",
        f"{REDIRECT_URI}?error=access_denied&state=s1&iss={ISSUER}",
    ):
        with pytest.raises(FlowError):
            oauth.read_callback(pending, bad)


def test_the_cli_writes_a_key_and_prints_its_public_half(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "app-key.json"
    assert example.main(["--key", str(key_file), "--new-key"]) == 0
    printed = json.loads(capsys.readouterr().out)
    [public] = printed["keys"]
    assert "d" not in public
    assert json.loads(key_file.read_text())["d"]
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert example.load_private_key(key_file).is_private


async def test_the_script_runs_against_a_served_app_with_its_loopback_listener(tmp_path: Path) -> None:
    """``run`` as the CLI calls it: real sockets to the server and to the app's redirect listener."""
    clock = ManualClock()
    port, listener_port = free_port(), free_port()
    origin = f"http://127.0.0.1:{port}"
    redirect_uri = f"http://127.0.0.1:{listener_port}/callback"
    app = create_app(settings(tmp_path, oauth_issuer=origin, resource_origin=origin), clock=clock, configure_logs=False)
    async with serve(app, port):
        key_file = tmp_path / "app-key.json"
        client_id = await register_app(
            app, clock, json.loads(example.new_key(key_file)), redirect_uri=redirect_uri, scopes=["accounts:read"]
        )
        alice, device = await registered(app, clock, "alice@example.com", "Alice")
        _, shared = await link_account(app, "alice@example.com", "Alice")
        browsing: list[asyncio.Task[None]] = []

        async def browser(url: str) -> None:  # Alice approves; her browser follows the redirect
            redirected_to = await approve(alice, device, clock, url.removeprefix(origin), [shared])
            async with httpx.AsyncClient() as http:
                assert (await http.get(redirected_to)).status_code == 200

        async with contextlib.aclosing(alice):
            accounts = await example.run(
                origin,
                client_id,
                example.load_private_key(key_file),
                port=listener_port,
                scope="accounts:read",
                open_browser=lambda url: browsing.append(asyncio.create_task(browser(url))),
                timeout_s=30,
                clock=server_time(clock),
            )
            await asyncio.gather(*browsing)
    assert [(a.id, a.name) for a in accounts] == [(shared, "Alice")]
