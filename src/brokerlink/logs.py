"""Structured logs: one JSON object per line, with the request id bound for everything a request logs.

This module imports nothing else from brokerlink, so every layer may use it.

Standard-library loggers (granian, uvicorn, SQLAlchemy, Alembic) are routed through the same
processors, so an operator greps one format. Nothing here logs bodies, cookies or headers that
carry credentials; the access log has method, path, status, duration and ids only.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_SECRET_KEYS = frozenset({"password", "token", "secret", "authorization", "cookie", "set-cookie", "credentials"})


def _redact(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Last line of defence: blank out any field whose name says it holds a secret."""
    for key in list(event_dict):
        if any(word in key.lower() for word in _SECRET_KEYS):
            event_dict[key] = "[redacted]"
    return event_dict


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """Configure structlog and the standard library once, for the whole process."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        # Level first: an event below the logger's level costs one check, not the whole chain
        # (timestamps, redaction) before the standard library throws it away.
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,  # loggers are module globals; caching would pin them to the first config
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Uvicorn and granian install their own handlers; send their records through ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "granian", "granian.access", "_granian"):
        lib_logger = logging.getLogger(name)
        lib_logger.handlers[:] = []
        lib_logger.propagate = True
    # The access line is ours (with request id and principal); the servers' own would duplicate it.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Wire-level loggers print frames and headers at DEBUG (uvicorn's WebSocket implementations log
    # every frame as "uvicorn.error"): broker API keys and signatures included. Nothing brokerlink
    # logs at DEBUG needs them, and a debug log must never hold a credential.
    for name in ("websockets", "httpcore", "hpack", "uvicorn.error"):
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLogger(name).level))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger for ``name``."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
