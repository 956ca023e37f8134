"""What the security stack adds to an API read: a DPoP-authenticated GET against the same GET unauthenticated.

Two apps from ``create_app`` share one SQLite database in a temp dir and run in this process,
driven over ASGI (``httpx.ASGITransport``): the real one, and one whose authentication middleware
is swapped for one that sets a fixed principal (everything else - request context, hardening,
rate limits, CSRF, the handler, its query - is the same). Both read one order,
``GET /v1/orders/{id}``; the real app with ``Authorization: DPoP <token>`` and a fresh ES256
proof per request (made before the timed call). Rounds alternate the two; reported are median
latencies, the difference (``added_us``), and, measured in the same run, the median cost of one
ES256 signature verification with ``cryptography`` (``es256_verify_us``).

Goal: ``ratio`` = added_us / es256_verify_us <= 2 (the token is found by hash in a short-lived
cache, so the proof's signature should be most of the cost). Run:
``.venv/bin/python bench/auth_overhead.py [--quick]``. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import statistics
import sys
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

from brokerlink.app import factory
from brokerlink.config import Settings
from brokerlink.domain.enums import AccountMode, OrderStatus, OrderType, Side, TimeInForce
from brokerlink.domain.models import Account, Order
from brokerlink.kit.clock import SystemClock
from brokerlink.kit.ids import new_id
from brokerlink.security.dpop import access_token_hash
from brokerlink.security.oauth.resource import token_hash
from brokerlink.security.principal import Principal
from brokerlink.store.db import Database
from brokerlink.store.models_oauth import OAuthClientRow, OAuthConsentRow, OAuthTokenRow
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.connections import ConnectionRepository
from brokerlink.store.repositories.orders import OrderRepository
from brokerlink.store.repositories.users import UserRepository

ORIGIN = "http://bench.local"
_fixed: dict[str, Principal] = {}


class FixedPrincipal(AbstractAuthenticationMiddleware):
    """Authentication switched off: every request is the benchmark user, with no lookup at all."""

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:  # noqa: ARG002
        principal = _fixed["principal"]
        return AuthenticationResult(user=principal, auth=None)


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
    _fixed["principal"] = Principal(kind="user", user_id=user.id)
    return user.id, order.id, token


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


async def _pairs(
    on: httpx.AsyncClient, off: httpx.AsyncClient, path: str, signed: list[dict[str, str]]
) -> tuple[list[float], list[float]]:
    """One authenticated and one unauthenticated request in turn per proof: noise hits both alike."""
    with_auth: list[float] = []
    without: list[float] = []
    for headers in signed:
        for client, h, samples in ((on, headers, with_auth), (off, {}, without)):
            started = time.perf_counter_ns()
            response = await client.get(path, headers=h)
            samples.append((time.perf_counter_ns() - started) / 1000)
            if response.status_code != 200:
                raise SystemExit(f"GET {path}: {response.status_code} {response.text}")
    return with_auth, without


class _Es256:
    """One ES256 verification with ``cryptography``, timed in batches between the request rounds."""

    def __init__(self) -> None:
        private = ec.generate_private_key(ec.SECP256R1())
        self.public = private.public_key()
        self.message = b"x" * 200  # about a DPoP proof's signing input
        self.signature = private.sign(self.message, ec.ECDSA(hashes.SHA256()))
        self.batches: list[float] = []

    def measure(self, count: int) -> None:
        started = time.perf_counter_ns()
        for _ in range(count):
            self.public.verify(self.signature, self.message, ec.ECDSA(hashes.SHA256()))
        self.batches.append((time.perf_counter_ns() - started) / 1000 / count)


async def run(rounds: int, per_round: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = _settings(Path(tmp))
        on, off = _app(settings, auth=True), _app(settings, auth=False)
        key = jwk.ECKey.generate_key("P-256")
        async with _running(on), _running(off):
            _, order_id, token = await _seed(on, key)
            path = f"/v1/orders/{order_id}"
            transport_on = httpx.ASGITransport(app=on)  # type: ignore[arg-type]
            transport_off = httpx.ASGITransport(app=off)  # type: ignore[arg-type]
            async with (
                httpx.AsyncClient(transport=transport_on, base_url=ORIGIN) as c_on,
                httpx.AsyncClient(transport=transport_off, base_url=ORIGIN) as c_off,
            ):
                es256 = _Es256()
                with_auth: list[float] = []
                without: list[float] = []
                for round_ in range(rounds + 1):
                    proofs = _proofs(key, ORIGIN + path, token, per_round)
                    signed = [{"Authorization": f"DPoP {token}", "DPoP": p} for p in proofs]
                    timed_on, timed_off = await _pairs(c_on, c_off, path, signed)
                    es256.measure(per_round)
                    if round_:  # the first round warms up (caches, connections, code paths)
                        with_auth += timed_on
                        without += timed_off
    verify_us = statistics.median(es256.batches[1:])
    median_on, median_off = statistics.median(with_auth), statistics.median(without)
    added = median_on - median_off
    return {
        "benchmark": "auth_overhead",
        "requests_per_variant": len(with_auth),
        "authenticated_median_us": round(median_on, 1),
        "unauthenticated_median_us": round(median_off, 1),
        "added_us": round(added, 1),
        "es256_verify_us": round(verify_us, 1),
        "ratio": round(added / verify_us, 2),
        "goal": "ratio <= 2",
        "goal_met": added / verify_us <= 2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (well under a minute)")
    args = parser.parse_args()
    rounds, per_round = (6, 200) if args.quick else (20, 500)
    result = asyncio.run(run(rounds, per_round))
    for name, value in result.items():
        print(f"{name:>28}  {value}", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
