"""Where asyncio tasks are waiting: for logs that must say what is stuck, not only that it is."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from types import FrameType
from typing import Any

from brokerlink.logs import get_logger

_log = get_logger("brokerlink.kit.tasks")


def await_chain(awaitable: object, keep: int = 12) -> list[str]:
    """Where a suspended coroutine waits: its innermost ``keep`` places, outermost first.

    ``Task.get_stack`` gives one frame for a suspended coroutine; this follows ``cr_await``. An
    ``async with`` of a ``contextlib.asynccontextmanager`` awaits its generator through an object with
    no frame; the chain goes on from the generator itself."""
    places: list[str] = []
    frame: FrameType | None = None
    for _ in range(256):
        if awaitable is None:
            break
        inner = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "ag_frame", None)
        if inner is None:
            generator = getattr(frame.f_locals.get("self"), "gen", None) if frame is not None else None
            if generator is None or generator is awaitable:
                break
            awaitable = generator
            continue
        frame = inner
        places.append(f"{frame.f_code.co_name} ({Path(frame.f_code.co_filename).name}:{frame.f_lineno})")
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "ag_await", None)
    return places[-keep:]


def where(task: asyncio.Task[Any]) -> str:
    """``await_chain`` of a task, as one line."""
    return " -> ".join(await_chain(task.get_coro())) or "?"


async def bounded(name: str, step: Awaitable[object], *, timeout_s: float) -> bool:
    """Run one shutdown step for at most ``timeout_s``: past that, log where it is stuck (and what
    every other task is waiting on), cancel it and go on, so one stuck step cannot hold the process
    up. Returns whether the step finished."""
    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if done:
        task.result()
        return True
    others = [
        f"{t.get_name()}: {where(t)}" for t in asyncio.all_tasks() if t is not task and t is not asyncio.current_task()
    ]
    _log.error("shutdown_step_stuck", step=name, timeout_s=timeout_s, at=where(task), other_tasks=others[:40])
    task.cancel()
    await asyncio.wait({task}, timeout=1.0)
    return False
