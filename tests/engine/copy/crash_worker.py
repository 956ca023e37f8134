"""The copy engine alone in a process, for the crash test: ``python -m tests.engine.copy.crash_worker --data-dir D``.

Wires the store, an in-memory bus, the links and the copy engine exactly as the app's lifespan
does (src/brokerlink/app/factory.py) from ``Settings(data_dir=D)``: the SQLite file and the vault
key file under ``D``, migrations applied at start. It runs until it is killed; the crash test
kills it with SIGKILL, so nothing here may depend on a clean stop (SIGTERM stops it in order, as
the lifespan does). Logs go to stderr.

When every stored link is live (connected and recovered), it writes one line, ``ready``, to
stdout: that is all the test learns from it. It writes nothing to the database beyond what the
links and the engine write themselves.

``--hold``: import everything, then wait for a line on stdin before starting (EOF: exit without
starting). The test spawns the next worker while the current one runs, so a restart does not
wait for Python's imports; nothing is read or written before the line arrives.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from brokerlink.bus.memory import MemoryEventBus
from brokerlink.config import Settings
from brokerlink.domain.enums import ConnectionState
from brokerlink.engine.copy.service import CopyEngine
from brokerlink.engine.links.service import BrokerLinks
from brokerlink.kit.clock import SystemClock
from brokerlink.logs import configure_logging, get_logger
from brokerlink.security.vault import Vault
from brokerlink.store.db import Database
from brokerlink.store.migrate import upgrade
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.connections import ConnectionRepository

READY = "ready"
_READY_WAIT_S = 30.0
_log = get_logger("tests.crash_worker")


async def _linked_accounts(database: Database) -> list[str]:
    async with database.session() as session:
        # The states BrokerLinks.start() reconnects.
        connections = await ConnectionRepository(session).list_by_status(
            ConnectionState.CONNECTED,
            ConnectionState.CONNECTING,
            ConnectionState.DEGRADED,
            ConnectionState.DISCONNECTED,
        )
        accounts = AccountRepository(session)
        return [a.id for c in connections if c.credentials_ref for a in await accounts.list_for_connection(c.id)]


async def _announce_ready(database: Database, links: BrokerLinks) -> None:
    accounts = await _linked_accounts(database)
    async with asyncio.timeout(_READY_WAIT_S):
        while not all(links.is_live(a) for a in accounts):  # noqa: ASYNC110 - the links signal no such event
            await asyncio.sleep(0.01)
    _log.info("crash_worker_ready", accounts=len(accounts))
    sys.stdout.write(READY + "\n")
    sys.stdout.flush()


async def run(data_dir: Path) -> None:
    """The app's lifespan without the HTTP server: links, then the engine; stopped in reverse on SIGTERM."""
    settings = Settings(data_dir=data_dir)
    configure_logging(settings.log_level, settings.log_format)
    clock = SystemClock()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.auto_migrate:
        await upgrade(settings.effective_database_url)
    database = Database.from_settings(settings)
    bus = MemoryEventBus()
    links = BrokerLinks(database, bus, Vault.from_settings(settings), clock)
    await links.start()
    engine = CopyEngine(database, bus, links, clock)
    await engine.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await _announce_ready(database, links)
        await stop.wait()
    finally:
        await engine.stop()
        await links.stop()
        await bus.close()
        await database.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--hold", action="store_true", help="wait for a line on stdin before starting")
    args = parser.parse_args(argv)
    if args.hold and not sys.stdin.readline():
        return
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args.data_dir))


if __name__ == "__main__":
    main()
