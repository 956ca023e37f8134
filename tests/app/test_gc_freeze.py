"""``gc_freeze``: what start-up built is frozen out of the collector's reach (ADR 0038); ``serve`` turns it on."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from brokerlink.app.factory import create_app
from brokerlink.cli import server
from brokerlink.config import Settings
from brokerlink.kit.clock import ManualClock
from tests.api.support import running


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Leave the collector as found: objects frozen by a test go back to it (or they would stay for the run)."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def _settings(tmp_path: Path, *, gc_freeze: bool) -> Settings:
    return Settings(
        data_dir=tmp_path,
        environment="test",
        secret_key=SecretStr("test-secret-key-that-is-long-enough-0123456789"),
        log_level="warning",
        gc_freeze=gc_freeze,
    )


@pytest.mark.usefixtures("unfrozen")
async def test_start_up_freezes_what_it_built_when_asked(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path, gc_freeze=True), clock=ManualClock(), configure_logs=False)
    assert gc.get_freeze_count() == 0
    async with running(app):
        frozen = gc.get_freeze_count()
        # The app's own objects are among the frozen ones (the freeze came after start-up built them).
        assert frozen > 10_000
        database = app.state.db
        assert all(o is not database for o in gc.get_objects())  # frozen objects are nobody's generation


@pytest.mark.usefixtures("unfrozen")
async def test_nothing_is_frozen_by_default(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path, gc_freeze=False), clock=ManualClock(), configure_logs=False)
    async with running(app):
        assert gc.get_freeze_count() == 0


def test_serve_turns_it_on_for_its_workers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("BROKERLINK_GC_FREEZE", "BROKERLINK_AUTO_MIGRATE"):  # restored after the test: run() sets both
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    started: list[str] = []

    class NoServer:
        def __init__(self, *args: object, **kwargs: object) -> None:
            started.append(os.environ.get("BROKERLINK_GC_FREEZE", ""))

        def serve(self) -> None:
            return None

    monkeypatch.setattr("granian.Granian", NoServer)
    server.run(_settings(tmp_path, gc_freeze=False).model_copy(update={"server": "granian"}))
    assert started == ["true"]
    assert Settings().gc_freeze is True  # what a worker reads from the environment
