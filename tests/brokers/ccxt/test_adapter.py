"""The CCXT adapter against the Binance spot test venue on loopback: what the conformance suite does not
cover (credentials, rules, spot positions, fill pages, polling, the weight header). One venue per module,
one funded account per test."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import pytest_asyncio

from brokerlink.brokers.backoff import Backoff
from brokerlink.brokers.base import (
    AdapterConfig,
    Credentials,
    OrderRefused,
    OrderRequest,
    RefusalReason,
    create_adapter,
)
from brokerlink.brokers.ccxt.adapter import CcxtAdapter, StreamSettings
from brokerlink.domain.enums import OrderStatus, OrderType, Side, TimeInForce
from brokerlink.domain.events import ConnectionChanged, DomainEvent, OrderAccepted, OrderFilled
from tests.contract.harness_ccxt import API_KEY, API_SECRET, CcxtHarness, ccxt_venue

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.e2e]
_accounts = itertools.count(1)
_ids = itertools.count(1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def venue() -> AsyncIterator[CcxtHarness]:
    async with ccxt_venue(extra_accounts=8) as harness:
        yield harness


def make(venue: CcxtHarness, *, key: str, secret: str, **options: str) -> CcxtAdapter:
    config = AdapterConfig(
        account_id="acc_ccxt_unit",
        venue_account_id="",
        base_url=venue.base_url,
        credentials=Credentials(values={"exchange": "binance", "api_key": key, "api_secret": secret}),
        options=options,
    )
    stream = StreamSettings(backoff=Backoff(base_s=0.05, cap_s=0.2), settle_s=0.05, poll_interval_s=0.1)
    return CcxtAdapter(config, stream=stream, seed=1)


@pytest_asyncio.fixture(loop_scope="module")
async def adapter(venue: CcxtHarness) -> AsyncIterator[CcxtAdapter]:
    n = next(_accounts)
    adapter = make(venue, key=f"{API_KEY}{n}", secret=f"{API_SECRET}-{n}")
    await adapter.connect()
    try:
        yield adapter
    finally:
        await adapter.close()


def market(symbol: str = "ETH/USDT", qty: str = "1", side: Side = Side.BUY) -> OrderRequest:
    return OrderRequest(
        client_order_id=f"unit-{next(_ids)}", symbol=symbol, side=side, qty=Decimal(qty), type=OrderType.MARKET
    )


async def collect(adapter: CcxtAdapter, until: int) -> list[DomainEvent]:
    events: list[DomainEvent] = []

    async def read() -> None:
        async for event in adapter.events():
            events.append(event)
            if sum(isinstance(e, OrderFilled) for e in events) >= until:
                return

    await asyncio.wait_for(read(), timeout=10)
    return events


async def test_bad_credentials_are_an_auth_refusal(venue: CcxtHarness) -> None:
    for key, secret in ((API_KEY, "wrong-secret"), ("nosuchkey", API_SECRET)):
        adapter = make(venue, key=key, secret=secret)
        with pytest.raises(OrderRefused) as info:
            await adapter.connect()
        assert info.value.reason is RefusalReason.AUTH
        await adapter.close()


async def test_registry_and_capabilities_and_rules(adapter: CcxtAdapter) -> None:
    config = adapter.config
    assert isinstance(create_adapter("ccxt", config), CcxtAdapter)
    caps = adapter.capabilities
    assert {OrderType.MARKET, OrderType.LIMIT} <= caps.order_types
    assert caps.modify is False
    assert caps.max_client_order_id_length == 36
    rules = {i.symbol: i for i in await adapter.instruments()}
    eth = rules["ETH/USDT"]
    assert (eth.venue_symbol, eth.tick_size, eth.qty_step, eth.min_notional) == (
        "ETHUSDT",
        Decimal("0.01"),
        Decimal("0.00001"),
        Decimal(5),
    )
    assert rules["BTC/USDT"].tick_size == Decimal("0.1")


async def test_spot_positions_balance_and_refusals(adapter: CcxtAdapter) -> None:
    before = await adapter.balance()
    assert (before.currency, before.cash) == ("USDT", Decimal(10_000_000))
    with pytest.raises(OrderRefused) as info:
        await adapter.submit(market("BTC/USDT", "0.01", Side.SELL))  # a spot account sells only what it holds
    assert info.value.reason is RefusalReason.INSUFFICIENT_FUNDS
    request = market("ETH/USDT", "2")
    await adapter.submit(request)
    events = await collect(adapter, until=1)
    assert isinstance(next(e for e in events if not isinstance(e, ConnectionChanged)), OrderAccepted)
    positions = await adapter.positions()
    assert [(p.symbol, p.qty) for p in positions] == [("ETH/USDT", Decimal(2))]
    after = await adapter.balance()
    assert after.cash < before.cash
    assert abs(after.equity - before.equity) < Decimal(200), "equity values the ETH at its price"
    with pytest.raises(OrderRefused) as unknown:
        await adapter.cancel("never-placed")
    assert unknown.value.reason is RefusalReason.UNKNOWN_ORDER
    report = await adapter.order(client_order_id=request.client_order_id)
    assert report is not None
    assert (report.status, report.filled_qty) == (OrderStatus.FILLED, Decimal(2))


async def test_fill_pages_continue_from_their_cursor(adapter: CcxtAdapter) -> None:
    for _ in range(2):
        await adapter.submit(market())
    await collect(adapter, until=2)
    everything = (await adapter.fills_since(None)).fills
    assert len(everything) >= 2
    seen = []
    cursor = None
    for _ in range(len(everything) + 1):
        page = await adapter.fills_since(cursor, limit=1)
        if page.next_cursor is None:
            break
        seen.extend(page.fills)
        cursor = page.next_cursor
    assert [f.trade_id for f in seen] == [f.trade_id for f in everything]
    assert all(f.client_order_id and f.client_order_id.startswith("unit-") for f in seen)


async def test_polling_mode_reports_orders_without_the_stream(venue: CcxtHarness) -> None:
    n = next(_accounts)
    adapter = make(venue, key=f"{API_KEY}{n}", secret=f"{API_SECRET}-{n}", events="poll")
    await adapter.connect()
    try:
        assert not adapter.streaming
        request = OrderRequest(
            client_order_id=f"unit-{next(_ids)}",
            symbol="ETH/USDT",
            side=Side.BUY,
            qty=Decimal(1),
            type=OrderType.LIMIT,
            tif=TimeInForce.IOC,
            limit_price=Decimal("9999.00"),
        )
        await adapter.submit(request)
        events = await collect(adapter, until=1)
        kinds = [type(e).__name__ for e in events if getattr(e, "client_order_id", None) == request.client_order_id]
        assert kinds[0] == "OrderAccepted"
        assert "OrderFilled" in kinds
    finally:
        await adapter.close()


async def test_the_used_weight_header_pauses_the_endpoint_near_the_limit(venue: CcxtHarness) -> None:
    # Another host name for the same venue: its own limiter, so the pause holds up no other test.
    config = make(venue, key=API_KEY, secret=API_SECRET).config
    config = AdapterConfig(
        **{
            **{f: getattr(config, f) for f in config.__struct_fields__},
            "base_url": venue.base_url.replace("127.0.0.1", "localhost"),
        }
    )
    adapter = CcxtAdapter(config)
    penalties = adapter.limiter.stats.penalties
    adapter._on_headers({"X-MBX-USED-WEIGHT-1M": "100"})
    assert adapter.limiter.stats.penalties == penalties
    adapter._on_headers({"X-MBX-USED-WEIGHT-1M": "5500"})  # over 90 % of 6000
    assert adapter.limiter.stats.penalties == penalties + 1
    await adapter.close()
