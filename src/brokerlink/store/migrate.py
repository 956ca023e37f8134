"""Run the schema migrations from code: no ``alembic.ini`` is needed at run time.

The Alembic configuration is built here, pointing at the migrations shipped inside the package,
and the database URL is handed over explicitly (this module never reads the environment). Each
upgrade or downgrade runs in one transaction on both databases, so a failed migration leaves the
schema as it was.
"""

from __future__ import annotations

import asyncio
from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from brokerlink.store.db import create_engine


class MigrationError(RuntimeError):
    """A migration left the database inconsistent (and was rolled back)."""


def migrations_path() -> str:
    """Filesystem path of the migration scripts shipped in the package."""
    return str(files("brokerlink.store").joinpath("migrations"))


def alembic_config(url: str) -> Config:
    """An Alembic :class:`Config` for ``url`` and the packaged migrations, built without a file."""
    config = Config()
    config.set_main_option("script_location", migrations_path())
    config.set_main_option("path_separator", "os")
    # Config values are ConfigParser-interpolated: a "%" in a password must be doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    """The newest revision in the packaged migrations."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def _run(connection: Connection, config: Config, action: str, revision: str) -> None:
    # env.py sees the connection and runs on it inside our transaction instead of opening its own.
    config.attributes["connection"] = connection
    if action == "upgrade":
        command.upgrade(config, revision)
    else:
        command.downgrade(config, revision)
    if connection.dialect.name == "sqlite":
        # Migrations run with foreign keys off (see create_engine); prove they left none dangling.
        problems = connection.execute(text("PRAGMA foreign_key_check")).fetchall()
        if problems:
            raise MigrationError(f"foreign key violations after migration: {problems[:5]!r}")


async def _migrate(url: str, action: str, revision: str) -> None:
    engine = create_engine(url, sqlite_foreign_keys=False)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run, alembic_config(url), action, revision)
    finally:
        await engine.dispose()


async def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` (default: the newest)."""
    await _migrate(url, "upgrade", revision)


async def downgrade(url: str, revision: str) -> None:
    """Downgrade the database at ``url`` to ``revision`` (``"base"`` removes every table)."""
    await _migrate(url, "downgrade", revision)


def upgrade_sync(url: str, revision: str = "head") -> None:
    """:func:`upgrade` for callers without an event loop (CLI commands). Not from inside a loop."""
    asyncio.run(upgrade(url, revision))


async def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at, or None when it was never migrated."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision())
    finally:
        await engine.dispose()
