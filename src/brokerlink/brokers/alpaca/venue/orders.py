"""The venue's Alpaca view of an order, its wire form, and Alpaca's error answers.

The venue core (:class:`brokerlink.brokers.sim.venue.state.Venue`) matches orders under ids of its
own (``a1``, ``a2``...). Alpaca names an order by a UUID and the client's ``client_order_id``, and a
replacement is a new order (new UUID, new client order id) of the same working order: one core
order, one :class:`OrderRecord` per Alpaca identity. A replaced record keeps a snapshot of the core
order as it was, so it keeps answering with the values it had.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from brokerlink.brokers.alpaca.venue.assets import ListedAsset
from brokerlink.brokers.alpaca.wire import ErrorCode, Order
from brokerlink.brokers.sim.wire import OrderBody
from brokerlink.domain.enums import OrderStatus


class AlpacaError(Exception):
    """An error the venue answers with Alpaca's ``{"code", "message"}`` and an HTTP status."""

    def __init__(self, status: int, code: ErrorCode, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def invalid(message: str) -> AlpacaError:
    """422 ``40010001``: the request's parameters are not acceptable."""
    return AlpacaError(422, ErrorCode.INVALID_REQUEST, message)


def unprocessable(message: str) -> AlpacaError:
    """422 ``42210000``: the request is well formed but cannot be done now (``order is not cancelable``)."""
    return AlpacaError(422, ErrorCode.UNPROCESSABLE, message)


def forbidden(message: str) -> AlpacaError:
    """403 ``40310000``: insufficient buying power or quantity."""
    return AlpacaError(403, ErrorCode.FORBIDDEN, message)


def not_found(message: str = "order not found") -> AlpacaError:
    """404 ``40410000``."""
    return AlpacaError(404, ErrorCode.NOT_FOUND, message)


_STATUS = {
    OrderStatus.PENDING_NEW: "pending_new",
    OrderStatus.NEW: "new",
    OrderStatus.PARTIALLY_FILLED: "partially_filled",
    OrderStatus.FILLED: "filled",
    OrderStatus.PENDING_CANCEL: "pending_cancel",
    OrderStatus.CANCELED: "canceled",
    OrderStatus.EXPIRED: "expired",
    OrderStatus.REJECTED: "rejected",
}


@dataclass(slots=True, kw_only=True)
class OrderRecord:
    """One Alpaca identity of a core order."""

    id: str
    client_order_id: str
    core_id: str
    account_id: str
    asset: ListedAsset
    time_in_force: str
    notional: Decimal | None
    created_at: datetime
    replaces: str | None = None
    replaced_by: str | None = None
    replaced_at: datetime | None = None
    frozen: OrderBody | None = None
    """The core order as it was when this identity was replaced."""

    def wire(self, snapshot: OrderBody) -> Order:
        """This order on the wire, from a core snapshot (the event's, or the current one)."""
        body = self.frozen or snapshot
        status = "replaced" if self.replaced_by is not None else _STATUS[body.status]
        done_at = body.updated_at
        order_type = body.type.value
        return Order(
            id=self.id,
            client_order_id=self.client_order_id,
            created_at=self.created_at,
            updated_at=self.replaced_at or body.updated_at,
            submitted_at=self.created_at,
            filled_at=done_at if body.status is OrderStatus.FILLED else None,
            expired_at=done_at if body.status is OrderStatus.EXPIRED else None,
            canceled_at=done_at if body.status is OrderStatus.CANCELED else None,
            failed_at=done_at if body.status is OrderStatus.REJECTED else None,
            replaced_at=self.replaced_at,
            replaced_by=self.replaced_by,
            replaces=self.replaces,
            asset_id=self.asset.id,
            symbol=self.asset.symbol,
            asset_class=self.asset.asset_class,
            notional=self.notional,
            qty=None if self.notional is not None else body.qty,
            filled_qty=body.filled_qty,
            filled_avg_price=body.avg_fill_price,
            order_class="",
            order_type=order_type,
            type=order_type,
            side=body.side.value,
            time_in_force=self.time_in_force,
            limit_price=body.limit_price,
            stop_price=body.stop_price,
            status=status,
            extended_hours=False,
        )
