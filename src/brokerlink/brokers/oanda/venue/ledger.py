"""One account's v20 records at the test venue: transactions, orders (OANDA's view of them) and trades.

The matching engine and the money live in the sim core (:class:`~brokerlink.brokers.sim.venue.state.Venue`);
this is what OANDA adds on top: every change is a transaction with the next id of the account
(consecutive, as at OANDA), an order's id is the id of the transaction that created it, and every
fill opens a trade (whose id is the fill's) or closes and reduces open ones first in, first out.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from brokerlink.brokers.oanda import wire

MONEY = Decimal("0.0001")
"""OANDA reports account amounts with four decimals."""
_ZERO = Decimal(0)


def money(amount: Decimal) -> Decimal:
    """An amount as the venue reports it: four decimals, half-even, no negative zero."""
    rounded = amount.quantize(MONEY, ROUND_HALF_EVEN)
    return rounded.copy_abs() if rounded.is_zero() else rounded


@dataclass
class OrderRecord:
    """An order as OANDA reports it; ``core_coid`` names it in the sim core (``None``: it never got there)."""

    id: str
    type: str
    instrument: str
    units: Decimal
    price: Decimal | None
    time_in_force: wire.TimeInForceCode
    create_time: datetime
    core_coid: str | None = None
    gtd_time: datetime | None = None
    position_fill: str = "DEFAULT"
    client_extensions: wire.ClientExtensions | None = None
    state: wire.OrderState = "PENDING"
    fill_reason: str | None = None
    filling_transaction_id: str | None = None
    filled_time: datetime | None = None
    trade_opened_id: str | None = None
    trade_reduced_id: str | None = None
    trade_closed_ids: list[str] = field(default_factory=list)
    cancelling_transaction_id: str | None = None
    cancelled_time: datetime | None = None
    replaces_order_id: str | None = None
    replaced_by_order_id: str | None = None

    def body(self) -> wire.Order:
        """``GET .../orders/{specifier}``."""
        return wire.Order(
            id=self.id,
            create_time=self.create_time,
            state=self.state,
            type=self.type,
            client_extensions=self.client_extensions,
            instrument=self.instrument,
            units=self.units,
            price=self.price,
            time_in_force=self.time_in_force,
            gtd_time=self.gtd_time,
            position_fill=self.position_fill,
            trigger_condition="DEFAULT" if self.type != "MARKET" else None,
            partial_fill="DEFAULT_FILL" if self.type != "MARKET" else None,
            filling_transaction_id=self.filling_transaction_id,
            filled_time=self.filled_time,
            trade_opened_id=self.trade_opened_id,
            trade_reduced_id=self.trade_reduced_id,
            trade_closed_ids=self.trade_closed_ids or None,
            cancelling_transaction_id=self.cancelling_transaction_id,
            cancelled_time=self.cancelled_time,
            replaces_order_id=self.replaces_order_id,
            replaced_by_order_id=self.replaced_by_order_id,
        )


@dataclass
class TradeRecord:
    """One trade: opened by a fill, closed or reduced by later opposite fills (netting) or a close."""

    id: str
    instrument: str
    price: Decimal
    open_time: datetime
    initial_units: Decimal
    current_units: Decimal
    realized_pl: Decimal = _ZERO
    close_time: datetime | None = None
    closing_transaction_ids: list[str] = field(default_factory=list)
    client_extensions: wire.ClientExtensions | None = None

    @property
    def is_open(self) -> bool:
        """Whether units are left."""
        return self.current_units != 0

    def body(self, unrealized: Decimal | None) -> wire.Trade:
        """``GET .../openTrades`` / ``GET .../trades``."""
        return wire.Trade(
            id=self.id,
            instrument=self.instrument,
            price=self.price,
            open_time=self.open_time,
            state="OPEN" if self.is_open else "CLOSED",
            initial_units=self.initial_units,
            current_units=self.current_units,
            realized_pl=money(self.realized_pl),
            unrealized_pl=None if unrealized is None else money(unrealized),
            closing_transaction_ids=self.closing_transaction_ids or None,
            financing=Decimal("0.0000"),
            close_time=self.close_time,
            client_extensions=self.client_extensions,
        )


@dataclass
class TradeEffect:
    """What one fill did to the trades (the ``ORDER_FILL``'s ``tradeOpened``, ``tradesClosed``, ``tradeReduced``)."""

    opened: wire.TradeOpen | None = None
    closed: list[wire.TradeReduce] = field(default_factory=list)
    reduced: wire.TradeReduce | None = None


class AccountLedger:
    """Transactions, orders and trades of one account."""

    def __init__(self, account_id: str, *, hedging: bool) -> None:
        self.account_id = account_id
        self.hedging = hedging
        self.transactions: list[wire.Transaction] = []
        self.orders: dict[str, OrderRecord] = {}
        self.by_client: dict[str, OrderRecord] = {}
        """Client extension id -> the order that carries it now (the newest of a replace chain)."""
        self.by_core: dict[str, OrderRecord] = {}
        self.trades: dict[str, TradeRecord] = {}
        self.realized: dict[tuple[str, int], Decimal] = {}
        """Realized P&L per (instrument, side sign), for the position sides' ``pl``."""
        self._next_id = 1
        self.last_cash = _ZERO

    @property
    def last_transaction_id(self) -> str:
        """The newest transaction's id."""
        return str(self._next_id - 1)

    def next_id(self) -> str:
        """Take the next transaction id."""
        taken = self._next_id
        self._next_id += 1
        return str(taken)

    def record(self, txn: wire.Transaction) -> wire.Transaction:
        """Append a transaction (its id must be the one :meth:`next_id` gave last)."""
        self.transactions.append(txn)
        return txn

    def since(self, after: int, types: set[str] | None = None) -> list[wire.Transaction]:
        """Transactions with an id above ``after``, oldest first (of ``types`` when given)."""
        start = bisect.bisect_right(self.transactions, after, key=lambda t: int(t.id or 0))
        return [t for t in self.transactions[start:] if types is None or t.type in types]

    def transaction(self, transaction_id: str) -> wire.Transaction | None:
        """One transaction by id."""
        if not transaction_id.isdigit():
            return None
        found = self.since(int(transaction_id) - 1)
        return found[0] if found and found[0].id == transaction_id else None

    def find(self, specifier: str) -> OrderRecord | None:
        """An order by id or by ``@<client extension id>``."""
        if specifier.startswith("@"):
            return self.by_client.get(specifier[1:])
        return self.orders.get(specifier)

    def add_order(self, order: OrderRecord) -> None:
        """Register a new order (and its client extension id, replacing an older holder of it)."""
        self.orders[order.id] = order
        if order.client_extensions is not None and order.client_extensions.id:
            self.by_client[order.client_extensions.id] = order
        if order.core_coid is not None:
            self.by_core[order.core_coid] = order

    def open_trades(self, instrument: str | None = None) -> list[TradeRecord]:
        """Open trades, oldest first."""
        return [t for t in self.trades.values() if t.is_open and instrument in (None, t.instrument)]

    def apply_fill(
        self,
        fill_id: str,
        instrument: str,
        units: Decimal,
        price: Decimal,
        *,
        now: datetime,
        rate: Callable[[], Decimal],
    ) -> TradeEffect:
        """Book a fill on the trades: a netting account closes opposite trades first in, first out, the
        rest opens a trade with the fill's id; a hedging account always opens one. ``rate`` converts
        quote-currency P&L to the home currency."""
        effect = TradeEffect()
        left = units
        if not self.hedging:
            for trade in self.open_trades(instrument):
                if not left or (trade.current_units > 0) == (left > 0):
                    continue
                take = min(abs(left), abs(trade.current_units))
                sign = 1 if trade.current_units > 0 else -1
                pl = (price - trade.price) * take * sign * rate()
                trade.current_units -= take * sign
                trade.realized_pl += pl
                trade.closing_transaction_ids.append(fill_id)
                key = (instrument, sign)
                self.realized[key] = self.realized.get(key, _ZERO) + pl
                reduce = wire.TradeReduce(
                    trade_id=trade.id,
                    units=-take * sign,
                    price=price,
                    realized_pl=money(pl),
                    financing=Decimal("0.0000"),
                )
                if trade.is_open:
                    effect.reduced = reduce
                else:
                    trade.close_time = now
                    effect.closed.append(reduce)
                left += take * sign
        if left:
            self.trades[fill_id] = TradeRecord(
                id=fill_id, instrument=instrument, price=price, open_time=now, initial_units=left, current_units=left
            )
            effect.opened = wire.TradeOpen(trade_id=fill_id, units=left, price=price)
        return effect

    def position_sides(self) -> Iterable[tuple[str, list[TradeRecord], list[TradeRecord]]]:
        """Per instrument with open trades: its long and its short trades."""
        instruments = sorted({t.instrument for t in self.open_trades()})
        for instrument in instruments:
            trades = self.open_trades(instrument)
            yield instrument, [t for t in trades if t.current_units > 0], [t for t in trades if t.current_units < 0]
