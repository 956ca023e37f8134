"""What the security stack adds to an API read: a DPoP-authenticated GET against the same GET unauthenticated.

Two apps from ``create_app`` share one SQLite database in a temp dir and run in this process,
driven over ASGI (``httpx.ASGITransport``): the real one, and one whose authentication middleware
is swapped for one that hands every request, unchecked, the very principal the token stands for
(the app acting for the user, with the consent's scopes and accounts) and marks it token-borne as
the real middleware does. Everything after authentication - request context, hardening, the rate
limits (client and user), CSRF (skipped for token requests in both), the handler, its query - is
then the same, so the difference is authentication alone: reading the Authorization and DPoP
headers, finding the token, checking the proof (signature, claims, binding) and its ``jti``.
Both read one order, ``GET /v1/orders/{id}``, with the same request bytes: ``Authorization: DPoP
<token>`` and a fresh ES256 proof per request (made before the timed requests; the switched-off app
ignores the two headers, and since this process is also the client, its work on them is the same
for both).

What is measured is **CPU time** (``time.process_time``: every thread of this process) per request,
not wall time: two cores shared with other work stretch wall times by whatever else runs, and CPU
time is what the stack costs. Each round runs a block of ``--block`` requests of each kind back to
back (as a server serving the API runs them), the kinds' order rotating round by round, then the
two reads alternating request by request, then a tight loop of ``--block`` ES256 verifications:

- ``on``: an authenticated request; ``off``: the same request with authentication switched off;
- ``off+verify_inside``: the ``off`` request from a third app whose switched-off authentication
  does one bare ES256 verification first (``cryptography``, a proof-sized message), in the place
  the real one checks the proof's signature: what the verification alone costs the request it sits
  in, the slower code after it included;
- ``on``/``off`` alternating: the same two reads taking turns request by request.

Each figure is a median of per-request differences: the n-th request of the ``on`` block against
the n-th of the ``off`` block of the same round (so drift cancels), or the two requests of an
alternating pair. Medians, not means: the ``off`` read has the heavier tail (p99 ~1.6 ms against
~1.2 ms for ``on``, for no reason authentication could claim), and block means let that tail take
~15 µs off the difference.

``added_us`` = the median (on - off); ``es256_verify_us`` = the tight loops' median;
``es256_verify_inside_request_us`` = the median (off+verify_inside - off); ``added_alternating_us``
= the median (on - off) over the alternating pairs.

Goal: ``ratio`` = added_us / es256_verify_us <= 2 (the token is found by hash in a short-lived
cache, so the proof's signature should be most of the cost). ``ratio_to_verify_inside_request``
shows how far authentication is from a bare verification in its place (1.0 would be no cost but
the signature's); ``ratio_alternating`` is the ratio with requests alternating. Run:
``.venv/bin/python bench/auth_overhead.py [--quick]``. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwk, jws
from litestar import Litestar
from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from pydantic import SecretStr

from _report import emit
from brokerlink.api.auth.middleware import REQUEST_TOKEN_EXPIRES, REQUEST_TOKEN_ID
from brokerlink.app import factory
from brokerlink.config import Settings
from brokerlink.domain.enums import AccountMode, OrderStatus, OrderType, Side, TimeInForce
from brokerlink.domain.models import Account, Order
from brokerlink.kit.clock import SystemClock
from brokerlink.kit.ids import new_id
from brokerlink.security.dpop import access_token_hash
from brokerlink.security.oauth.resource import lookup_token, token_hash
from brokerlink.store.db import Database
from brokerlink.store.models_oauth import OAuthClientRow, OAuthConsentRow, OAuthTokenRow
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.connections import ConnectionRepository
from brokerlink.store.repositories.orders import OrderRepository
from brokerlink.store.repositories.users import UserRepository

ORIGIN = "http://bench.local"
_fixed: dict[str, Any] = {}


class FixedPrincipal(AbstractAuthenticationMiddleware):
    """Authentication switched off: every request is the token's principal, with nothing checked or looked up."""

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        principal = _fixed["principal"]
        state = connection.scope.setdefault("state", {})
        state[REQUEST_TOKEN_ID] = _fixed["token_id"]
        state[REQUEST_TOKEN_EXPIRES] = _fixed["expires_at"]
        return AuthenticationResult(user=principal, auth=_fixed["token_id"])


class FixedPrincipalVerifying(FixedPrincipal):
    """As :class:`FixedPrincipal`, one ES256 verification first: a verification alone, where authentication does it."""

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        _fixed["es256"].once()
        return await super().authenticate_request(connection)


def _settings(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        environment="production",
        secret_key=SecretStr("benchmark-secret-key-that-is-long-enough-0123"),
        log_level="error",
        log_format="json",
        resource_origin=ORIGIN,
        rate_limit_user="1000000/second",
        rate_limit_client="1000000/second",
        rate_limit_ip="1000000/second",
        alerts_enabled=False,
        audit_checkpoint_every_s=0,
        retention_purge_every_s=0,
    )


def _app(settings: Settings, *, auth: type[AbstractAuthenticationMiddleware] | None) -> Litestar:
    """The real app (``auth`` None), or one whose authentication middleware is ``auth``."""
    if auth is None:
        return factory.create_app(settings, clock=SystemClock())
    with mock.patch.object(factory, "SessionAuthMiddleware", auth):
        return factory.create_app(settings, clock=SystemClock())


@contextlib.asynccontextmanager
async def _running(app: Litestar) -> AsyncIterator[None]:
    up, down = asyncio.Event(), asyncio.Event()

    async def lifespan() -> None:
        async with app.lifespan():
            up.set()
            await down.wait()

    task = asyncio.create_task(lifespan())
    await up.wait()
    try:
        yield
    finally:
        down.set()
        await task


async def _seed(app: Litestar, key: jwk.ECKey) -> tuple[str, str, str]:
    """A user, an account, an order and a token bound to ``key``; (user id, order id, token)."""
    database: Database = app.state.db
    now = SystemClock().now()
    async with database.session() as s:
        user = await UserRepository(s).create(email="bench@example.com", display_name="B", password_hash="-", now=now)  # noqa: S106
        conn = await ConnectionRepository(s).create(user_id=user.id, broker="sim", label="sim", now=now)
        account = Account(
            id=new_id("acc"), user_id=user.id, connection_id=conn.id, venue_account_id="SIM-B", name="Main",
            currency="USD", mode=AccountMode.NETTING,
        )  # fmt: skip
        await AccountRepository(s).add(account, now=now)
        order = Order(
            id=new_id("ord"), client_order_id="bench-1", account_id=account.id, symbol="EUR/USD", side=Side.BUY,
            qty=Decimal("0.10"), type=OrderType.MARKET, tif=TimeInForce.GTC,
            status=OrderStatus.FILLED, created_at=now, updated_at=now,
        )  # fmt: skip
        await OrderRepository(s).add(order)
        client_id, consent_id, token_id = new_id("cli"), new_id("cns"), new_id("tok")
        s.add(
            OAuthClientRow(
                id=client_id, name="Bench", redirect_uris="[]", jwks='{"keys": []}', jwks_uri=None,
                scopes='["orders:read"]', grant_types='["authorization_code"]', created_by=None,
                created_at=now, updated_at=now, disabled_at=None,
            )
        )  # fmt: skip
        await s.flush()
        s.add(
            OAuthConsentRow(
                id=consent_id, client_id=client_id, user_id=user.id, scopes='["orders:read"]',
                account_ids=json.dumps([account.id]), status="authorised", par_id=None, created_at=now,
                decided_at=now, expires_at=now + timedelta(days=1), revoked_at=None,
            )
        )  # fmt: skip
        await s.flush()
        token = secrets.token_urlsafe(64)  # stands for the JWT: the resource server reads only its hash
        s.add(
            OAuthTokenRow(
                id=token_id, kind="access", token_hash=token_hash(token), client_id=client_id, user_id=user.id,
                consent_id=consent_id, code_id=None, parent_id=None, scopes='["orders:read"]', jkt=key.thumbprint(),
                created_at=now, expires_at=now + timedelta(hours=1), revoked_at=None,
            )
        )  # fmt: skip
        await s.commit()
    async with database.session() as s:
        found = await lookup_token(s, token_hash(token), now)
    if found is None:
        raise SystemExit("the seeded token is not found")
    _fixed.update(principal=found.grant.principal(), token_id=token_id, expires_at=found.grant.expires_at)
    return user.id, order.id, token


@contextlib.asynccontextmanager
async def seeded_apps(
    *extra: type[AbstractAuthenticationMiddleware],
) -> AsyncIterator[tuple[Litestar, Litestar, jwk.ECKey, str, str, list[Litestar]]]:
    """The real app and the one with authentication switched off, running on one seeded database in a
    temp dir: ``(on, off, key, order id, token, others)``, the token bound to ``key``; ``others`` are
    apps with the ``extra`` authentication middlewares in their place."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = _settings(Path(tmp))
        on, off = _app(settings, auth=None), _app(settings, auth=FixedPrincipal)
        others = [_app(settings, auth=middleware) for middleware in extra]
        key = jwk.ECKey.generate_key("P-256")
        async with contextlib.AsyncExitStack() as stack:
            for app in (on, off, *others):
                await stack.enter_async_context(_running(app))
            _, order_id, token = await _seed(on, key)
            yield on, off, key, order_id, token, others


def _proofs(key: jwk.ECKey, url: str, token: str, count: int) -> list[str]:
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
    now = int(time.time())
    ath = access_token_hash(token)
    return [
        jws.serialize_compact(
            header,
            json.dumps({"jti": secrets.token_urlsafe(12), "htm": "GET", "htu": url, "iat": now, "ath": ath}),
            key,
            algorithms=["ES256"],
        )
        for _ in range(count)
    ]


async def _block(client: httpx.AsyncClient, path: str, token: str, proofs: list[str]) -> tuple[list[int], list[int]]:
    """CPU ns and wall ns of each request over ``proofs``, one request each, back to back."""
    cpu: list[int] = []
    wall: list[int] = []
    for proof in proofs:
        wall_ns, cpu_ns = time.perf_counter_ns(), time.process_time_ns()
        response = await client.get(path, headers={"Authorization": f"DPoP {token}", "DPoP": proof})
        cpu.append(time.process_time_ns() - cpu_ns)
        wall.append(time.perf_counter_ns() - wall_ns)
        if response.status_code != 200:
            raise SystemExit(f"GET {path}: {response.status_code} {response.text}")
    return cpu, wall


class _Es256:
    """One ES256 verification with ``cryptography`` (a proof-sized message)."""

    def __init__(self) -> None:
        private = ec.generate_private_key(ec.SECP256R1())
        self.public = private.public_key()
        self.message = b"x" * 200  # about a DPoP proof's signing input
        self.signature = private.sign(self.message, ec.ECDSA(hashes.SHA256()))

    def once(self) -> None:
        self.public.verify(self.signature, self.message, ec.ECDSA(hashes.SHA256()))

    def tight(self, count: int) -> float:
        """CPU µs per verification over ``count`` in a row."""
        cpu = time.process_time_ns()
        for _ in range(count):
            self.once()
        return (time.process_time_ns() - cpu) / 1000 / count


KINDS = ("on", "off", "off+verify_inside")


async def run(rounds: int, block: int) -> dict[str, Any]:
    es256 = _Es256()
    _fixed["es256"] = es256
    async with seeded_apps(FixedPrincipalVerifying) as (on, off, key, order_id, token, (verifying,)):
        path = f"/v1/orders/{order_id}"
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=on), base_url=ORIGIN) as c_on,  # type: ignore[arg-type]
            httpx.AsyncClient(transport=httpx.ASGITransport(app=off), base_url=ORIGIN) as c_off,  # type: ignore[arg-type]
            httpx.AsyncClient(transport=httpx.ASGITransport(app=verifying), base_url=ORIGIN) as c_verifying,  # type: ignore[arg-type]
        ):
            clients = {"on": c_on, "off": c_off, "off+verify_inside": c_verifying}
            cpu: dict[str, list[int]] = {kind: [] for kind in (*KINDS, "on_alternating", "off_alternating")}
            wall: dict[str, list[int]] = {kind: [] for kind in KINDS}
            tight: list[float] = []
            for round_ in range(rounds + 1):
                # Every request gets a fresh proof (its jti is single use), made before the timing;
                # the switched-off apps get the same request bytes and ignore the two headers.
                proofs = _proofs(key, ORIGIN + path, token, block * (len(KINDS) + 2))
                # A block of each kind, back to back, in an order that rotates round by round.
                shift = round_ % len(KINDS)
                for i, kind in enumerate(KINDS[shift:] + KINDS[:shift]):
                    cpu_ns, wall_ns = await _block(clients[kind], path, token, proofs[i * block : (i + 1) * block])
                    if round_:  # the first round warms up (caches, connections, code paths)
                        cpu[kind] += cpu_ns
                        wall[kind] += wall_ns
                # The same two reads alternating request by request instead.
                for proof in proofs[len(KINDS) * block :: 2]:
                    for kind in ("on", "off"):
                        cpu_ns, _ = await _block(clients[kind], path, token, [proof])
                        if round_:
                            cpu[f"{kind}_alternating"] += cpu_ns
                if round_:
                    tight.append(es256.tight(block))

    def paired(kind: str, base: str, series: dict[str, list[int]]) -> float:
        """Median of the differences between the n-th requests of two kinds' blocks in the same round (µs)."""
        return statistics.median(a - b for a, b in zip(series[kind], series[base], strict=True)) / 1000

    def median_us(values: list[int]) -> float:
        return statistics.median(values) / 1000

    added = paired("on", "off", cpu)
    inside = paired("off+verify_inside", "off", cpu)
    alternating = paired("on_alternating", "off_alternating", cpu)
    verify_us = statistics.median(tight)
    return {
        "benchmark": "auth_overhead",
        "rounds": rounds,
        "block": block,
        "authenticated_cpu_us": round(median_us(cpu["on"]), 1),
        "unauthenticated_cpu_us": round(median_us(cpu["off"]), 1),
        "authenticated_wall_us": round(median_us(wall["on"]), 1),
        "unauthenticated_wall_us": round(median_us(wall["off"]), 1),
        "added_us": round(added, 1),
        "added_wall_us": round(paired("on", "off", wall), 1),
        "added_alternating_us": round(alternating, 1),
        "es256_verify_us": round(verify_us, 1),
        "es256_verify_inside_request_us": round(inside, 1),
        "ratio": round(added / verify_us, 2),
        "ratio_alternating": round(alternating / verify_us, 2),
        "ratio_to_verify_inside_request": round(added / inside, 2),
        "goal": "ratio <= 2",
        "goal_met": added / verify_us <= 2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (well under a minute)")
    parser.add_argument(
        "--block", type=int, default=50, help="requests per block of one kind (and tight verifications per round)"
    )
    args = parser.parse_args()
    rounds = 60 if args.quick else 150
    result = asyncio.run(run(rounds, args.block))
    emit(result)


if __name__ == "__main__":
    main()
