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

from collections.abc import Iterable
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
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from brokerlink.domain.copy import (
    CopyEventKind,
    CopyOrderType,
    IntentAction,
    IntentStatus,
    LinkStatus,
    StrategyStatus,
    StrategyVisibility,
    SubscriptionStatus,
)
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


def any_of(column: str, values: Iterable[str]) -> str:
    """``column`` equals one of ``values``, spelled as a chain of ``OR``: the CHECK text of an enum column.

    Not ``column IN (...)``: SQLite compiles an ``IN`` list of three or more constants into an
    ephemeral index that it builds again each time the statement runs, so every INSERT (and every
    UPDATE of the column) paid ~4 µs per such CHECK, ~20 µs per copy intent row with its five. The
    ``OR`` chain is compared in place (ADR 0039; ``tests/store/test_migrations.py`` checks that no
    INSERT program opens an ephemeral table). Same meaning on both databases, NULL included.
    """
    return " OR ".join(f"{column} = '{value}'" for value in values)


def one_of(column: str, values: type[StrEnum]) -> CheckConstraint:
    """A CHECK constraint named after ``column`` that admits only the enum's values."""
    return CheckConstraint(any_of(column, (member.value for member in values)), name=column)


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
    # MFA (migration 0005): a session signed in with the password of a user with MFA waits at the
    # MFA step (``mfa_pending``: it reaches nothing but that step); ``mfa_at`` is when this session
    # last verified a TOTP or recovery code, which step-up checks compare against.
    mfa_pending: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    mfa_at: Mapped[datetime | None]


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
        # Target of the (account_id, owner) foreign keys of strategies and subscriptions. A unique
        # index rather than a constraint (both databases accept either as a foreign key's target):
        # SQLite adds an index in place, where a constraint would mean rebuilding the table.
        Index("uq_accounts_id_user_id", "id", "user_id", unique=True),
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


# Copy trading (DESIGN.md, "Copy trading"). Copy history is trading history, like orders and fills:
# an account that backs a strategy or follows one cannot be deleted (RESTRICT), so neither can its
# user. Inside copy trading, rows go with their parent: deleting a strategy (a deliberate purge)
# takes its subscriptions, signals, links, intents and events along.

_NOT_STOPPED = text("status != 'stopped'")
_OPEN = text("status = 'open'")


class StrategyRow(Base):
    """A provider's strategy, backed by one of the provider's accounts.

    ``(account_id, provider_user_id)`` references ``accounts(id, user_id)``: the database refuses a
    strategy on someone else's account. ``account_id`` is indexed because the engine finds the
    strategies to copy from the account that filled.
    """

    __tablename__ = "strategies"
    __table_args__ = (
        UniqueConstraint("provider_user_id", "name"),
        # Target of the copy signals' (strategy_id, provider_account_id) foreign key.
        UniqueConstraint("id", "account_id"),
        ForeignKeyConstraint(
            ["account_id", "provider_user_id"],
            ["accounts.id", "accounts.user_id"],
            ondelete="RESTRICT",
        ),
        one_of("visibility", StrategyVisibility),
        one_of("status", StrategyStatus),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    provider_user_id: Mapped[str] = mapped_column(ID)
    account_id: Mapped[str] = mapped_column(ID, index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    visibility: Mapped[str] = mapped_column(ENUM)
    min_follower_equity: Mapped[Decimal | None]
    status: Mapped[str] = mapped_column(ENUM)
    fill_cursor: Mapped[str | None] = mapped_column(ID)
    """The id of the last provider fill (``fills.id``) the copy engine consumed."""
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class StrategyPositionRow(Base):
    """The provider's net position on a symbol as the copy engine has accounted for it (signed).

    Snapshotted from the provider's positions when the strategy is created, then moved by each
    consumed fill in the same transaction, so every signal knows its ``before`` exactly.
    """

    __tablename__ = "strategy_positions"

    strategy_id: Mapped[str] = mapped_column(ID, ForeignKey("strategies.id", ondelete="CASCADE"), primary_key=True)
    symbol: Mapped[str] = mapped_column(SYMBOL, primary_key=True)
    qty: Mapped[Decimal]
    updated_at: Mapped[datetime]


class SubscriptionRow(Base):
    """A follower account copying a strategy. ``settings`` is JSON text the store does not read.

    ``(account_id, follower_user_id)`` references ``accounts(id, user_id)``: the database refuses a
    subscription that would copy into someone else's account. One subscription per strategy and
    account until it is stopped (a partial unique index; stopped ones stay as history).
    """

    __tablename__ = "subscriptions"
    __table_args__ = (
        ForeignKeyConstraint(
            ["account_id", "follower_user_id"],
            ["accounts.id", "accounts.user_id"],
            ondelete="RESTRICT",
        ),
        # Target of the intents' (subscription_id, follower_account_id) foreign key.
        UniqueConstraint("id", "account_id"),
        Index(
            "uq_subscriptions_strategy_id_account_id_live",
            "strategy_id",
            "account_id",
            unique=True,
            sqlite_where=_NOT_STOPPED,
            postgresql_where=_NOT_STOPPED,
        ),
        one_of("status", SubscriptionStatus),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    strategy_id: Mapped[str] = mapped_column(ID, ForeignKey("strategies.id", ondelete="CASCADE"), index=True)
    follower_user_id: Mapped[str] = mapped_column(ID, index=True)
    account_id: Mapped[str] = mapped_column(ID, index=True)
    settings: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(ENUM)
    version: Mapped[int] = mapped_column(Integer)
    start_equity: Mapped[Decimal | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    stopped_at: Mapped[datetime | None]


class CopySignalRow(Base):
    """A provider execution the engine consumed. ``(strategy_id, provider_trade_id)`` is the deduplication key.

    ``(strategy_id, provider_account_id)`` references ``strategies(id, account_id)``, so a signal can
    only be filed under the strategy whose account filled.
    """

    __tablename__ = "copy_signals"
    __table_args__ = (
        UniqueConstraint("strategy_id", "provider_trade_id"),
        ForeignKeyConstraint(
            ["strategy_id", "provider_account_id"],
            ["strategies.id", "strategies.account_id"],
            ondelete="CASCADE",
        ),
        one_of("side", Side),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    strategy_id: Mapped[str] = mapped_column(ID)
    provider_account_id: Mapped[str] = mapped_column(ID)
    provider_trade_id: Mapped[str] = mapped_column(EXTERNAL_ID)
    symbol: Mapped[str] = mapped_column(SYMBOL)
    side: Mapped[str] = mapped_column(ENUM)
    qty: Mapped[Decimal]
    price: Mapped[Decimal]
    provider_position_before: Mapped[Decimal]
    provider_position_after: Mapped[Decimal]
    venue_ts: Mapped[datetime]
    received_at: Mapped[datetime]
    created_at: Mapped[datetime]


class CopyLinkRow(Base):
    """The follower position copied from one provider position: one open link per subscription and
    provider symbol (a partial unique index); closed links stay as history.
    """

    __tablename__ = "copy_links"
    __table_args__ = (
        Index(
            "uq_copy_links_subscription_id_provider_symbol_open",
            "subscription_id",
            "provider_symbol",
            unique=True,
            sqlite_where=_OPEN,
            postgresql_where=_OPEN,
        ),
        one_of("side", Side),
        one_of("status", LinkStatus),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    subscription_id: Mapped[str] = mapped_column(ID, ForeignKey("subscriptions.id", ondelete="CASCADE"), index=True)
    provider_symbol: Mapped[str] = mapped_column(SYMBOL)
    follower_symbol: Mapped[str] = mapped_column(SYMBOL)
    side: Mapped[str] = mapped_column(ENUM)
    qty: Mapped[Decimal]
    status: Mapped[str] = mapped_column(ENUM)
    opened_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class CopyIntentRow(Base):
    """The outbox: one follower order, written in the transaction that consumed its cause.

    ``(follower_account_id, client_order_id)`` is unique, like ``orders``. ``(subscription_id,
    follower_account_id)`` references ``subscriptions(id, account_id)``: an intent can only target
    its subscription's account (and through it, an account that exists). An intent is order history
    and goes only with its subscription: a purged signal, link or order leaves it in place, without
    the reference. (That is also what PostgreSQL needs: when one DELETE cascades down two paths, a
    NO ACTION reference between them may be checked before the other path has removed its rows.)
    Latencies are integer microseconds.
    """

    __tablename__ = "copy_intents"
    __table_args__ = (
        UniqueConstraint("follower_account_id", "client_order_id"),
        ForeignKeyConstraint(
            ["subscription_id", "follower_account_id"],
            ["subscriptions.id", "subscriptions.account_id"],
            # Named by hand: the convention's name would exceed PostgreSQL's 63 characters.
            name="fk_copy_intents_subscription_id_follower_account_id",
            ondelete="CASCADE",
        ),
        Index("ix_copy_intents_subscription_id_id", "subscription_id", "id"),
        # The relay's queue: pending (and sent) intents, oldest first.
        Index("ix_copy_intents_status_id", "status", "id"),
        one_of("action", IntentAction),
        one_of("side", Side),
        one_of("order_type", CopyOrderType),
        one_of("tif", TimeInForce),
        one_of("status", IntentStatus),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    subscription_id: Mapped[str] = mapped_column(ID)
    signal_id: Mapped[str | None] = mapped_column(ID, ForeignKey("copy_signals.id", ondelete="SET NULL"))
    link_id: Mapped[str | None] = mapped_column(ID, ForeignKey("copy_links.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(ENUM)
    follower_account_id: Mapped[str] = mapped_column(ID)
    client_order_id: Mapped[str] = mapped_column(EXTERNAL_ID)
    symbol: Mapped[str] = mapped_column(SYMBOL)
    side: Mapped[str] = mapped_column(ENUM)
    qty: Mapped[Decimal]
    order_type: Mapped[str] = mapped_column(ENUM)
    limit_price: Mapped[Decimal | None]
    tif: Mapped[str] = mapped_column(ENUM)
    status: Mapped[str] = mapped_column(ENUM)
    order_id: Mapped[str | None] = mapped_column(ID, ForeignKey("orders.id", ondelete="SET NULL"))
    attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    acked_at: Mapped[datetime | None]
    signal_us: Mapped[int | None] = mapped_column(BigInteger)
    engine_us: Mapped[int | None] = mapped_column(BigInteger)
    broker_us: Mapped[int | None] = mapped_column(BigInteger)
    slippage_bps: Mapped[Decimal | None]


class CopyEventRow(Base):
    """What a follower is shown about a subscription: copies, skips with their reason, guards, changes.

    The signal and intent an event mentions may be purged before it; the event stays, without them.
    """

    __tablename__ = "copy_events"
    __table_args__ = (
        Index("ix_copy_events_subscription_id_id", "subscription_id", "id"),
        one_of("kind", CopyEventKind),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    subscription_id: Mapped[str] = mapped_column(ID, ForeignKey("subscriptions.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(ENUM)
    reason: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)
    signal_id: Mapped[str | None] = mapped_column(ID, ForeignKey("copy_signals.id", ondelete="SET NULL"))
    intent_id: Mapped[str | None] = mapped_column(ID, ForeignKey("copy_intents.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]


class CopySymbolPauseRow(Base):
    """A follower symbol's run of consecutive rejected copy orders, and its pause once the run is long enough.

    One row per subscription and *follower* symbol (the symbol the follower's broker refused, as on the
    intents). ``rejects`` counts the run; a fill in the symbol deletes a row that is not paused. A row
    with ``paused_at`` set is a pause: no opens in that symbol until the follower resumes it (which
    deletes the row, so the count starts over). ``reason`` is the last refusal's text.
    """

    __tablename__ = "copy_symbol_pauses"

    subscription_id: Mapped[str] = mapped_column(
        ID, ForeignKey("subscriptions.id", ondelete="CASCADE"), primary_key=True
    )
    symbol: Mapped[str] = mapped_column(SYMBOL, primary_key=True)
    rejects: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    paused_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class CopyEquityPeakRow(Base):
    """A subscription's highest follower equity seen in its current drawdown period (the drawdown guard's base).

    ``period_start`` is the UTC start of the period the peak belongs to (``engine.copy.guards.period_start``);
    a reading in a later period starts a new peak. Sampled at every signal and periodically by the engine.
    """

    __tablename__ = "copy_equity_peaks"

    subscription_id: Mapped[str] = mapped_column(
        ID, ForeignKey("subscriptions.id", ondelete="CASCADE"), primary_key=True
    )
    period_start: Mapped[datetime]
    peak_equity: Mapped[Decimal]
    updated_at: Mapped[datetime]


class TotpCredentialRow(Base):
    """A user's TOTP authenticator: ``pending`` until a first code confirms it, then ``active``.

    At most one of each per user: a re-enrolment is pending beside the active one and replaces it
    when confirmed. The shared secret is in the vault (``secret_id``), sealed with this row's id as
    associated data; nothing here can produce a code. ``last_step`` is the highest TOTP time step
    accepted, so a code (or an older one) is never accepted twice.
    """

    __tablename__ = "mfa_totp"
    __table_args__ = (
        UniqueConstraint("user_id", "status"),
        CheckConstraint(any_of("status", ("pending", "active")), name="status"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(ENUM)
    secret_id: Mapped[str] = mapped_column(ID)
    last_step: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime]
    confirmed_at: Mapped[datetime | None]


class RecoveryCodeRow(Base):
    """One single-use recovery code of a user, as a salted SHA-256 (the code itself is shown once).

    Codes belong to the authenticator they were issued with and go when it goes.
    """

    __tablename__ = "mfa_recovery_codes"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    totp_id: Mapped[str] = mapped_column(ID, ForeignKey("mfa_totp.id", ondelete="CASCADE"), index=True)
    salt: Mapped[bytes] = mapped_column(LargeBinary)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


# Tables defined in their own modules, imported here so that importing this module gives the whole
# schema (Alembic's autogenerate, the drift test and ``create_all`` all read ``Base.metadata``).
from brokerlink.store import (  # noqa: E402
    models_alerts,  # noqa: F401
    models_audit,  # noqa: F401
    models_fees,  # noqa: F401
    models_idempotency,  # noqa: F401
    models_ledger,  # noqa: F401
    models_oauth,  # noqa: F401
    models_stats,  # noqa: F401
    models_webhooks,  # noqa: F401
)
