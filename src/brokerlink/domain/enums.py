"""Enumerations of the normalized model. Values are the wire and storage strings."""

from __future__ import annotations

from enum import StrEnum


class Side(StrEnum):
    """Order or trade side."""

    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        """+1 for buy, -1 for sell."""
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        """The other side."""
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    """How an order executes."""

    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"


class TimeInForce(StrEnum):
    """How long an order stays working."""

    DAY = "day"
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"


class OrderStatus(StrEnum):
    """Order lifecycle states; transitions are in ``brokerlink.domain.orders``."""

    PENDING_NEW = "pending_new"
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    PENDING_CANCEL = "pending_cancel"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REJECTED = "rejected"

    @property
    def is_terminal(self) -> bool:
        """Whether no further transition (other than late fills on canceled) is expected."""
        return self in _TERMINAL


_TERMINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED})


class AssetClass(StrEnum):
    """Kind of instrument."""

    FX = "fx"
    EQUITY = "equity"
    CRYPTO = "crypto"
    FUTURE = "future"
    CFD = "cfd"


class AccountMode(StrEnum):
    """How the venue keeps positions: one net position per symbol, or several (hedging)."""

    NETTING = "netting"
    HEDGING = "hedging"


class ConnectionState(StrEnum):
    """State of the link to a broker."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    DEGRADED = "degraded"
    DISCONNECTED = "disconnected"
    REVOKED = "revoked"


class Role(StrEnum):
    """First-party user roles: ``provider`` may also publish strategies (an admin grants it)."""

    USER = "user"
    PROVIDER = "provider"
    ADMIN = "admin"
    AUDITOR = "auditor"
