"""Order and fill events from ccxt's view of the account, each exactly once and in a sensible order.

ccxt.pro keeps what the user data stream says in two caches, ``exchange.orders`` (one merged entry per
order, updated in place) and ``exchange.myTrades`` (one entry per trade); REST reports give the same
structures. :class:`EventTracker` turns either into domain events by comparing them with what it has
already reported: an order first seen working (or already done, if it filled) is *accepted*; every
trade not seen before is a *fill*; an order first seen canceled, expired or rejected is reported so
once. States only move forward: a reordered or duplicated message that shows an older state of an
order (``open`` after ``closed``) changes nothing.

Within one batch, acceptances come first, then fills, then terminal states, so a consumer never sees
a fill for an order it was not told about, nor a cancel before the fills that preceded it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TypedDict

from brokerlink.brokers.base import SeenTradeIds
from brokerlink.brokers.ccxt import mapping
from brokerlink.domain.enums import OrderStatus
from brokerlink.domain.events import DomainEvent, OrderAccepted, OrderCanceled, OrderExpired, OrderRejected
from brokerlink.domain.models import Instrument

CcxtDict = Mapping[str, Any]
InstrumentOf = Callable[[str], Instrument | None]
"""The instrument of a ccxt market symbol (``None`` for a market the adapter does not trade)."""


class _Ids(TypedDict):
    account_id: str
    ts: datetime
    venue_ts: datetime | None
    client_order_id: str
    venue_order_id: str


class EventTracker:
    """What has been reported for the account's orders and trades (see the module docstring)."""

    def __init__(self, account_id: str, instrument_of: InstrumentOf) -> None:
        self.account_id = account_id
        self._instrument_of = instrument_of
        self.seen_trades = SeenTradeIds()
        self.accepted: set[str] = set()
        self.finished: set[str] = set()
        self.client_ids: dict[str, str] = {}
        """Venue order id -> client order id, for trades (which do not carry the client's id)."""

    def client_order_id(self, order: CcxtDict) -> str:
        """The order's client order id (synthesized for an order placed outside brokerlink)."""
        venue_id = str(order.get("id"))
        coid = order.get("clientOrderId")
        if coid:
            self.client_ids[venue_id] = str(coid)
            return str(coid)
        return self.client_ids.get(venue_id) or mapping.synthetic_client_order_id(venue_id)

    def events(self, orders: Iterable[CcxtDict], trades: Iterable[CcxtDict], *, now: datetime) -> list[DomainEvent]:
        """The events that ``orders`` and ``trades`` add to what was already reported."""
        accepted: list[DomainEvent] = []
        terminal: list[DomainEvent] = []
        for order in orders:
            instrument = self._instrument_of(str(order.get("symbol")))
            if instrument is None or order.get("id") is None:
                continue
            coid = self.client_order_id(order)
            status = mapping.status(order)
            if status is OrderStatus.PENDING_NEW:
                continue
            ids = _Ids(
                account_id=self.account_id,
                ts=now,
                venue_ts=mapping.when(order.get("lastUpdateTimestamp") or order.get("timestamp"), now),
                client_order_id=coid,
                venue_order_id=str(order["id"]),
            )
            if coid not in self.accepted and status is not OrderStatus.REJECTED:
                self.accepted.add(coid)
                accepted.append(OrderAccepted(**ids))
            if coid in self.finished or not status.is_terminal or status is OrderStatus.FILLED:
                if status is OrderStatus.FILLED:
                    self.finished.add(coid)
                continue
            self.finished.add(coid)
            if status is OrderStatus.CANCELED:
                terminal.append(OrderCanceled(**ids))
            elif status is OrderStatus.EXPIRED:
                terminal.append(OrderExpired(**ids))
            else:
                info = order.get("info") or {}
                reason = str(info.get("r") or info.get("rejectReason") or "rejected by the exchange")
                terminal.append(OrderRejected(**ids, reason=reason))
        fills: list[DomainEvent] = []
        for trade in trades:
            instrument = self._instrument_of(str(trade.get("symbol")))
            if instrument is None or trade.get("id") is None:
                continue
            if not self.seen_trades.first_time(mapping.trade_id(trade, instrument)):
                continue
            venue_id = str(trade.get("order"))
            coid = self.client_ids.get(venue_id) or mapping.synthetic_client_order_id(venue_id)
            fills.append(
                mapping.fill_event(
                    trade, account_id=self.account_id, instrument=instrument, client_order_id=coid, received=now
                )
            )
        return [*accepted, *fills, *terminal]
