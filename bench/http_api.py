"""HTTP throughput: the authenticated JSON endpoint against the bare health probe, granian vs uvicorn.

For each server (uvicorn, the default since ADR 0037, and granian) a real ``brokerlink serve`` process runs on
127.0.0.1 with a SQLite database and a signed-in user. Rounds alternate between endpoints and
servers so drift on a noisy machine hits all of them alike. Reported per server and endpoint:
median requests/s over rounds, p50/p99 latency. Ratios, all measured in this run:

- ``auth_cost``: /v1/me (session lookup + user read + JSON) as a fraction of /healthz throughput;
- ``granian_vs_uvicorn``: /v1/me throughput under granian divided by uvicorn's.

uvicorn is the default for its WebSocket behaviour (granian delays a server-initiated close to a
silent client, ADR 0037); the goal bounds what REST gives up for it.
Goal: granian_vs_uvicorn <= 1.15. Run: ``.venv/bin/python bench/http_api.py [--quick]``.
The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _loadgen import LoadResult, run_load

BIN = Path(sys.executable).parent / "brokerlink"
PASSWORD = "benchmark passphrase 123"  # noqa: S105 - a throwaway user in a temp database


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(server: str, data_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKERLINK_")}
    env |= {"BROKERLINK_COOKIE_SECURE": "false", "BROKERLINK_LOG_LEVEL": "warning"}
    # The per-user and per-IP limits (issue 5) would answer most of the load with 429s: lift them.
    env |= {f"BROKERLINK_RATE_LIMIT_{scope}": "1000000/second" for scope in ("USER", "IP", "CLIENT")}
    cmd = [str(BIN), "serve", "--port", str(port), "--data-dir", str(data_dir), "--server", server]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    for _ in range(240):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc, port
        except httpx.TransportError:
            time.sleep(0.25)
    proc.kill()
    raise SystemExit(f"{server} did not start")


def _session_cookie(port: int) -> str:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
        token = c.get("/v1/auth/csrf").json()["csrf_token"]
        body = {"email": "bench@example.com", "password": PASSWORD, "display_name": "Bench"}
        r = c.post("/v1/auth/register", json=body, headers={"x-csrf-token": token})
        r.raise_for_status()
        return f"brokerlink_session={c.cookies['brokerlink_session']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short rounds (under a minute in all)")
    args = parser.parse_args()
    rounds, seconds, connections = (3, 1.5, 16) if args.quick else (5, 5.0, 32)

    results: dict[str, dict[str, list[LoadResult]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        servers = {}
        try:
            for name in ("granian", "uvicorn"):
                proc, port = _start(name, Path(tmp) / name)
                servers[name] = (proc, port, _session_cookie(port))
            for _ in range(rounds):
                for name, (_, port, cookie) in servers.items():
                    for path, headers in (("/healthz", {}), ("/v1/me", {"Cookie": cookie})):
                        r = asyncio.run(
                            run_load("127.0.0.1", port, path, seconds=seconds, connections=connections, headers=headers)
                        )
                        if r.errors:
                            raise SystemExit(f"{name} {path}: {r.errors} non-200 responses")
                        results.setdefault(name, {}).setdefault(path, []).append(r)
        finally:
            for proc, _, _ in servers.values():
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)

    figures: dict[str, dict[str, dict[str, float]]] = {}
    for name, by_path in results.items():
        for path, runs in by_path.items():
            figures.setdefault(name, {})[path] = {
                "rps_median": round(statistics.median(r.rps for r in runs), 1),
                "p50_us": round(statistics.median(r.p50_us for r in runs), 1),
                "p99_us": round(statistics.median(r.p99_us for r in runs), 1),
            }
    me = {n: figures[n]["/v1/me"]["rps_median"] for n in figures}
    ratio = round(me["granian"] / me["uvicorn"], 3)
    summary = {
        "bench": "http",
        "mode": "quick" if args.quick else "full",
        "rounds": rounds,
        "seconds_per_run": seconds,
        "connections": connections,
        "figures": figures,
        "auth_cost": {
            n: round(figures[n]["/v1/me"]["rps_median"] / figures[n]["/healthz"]["rps_median"], 3) for n in figures
        },
        "goal": "granian_vs_uvicorn <= 1.15 on the authenticated endpoint (uvicorn, the default, gives up at most 13%)",
        "ratio": ratio,
        "granian_vs_uvicorn": ratio,
        "met": ratio <= 1.15,
    }
    for name, by_path in figures.items():
        for path, f in by_path.items():
            latency = f"p50 {f['p50_us']:>8.1f} us  p99 {f['p99_us']:>8.1f} us"
            print(f"{name:8} {path:9} {f['rps_median']:>9.1f} req/s  {latency}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
