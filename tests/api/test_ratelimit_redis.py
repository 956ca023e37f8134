"""Rate limits on Redis (SECURITY 26): one limit shared by two server processes, and the storage contract.

The two-process test starts two real uvicorn servers on loopback, each with its own data directory
but the same Redis, and spreads anonymous requests (counted per IP) across both: together they get
exactly the limit, then 429. Bounded: each wait polls a fixed number of times, and the processes
are killed if they overstay.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from brokerlink.api.ratelimit import Check, RateLimiter
from brokerlink.config import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[str], log: Path, attempts: int = 240) -> None:
    """Poll /healthz every 0.25 s, at most ``attempts`` times (60 s)."""
    for _ in range(attempts):
        if proc.poll() is not None:
            raise AssertionError(f"server exited early with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise AssertionError("server did not become healthy within 60 s")


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    name = "brokerlink-rl-test-" + secrets.token_hex(6)
    yield name
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=name + "*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def two_servers(tmp_path: Path, redis_url: str, prefix: str) -> Iterator[list[str]]:
    """Two brokerlink servers (uvicorn) sharing Redis for their rate limits: their base URLs."""
    procs: list[tuple[subprocess.Popen[str], Path]] = []
    urls: list[str] = []
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("BROKERLINK_")}
    try:
        for name in ("a", "b"):
            port = free_port()
            env = base_env | {
                "BROKERLINK_DATA_DIR": str(tmp_path / name),
                "BROKERLINK_ENVIRONMENT": "test",
                "BROKERLINK_SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
                "BROKERLINK_LOG_LEVEL": "warning",
                "BROKERLINK_COOKIE_SECURE": "false",
                "BROKERLINK_REDIS_URL": redis_url,
                "BROKERLINK_RATE_LIMIT_BACKEND": "redis",
                "BROKERLINK_RATE_LIMIT_KEY_PREFIX": prefix,
                "BROKERLINK_RATE_LIMIT_IP": "6/hour",
            }
            log = tmp_path / f"{name}.log"
            with log.open("w") as out:
                proc = subprocess.Popen(  # noqa: S603
                    [
                        sys.executable,
                        "-m",
                        "uvicorn",
                        "--factory",
                        "brokerlink.app.factory:create_app",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--no-access-log",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    text=True,
                )
            procs.append((proc, log))
            urls.append(f"http://127.0.0.1:{port}")
        for (proc, log), url in zip(procs, urls, strict=True):
            wait_healthy(url, proc, log)
        yield urls
        for proc, _ in procs:
            proc.send_signal(signal.SIGTERM)
        for proc, log in procs:
            # uvicorn shuts the app down, then re-raises the signal: -SIGTERM is a clean stop.
            assert proc.wait(timeout=30) in {0, -signal.SIGTERM}, log.read_text()[-2000:]
            assert "Application shutdown complete" in log.read_text()
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


@pytest.mark.redis
@pytest.mark.e2e
def test_ratelimit_redis_one_limit_across_two_server_processes(two_servers: list[str]) -> None:
    a, b = two_servers
    with httpx.Client(timeout=5) as client:
        seen: list[tuple[int, str]] = []
        for n in range(6):  # a, b, a, b, ...: each process sees only half of the requests
            r = client.get((a, b)[n % 2] + "/v1/auth/csrf")
            seen.append((r.status_code, r.headers.get("ratelimit-remaining", "")))
        # One count between them: remaining goes down by one per request whichever process served it.
        assert seen == [(200, str(left)) for left in (5, 4, 3, 2, 1, 0)]
        for url in (a, b):
            refused = client.get(url + "/v1/auth/csrf")
            assert refused.status_code == 429, refused.text
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert refused.json()["code"] == "rate_limited"
            assert 1 <= int(refused.headers["retry-after"]) <= 3600
            assert refused.headers["ratelimit-remaining"] == "0"
            assert client.get(url + "/healthz").status_code == 200  # probes stay exempt


# The storage contract: the limiter behaves the same on memory and on Redis.


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def limiter(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[RateLimiter]:
    change: dict[str, object] = {
        "rate_limit_user": "3/hour",
        "rate_limit_orders": "1/hour",
        "rate_limit_ws_connections": 2,
    }
    if request.param == "redis":
        change |= {
            "rate_limit_backend": "redis",
            "redis_url": request.getfixturevalue("redis_url"),
            "rate_limit_key_prefix": request.getfixturevalue("prefix"),
        }
    limiter = RateLimiter.from_settings(settings.model_copy(update=change))
    try:
        yield limiter
    finally:
        await limiter.close()


async def test_ratelimit_storage_contract_counts_weights_and_refuses(limiter: RateLimiter) -> None:
    user = Check(limiter.user, "user:usr_1", cost=2)
    first = await limiter.hit([user])
    assert (first.allowed, first.limit, first.remaining) == (True, 3, 1)
    assert 0 < first.reset_s <= 3600
    refused = await limiter.hit([user])  # 2 more do not fit in the 1 left
    assert (refused.allowed, refused.remaining) == (False, 0)
    assert 1 <= refused.reset_s <= 3600
    assert (await limiter.hit([Check(limiter.user, "user:usr_1")])).allowed  # a refused hit spent nothing
    assert (await limiter.hit([Check(limiter.user, "user:usr_2", cost=3)])).remaining == 0  # keys apart


async def test_ratelimit_storage_contract_stops_at_the_first_refusal(limiter: RateLimiter) -> None:
    orders = Check(limiter.orders, "orders:usr_1:acc_1")
    user = Check(limiter.user, "user:usr_1")
    assert (await limiter.hit([orders, user])).remaining == 0  # the tightest limit is reported
    assert not (await limiter.hit([orders, user])).allowed
    # The refused order did not spend the user's budget: 2 of 3 are left.
    assert (await limiter.hit([user])).remaining == 1


async def test_ratelimit_storage_contract_websocket_slots(limiter: RateLimiter) -> None:
    assert await limiter.acquire_connection("user:usr_1")
    assert await limiter.acquire_connection("user:usr_1")
    assert not await limiter.acquire_connection("user:usr_1")
    assert await limiter.acquire_connection("user:usr_2")
    await limiter.release_connection("user:usr_1")
    assert await limiter.acquire_connection("user:usr_1")
    assert not await limiter.acquire_connection("user:usr_1")
