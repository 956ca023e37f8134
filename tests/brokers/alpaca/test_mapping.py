"""The Alpaca mapping: client order ids across replacements, symbols, fill identity, statuses, events."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from brokerlink.brokers.alpaca import mapping
from brokerlink.brokers.alpaca.adapter import market_data_urls
from brokerlink.brokers.alpaca.wire import Asset, Order, Position, TradeUpdate
from brokerlink.domain.enums import OrderStatus
from brokerlink.domain.events import (
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderExpired,
    OrderRejected,
    OrderUpdated,
)

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def _asset(symbol: str, asset_class: str = "crypto") -> Asset:
    return Asset(id=symbol, asset_class=asset_class, exchange="X", symbol=symbol, status="active", tradable=True)


SYMBOLS = mapping.SymbolMap([_asset("BTC/USD"), _asset("ETHUSD"), _asset("AAPL", "us_equity")])


def _order(**changes: object) -> Order:
    values: dict[str, object] = {
        "id": "o-1",
        "client_order_id": "mine-1",
        "created_at": NOW,
        "symbol": "BTC/USD",
        "qty": Decimal(1),
        "type": "limit",
        "side": "buy",
        "time_in_force": "gtc",
        "limit_price": Decimal(100),
        "status": "new",
        **changes,
    }
    return Order(**values)  # type: ignore[arg-type]


def test_replacements_keep_the_base_client_order_id() -> None:
    assert mapping.next_client_order_id("abc") == "abc~1"
    assert mapping.next_client_order_id("abc~1") == "abc~2"
    assert mapping.next_client_order_id("abc~9") == "abc~10"
    for generation in ("abc", "abc~1", "abc~10"):
        assert mapping.base_client_order_id(generation) == "abc"
    assert mapping.base_client_order_id("a~b") == "a~b", "only a ~<digits> suffix is ours"


def test_both_crypto_spellings_map_to_the_canonical_pair() -> None:
    assert SYMBOLS.canonical("BTC/USD") == "BTC/USD"
    assert SYMBOLS.canonical("BTCUSD") == "BTC/USD"
    assert SYMBOLS.canonical("ETHUSD") == "ETH/USD"
    assert SYMBOLS.venue("ETH/USD") == "ETHUSD", "orders use the spelling the assets list uses"
    assert SYMBOLS.canonical("AAPL ") == "AAPL"
    assert SYMBOLS.canonical("UNKNOWN") == "UNKNOWN"
    assert "AAPL" in SYMBOLS
    with pytest.raises(KeyError):
        SYMBOLS.venue("EUR/USD")
    assert mapping.split_crypto("ETHUSDT") == ("ETH", "USDT")
    with pytest.raises(ValueError, match="not a crypto pair"):
        mapping.split_crypto("USD")


def test_a_fills_trade_id_does_not_depend_on_how_the_quantity_is_written() -> None:
    assert mapping.fill_trade_id("o-1", Decimal("1.50")) == mapping.fill_trade_id("o-1", Decimal("1.5")) == "o-1:1.5"
    assert mapping.fill_trade_id("o-1", Decimal("1E+2")) == "o-1:100"
    assert mapping.fill_trade_id("o-1", Decimal("0.000000001")) == "o-1:0.000000001"


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ("pending_new", OrderStatus.PENDING_NEW),
        ("accepted", OrderStatus.NEW),
        ("new", OrderStatus.NEW),
        ("held", OrderStatus.NEW),
        ("done_for_day", OrderStatus.NEW),
        ("partially_filled", OrderStatus.PARTIALLY_FILLED),
        ("filled", OrderStatus.FILLED),
        ("pending_cancel", OrderStatus.PENDING_CANCEL),
        ("canceled", OrderStatus.CANCELED),
        ("expired", OrderStatus.EXPIRED),
        ("rejected", OrderStatus.REJECTED),
    ],
)
def test_statuses(wire: str, expected: OrderStatus) -> None:
    assert mapping.status(_order(status=wire)) is expected


def test_calculated_is_filled_only_when_the_whole_quantity_is() -> None:
    assert mapping.status(_order(status="calculated", filled_qty=Decimal(1))) is OrderStatus.FILLED
    assert mapping.status(_order(status="calculated", filled_qty=Decimal("0.5"))) is OrderStatus.NEW
    with pytest.raises(ValueError, match="unknown Alpaca order status"):
        mapping.status(_order(status="teleported"))


def _event(event: str, **order: object) -> object:
    update = TradeUpdate(event=event, order=_order(**order), timestamp=NOW)
    return mapping.trade_update_event(update, account_id="acc", symbols=SYMBOLS, received=NOW)


def test_trade_update_events() -> None:
    accepted = _event("new", client_order_id="mine-1~2")
    assert isinstance(accepted, OrderAccepted)
    assert accepted.client_order_id == "mine-1", "a replacement's events keep brokerlink's id"
    updated = _event("new", client_order_id="mine-1~1", replaces="o-0", limit_price=Decimal(99), qty=Decimal(2))
    assert isinstance(updated, OrderUpdated)
    assert (updated.client_order_id, updated.qty, updated.limit_price) == ("mine-1", Decimal(2), Decimal(99))
    assert isinstance(_event("canceled", status="canceled"), OrderCanceled)
    assert isinstance(_event("expired", status="expired"), OrderExpired)
    assert isinstance(_event("rejected", status="rejected"), OrderRejected)
    assert isinstance(_event("order_cancel_rejected"), OrderCancelRejected)
    for ignored in ("pending_new", "replaced", "done_for_day", "order_replace_rejected"):
        assert _event(ignored) is None
    with pytest.raises(ValueError, match="unknown trade update event"):
        _event("exploded")


def test_a_fill_without_quantity_or_price_is_malformed() -> None:
    update = TradeUpdate(event="fill", order=_order(status="filled"), price=Decimal(100))
    with pytest.raises(ValueError, match="lacks qty or price"):
        mapping.trade_update_event(update, account_id="acc", symbols=SYMBOLS, received=NOW)


def test_short_positions_are_negative_however_alpaca_writes_them() -> None:
    def position(qty: str, side: str) -> Decimal:
        body = Position(
            asset_id="a",
            symbol="AAPL",
            exchange="NASDAQ",
            asset_class="us_equity",
            avg_entry_price=Decimal(100),
            qty=Decimal(qty),
            side=side,  # type: ignore[arg-type]
            cost_basis=Decimal(0),
        )
        return mapping.position(body, account_id="acc", symbols=SYMBOLS).qty

    assert position("-5", "short") == Decimal(-5)
    assert position("5", "short") == Decimal(-5)
    assert position("5", "long") == Decimal(5)


def test_a_notional_order_reports_what_has_filled() -> None:
    order = mapping.order(
        _order(qty=None, notional=Decimal(500), filled_qty=Decimal("2.5"), status="filled", type="market"),
        account_id="acc",
        symbols=SYMBOLS,
    )
    assert order.qty == Decimal("2.5")
    assert order.status is OrderStatus.FILLED


def test_market_data_lives_on_alpacas_data_hosts_or_on_the_venue() -> None:
    assert market_data_urls("https://paper-api.alpaca.markets", {}) == (
        "https://data.alpaca.markets",
        "wss://stream.data.alpaca.markets",
    )
    assert market_data_urls("http://127.0.0.1:9000", {}) == ("http://127.0.0.1:9000", "ws://127.0.0.1:9000")
    assert market_data_urls("https://api.alpaca.markets", {"data_url": "https://d", "data_stream_url": "wss://s"}) == (
        "https://d",
        "wss://s",
    )
