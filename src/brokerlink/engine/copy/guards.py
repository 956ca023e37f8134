"""The follower's guards as pure checks: each returns ``None`` (go ahead) or a :class:`Skip` (why not).

The guards hold back new copies only. Closing a copy reduces risk, so the runtime never passes
a close through them: a close outside trading hours or past the drawdown limit still happens.
Symbol filtering and resolution are in :mod:`brokerlink.engine.copy.symbols`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, InvalidOperation, Overflow
from typing import Literal

from brokerlink.domain.enums import Side
from brokerlink.engine.copy.reasons import Skip, SkipReason
from brokerlink.engine.copy.settings import (
    CopySettings,
    Direction,
    DrawdownPeriod,
    OnSubscribe,
    SlippageAction,
)
from brokerlink.kit.money import round_limit_price

_BPS = Decimal(10_000)
_HUNDRED = Decimal(100)
_WIDE = Context(prec=60, traps=[InvalidOperation, DivisionByZero, Overflow])
_BPS_PLACES = Decimal("0.0001")
_LIMIT_SIDE: dict[Side, Literal["buy", "sell"]] = {Side.BUY: "buy", Side.SELL: "sell"}


def follower_side(settings: CopySettings, provider_side: Side) -> Side:
    """The side the follower trades: the provider's, or the opposite with ``direction: reversed``."""
    return provider_side.opposite if settings.direction is Direction.REVERSED else provider_side


def within_trading_hours(settings: CopySettings, now: datetime) -> bool:
    """Whether ``now`` (timezone-aware) is inside one of the follower's windows; no windows means always."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not settings.trading_hours:
        return True
    utc = now.astimezone(UTC)
    weekday, at = utc.weekday(), utc.time()
    return any(window.contains(weekday, at) for window in settings.trading_hours)


def trading_hours_guard(settings: CopySettings, now: datetime) -> Skip | None:
    """Skip a new copy outside the follower's trading hours."""
    if within_trading_hours(settings, now):
        return None
    return Skip(
        reason=SkipReason.OUTSIDE_TRADING_HOURS,
        detail=f"{now.astimezone(UTC):%a %H:%M} UTC is outside the follower's trading hours",
    )


def slippage_bps(side: Side, provider_price: Decimal, fill_price: Decimal) -> Decimal:
    """Slippage of a follower's price against the provider's, in basis points, to 4 places (half-even).

    Positive is worse for the follower (a buy above, a sell below the provider's price); negative
    is a price improvement. ``side`` is the follower's side.
    """
    return _adverse_bps(side, provider_price, fill_price).quantize(_BPS_PLACES, rounding=ROUND_HALF_EVEN)


def _adverse_bps(side: Side, provider_price: Decimal, price: Decimal) -> Decimal:
    if provider_price <= 0:
        raise ValueError(f"provider_price must be positive, got {provider_price}")
    moved = _WIDE.subtract(price, provider_price) if side is Side.BUY else _WIDE.subtract(provider_price, price)
    return _WIDE.divide(_WIDE.multiply(moved, _BPS), provider_price)


def slippage_decision(
    settings: CopySettings,
    side: Side,
    provider_price: Decimal,
    follower_price: Decimal | None,
    tick_size: Decimal,
) -> Decimal | Skip | None:
    """Apply the slippage guard to a new copy on the follower's ``side``.

    Returns ``None`` to send a market order (no guard, or ``skip`` mode and the follower's price is
    within ``max_slippage_bps`` of the provider's), a :class:`Skip` (``skip`` mode and too far, or
    no follower price to check), or, in ``limit`` mode, the limit price: the provider's
    price plus (buy) or minus (sell) the tolerance, rounded to the tick on the side that stays
    within it (a buy limit down, a sell limit up).
    """
    tolerance = settings.max_slippage_bps
    if tolerance is None:
        return None
    if provider_price <= 0:
        return Skip(reason=SkipReason.NO_PRICE, detail=f"the provider's price {provider_price} is not usable")
    if settings.slippage_action is SlippageAction.LIMIT:
        return _limit_price(side, provider_price, tolerance, tick_size)
    if follower_price is None:
        return Skip(reason=SkipReason.NO_PRICE, detail="no follower price to check slippage against")
    adverse = _adverse_bps(side, provider_price, follower_price)
    if adverse <= tolerance:
        return None
    return Skip(
        reason=SkipReason.SLIPPAGE,
        detail=f"{side.value} at {follower_price} is {adverse.quantize(_BPS_PLACES)} bps worse than the "
        f"provider's {provider_price}; max_slippage_bps is {tolerance}",
    )


def _limit_price(side: Side, provider_price: Decimal, tolerance: Decimal, tick_size: Decimal) -> Decimal | Skip:
    factor = _WIDE.divide(_WIDE.add(_BPS, tolerance * side.sign), _BPS)
    limit = round_limit_price(_WIDE.multiply(provider_price, factor), tick_size, _LIMIT_SIDE[side])
    if limit <= 0:  # a buy priced below one tick: no tick price is within the tolerance
        return Skip(
            reason=SkipReason.SLIPPAGE,
            detail=f"no {side.value} limit on the {tick_size} tick is within {tolerance} bps of {provider_price}",
        )
    return limit


def equity_guard(
    settings: CopySettings, start_equity: Decimal, period_peak_equity: Decimal, current_equity: Decimal
) -> Skip | None:
    """The copy stop-loss and the drawdown guard, in that order. Each triggers when its limit is reached.

    ``start_equity`` is the subscription's equity at its start (its allocation, if it has one);
    ``period_peak_equity`` the highest equity since :func:`period_start` of the current
    ``drawdown_period``; all three in the same currency and scope (the runtime picks account or
    subscription equity). What a triggered guard does beyond refusing new copies (close the
    copies, stop the subscription) is the runtime's decision; the reason tells it which fired.
    """
    stop_pct = settings.copy_stop_loss_pct
    if stop_pct is not None:
        if start_equity <= 0:
            return Skip(
                reason=SkipReason.INSUFFICIENT_EQUITY, detail="the subscription's starting equity is not positive"
            )
        if _reached(start_equity, current_equity, stop_pct):
            return Skip(
                reason=SkipReason.COPY_STOP_LOSS,
                detail=f"equity {current_equity} is down {_percent_down(start_equity, current_equity)}% from "
                f"{start_equity}; copy_stop_loss_pct is {stop_pct}",
            )
    drawdown_pct = settings.max_drawdown_pct
    if drawdown_pct is not None:
        if period_peak_equity <= 0:
            return Skip(reason=SkipReason.INSUFFICIENT_EQUITY, detail="the period's peak equity is not positive")
        if _reached(period_peak_equity, current_equity, drawdown_pct):
            return Skip(
                reason=SkipReason.DRAWDOWN_GUARD,
                detail=f"equity {current_equity} is down {_percent_down(period_peak_equity, current_equity)}% "
                f"from this {settings.drawdown_period.value}'s peak {period_peak_equity}; "
                f"max_drawdown_pct is {drawdown_pct}",
            )
    return None


def _reached(base: Decimal, current: Decimal, pct: Decimal) -> bool:
    """Whether ``current`` is ``pct`` percent or more below ``base``: multiplied out, so nothing is rounded."""
    return _WIDE.multiply(_WIDE.subtract(base, current), _HUNDRED) >= _WIDE.multiply(pct, base)


def _percent_down(base: Decimal, current: Decimal) -> Decimal:
    return _WIDE.divide((base - current) * _HUNDRED, base).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)


def period_start(period: DrawdownPeriod, now: datetime) -> datetime:
    """The UTC start of the drawdown period containing ``now``: midnight, Monday midnight, or the 1st."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period is DrawdownPeriod.DAY:
        return midnight
    if period is DrawdownPeriod.WEEK:
        return midnight - timedelta(days=midnight.weekday())
    return midnight.replace(day=1)


def subscribe_decision(
    settings: CopySettings, side: Side, provider_entry: Decimal | None, follower_price: Decimal | None
) -> Skip | None:
    """Whether to copy a provider position that was already open when the follower subscribed.

    ``side`` is the follower's side. ``skip`` and ``market`` decide without prices. With
    ``if_not_worse``, the follower's price must be at or below the provider's entry for a buy, at
    or above it for a sell; without both prices it is a ``no_price`` skip.
    """
    policy = settings.on_subscribe
    if policy is OnSubscribe.SKIP:
        return Skip(
            reason=SkipReason.ON_SUBSCRIBE_SKIP,
            detail="the provider opened this before the subscription, and on_subscribe is skip",
        )
    if policy is OnSubscribe.MARKET:
        return None
    if follower_price is None or provider_entry is None:
        return Skip(reason=SkipReason.NO_PRICE, detail="no follower price to compare with the provider's entry")
    if follower_price > provider_entry if side is Side.BUY else follower_price < provider_entry:
        return Skip(
            reason=SkipReason.WORSE_THAN_ENTRY,
            detail=f"{side.value} at {follower_price} is worse than the provider's entry {provider_entry}",
        )
    return None
