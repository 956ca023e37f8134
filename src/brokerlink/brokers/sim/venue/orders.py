"""The venue's record of a client order, and its wire form."""

from __future__ import annotations

from datetime import datetime
from decimal import Context, Decimal, Inexact, InvalidOperation

from brokerlink.brokers.sim.wire import OrderBody, TradeBody, TradeUpdateEvent
from brokerlink.domain.enums import OrderStatus, OrderType, Side, TimeInForce

OPEN_STATUSES = frozenset({OrderStatus.PENDING_NEW, OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED})
_WIDE = Context(prec=80, traps=[InvalidOperation])
_EXACT_DIV = Context(prec=34, traps=[InvalidOperation])
_AVG_EXTRA_DIGITS = 6

__all__ = ["OPEN_STATUSES", "TradeBody", "VenueOrder"]  # TradeBody lives in wire.py now; others import it here


class VenueOrder:
    """One client order as the venue tracks it (mutable; the wire sees :meth:`body`)."""

    __slots__ = (
        "account_id",
        "client_order_id",
        "created_at",
        "filled_qty",
        "limit_price",
        "notional",
        "order_id",
        "position_id",
        "qty",
        "side",
        "status",
        "stop_price",
        "symbol",
        "tick_size",
        "tif",
        "type",
        "updated_at",
    )

    def __init__(
        self,
        *,
        order_id: int,
        account_id: str,
        client_order_id: str,
        symbol: str,
        side: Side,
        qty: Decimal,
        type: OrderType,  # noqa: A002 - the wire's name
        tif: TimeInForce,
        limit_price: Decimal | None,
        stop_price: Decimal | None,
        tick_size: Decimal,
        now: datetime,
    ) -> None:
        self.order_id = order_id
        self.account_id = account_id
        self.client_order_id = client_order_id
        self.symbol = symbol
        self.side = side
        self.qty = qty
        self.type = type
        self.tif = tif
        self.limit_price = limit_price
        self.stop_price = stop_price
        self.tick_size = tick_size
        self.status = OrderStatus.PENDING_NEW
        self.filled_qty = Decimal(0)
        self.notional = Decimal(0)
        self.position_id: str | None = None
        self.created_at = now
        self.updated_at = now

    @property
    def is_open(self) -> bool:
        """Whether the order is still working."""
        return self.status in OPEN_STATUSES

    def add_fill(self, qty: Decimal, price: Decimal, *, done: bool, now: datetime) -> TradeUpdateEvent:
        """Count one execution; returns the trade-update event it is (``fill`` when nothing is left)."""
        self.filled_qty = _WIDE.add(self.filled_qty, qty)
        self.notional = _WIDE.add(self.notional, _WIDE.multiply(qty, price))
        self.status = OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED
        self.updated_at = now
        return "fill" if done else "partial_fill"

    @property
    def avg_fill_price(self) -> Decimal | None:
        """Volume-weighted average price: on the tick grid when exact, else to six more decimals."""
        if not self.filled_qty:
            return None
        try:
            avg = _EXACT_DIV.divide(self.notional, self.filled_qty)
            on_tick = avg.quantize(self.tick_size, context=Context(prec=80, traps=[Inexact, InvalidOperation]))
        except Inexact:
            fine = self.tick_size.scaleb(-_AVG_EXTRA_DIGITS)
            return avg.quantize(fine)
        return on_tick

    def body(self) -> OrderBody:
        """The order on the wire."""
        return OrderBody(
            order_id=str(self.order_id),
            client_order_id=self.client_order_id,
            symbol=self.symbol,
            side=self.side,
            qty=self.qty,
            type=self.type,
            tif=self.tif,
            limit_price=self.limit_price,
            stop_price=self.stop_price,
            status=self.status,
            filled_qty=self.filled_qty,
            avg_fill_price=self.avg_fill_price,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )
