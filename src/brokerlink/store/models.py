"""The tables, as SQLAlchemy 2 typed declarative models.

Conventions, the same in every table:

* Ids are prefixed ULIDs (``usr_01J...``) generated in Python, so they sort by creation time and
  cursor pagination can order by id.
* Money and quantities are :class:`~brokerlink.store.types.DecimalType`, times
  :class:`~brokerlink.store.types.UTCDateTime`; timestamps come from the caller's clock (a ``now``
  argument or the domain object), not from server defaults, so both databases and the tests see
  the same values.
* Enum columns hold the StrEnum *values* (``"partially_filled"``) in a ``String(16)`` with a CHECK
  constraint listing them. Adding an enum member therefore needs a migration, on purpose.
* Constraint names come from :data:`NAMING_CONVENTION`, so migrations can refer to them stably.
* No ORM relationships: repositories write explicit queries, so nothing lazy-loads behind an
  ``await`` (which async sessions cannot do).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from brokerlink.domain.enums import (
    AccountMode,
    AssetClass,
    ConnectionState,
    OrderStatus,
    OrderType,
    Role,
    Side,
    TimeInForce,
)
from brokerlink.store.types import DecimalType, UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = String(40)  # "ord_" + 26-character ULID, with room for longer prefixes
ENUM = String(16)
SYMBOL = String(64)
CURRENCY = String(16)
EXTERNAL_ID = String(128)  # ids chosen by venues or clients: order ids, trade ids


def one_of(column: str, values: type[StrEnum]) -> CheckConstraint:
    """A CHECK constraint named after ``column`` that admits only the enum's values."""
    allowed = ", ".join(f"'{member.value}'" for member in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=column)


class Base(DeclarativeBase):
    """Declarative base: naming convention, and Decimal/datetime annotations mapped to the exact types."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {Decimal: DecimalType(), datetime: UTCDateTime()}  # noqa: RUF012


class UserRow(Base):
    """A first-party user. ``email`` is stored lowercased, so the unique index is case-insensitive."""

    __tablename__ = "users"
    __table_args__ = (one_of("role", Role),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(ENUM)
    is_active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    last_login_at: Mapped[datetime | None]


class SessionRow(Base):
    """A login session. Only the SHA-256 of the cookie token is stored, never the token."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))


class BrokerConnectionRow(Base):
    """A user's link to a broker. Credentials live in the vault; ``credentials_ref`` points there."""

    __tablename__ = "broker_connections"
    __table_args__ = (
        UniqueConstraint("user_id", "label"),
        # Target of the accounts' (connection_id, user_id) foreign key.
        UniqueConstraint("id", "user_id"),
        one_of("status", ConnectionState),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"))
    broker: Mapped[str] = mapped_column(String(32))
    label: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(ENUM)
    credentials_ref: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class AccountRow(Base):
    """A trading account at a broker, reached through one connection."""

    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint("connection_id", "venue_account_id"),
        # The account's owner is its connection's owner, enforced by the database: a bug that
        # filed an account under another user's connection could otherwise leak it to them.
        ForeignKeyConstraint(
            ["connection_id", "user_id"],
            ["broker_connections.id", "broker_connections.user_id"],
            ondelete="CASCADE",
        ),
        one_of("mode", AccountMode),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    connection_id: Mapped[str] = mapped_column(ID)
    venue_account_id: Mapped[str] = mapped_column(EXTERNAL_ID)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(CURRENCY)
    mode: Mapped[str] = mapped_column(ENUM)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class InstrumentRow(Base):
    """A broker's instrument with its size and price rules."""

    __tablename__ = "instruments"
    __table_args__ = (
        UniqueConstraint("broker", "symbol"),
        UniqueConstraint("broker", "venue_symbol"),
        one_of("asset_class", AssetClass),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    broker: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str] = mapped_column(SYMBOL)
    venue_symbol: Mapped[str] = mapped_column(SYMBOL)
    asset_class: Mapped[str] = mapped_column(ENUM)
    base: Mapped[str] = mapped_column(CURRENCY)
    quote: Mapped[str] = mapped_column(CURRENCY)
    tick_size: Mapped[Decimal]
    qty_step: Mapped[Decimal]
    min_qty: Mapped[Decimal]
    max_qty: Mapped[Decimal | None]
    min_notional: Mapped[Decimal]
    contract_size: Mapped[Decimal]
    tradable: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime]


class OrderRow(Base):
    """An order. ``client_order_id`` is the idempotency key, unique per account.

    Orders (and fills) are trading history: deleting an account that has any is refused
    (``RESTRICT``), so history is archived or purged on purpose, never as a side effect.
    """

    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("account_id", "client_order_id"),
        Index("ix_orders_account_id_created_at", "account_id", "created_at"),
        one_of("side", Side),
        one_of("type", OrderType),
        one_of("tif", TimeInForce),
        one_of("status", OrderStatus),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    account_id: Mapped[str] = mapped_column(ID, ForeignKey("accounts.id", ondelete="RESTRICT"))
    client_order_id: Mapped[str] = mapped_column(EXTERNAL_ID)
    venue_order_id: Mapped[str | None] = mapped_column(EXTERNAL_ID)
    symbol: Mapped[str] = mapped_column(SYMBOL)
    side: Mapped[str] = mapped_column(ENUM)
    qty: Mapped[Decimal]
    type: Mapped[str] = mapped_column(ENUM)
    tif: Mapped[str] = mapped_column(ENUM)
    limit_price: Mapped[Decimal | None]
    stop_price: Mapped[Decimal | None]
    status: Mapped[str] = mapped_column(ENUM)
    filled_qty: Mapped[Decimal]
    avg_fill_price: Mapped[Decimal | None]
    reject_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class FillRow(Base):
    """One execution. ``(account_id, trade_id)`` is the deduplication key."""

    __tablename__ = "fills"
    __table_args__ = (
        UniqueConstraint("account_id", "trade_id"),
        one_of("side", Side),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    account_id: Mapped[str] = mapped_column(ID, ForeignKey("accounts.id", ondelete="RESTRICT"))
    trade_id: Mapped[str] = mapped_column(EXTERNAL_ID)
    # A fill can outlive its order row (purged history); it still carries client_order_id.
    order_id: Mapped[str | None] = mapped_column(ID, ForeignKey("orders.id", ondelete="SET NULL"), index=True)
    client_order_id: Mapped[str | None] = mapped_column(EXTERNAL_ID)
    symbol: Mapped[str] = mapped_column(SYMBOL)
    side: Mapped[str] = mapped_column(ENUM)
    qty: Mapped[Decimal]
    price: Mapped[Decimal]
    fee: Mapped[Decimal]
    fee_currency: Mapped[str | None] = mapped_column(CURRENCY)
    ts: Mapped[datetime]


class PositionRow(Base):
    """A net position per account and symbol (signed quantity). A snapshot: goes with its account."""

    __tablename__ = "positions"

    account_id: Mapped[str] = mapped_column(ID, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    symbol: Mapped[str] = mapped_column(SYMBOL, primary_key=True)
    qty: Mapped[Decimal]
    avg_price: Mapped[Decimal]
    realized_pnl: Mapped[Decimal]
    updated_at: Mapped[datetime]


class BalanceRow(Base):
    """Money in an account per currency, as last reported. A snapshot: goes with its account."""

    __tablename__ = "balances"

    account_id: Mapped[str] = mapped_column(ID, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    currency: Mapped[str] = mapped_column(CURRENCY, primary_key=True)
    cash: Mapped[Decimal]
    equity: Mapped[Decimal]
    buying_power: Mapped[Decimal]
    margin_used: Mapped[Decimal]
    ts: Mapped[datetime]


class EventRow(Base):
    """The append-only event log. ``seq`` orders it; triggers refuse UPDATE and DELETE.

    ``seq`` is BIGINT on PostgreSQL and INTEGER on SQLite, where only ``INTEGER PRIMARY KEY``
    aliases the rowid and autoincrements.
    """

    __tablename__ = "event_log"
    __table_args__ = (Index("ix_event_log_topic_seq", "topic", "seq"),)

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    id: Mapped[str] = mapped_column(ID, unique=True)
    topic: Mapped[str] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class VaultSecretRow(Base):
    """One secret sealed by the vault (envelope encryption): never plaintext, never a usable key.

    ``ciphertext`` is AES-256-GCM under a per-secret data key; ``wrapped_key`` is that data key
    encrypted under the key-encryption key ``key_id``, which lives outside the database. The owner
    id (e.g. a broker connection's id) is authenticated data of both, so a ciphertext copied to
    another owner's row fails to decrypt. ``owner_id`` has no foreign key because owners live in
    different tables; whoever deletes an owner deletes its secrets. ``key_id`` is indexed so key
    rotation can find the secrets still wrapped under an old key.
    """

    __tablename__ = "vault_secrets"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    owner_id: Mapped[str] = mapped_column(ID, index=True)
    purpose: Mapped[str] = mapped_column(String(64))
    # Room for a KMS key name (an ARN is about 80 characters), not only our own "kek_..." ids.
    key_id: Mapped[str] = mapped_column(String(128), index=True)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    key_nonce: Mapped[bytes] = mapped_column(LargeBinary)
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
