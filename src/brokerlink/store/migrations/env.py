"""Alembic environment for brokerlink, for SQLite and PostgreSQL alike.

Two ways in:

* From :mod:`brokerlink.store.migrate` (the application, tests): a live connection arrives in
  ``config.attributes["connection"]`` and the migrations run on it, inside the caller's transaction.
* From the ``alembic`` command line (developers, e.g. ``alembic revision --autogenerate``): the URL
  is ``sqlalchemy.url`` from the config, or else the one brokerlink's settings name.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection

from brokerlink.config import get_settings
from brokerlink.store.db import create_engine, is_sqlite
from brokerlink.store.models import Base
from brokerlink.store.types import DecimalType, UTCDateTime

config = context.config
target_metadata = Base.metadata


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:  # noqa: ARG001 (Alembic's hook signature)
    """Write the project's column types as plain SQLAlchemy types in generated migrations.

    A migration is history: it must create the same columns years later, whatever the application's
    types have become, so it does not import them.
    """
    if type_ == "type" and isinstance(obj, DecimalType):
        return 'sa.Numeric().with_variant(sa.Text(), "sqlite")'
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(**kwargs: Any) -> None:
    context.configure(target_metadata=target_metadata, render_item=render_item, compare_type=True, **kwargs)


def run_migrations(connection: Connection) -> None:
    """Run the migrations on a synchronous connection (called inside ``run_sync``)."""
    # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_url(url: str) -> None:
    # Foreign keys off on SQLite: a batch rebuild drops the old table, which must not cascade.
    engine = create_engine(url, sqlite_foreign_keys=False)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    # Command-line use only; Settings is the one place that reads the environment.
    return get_settings().effective_database_url


if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    offline_url = _url()
    _configure(
        url=offline_url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=is_sqlite(offline_url),
    )
    with context.begin_transaction():
        context.run_migrations()
elif (shared := config.attributes.get("connection")) is not None:
    run_migrations(shared)
else:
    asyncio.run(_run_with_url(_url()))
