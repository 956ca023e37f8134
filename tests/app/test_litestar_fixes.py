"""``litestar_fixes``: a handler's dependencies resolve in its own task, in order, and a refusal closes what opened."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from pathlib import Path

from litestar import Litestar, get
from litestar._kwargs.kwargs_model import KwargsModel
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotAuthorizedException
from litestar.testing import AsyncTestClient
from pydantic import SecretStr

from brokerlink.app import litestar_fixes
from brokerlink.app.factory import create_app
from brokerlink.config import Settings
from brokerlink.kit.clock import ManualClock


def _app(seen: list[tuple[str, object]]) -> Litestar:
    async def provide_a() -> AsyncIterator[str]:
        seen.append(("a", asyncio.current_task()))
        try:
            yield "a"
        except NotAuthorizedException:
            seen.append(("a closed with", "NotAuthorizedException"))
            raise
        finally:
            seen.append(("a cleaned up", None))

    async def provide_b() -> str:
        seen.append(("b", asyncio.current_task()))
        return "b"

    async def provide_refusal() -> str:
        raise NotAuthorizedException("no")

    async def provide_c(b: NamedDependency[str]) -> str:  # a second batch: needs ``b``
        seen.append(("c", asyncio.current_task()))
        return b + "c"

    @get("/three", dependencies={"a": Provide(provide_a), "b": Provide(provide_b), "c": Provide(provide_c)})
    async def three(a: NamedDependency[str], b: NamedDependency[str], c: NamedDependency[str]) -> str:
        seen.append(("handler", asyncio.current_task()))
        return a + b + c

    @get("/refused", dependencies={"a": Provide(provide_a), "z": Provide(provide_refusal)})
    async def refused(a: NamedDependency[str], z: NamedDependency[str]) -> str:
        return a + z

    return Litestar([three, refused])


async def test_a_batch_of_dependencies_resolves_in_the_handlers_task_in_name_order() -> None:
    litestar_fixes.install()
    seen: list[tuple[str, object]] = []
    async with AsyncTestClient(_app(seen)) as client:
        response = await client.get("/three")
    assert response.status_code == 200
    assert response.text == "abbc"
    names = [name for name, _ in seen]
    assert names == ["a", "b", "c", "handler", "a cleaned up"]
    # Litestar's own resolution gives each of a batch's dependencies a task of its own.
    tasks = {task for name, task in seen if name in {"a", "b", "c", "handler"}}
    assert len(tasks) == 1


async def test_a_dependency_that_refuses_is_raised_as_itself_and_closes_the_ones_opened_before() -> None:
    litestar_fixes.install()
    seen: list[tuple[str, object]] = []
    async with AsyncTestClient(_app(seen)) as client:
        response = await client.get("/refused")
    assert response.status_code == 401
    assert response.json()["detail"] == "no"
    # ``a`` (first by name) was open when ``z`` refused: it saw the refusal and cleaned up at once.
    assert [name for name, _ in seen] == ["a", "a closed with", "a cleaned up"]


def test_the_app_installs_it(tmp_path: Path) -> None:
    KwargsModel.resolve_dependencies = litestar_fixes._REPLACED  # type: ignore[method-assign]
    assert not litestar_fixes.installed()
    settings = Settings(
        data_dir=tmp_path,
        environment="test",
        secret_key=SecretStr("test-secret-key-that-is-long-enough-0123456789"),
        log_level="warning",
    )
    create_app(settings, clock=ManualClock(), configure_logs=False)
    assert litestar_fixes.installed()


def test_what_it_replaces_is_still_litestars_task_group_walk() -> None:
    """Fails when a Litestar upgrade changes the replaced method: re-read it, and drop the fix if upstream
    resolved litestar-org/litestar#4563."""
    replaced = litestar_fixes._REPLACED
    assert list(inspect.signature(replaced).parameters) == ["self", "connection", "kwargs"]
    source = inspect.getsource(replaced)
    assert "create_task_group" in source
    assert "self.dependency_batches" in source
    assert "resolve_dependency(" in source
