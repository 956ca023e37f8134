"""Enum CHECK constraints as ``OR`` chains instead of ``IN`` lists, on SQLite (ADR 0039).

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-22

SQLite compiles ``CHECK (status IN ('a', 'b', 'c'))`` into an ephemeral index that it fills again
every time an INSERT runs (``EXPLAIN`` shows ``OpenEphemeral`` and an ``IdxInsert`` per value), so
each such CHECK cost ~4 µs per row written: about 20 µs per copy intent, 15 per order, in every
fan-out to every follower. ``CHECK (status = 'a' OR status = 'b' OR status = 'c')`` admits exactly
the same values (NULL included) and is compared in place.

Only the text of the constraints changes; the rows already satisfy them, and the file format is the
same. So on SQLite the table definitions are rewritten in ``sqlite_master`` within the migration's
transaction, the procedure SQLite documents for changing CHECK constraints without rebuilding a
table ("ALTER TABLE", section "Making Other Kinds Of Table Schema Changes": ``writable_schema``,
the new text, ``schema_version`` plus one), and ``PRAGMA integrity_check`` must pass afterwards.
No table is copied, and indexes, triggers (``event_log``'s) and foreign keys are untouched.

PostgreSQL checks an ``IN`` list in place already (``= ANY (ARRAY[...])``): nothing changes there.
Neither does an offline script (``alembic upgrade --sql``), which cannot read the schema it would
rewrite: its tables keep the ``IN`` lists, which admit the same values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_VALUE = r"'[^']*'"
_IN_LIST = re.compile(rf"CHECK \((\w+) IN \(((?:{_VALUE}, )+{_VALUE})\)\)")
_OR_CHAIN = re.compile(rf"CHECK \((\w+) = ({_VALUE}(?: OR \w+ = {_VALUE})+)\)")


def _to_or_chain(match: re.Match[str]) -> str:
    column, values = match.group(1), match.group(2).split(", ")
    return "CHECK (" + " OR ".join(f"{column} = {value}" for value in values) + ")"


def _to_in_list(match: re.Match[str]) -> str:
    column = match.group(1)
    values = re.findall(_VALUE, match.group(2))
    if match.group(2) != f" OR {column} = ".join(values):  # an OR over other columns: not ours
        return match.group(0)
    return f"CHECK ({column} IN ({', '.join(values)}))"


def _rewrite_tables(rewrite: Callable[[str], str]) -> None:
    context = op.get_context()
    if context.dialect.name != "sqlite":
        return
    if context.as_sql:  # ``alembic upgrade --sql``: there is no schema to read; the IN lists stay (same meaning)
        op.execute("-- 0019: CHECK constraints rewritten only when migrating a live SQLite database")
        return
    bind = op.get_bind()
    tables = bind.execute(
        sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND sql LIKE '%CHECK (%'")
    ).fetchall()
    changed = [(name, rewrite(sql)) for name, sql in tables if rewrite(sql) != sql]
    if not changed:
        return
    version = bind.execute(sa.text("PRAGMA schema_version")).scalar_one()
    bind.execute(sa.text("PRAGMA writable_schema = ON"))
    try:
        for name, sql in changed:
            bind.execute(
                sa.text("UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = :name"),
                {"sql": sql, "name": name},
            )
        bind.execute(sa.text(f"PRAGMA schema_version = {int(version) + 1}"))
    finally:
        bind.execute(sa.text("PRAGMA writable_schema = OFF"))
    problems = bind.execute(sa.text("PRAGMA integrity_check")).scalars().all()
    if problems != ["ok"]:
        raise RuntimeError(f"integrity check failed after rewriting CHECK constraints: {problems[:5]!r}")


def upgrade() -> None:
    """Rewrite every ``CHECK (column IN ('a', 'b', ...))`` as ``CHECK (column = 'a' OR column = 'b' ...)``."""
    _rewrite_tables(lambda sql: _IN_LIST.sub(_to_or_chain, sql))


def downgrade() -> None:
    """Back to the ``IN`` lists."""
    _rewrite_tables(lambda sql: _OR_CHAIN.sub(_to_in_list, sql))
