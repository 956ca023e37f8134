"""``kit.tasks``: saying where a task waits, and shutdown steps that cannot hang the process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import structlog

from brokerlink.kit.tasks import await_chain, bounded, where


async def test_where_follows_the_awaits_into_an_async_context_manager() -> None:
    release = asyncio.Event()

    async def innermost() -> None:
        await release.wait()

    @contextlib.asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        await innermost()
        yield

    async def outer() -> None:
        async with lifespan():
            pass

    task = asyncio.create_task(outer())
    await asyncio.sleep(0)
    chain = await_chain(task.get_coro())
    assert [place.split(" ")[0] for place in chain] == ["outer", "__aenter__", "lifespan", "innermost", "wait"]
    assert where(task).startswith("outer (test_tasks.py:")
    release.set()
    await task


async def test_a_step_that_finishes_in_time_is_awaited() -> None:
    ran = []

    async def stop() -> None:
        await asyncio.sleep(0)
        ran.append(True)

    assert await bounded("quick", stop(), timeout_s=5)
    assert ran == [True]


async def test_a_stuck_step_is_logged_with_where_it_waits_and_cancelled() -> None:
    never = asyncio.Event()
    cancelled = []

    async def wait_for_a_peer_that_is_gone() -> None:
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    with structlog.testing.capture_logs() as logs:
        assert not await bounded("links", wait_for_a_peer_that_is_gone(), timeout_s=0.05)
    (entry,) = [e for e in logs if e["event"] == "shutdown_step_stuck"]
    assert entry["step"] == "links"
    assert "wait_for_a_peer_that_is_gone (test_tasks.py:" in entry["at"]
    assert cancelled == [True]


async def test_a_step_that_fails_still_fails() -> None:
    async def broken() -> None:
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        await bounded("database", broken(), timeout_s=5)
