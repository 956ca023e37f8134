"""How much the follower trades: the size of a copy that opens, and the share of a copy that closes.

Opening (:func:`size_open`) runs in this order:

1. the raw quantity of the sizing mode (:class:`~brokerlink.engine.copy.settings.SizingMode`);
2. rounded **down** to the instrument's ``qty_step``: a follower never gets more than computed;
3. the caps (``max_qty_per_order``, the venue's ``max_qty``, ``max_exposure_per_symbol``,
   ``max_leverage``) **clamp** it down to the tightest of them, rounded down to the step again.
   A cap skips the copy only when what it leaves is below the venue's minimum (or it leaves
   nothing); ``max_open_positions`` cannot clamp, so it skips;
4. below the venue's minimum (``min_qty``, ``min_notional``) the copy is skipped, or, with
   ``force_min_qty``, sent at the smallest valid quantity: the one place a size rounds up, and
   only within every cap (a minimum that breaks a cap skips, naming the cap).

Closing (:func:`close_qty`) is proportional: the provider closing a fraction of its position
closes that fraction of what the follower holds in the link. It is the *remaining* quantity
that rounds down to the step, so the follower never stays more exposed than its share; a
remainder below the venue's minimum is closed too; a flat provider means a flat follower.

Every quotient is computed in a wide context that rounds toward zero (or away, for the forced
minimum), so a 28-digit intermediate can never round a size up past a step boundary.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_UP, Context, Decimal, DivisionByZero, InvalidOperation, Overflow

import msgspec

from brokerlink.domain.models import Instrument
from brokerlink.engine.copy.reasons import Skip, SkipReason
from brokerlink.engine.copy.settings import CopySettings, SizingMode
from brokerlink.kit.money import round_down_to_step, round_to_tick

_ZERO = Decimal(0)
_ONE = Decimal(1)
_HUNDRED = Decimal(100)
_TRAPS = [InvalidOperation, DivisionByZero, Overflow]
_DOWN = Context(prec=100, rounding=ROUND_DOWN, traps=_TRAPS)
_UP = Context(prec=100, rounding=ROUND_UP, traps=_TRAPS)


class OpenContext(msgspec.Struct, frozen=True, kw_only=True):
    """What sizing needs to know about one provider trade and the follower's account.

    Quantities are absolute (the side is decided elsewhere). Currencies: ``provider_equity`` is
    in the provider's account currency; ``follower_equity`` and the exposures are in the
    follower's account currency; prices are in the instrument's quote currency. ``fx_rate`` is
    follower-account currency per provider-account currency, ``quote_rate`` follower-account
    currency per instrument quote currency (both 1 when everything is in one currency).
    """

    instrument: Instrument
    """The follower's instrument (from :func:`~brokerlink.engine.copy.symbols.resolve_symbol`)."""
    provider_qty: Decimal
    provider_price: Decimal
    """The provider's fill price (or entry price, for positions open at subscription)."""
    follower_price: Decimal | None = None
    """The price the follower would trade at (its quote); notional checks use the provider's price without it."""
    provider_equity: Decimal | None = None
    follower_equity: Decimal | None = None
    fx_rate: Decimal = _ONE
    quote_rate: Decimal = _ONE
    provider_stop_loss: Decimal | None = None
    follower_open_positions: int = 0
    adds_to_open_position: bool = False
    """The copy adds to a position the follower already holds, so ``max_open_positions`` does not apply."""
    follower_symbol_exposure: Decimal = _ZERO
    """Notional the follower already holds in this symbol (absolute)."""
    follower_gross_exposure: Decimal = _ZERO
    """Notional the follower holds over all symbols (absolute), for ``max_leverage``."""

    def __post_init__(self) -> None:
        for name in ("provider_qty", "fx_rate", "quote_rate"):
            if _number(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("follower_symbol_exposure", "follower_gross_exposure"):
            if _number(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        for name in ("provider_price", "follower_price", "provider_equity", "follower_equity", "provider_stop_loss"):
            if getattr(self, name) is not None:
                _number(self, name)
        if self.follower_open_positions < 0:
            raise ValueError("follower_open_positions must not be negative")

    @property
    def price(self) -> Decimal:
        """The reference price for notional: the follower's price if known, else the provider's."""
        return self.provider_price if self.follower_price is None else self.follower_price


class OpenSize(msgspec.Struct, frozen=True, kw_only=True):
    """A copy's size and how it was reached (recorded with the copy, shown to the follower)."""

    qty: Decimal
    """What to send: positive, on the step grid, within every cap, at or above the venue's minimum."""
    raw_qty: Decimal
    """The sizing mode's quantity before rounding and caps."""
    capped_by: SkipReason | None = None
    """The cap that clamped the size, if one did."""
    forced_min: bool = False
    """Raised to the venue's minimum because the follower chose ``force_min_qty``."""


def size_open(settings: CopySettings, ctx: OpenContext) -> Decimal | Skip:
    """The quantity the follower opens for a provider trade, or why it opens nothing (module docstring)."""
    sized = size_open_detail(settings, ctx)
    return sized if isinstance(sized, Skip) else sized.qty


def size_open_detail(settings: CopySettings, ctx: OpenContext) -> OpenSize | Skip:
    """Like :func:`size_open`, with the raw quantity and whether a cap or the forced minimum changed it."""
    blocked = _open_blocked(settings, ctx)
    if blocked is not None:
        return blocked
    raw = raw_qty(settings, ctx)
    if isinstance(raw, Skip):
        return raw
    limit = _tightest_cap(settings, ctx, ctx.price)
    if isinstance(limit, Skip):
        return limit
    return _fit(settings, ctx.instrument, raw, limit, ctx.price)


def _open_blocked(settings: CopySettings, ctx: OpenContext) -> Skip | None:
    if ctx.price <= 0:
        return Skip(reason=SkipReason.NO_PRICE, detail=f"no usable price for {ctx.instrument.symbol} (got {ctx.price})")
    most = settings.max_open_positions
    if most is not None and not ctx.adds_to_open_position and ctx.follower_open_positions >= most:
        return Skip(
            reason=SkipReason.MAX_OPEN_POSITIONS,
            detail=f"{ctx.follower_open_positions} positions open, the most allowed is {most}",
        )
    return None


def _fit(
    settings: CopySettings,
    inst: Instrument,
    raw: Decimal,
    limit: tuple[Decimal, SkipReason] | None,
    price: Decimal,
) -> OpenSize | Skip:
    """Round ``raw`` down, clamp it to ``limit``, then hold it to the venue's minimum (skip or force)."""
    step = inst.qty_step
    minimum = minimum_qty(inst, price)
    rounded = round_down_to_step(raw, step)
    if rounded >= minimum:
        if limit is None or rounded <= limit[0]:
            return OpenSize(qty=rounded, raw_qty=raw)
        cap_qty, cap = limit
        clamped = round_down_to_step(cap_qty, step)
        if clamped >= minimum:
            return OpenSize(qty=clamped, raw_qty=raw, capped_by=cap)
        return Skip(
            reason=cap,
            detail=f"{_CAP_NAMES[cap]} leaves {clamped} of {rounded} {inst.symbol}, below the minimum {minimum}",
        )
    if not settings.force_min_qty:
        return _below_minimum(inst, rounded, raw, price)
    if limit is not None and minimum > limit[0]:
        cap = limit[1]
        return Skip(
            reason=cap,
            detail=f"{rounded} {inst.symbol} is below the minimum {minimum}, and forcing the minimum "
            f"would break {_CAP_NAMES[cap]} (room for {round_down_to_step(limit[0], step)})",
        )
    return OpenSize(qty=minimum, raw_qty=raw, forced_min=True)


def raw_qty(settings: CopySettings, ctx: OpenContext) -> Decimal | Skip:
    """The sizing mode's quantity before rounding and caps (exact, or truncated toward zero past 100 digits).

    - ``fixed_qty``: ``fixed_qty``;
    - ``multiplier``: ``multiplier x provider_qty``;
    - ``equity_ratio``: ``provider_qty x base / (provider_equity x fx_rate)`` where ``base`` is the
      follower's equity, or ``allocated_amount`` when set (but never more than the equity);
    - ``fixed_notional``: ``fixed_notional / (price x contract_size x quote_rate)``;
    - ``risk_percent``: ``follower_equity x risk_percent / 100 / (|provider_price - provider_stop_loss| x
      contract_size x quote_rate)``: the provider's own entry and stop, so both are in one price scale.
    """
    inst = ctx.instrument
    mode = settings.sizing
    if mode is SizingMode.FIXED_QTY:
        return _required(settings.fixed_qty)
    if mode is SizingMode.MULTIPLIER:
        return _DOWN.multiply(settings.multiplier, ctx.provider_qty)
    if mode is SizingMode.FIXED_NOTIONAL:
        unit_value = _DOWN.multiply(_DOWN.multiply(ctx.price, inst.contract_size), ctx.quote_rate)
        return _DOWN.divide(_required(settings.fixed_notional), unit_value)
    if mode is SizingMode.EQUITY_RATIO:
        return _equity_ratio(settings, ctx)
    return _risk_percent(settings, ctx)


def _equity_ratio(settings: CopySettings, ctx: OpenContext) -> Decimal | Skip:
    if ctx.provider_equity is None or ctx.follower_equity is None:
        whose = "provider" if ctx.provider_equity is None else "follower"
        return Skip(reason=SkipReason.EQUITY_UNKNOWN, detail=f"the {whose}'s equity is not known")
    base = ctx.follower_equity
    if settings.allocated_amount is not None:
        base = min(base, settings.allocated_amount)
    if base <= 0 or ctx.provider_equity <= 0:
        whose = "follower" if base <= 0 else "provider"
        return Skip(reason=SkipReason.INSUFFICIENT_EQUITY, detail=f"the {whose}'s equity is not positive")
    provider_base = _DOWN.multiply(ctx.provider_equity, ctx.fx_rate)
    return _DOWN.divide(_DOWN.multiply(ctx.provider_qty, base), provider_base)


def _risk_percent(settings: CopySettings, ctx: OpenContext) -> Decimal | Skip:
    stop = ctx.provider_stop_loss
    if stop is None or stop == ctx.provider_price:
        what = "no stop-loss" if stop is None else "a stop-loss at its entry price"
        return Skip(reason=SkipReason.NO_STOP_LOSS, detail=f"risk sizing needs the provider's stop-loss; it has {what}")
    if ctx.follower_equity is None:
        return Skip(reason=SkipReason.EQUITY_UNKNOWN, detail="the follower's equity is not known")
    if ctx.follower_equity <= 0:
        return Skip(reason=SkipReason.INSUFFICIENT_EQUITY, detail="the follower's equity is not positive")
    at_risk = _DOWN.multiply(ctx.follower_equity, _required(settings.risk_percent))
    distance = abs(ctx.provider_price - stop)
    loss_per_unit = _DOWN.multiply(
        _DOWN.multiply(_DOWN.multiply(distance, ctx.instrument.contract_size), ctx.quote_rate), _HUNDRED
    )
    return _DOWN.divide(at_risk, loss_per_unit)


def minimum_qty(instrument: Instrument, price: Decimal) -> Decimal:
    """The smallest quantity the venue accepts at ``price``: on the step grid, >= ``min_qty``, >= ``min_notional``."""
    step = instrument.qty_step
    floor = max(instrument.min_qty, step)
    if instrument.min_notional > 0:
        unit_notional = _UP.multiply(price, instrument.contract_size)
        floor = max(floor, _UP.divide(instrument.min_notional, unit_notional))
    return round_to_tick(floor, step, "up")


_CAP_NAMES: dict[SkipReason, str] = {
    SkipReason.MAX_QTY_PER_ORDER: "max_qty_per_order",
    SkipReason.VENUE_MAX_QTY: "the venue's max_qty",
    SkipReason.MAX_EXPOSURE: "max_exposure_per_symbol",
    SkipReason.MAX_LEVERAGE: "max_leverage",
}


def _tightest_cap(settings: CopySettings, ctx: OpenContext, price: Decimal) -> tuple[Decimal, SkipReason] | Skip | None:
    """The smallest quantity any cap allows (unrounded) and which cap it is; a Skip if a cap leaves no room."""
    inst = ctx.instrument
    caps: list[tuple[Decimal, SkipReason]] = []
    if settings.max_qty_per_order is not None:
        caps.append((settings.max_qty_per_order, SkipReason.MAX_QTY_PER_ORDER))
    if inst.max_qty is not None:
        caps.append((inst.max_qty, SkipReason.VENUE_MAX_QTY))
    unit_value = _DOWN.multiply(_DOWN.multiply(price, inst.contract_size), ctx.quote_rate)
    if settings.max_exposure_per_symbol is not None:
        room = settings.max_exposure_per_symbol - ctx.follower_symbol_exposure
        if room <= 0:
            return Skip(
                reason=SkipReason.MAX_EXPOSURE,
                detail=f"{ctx.follower_symbol_exposure} already held in {inst.symbol}; "
                f"max_exposure_per_symbol is {settings.max_exposure_per_symbol}",
            )
        caps.append((_DOWN.divide(room, unit_value), SkipReason.MAX_EXPOSURE))
    if settings.max_leverage is not None:
        equity = ctx.follower_equity
        if equity is None:
            return Skip(reason=SkipReason.EQUITY_UNKNOWN, detail="max_leverage needs the follower's equity")
        if equity <= 0:
            return Skip(reason=SkipReason.INSUFFICIENT_EQUITY, detail="the follower's equity is not positive")
        room = _DOWN.multiply(settings.max_leverage, equity) - ctx.follower_gross_exposure
        if room <= 0:
            return Skip(
                reason=SkipReason.MAX_LEVERAGE,
                detail=f"gross exposure {ctx.follower_gross_exposure} on equity {equity} is already at "
                f"max_leverage {settings.max_leverage}",
            )
        caps.append((_DOWN.divide(room, unit_value), SkipReason.MAX_LEVERAGE))
    # The first of equal caps wins, so the reason is stable: the follower's own cap before the venue's.
    return min(caps, key=lambda cap: cap[0]) if caps else None


def _below_minimum(inst: Instrument, rounded: Decimal, raw: Decimal, price: Decimal) -> Skip:
    if rounded == 0:
        return Skip(
            reason=SkipReason.ZERO_AFTER_ROUNDING,
            detail=f"{_show(raw)} {inst.symbol} rounds down to 0 at a step of {inst.qty_step}",
        )
    if rounded < inst.min_qty:
        return Skip(
            reason=SkipReason.BELOW_MIN_QTY,
            detail=f"{rounded} {inst.symbol} is below the minimum quantity {inst.min_qty}",
        )
    return Skip(
        reason=SkipReason.BELOW_MIN_NOTIONAL,
        detail=f"{rounded} {inst.symbol} at {price} is worth {inst.notional(rounded, price)}, "
        f"below the minimum notional {inst.min_notional}",
    )


def close_qty(
    held: Decimal, provider_before: Decimal, provider_closed: Decimal, qty_step: Decimal, *, min_qty: Decimal = _ZERO
) -> Decimal:
    """How much of ``held`` the follower closes when the provider closes ``provider_closed`` of ``provider_before``.

    All inputs are absolute quantities. The follower keeps ``held x (before - closed) / before``
    rounded **down** to ``qty_step`` and closes the rest, so it never stays more exposed than its
    proportional share (the close is off by less than one step, upwards). It closes everything
    held when the provider is flat (``closed >= before``, which includes the closing part of a
    reversal; the opening part is a new copy) or when what would remain is below ``min_qty``
    (a remainder the venue could not close on its own later). The result is never more than
    ``held``, never negative, and zero only when nothing is held or the provider closed nothing
    while still holding something. When ``held`` is
    on the step grid so is the result.
    """
    for name, value in (("held", held), ("provider_before", provider_before), ("provider_closed", provider_closed)):
        if not value.is_finite() or value < 0:
            raise ValueError(f"{name} must be a non-negative quantity, got {value}")
    if held == 0:
        return _ZERO
    if provider_closed >= provider_before:
        return held
    if provider_closed == 0:
        return _ZERO
    kept = _DOWN.divide(_DOWN.multiply(held, provider_before - provider_closed), provider_before)
    kept = round_down_to_step(kept, qty_step)
    if kept <= 0 or kept < min_qty:
        return held
    return held - kept


def _number(ctx: OpenContext, name: str) -> Decimal:
    value = getattr(ctx, name)
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError(f"{name} must be a finite Decimal, got {value!r}")
    return value


def _show(value: Decimal) -> str:
    """A computed quantity for a person: at most 10 decimals (truncated), no exponent, no trailing zeros."""
    shown = value.quantize(Decimal("1e-10"), rounding=ROUND_DOWN, context=_DOWN).normalize(context=_DOWN)
    return format(shown, "f")


def _required(value: Decimal | None) -> Decimal:
    # CopySettings.validate guarantees the mode's parameter; this narrows the type for mypy.
    if value is None:  # pragma: no cover - refused by CopySettings.validate
        raise ValueError("the sizing mode's parameter is missing")
    return value
