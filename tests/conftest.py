"""Shared fixtures: real PostgreSQL and Redis when their URLs are set, and a report of which backends ran.

Locally a test that needs a server it cannot find is skipped with a message saying how to start one.
CI sets ``BROKERLINK_REQUIRE_SERVICES=1``, which turns those skips into failures, so a missing
server can never hide behind a green run.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter

import pytest
from hypothesis import HealthCheck, settings

from tests.backends import mark_backend

pytest_plugins = ["tests.links_fixtures"]

# Property tests are bounded by example count, never by wall-clock deadlines (noisy 2-core machines).
settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("default")

_HOW = 'start one with: eval "$(scripts/test-services.sh start)"'
_backend_runs: Counter[str] = Counter()


def _service_url(var: str, what: str) -> str:
    url = os.environ.get(var)
    if url:
        return url
    message = f"{what} not configured ({var} unset); {_HOW}"
    if os.environ.get("BROKERLINK_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " - BROKERLINK_REQUIRE_SERVICES=1 forbids skipping")
    pytest.skip(message)


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> str:
    """URL of a real PostgreSQL server (``postgresql+asyncpg://...``); the test counts as a PostgreSQL run."""
    url = _service_url("BROKERLINK_TEST_POSTGRES_URL", "PostgreSQL")
    mark_backend(request, "postgresql")
    return url


@pytest.fixture
def redis_url(request: pytest.FixtureRequest) -> str:
    """URL of a real Redis server (``redis://...``); the test counts as a Redis run."""
    url = _service_url("BROKERLINK_TEST_REDIS_URL", "Redis")
    mark_backend(request, "redis")
    return url


@pytest.fixture
def chromium_path(request: pytest.FixtureRequest) -> str:
    """Path of Debian's Chromium, for browser tests (Playwright drives it; it downloads no browser)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        message = "Chromium not installed; apt-get install chromium"
        if os.environ.get("BROKERLINK_REQUIRE_SERVICES") == "1":
            pytest.fail(message + " - BROKERLINK_REQUIRE_SERVICES=1 forbids skipping")
        pytest.skip(message)
    mark_backend(request, "chromium")
    return path


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Called in the process that reports: the only one under plain pytest, the controller under
    # pytest-xdist (workers send their reports, user properties included, to it).
    if report.when == "call" and report.passed:
        for key, value in report.user_properties:
            if key == "backend":
                _backend_runs[str(value)] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _backend_runs:
        terminalreporter.write_line("backends exercised: none")
        return
    terminalreporter.section("backends exercised")
    for name, count in sorted(_backend_runs.items()):
        terminalreporter.write_line(f"{name}: {count} test(s) passed")
