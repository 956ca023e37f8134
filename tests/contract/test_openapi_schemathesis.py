"""The published OpenAPI document, checked against the running API (SECURITY 32).

* The route set equals the document: every HTTP route the app serves is an operation in
  ``/openapi.json`` (same method, same path), except the routes listed in :data:`NOT_IN_DOCUMENT`,
  each with the reason it is not an API operation; and the document describes no route the app
  lacks.
* schemathesis generates requests for every operation from the document and sends them to a real
  server on loopback, signed in as a user with data (an admin, so admin routes run too; MFA
  enrolled; an account linked at a sim venue; an order; a strategy), with the session cookie and the
  CSRF header. No response may be a server error, every response must match its documented schema,
  and none may contain a credential (the venue API key or secret, the password, the session token).

Bounded and reproducible: a fixed number of examples per operation, derandomized (the same cases on
every run), one server for the module.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import schemathesis
import uvicorn
from litestar import Litestar
from litestar.routes import HTTPRoute
from pydantic import SecretStr
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import response_schema_conformance

from brokerlink.app.factory import create_app
from brokerlink.config import Settings
from brokerlink.domain.enums import Role
from brokerlink.kit.clock import SystemClock
from brokerlink.security.totp import code_at, time_step
from brokerlink.store.db import Database
from brokerlink.store.repositories.users import UserRepository
from tests.api.support import MARKET_ORDER, PASSWORD, RESTING_ORDER, link_body, venue_credentials
from tests.contract.harness import free_port, sim_venue

# schemathesis 4.32.5 draws from the `random` module inside some of its strategies (a Hypothesis
# deprecation); with warnings as errors that would fail a case for the tool's reason, not the API's.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies:hypothesis.errors.HypothesisDeprecationWarning"
)

MAX_EXAMPLES = 5
"""Generated requests per operation and phase: about 80 operations, so the run stays near a minute."""
SESSION_COOKIE = "brokerlink_session"
CSRF_COOKIE = "brokerlink_csrf"

NOT_IN_DOCUMENT: dict[tuple[str, str], str] = {
    ("GET", "/openapi.json"): "the document itself",
    ("GET", "/metrics"): "Prometheus exposition for the scraper (its own token), not an API operation",
    ("GET", "/"): "page: the dashboard",
    ("GET", "/login"): "page",
    ("POST", "/login"): "page form",
    ("GET", "/register"): "page",
    ("POST", "/register"): "page form",
    ("POST", "/logout"): "page form",
    ("GET", "/login/mfa"): "page",
    ("POST", "/login/mfa"): "page form",
    ("GET", "/account/security"): "page",
    ("POST", "/account/security/totp"): "page form",
    ("POST", "/account/security/totp/confirm"): "page form",
    ("POST", "/account/security/totp/disable"): "page form",
    ("GET", "/authorize"): "browser endpoint of the authorization server (redirects; described by its metadata)",
    ("GET", "/consents"): "page: the user's consents",
    ("GET", "/consents/request/{par_id}"): "page: the consent screen",
    ("GET", "/consents/{consent_id}"): "page",
    ("POST", "/consents/{consent_id}/decision"): "page form: approve or decline (with MFA)",
    ("POST", "/consents/{consent_id}/revoke"): "page form",
    ("GET", "/static/{file_path}"): "static files",
    ("HEAD", "/static/{file_path}"): "static files",
    ("GET", "/docs"): "the API docs page",
    ("GET", "/docs/{path}"): "the API docs page",
    ("GET", "/docs/openapi.json"): "the API docs page's copy of the document",
    ("GET", "/docs/oauth2-redirect.html"): "the API docs page",
}
"""HTTP routes that are not API operations, and why. WebSocket routes (``/v1/stream``,
``/v1/admin/stream``) have no place in an OpenAPI document and are not HTTP routes here."""
SIGN_IN = {"/v1/auth/register", "/v1/auth/login", "/v1/auth/mfa"}
"""Called without the session: a successful sign-in replaces the session the request came with."""
_TYPED_PARAM = re.compile(r"\{(\w+):\w+\}")


def served_operations(app: Litestar) -> set[tuple[str, str]]:
    """(method, path) of every HTTP route the app serves, path parameters as ``{name}``."""
    return {
        (method, _TYPED_PARAM.sub(r"{\1}", route.path))
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for method in route.methods - {"OPTIONS"}
    }


def documented_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    methods = {"get", "put", "post", "delete", "patch", "head"}
    return {(m.upper(), path) for path, item in document["paths"].items() for m in item if m in methods}


def test_security32_the_route_set_equals_the_documented_operations(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, environment="test", secret_key=SecretStr("k" * 48))
    app = create_app(settings, configure_logs=False)
    document = app.openapi_schema.to_schema()
    served, documented = served_operations(app), documented_operations(document)
    assert documented - served == set(), "documented but not served"
    undocumented = served - documented - set(NOT_IN_DOCUMENT)
    assert not undocumented, f"served but neither documented nor listed as non-API: {sorted(undocumented)}"
    stale = set(NOT_IN_DOCUMENT) - (served - documented)
    assert not stale, f"listed as non-API but not served, or documented after all: {sorted(stale)}"


# --- the live server ---------------------------------------------------------------------------------


@dataclass
class Live:
    """The running server and the signed-in user's session and data."""

    base_url: str
    headers: dict[str, str]
    anonymous: dict[str, str]
    """A CSRF token but no session: for the sign-in routes, which end the session a request carries."""
    ids: dict[str, str]
    forbidden: list[str] = field(default_factory=list)
    """Strings no response may contain: credentials and the session token."""


class LiveServer(threading.Thread):
    """The app under uvicorn on a loopback port, with a sim venue, in a thread with its own event loop."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(name="schemathesis-server", daemon=True)
        self.data_dir = data_dir
        self.ready = threading.Event()
        self.live: Live | None = None
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self.error = exc
        finally:
            self.ready.set()

    def shutdown(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self.join(timeout=30)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        async with sim_venue(extra_accounts=1) as venue:
            settings = Settings(
                data_dir=self.data_dir,
                environment="test",
                secret_key=SecretStr("schemathesis-secret-key-that-is-long-enough-0123"),
                log_level="error",
                log_format="console",
                cookie_secure=False,  # plain http on loopback
                rate_limit_enabled=False,  # the generated requests come in a burst
                max_body_bytes=64 * 1024,
            )
            app = create_app(settings, clock=SystemClock(), configure_logs=False)
            port = free_port()
            server = uvicorn.Server(
                uvicorn.Config(
                    app, host="127.0.0.1", port=port, log_config=None, lifespan="on", timeout_graceful_shutdown=2
                )
            )
            task = asyncio.create_task(server.serve())
            for _ in range(400):  # bounded: 20 s
                if server.started or task.done():
                    break
                await asyncio.sleep(0.05)
            if not server.started:
                task.result()
                raise AssertionError("the server did not start")
            try:
                self.live = await _seed(app, f"http://127.0.0.1:{port}", venue.base_url)
                self.ready.set()
                await self._stopping.wait()
            finally:
                server.should_exit = True
                await asyncio.wait_for(task, timeout=15)


async def _seed(app: Litestar, base_url: str, venue_url: str) -> Live:
    """Register a user with MFA, make them an admin, link a venue account, place an order, publish a strategy."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as c:
        csrf = (await c.get("/v1/auth/csrf")).json()["csrf_token"]
        c.headers["x-csrf-token"] = csrf
        email = "fuzz@example.com"
        body = {"email": email, "password": PASSWORD, "display_name": "Fuzz"}
        assert (await c.post("/v1/auth/register", json=body)).status_code == 201
        started = (await c.post("/v1/me/mfa/totp")).json()
        code = code_at(started["secret"], time_step(SystemClock().now()))
        assert (await c.post("/v1/me/mfa/totp/confirm", json={"code": code})).status_code == 200
        database: Database = app.state.db
        async with database.session() as s:
            user = await UserRepository(s).get_by_email(email)
            assert user is not None
            await UserRepository(s).set_role(user.id, Role.ADMIN, now=SystemClock().now())
            await s.commit()
        linked = await c.post("/v1/connections", json=link_body(venue_url, 1))
        assert linked.status_code == 201, linked.text
        account_id = linked.json()["account"]["id"]
        order = await c.post(f"/v1/accounts/{account_id}/orders", json=RESTING_ORDER)
        assert order.status_code == 201, order.text
        filled = await c.post(f"/v1/accounts/{account_id}/orders", json=MARKET_ORDER)
        assert filled.status_code == 201, filled.text
        strategy = await c.post("/v1/strategies", json={"name": "Fuzzed", "account_id": account_id})
        assert strategy.status_code == 201, strategy.text
        session = c.cookies[SESSION_COOKIE]
        cookies = f"{SESSION_COOKIE}={session}; {CSRF_COOKIE}={c.cookies[CSRF_COOKIE]}"
        credentials = venue_credentials(1)
        return Live(
            base_url=base_url,
            headers={"cookie": cookies, "x-csrf-token": csrf},
            anonymous={"cookie": f"{CSRF_COOKIE}={c.cookies[CSRF_COOKIE]}", "x-csrf-token": csrf},
            ids={"account_id": account_id, "order_id": order.json()["id"], "strategy_id": strategy.json()["id"]},
            forbidden=[credentials["api_key"], credentials["api_secret"], PASSWORD, session],
        )


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    server = LiveServer(tmp_path_factory.mktemp("schemathesis"))
    server.start()
    server.ready.wait(timeout=120)
    try:
        if server.error is not None:
            raise server.error
        assert server.live is not None, "the server did not become ready"
        served = httpx.get(f"{server.live.base_url}/openapi.json", headers=server.live.headers, timeout=30)
        assert served.json() == DOCUMENT, "the server publishes the document the tests were generated from"
        yield server.live
    finally:
        server.shutdown()


def published_document() -> dict[str, Any]:
    """The document ``/openapi.json`` serves, built the way the server builds it (no server needed
    to collect the tests; :func:`live` checks that the running server serves exactly this)."""
    settings = Settings(data_dir=Path(tempfile.mkdtemp()), environment="test", secret_key=SecretStr("k" * 48))
    document: dict[str, Any] = create_app(settings, configure_logs=False).openapi_schema.to_schema()
    return msgspec.json.decode(msgspec.json.encode(document))


DOCUMENT = published_document()
schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=SchemathesisConfig.from_dict(
        {
            # The session comes from the signed-in user (headers below), not from generated cookies.
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "with-security-parameters": False},
            "phases": {"stateful": {"enabled": False}, "coverage": {"enabled": False}},
        }
    ),
).exclude(path="/v1/auth/logout")  # it would end the session every other case runs in


UNAVAILABLE = {"broker_unavailable", "unavailable"}
"""The one server-side status an API request may get: 503 when a broker it needs does not answer
(here, a generated link to a venue address nothing listens on). It is the documented outcome, as
problem details, and a retry may succeed; anything else at 500 or above is a failure."""


def no_server_error(ctx: Any, response: Any, case: Any) -> None:
    if response.status_code < 500:
        return
    code = None
    if response.headers.get("content-type", [""])[0].startswith("application/problem+json"):
        code = response.json().get("code")
    assert response.status_code == 503, f"{case.operation.label}: server error {response.status_code}"
    assert code in UNAVAILABLE, f"{case.operation.label}: 503 without an unavailable problem: {response.text[:300]}"


def no_credentials(live: Live) -> Any:
    def check(ctx: Any, response: Any, case: Any) -> None:
        text = response.text if isinstance(response.text, str) else ""
        for secret in live.forbidden:
            assert secret not in text, f"{case.operation.label} returned a credential"

    return check


@schema.parametrize()
def test_security32_schemathesis_finds_no_server_error_and_no_schema_violation(case: Any, live: Live) -> None:
    # The user's own objects, so reads and writes reach real data rather than 404.
    for name, value in live.ids.items():
        if case.path_parameters and name in case.path_parameters:
            case.path_parameters[name] = value
    headers = live.anonymous if case.path in SIGN_IN else live.headers
    response = case.call(base_url=live.base_url, headers=headers, timeout=30)
    case.validate_response(response, checks=[no_server_error, response_schema_conformance, no_credentials(live)])
