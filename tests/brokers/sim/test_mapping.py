"""Sim wire bodies to the normalized model: canonical symbols, and one event per trade update."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import pytest

from brokerlink.brokers.sim.mapping import (
    SymbolMap,
    canonical_symbol,
    fill,
    fill_event,
    instrument,
    order,
    trade_update_event,
)
from brokerlink.brokers.sim.wire import FillBody, InstrumentBody, OrderBody, TradeUpdate
from brokerlink.domain.enums import AssetClass, OrderStatus, OrderType, Side, TimeInForce
from brokerlink.domain.events import (
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderTriggered,
    OrderUpdated,
)

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
T1 = datetime(2026, 1, 5, 12, 0, 1, tzinfo=UTC)


def inst(symbol: str, base: str, quote: str, asset_class: AssetClass) -> InstrumentBody:
    return InstrumentBody(
        symbol=symbol,
        base=base,
        quote=quote,
        asset_class=asset_class,
        tick_size=Decimal("0.00001"),
        qty_step=Decimal("0.01"),
        min_qty=Decimal("0.01"),
        max_qty=None,
        min_notional=Decimal(0),
        contract_size=Decimal(100000),
        tradable=True,
    )


INSTRUMENTS = [
    inst("EURUSD", "EUR", "USD", AssetClass.FX),
    inst("BTCUSDT", "BTC", "USDT", AssetClass.CRYPTO),
    inst("AAPL", "AAPL", "USD", AssetClass.EQUITY),
]
SYMBOLS = SymbolMap(INSTRUMENTS)
ORDER = OrderBody(
    order_id="V-7",
    client_order_id="c-7",
    symbol="EURUSD",
    side=Side.BUY,
    qty=Decimal("0.10"),
    type=OrderType.LIMIT,
    tif=TimeInForce.GTC,
    limit_price=Decimal("1.08515"),
    stop_price=None,
    status=OrderStatus.PARTIALLY_FILLED,
    filled_qty=Decimal("0.04"),
    avg_fill_price=Decimal("1.08515"),
    created_at=T0,
    updated_at=T0,
)


def test_canonical_symbols_both_ways() -> None:
    assert [canonical_symbol(i) for i in INSTRUMENTS] == ["EUR/USD", "BTC/USDT", "AAPL"]
    assert SYMBOLS.venue("EUR/USD") == "EURUSD"
    assert SYMBOLS.canonical("BTCUSDT") == "BTC/USDT"
    assert "AAPL" in SYMBOLS
    with pytest.raises(KeyError):
        SYMBOLS.venue("XAU/USD")
    ins = instrument(INSTRUMENTS[0])
    assert (ins.symbol, ins.venue_symbol, ins.contract_size) == ("EUR/USD", "EURUSD", Decimal(100000))


def test_report_orders_carry_the_venue_id_and_canonical_symbol() -> None:
    o = order(ORDER, account_id="acc_1", symbols=SYMBOLS)
    assert (o.id, o.venue_order_id, o.client_order_id, o.symbol) == ("V-7", "V-7", "c-7", "EUR/USD")
    assert o.leaves_qty == Decimal("0.06")


def test_fill_uses_the_execution_id_as_trade_id() -> None:
    body = FillBody(
        id=3,
        execution_id="E-3",
        order_id="V-7",
        client_order_id="c-7",
        symbol="EURUSD",
        side=Side.BUY,
        qty=Decimal("0.04"),
        price=Decimal("1.08515"),
        commission=Decimal("1.52"),
        commission_currency="USD",
        liquidity="taker",
        ts=T1,
    )
    f = fill(body, account_id="acc_1", symbols=SYMBOLS)
    assert (f.trade_id, f.symbol, f.fee, f.fee_currency) == ("E-3", "EUR/USD", Decimal("1.52"), "USD")
    event = fill_event(body, account_id="acc_1", symbols=SYMBOLS, received=T1)
    assert (event.trade_id, event.symbol, event.last_qty, event.commission) == (
        "E-3",
        "EUR/USD",
        Decimal("0.04"),
        Decimal("1.52"),
    )
    assert (event.ts, event.venue_ts, event.liquidity) == (T1, T1, "taker")


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ("new", OrderAccepted),
        ("canceled", OrderCanceled),
        ("expired", OrderExpired),
        ("replaced", OrderUpdated),
        ("rejected", OrderRejected),
        ("triggered", OrderTriggered),
    ],
)
def test_each_trade_update_becomes_its_event(event: str, expected: type) -> None:
    update = msgspec.convert({"event": event, "order": msgspec.to_builtins(ORDER)}, TradeUpdate)
    result = trade_update_event(update, account_id="acc_1", symbols=SYMBOLS, received=T1)
    assert type(result) is expected
    assert (result.account_id, result.client_order_id, result.ts, result.venue_ts) == ("acc_1", "c-7", T1, T0)


def test_fill_update_becomes_order_filled() -> None:
    update = TradeUpdate(
        event="partial_fill",
        order=ORDER,
        execution_id="E-9",
        qty=Decimal("0.04"),
        price=Decimal("1.08515"),
        commission=Decimal("1.52"),
        commission_currency="USD",
        liquidity="taker",
    )
    event = trade_update_event(update, account_id="acc_1", symbols=SYMBOLS, received=T1)
    assert isinstance(event, OrderFilled)
    assert (event.trade_id, event.symbol, event.last_qty, event.last_price) == (
        "E-9",
        "EUR/USD",
        Decimal("0.04"),
        Decimal("1.08515"),
    )
    assert event.dedupe_key == ("order_filled", "acc_1", "E-9")


def test_a_fill_without_an_execution_id_is_refused() -> None:
    with pytest.raises(ValueError, match="lacks execution id"):
        trade_update_event(TradeUpdate(event="fill", order=ORDER), account_id="a", symbols=SYMBOLS, received=T1)
