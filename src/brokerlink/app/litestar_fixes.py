"""Dependencies resolved one after another: Litestar resolves a batch of two or more in an anyio task group.

A handler that takes ``principal`` and ``db`` (most of ours) has one batch of two independent
dependencies, and Litestar 2 resolves such a batch concurrently: a task group and one task per
dependency, on every request. Ours are cheap (a dict lookup, opening a session object), so the
tasks cost more than they could save: ~280 µs of CPU per order read here (ADR 0041), and two more
tasks for the event loop to schedule under load (upstream: litestar-org/litestar#4563, open). ``install()``
replaces ``KwargsModel.resolve_dependencies`` with the same walk over the same batches, in order:

- a batch still only starts once the one before it is resolved (the batches are Litestar's);
- within a batch, dependencies run one at a time, sorted by name (they are independent by
  construction, so any order gives the same values; a fixed one makes runs repeatable);
- a dependency that raises is raised as itself, as Litestar does (it unwraps the task group's
  exception group), and unlike Litestar the generator dependencies already started are closed
  first with that exception (a ``db`` session opened before ``principal`` refused the request is
  rolled back and closed at once, not left to the garbage collector).

ADR 0041 records why; ``tests/app/test_litestar_fixes.py`` fails if a Litestar upgrade moves what
this replaces.
"""

from __future__ import annotations

from typing import Any

from litestar._kwargs.cleanup import DependencyCleanupGroup
from litestar._kwargs.dependencies import DependencyContainer, resolve_dependency
from litestar._kwargs.kwargs_model import KwargsModel
from litestar.connection import ASGIConnection

_REPLACED = KwargsModel.resolve_dependencies


def _key(dependency: DependencyContainer) -> str:
    return dependency.key


async def resolve_dependencies_in_order(
    self: KwargsModel, connection: ASGIConnection[Any, Any, Any, Any], kwargs: dict[str, Any]
) -> DependencyCleanupGroup:
    """``KwargsModel.resolve_dependencies`` without the task group (module docstring)."""
    cleanup_group = DependencyCleanupGroup()
    try:
        for batch in self.dependency_batches:
            for dependency in sorted(batch, key=_key) if len(batch) > 1 else batch:
                await resolve_dependency(dependency, connection, kwargs, cleanup_group)
    except BaseException as exc:
        await cleanup_group.close(exc)
        raise
    return cleanup_group


def install() -> None:
    """Put :func:`resolve_dependencies_in_order` in place (idempotent)."""
    KwargsModel.resolve_dependencies = resolve_dependencies_in_order  # type: ignore[method-assign]


def installed() -> bool:
    """Whether Litestar resolves dependencies with :func:`resolve_dependencies_in_order`."""
    return KwargsModel.resolve_dependencies is resolve_dependencies_in_order
