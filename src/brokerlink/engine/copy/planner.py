"""What one provider fill means for each follower: the orders to place and the skips to record.

Pure: the runtime (:mod:`brokerlink.engine.copy.service`) gathers the inputs (the signal, each
subscription's settings, open link, instruments, quote and equity) and writes the result in the
same transaction that records the signal.

A provider fill changes the provider's net position on a symbol from ``before`` to ``after``
(signed). Read as actions:

- away from flat, same direction (``|after| > |before|``): **open** (from flat) or **increase**, by
  the fill's quantity: sized by the follower's settings, checked by every guard;
- towards flat (``|after| < |before|``): **reduce** the follower's link by the same fraction of
  what it holds, or **close** it entirely when the provider is flat;
- through flat (a reversal): **close** the link, then **open** a new one for ``|after|``.

Closes are never held back by a guard, a pause or close-only mode: a follower must always be able
to get out. Opens are skipped, with a machine-readable reason, when the subscription is paused or
close-only, when repeated refusals paused the follower symbol (``symbol_paused``), or when a guard,
the symbol filter or the sizing says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal

import msgspec

from brokerlink.domain.copy import CopyLink, IntentAction, SubscriptionStatus
from brokerlink.domain.enums import Side
from brokerlink.domain.models import Instrument, Quote
from brokerlink.engine.copy.guards import equity_guard, follower_side, slippage_decision, trading_hours_guard
from brokerlink.engine.copy.reasons import Skip, SkipReason
from brokerlink.engine.copy.settings import CopySettings
from brokerlink.engine.copy.sizing import OpenContext, close_qty, size_open
from brokerlink.engine.copy.symbols import SymbolIndex, resolve_symbol

_ZERO = Decimal(0)


class Signal(msgspec.Struct, frozen=True, kw_only=True):
    """A provider fill and the provider's net position on its symbol around it (signed)."""

    trade_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    before: Decimal
    after: Decimal
    provider_equity: Decimal | None = None
    stop_loss: Decimal | None = None
    """The provider's stop-loss on the position, if known: ``risk_percent`` sizing skips without it."""


class Follower(msgspec.Struct, frozen=True, kw_only=True):
    """One subscription as the planner sees it."""

    subscription_id: str
    status: SubscriptionStatus
    settings: CopySettings
    link: CopyLink | None
    """The open link for the signal's symbol, if any."""
    instruments: SymbolIndex | Mapping[str, Instrument] | None
    """The follower broker's instruments (as last seen, when the connection is down); ``None`` if never seen."""
    connected: bool = True
    """Whether the follower's account is connected now: opens need it, closes are planned regardless."""
    equity: Decimal | None = None
    start_equity: Decimal | None = None
    period_peak_equity: Decimal | None = None
    """The highest equity seen in the current drawdown period (this reading included), when tracked."""
    open_positions: int = 0
    exposures: Mapping[str, Decimal] = msgspec.field(default_factory=dict)
    """Notional held per follower symbol (in the account currency): what the exposure caps count."""
    paused_symbols: frozenset[str] = frozenset()
    """Follower symbols paused after repeated refusals (:mod:`~brokerlink.engine.copy.rejects`), as
    stored: the instrument's symbol at the follower's broker. No opens or increases in them."""


class PlannedOrder(msgspec.Struct, frozen=True, kw_only=True):
    """An order to place for a follower, and what it does to the link."""

    action: IntentAction
    symbol: str
    side: Side
    qty: Decimal
    limit_price: Decimal | None = None
    link_id: str | None = None
    """The link it reduces or closes; ``None`` for an open (the runtime creates the link)."""
    part: int = 0
    """For a close split into several orders (above the venue's maximum), which one: part of its id."""


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """What one follower does about one signal: orders, or the reason it does nothing."""

    subscription_id: str
    orders: tuple[PlannedOrder, ...] = ()
    skip: Skip | None = None


QuoteOf = Callable[[str], Quote | None]


def plan_follower(signal: Signal, follower: Follower, *, quote: QuoteOf, now: datetime) -> Plan:
    """The orders ``follower`` places for ``signal`` (see the module docstring)."""
    orders: list[PlannedOrder] = []
    before, after = signal.before, signal.after
    reversal = before != 0 and after != 0 and (before > 0) != (after > 0)
    closing = reversal or abs(after) < abs(before)
    opened = abs(after) if reversal else abs(after) - abs(before)
    link = follower.link
    if closing and link is not None and link.qty > 0:
        closed = abs(before) if reversal else abs(before) - abs(after)
        orders += _close(follower, link, before=abs(before), closed=closed)
        if sum((o.qty for o in orders), _ZERO) == link.qty:  # closed completely: it frees its place
            freed = link.qty * _price_hint(follower, link.follower_symbol)
            exposures = dict(follower.exposures)
            exposures[link.follower_symbol] = max(_ZERO, exposures.get(link.follower_symbol, _ZERO) - freed)
            follower = msgspec.structs.replace(
                follower, link=None, open_positions=max(0, follower.open_positions - 1), exposures=exposures
            )
    skip: Skip | None = None
    if opened > 0:
        opening = _open(signal, follower, qty=opened, quote=quote, now=now, increase=not reversal and before != 0)
        if isinstance(opening, Skip):
            skip = opening
        else:
            orders.append(opening)
    return Plan(subscription_id=follower.subscription_id, orders=tuple(orders), skip=skip)


def _close(follower: Follower, link: CopyLink, *, before: Decimal, closed: Decimal) -> list[PlannedOrder]:
    """The orders that take the provider's share off the link: one, or several below the venue's maximum."""
    instrument = _instrument(follower, link.follower_symbol)
    # Without the broker's rules (never seen), the link's own grid: every quantity it got was on the step.
    step = instrument.qty_step if instrument is not None else Decimal(1).scaleb(_exponent(link.qty))
    minimum = instrument.min_qty if instrument is not None else _ZERO
    qty = close_qty(link.qty, before, closed, step, min_qty=minimum)
    if qty <= 0:
        return []
    action = IntentAction.CLOSE if qty == link.qty else IntentAction.REDUCE
    side = Side.SELL if link.side is Side.BUY else Side.BUY
    largest = instrument.max_qty if instrument is not None and instrument.max_qty else qty
    parts: list[PlannedOrder] = []
    left = qty
    while left > 0:
        chunk = min(left, largest)
        parts.append(
            PlannedOrder(
                action=action, symbol=link.follower_symbol, side=side, qty=chunk, link_id=link.id, part=len(parts)
            )
        )
        left -= chunk
    return parts


def _exponent(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return exponent if isinstance(exponent, int) and exponent < 0 else 0


def _price_hint(follower: Follower, symbol: str) -> Decimal:
    """Notional per unit the exposure map used for ``symbol`` (zero when the symbol holds nothing)."""
    held = follower.exposures.get(symbol, _ZERO)
    link = follower.link
    return held / link.qty if held and link is not None and link.qty else _ZERO


def _instrument(follower: Follower, symbol: str) -> Instrument | None:
    if follower.instruments is None:
        return None
    if isinstance(follower.instruments, SymbolIndex):
        found = follower.instruments.candidates(symbol, drop_suffixes=False)
        return found[0] if len(found) == 1 else None
    return follower.instruments.get(symbol)


def _open(
    signal: Signal, follower: Follower, *, qty: Decimal, quote: QuoteOf, now: datetime, increase: bool
) -> PlannedOrder | Skip:
    settings = follower.settings
    instrument = _open_target(signal, follower, now)
    if isinstance(instrument, Skip):
        return instrument
    side = follower_side(settings, _opening_side(signal))
    current = quote(instrument.symbol)
    follower_price = None if current is None else (current.ask if side is Side.BUY else current.bid)
    slip = slippage_decision(settings, side, signal.price, follower_price, instrument.tick_size)
    if isinstance(slip, Skip):
        return slip
    link = follower.link
    if link is not None and link.side is not side:
        return Skip(
            reason=SkipReason.DIRECTION_CONFLICT,
            detail=f"a {link.side.value} copy of {signal.symbol} is still open; it closes with the provider",
        )
    sized = size_open(
        settings,
        OpenContext(
            instrument=instrument,
            provider_qty=qty,
            provider_price=signal.price,
            follower_price=follower_price,
            provider_equity=signal.provider_equity,
            follower_equity=follower.equity,
            provider_stop_loss=signal.stop_loss,
            follower_open_positions=follower.open_positions,
            adds_to_open_position=increase and follower.link is not None,
            follower_symbol_exposure=follower.exposures.get(instrument.symbol, _ZERO),
            follower_gross_exposure=sum(follower.exposures.values(), _ZERO),
        ),
    )
    if isinstance(sized, Skip):
        return sized
    action = IntentAction.INCREASE if increase and link is not None and link.side is side else IntentAction.OPEN
    return PlannedOrder(
        action=action,
        symbol=instrument.symbol,
        side=side,
        qty=sized,
        limit_price=slip,
        link_id=link.id if action is IntentAction.INCREASE and link is not None else None,
    )


def _open_target(signal: Signal, follower: Follower, now: datetime) -> Instrument | Skip:
    """The follower's instrument for an open, unless the status, the symbol or a guard rules it out."""
    if follower.status is SubscriptionStatus.PAUSED:
        return Skip(reason=SkipReason.PAUSED, detail="the subscription is paused")
    if follower.status is SubscriptionStatus.CLOSE_ONLY:
        return Skip(reason=SkipReason.CLOSE_ONLY, detail="the subscription only closes copies")
    if follower.instruments is None or not follower.connected:
        return Skip(
            reason=SkipReason.FOLLOWER_DISCONNECTED, detail="the follower's broker connection was down at the signal"
        )
    instrument = resolve_symbol(follower.settings, signal.symbol, follower.instruments)
    if isinstance(instrument, Skip):
        return instrument
    if instrument.symbol in follower.paused_symbols:
        return Skip(
            reason=SkipReason.SYMBOL_PAUSED,
            detail=f"{instrument.symbol} is paused after repeated rejected copy orders; resume it to copy again",
        )
    return trading_hours_guard(follower.settings, now) or _equity(follower) or instrument


def _opening_side(signal: Signal) -> Side:
    """The direction the provider's position moves away from flat."""
    return Side.BUY if signal.after > 0 else Side.SELL


def _equity(follower: Follower) -> Skip | None:
    if follower.start_equity is None or follower.equity is None:
        return None
    # Without a tracked peak (none stored yet), the drawdown guard measures from the subscription's start.
    peak = follower.period_peak_equity if follower.period_peak_equity is not None else follower.start_equity
    return equity_guard(follower.settings, follower.start_equity, peak, follower.equity)
