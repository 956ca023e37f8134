"""Binance's documented example responses (examples/README.md names each source) through the whole parser.

Each example decodes with the test venue's wire structs (so the venue speaks the documented shapes),
then goes through what the adapter runs in production: ccxt's Binance parser, then
:mod:`brokerlink.brokers.ccxt.mapping`, and must come out with the exact Decimals and statuses.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from ccxt.base import errors as ccxt_errors

from brokerlink.brokers.base import OrderRefused, RefusalReason
from brokerlink.brokers.ccxt import mapping
from brokerlink.brokers.ccxt.errors import translate
from brokerlink.brokers.ccxt.exchange import create_exchange
from brokerlink.brokers.ccxt.markets import EIGHT_PLACES, instrument, to_decimal
from brokerlink.brokers.ccxt.venue.wire import (
    AccountInfo,
    CancelResult,
    ErrorBody,
    ExchangeInfo,
    ExecutionReport,
    MyTrade,
    NewOrderResult,
    OrderQuery,
    OutboundAccountPosition,
    ServerTime,
    SymbolFilter,
)
from brokerlink.domain.enums import OrderStatus, OrderType, Side
from brokerlink.domain.models import Instrument

EXAMPLES = Path(__file__).parent / "examples"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def example(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text())


def raw(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


@pytest.fixture(scope="module")
def exchange() -> Any:
    """ccxt.pro's Binance class with the example markets loaded, no network."""
    ex = create_exchange("binance", api_key="key", secret="secret", pro=True)
    ex.options["crossMarginPairsData"] = []
    ex.options["isolatedMarginPairsData"] = []
    ex.set_markets([ex.parse_market(s) for s in example("exchange_info.json")["symbols"]])
    return ex


def rules(exchange: Any, symbol: str) -> Instrument:
    found = instrument(exchange.market(symbol), exchange.precisionMode)
    assert found is not None
    return found


def test_exchange_info_decodes_and_gives_the_filters_as_decimal_rules(exchange: Any) -> None:
    info = msgspec.json.decode(raw("exchange_info.json"), type=ExchangeInfo)
    filters = [msgspec.json.decode(f, type=SymbolFilter) for f in info.symbols[0].filters]
    assert [type(f).__name__ for f in filters] == ["PriceFilter", "LotSize", "NotionalFilter"]
    eth = rules(exchange, "ETH/BTC")
    assert eth.symbol == "ETH/BTC"
    assert eth.venue_symbol == "ETHBTC"
    assert eth.tick_size == Decimal("0.000001")
    assert eth.qty_step == Decimal("0.001")
    assert eth.min_qty == Decimal("0.001")
    assert eth.max_qty == Decimal(100_000)
    assert eth.min_notional == Decimal(10)


def test_a_full_new_order_response(exchange: Any) -> None:
    msgspec.json.decode(raw("new_order_full.json"), type=NewOrderResult)
    market = exchange.market("BTC/USDT")
    parsed = exchange.parse_order(example("new_order_full.json"), market)
    order = mapping.order(
        parsed,
        account_id="acc",
        instrument=rules(exchange, "BTC/USDT"),
        client_order_id="6gCrw2kRUAF9CvJDGP16IP",
        now=NOW,
    )
    assert order.status is OrderStatus.FILLED
    assert order.type is OrderType.MARKET
    assert order.side is Side.SELL
    assert order.qty == Decimal(10)
    assert order.filled_qty == Decimal(10)
    assert order.venue_order_id == "28"
    assert order.created_at == datetime(2017, 10, 11, 12, 32, 56, 595000, tzinfo=UTC)
    fills = parsed["trades"]
    assert [to_decimal(t["price"], Decimal("0.01")) for t in fills] == [
        Decimal(p) for p in ("4000", "3999", "3998", "3997", "3995")
    ]
    assert sum(to_decimal(t["fee"]["cost"], EIGHT_PLACES) or Decimal(0) for t in fills) == Decimal("39.98300000")


def test_a_result_new_order_response(exchange: Any) -> None:
    msgspec.json.decode(raw("new_order_result.json"), type=NewOrderResult)
    parsed = exchange.parse_order(example("new_order_result.json"), exchange.market("BTC/USDT"))
    assert mapping.status(parsed) is OrderStatus.FILLED
    assert parsed["clientOrderId"] == "6gCrw2kRUAF9CvJDGP16IP"


def test_a_queried_order(exchange: Any) -> None:
    msgspec.json.decode(raw("query_order.json"), type=OrderQuery)
    parsed = exchange.parse_order(example("query_order.json"), exchange.market("LTC/BTC"))
    order = mapping.order(
        parsed,
        account_id="acc",
        instrument=rules(exchange, "LTC/BTC"),
        client_order_id=parsed["clientOrderId"],
        now=NOW,
    )
    assert order.client_order_id == "myOrder1"
    assert order.status is OrderStatus.NEW
    assert order.type is OrderType.LIMIT
    assert order.limit_price == Decimal("0.1")
    assert order.qty == Decimal(1)
    assert order.filled_qty == 0
    assert order.avg_fill_price is None
    assert order.created_at == datetime(2017, 7, 12, 2, 41, 59, 559000, tzinfo=UTC)


def test_open_orders(exchange: Any) -> None:
    msgspec.json.decode(raw("open_orders.json"), type=list[OrderQuery])
    parsed = exchange.parse_orders(example("open_orders.json"), exchange.market("LTC/BTC"))
    assert [(o["clientOrderId"], mapping.status(o)) for o in parsed] == [("myOrder1", OrderStatus.NEW)]


def test_a_cancel_answer_names_the_cancel_not_the_order(exchange: Any) -> None:
    body = msgspec.json.decode(raw("cancel_order.json"), type=CancelResult)
    assert body.orig_client_order_id == "myOrder1"
    parsed = exchange.parse_order(example("cancel_order.json"), exchange.market("LTC/BTC"))
    assert mapping.status(parsed) is OrderStatus.CANCELED
    # ccxt reports the cancel request's own id here: the adapter never reads the client id from a cancel answer.
    assert parsed["clientOrderId"] == "cancelMyOrder1"


def test_account_trades(exchange: Any) -> None:
    msgspec.json.decode(raw("my_trades.json"), type=list[MyTrade])
    trade = exchange.parse_trade(example("my_trades.json")[0], exchange.market("BNB/BTC"))
    event = mapping.fill_event(
        trade, account_id="acc", instrument=rules(exchange, "BNB/BTC"), client_order_id="c-1", received=NOW
    )
    assert event.trade_id == "BNBBTC:28457"
    assert event.venue_order_id == "100234"
    assert event.side is Side.BUY
    assert event.last_qty == Decimal(12)
    assert event.last_price == Decimal("4.000001")
    assert event.commission == Decimal("10.1")
    assert event.commission_currency == "BNB"
    assert event.liquidity == "taker"
    assert event.venue_ts == datetime(2017, 7, 12, 13, 19, 9, 590000, tzinfo=UTC)


def test_account_balances(exchange: Any) -> None:
    msgspec.json.decode(raw("account.json"), type=AccountInfo)
    balance = exchange.parse_balance_custom(example("account.json"), "spot")
    assert to_decimal(balance["BTC"]["total"], EIGHT_PLACES) == Decimal("4723846.89208129")
    assert to_decimal(balance["LTC"]["free"], EIGHT_PLACES) == Decimal("4763368.68006011")
    assert to_decimal(balance["LTC"]["used"], EIGHT_PLACES) == 0


def test_server_time() -> None:
    assert msgspec.json.decode(raw("server_time.json"), type=ServerTime).server_time == 1_499_827_319_559


def test_the_error_body_is_a_definitive_refusal(exchange: Any) -> None:
    body = msgspec.json.decode(raw("error.json"), type=ErrorBody)
    assert body == ErrorBody(code=-1121, msg="Invalid symbol.")
    text = raw("error.json").decode()
    with pytest.raises(ccxt_errors.BadSymbol) as info:
        exchange.handle_errors(400, "Bad Request", "http://x/api/v3/order", "POST", {}, text, json.loads(text), {}, {})
    refused = translate(info.value, client_order_id="c-1")
    assert isinstance(refused, OrderRefused)
    assert refused.reason is RefusalReason.INVALID_ORDER


def test_an_execution_report(exchange: Any) -> None:
    report = msgspec.json.decode(raw("execution_report.json"), type=ExecutionReport)
    assert report.execution_type == "NEW"
    assert report.original_client_order_id == ""
    parsed = exchange.parse_ws_order(example("execution_report.json"))
    assert parsed["symbol"] == "ETH/BTC"
    assert parsed["clientOrderId"] == "mUvoqJxFIILMdfAW5iGSOW"
    order = mapping.order(
        parsed,
        account_id="acc",
        instrument=rules(exchange, "ETH/BTC"),
        client_order_id=parsed["clientOrderId"],
        now=NOW,
    )
    assert order.status is OrderStatus.NEW
    assert order.limit_price == Decimal("0.1026441")
    assert order.qty == Decimal(1)


def test_an_account_position_event() -> None:
    event = msgspec.json.decode(raw("outbound_account_position.json"), type=OutboundAccountPosition)
    assert [(b.asset, Decimal(b.free), Decimal(b.locked)) for b in event.balances] == [
        ("ETH", Decimal(10_000), Decimal(0))
    ]
