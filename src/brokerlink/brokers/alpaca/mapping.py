"""Alpaca's wire bodies to the normalized model: symbols, instrument rules, statuses, orders, fills.

Three Alpaca habits shape this module:

* **Symbols.** Stocks are their ticker (``AAPL``, canonical as is). Crypto pairs are spelled
  ``BTC/USD`` by assets and orders but ``BTCUSD`` by positions and some older messages; both map to
  the canonical ``BTC/USD``.
* **Replacements.** ``PATCH /v2/orders/{id}`` replaces an order with a *new* order (new id, new
  ``client_order_id``). brokerlink names an order by one client order id for its whole life, so the
  adapter gives each replacement the id ``<base>~<n>`` (``~`` never occurs in brokerlink's ids) and
  :func:`base_client_order_id` maps every generation back to ``<base>``.
* **Fill identity.** A fill arrives twice: on ``trade_updates`` (with ``execution_id``) and as a
  ``FILL`` activity (with an ``id`` of its own, ``"<date>::<uuid>"``, whose relation to the
  execution id Alpaca does not document). Both carry the order id and the order's cumulative
  filled quantity after the fill (``order.filled_qty`` / ``cum_qty``), which together name one
  fill of one order: :func:`fill_trade_id` uses that pair, so the same fill gets the same trade id
  whichever way it came.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import TypedDict

from brokerlink.brokers.alpaca.wire import (
    Account,
    Asset,
    LatestQuote,
    MdQuote,
    Order,
    Position,
    TradeActivity,
    TradeUpdate,
)
from brokerlink.domain.enums import AssetClass, OrderStatus, OrderType, Side, TimeInForce
from brokerlink.domain.events import (
    DomainEvent,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderUpdated,
)
from brokerlink.domain.models import Balance, Fill, Instrument, Quote
from brokerlink.domain.models import Order as DomainOrder
from brokerlink.domain.models import Position as DomainPosition

REPLACEMENT_MARK = "~"
_REPLACEMENT = re.compile(r"^(?P<base>.+)~(?P<n>[0-9]+)$")
_CRYPTO_QUOTES = ("USDT", "USDC", "USD", "BTC")
STOCK_TICK = Decimal("0.01")
"""Alpaca refuses sub-penny limit and stop prices for stocks priced at $1 or more (the assets API
publishes no price increment for stocks)."""
FRACTIONAL_STEP = Decimal("0.000000001")
"""``qty`` and ``notional`` "can take up to 9 decimal points"."""
FRACTIONAL_MIN_NOTIONAL = Decimal(1)
"""Alpaca's smallest fractional or notional stock order, in USD."""


# --- client order ids across replacements -------------------------------------------------------


def base_client_order_id(client_order_id: str) -> str:
    """``abc~2`` -> ``abc``: the id brokerlink gave the order, whichever replacement this is."""
    match = _REPLACEMENT.match(client_order_id)
    return match["base"] if match else client_order_id


def next_client_order_id(client_order_id: str) -> str:
    """The id of the next replacement: ``abc`` -> ``abc~1``, ``abc~1`` -> ``abc~2``."""
    match = _REPLACEMENT.match(client_order_id)
    if match is None:
        return f"{client_order_id}{REPLACEMENT_MARK}1"
    return f"{match['base']}{REPLACEMENT_MARK}{int(match['n']) + 1}"


# --- symbols --------------------------------------------------------------------------------------


def split_crypto(symbol: str) -> tuple[str, str]:
    """``BTC/USD`` or ``BTCUSD`` -> ``("BTC", "USD")``; ``ValueError`` for a pair it cannot split."""
    if "/" in symbol:
        base, _, quote = symbol.partition("/")
        return base, quote
    for quote in _CRYPTO_QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    raise ValueError(f"not a crypto pair: {symbol!r}")


def canonical_symbol(asset: Asset) -> str:
    """Stocks keep their ticker; crypto pairs are ``BASE/QUOTE``."""
    if asset.asset_class == "crypto":
        base, quote = split_crypto(asset.symbol)
        return f"{base}/{quote}"
    return asset.symbol.strip()


class SymbolMap:
    """Canonical <-> Alpaca symbols, from the assets list (both crypto spellings are understood)."""

    def __init__(self, assets: Iterable[Asset]) -> None:
        self._to_venue: dict[str, str] = {}
        self._to_canonical: dict[str, str] = {}
        self._classes: dict[str, str] = {}
        for asset in assets:
            canonical = canonical_symbol(asset)
            self._to_venue[canonical] = asset.symbol
            self._classes[canonical] = asset.asset_class
            self._to_canonical[asset.symbol] = canonical
            self._to_canonical[canonical.replace("/", "")] = canonical
            self._to_canonical[canonical] = canonical

    def venue(self, canonical: str) -> str:
        """The spelling orders use; ``KeyError`` for a symbol Alpaca does not list."""
        return self._to_venue[canonical]

    def canonical(self, venue: str) -> str:
        """Our spelling of an Alpaca symbol (unknown ones pass through, stripped)."""
        venue = venue.strip()
        return self._to_canonical.get(venue, venue)

    def asset_class(self, canonical: str) -> str:
        """``us_equity`` or ``crypto``; ``KeyError`` for an unlisted symbol."""
        return self._classes[canonical]

    def __contains__(self, canonical: object) -> bool:
        return canonical in self._to_venue


def instrument(asset: Asset) -> Instrument:
    """The rules of one asset. Crypto assets publish theirs; for stocks Alpaca publishes none, so
    the documented ones apply: whole shares (or 9 decimals if ``fractionable``, at least $1), cents."""
    canonical = canonical_symbol(asset)
    tradable = asset.tradable and asset.status == "active"
    if asset.asset_class == "crypto":
        base, quote = split_crypto(asset.symbol)
        step = asset.min_trade_increment or FRACTIONAL_STEP
        return Instrument(
            symbol=canonical,
            venue_symbol=asset.symbol,
            asset_class=AssetClass.CRYPTO,
            base=base,
            quote=quote,
            tick_size=asset.price_increment or STOCK_TICK,
            qty_step=step,
            min_qty=asset.min_order_size or step,
            tradable=tradable,
        )
    step = FRACTIONAL_STEP if asset.fractionable else Decimal(1)
    return Instrument(
        symbol=canonical,
        venue_symbol=asset.symbol,
        asset_class=AssetClass.EQUITY,
        base=canonical,
        quote="USD",
        tick_size=STOCK_TICK,
        qty_step=step,
        min_qty=step,
        min_notional=FRACTIONAL_MIN_NOTIONAL if asset.fractionable else Decimal(0),
        tradable=tradable,
    )


# --- orders ---------------------------------------------------------------------------------------

_STATUSES: dict[str, OrderStatus] = {
    "pending_new": OrderStatus.PENDING_NEW,
    "accepted": OrderStatus.NEW,
    "new": OrderStatus.NEW,
    "accepted_for_bidding": OrderStatus.NEW,
    "held": OrderStatus.NEW,
    "stopped": OrderStatus.NEW,
    "suspended": OrderStatus.NEW,
    "pending_replace": OrderStatus.NEW,
    "done_for_day": OrderStatus.NEW,
    "partially_filled": OrderStatus.PARTIALLY_FILLED,
    "filled": OrderStatus.FILLED,
    "pending_cancel": OrderStatus.PENDING_CANCEL,
    "canceled": OrderStatus.CANCELED,
    "replaced": OrderStatus.CANCELED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
}
_TYPES = {
    "market": OrderType.MARKET,
    "limit": OrderType.LIMIT,
    "stop": OrderType.STOP,
    "stop_limit": OrderType.STOP_LIMIT,
}
_TIFS = {"day": TimeInForce.DAY, "gtc": TimeInForce.GTC, "ioc": TimeInForce.IOC, "fok": TimeInForce.FOK}
TIF_WIRE = {v: k for k, v in _TIFS.items()}


def status(body: Order) -> OrderStatus:
    """The normalized status. ``replaced`` only shows on an order that was replaced by a newer one
    (the adapter follows ``replaced_by``); ``calculated`` is filled or done for the day."""
    if body.status == "calculated":
        filled = body.qty is not None and body.filled_qty >= body.qty
        return OrderStatus.FILLED if filled else OrderStatus.NEW
    try:
        return _STATUSES[body.status]
    except KeyError:
        raise ValueError(f"unknown Alpaca order status {body.status!r}") from None


def order_type(body: Order) -> OrderType:
    """``market``, ``limit``, ``stop``, ``stop_limit``; a trailing stop reads as a stop order."""
    if body.type == "trailing_stop":
        return OrderType.STOP
    return _TYPES[body.type]


def utc(when: datetime) -> datetime:
    """Alpaca mixes ``Z`` and ``-04:00`` offsets; the model is UTC."""
    return when.astimezone(UTC)


def order(body: Order, *, account_id: str, symbols: SymbolMap) -> DomainOrder:
    """The venue's view of an order, under the client order id brokerlink gave it.

    A notional order has no ``qty`` until it fills: its quantity is what has filled so far.
    """
    return DomainOrder(
        id=body.id,
        client_order_id=base_client_order_id(body.client_order_id),
        account_id=account_id,
        symbol=symbols.canonical(body.symbol),
        side=Side(body.side),
        qty=body.qty if body.qty is not None else body.filled_qty,
        type=order_type(body),
        tif=_TIFS.get(body.time_in_force, TimeInForce.DAY),
        limit_price=body.limit_price,
        stop_price=body.stop_price,
        status=status(body),
        filled_qty=body.filled_qty,
        avg_fill_price=body.filled_avg_price if body.filled_qty else None,
        venue_order_id=body.id,
        created_at=utc(body.created_at),
        updated_at=utc(body.updated_at or body.created_at),
    )


# --- fills ----------------------------------------------------------------------------------------


def fill_trade_id(order_id: str, cum_qty: Decimal) -> str:
    """``<order id>:<cumulative filled qty after the fill>``: the same on the stream and in activities."""
    text = format(cum_qty.normalize(), "f")
    return f"{order_id}:{text}"


def activity_fill(body: TradeActivity, *, account_id: str, client_order_id: str | None, symbols: SymbolMap) -> Fill:
    """A ``FILL`` activity; ``client_order_id`` is the base id of its order (activities do not carry it)."""
    return Fill(
        trade_id=fill_trade_id(body.order_id, body.cum_qty),
        order_id=body.order_id,
        client_order_id=client_order_id,
        account_id=account_id,
        symbol=symbols.canonical(body.symbol),
        side=Side(body.side),
        qty=body.qty,
        price=body.price,
        ts=utc(body.transaction_time),
    )


def activity_fill_event(
    body: TradeActivity, *, account_id: str, client_order_id: str, symbols: SymbolMap, received: datetime
) -> OrderFilled:
    """A fill read back from activities (reconciliation), as the event the stream would have carried."""
    return OrderFilled(
        account_id=account_id,
        client_order_id=client_order_id,
        venue_order_id=body.order_id,
        ts=received,
        venue_ts=utc(body.transaction_time),
        trade_id=fill_trade_id(body.order_id, body.cum_qty),
        symbol=symbols.canonical(body.symbol),
        side=Side(body.side),
        last_qty=body.qty,
        last_price=body.price,
    )


# --- the trade_updates stream ------------------------------------------------------------------


class EventIds(TypedDict):
    """The identity every order event carries."""

    account_id: str
    client_order_id: str
    venue_order_id: str
    ts: datetime
    venue_ts: datetime | None


IGNORED_EVENTS = frozenset(
    {
        "pending_new",
        "pending_cancel",
        "pending_replace",
        "calculated",
        "done_for_day",
        "stopped",
        "suspended",
        "replaced",
    }
)
"""Events that change nothing brokerlink tracks. ``replaced`` retires the old order; the ``new``
of the replacement (``order.replaces`` set) carries the new values."""


def trade_update_event(  # noqa: PLR0911 - one event per kind
    update: TradeUpdate, *, account_id: str, symbols: SymbolMap, received: datetime
) -> DomainEvent | None:
    """The normalized event for one ``trade_updates`` message, or ``None`` for one to ignore.

    A fill without quantity or price is malformed and refused with ``ValueError``: guessing would
    risk booking a fill twice or not at all.
    """
    body = update.order
    when = update.timestamp or body.updated_at
    ids = EventIds(
        account_id=account_id,
        client_order_id=base_client_order_id(body.client_order_id),
        venue_order_id=body.id,
        ts=received,
        venue_ts=utc(when) if when is not None else None,
    )
    match update.event:
        case "new" if body.replaces is not None:
            return OrderUpdated(**ids, qty=body.qty, limit_price=body.limit_price, stop_price=body.stop_price)
        case "new":
            return OrderAccepted(**ids)
        case "fill" | "partial_fill":
            if update.qty is None or update.price is None:
                raise ValueError(f"{update.event} of {body.client_order_id} lacks qty or price")
            return OrderFilled(
                **ids,
                trade_id=fill_trade_id(body.id, body.filled_qty),
                symbol=symbols.canonical(body.symbol),
                side=Side(body.side),
                last_qty=update.qty,
                last_price=update.price,
            )
        case "canceled":
            return OrderCanceled(**ids)
        case "expired":
            return OrderExpired(**ids)
        case "rejected":
            return OrderRejected(**ids, reason="rejected by Alpaca")
        case "order_cancel_rejected":
            return OrderCancelRejected(**ids, reason="cancel rejected by Alpaca")
        case "order_replace_rejected":
            return None  # the order works on unchanged; nothing to record
        case event if event in IGNORED_EVENTS:
            return None
        case event:
            raise ValueError(f"unknown trade update event {event!r}")


# --- positions, balance, quotes -------------------------------------------------------------------


def position(body: Position, *, account_id: str, symbols: SymbolMap) -> DomainPosition:
    """One open position; the quantity is signed (short < 0) whichever way Alpaca spelled it."""
    qty = abs(body.qty) if body.side == "long" else -abs(body.qty)
    return DomainPosition(
        account_id=account_id,
        symbol=symbols.canonical(body.symbol),
        qty=qty,
        avg_price=body.avg_entry_price,
        unrealized_pnl=body.unrealized_pl if body.unrealized_pl is not None else Decimal(0),
    )


def balance(body: Account, *, account_id: str, ts: datetime) -> Balance:
    """Cash, equity, buying power and margin in use, as Alpaca reports them."""
    return Balance(
        account_id=account_id,
        currency=body.currency,
        cash=body.cash,
        equity=body.equity if body.equity is not None else body.cash,
        buying_power=body.buying_power if body.buying_power is not None else body.cash,
        margin_used=body.initial_margin if body.initial_margin is not None else Decimal(0),
        ts=ts,
    )


def quote(body: MdQuote | LatestQuote, *, symbol: str) -> Quote:
    """A streamed (``"T": "q"``) or latest quote, under the canonical ``symbol``."""
    return Quote(
        symbol=symbol,
        bid=body.bp,
        ask=body.ap,
        bid_size=body.bs,
        ask_size=body.ask_size,
        ts=utc(body.t),
    )
