"""Why a copy was not made: machine-readable reasons and the :class:`Skip` value the pure checks return.

Every skip is recorded as a copy event and shown to the follower, so a reason is a stable wire
string (clients branch on it) and the detail is a sentence with the numbers that decided it.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec


class SkipReason(StrEnum):
    """Machine-readable reason a provider trade was not copied (or not copied in full)."""

    # Subscription state (decided by the runtime).
    PAUSED = "paused"
    CLOSE_ONLY = "close_only"
    STOPPED = "stopped"
    SYMBOL_PAUSED = "symbol_paused"
    """Repeated rejects paused this symbol for the subscription."""
    NO_CATCH_UP = "no_catch_up"
    """A provider trade missed during an outage; the follower did not opt in to catch-up trades."""
    ON_SUBSCRIBE_SKIP = "on_subscribe_skip"
    """A provider position open at subscription time, and the follower chose not to copy those."""
    WORSE_THAN_ENTRY = "worse_than_entry"
    """Copy-if-not-worse at subscription time, and the price is worse than the provider's entry."""
    FOLLOWER_DISCONNECTED = "follower_disconnected"
    """The follower's broker connection was down when the provider traded (no catch-up trade later)."""
    DIRECTION_CONFLICT = "direction_conflict"
    """A copy on the other side is still open (the direction setting changed); it closes with the provider."""

    # Symbol filter and resolution.
    SYMBOL_DENIED = "symbol_denied"
    SYMBOL_NOT_ALLOWED = "symbol_not_allowed"
    SYMBOL_UNKNOWN_AT_BROKER = "symbol_unknown_at_broker"
    SYMBOL_AMBIGUOUS = "symbol_ambiguous"
    """Several of the follower broker's instruments match; a symbol_map entry settles it."""
    SYMBOL_NOT_TRADABLE = "symbol_not_tradable"

    # Sizing.
    NO_PRICE = "no_price"
    NO_STOP_LOSS = "no_stop_loss"
    EQUITY_UNKNOWN = "equity_unknown"
    INSUFFICIENT_EQUITY = "insufficient_equity"
    ZERO_AFTER_ROUNDING = "zero_after_rounding"
    BELOW_MIN_QTY = "below_min_qty"
    BELOW_MIN_NOTIONAL = "below_min_notional"

    # Caps. A cap clamps the size; it skips only when what is left is below the venue's minimum.
    MAX_QTY_PER_ORDER = "max_qty_per_order"
    VENUE_MAX_QTY = "venue_max_qty"
    MAX_OPEN_POSITIONS = "max_open_positions"
    MAX_EXPOSURE = "max_exposure"
    MAX_LEVERAGE = "max_leverage"

    # Guards.
    SLIPPAGE = "slippage"
    OUTSIDE_TRADING_HOURS = "outside_trading_hours"
    COPY_STOP_LOSS = "copy_stop_loss"
    DRAWDOWN_GUARD = "drawdown_guard"

    # SL/TP mirroring (ADR 0027).
    NO_STOP_ORDERS = "no_stop_orders"
    """The follower's broker takes no stop orders: the provider's stop-loss is not mirrored."""
    NO_LIMIT_ORDERS = "no_limit_orders"
    """The follower's broker takes no limit orders: the provider's take-profit is not mirrored."""
    PROTECTION_UNKNOWN_INSTRUMENT = "protection_unknown_instrument"
    """The follower's instrument (its tick and step) is not known now: protective orders wait for it."""


class Skip(msgspec.Struct, frozen=True, kw_only=True):
    """A copy that was not made: the reason (for machines) and a detail (for the follower)."""

    reason: SkipReason
    detail: str
