"""SL/TP mirroring, the pure part: which of the provider's orders protect its position, and which
protective orders each follower's link should carry (ADR 0027).

**Recognising the provider's stop-loss and take-profit.** Only orders that work at the venue now
(``new`` or ``partially_filled``) on the provider's *closing* side count, and only while the
provider holds a position in the symbol (flat, every order is an entry order, and is ignored):

- a ``stop`` or ``stop_limit`` order whose trigger is on the losing side of the reference price
  (below it for a long) is a **stop-loss**;
- a ``limit`` order beyond the reference price on the winning side (above it for a long) is a
  **take-profit**.

The reference is the provider's current price when known (a working closing limit rests beyond the
market by construction, otherwise it would have filled), else the price is not checked. Orders on
the opening side (adds, breakout entries) and closing-side orders on the wrong side of the price
are ignored. With several candidates the one nearest to the price wins (it triggers first). A
netting account has no reduce-only flag: a protective order larger than the position would reverse
it when it fills, so only ``min(order, position)`` of it is treated as protective.

**The follower's protective orders.** A link copying in the same direction gets a stop at the
provider's stop-loss and a limit at its take-profit. A reversed link is short where the provider is
long: the level where the provider loses is where it wins, so the provider's stop-loss becomes the
follower's take-profit (a limit) and the provider's take-profit its stop-loss (a stop), both at the
provider's prices: the follower exits exactly when the provider does. Prices go on the follower's
tick grid *towards the market* (a sell stop rounds up, a buy stop down; a sell limit rounds down, a
buy limit up), so a follower's stop is never further than the provider's and the follower is never
left in a position the provider has left. Quantities are the link's holding, times the share of
the provider's position the provider's order protects, rounded down to the step: never more than
the follower holds in the link.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

import msgspec

from brokerlink.domain.copy import IntentAction
from brokerlink.domain.enums import OrderStatus, OrderType, Side
from brokerlink.domain.models import Instrument, Order
from brokerlink.engine.copy.reasons import Skip, SkipReason
from brokerlink.kit.money import round_down_to_step, round_to_tick

_ZERO = Decimal(0)
_ONE = Decimal(1)
_WORKING = frozenset({OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED})
_STOPS = frozenset({OrderType.STOP, OrderType.STOP_LIMIT})


class ProviderLevel(msgspec.Struct, frozen=True, kw_only=True):
    """One of the provider's protective orders as the engine reads it."""

    order_id: str
    """Our ``orders.id`` of the provider's order: part of the follower's client order id."""
    price: Decimal
    """The stop's trigger, or the take-profit's limit."""
    share: Decimal
    """The fraction of the provider's position it protects, in (0, 1]."""


class Protection(msgspec.Struct, frozen=True, kw_only=True):
    """The provider's stop-loss and take-profit on one symbol (each may be missing)."""

    stop_loss: ProviderLevel | None = None
    take_profit: ProviderLevel | None = None


class DesiredOrder(msgspec.Struct, frozen=True, kw_only=True):
    """A protective order a follower's link should carry."""

    action: IntentAction
    """``stop_loss`` (a stop) or ``take_profit`` (a limit), in the follower's own terms."""
    side: Side
    qty: Decimal
    price: Decimal
    provider_order_id: str


def provider_protection(
    orders: Iterable[Order], *, symbol: str, position: Decimal, reference: Decimal | None = None
) -> Protection:
    """The provider's stop-loss and take-profit on ``symbol`` for a signed ``position`` (see the module)."""
    if position == 0:
        return Protection()
    long = position > 0
    closing = Side.SELL if long else Side.BUY
    held = abs(position)
    stops: list[ProviderLevel] = []
    limits: list[ProviderLevel] = []
    for order in orders:
        if order.symbol != symbol or order.side is not closing or order.status not in _WORKING:
            continue
        leaves = order.qty - order.filled_qty
        if leaves <= 0:
            continue
        share = min(_ONE, leaves / held)
        if order.type in _STOPS and order.stop_price is not None:
            price = order.stop_price
            if reference is not None and (price >= reference if long else price <= reference):
                continue  # on the winning side: not a stop-loss (a trailing entry, or about to trigger)
            stops.append(ProviderLevel(order_id=order.id, price=price, share=share))
        elif order.type is OrderType.LIMIT and order.limit_price is not None:
            price = order.limit_price
            if reference is not None and (price <= reference if long else price >= reference):
                continue  # not beyond the market: a marketable close, not a take-profit
            limits.append(ProviderLevel(order_id=order.id, price=price, share=share))
    # The nearest to the price triggers first: the highest stop and lowest limit under a long.
    stop_loss = max(stops, key=_price, default=None) if long else min(stops, key=_price, default=None)
    take_profit = min(limits, key=_price, default=None) if long else max(limits, key=_price, default=None)
    return Protection(stop_loss=stop_loss, take_profit=take_profit)


def _price(level: ProviderLevel) -> Decimal:
    return level.price


def follower_orders(
    protection: Protection,
    *,
    link_side: Side,
    link_qty: Decimal,
    reversed_direction: bool,
    instrument: Instrument,
    order_types: frozenset[OrderType],
) -> tuple[list[DesiredOrder], list[Skip]]:
    """The protective orders a link holding ``link_qty`` on ``link_side`` should carry, and the skips.

    ``reversed_direction``: the link copies in reverse, so the provider's stop-loss becomes the
    follower's take-profit and the other way round. ``order_types``: what the follower's broker takes.
    """
    if link_qty <= 0:
        return [], []
    closing = Side.SELL if link_side is Side.BUY else Side.BUY
    pairs: list[tuple[IntentAction, ProviderLevel]] = []
    if protection.stop_loss is not None:
        action = IntentAction.TAKE_PROFIT if reversed_direction else IntentAction.STOP_LOSS
        pairs.append((action, protection.stop_loss))
    if protection.take_profit is not None:
        action = IntentAction.STOP_LOSS if reversed_direction else IntentAction.TAKE_PROFIT
        pairs.append((action, protection.take_profit))
    desired: list[DesiredOrder] = []
    skips: list[Skip] = []
    for action, level in pairs:
        needed = OrderType.STOP if action is IntentAction.STOP_LOSS else OrderType.LIMIT
        if needed not in order_types:
            reason = SkipReason.NO_STOP_ORDERS if needed is OrderType.STOP else SkipReason.NO_LIMIT_ORDERS
            skips.append(
                Skip(reason=reason, detail=f"the follower's broker takes no {needed.value} orders: no {action.value}")
            )
            continue
        qty = round_down_to_step(link_qty * level.share, instrument.qty_step)
        if qty <= 0 or qty < instrument.min_qty:
            skips.append(
                Skip(
                    reason=SkipReason.BELOW_MIN_QTY,
                    detail=f"{action.value} of {qty} is below the minimum of {instrument.min_qty} {instrument.symbol}",
                )
            )
            continue
        price = _towards_market(level.price, instrument.tick_size, action, closing)
        if price <= 0:
            continue
        desired.append(
            DesiredOrder(action=action, side=closing, qty=qty, price=price, provider_order_id=level.order_id)
        )
    return desired, skips


def _towards_market(price: Decimal, tick: Decimal, action: IntentAction, closing: Side) -> Decimal:
    """Round a protective price to the tick on the side of the market, so the follower exits no later
    than the provider: a sell stop (under a long) up, a buy stop down; a sell limit (above a long)
    down, a buy limit up."""
    if action is IntentAction.STOP_LOSS:
        return round_to_tick(price, tick, "up" if closing is Side.SELL else "down")
    return round_to_tick(price, tick, "down" if closing is Side.SELL else "up")
