"""A lean HTTP/1.1 keep-alive load generator for loopback benchmarks.

Python HTTP clients spend more CPU per request than the servers we measure, which would make
every server look the same. This one writes pre-built request bytes and reads responses by
Content-Length over persistent connections: just enough HTTP for our own servers' replies.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadResult:
    """One measured run."""

    requests: int
    errors: int
    seconds: float
    latencies_us: list[int]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def p50_us(self) -> float:
        return statistics.median(self.latencies_us) if self.latencies_us else 0.0

    @property
    def p99_us(self) -> float:
        if len(self.latencies_us) < 2:
            return self.p50_us
        return statistics.quantiles(self.latencies_us, n=100)[98]


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def _worker(
    host: str, port: int, request: bytes | Iterator[bytes], *, deadline: float, out: list[int], errs: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter_ns()
            if isinstance(request, bytes):
                writer.write(request)
            else:
                try:
                    writer.write(next(request))
                except StopIteration:  # the caller's supply of requests ran out
                    break
            status = await _read_response(reader)
            out.append((time.perf_counter_ns() - started) // 1000)
            if status != 200:
                errs.append(status)
    finally:
        writer.close()
        await writer.wait_closed()


def request_bytes(host: str, port: int, path: str, headers: dict[str, str] | None = None) -> bytes:
    """One GET request as it goes on the wire."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Accept: application/json"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def run_load(
    host: str,
    port: int,
    path: str,
    *,
    seconds: float,
    connections: int,
    headers: dict[str, str] | None = None,
    requests: Iterator[bytes] | None = None,
) -> LoadResult:
    """Hammer ``path`` over ``connections`` keep-alive connections for ``seconds``.

    ``requests`` (built with :func:`request_bytes`) replaces the one repeated request, for requests
    that must differ (a DPoP proof is good for one request); the run ends early if it runs out."""
    request: bytes | Iterator[bytes] = requests if requests is not None else request_bytes(host, port, path, headers)
    latencies: list[int] = []
    errors: list[int] = []
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(
        *(_worker(host, port, request, deadline=deadline, out=latencies, errs=errors) for _ in range(connections))
    )
    return LoadResult(len(latencies), len(errors), time.perf_counter() - started, latencies)
