"""Run the ASGI app under uvicorn (default, ADR 0037) or granian.

Workers are separate processes that build the app themselves from ``create_app`` and read their
settings from the environment, so the CLI hands its overrides down as ``BROKERLINK_*`` variables.
Both servers handle SIGINT and SIGTERM by draining connections and running the app's shutdown.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

from brokerlink.config import Settings

APP_FACTORY = "brokerlink.app.factory:create_app"


def export_overrides(**overrides: object) -> None:
    """Put CLI overrides where worker processes will read them (``BROKERLINK_<NAME>``)."""
    for name, value in overrides.items():
        if value is not None:
            os.environ[f"BROKERLINK_{name.upper()}"] = str(value)


def _exit_after_graceful_shutdown(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def run(settings: Settings) -> None:
    """Serve until a signal stops the server. Migrations must already have run."""
    # Workers must not migrate concurrently; the CLI has done it once before starting them.
    export_overrides(auto_migrate="false", gc_freeze="true")
    if settings.server == "uvicorn":
        import uvicorn

        # Uvicorn drains and shuts down on SIGINT/SIGTERM, then re-raises the signal to whatever
        # handler was installed before it. Make that handler a clean exit: the shutdown already happened.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _exit_after_graceful_shutdown)

        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_config=None,
            access_log=False,
            proxy_headers=False,
            server_header=False,
        )
        return
    from granian import Granian
    from granian.constants import Interfaces

    Granian(
        APP_FACTORY,
        factory=True,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        workers=settings.workers,
        log_access=False,
    ).serve()
