"""OANDA v20 bodies to the normalized model: symbols, instruments, orders, fills, positions, balances.

Units are OANDA's: signed in orders, fills and trades (positive buys, negative sells), and an
instrument's quantity is a number of units of its base (``contract_size`` 1), on the grid of
``tradeUnitsPrecision``. Prices are on the grid of ``displayPrecision``.

Orders placed outside brokerlink have no ``clientExtensions.id``; they are reported with the client
order id ``oanda-<order id>`` so every order and fill still has one.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from brokerlink.brokers.oanda import wire
from brokerlink.domain.enums import AssetClass, OrderStatus, OrderType, Side, TimeInForce
from brokerlink.domain.events import OrderFilled
from brokerlink.domain.models import Balance, Fill, Instrument, Order, Position, Quote

FOREIGN_PREFIX = "oanda-"
"""Client order ids given to orders that have none at OANDA (placed on another platform)."""

_ASSET_CLASSES = {"CURRENCY": AssetClass.FX, "CFD": AssetClass.CFD, "METAL": AssetClass.CFD}
_TYPES = {"MARKET": OrderType.MARKET, "LIMIT": OrderType.LIMIT, "STOP": OrderType.STOP}
ORDER_TYPES: dict[OrderType, Literal["MARKET", "LIMIT", "STOP"]] = {
    OrderType.MARKET: "MARKET",
    OrderType.LIMIT: "LIMIT",
    OrderType.STOP: "STOP",
}
_TIF_IN = {
    "GTC": TimeInForce.GTC,
    "GTD": TimeInForce.GTC,  # good until a date: we have no date in the model, it works like GTC until then
    "GFD": TimeInForce.DAY,
    "FOK": TimeInForce.FOK,
    "IOC": TimeInForce.IOC,
}
TIF_OUT: dict[TimeInForce, wire.TimeInForceCode] = {
    TimeInForce.GTC: "GTC",
    TimeInForce.DAY: "GFD",
    TimeInForce.FOK: "FOK",
    TimeInForce.IOC: "IOC",
}
_STATES = {
    "PENDING": OrderStatus.NEW,
    "TRIGGERED": OrderStatus.NEW,
    "FILLED": OrderStatus.FILLED,
    "CANCELLED": OrderStatus.CANCELED,
}


def canonical_symbol(name: str) -> str:
    """``EUR_USD`` -> ``EUR/USD``, ``BTC_USD`` -> ``BTC/USD``, ``DE30_EUR`` -> ``DE30/EUR``."""
    base, sep, quote = name.partition("_")
    return f"{base}/{quote}" if sep and base and quote else name


def venue_symbol(symbol: str) -> str:
    """``EUR/USD`` -> ``EUR_USD`` (the inverse of :func:`canonical_symbol`)."""
    return symbol.replace("/", "_", 1)


def client_order_id(extensions: wire.ClientExtensions | None, order_id: str | None) -> str:
    """Our client order id: the ``clientExtensions.id``, or ``oanda-<order id>`` for foreign orders."""
    if extensions is not None and extensions.id:
        return extensions.id
    return f"{FOREIGN_PREFIX}{order_id or 'unknown'}"


def grid(precision: int) -> Decimal:
    """``5`` -> ``0.00001``: the step of a value with that many decimals."""
    return Decimal(1).scaleb(-precision)


def instrument(body: wire.Instrument) -> Instrument:
    """An instrument with OANDA's rules: tick ``10**-displayPrecision``, step ``10**-tradeUnitsPrecision``."""
    base, _, quote = body.name.partition("_")
    max_units = body.maximum_order_units or None
    return Instrument(
        symbol=canonical_symbol(body.name),
        venue_symbol=body.name,
        asset_class=_ASSET_CLASSES.get(body.type, AssetClass.CFD),
        base=base,
        quote=quote,
        tick_size=grid(body.display_precision),
        qty_step=grid(body.trade_units_precision),
        min_qty=body.minimum_trade_size,
        max_qty=max_units,
        contract_size=Decimal(1),
    )


def side_of(units: Decimal) -> Side:
    """Positive units buy, negative units sell."""
    return Side.BUY if units > 0 else Side.SELL


def signed_units(side: Side, qty: Decimal) -> Decimal:
    """Our unsigned quantity and side as OANDA's signed units."""
    return qty if side is Side.BUY else -qty


def order(
    body: wire.Order,
    *,
    account_id: str,
    fill: wire.Transaction | None = None,
    cancel: wire.Transaction | None = None,
) -> Order:
    """The normalized order. ``fill`` is the ``ORDER_FILL`` named by ``fillingTransactionID`` (for the
    filled quantity and price), ``cancel`` the ``ORDER_CANCEL`` (an expiry is reported as ``EXPIRED``)."""
    if body.units is None or body.instrument is None or body.type not in _TYPES:
        raise ValueError(f"order {body.id} of type {body.type} is not a client order")
    status = _STATES[body.state]
    if status is OrderStatus.CANCELED and cancel is not None and cancel.reason == "TIME_IN_FORCE_EXPIRED":
        status = OrderStatus.EXPIRED
    # OANDA fills an order once: a FILLED order filled all its units (the test venue may fill a large
    # resting order in several engine calls; the order's last fill then names the rest).
    filled = abs(fill.units) if fill is not None and fill.units is not None else Decimal(0)
    if body.state == "FILLED":
        filled = abs(body.units)
    if status is OrderStatus.NEW and filled:
        status = OrderStatus.PARTIALLY_FILLED
    order_type = _TYPES[body.type]
    updated = body.filled_time or body.cancelled_time or body.create_time
    return Order(
        id=body.id,
        client_order_id=client_order_id(body.client_extensions, body.id),
        account_id=account_id,
        symbol=canonical_symbol(body.instrument),
        side=side_of(body.units),
        qty=abs(body.units),
        type=order_type,
        tif=_TIF_IN.get(body.time_in_force or "FOK", TimeInForce.GTC),
        limit_price=body.price if order_type is OrderType.LIMIT else None,
        stop_price=body.price if order_type is OrderType.STOP else None,
        status=status,
        filled_qty=filled,
        avg_fill_price=fill_price(fill) if fill is not None and filled else None,
        venue_order_id=body.id,
        reject_reason=cancel.reason if cancel is not None and status is OrderStatus.CANCELED else None,
        created_at=body.create_time,
        updated_at=updated,
    )


def fill_price(txn: wire.Transaction) -> Decimal:
    """The price of an ``ORDER_FILL``: ``fullVWAP`` where given (the deprecated ``price`` otherwise)."""
    price = txn.full_vwap if txn.full_vwap is not None else txn.price
    if price is None:
        raise ValueError(f"fill {txn.id} has no price")
    return price


def _fill_fields(txn: wire.Transaction) -> tuple[str, str, str, Decimal, Decimal, datetime]:
    if txn.type != "ORDER_FILL" or txn.id is None or txn.units is None or txn.instrument is None or txn.time is None:
        raise ValueError(f"transaction {txn.id} is not a complete ORDER_FILL")
    order_id = txn.order_id or txn.id
    coid = txn.client_order_id or f"{FOREIGN_PREFIX}{order_id}"
    return txn.id, order_id, coid, txn.units, fill_price(txn), txn.time


def fill_fee(txn: wire.Transaction) -> Decimal:
    """What the fill cost beyond the price, in the home currency: commission plus guaranteed-stop fee."""
    return (txn.commission or Decimal(0)) + (txn.guaranteed_execution_fee or Decimal(0))


def fill(txn: wire.Transaction, *, account_id: str, currency: str) -> Fill:
    """One ``ORDER_FILL`` as a fill; ``trade_id`` is the transaction id (unique per account)."""
    txn_id, order_id, coid, units, price, ts = _fill_fields(txn)
    return Fill(
        trade_id=txn_id,
        order_id=order_id,
        client_order_id=coid,
        account_id=account_id,
        symbol=canonical_symbol(txn.instrument or ""),
        side=side_of(units),
        qty=abs(units),
        price=price,
        fee=fill_fee(txn),
        fee_currency=currency,
        ts=ts,
    )


def fill_event(txn: wire.Transaction, *, account_id: str, currency: str, received: datetime) -> OrderFilled:
    """One ``ORDER_FILL`` as the event (from the stream or from ``sinceid`` after a gap)."""
    txn_id, order_id, coid, units, price, ts = _fill_fields(txn)
    return OrderFilled(
        account_id=account_id,
        client_order_id=coid,
        venue_order_id=order_id,
        ts=received,
        venue_ts=ts,
        trade_id=txn_id,
        symbol=canonical_symbol(txn.instrument or ""),
        side=side_of(units),
        last_qty=abs(units),
        last_price=price,
        commission=fill_fee(txn),
        commission_currency=currency,
        liquidity=None,  # a dealer: OANDA has no maker/taker
    )


def positions(body: wire.Position, *, account_id: str) -> list[Position]:
    """A position's non-empty sides: one :class:`Position` each (long > 0, short < 0).

    In a netting account at most one side holds units; in a hedging account both can, and each is
    reported as its own position, the way the sim reports several positions per symbol.
    """
    symbol = canonical_symbol(body.instrument)
    return [
        Position(
            account_id=account_id,
            symbol=symbol,
            qty=side.units,
            avg_price=side.average_price or Decimal(0),
            realized_pnl=side.pl,
            unrealized_pnl=side.unrealized_pl,
        )
        for side in (body.long, body.short)
        if side.units
    ]


def balance(body: wire.AccountSummary, *, account_id: str, now: datetime) -> Balance:
    """Cash (``balance``), equity (``NAV``), buying power (free margin at the account's margin rate)."""
    rate = body.margin_rate
    buying_power = body.margin_available / rate if rate else body.margin_available
    return Balance(
        account_id=account_id,
        currency=body.currency,
        cash=body.balance,
        equity=body.nav,
        buying_power=buying_power.quantize(Decimal("0.0001")),
        margin_used=body.margin_used,
        ts=now,
    )


def quote(price: wire.ClientPrice) -> Quote:
    """Top of book of a ``PRICE``: the best bucket of each side (``ValueError`` if a side is empty)."""
    if not price.bids or not price.asks or price.instrument is None:
        raise ValueError(f"price of {price.instrument} has an empty side")
    return Quote(
        symbol=canonical_symbol(price.instrument),
        bid=price.bids[0].price,
        ask=price.asks[0].price,
        bid_size=Decimal(price.bids[0].liquidity),
        ask_size=Decimal(price.asks[0].liquidity),
        ts=price.time,
    )
