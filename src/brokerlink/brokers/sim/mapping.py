"""Wire bodies of the sim venue to the normalized model, and venue symbols to canonical ones.

Reports from a venue do not know brokerlink's own order ids: an :class:`Order` built here carries
the venue's order id in both ``id`` and ``venue_order_id``; callers match reports to their own
orders by ``client_order_id``, the idempotency key.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TypedDict

from brokerlink.brokers.sim.wire import (
    AccountBody,
    FillBody,
    InstrumentBody,
    OrderBody,
    PositionBody,
    QuoteBody,
    TradeUpdate,
)
from brokerlink.domain.enums import AssetClass
from brokerlink.domain.events import (
    DomainEvent,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderTriggered,
    OrderUpdated,
)
from brokerlink.domain.models import Balance, Fill, Instrument, Order, Position, Quote


def canonical_symbol(body: InstrumentBody) -> str:
    """``EURUSD`` -> ``EUR/USD``, ``BTCUSDT`` -> ``BTC/USDT``; equities keep their ticker."""
    if body.asset_class in (AssetClass.FX, AssetClass.CRYPTO):
        return f"{body.base}/{body.quote}"
    return body.symbol


class SymbolMap:
    """Both directions between canonical and venue symbols, built from the venue's instrument list."""

    def __init__(self, instruments: list[InstrumentBody]) -> None:
        self._to_venue = {canonical_symbol(i): i.symbol for i in instruments}
        self._to_canonical = {v: k for k, v in self._to_venue.items()}

    def venue(self, canonical: str) -> str:
        """The venue's spelling; ``KeyError`` for an instrument the venue does not list."""
        return self._to_venue[canonical]

    def canonical(self, venue: str) -> str:
        """Our spelling of a venue symbol (unknown symbols pass through unchanged)."""
        return self._to_canonical.get(venue, venue)

    def __contains__(self, canonical: object) -> bool:
        return canonical in self._to_venue


def instrument(body: InstrumentBody) -> Instrument:
    """An instrument with canonical symbol and the venue's rules."""
    return Instrument(
        symbol=canonical_symbol(body),
        venue_symbol=body.symbol,
        asset_class=body.asset_class,
        base=body.base,
        quote=body.quote,
        tick_size=body.tick_size,
        qty_step=body.qty_step,
        min_qty=body.min_qty,
        max_qty=body.max_qty,
        min_notional=body.min_notional,
        contract_size=body.contract_size,
        tradable=body.tradable,
    )


def order(body: OrderBody, *, account_id: str, symbols: SymbolMap) -> Order:
    """The venue's view of an order."""
    return Order(
        id=body.order_id,
        client_order_id=body.client_order_id,
        account_id=account_id,
        symbol=symbols.canonical(body.symbol),
        side=body.side,
        qty=body.qty,
        type=body.type,
        tif=body.tif,
        limit_price=body.limit_price,
        stop_price=body.stop_price,
        status=body.status,
        filled_qty=body.filled_qty,
        avg_fill_price=body.avg_fill_price,
        venue_order_id=body.order_id,
        reject_reason=body.reject_reason,
        created_at=body.created_at,
        updated_at=body.updated_at,
    )


def fill(body: FillBody, *, account_id: str, symbols: SymbolMap) -> Fill:
    """One execution; ``trade_id`` is the venue's execution id (the dedupe key)."""
    return Fill(
        trade_id=body.execution_id,
        order_id=body.order_id,
        client_order_id=body.client_order_id,
        account_id=account_id,
        symbol=symbols.canonical(body.symbol),
        side=body.side,
        qty=body.qty,
        price=body.price,
        fee=body.commission,
        fee_currency=body.commission_currency,
        ts=body.ts,
    )


def fill_event(body: FillBody, *, account_id: str, symbols: SymbolMap, received: datetime) -> OrderFilled:
    """A fill read from a report (reconciliation) as the event the stream would have carried."""
    return OrderFilled(
        account_id=account_id,
        client_order_id=body.client_order_id,
        venue_order_id=body.order_id,
        ts=received,
        venue_ts=body.ts,
        trade_id=body.execution_id,
        symbol=symbols.canonical(body.symbol),
        side=body.side,
        last_qty=body.qty,
        last_price=body.price,
        commission=body.commission,
        commission_currency=body.commission_currency,
        liquidity=body.liquidity,
    )


def position(body: PositionBody, *, account_id: str, symbols: SymbolMap) -> Position:
    """One open position (in hedging mode, one of several for its symbol)."""
    return Position(
        account_id=account_id,
        symbol=symbols.canonical(body.symbol),
        qty=body.qty,
        avg_price=body.avg_price,
        realized_pnl=body.realized_pnl,
        unrealized_pnl=body.unrealized_pnl,
    )


def balance(body: AccountBody, *, account_id: str) -> Balance:
    """Cash, equity and buying power as the venue reports them."""
    return Balance(
        account_id=account_id,
        currency=body.currency,
        cash=body.cash,
        equity=body.equity,
        buying_power=body.buying_power,
        margin_used=body.margin_used,
        ts=body.ts,
    )


def quote(body: QuoteBody, *, symbols: SymbolMap) -> Quote:
    """Top of book (a ``quotes:`` channel message or ``GET /quotes/SYM``); ``ts`` is the venue's time of it."""
    return Quote(
        symbol=symbols.canonical(body.symbol),
        bid=body.bid,
        ask=body.ask,
        bid_size=body.bid_size,
        ask_size=body.ask_size,
        ts=body.ts,
    )


def trade_update_event(update: TradeUpdate, *, account_id: str, symbols: SymbolMap, received: datetime) -> DomainEvent:
    """The normalized event for one ``trade_updates`` message.

    ``ts`` is when we received it, ``venue_ts`` the order's last change at the venue. A fill without
    an execution id, quantity or price is malformed and refused with ``ValueError``: guessing
    would risk booking a fill twice or not at all.
    """
    body = update.order
    common = EventIds(
        account_id=account_id,
        client_order_id=body.client_order_id,
        venue_order_id=body.order_id,
        ts=received,
        venue_ts=body.updated_at,
    )
    simple = _SIMPLE.get(update.event)
    if simple is not None:
        return simple(**common)
    match update.event:
        case "fill" | "partial_fill":
            if update.execution_id is None or update.qty is None or update.price is None:
                raise ValueError(f"fill for {body.client_order_id} lacks execution id, qty or price")
            return OrderFilled(
                **common,
                trade_id=update.execution_id,
                symbol=symbols.canonical(body.symbol),
                side=body.side,
                last_qty=update.qty,
                last_price=update.price,
                commission=update.commission if update.commission is not None else Decimal(0),
                commission_currency=update.commission_currency,
                liquidity=update.liquidity,
            )
        case "canceled":
            return OrderCanceled(**common, reason=update.reason)
        case "replaced":
            return OrderUpdated(**common, qty=body.qty, limit_price=body.limit_price, stop_price=body.stop_price)
        case _:
            return OrderRejected(**common, reason=update.reason or body.reject_reason or "rejected by the venue")


class EventIds(TypedDict):
    """The identity every order event carries."""

    account_id: str
    client_order_id: str
    venue_order_id: str
    ts: datetime
    venue_ts: datetime | None


# Updates that carry nothing beyond the order's identity.
_SIMPLE: dict[str, type[OrderAccepted] | type[OrderExpired] | type[OrderTriggered]] = {
    "new": OrderAccepted,
    "expired": OrderExpired,
    "triggered": OrderTriggered,
}
