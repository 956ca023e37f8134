"""Order validation before an order reaches the engine, with messages a client can act on.

The engine refuses malformed orders too, but in lots and ticks; these checks speak the instrument's
units (``qty 0.015 is not a multiple of the qty step 0.01``) and add what the engine does not know:
minimum notional and tradability.
"""

from __future__ import annotations

from decimal import Decimal

from brokerlink.brokers.sim.gate import WireError
from brokerlink.brokers.sim.matching import MatchingEngine
from brokerlink.brokers.sim.wire import AmendOrder, ErrorCode, NewOrder
from brokerlink.domain.enums import OrderType
from brokerlink.domain.models import Instrument
from brokerlink.kit.money import MoneyError


def _invalid(message: str) -> WireError:
    return WireError(400, ErrorCode.INVALID_ORDER, message)


def _check_qty(instrument: Instrument, engine: MatchingEngine, qty: Decimal) -> None:
    if not qty.is_finite() or qty <= 0:
        raise _invalid(f"qty must be positive, got {qty}")
    try:
        engine.grid.lots(qty)
    except MoneyError:
        raise _invalid(f"qty {qty} is not a multiple of the qty step {instrument.qty_step}") from None
    if qty < instrument.min_qty:
        raise _invalid(f"qty {qty} is below the minimum qty {instrument.min_qty}")
    if instrument.max_qty is not None and qty > instrument.max_qty:
        raise _invalid(f"qty {qty} is above the maximum qty {instrument.max_qty}")


def _check_price(instrument: Instrument, engine: MatchingEngine, name: str, price: Decimal | None) -> None:
    if price is None:
        return
    if not price.is_finite() or price <= 0:
        raise _invalid(f"{name} must be positive, got {price}")
    try:
        engine.grid.ticks(price)
    except MoneyError:
        raise _invalid(f"{name} {price} is not a multiple of the tick size {instrument.tick_size}") from None


def check_new_order(instrument: Instrument, engine: MatchingEngine, new: NewOrder, touch: Decimal) -> Decimal:
    """Refuse an order the instrument cannot take; returns the price to check margin and notional at.

    That price is the limit price, else the stop price, else ``touch`` (where a market order starts).
    """
    if not instrument.tradable:
        raise WireError(422, ErrorCode.MARKET_CLOSED, f"{new.symbol} is not tradable now")
    _check_qty(instrument, engine, new.qty)
    _check_price(instrument, engine, "limit_price", new.limit_price)
    _check_price(instrument, engine, "stop_price", new.stop_price)
    needs_limit = new.type in {OrderType.LIMIT, OrderType.STOP_LIMIT}
    needs_stop = new.type in {OrderType.STOP, OrderType.STOP_LIMIT}
    if needs_limit != (new.limit_price is not None):
        raise _invalid(f"a {new.type} order {'needs a' if needs_limit else 'takes no'} limit_price")
    if needs_stop != (new.stop_price is not None):
        raise _invalid(f"a {new.type} order {'needs a' if needs_stop else 'takes no'} stop_price")
    price = new.limit_price or new.stop_price or touch
    notional = instrument.notional(new.qty, price)
    if notional < instrument.min_notional:
        raise _invalid(f"notional {notional} is below the minimum notional {instrument.min_notional}")
    return price


def check_amend(instrument: Instrument, engine: MatchingEngine, amend: AmendOrder) -> None:
    """Refuse amend values off the instrument's grid or limits."""
    if amend.qty is None and amend.limit_price is None and amend.stop_price is None:
        raise _invalid("nothing to amend: give qty, limit_price or stop_price")
    if amend.qty is not None:
        _check_qty(instrument, engine, amend.qty)
    _check_price(instrument, engine, "limit_price", amend.limit_price)
    _check_price(instrument, engine, "stop_price", amend.stop_price)
