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
time is what the stack costs. Three kinds take turns request by request, so drift, a GC pass or a
background task's wake-up lands on all of them alike:

- ``on``: an authenticated request; ``off``: the same request with authentication switched off;
- ``off+verify``: the ``off`` request followed by one ES256 verification (``cryptography``, a
  proof-sized message): what one verification costs amid request handling, caches as cold as they
  are inside a request;
- and after each round of ``--block`` requests, a tight loop of ``--block`` verifications (the
  figure a micro-benchmark gives).

Per request: ``added_us`` = median of the paired differences (on - off); ``es256_verify_us`` = the
tight loops' median; ``es256_verify_amid_requests_us`` = median of (off+verify - off). Medians of
CPU and wall time per request are printed too.

Goal: ``ratio`` = added_us / es256_verify_us <= 2 (the token is found by hash in a short-lived
cache, so the proof's signature should be most of the cost). ``ratio_to_verify_amid_requests``
divides by the verification's cost amid requests instead. Run:
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


def _app(settings: Settings, *, auth: bool) -> Litestar:
    if auth:
        return factory.create_app(settings, clock=SystemClock())
    with mock.patch.object(factory, "SessionAuthMiddleware", FixedPrincipal):
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
async def seeded_apps() -> AsyncIterator[tuple[Litestar, Litestar, jwk.ECKey, str, str]]:
    """The real app and the one with authentication switched off, running on one seeded database in a
    temp dir: ``(on, off, key, order id, token)``, the token bound to ``key``."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = _settings(Path(tmp))
        on, off = _app(settings, auth=True), _app(settings, auth=False)
        key = jwk.ECKey.generate_key("P-256")
        async with _running(on), _running(off):
            _, order_id, token = await _seed(on, key)
            yield on, off, key, order_id, token


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


async def _timed(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], es256: _Es256 | None
) -> tuple[int, int]:
    """(CPU ns, wall ns) of one request; with ``es256``, one verification after it."""
    wall, cpu = time.perf_counter_ns(), time.process_time_ns()
    response = await client.get(path, headers=headers)
    if es256 is not None:
        es256.once()
    cpu, wall = time.process_time_ns() - cpu, time.perf_counter_ns() - wall
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


async def run(rounds: int, block: int) -> dict[str, Any]:
    async with seeded_apps() as (on, off, key, order_id, token):
        path = f"/v1/orders/{order_id}"
        transport_on = httpx.ASGITransport(app=on)  # type: ignore[arg-type]
        transport_off = httpx.ASGITransport(app=off)  # type: ignore[arg-type]
        async with (
            httpx.AsyncClient(transport=transport_on, base_url=ORIGIN) as c_on,
            httpx.AsyncClient(transport=transport_off, base_url=ORIGIN) as c_off,
        ):
            es256 = _Es256()
            cpu: dict[str, list[int]] = {"on": [], "off": [], "off+verify": []}
            wall: dict[str, list[int]] = {"on": [], "off": [], "off+verify": []}
            tight: list[float] = []
            for round_ in range(rounds + 1):
                proofs = _proofs(key, ORIGIN + path, token, block)
                for proof in proofs:
                    headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
                    # The same request bytes to both apps (the switched-off one ignores the two
                    # headers): this process is the client too, and its work on them is not the
                    # server's. The three kinds take turns request by request, so drift, a GC
                    # pass or a background task lands on all of them alike.
                    samples = {
                        "on": await _timed(c_on, path, headers, None),
                        "off": await _timed(c_off, path, headers, None),
                        "off+verify": await _timed(c_off, path, headers, es256),
                    }
                    if not round_:  # the first round warms up (caches, connections, code paths)
                        continue
                    for kind, (cpu_ns, wall_ns) in samples.items():
                        cpu[kind].append(cpu_ns)
                        wall[kind].append(wall_ns)
                if round_:
                    tight.append(es256.tight(block))
    us = 1000

    def median_us(values: list[int]) -> float:
        return statistics.median(values) / us

    added = statistics.median(a - b for a, b in zip(cpu["on"], cpu["off"], strict=True)) / us
    amid = statistics.median(a - b for a, b in zip(cpu["off+verify"], cpu["off"], strict=True)) / us
    verify_us = statistics.median(tight)
    return {
        "benchmark": "auth_overhead",
        "requests_per_variant": len(cpu["on"]),
        "authenticated_cpu_us": round(median_us(cpu["on"]), 1),
        "unauthenticated_cpu_us": round(median_us(cpu["off"]), 1),
        "authenticated_wall_us": round(median_us(wall["on"]), 1),
        "unauthenticated_wall_us": round(median_us(wall["off"]), 1),
        "added_us": round(added, 1),
        "added_wall_us": round(statistics.median(a - b for a, b in zip(wall["on"], wall["off"], strict=True)) / us, 1),
        "es256_verify_us": round(verify_us, 1),
        "es256_verify_amid_requests_us": round(amid, 1),
        "ratio": round(added / verify_us, 2),
        "ratio_to_verify_amid_requests": round(added / amid, 2),
        "goal": "ratio <= 2",
        "goal_met": added / verify_us <= 2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (well under a minute)")
    parser.add_argument("--block", type=int, default=100, help="requests per round (then as many tight verifications)")
    args = parser.parse_args()
    rounds = 12 if args.quick else 40
    result = asyncio.run(run(rounds, args.block))
    emit(result)


if __name__ == "__main__":
    main()
