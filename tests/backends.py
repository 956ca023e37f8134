"""Which backends a test exercised, for the summary at the end of a run (see tests/conftest.py)."""

from __future__ import annotations

import pytest


def mark_backend(request: pytest.FixtureRequest, name: str) -> None:
    """Note that the running test exercises a backend ("sqlite", "postgresql", "memory", "redis", ...)."""
    request.node.user_properties.append(("backend", name))
