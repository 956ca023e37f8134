"""The pure core of copy trading: follower settings, sizing, symbol resolution, guards, skip reasons, ids.

Nothing here does I/O or reads the clock: the runtime (store, bus, adapters) gathers the facts,
calls these functions, and records what they decide.
"""

from __future__ import annotations

from brokerlink.engine.copy.guards import (
    equity_guard,
    follower_side,
    period_start,
    slippage_bps,
    slippage_decision,
    subscribe_decision,
    trading_hours_guard,
    within_trading_hours,
)
from brokerlink.engine.copy.ids import copy_client_order_id
from brokerlink.engine.copy.reasons import Skip, SkipReason
from brokerlink.engine.copy.settings import (
    CopySettings,
    Direction,
    DrawdownPeriod,
    OnSubscribe,
    SizingMode,
    SlippageAction,
    StallAction,
    TradingWindow,
    Weekday,
    decode_settings,
    encode_settings,
    symbol_key,
)
from brokerlink.engine.copy.sizing import (
    OpenContext,
    OpenSize,
    close_qty,
    minimum_qty,
    raw_qty,
    size_open,
    size_open_detail,
)
from brokerlink.engine.copy.symbols import SymbolIndex, mapped_symbol, resolve_symbol, symbol_filter

__all__ = [
    "CopySettings",
    "Direction",
    "DrawdownPeriod",
    "OnSubscribe",
    "OpenContext",
    "OpenSize",
    "SizingMode",
    "Skip",
    "SkipReason",
    "SlippageAction",
    "StallAction",
    "SymbolIndex",
    "TradingWindow",
    "Weekday",
    "close_qty",
    "copy_client_order_id",
    "decode_settings",
    "encode_settings",
    "equity_guard",
    "follower_side",
    "mapped_symbol",
    "minimum_qty",
    "period_start",
    "raw_qty",
    "resolve_symbol",
    "size_open",
    "size_open_detail",
    "slippage_bps",
    "slippage_decision",
    "subscribe_decision",
    "symbol_filter",
    "symbol_key",
    "trading_hours_guard",
    "within_trading_hours",
]
