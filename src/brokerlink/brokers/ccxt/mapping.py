"""ccxt's unified structures (orders, trades, balances) to the domain model.

ccxt has already normalized the exchange's JSON (``status`` ``open``/``closed``/``canceled``/
``expired``/``rejected``, ``side`` ``buy``/``sell``, ``fee`` ``{cost, currency}``); this module turns
those dicts into frozen domain objects with Decimals on the instrument's grid (see
:mod:`brokerlink.brokers.ccxt.markets` for how floats become Decimals).

A fill's ``trade_id`` is ``<venue symbol>:<ccxt trade id>``: exchanges like Binance number trades
per symbol, so the id alone is unique only within one market.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from brokerlink.brokers.ccxt.markets import EIGHT_PLACES, to_decimal
from brokerlink.domain.enums import OrderStatus, OrderType, Side, TimeInForce
from brokerlink.domain.events import OrderFilled
from brokerlink.domain.models import Fill, Instrument, Order

CcxtDict = Mapping[str, Any]
_ZERO = Decimal(0)
_TYPES = {
    "market": OrderType.MARKET,
    "limit": OrderType.LIMIT,
    "limit_maker": OrderType.LIMIT,
    "stop": OrderType.STOP,
    "stop_market": OrderType.STOP,
    "stop_loss": OrderType.STOP,
    "stop_limit": OrderType.STOP_LIMIT,
    "stop_loss_limit": OrderType.STOP_LIMIT,
}
_TIFS = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK, "DAY": TimeInForce.DAY}
_AVG_EXTRA_DIGITS = 6


def when(ms: object, default: datetime) -> datetime:
    """A ccxt timestamp (ms since the epoch) as UTC; ``default`` when absent."""
    if isinstance(ms, int | float) and not isinstance(ms, bool):
        return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)
    return default


def status(order: CcxtDict) -> OrderStatus:
    """The domain status of a ccxt order (``open`` splits into new / partially filled)."""
    raw = order.get("status")
    if raw == "open":
        filled = to_decimal(order.get("filled")) or _ZERO
        return OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.NEW
    return {
        "closed": OrderStatus.FILLED,
        "canceled": OrderStatus.CANCELED,
        "cancelled": OrderStatus.CANCELED,
        "expired": OrderStatus.EXPIRED,
        "rejected": OrderStatus.REJECTED,
    }.get(str(raw), OrderStatus.PENDING_NEW)


def order_type(order: CcxtDict) -> OrderType:
    """The domain order type; a limit order with a trigger price is a stop-limit."""
    kind = _TYPES.get(str(order.get("type") or "").lower(), OrderType.LIMIT)
    if order.get("triggerPrice") or order.get("stopPrice"):
        if kind is OrderType.LIMIT:
            return OrderType.STOP_LIMIT
        if kind is OrderType.MARKET:
            return OrderType.STOP
    return kind


def order(raw: CcxtDict, *, account_id: str, instrument: Instrument, client_order_id: str, now: datetime) -> Order:
    """A ccxt order as the domain's :class:`Order`."""
    kind = order_type(raw)
    step, tick = instrument.qty_step, instrument.tick_size
    filled = to_decimal(raw.get("filled"), step) or _ZERO
    average = to_decimal(raw.get("average"), tick.scaleb(-_AVG_EXTRA_DIGITS)) if filled else None
    created = when(raw.get("timestamp"), now)
    updated = when(raw.get("lastUpdateTimestamp") or raw.get("lastTradeTimestamp"), created)
    venue_id = str(raw["id"])
    return Order(
        id=venue_id,
        client_order_id=client_order_id,
        account_id=account_id,
        symbol=instrument.symbol,
        side=Side.BUY if raw.get("side") == "buy" else Side.SELL,
        qty=to_decimal(raw.get("amount"), step) or _ZERO,
        type=kind,
        tif=_TIFS.get(str(raw.get("timeInForce") or "").upper(), TimeInForce.GTC),
        limit_price=to_decimal(raw.get("price"), tick) if kind in {OrderType.LIMIT, OrderType.STOP_LIMIT} else None,
        stop_price=to_decimal(raw.get("triggerPrice") or raw.get("stopPrice"), tick),
        status=status(raw),
        filled_qty=filled,
        avg_fill_price=average.normalize() if average is not None else None,
        venue_order_id=venue_id,
        created_at=created,
        updated_at=max(updated, created),
    )


def trade_id(trade: CcxtDict, instrument: Instrument) -> str:
    """The domain's trade id of a ccxt trade: unique per venue, not just per market."""
    return f"{instrument.venue_symbol}:{trade['id']}"


def _fee(trade: CcxtDict) -> tuple[Decimal, str | None]:
    fee = trade.get("fee") or {}
    return to_decimal(fee.get("cost"), EIGHT_PLACES) or _ZERO, fee.get("currency")


def fill(
    trade: CcxtDict, *, account_id: str, instrument: Instrument, client_order_id: str | None, now: datetime
) -> Fill:
    """A ccxt trade of the account as the domain's :class:`Fill`."""
    fee, currency = _fee(trade)
    return Fill(
        trade_id=trade_id(trade, instrument),
        order_id=str(trade["order"]) if trade.get("order") is not None else None,
        client_order_id=client_order_id,
        account_id=account_id,
        symbol=instrument.symbol,
        side=Side.BUY if trade.get("side") == "buy" else Side.SELL,
        qty=to_decimal(trade.get("amount"), instrument.qty_step) or _ZERO,
        price=to_decimal(trade.get("price"), instrument.tick_size) or _ZERO,
        fee=fee.normalize() if fee else _ZERO,
        fee_currency=currency,
        ts=when(trade.get("timestamp"), now),
    )


def fill_event(
    trade: CcxtDict, *, account_id: str, instrument: Instrument, client_order_id: str, received: datetime
) -> OrderFilled:
    """A ccxt trade of the account as an :class:`OrderFilled` event."""
    body = fill(trade, account_id=account_id, instrument=instrument, client_order_id=client_order_id, now=received)
    maker = trade.get("takerOrMaker")
    return OrderFilled(
        account_id=account_id,
        ts=received,
        venue_ts=body.ts,
        client_order_id=client_order_id,
        venue_order_id=body.order_id,
        trade_id=body.trade_id,
        symbol=body.symbol,
        side=body.side,
        last_qty=body.qty,
        last_price=body.price,
        commission=body.fee,
        commission_currency=body.fee_currency,
        liquidity=maker if maker in {"maker", "taker"} else None,
    )


def synthetic_client_order_id(venue_order_id: str) -> str:
    """A deterministic client order id for an order placed outside brokerlink (the event model needs one)."""
    return f"venue-{venue_order_id}"
