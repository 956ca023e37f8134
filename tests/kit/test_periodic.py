"""The shared schedule: runs on its period, survives a failed run, stops, and 0 disables it."""

from __future__ import annotations

import asyncio

from brokerlink.kit.periodic import Periodic


async def _until(condition: object, attempts: int = 200) -> None:
    for _ in range(attempts):  # bounded polling
        if callable(condition) and condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the schedule did not get there")


async def test_a_failed_run_is_logged_and_the_schedule_goes_on() -> None:
    calls: list[int] = []

    async def job() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("the first run fails")

    schedule = Periodic("test_job", 0.01, job, first_at_once=True)
    schedule.start()
    await _until(lambda: len(calls) >= 3)
    assert schedule.running
    await schedule.stop()
    assert not schedule.running
    stopped_at = len(calls)
    await asyncio.sleep(0.05)
    assert len(calls) == stopped_at, "a stopped schedule runs nothing more"


async def test_the_first_run_waits_one_period_unless_asked_and_zero_disables() -> None:
    calls: list[str] = []

    async def job() -> None:
        calls.append("run")

    waiting = Periodic("test_wait", 3600, job)
    waiting.start()
    await asyncio.sleep(0.02)
    assert calls == []  # an hour to go
    await waiting.stop()

    disabled = Periodic("test_off", 0, job, first_at_once=True)
    disabled.start()
    assert not disabled.running
    await asyncio.sleep(0.02)
    assert calls == []
