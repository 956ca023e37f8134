"""OANDA's documented and recorded v20 responses (examples/, sources in examples/README.md) through the
adapter's parser: the wire structs decode each one, keep every field they model under OANDA's own
name, and the mapping gives the domain values (Decimals, signs, statuses) the example means."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest

from brokerlink.brokers.base import OrderRefused, RefusalReason
from brokerlink.brokers.oanda import mapping, wire
from brokerlink.brokers.oanda.client import error_for
from brokerlink.domain.enums import AssetClass, OrderStatus, OrderType, Side, TimeInForce

T = TypeVar("T")
EXAMPLES = Path(__file__).parent / "examples"
NOW = datetime(2024, 1, 2, tzinfo=UTC)

NOT_MODELLED = {
    "tags",
    "stopLossOnFill",
    "takeProfitOnFill",
    "clientExtensionsModify",
    "quoteHomeConversionFactors",
    "unitsAvailable",
}
"""Fields the examples carry that the adapter has no use for (dependent orders, conversion factors)."""


def load(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


def _same(decoded: Any, original: Any, path: str) -> None:
    """Every key of ``original`` is a field of the struct under the same name (or deliberately not
    modelled), and every value decoded equals the original's."""
    if isinstance(decoded, msgspec.Struct):
        assert isinstance(original, dict), path
        names = {f.encode_name: f.name for f in msgspec.structs.fields(decoded)}
        unknown = set(original) - set(names)
        assert unknown <= NOT_MODELLED, f"{path}: fields the structs do not know: {unknown - NOT_MODELLED}"
        for encoded, attribute in names.items():
            if encoded in original:
                _same(getattr(decoded, attribute), original[encoded], f"{path}.{encoded}")
    elif isinstance(decoded, list):
        assert len(decoded) == len(original), path
        for i, (a, b) in enumerate(zip(decoded, original, strict=True)):
            _same(a, b, f"{path}[{i}]")
    elif isinstance(decoded, Decimal):
        assert decoded == Decimal(str(original)), path
    elif isinstance(decoded, datetime):
        # nanosecond times keep microseconds (msgspec rounds, Python truncates: 1 µs apart at most)
        assert abs(decoded - datetime.fromisoformat(original)).total_seconds() <= 1e-6, path
    else:
        assert decoded == original, path


def roundtrip(raw: bytes, kind: type[T]) -> T:
    """Decode ``raw`` and check that nothing was lost or misnamed (see :func:`_same`)."""
    decoded = msgspec.json.decode(raw, type=kind)
    _same(decoded, json.loads(raw), kind.__name__)
    return decoded


def test_the_account_list_names_every_account() -> None:
    body = roundtrip(load("accounts.json"), wire.AccountsResponse)
    assert [a.id for a in body.accounts] == ["101-004-1435156-002", "101-004-1435156-001"]


def test_an_account_summary_is_a_balance_in_its_home_currency() -> None:
    body = roundtrip(load("account_summary.json"), wire.AccountSummaryResponse)
    balance = mapping.balance(body.account, account_id="acc_1", now=NOW)
    assert balance.currency == "EUR"
    assert balance.cash == Decimal("35454.4740")
    assert balance.equity == Decimal("35454.4740")
    assert balance.margin_used == Decimal("10581.5000")
    assert balance.buying_power == Decimal("497459.4800"), "free margin at the 5% margin rate"
    assert body.last_transaction_id == "2123"


def test_instruments_carry_oandas_precisions() -> None:
    body = roundtrip(load("account_instruments.json"), wire.InstrumentsResponse)
    by_symbol = {i.symbol: i for i in map(mapping.instrument, body.instruments)}
    eur = by_symbol["EUR/USD"]
    assert (eur.venue_symbol, eur.asset_class, eur.base, eur.quote) == ("EUR_USD", AssetClass.FX, "EUR", "USD")
    assert eur.tick_size == Decimal("0.00001"), "displayPrecision 5"
    assert eur.qty_step == Decimal(1), "tradeUnitsPrecision 0: whole units"
    assert eur.min_qty == Decimal(1)
    assert eur.max_qty == Decimal(100_000_000)
    assert eur.contract_size == Decimal(1), "units are units of the base currency"
    index = by_symbol["EU50/EUR"]
    assert index.asset_class is AssetClass.CFD
    assert index.tick_size == Decimal("0.1")


def test_a_filled_market_order_answer_is_one_fill() -> None:
    body = roundtrip(load("order_create_market_filled.json"), wire.CreateOrderResponse)
    assert body.order_fill_transaction is not None
    fill = mapping.fill(body.order_fill_transaction, account_id="acc_1", currency="USD")
    assert fill.trade_id == "23", "the fill's transaction id: unique per account"
    assert fill.order_id == "22"
    assert fill.client_order_id == "oanda-22", "no clientExtensions: an order placed elsewhere"
    assert (fill.symbol, fill.side, fill.qty, fill.price) == ("EUR/USD", Side.BUY, Decimal(100), Decimal("1.16377"))
    assert fill.fee == Decimal(0)
    assert body.order_fill_transaction.trade_opened is not None
    assert body.order_fill_transaction.trade_opened.trade_id == "23"


def test_a_cancelled_market_order_answer_names_the_reason() -> None:
    body = roundtrip(load("order_create_market_cancelled.json"), wire.CreateOrderResponse)
    assert body.order_cancel_transaction is not None
    assert body.order_cancel_transaction.reason == "MARKET_HALTED"
    assert body.order_create_transaction.units == Decimal(-100)
    assert body.order_create_transaction.trade_close is not None


def test_a_rejected_order_is_a_definitive_refusal() -> None:
    raw = load("order_create_rejected.json")
    body = roundtrip(raw, wire.ErrorBody)
    assert body.order_reject_transaction is not None
    assert body.order_reject_transaction.reject_reason == "TAKE_PROFIT_ON_FILL_PRICE_PRECISION_EXCEEDED"
    error = error_for(400, raw, {}, "coid-1")
    assert isinstance(error, OrderRefused)
    assert error.reason is RefusalReason.INVALID_ORDER


def test_a_limit_order_answer_and_the_pending_list() -> None:
    created = roundtrip(load("order_create_limit.json"), wire.CreateOrderResponse)
    assert created.order_create_transaction.type == "LIMIT_ORDER"
    assert created.order_fill_transaction is None
    pending = roundtrip(load("orders_pending.json"), wire.OrdersResponse)
    order = mapping.order(pending.orders[0], account_id="acc_1")
    assert order.client_order_id == "myID", "clientExtensions.id is our client order id"
    assert (order.side, order.qty, order.type, order.tif) == (Side.SELL, Decimal(100), OrderType.LIMIT, TimeInForce.GTC)
    assert order.limit_price == Decimal("1.20000")
    assert order.status is OrderStatus.NEW
    assert order.venue_order_id == "2304"


def test_a_replace_answer_cancels_and_recreates_with_the_same_client_id() -> None:
    body = roundtrip(load("order_replace.json"), wire.CreateOrderResponse)
    assert body.order_cancel_transaction is not None
    assert body.order_cancel_transaction.reason == "CLIENT_REQUEST_REPLACED"
    assert body.order_cancel_transaction.replaced_by_order_id == "2307"
    create = body.order_create_transaction
    assert (create.reason, create.replaces_order_id, create.units) == ("REPLACEMENT", "2304", Decimal(-500_000))
    assert create.client_extensions is not None
    assert create.client_extensions.id == "myID"


def test_a_cancel_answer() -> None:
    body = roundtrip(load("order_cancel.json"), wire.CancelOrderResponse)
    txn = body.order_cancel_transaction
    assert (txn.type, txn.reason, txn.order_id, txn.client_order_id) == (
        "ORDER_CANCEL",
        "CLIENT_REQUEST",
        "2307",
        "myID",
    )


def test_positions_map_each_side_that_holds_units() -> None:
    body = roundtrip(load("open_positions.json"), wire.PositionsResponse)
    positions = [p for pos in body.positions for p in mapping.positions(pos, account_id="acc_1")]
    by_symbol = {p.symbol: p for p in positions}
    assert set(by_symbol) == {"DE30/EUR", "EUR/USD"}
    assert by_symbol["DE30/EUR"].qty == Decimal(10), "the long side"
    assert by_symbol["DE30/EUR"].avg_price == Decimal("10678.3")
    assert by_symbol["DE30/EUR"].unrealized_pnl == Decimal("-284.0000")
    assert by_symbol["EUR/USD"].qty == Decimal(-100), "the short side, negative"
    assert by_symbol["EUR/USD"].avg_price == Decimal("1.09843")


def test_a_hedged_position_is_two_positions() -> None:
    position = wire.Position(
        instrument="EUR_USD",
        long=wire.PositionSide(units=Decimal(300), average_price=Decimal("1.1")),
        short=wire.PositionSide(units=Decimal(-100), average_price=Decimal("1.2")),
    )
    assert sorted(p.qty for p in mapping.positions(position, account_id="acc_1")) == [Decimal(-100), Decimal(300)]


def test_a_position_close_answer_closes_trades() -> None:
    body = roundtrip(load("position_close.json"), wire.ClosePositionResponse)
    fill = body.long_order_fill_transaction
    assert fill is not None
    assert fill.reason == "MARKET_ORDER_POSITION_CLOSEOUT"
    assert [t.units for t in fill.trades_closed or []] == [Decimal(-1), Decimal(-250)]
    assert fill.user_id == "<USERID>", "the reference elides ids as text"
    assert mapping.fill(fill, account_id="acc_1", currency="USD").side is Side.SELL


def test_trades_and_transactions_decode() -> None:
    trades = roundtrip(load("open_trades.json"), wire.TradesResponse)
    assert (trades.trades[0].current_units, trades.trades[0].state) == (Decimal(100), "OPEN")
    body = roundtrip(load("transactions_idrange.json"), wire.TransactionsResponse)
    assert [t.type for t in body.transactions] == ["LIMIT_ORDER", "ORDER_CLIENT_EXTENSIONS_MODIFY", "ORDER_CANCEL"]


def test_prices_snapshot_and_stream() -> None:
    body = roundtrip(load("pricing.json"), wire.PricingResponse)
    quote = mapping.quote(body.prices[0])
    assert (quote.symbol, quote.bid, quote.ask) == ("EUR/USD", Decimal("1.12157"), Decimal("1.12170"))
    assert quote.bid_size == Decimal(10_000_000)
    lines = load("pricing_stream.ndjson").splitlines()
    decoded = [roundtrip(line, wire.ClientPrice) for line in lines]
    assert [p.type for p in decoded] == ["PRICE", "HEARTBEAT", "PRICE"]
    assert mapping.quote(decoded[0]).symbol == "EUR/JPY"


def test_transaction_stream_lines() -> None:
    beat, order = (roundtrip(line, wire.Transaction) for line in load("transaction_stream.ndjson").splitlines())
    assert (beat.type, beat.last_transaction_id) == ("HEARTBEAT", "16388")
    assert (order.type, order.units, order.instrument) == ("MARKET_ORDER", Decimal("1.0"), "AUD_USD")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("last_transaction_id", "lastTransactionID"),
        ("related_transaction_ids", "relatedTransactionIDs"),
        ("unrealized_pl", "unrealizedPL"),
        ("nav", "NAV"),
        ("full_vwap", "fullVWAP"),
        ("client_order_id", "clientOrderID"),
        ("pl", "pl"),
        ("margin_closeout_nav", "marginCloseoutNAV"),
    ],
)
def test_oanda_names(name: str, expected: str) -> None:
    assert wire.oanda_name(name) == expected
