"""The OANDA test venue's core: the sim venue's matching engine, market maker and accounts, seen
through v20's records (:mod:`~brokerlink.brokers.oanda.venue.ledger`).

:class:`OandaCore` *is* a sim :class:`~brokerlink.brokers.sim.venue.state.Venue` (orders really
match against its market maker and book into its accounts) with one difference: the engine's
order updates are not sent as sim ``trade_updates`` but collected, and turned into v20
transactions once the engine call that caused them is over, so a command's answer can list its
transactions in OANDA's order (creation, fill, cancel) and the fills of one order in one engine call
become one ``ORDER_FILL`` at their volume-weighted price, as OANDA fills an order once. Each
transaction is then published on the hub's ``trade_updates`` channel of its account (the transaction
stream's subscription) through the sim's fault shaper, so ``duplicate_events`` and ``reorder_events``
act on the transaction stream, never on the record that ``sinceid`` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

from brokerlink.brokers.oanda import wire
from brokerlink.brokers.oanda.venue.config import OandaVenueConfig
from brokerlink.brokers.oanda.venue.instruments import INSTRUMENTS
from brokerlink.brokers.oanda.venue.ledger import AccountLedger, OrderRecord, money
from brokerlink.brokers.sim.book import Event
from brokerlink.brokers.sim.gate import RateLimitRule
from brokerlink.brokers.sim.instruments import SimInstrument
from brokerlink.brokers.sim.venue.config import AccountConfig, VenueConfig
from brokerlink.brokers.sim.venue.hub import TRADE_UPDATES
from brokerlink.brokers.sim.venue.state import Venue
from brokerlink.brokers.sim.wire import TradeUpdate
from brokerlink.domain.enums import AccountMode, OrderStatus
from brokerlink.kit.clock import Clock

CANCEL_REASONS = {
    "user": "CLIENT_REQUEST",
    "ioc_remainder": "INSUFFICIENT_LIQUIDITY",
    "fok_unfilled": "INSUFFICIENT_LIQUIDITY",
    "no_liquidity": "INSUFFICIENT_LIQUIDITY",
    "self_trade": "INTERNAL_SERVER_ERROR",  # a dealer has no self-trade; the engine's prevention shows as this
}
"""The engine's cancel reasons as v20 ``OrderCancelReason`` values."""


def sim_config(config: OandaVenueConfig) -> VenueConfig:
    """The sim core's configuration for an OANDA venue (accounts keyed by their token: the core never authenticates)."""
    accounts = tuple(
        AccountConfig(
            account_id=a.account_id,
            api_key=f"{a.account_id}:{a.token}",
            api_secret="-",  # noqa: S106 - unused: v20 has bearer tokens, checked by the REST layer
            cash=a.cash,
            currency=a.currency,
            mode=AccountMode.HEDGING if a.hedging else AccountMode.NETTING,
        )
        for a in config.accounts
    )
    return VenueConfig(
        seed=config.seed,
        accounts=accounts,
        rate_limits=(RateLimitRule(config.rate_limit_per_s, 1),),
        tick_interval_s=config.tick_interval_s,
        heartbeat_interval_s=config.heartbeat_interval_s,
        mode=config.mode,
        background=config.background,
    )


class OandaCore(Venue):
    """A sim venue whose order updates become v20 transactions (module docstring)."""

    def __init__(
        self,
        config: OandaVenueConfig,
        *,
        clock: Clock | None = None,
        instruments: Sequence[SimInstrument] = INSTRUMENTS,
    ) -> None:
        # Set before the core starts: its constructor already runs the engine (the market maker's ladder).
        self.oanda = config
        self._pending: list[tuple[str, TradeUpdate, Decimal]] = []
        self._depth = 0
        self.capturing = False
        self.batch_id: str | None = None
        self.ledgers: dict[str, AccountLedger] = {}
        super().__init__(sim_config(config), clock=clock, instruments=instruments)
        self.entries = {e.instrument.venue_symbol: e for e in instruments}
        self.tokens: dict[str, list[str]] = {}
        """Bearer token -> the accounts it reaches."""
        for account in config.accounts:
            self.tokens.setdefault(account.token, []).append(account.account_id)
        for account in config.accounts:
            ledger = self.ledgers[account.account_id] = AccountLedger(account.account_id, hedging=account.hedging)
            ledger.last_cash = self.accounts[account.account_id].cash
            self._opening_transactions(ledger, account.currency, account.cash)

    def now(self) -> datetime:
        """The venue clock (ms resolution, as every time the core stamps)."""
        return self._now()

    def _opening_transactions(self, ledger: AccountLedger, currency: str, cash: Decimal) -> None:
        account_id = ledger.account_id
        created = self.batch_id = ledger.next_id()
        ledger.record(self.txn(account_id, created, "CREATE", home_currency=currency, reason="CLIENT_REQUEST"))
        funded = money(cash)
        txn = self.txn(account_id, ledger.next_id(), "TRANSFER_FUNDS", amount=funded, account_balance=funded)
        ledger.record(msgspec.structs.replace(txn, reason="CLIENT_FUNDING"))
        self.batch_id = None

    # --- the engine's updates -> transactions ---------------------------------------------------

    def _trade_update(self, account_id: str, update: TradeUpdate) -> None:
        # Called right after the core booked a fill: the cash now is the cash after this fill.
        self._pending.append((account_id, update, self.accounts[account_id].cash))

    def _run(self, sym: str, events: list[Event]) -> None:
        self._depth += 1
        try:
            super()._run(sym, events)
        finally:
            self._depth -= 1
        if not self._depth and not self.capturing:
            self.flush()

    def txn(self, account_id: str, txn_id: str, kind: str, **fields: Any) -> wire.Transaction:
        """A transaction of ``account_id`` with the fields every one carries (not yet recorded)."""
        return wire.Transaction(
            type=kind,
            id=txn_id,
            time=self.now(),
            user_id=self.oanda.user_id,
            account_id=account_id,
            batch_id=self.batch_id or txn_id,
            **fields,
        )

    def publish(self, account_id: str, txn: wire.Transaction) -> wire.Transaction:
        """Record a transaction and send it on the account's transaction stream (through the fault shaper)."""
        self.ledgers[account_id].record(txn)
        for target, message in self.faults.shape((account_id, txn)):
            self.hub.publish(TRADE_UPDATES, message, account_id=target)
        return txn

    def flush(self) -> list[wire.Transaction]:
        """Turn the collected engine updates into transactions, in order; the fills of one order in a
        row become one ``ORDER_FILL``."""
        pending, self._pending = self._pending, []
        out: list[wire.Transaction] = []
        i = 0
        while i < len(pending):
            account_id, update, _ = pending[i]
            if update.event in ("fill", "partial_fill"):
                j = i
                while (
                    j < len(pending)
                    and pending[j][0] == account_id
                    and pending[j][1].event in ("fill", "partial_fill")
                    and pending[j][1].order.order_id == update.order.order_id
                ):
                    j += 1
                txn = self._fill(account_id, pending[i:j])
                i = j
            else:
                txn = self._order_event(account_id, update)
                i += 1
            if txn is not None:
                out.append(self.publish(account_id, txn))
        return out

    def _fill(self, account_id: str, group: list[tuple[str, TradeUpdate, Decimal]]) -> wire.Transaction | None:
        ledger = self.ledgers[account_id]
        last = group[-1][1]
        order = ledger.by_core.get(last.order.client_order_id)
        if order is None:
            return None
        qty = sum((u.qty or Decimal(0) for _, u, _ in group), Decimal(0))
        notional = sum(((u.qty or Decimal(0)) * (u.price or Decimal(0)) for _, u, _ in group), Decimal(0))
        entry = self.entries[order.instrument]
        tick = entry.instrument.tick_size
        vwap = group[0][1].price if len(group) == 1 and group[0][1].price is not None else notional / qty
        if vwap != vwap.quantize(tick):
            vwap = vwap.quantize(tick.scaleb(-3))
        units = qty if order.units > 0 else -qty
        commission = sum((u.commission or Decimal(0) for _, u, _ in group), Decimal(0))
        cash = group[-1][2]
        pl = cash - ledger.last_cash + commission
        ledger.last_cash = cash
        txn_id = ledger.next_id()
        now = self.now()
        account = self.accounts[account_id]
        effect = ledger.apply_fill(
            txn_id, order.instrument, units, vwap, now=now, rate=lambda: account.rate(entry.instrument.quote)
        )
        top = self.quote(order.instrument)
        full_price = wire.FullPrice(
            bids=[wire.PriceBucket(price=top.bid, liquidity=top.bid_size)],
            asks=[wire.PriceBucket(price=top.ask, liquidity=top.ask_size)],
            closeout_bid=top.bid,
            closeout_ask=top.ask,
            timestamp=top.ts,
        )
        txn = self.txn(
            account_id,
            txn_id,
            "ORDER_FILL",
            order_id=order.id,
            client_order_id=order.client_extensions.id if order.client_extensions else None,
            instrument=order.instrument,
            units=units,
            price=vwap,
            full_vwap=vwap,
            full_price=full_price,
            reason=order.fill_reason or f"{order.type}_ORDER",
            pl=money(pl),
            financing=Decimal("0.0000"),
            commission=money(commission),
            guaranteed_execution_fee=Decimal("0.0000"),
            account_balance=money(cash),
            trade_opened=effect.opened,
            trades_closed=effect.closed or None,
            trade_reduced=effect.reduced,
        )
        order.filling_transaction_id = txn_id
        if last.order.status is OrderStatus.FILLED:
            order.state = "FILLED"
            order.filled_time = now
        if effect.opened is not None:
            order.trade_opened_id = effect.opened.trade_id
        if effect.reduced is not None:
            order.trade_reduced_id = effect.reduced.trade_id
        order.trade_closed_ids += [t.trade_id for t in effect.closed]
        return txn

    def _order_event(self, account_id: str, update: TradeUpdate) -> wire.Transaction | None:
        ledger = self.ledgers[account_id]
        order = ledger.by_core.get(update.order.client_order_id)
        if order is None or order.state in ("FILLED", "CANCELLED"):
            return None
        if update.event == "canceled":
            reason = CANCEL_REASONS.get(update.reason or "", "INTERNAL_SERVER_ERROR")
        elif update.event == "expired":
            reason = "TIME_IN_FORCE_EXPIRED"
        else:
            return None  # "new", "replaced", "triggered": the command that caused them writes its own
        return self.cancel_transaction(account_id, order, reason)

    def cancel_transaction(
        self,
        account_id: str,
        order: OrderRecord,
        reason: str,
        *,
        replaced_by: str | None = None,
        txn_id: str | None = None,
    ) -> wire.Transaction:
        """An ``ORDER_CANCEL`` for ``order`` (not yet recorded), and the order marked cancelled."""
        txn_id = txn_id or self.ledgers[account_id].next_id()
        order.state = "CANCELLED"
        order.cancelling_transaction_id = txn_id
        order.cancelled_time = self.now()
        order.replaced_by_order_id = replaced_by
        return self.txn(
            account_id,
            txn_id,
            "ORDER_CANCEL",
            order_id=order.id,
            client_order_id=order.client_extensions.id if order.client_extensions else None,
            replaced_by_order_id=replaced_by,
            reason=reason,
        )

    # --- reports --------------------------------------------------------------------------------

    def summary(self, account_id: str) -> wire.AccountSummary:
        """``GET .../summary`` from the core's account and the ledger."""
        account, ledger = self.accounts[account_id], self.ledgers[account_id]
        body = self.account_body(account_id)
        config = next(a for a in self.oanda.accounts if a.account_id == account_id)
        open_trades = ledger.open_trades()
        return wire.AccountSummary(
            id=account_id,
            alias=config.alias,
            currency=body.currency,
            balance=money(body.cash),
            created_by_user_id=self.oanda.user_id,
            created_time=ledger.transactions[0].time,
            pl=money(account.realized_pnl),
            resettable_pl=money(account.realized_pnl),
            financing=Decimal("0.0000"),
            commission=money(account.fees),
            margin_rate=Decimal("0.0333"),
            open_trade_count=len(open_trades),
            open_position_count=len({t.instrument for t in open_trades}),
            pending_order_count=sum(1 for o in ledger.orders.values() if o.state == "PENDING"),
            hedging_enabled=ledger.hedging,
            unrealized_pl=money(body.equity - body.cash),
            nav=money(body.equity),
            margin_used=money(body.margin_used),
            margin_available=money(body.equity - body.margin_used),
            withdrawal_limit=money(max(Decimal(0), body.equity - body.margin_used)),
            last_transaction_id=ledger.last_transaction_id,
        )

    def unrealized(self, account_id: str, instrument: str, units: Decimal, price: Decimal) -> Decimal:
        """Home-currency P&L of ``units`` opened at ``price``, marked where they would close (bid for long)."""
        top = self.quote(instrument)
        mark = top.bid if units > 0 else top.ask
        quote_ccy = self.entries[instrument].instrument.quote
        return (mark - price) * units * self.accounts[account_id].rate(quote_ccy)

    def positions_of(self, account_id: str) -> list[wire.Position]:
        """``GET .../openPositions``: each instrument's long and short side, from its open trades."""
        ledger = self.ledgers[account_id]
        out = []
        for instrument, longs, shorts in ledger.position_sides():
            sides = []
            for trades, sign in ((longs, 1), (shorts, -1)):
                units = sum((t.current_units for t in trades), Decimal(0))
                unrealized = sum(
                    (self.unrealized(account_id, instrument, t.current_units, t.price) for t in trades), Decimal(0)
                )
                realized = money(ledger.realized.get((instrument, sign), Decimal(0)))
                avg = None
                if units:
                    tick = self.entries[instrument].instrument.tick_size
                    avg = (sum((t.current_units * t.price for t in trades), Decimal(0)) / units).quantize(
                        tick.scaleb(-1)
                    )
                sides.append(
                    wire.PositionSide(
                        units=units,
                        average_price=avg,
                        trade_ids=[t.id for t in trades] or None,
                        pl=realized,
                        unrealized_pl=money(unrealized),
                        resettable_pl=realized,
                    )
                )
            long_side, short_side = sides
            out.append(
                wire.Position(
                    instrument=instrument,
                    pl=long_side.pl + short_side.pl,
                    unrealized_pl=long_side.unrealized_pl + short_side.unrealized_pl,
                    resettable_pl=long_side.pl + short_side.pl,
                    long=long_side,
                    short=short_side,
                )
            )
        return out

    def price_of(self, instrument: str) -> wire.ClientPrice:
        """The current price of an instrument as a ``PRICE``."""
        top = self.quote(instrument)
        return wire.ClientPrice(
            type="PRICE",
            instrument=instrument,
            time=top.ts,
            status="tradeable",
            tradeable=True,
            # The pricing endpoints give liquidity as a JSON integer (fills' fullPrice as a string).
            bids=[wire.PriceBucket(price=top.bid, liquidity=_whole(top.bid_size))],
            asks=[wire.PriceBucket(price=top.ask, liquidity=_whole(top.ask_size))],
            closeout_bid=top.bid,
            closeout_ask=top.ask,
        )


def _whole(size: Decimal) -> int | Decimal:
    return int(size) if size == size.to_integral_value() else size
