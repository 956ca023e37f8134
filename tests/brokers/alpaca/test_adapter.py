"""The Alpaca adapter against its test venue on loopback (one venue for the module): what the
conformance suite does not cover — replace (a new order under a ``~n`` id), notional orders, Alpaca's
refusals (no crypto shorting, fractional stock orders only ``day``, bad keys), the market data streams
with their array frames, and the two trading stream authentication forms."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx
import msgspec
import pytest
import pytest_asyncio
from websockets.asyncio.client import connect

from brokerlink.brokers.alpaca.adapter import AlpacaAdapter
from brokerlink.brokers.alpaca.wire import HEADER_KEY_ID, HEADER_SECRET_KEY, Order
from brokerlink.brokers.base import (
    MarketDataAdapter,
    ModifyRequest,
    OrderRefused,
    OrderRequest,
    QuoteFeed,
    RefusalReason,
)
from brokerlink.brokers.sim.venue.config import AccountConfig
from brokerlink.domain.enums import OrderStatus, OrderType, Side, TimeInForce
from brokerlink.domain.events import (
    ConnectionChanged,
    DomainEvent,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderUpdated,
)
from tests.contract.harness_alpaca import ACCOUNT, KEY_ID, SECRET, AlpacaHarness, alpaca_venue

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.e2e]

OTHER_KEY, OTHER_SECRET, OTHER_ACCOUNT = "PKOTHER0002", "other-secret", "PA3OTHER0002"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def venue() -> AsyncIterator[AlpacaHarness]:
    conformance = AccountConfig(account_id=ACCOUNT, api_key=KEY_ID, api_secret=SECRET)
    other = AccountConfig(account_id=OTHER_ACCOUNT, api_key=OTHER_KEY, api_secret=OTHER_SECRET)
    async with alpaca_venue(accounts=(conformance, other)) as harness:
        yield harness


class Collected:
    def __init__(self, adapter: AlpacaAdapter) -> None:
        self.events: list[DomainEvent] = []
        self._task = asyncio.create_task(self._run(adapter))

    async def _run(self, adapter: AlpacaAdapter) -> None:
        async for event in adapter.events():
            self.events.append(event)

    async def wait_for(self, predicate: Callable[[list[DomainEvent]], bool]) -> None:
        for _ in range(200):  # bounded: 10 s
            if predicate(self.events):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"not seen; events: {[type(e).__name__ for e in self.events]}")

    def filled(self, client_order_id: str) -> Decimal:
        return sum(
            (e.last_qty for e in self.events if isinstance(e, OrderFilled) and e.client_order_id == client_order_id),
            Decimal(0),
        )

    def of(self, client_order_id: str, kind: type[DomainEvent]) -> list[DomainEvent]:
        return [
            e for e in self.events if isinstance(e, kind) and getattr(e, "client_order_id", None) == client_order_id
        ]


@pytest_asyncio.fixture(loop_scope="module")
async def connected(venue: AlpacaHarness) -> AsyncIterator[tuple[AlpacaAdapter, Collected]]:
    adapter = venue.adapter()
    assert isinstance(adapter, AlpacaAdapter)
    await adapter.connect()
    collected = Collected(adapter)
    try:
        yield adapter, collected
    finally:
        await venue.clear_faults()
        await adapter.close()


def _order(coid: str, symbol: str = "BTC/USD", *, side: Side = Side.BUY, qty: str = "0.01", **kw: Any) -> OrderRequest:
    values: dict[str, Any] = {"type": OrderType.MARKET, "tif": TimeInForce.IOC} | kw
    return OrderRequest(client_order_id=coid, symbol=symbol, side=side, qty=Decimal(qty), **values)


async def _venue_get(venue: AlpacaHarness, path: str, **params: str) -> httpx.Response:
    headers = {HEADER_KEY_ID: KEY_ID, HEADER_SECRET_KEY: SECRET}
    async with httpx.AsyncClient(base_url=venue.base_url, headers=headers) as client:
        return await client.get(path, params=params)


async def test_instruments_and_the_account_of_a_key(connected: tuple[AlpacaAdapter, Collected]) -> None:
    adapter, _ = connected
    instruments = {i.symbol: i for i in await adapter.instruments()}
    assert {"AAPL", "MSFT", "BTC/USD", "ETH/USD"} <= set(instruments)
    assert instruments["BTC/USD"].venue_symbol == "BTC/USD"
    assert instruments["BTC/USD"].tick_size == Decimal("0.1")
    assert instruments["AAPL"].qty_step == Decimal("0.000000001")
    assert adapter.venue_account_id == ACCOUNT
    accounts = await adapter.venue_accounts()
    assert [(a.venue_account_id, a.currency) for a in accounts] == [(ACCOUNT, "USD")]


async def test_bad_keys_are_an_auth_refusal(venue: AlpacaHarness) -> None:
    adapter = venue.adapter(secret="wrong")
    with pytest.raises(OrderRefused) as info:
        await adapter.connect()
    assert info.value.reason is RefusalReason.AUTH
    await adapter.close()
    elsewhere = venue.adapter(venue_account_id=OTHER_ACCOUNT)  # the conformance key trades another account
    with pytest.raises(OrderRefused) as info:
        await elsewhere.connect()
    assert info.value.reason is RefusalReason.AUTH
    await elsewhere.close()


async def test_a_replaced_order_keeps_its_client_order_id(
    venue: AlpacaHarness, connected: tuple[AlpacaAdapter, Collected]
) -> None:
    adapter, log = connected
    resting = _order("rep-1", type=OrderType.LIMIT, tif=TimeInForce.GTC, limit_price=Decimal("1000.0"))
    await adapter.submit(resting)
    await log.wait_for(lambda _: bool(log.of("rep-1", OrderAccepted)))
    await adapter.modify(ModifyRequest(client_order_id="rep-1", qty=Decimal("0.02"), limit_price=Decimal("1100.0")))
    await log.wait_for(lambda _: bool(log.of("rep-1", OrderUpdated)))
    (updated,) = log.of("rep-1", OrderUpdated)
    assert isinstance(updated, OrderUpdated)
    assert (updated.qty, updated.limit_price) == (Decimal("0.02"), Decimal("1100.0"))
    report = await adapter.order(client_order_id="rep-1")
    assert report is not None
    assert (report.client_order_id, report.qty, report.limit_price) == ("rep-1", Decimal("0.02"), Decimal("1100.0"))
    assert report.status is OrderStatus.NEW
    original = msgspec.json.decode(
        (await _venue_get(venue, "/v2/orders:by_client_order_id", client_order_id="rep-1")).content, type=Order
    )
    assert original.status == "replaced"
    assert original.replaced_by == report.venue_order_id
    replacement = msgspec.json.decode(
        (await _venue_get(venue, f"/v2/orders/{report.venue_order_id}")).content, type=Order
    )
    assert (replacement.client_order_id, replacement.replaces) == ("rep-1~1", original.id)

    await adapter.modify(ModifyRequest(client_order_id="rep-1", limit_price=Decimal("1200.0")))
    await log.wait_for(lambda _: len(log.of("rep-1", OrderUpdated)) == 2)
    await adapter.cancel("rep-1")
    await log.wait_for(lambda _: bool(log.of("rep-1", OrderCanceled)))
    assert "rep-1" not in {o.client_order_id for o in await adapter.open_orders()}
    assert len(log.of("rep-1", OrderAccepted)) == 1, "a replacement is an update, not a second acceptance"


async def test_notional_orders_buy_a_fraction(connected: tuple[AlpacaAdapter, Collected]) -> None:
    adapter, log = connected
    await adapter.submit_notional(client_order_id="usd-1", symbol="BTC/USD", side=Side.BUY, notional=Decimal(1000))
    await adapter.submit_notional(client_order_id="usd-2", symbol="AAPL", side=Side.BUY, notional=Decimal("250.5"))
    await log.wait_for(lambda _: bool(log.of("usd-1", OrderFilled)) and bool(log.of("usd-2", OrderFilled)))
    btc = await adapter.order(client_order_id="usd-1")
    aapl = await adapter.order(client_order_id="usd-2")
    assert btc is not None
    assert aapl is not None
    assert btc.status is OrderStatus.FILLED
    assert Decimal(0) < btc.qty * (btc.avg_fill_price or 0) <= Decimal(1000)
    assert aapl.qty != aapl.qty.to_integral_value(), "a fraction of a share"
    assert aapl.tif is TimeInForce.DAY


async def test_alpacas_refusals(connected: tuple[AlpacaAdapter, Collected]) -> None:
    adapter, _ = connected
    with pytest.raises(OrderRefused) as short:
        await adapter.submit(_order("short-1", "ETH/USD", side=Side.SELL, qty="1"))
    assert short.value.reason is RefusalReason.INSUFFICIENT_FUNDS, "crypto cannot be sold short"
    with pytest.raises(OrderRefused) as fractional:
        await adapter.submit(_order("frac-1", "AAPL", qty="0.5"))  # IOC
    assert fractional.value.reason is RefusalReason.INVALID_ORDER
    with pytest.raises(OrderRefused) as stop:
        await adapter.submit(_order("stop-1", type=OrderType.STOP, tif=TimeInForce.GTC, stop_price=Decimal(1)))
    assert stop.value.reason is RefusalReason.INVALID_ORDER, "crypto takes market, limit and stop_limit"
    with pytest.raises(OrderRefused) as long_id:
        await adapter.submit(_order("x" * 45))
    assert long_id.value.reason is RefusalReason.INVALID_ORDER
    with pytest.raises(OrderRefused) as unknown:
        await adapter.cancel("never-placed")
    assert unknown.value.reason is RefusalReason.UNKNOWN_ORDER
    whole = _order("whole-1", "AAPL", qty="2")
    await adapter.submit(whole)  # whole shares go as IOC
    report = await adapter.order(client_order_id="whole-1")
    assert report is not None
    assert report.filled_qty == Decimal(2)


async def test_quotes_stream_in_arrays_and_are_forgotten_on_a_drop(
    venue: AlpacaHarness, connected: tuple[AlpacaAdapter, Collected]
) -> None:
    adapter, _ = connected
    assert isinstance(adapter, QuoteFeed)
    assert not isinstance(adapter, MarketDataAdapter), "no books: Alpaca's book data has no update ids"
    with pytest.raises(OrderRefused):
        await adapter.subscribe_quotes(["AAPL", "EUR/USD"])
    assert adapter.quote("AAPL") is None, "nothing subscribed when one symbol is unknown"
    await adapter.subscribe_quotes(["AAPL", "BTC/USD"])

    async def quoted() -> None:
        for _ in range(200):  # bounded: 10 s
            if adapter.quote("AAPL") and adapter.quote("BTC/USD"):
                return
            await asyncio.sleep(0.05)
        raise AssertionError("no quotes")

    await quoted()
    btc = adapter.quote("BTC/USD")
    assert btc is not None
    assert btc.bid < btc.ask
    snapshot = await adapter.quote_snapshot("AAPL")
    assert snapshot.symbol == "AAPL"
    assert snapshot.bid < snapshot.ask
    await adapter.submit(_order("md-trade", qty="0.001"))
    for _ in range(100):
        if adapter.last_trade("BTC/USD") is not None:
            break
        await asyncio.sleep(0.05)
    assert adapter.last_trade("BTC/USD") is not None

    await venue.set_faults(drop_connections=True)
    for _ in range(100):
        if adapter.quote("BTC/USD") is None:
            break
        await asyncio.sleep(0.01)
    await quoted()  # reconnected, resubscribed, fresh quotes


async def test_the_market_data_protocol(venue: AlpacaHarness) -> None:
    url = "ws" + venue.base_url.removeprefix("http") + "/v1beta3/crypto/us"
    async with connect(url) as ws:
        assert msgspec.json.decode(await ws.recv()) == [{"T": "success", "msg": "connected"}]
        await ws.send('{"action":"subscribe","quotes":["BTC/USD"]}')
        assert msgspec.json.decode(await ws.recv()) == [{"T": "error", "code": 401, "msg": "not authenticated"}]
        await ws.send(msgspec.json.encode({"action": "auth", "key": KEY_ID, "secret": SECRET}).decode())
        assert msgspec.json.decode(await ws.recv()) == [{"T": "success", "msg": "authenticated"}]
        await ws.send('{"action":"subscribe","quotes":["BTC/USD","ETH/USD","AAPL"],"trades":["BTC/USD"]}')
        subscription = msgspec.json.decode(await ws.recv())
        assert subscription == [
            {"T": "subscription", "trades": ["BTC/USD"], "quotes": ["BTC/USD", "ETH/USD"], "bars": []}
        ]
        kinds: set[str] = set()
        largest = 0
        for _ in range(40):
            frame = msgspec.json.decode(await ws.recv())
            assert isinstance(frame, list)
            largest = max(largest, len(frame))
            kinds |= {item["T"] for item in frame}
            if largest > 1:
                break
        assert kinds in ({"q"}, {"q", "t"})
        assert largest > 1, "data points of one step travel together in one array"
    async with connect(url) as ws:
        await ws.recv()
        await ws.send(msgspec.json.encode({"action": "auth", "key": KEY_ID, "secret": "nope"}).decode())
        assert msgspec.json.decode(await ws.recv()) == [{"T": "error", "code": 402, "msg": "auth failed"}]


async def test_the_trading_stream_takes_both_documented_auth_forms(venue: AlpacaHarness) -> None:
    url = "ws" + venue.base_url.removeprefix("http") + "/stream"
    async with connect(url) as ws:
        await ws.send('{"action":"listen","data":{"streams":["trade_updates"]}}')
        refused = msgspec.json.decode(await ws.recv())
        assert refused == {"stream": "authorization", "data": {"status": "unauthorized", "action": "listen"}}
        auth = {"action": "authenticate", "data": {"key_id": KEY_ID, "secret_key": SECRET}}
        await ws.send(msgspec.json.encode(auth).decode())
        reply = await ws.recv()
        assert isinstance(reply, bytes), "binary frames, as the paper endpoint sends"
        assert msgspec.json.decode(reply) == {
            "stream": "authorization",
            "data": {"status": "authorized", "action": "authenticate"},
        }
        await ws.send('{"action":"listen","data":{"streams":["trade_updates","nonsense"]}}')
        assert msgspec.json.decode(await ws.recv()) == {"stream": "listening", "data": {"streams": ["trade_updates"]}}


async def test_rate_limit_headers_on_every_answer(venue: AlpacaHarness) -> None:
    answer = await _venue_get(venue, "/v2/account")
    assert answer.headers["X-Ratelimit-Limit"] == "200"
    assert 0 <= int(answer.headers["X-Ratelimit-Remaining"]) < 200
    refused = await _venue_get(venue, "/v2/orders/nope")
    assert refused.status_code == 404
    assert refused.json() == {"code": 40410000, "message": "order not found"}
    assert "X-Ratelimit-Remaining" in refused.headers


async def test_a_reconnect_reports_what_happened_meanwhile(
    venue: AlpacaHarness, connected: tuple[AlpacaAdapter, Collected]
) -> None:
    adapter, log = connected
    await venue.set_faults(drop_connections=True, duplicate_events=1.0)
    await adapter.submit(_order("gap-1"))
    await venue.clear_faults()
    await log.wait_for(lambda ev: any(isinstance(e, ConnectionChanged) and e.gap_possible for e in ev))
    await log.wait_for(lambda _: log.filled("gap-1") >= Decimal("0.01"))
    assert log.filled("gap-1") == Decimal("0.01"), "once, though the stream dropped and repeated itself"
