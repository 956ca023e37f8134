"""A follower's copy settings: how a subscription sizes, filters and guards the provider's trades.

:class:`CopySettings` is what the follower sets and can change at any time. It is stored as JSON
and accepted by the API as JSON (decimals as strings, like every amount in brokerlink), and it
checks itself when built or decoded: an inconsistent combination raises
:class:`~brokerlink.kit.errors.InvalidInput` whose ``extra["field"]`` names the offending field.

Each sizing parameter belongs to one sizing mode and is refused with any other mode. A
follower who sends ``{"fixed_qty": "5"}`` without ``"sizing": "fixed_qty"`` would otherwise get
equity-ratio copies while believing they had asked for five lots.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

import msgspec

from brokerlink.kit.errors import InvalidInput

_HUNDRED = Decimal(100)
_MAX_BPS = Decimal(10_000)
MAX_SYMBOL_ENTRIES = 1000
"""Most entries in the allow list, the deny list or the symbol map."""
MAX_TRADING_WINDOWS = 64
"""Most trading-hours windows."""
MAX_REJECTS_BEFORE_PAUSE = 1000
"""Largest ``pause_symbol_after_rejects``: past it, "never" (0) says what the follower means."""
_NOT_SYMBOL_KEY = re.compile(r"[^0-9A-Z]")


class SizingMode(StrEnum):
    """How the follower's quantity is derived from the provider's trade."""

    FIXED_QTY = "fixed_qty"
    """Always ``fixed_qty``, whatever the provider traded."""
    MULTIPLIER = "multiplier"
    """``multiplier`` times the provider's quantity."""
    EQUITY_RATIO = "equity_ratio"
    """The provider's quantity scaled by follower equity (or ``allocated_amount``) over provider equity."""
    FIXED_NOTIONAL = "fixed_notional"
    """A quantity worth ``fixed_notional`` in the follower's account currency."""
    RISK_PERCENT = "risk_percent"
    """A quantity that loses ``risk_percent`` of follower equity if the provider's stop-loss is hit."""


class Direction(StrEnum):
    """Copy the provider's side, or the opposite one."""

    SAME = "same"
    REVERSED = "reversed"


class SlippageAction(StrEnum):
    """What the slippage guard does when ``max_slippage_bps`` is set."""

    SKIP = "skip"
    """Send a market order if the follower's price is within tolerance, otherwise skip."""
    LIMIT = "limit"
    """Always send a limit order at the provider's price plus (buy) or minus (sell) the tolerance."""


class DrawdownPeriod(StrEnum):
    """The period over which the drawdown guard measures from the peak (UTC calendar periods)."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class OnSubscribe(StrEnum):
    """What happens to the provider's positions that are already open when the follower subscribes."""

    SKIP = "skip"
    MARKET = "market"
    IF_NOT_WORSE = "if_not_worse"
    """Copy at market only while the follower's price is no worse than the provider's entry."""


class StallAction(StrEnum):
    """What happens when the provider's feed stalls (after the warning, which is always given)."""

    WARN = "warn"
    """Only warn."""
    PAUSE = "pause"
    """Pause the subscription: no new copies until it resumes."""
    CLOSE_ALL = "close_all"
    """Close every copy of the subscription."""


class Weekday(StrEnum):
    """A day of the week, UTC."""

    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"

    @property
    def number(self) -> int:
        """Monday 0 to Sunday 6, as :meth:`datetime.datetime.weekday`."""
        return _WEEKDAY_INDEX[self]


_WEEKDAY_INDEX = {day: i for i, day in enumerate(Weekday)}
ALL_WEEKDAYS: tuple[Weekday, ...] = tuple(Weekday)


def symbol_key(symbol: str) -> str:
    """The form in which symbols named in settings compare: upper case, letters and digits only.

    ``EUR/USD``, ``EURUSD`` and ``eur_usd`` are one symbol to the allow list, the deny list and
    the symbol map. (Broker suffixes such as ``.m`` are *not* dropped here: ``BRK.B`` is a share
    class, not a suffix. Suffixes matter only when finding an instrument at the follower's broker.)
    """
    return _NOT_SYMBOL_KEY.sub("", symbol.upper())


def _utc_naive(value: time) -> time:
    return value.replace(tzinfo=None)


class TradingWindow(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Hours in which new copies may open: on each of ``weekdays``, from ``start`` to ``end`` (UTC).

    ``start`` is inclusive and ``end`` exclusive. An ``end`` at or before ``start`` runs past
    midnight into the next day (``22:00``-``02:00`` on Monday covers Monday 22:00 to Tuesday
    02:00); ``start == end`` is a whole 24 hours from ``start``. Times carry no zone or UTC.
    """

    weekdays: tuple[Weekday, ...] = ALL_WEEKDAYS
    start: time
    end: time

    def __post_init__(self) -> None:
        if not self.weekdays:
            raise _invalid("trading_hours.weekdays", "name at least one day")
        if len(set(self.weekdays)) != len(self.weekdays):
            raise _invalid("trading_hours.weekdays", "a day is listed twice")
        for name in ("start", "end"):
            value: time = getattr(self, name)
            if value.tzinfo is not None and value.utcoffset() != timedelta(0):
                raise _invalid(f"trading_hours.{name}", "times are UTC; give no offset or +00:00")

    def contains(self, weekday: int, at: time) -> bool:
        """Whether UTC ``at`` on ``weekday`` (Monday 0) falls in this window."""
        start, end, at = _utc_naive(self.start), _utc_naive(self.end), _utc_naive(at)
        days = {day.number for day in self.weekdays}
        if start < end:
            return weekday in days and start <= at < end
        # Past midnight: the evening part on the listed day, the morning part on the day after.
        return (weekday in days and at >= start) or ((weekday - 1) % 7 in days and at < end)


class CopySettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything a follower controls about one subscription. Checked on construction and decoding.

    Amounts are in the follower's account currency unless said otherwise; percentages are in
    (0, 100]. ``None`` means "no limit" for every cap and guard.
    """

    # Sizing.
    sizing: SizingMode = SizingMode.EQUITY_RATIO
    fixed_qty: Decimal | None = None
    """Quantity per copy, in the follower instrument's units (lots, shares, coins). ``fixed_qty`` mode only."""
    multiplier: Decimal = Decimal(1)
    """Factor on the provider's quantity. ``multiplier`` mode only (elsewhere it stays 1)."""
    allocated_amount: Decimal | None = None
    """Equity-ratio base instead of the whole account equity (never more than the equity). ``equity_ratio`` only."""
    fixed_notional: Decimal | None = None
    """Notional per copy. ``fixed_notional`` mode only."""
    risk_percent: Decimal | None = None
    """Percent of follower equity lost at the provider's stop-loss. ``risk_percent`` mode only."""
    force_min_qty: bool = False
    """Below the venue's minimum, send the minimum instead of skipping (still within every cap)."""

    # Caps: each clamps the size down; a cap that leaves less than the venue's minimum skips.
    max_qty_per_order: Decimal | None = None
    max_open_positions: int | None = None
    max_exposure_per_symbol: Decimal | None = None
    """Most notional held in one symbol, after the copy."""
    max_leverage: Decimal | None = None
    """Most gross notional over equity, after the copy."""

    # Symbols.
    allow_symbols: tuple[str, ...] | None = None
    """Copy only these provider symbols (``None``: all). Compared by :func:`symbol_key`."""
    deny_symbols: tuple[str, ...] = ()
    """Never copy these provider symbols."""
    symbol_map: Mapping[str, str] = msgspec.field(default_factory=dict)
    """Provider canonical symbol -> the follower broker's symbol (canonical or venue spelling)."""

    direction: Direction = Direction.SAME

    # Guards.
    max_slippage_bps: Decimal | None = None
    """Tolerance against the provider's price, in basis points; in [0, 10000)."""
    slippage_action: SlippageAction = SlippageAction.SKIP
    copy_stop_loss_pct: Decimal | None = None
    """Stop copying once the subscription has lost this percent of its starting equity (or allocation)."""
    max_drawdown_pct: Decimal | None = None
    """Stop opening once equity is this percent below its peak in the current ``drawdown_period``."""
    drawdown_period: DrawdownPeriod = DrawdownPeriod.DAY
    trading_hours: tuple[TradingWindow, ...] = ()
    """Windows in which new copies may open; empty: any time. Closes are never held back."""

    # Lifecycle.
    on_subscribe: OnSubscribe = OnSubscribe.SKIP
    copy_sl_tp: bool = True
    """Mirror the provider's stop-loss and take-profit (its working closing-side stop and limit orders) onto
    the copies as protective orders (ADR 0027). Switching it off cancels the mirrored ones. ``risk_percent``
    sizing reads the provider's stop-loss either way."""
    on_provider_stall: StallAction = StallAction.WARN
    """What the stall watchdog (:mod:`~brokerlink.engine.copy.watchdog`) does once the provider's broker
    connection has been down past its action threshold; the warning before it is always given. The adapter
    keeps reconnecting and reconciling by itself: this decides what the follower's copies do meanwhile."""
    pause_symbol_after_rejects: int = 3
    """Pause a follower symbol after this many consecutive rejected copy orders in it (0: never). A paused
    symbol opens nothing until the follower resumes it; closes still go through."""
    catch_up: bool = False
    """Send copy orders that waited in the outbox past the engine's stale window (an outage of the follower's
    broker or of brokerlink). Off: they end ``failed`` with a copy event instead of trading late."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`InvalidInput` naming the first field that is out of range or inconsistent."""
        self._validate_amounts()
        self._validate_sizing()
        self._validate_symbols()
        if self.slippage_action is SlippageAction.LIMIT and self.max_slippage_bps is None:
            raise _invalid("max_slippage_bps", "a limit-order slippage guard needs a tolerance")
        if len(self.trading_hours) > MAX_TRADING_WINDOWS:
            raise _invalid("trading_hours", f"at most {MAX_TRADING_WINDOWS} windows")
        rejects = self.pause_symbol_after_rejects
        # bool is an int to Python; msgspec refuses it when decoding, a Python caller would slip it through.
        if isinstance(rejects, bool) or not isinstance(rejects, int) or not 0 <= rejects <= MAX_REJECTS_BEFORE_PAUSE:
            raise _invalid(
                "pause_symbol_after_rejects",
                f"must be a whole number in [0, {MAX_REJECTS_BEFORE_PAUSE}], got {rejects!r}",
            )

    def _validate_amounts(self) -> None:
        for name in ("fixed_qty", "multiplier", "allocated_amount", "fixed_notional"):
            _check_positive(name, getattr(self, name))
        for name in ("max_qty_per_order", "max_exposure_per_symbol", "max_leverage"):
            _check_positive(name, getattr(self, name))
        for name in ("risk_percent", "copy_stop_loss_pct", "max_drawdown_pct"):
            value = getattr(self, name)
            _check_decimal(name, value)
            if value is not None and not 0 < value <= _HUNDRED:
                raise _invalid(name, f"must be a percentage in (0, 100], got {value}")
        bps = self.max_slippage_bps
        _check_decimal("max_slippage_bps", bps)
        if bps is not None and not 0 <= bps < _MAX_BPS:
            raise _invalid("max_slippage_bps", f"must be in [0, 10000), got {bps}")
        if self.max_open_positions is not None and self.max_open_positions < 1:
            raise _invalid("max_open_positions", "must be at least 1 (close-only is a subscription state)")

    def _validate_sizing(self) -> None:
        required = _MODE_PARAMETER.get(self.sizing)
        if required is not None and self.sizing not in _OPTIONAL_PARAMETER and getattr(self, required) is None:
            raise _invalid(required, f"sizing {self.sizing.value} needs {required}")
        for mode, name in _MODE_PARAMETER.items():
            if mode is not self.sizing and getattr(self, name) is not None:
                raise _invalid(name, f"{name} is used only with sizing {mode.value}, not {self.sizing.value}")
        if self.sizing is not SizingMode.MULTIPLIER and self.multiplier != 1:
            raise _invalid("multiplier", f"multiplier is used only with sizing multiplier, not {self.sizing.value}")

    def _validate_symbols(self) -> None:
        if self.allow_symbols is not None and not self.allow_symbols:
            raise _invalid("allow_symbols", "an empty allow list copies nothing; use null to allow every symbol")
        for name in ("allow_symbols", "deny_symbols"):
            entries: tuple[str, ...] = getattr(self, name) or ()
            if len(entries) > MAX_SYMBOL_ENTRIES:
                raise _invalid(name, f"at most {MAX_SYMBOL_ENTRIES} symbols")
            for entry in entries:
                _check_symbol(name, entry)
        if len(self.symbol_map) > MAX_SYMBOL_ENTRIES:
            raise _invalid("symbol_map", f"at most {MAX_SYMBOL_ENTRIES} entries")
        mapped_keys: set[str] = set()
        for source, target in self.symbol_map.items():
            _check_symbol("symbol_map", source)
            _check_symbol("symbol_map", target)
            if symbol_key(source) in mapped_keys:
                raise _invalid("symbol_map", f"{source!r} is mapped twice (symbols compare as {symbol_key(source)})")
            mapped_keys.add(symbol_key(source))
        both = {symbol_key(s) for s in self.allow_symbols or ()} & {symbol_key(s) for s in self.deny_symbols}
        if both:
            raise _invalid("deny_symbols", f"{', '.join(sorted(both))} both allowed and denied")


_MODE_PARAMETER: dict[SizingMode, str] = {
    SizingMode.FIXED_QTY: "fixed_qty",
    SizingMode.EQUITY_RATIO: "allocated_amount",
    SizingMode.FIXED_NOTIONAL: "fixed_notional",
    SizingMode.RISK_PERCENT: "risk_percent",
}
"""The parameter each mode owns. ``allocated_amount`` is optional for its mode; the others are required."""
_OPTIONAL_PARAMETER = frozenset({SizingMode.EQUITY_RATIO})


def _invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", extra={"field": field})


def _check_decimal(name: str, value: Any) -> None:
    if value is None:
        return
    # msgspec does not type-check on __init__, so a float built in Python would slip through.
    if not isinstance(value, Decimal):
        raise _invalid(name, 'must be a decimal (a string such as "1.5"), never a float')
    if not value.is_finite():
        raise _invalid(name, f"must be finite, got {value}")


def _check_positive(name: str, value: Decimal | None) -> None:
    _check_decimal(name, value)
    if value is not None and value <= 0:
        raise _invalid(name, f"must be positive, got {value}")


def _check_symbol(name: str, symbol: str) -> None:
    if not symbol_key(symbol) or len(symbol) > 64:
        raise _invalid(name, f"{symbol!r} is not a symbol")


def encode_settings(settings: CopySettings) -> bytes:
    """JSON for storage and responses; decimals as strings, so they round-trip exactly."""
    return msgspec.json.encode(settings)


def decode_settings(data: bytes | str) -> CopySettings:
    """Settings from JSON, checked; any problem is :class:`InvalidInput` naming the field where it can."""
    try:
        return msgspec.json.decode(data, type=CopySettings)
    except msgspec.ValidationError as exc:
        raise _from_validation_error(exc) from None
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"copy settings are not valid JSON: {exc}") from None


_AT_PATH = re.compile(r" - at `\$\.?([^`]*)`$")
_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]*)`")


def _from_validation_error(exc: msgspec.ValidationError) -> InvalidInput:
    message = str(exc)
    found = _AT_PATH.search(message) or _UNKNOWN_FIELD.search(message)
    if found is None:
        return InvalidInput(f"copy settings: {message}")
    # "$.trading_hours[0].start" -> "trading_hours.start": the field, not the position in a list.
    field = re.sub(r"\[\d+\]", "", found.group(1)) or "settings"
    return InvalidInput(f"{field}: {message}", extra={"field": field})
