"""The copy fan-out's transaction: what one provider fill reads and writes, a statement per kind of row.

One fill fans out to every follower of a strategy: a row per follower in ``copy_intents``, ``orders``
and ``copy_links``. Through the ORM or SQLAlchemy's aiosqlite adapter every statement costs several
round trips to the driver's thread (a cursor made, executed, fetched, closed) and per-row Python work
on both sides, which was most of the engine's time (ADR 0029). Here each statement is plain SQL, the
same text on both databases:

- on SQLite it runs on the aiosqlite connection under the session (one thread hop per statement,
  rows as the driver gives them), inside the transaction the session began: the first write,
  :meth:`FanoutStore.claim`, goes through SQLAlchemy, so ``store/db.py`` takes the process's write
  lock and issues ``BEGIN IMMEDIATE`` as for any other writer, and the session's commit or rollback
  ends it;
- on PostgreSQL it runs through the session (asyncpg already sends one statement per call).

Values are converted here to what the column types of :mod:`brokerlink.store.types` store (fixed-point
text for decimals and UTC text for times on SQLite; native values on PostgreSQL), and back. Every
row written is read back equal by the usual repositories (``tests/engine/copy/test_fanout_store.py``).
"""

from __future__ import annotations

import contextlib
import sqlite3
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, cast

import msgspec
from sqlalchemy import Table, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.domain.copy import (
    CopyEvent,
    CopyIntent,
    CopyLink,
    CopySignal,
    LinkStatus,
    Subscription,
    SubscriptionStatus,
)
from brokerlink.domain.enums import Side
from brokerlink.domain.models import Order
from brokerlink.store.models import CopyEventRow, CopyIntentRow, CopyLinkRow, CopySignalRow, OrderRow
from brokerlink.store.repositories._common import dialect_name
from brokerlink.store.types import DecimalType, UTCDateTime, canonical_decimal

# The statements spell the statuses they need: 'open' and 'closed' links, 'stopped' subscriptions.
if (LinkStatus.OPEN.value, LinkStatus.CLOSED.value, SubscriptionStatus.STOPPED.value) != ("open", "closed", "stopped"):
    raise RuntimeError("a status the fan-out statements spell has changed")

Convert = Callable[[Any], Any]


def _sqlite_decimal(value: Decimal | None) -> str | None:
    # DecimalType's SQLite form: canonical, fixed-point text. ``format(.., "f")`` already writes a positive
    # exponent out (``1E+5`` -> ``100000``) and keeps the scale; only a negative zero needs its sign dropped
    # (``canonical_decimal``'s two rules, without building a second Decimal per value).
    if value is None:
        return None
    if value.__class__ is not Decimal or not value.is_finite():
        if not isinstance(value, Decimal) or not value.is_finite():
            raise TypeError(f"a decimal column takes finite Decimal values, not {value!r}")
        return format(canonical_decimal(value), "f")
    written = format(value, "f")
    return written[1:] if written[0] == "-" and value.is_zero() else written


def _pg_decimal(value: Decimal | None) -> Decimal | None:
    if value is None:
        return None
    if not isinstance(value, Decimal) or not value.is_finite():
        raise TypeError(f"a decimal column takes finite Decimal values, not {value!r}")
    return canonical_decimal(value)


class _SqliteTime:
    """UTCDateTime's SQLite form (SQLAlchemy's ``DATETIME`` text), remembering the last value: a fan-out
    stamps every row with the same ``now``."""

    def __init__(self) -> None:
        self._last: tuple[datetime | None, str | None] = (None, None)

    def __call__(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        last, text_ = self._last
        if value is last:
            return text_
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime refused; pass a timezone-aware UTC datetime")
        utc = value.astimezone(UTC)
        text_ = (
            f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d} "
            f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}.{utc.microsecond:06d}"
        )
        self._last = (value, text_)
        return text_


def _pg_time(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime refused; pass a timezone-aware UTC datetime")
    return value.astimezone(UTC)


def _read_decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    return Decimal(value) if isinstance(value, str) else canonical_decimal(value)


def _read_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    moment = cast("datetime", value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _decimal_of(value: Any) -> Decimal:
    found = _read_decimal(value)
    if found is None:
        raise ValueError("a NOT NULL decimal column held NULL")
    return found


def _time_of(value: Any) -> datetime:
    found = _read_time(value)
    if found is None:
        raise ValueError("a NOT NULL time column held NULL")
    return found


class _Writer:
    """An INSERT of a struct's fields into its table (they are the table's columns, checked here).

    ``sql`` binds by name (PostgreSQL, through the session); ``sqlite_sql`` by position, for rows built as
    tuples in the struct's field order (the driver binds a tuple without a lookup per column and row)."""

    def __init__(self, model: Any, struct: type[msgspec.Struct], *, suffix: str = "") -> None:
        table = cast("Table", model.__table__)
        columns = [c.name for c in table.columns]
        fields = list(struct.__struct_fields__)
        if sorted(columns) != sorted(fields):
            raise RuntimeError(f"{struct.__name__} fields and {table.name} columns differ: {fields} != {columns}")
        self.fields = fields
        hints = typing.get_type_hints(struct)
        self.kinds = [self._kind(table.columns[name].type, hints[name]) for name in fields]
        self.decimals = [i for i, kind in enumerate(self.kinds) if kind == "decimal"]
        self.times = [i for i, kind in enumerate(self.kinds) if kind == "time"]
        self.enums = [i for i, kind in enumerate(self.kinds) if kind == "enum"]
        names = ", ".join(fields)
        params = ", ".join(f":{name}" for name in fields)
        self.sql = f"INSERT INTO {table.name} ({names}) VALUES ({params}){suffix}"  # noqa: S608 - names from the metadata
        marks = ", ".join("?" for _ in fields)
        self.sqlite_sql = f"INSERT INTO {table.name} ({names}) VALUES ({marks}){suffix}"  # noqa: S608 - as above

    @staticmethod
    def _kind(type_: object, hint: object) -> str:
        if isinstance(type_, DecimalType):
            return "decimal"
        if isinstance(type_, UTCDateTime):
            return "time"
        inner = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        if any(isinstance(a, type) and issubclass(a, Enum) for a in inner):
            return "enum"
        return "plain"


_INTENTS = _Writer(CopyIntentRow, CopyIntent)
_ORDERS = _Writer(OrderRow, Order)
_LINKS = _Writer(CopyLinkRow, CopyLink)
_EVENTS = _Writer(CopyEventRow, CopyEvent)
_SIGNALS = _Writer(CopySignalRow, CopySignal, suffix=" ON CONFLICT (strategy_id, provider_trade_id) DO NOTHING")

_CLAIM = text("UPDATE strategies SET fill_cursor = :fill_id, updated_at = :now WHERE id = :strategy_id")
_POSITION = "SELECT qty FROM strategy_positions WHERE strategy_id = :strategy_id AND symbol = :symbol"
_SET_POSITION = (
    "INSERT INTO strategy_positions (strategy_id, symbol, qty, updated_at) VALUES (:strategy_id, :symbol, :qty, :now) "
    "ON CONFLICT (strategy_id, symbol) DO UPDATE SET qty = excluded.qty, updated_at = excluded.updated_at"
)
_SUBSCRIPTION_COLUMNS = (
    "id", "strategy_id", "follower_user_id", "account_id", "settings", "status", "version", "start_equity",
    "created_at", "updated_at", "stopped_at",
)  # fmt: skip
# Every live subscription of the strategy, its open link in the symbol (if any) and its account's
# first balance by currency (the equity the sizing and the guards read), in one query.
_ROSTER = (
    "SELECT s.id, s.version, s.account_id, l.id, l.follower_symbol, l.side, l.qty, l.opened_at, l.updated_at, "
    "(SELECT b.equity FROM balances b WHERE b.account_id = s.account_id ORDER BY b.currency LIMIT 1) "
    "FROM subscriptions s LEFT JOIN copy_links l "
    "ON l.subscription_id = s.id AND l.provider_symbol = :symbol AND l.status = 'open' "
    "WHERE s.strategy_id = :strategy_id AND s.status <> 'stopped' ORDER BY s.id"
)
_SUBSCRIPTIONS = (
    "SELECT id, strategy_id, follower_user_id, account_id, settings, status, version, start_equity, created_at, "
    "updated_at, stopped_at FROM subscriptions WHERE strategy_id = :strategy_id AND status <> 'stopped' ORDER BY id"
)
_PAUSED = (
    "SELECT p.subscription_id, p.symbol FROM copy_symbol_pauses p JOIN subscriptions s ON s.id = p.subscription_id "
    "WHERE s.strategy_id = :strategy_id AND s.status <> 'stopped' AND p.paused_at IS NOT NULL"
)
_EQUITY = "SELECT equity FROM balances WHERE account_id = :account_id ORDER BY currency LIMIT 1"
_MOVE = "UPDATE copy_links SET qty = :qty, updated_at = :now WHERE id = :id AND status = 'open'"
_CLOSE = (
    "UPDATE copy_links SET qty = :qty, status = 'closed', closed_at = :now, updated_at = :now "
    "WHERE id = :id AND status = 'open'"
)


class RosterEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One live subscription of a strategy as a fill finds it: its open link in the fill's symbol, its equity."""

    subscription_id: str
    version: int
    account_id: str
    link: CopyLink | None
    equity: Decimal | None


class FanoutStore:
    """The reads and writes of one fan-out transaction (see the module docstring). Never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.sqlite = dialect_name(session) == "sqlite"
        self._driver: Any = None
        self._decimal: Convert = _sqlite_decimal if self.sqlite else _pg_decimal
        self._time: Convert = _SqliteTime() if self.sqlite else _pg_time

    async def claim(self, strategy_id: str, fill_id: str, *, now: datetime) -> bool:
        """Move the strategy's fill cursor to ``fill_id``: the transaction's first write (on SQLite it takes
        the write lock and begins the transaction the other statements join). Whether the strategy exists."""
        params = {"fill_id": fill_id, "now": self._time(now), "strategy_id": strategy_id}
        result = await self.session.execute(_CLAIM, params)
        if self.sqlite:
            connection = await self.session.connection()
            self._driver = (await connection.get_raw_connection()).driver_connection
        return int(getattr(result, "rowcount", 0)) > 0

    async def strategy_position(self, strategy_id: str, symbol: str) -> Decimal:
        """The provider's accounted net position in ``symbol`` (zero if none is stored)."""
        rows = await self._fetch(_POSITION, {"strategy_id": strategy_id, "symbol": symbol})
        return Decimal(0) if not rows else cast("Decimal", _read_decimal(rows[0][0]))

    async def set_strategy_position(self, strategy_id: str, symbol: str, qty: Decimal, *, now: datetime) -> None:
        """Store the provider's accounted net position in ``symbol``."""
        params = {"strategy_id": strategy_id, "symbol": symbol, "qty": self._decimal(qty), "now": self._time(now)}
        await self._run(_SET_POSITION, params)

    async def add_signal(self, signal: CopySignal) -> bool:
        """Store the signal unless the strategy consumed this provider trade before; whether it was stored."""
        return await self._run(_SIGNALS.sql, self._values(_SIGNALS, signal)) == 1

    async def roster(self, strategy_id: str, symbol: str) -> list[RosterEntry]:
        """The strategy's live subscriptions, oldest first, each with its open link in ``symbol`` and equity."""
        entries: list[RosterEntry] = []
        for sid, version, account_id, lid, fsym, side, qty, opened, updated, equity in await self._fetch(
            _ROSTER, {"strategy_id": strategy_id, "symbol": symbol}
        ):
            link = None
            if lid is not None:
                link = CopyLink(
                    id=lid, subscription_id=sid, provider_symbol=symbol, follower_symbol=fsym, side=Side(side),
                    qty=_decimal_of(qty), opened_at=_time_of(opened), updated_at=_time_of(updated),
                )  # fmt: skip
            entries.append(
                RosterEntry(
                    subscription_id=sid, version=int(version), account_id=account_id, link=link,
                    equity=_read_decimal(equity),
                )
            )  # fmt: skip
        return entries

    async def equity(self, account_id: str) -> Decimal | None:
        """The account's equity in its first balance by currency (as the roster reads it), if any."""
        rows = await self._fetch(_EQUITY, {"account_id": account_id})
        return None if not rows else _read_decimal(rows[0][0])

    async def subscriptions(self, strategy_id: str) -> list[Subscription]:
        """The strategy's live subscriptions in full, oldest first (what a roster entry's version names)."""
        found: list[Subscription] = []
        for row in await self._fetch(_SUBSCRIPTIONS, {"strategy_id": strategy_id}):
            values = dict(zip(_SUBSCRIPTION_COLUMNS, row, strict=True))
            for name in ("created_at", "updated_at", "stopped_at"):
                values[name] = _read_time(values[name])
            values["start_equity"] = _read_decimal(values["start_equity"])
            found.append(msgspec.convert(values, Subscription))
        return found

    async def paused_symbols(self, strategy_id: str) -> dict[str, frozenset[str]]:
        """The follower symbols paused after repeated refusals, by subscription (only those with any)."""
        found: dict[str, set[str]] = {}
        for subscription_id, symbol in await self._fetch(_PAUSED, {"strategy_id": strategy_id}):
            found.setdefault(subscription_id, set()).add(symbol)
        return {key: frozenset(symbols) for key, symbols in found.items()}

    async def add_intents(self, intents: Sequence[CopyIntent]) -> None:
        """Insert outbox intents (a client order id used before in the account fails the transaction)."""
        await self._insert(_INTENTS, intents)

    async def add_orders(self, orders: Sequence[Order]) -> None:
        """Insert ``pending_new`` orders (a used client order id fails the transaction)."""
        await self._insert(_ORDERS, orders)

    async def add_links(self, links: Sequence[CopyLink]) -> None:
        """Insert new links (a second open link for a subscription and symbol fails the transaction)."""
        for link in links:
            if link.qty < 0:
                raise ValueError(f"a link holds a quantity of zero or more, not {link.qty}")
        await self._insert(_LINKS, links)

    async def add_events(self, events: Sequence[CopyEvent]) -> None:
        """Insert copy events (the skips of a fan-out)."""
        await self._insert(_EVENTS, events)

    async def move_links(self, moves: Iterable[tuple[str, Decimal, bool]], *, now: datetime) -> None:
        """Set open links' quantities, closing those marked so: ``(link id, qty, close)``; a link closed since
        it was read is left alone."""
        kept: list[dict[str, Any]] = []
        closed: list[dict[str, Any]] = []
        stamp = self._time(now)
        for link_id, qty, close in moves:
            if qty < 0:
                raise ValueError(f"a link holds a quantity of zero or more, not {qty}")
            (closed if close else kept).append({"id": link_id, "qty": self._decimal(qty), "now": stamp})
        if kept:
            await self._run_many(_MOVE, kept)
        if closed:
            await self._run_many(_CLOSE, closed)

    # --- execution -------------------------------------------------------------------------------

    def _values(self, writer: _Writer, struct: msgspec.Struct) -> dict[str, Any]:
        return dict(zip(writer.fields, self._row(writer, struct), strict=True))

    def _row(self, writer: _Writer, struct: msgspec.Struct) -> list[Any]:
        """The struct's values in field order, converted to what the columns store."""
        row = list(msgspec.structs.astuple(struct))
        decimal, time_ = self._decimal, self._time
        for i in writer.decimals:
            row[i] = decimal(row[i])
        for i in writer.times:
            row[i] = time_(row[i])
        for i in writer.enums:
            value = row[i]
            if value is not None:
                row[i] = value.value
        return row

    async def _insert(self, writer: _Writer, structs: Sequence[msgspec.Struct]) -> None:
        if not structs:
            return
        if self.sqlite:
            rows = [self._row(writer, struct) for struct in structs]
            with _as_sqlalchemy_error(writer.sqlite_sql, rows[:1]):
                await self._joined().executemany(writer.sqlite_sql, rows)
        else:
            await self._run_many(writer.sql, [self._values(writer, struct) for struct in structs])

    def _joined(self) -> Any:
        driver = self._driver
        if driver is None or not driver.in_transaction:
            # A statement on the driver outside the session's transaction would commit on its own.
            raise RuntimeError("the fan-out store writes only after claim() has begun the transaction")
        return driver

    async def _fetch(self, sql: str, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        if self.sqlite:
            with _as_sqlalchemy_error(sql, params):
                return list(await self._joined().execute_fetchall(sql, params))
        return [tuple(row) for row in await self.session.execute(text(sql), dict(params))]

    async def _run(self, sql: str, params: Mapping[str, Any]) -> int:
        if self.sqlite:
            with _as_sqlalchemy_error(sql, params):
                cursor = await self._joined().execute(sql, params)
            return int(cursor.rowcount)
        result = await self.session.execute(text(sql), dict(params))
        return int(getattr(result, "rowcount", 0))

    async def _run_many(self, sql: str, rows: list[dict[str, Any]]) -> None:
        if self.sqlite:
            with _as_sqlalchemy_error(sql, rows[:1]):
                await self._joined().executemany(sql, rows)
        else:
            await self.session.execute(text(sql), rows)


@contextlib.contextmanager
def _as_sqlalchemy_error(sql: str, params: object) -> Iterator[None]:
    """The driver's errors as SQLAlchemy raises them (``IntegrityError``, ``OperationalError``...), so callers
    catch one kind whichever way a statement ran."""
    try:
        yield
    except sqlite3.Error as exc:
        raise DBAPIError.instance(sql, cast("Any", params), exc, sqlite3.Error) from exc
