"""Alpaca's documented example responses (examples/README.md names each source) round-trip through the
adapter's parser: the wire structs decode them, the mapping gives the right Decimals, symbols and
statuses. And the test venue's own answers decode with the same structs and carry every field the
documented examples carry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from brokerlink.brokers.alpaca import mapping
from brokerlink.brokers.alpaca.venue import create_alpaca_venue_app
from brokerlink.brokers.alpaca.wire import (
    HEADER_KEY_ID,
    HEADER_SECRET_KEY,
    Account,
    Asset,
    AuthorizationData,
    LatestQuotes,
    ListeningData,
    MdControl,
    MdQuote,
    MdSubscription,
    MdTrade,
    Order,
    Position,
    StreamMessage,
    TradeActivity,
    TradeUpdate,
)
from brokerlink.domain.enums import AssetClass, OrderStatus, OrderType, Side, TimeInForce
from brokerlink.domain.events import OrderFilled
from tests.contract.harness_alpaca import ACCOUNT, KEY_ID, SECRET, conformance_config

EXAMPLES = Path(__file__).parent / "examples"
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def raw(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


def example(name: str, kind: type[Any]) -> Any:
    return msgspec.json.decode(raw(name), type=kind)


def keys(name: str) -> set[str]:
    value = msgspec.json.decode(raw(name))
    assert isinstance(value, dict)
    return set(value)


@pytest.fixture
def symbols() -> mapping.SymbolMap:
    sol = Asset(id="sol", asset_class="crypto", exchange="CRYPTO", symbol="SOL/USD", status="active", tradable=True)
    return mapping.SymbolMap([example("asset_stock.json", Asset), example("asset_crypto.json", Asset), sol])


def test_every_example_file_is_tested() -> None:
    tested = {
        "order_stock_notional.json", "order_crypto.json", "account.json", "asset_stock.json", "asset_crypto.json",
        "position_stock.json", "position_crypto.json", "activity_fill.json", "stream_trade_update_fill.json",
        "stream_authorized.json", "stream_unauthorized.json", "stream_listening.json", "md_stock_quote.json",
        "md_stock_trade.json", "md_subscription.json", "md_connected.json", "md_authenticated.json",
        "md_auth_failed.json",
    }  # fmt: skip
    assert {p.name for p in EXAMPLES.glob("*.json")} == tested


def test_a_notional_stock_order(symbols: mapping.SymbolMap) -> None:
    body = example("order_stock_notional.json", Order)
    assert body.notional == Decimal(500)
    assert body.qty is None
    order = mapping.order(body, account_id="acc_1", symbols=symbols)
    assert order.symbol == "AAPL"
    assert order.status is OrderStatus.NEW  # "accepted"
    assert order.type is OrderType.MARKET
    assert order.tif is TimeInForce.DAY
    assert order.side is Side.BUY
    assert order.qty == Decimal(0), "a notional order's quantity is what has filled so far"
    assert order.client_order_id == "eb9e2aaa-f71a-4f51-b5b4-52a6c565dad4"
    assert order.venue_order_id == "61e69015-8549-4bfd-b9c3-01e75843f47d"
    assert order.created_at == datetime(2021, 3, 16, 18, 38, 1, 942282, tzinfo=UTC)


def test_a_crypto_order_has_the_canonical_pair(symbols: mapping.SymbolMap) -> None:
    order = mapping.order(example("order_crypto.json", Order), account_id="acc_1", symbols=symbols)
    assert order.symbol == "BTC/USD"
    assert order.avg_fill_price is None


def test_the_account_maps_to_a_balance() -> None:
    balance = mapping.balance(example("account.json", Account), account_id="acc_1", ts=NOW)
    assert balance.cash == Decimal("-23140.2")
    assert balance.equity == Decimal("103820.56")
    assert balance.buying_power == Decimal("262113.632")
    assert balance.margin_used == Decimal("63480.38")
    assert balance.currency == "USD"


def test_a_fractionable_stock_asset_gives_alpacas_stock_rules() -> None:
    asset = example("asset_stock.json", Asset)
    assert asset.maintenance_margin_requirement == Decimal(30)  # a JSON number, read exactly
    inst = mapping.instrument(asset)
    assert (inst.symbol, inst.venue_symbol, inst.asset_class) == ("AAPL", "AAPL", AssetClass.EQUITY)
    assert inst.tick_size == Decimal("0.01")
    assert inst.qty_step == Decimal("0.000000001")
    assert inst.min_notional == Decimal(1)
    assert inst.tradable


def test_a_crypto_asset_publishes_its_increments() -> None:
    inst = mapping.instrument(example("asset_crypto.json", Asset))
    assert (inst.symbol, inst.venue_symbol, inst.base, inst.quote) == ("BTC/USD", "BTCUSD", "BTC", "USD")
    assert inst.tick_size == Decimal(1)
    assert inst.qty_step == Decimal("0.0001")
    assert inst.min_qty == Decimal("0.0001")


def test_positions_map_with_signed_quantities(symbols: mapping.SymbolMap) -> None:
    stock = mapping.position(example("position_stock.json", Position), account_id="acc_1", symbols=symbols)
    assert (stock.symbol, stock.qty, stock.avg_price, stock.unrealized_pnl) == (
        "AAPL",  # the reference's "AAPL " with its stray space
        Decimal(5),
        Decimal("100.0"),
        Decimal("100.0"),
    )
    crypto = mapping.position(example("position_crypto.json", Position), account_id="acc_1", symbols=symbols)
    assert crypto.symbol == "BTC/USD"
    assert crypto.qty == Decimal("2.61937")
    assert crypto.avg_price == Decimal("19660.5738784516887649")
    assert crypto.unrealized_pnl == Decimal("-567.28712")


def test_a_fill_activity_maps_to_a_fill(symbols: mapping.SymbolMap) -> None:
    body = example("activity_fill.json", TradeActivity)
    fill = mapping.activity_fill(body, account_id="acc_1", client_order_id="mine", symbols=symbols)
    assert fill.trade_id == "904837e3-3b76-47ec-b432-046db621571b:1"
    assert (fill.qty, fill.price, fill.side, fill.symbol) == (Decimal(1), Decimal("1.63"), Side.BUY, "LPCN")
    assert fill.ts == datetime(2019, 5, 24, 15, 34, 6, 977000, tzinfo=UTC)


def test_the_documented_fill_update_is_one_fill_event(symbols: mapping.SymbolMap) -> None:
    message = example("stream_trade_update_fill.json", StreamMessage)
    assert message.stream == "trade_updates"
    update = msgspec.json.decode(message.data, type=TradeUpdate)
    event = mapping.trade_update_event(update, account_id="acc_1", symbols=symbols, received=NOW)
    assert isinstance(event, OrderFilled)
    assert event.symbol == "SOL/USD", "SOLUSD, spelled without the slash, is the canonical pair"
    assert event.side is Side.SELL
    assert event.last_qty == Decimal("1790.86")
    assert event.last_price == Decimal("105.8988475")
    assert event.trade_id == "a5be8f5e-fdfa-41f5-a644-7a74fe947a8f:1790.86"
    assert event.venue_ts == datetime(2022, 4, 19, 17, 45, 5, 24917, tzinfo=UTC)
    assert update.position_qty == Decimal(0)
    assert mapping.status(update.order) is OrderStatus.FILLED
    # The order's created_at carries -04:00: the model holds it in UTC.
    assert mapping.order(update.order, account_id="a", symbols=symbols).created_at.utcoffset() is not None


def test_the_stream_handshake_messages_decode() -> None:
    ok = example("stream_authorized.json", StreamMessage)
    assert msgspec.json.decode(ok.data, type=AuthorizationData).status == "authorized"
    refused = example("stream_unauthorized.json", StreamMessage)
    assert msgspec.json.decode(refused.data, type=AuthorizationData).status == "unauthorized"
    listening = example("stream_listening.json", StreamMessage)
    assert msgspec.json.decode(listening.data, type=ListeningData).streams == ["trade_updates"]


def test_market_data_points_keep_their_exact_decimals() -> None:
    quote = mapping.quote(example("md_stock_quote.json", MdQuote), symbol="AMD")
    assert (quote.bid, quote.ask, quote.bid_size, quote.ask_size) == (
        Decimal("87.66"),
        Decimal("87.68"),
        Decimal(1),
        Decimal(4),
    )
    assert quote.ts == datetime(2021, 2, 22, 15, 51, 45, 335689, tzinfo=UTC)
    trade = example("md_stock_trade.json", MdTrade)
    assert (trade.i, trade.p, trade.s, trade.c) == (96921, Decimal("126.55"), Decimal(1), ["@", "I"])


def test_market_data_control_messages_decode() -> None:
    (connected,) = example("md_connected.json", list[MdControl])
    assert (connected.T, connected.msg) == ("success", "connected")
    (authenticated,) = example("md_authenticated.json", list[MdControl])
    assert authenticated.msg == "authenticated"
    (failed,) = example("md_auth_failed.json", list[MdControl])
    assert (failed.T, failed.code) == ("error", 402)
    (subscription,) = example("md_subscription.json", list[MdSubscription])
    assert subscription.quotes == ["AMD", "CLDR"]


# --- the venue answers in the same shapes --------------------------------------------------------


@pytest.fixture
async def venue_http() -> AsyncIterator[httpx.AsyncClient]:
    app = create_alpaca_venue_app(conformance_config(background=False))
    headers = {HEADER_KEY_ID: KEY_ID, HEADER_SECRET_KEY: SECRET}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://venue", headers=headers) as client:
        yield client


async def test_the_venues_answers_decode_and_carry_every_documented_field(venue_http: httpx.AsyncClient) -> None:
    buy = {"symbol": "BTC/USD", "qty": "0.5", "side": "buy", "type": "market", "time_in_force": "gtc"}
    placed = await venue_http.post("/v2/orders", json=buy | {"client_order_id": "ex-1"})
    assert placed.status_code == 200, placed.text
    order = msgspec.json.decode(placed.content, type=Order)
    assert order.status == "filled"
    assert keys("order_crypto.json") <= set(placed.json())

    account = (await venue_http.get("/v2/account")).content
    assert msgspec.json.decode(account, type=Account).account_number == ACCOUNT
    assert keys("account.json") <= set(msgspec.json.decode(account))

    assets = msgspec.json.decode((await venue_http.get("/v2/assets")).content, type=list[Asset])
    crypto = next(a for a in assets if a.symbol == "BTC/USD")
    stock = next(a for a in assets if a.symbol == "AAPL")
    assert crypto.price_increment is not None
    assert stock.price_increment is None
    raw_assets = (await venue_http.get("/v2/assets")).json()
    assert keys("asset_crypto.json") <= set(raw_assets[-2])

    positions = (await venue_http.get("/v2/positions")).content
    (position,) = msgspec.json.decode(positions, type=list[Position])
    assert (position.symbol, position.qty, position.side) == ("BTCUSD", Decimal("0.5"), "long")
    assert keys("position_crypto.json") <= set(msgspec.json.decode(positions)[0])

    activities = (await venue_http.get("/v2/account/activities/FILL", params={"direction": "asc"})).content
    fills = msgspec.json.decode(activities, type=list[TradeActivity])
    assert sum(f.qty for f in fills) == Decimal("0.5")
    assert fills[-1].cum_qty == Decimal("0.5")
    assert all("::" in f.id for f in fills)
    assert keys("activity_fill.json") <= set(msgspec.json.decode(activities)[0])

    quotes = await venue_http.get("/v1beta3/crypto/us/latest/quotes", params={"symbols": "BTC/USD"})
    latest = msgspec.json.decode(quotes.content, type=LatestQuotes).quotes["BTC/USD"]
    assert latest.bp < latest.ap
    stock_quotes = await venue_http.get("/v2/stocks/quotes/latest", params={"symbols": "AAPL"})
    assert msgspec.json.decode(stock_quotes.content, type=LatestQuotes).quotes["AAPL"].bx == "V"
