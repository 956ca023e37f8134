"""REST throughput: ``GET /v1/orders/{id}`` with a DPoP-bound token against a bare Starlette "hello", under granian.

Two granian servers on 127.0.0.1, one worker each, started the same way (``brokerlink serve`` for
brokerlink, ``python -m granian`` for the baseline): the real brokerlink app on a migrated SQLite
database in a temp dir holding one user, one account, one order and an access token bound to an
ES256 key (the rows an authorization-code grant leaves), and a Starlette app with one route that
returns ``{"hello": "world"}`` with no middleware at all.

The load generator (``_loadgen.py``: pre-built request bytes over keep-alive HTTP/1.1 connections,
closed loop) keeps ``--connections`` (64) requests in flight. Every brokerlink request carries the
token in ``Authorization: DPoP`` and a proof of its own (fresh ``jti``, ``htu`` the order's URL,
``ath``), signed before the round starts; so each request goes through the whole stack: headers,
token lookup (cached for two seconds), the proof's signature and claims, the ``jti`` replay
store, rate limits, the scope check, the order read with its ownership check, JSON.

Rounds alternate the two servers. Reported: median requests/s over rounds and p50/p99 latency
over all requests of each. ``ratio_to_bare`` = brokerlink's req/s over the bare app's.
**Goals: ratio_to_bare >= 0.2 and p99_ms < 20 at 64 connections.**

Run: ``.venv/bin/python bench/rest.py [--quick]``. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jwk

sys.path.insert(0, str(Path(__file__).parent))
from _loadgen import LoadResult, request_bytes, run_load
from _report import emit
from auth_overhead import _app, _running, _seed, _settings
from brokerlink.security.dpop import access_token_hash

BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
RATE = "1000000/second"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _wait_up(proc: subprocess.Popen[bytes], url: str) -> None:
    for _ in range(240):
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.25)
    proc.kill()
    raise SystemExit(f"{url} did not come up")


def _start_brokerlink(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKERLINK_")}
    env |= {
        "BROKERLINK_ENVIRONMENT": "production",
        "BROKERLINK_SECRET_KEY": "benchmark-secret-key-that-is-long-enough-0123",
        "BROKERLINK_LOG_LEVEL": "warning",
        "BROKERLINK_RESOURCE_ORIGIN": f"http://{HOST}:{port}",
        "BROKERLINK_RATE_LIMIT_USER": RATE,
        "BROKERLINK_RATE_LIMIT_CLIENT": RATE,
        "BROKERLINK_RATE_LIMIT_IP": RATE,
        "BROKERLINK_ALERTS_ENABLED": "false",
    }
    cmd = [str(BIN / "brokerlink"), "serve", "--host", HOST, "--port", str(port), "--data-dir", str(data_dir)]
    cmd += ["--server", "granian"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    _wait_up(proc, f"http://{HOST}:{port}/healthz")
    return proc


def _start_bare(port: int) -> subprocess.Popen[bytes]:
    cmd = [str(BIN / "python"), "-m", "granian", "--interface", "asgi", "--host", HOST, "--port", str(port)]
    cmd += ["--workers", "1", "--no-log", "_starlette_hello:app"]
    proc = subprocess.Popen(  # noqa: S603
        cmd, cwd=Path(__file__).parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _wait_up(proc, f"http://{HOST}:{port}/")
    return proc


class _Proofs:
    """DPoP proofs for one URL, signed with ``cryptography`` straight (a JOSE library costs more per proof)."""

    def __init__(self, key: jwk.ECKey, token: str, url: str) -> None:
        self.private = key.get_op_key("sign")
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
        self.header = _b64(json.dumps(header, separators=(",", ":")).encode())
        self.url = url
        self.ath = access_token_hash(token)

    def one(self) -> str:
        claims = {"jti": secrets.token_urlsafe(12), "htm": "GET", "htu": self.url, "iat": int(time.time())}
        claims["ath"] = self.ath
        signing_input = f"{self.header}.{_b64(json.dumps(claims, separators=(',', ':')).encode())}"
        r, s = decode_dss_signature(self.private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _requests(proofs: _Proofs, token: str, port: int, path: str, count: int) -> Iterator[bytes]:
    return iter([
        request_bytes(HOST, port, path, {"Authorization": f"DPoP {token}", "DPoP": proofs.one()})
        for _ in range(count)
    ])  # fmt: skip


async def _seed_database(data_dir: Path) -> tuple[str, str, jwk.ECKey]:
    """Migrate and seed the server's database in process (then the process server takes it over)."""
    app = _app(_settings(data_dir), auth=True)
    key = jwk.ECKey.generate_key("P-256")
    async with _running(app):
        _, order_id, token = await _seed(app, key)
    return order_id, token, key


def _summary(results: list[LoadResult]) -> dict[str, Any]:
    latencies = [lat for r in results for lat in r.latencies_us]
    combined = LoadResult(sum(r.requests for r in results), sum(r.errors for r in results), 1.0, latencies)
    return {
        "rps": round(statistics.median(r.rps for r in results), 1),
        "p50_ms": round(combined.p50_us / 1000, 2),
        "p99_ms": round(combined.p99_us / 1000, 2),
        "requests": combined.requests,
        "errors": combined.errors,
    }


async def run(rounds: int, seconds: float, connections: int, per_second: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        order_id, token, key = await _seed_database(data_dir)
        port_b, port_bare = _free_port(), _free_port()
        servers = [_start_brokerlink(data_dir, port_b), _start_bare(port_bare)]
        try:
            path = f"/v1/orders/{order_id}"
            proofs = _Proofs(key, token, f"http://{HOST}:{port_b}{path}")
            async with httpx.AsyncClient() as client:
                check = await client.get(
                    f"http://{HOST}:{port_b}{path}", headers={"Authorization": f"DPoP {token}", "DPoP": proofs.one()}
                )
            if check.status_code != 200:
                raise SystemExit(f"GET {path}: {check.status_code} {check.text}")
            ours: list[LoadResult] = []
            bare: list[LoadResult] = []
            exhausted = 0
            for round_ in range(rounds + 1):
                supply = _requests(proofs, token, port_b, path, int(per_second * seconds))
                mine = await run_load(HOST, port_b, path, seconds=seconds, connections=connections, requests=supply)
                theirs = await run_load(HOST, port_bare, "/", seconds=seconds, connections=connections)
                if mine.errors or theirs.errors:
                    raise SystemExit(f"errors: brokerlink {mine.errors}, bare {theirs.errors}")
                if mine.seconds < seconds * 0.95:
                    exhausted += 1
                if round_:  # the first round warms up both servers
                    ours.append(mine)
                    bare.append(theirs)
        finally:
            for proc in servers:
                proc.send_signal(signal.SIGINT)
            for proc in servers:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
    mine_s, bare_s = _summary(ours), _summary(bare)
    ratio = mine_s["rps"] / bare_s["rps"]
    return {
        "benchmark": "rest",
        "connections": connections,
        "rounds": rounds,
        "seconds_per_round": seconds,
        "orders_get_dpop": mine_s,
        "bare_starlette_hello": bare_s,
        "ratio_to_bare": round(ratio, 3),
        "p99_ms": mine_s["p99_ms"],
        "rounds_short_of_proofs": exhausted,
        "goal": "ratio_to_bare >= 0.2 and p99_ms < 20",
        "goal_met": ratio >= 0.2 and mine_s["p99_ms"] < 20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 3 s (under a minute)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--proofs-per-second", type=int, default=6000, help="proofs signed per second of a round")
    args = parser.parse_args()
    rounds, seconds = (3, 3.0) if args.quick else (6, 8.0)
    result = asyncio.run(run(rounds, seconds, args.connections, args.proofs_per_second))
    emit(result)


if __name__ == "__main__":
    main()
