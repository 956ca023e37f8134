"""Wire forms of the venue's read-only views: account, instruments, positions, depth.

Positions come from the domain at full precision; on the wire P&L is rounded half-even to the
account currency's minor unit and the average price to six decimals past the tick, so no client
ever sees a value like ``1.0000000E-22``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from brokerlink.brokers.sim.accounts import CURRENCY_DECIMALS, SimAccount
from brokerlink.brokers.sim.book import Depth
from brokerlink.brokers.sim.instruments import SimInstrument
from brokerlink.brokers.sim.matching import Grid
from brokerlink.brokers.sim.wire import AccountBody, DepthBody, InstrumentBody, PositionBody
from brokerlink.domain.enums import AccountMode

AVG_PRICE_EXTRA_DIGITS = 6


def account_body(account: SimAccount, ts: datetime) -> AccountBody:
    """``GET /account``."""
    balance, _ = account.snapshot()
    return AccountBody(
        account_id=account.account_id,
        currency=balance.currency,
        mode=account.mode,
        cash=balance.cash,
        equity=balance.equity,
        buying_power=balance.buying_power,
        margin_used=balance.margin_used,
        ts=ts,
    )


def instrument_bodies(entries: Iterable[tuple[str, SimInstrument]]) -> list[InstrumentBody]:
    """``GET /instruments``, in the venue's spelling."""
    return [
        InstrumentBody(
            symbol=symbol,
            base=i.base,
            quote=i.quote,
            asset_class=i.asset_class,
            tick_size=i.tick_size,
            qty_step=i.qty_step,
            min_qty=i.min_qty,
            max_qty=i.max_qty,
            min_notional=i.min_notional,
            contract_size=i.contract_size,
            tradable=i.tradable,
        )
        for symbol, i in ((s, e.instrument) for s, e in entries)
    ]


def _money(amount: Decimal, unit: Decimal) -> Decimal:
    """Rounded half-even to ``unit``, without a negative zero."""
    rounded = amount.quantize(unit, ROUND_HALF_EVEN)
    return rounded.copy_abs() if rounded.is_zero() else rounded


def position_bodies(account: SimAccount, venue_symbols: Mapping[str, SimInstrument]) -> list[PositionBody]:
    """``GET /positions``: ``venue_symbols`` maps canonical symbols to (venue symbol's) instruments."""
    out = []
    for entry in account.open_positions():
        pos = entry.position
        inst = venue_symbols[pos.symbol].instrument
        money = Decimal(1).scaleb(-CURRENCY_DECIMALS.get(inst.quote, 2))
        out.append(
            PositionBody(
                position_id=inst.venue_symbol if account.mode is AccountMode.NETTING else entry.id,
                symbol=inst.venue_symbol,
                qty=pos.qty,
                avg_price=pos.avg_price.quantize(inst.tick_size.scaleb(-AVG_PRICE_EXTRA_DIGITS), ROUND_HALF_EVEN),
                unrealized_pnl=_money(pos.unrealized_pnl, money),
                realized_pnl=_money(pos.realized_pnl, money),
            )
        )
    return out


def depth_body(symbol: str, grid: Grid, snap: Depth) -> DepthBody:
    """``GET /depth/{symbol}`` from an engine snapshot."""
    return DepthBody(
        symbol=symbol,
        bids=[(grid.price(p), grid.qty(q)) for p, q in snap.bids],
        asks=[(grid.price(p), grid.qty(q)) for p, q in snap.asks],
        last_update_id=snap.last_update_id,
    )
