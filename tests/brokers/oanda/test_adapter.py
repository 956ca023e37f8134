"""The OANDA adapter against its test venue on loopback (one venue for the module): what the
conformance suite does not cover — accounts of a token, replace, cancel-all, position close, trades,
hedging sides, refusals with OANDA's reasons, the pricing stream — and that every answer the venue
gives decodes with the adapter's wire structs without losing a field."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx
import msgspec
import pytest
import pytest_asyncio

from brokerlink.brokers.base import ModifyRequest, OrderRefused, OrderRequest, RefusalReason
from brokerlink.brokers.oanda import wire
from brokerlink.brokers.oanda.adapter import OandaAdapter
from brokerlink.brokers.oanda.venue import OandaAccountConfig
from brokerlink.domain.enums import OrderStatus, OrderType, Side, TimeInForce
from brokerlink.domain.events import DomainEvent, OrderAccepted, OrderCanceled, OrderFilled, OrderUpdated
from tests.brokers.oanda.test_examples import _same
from tests.contract.harness_oanda import ACCOUNT, TOKEN, OandaHarness, oanda_venue

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.e2e]

SECOND = "101-004-1435156-002"
HEDGING = "101-004-1435156-003"
POOR = "101-004-1435156-004"
OTHER_TOKEN = "other-token"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def venue() -> AsyncIterator[OandaHarness]:
    accounts = (
        OandaAccountConfig(account_id=SECOND, token=TOKEN, alias="second", currency="EUR"),
        OandaAccountConfig(account_id=HEDGING, token=OTHER_TOKEN, hedging=True),
        OandaAccountConfig(account_id=POOR, token=OTHER_TOKEN, cash=Decimal(10)),
    )
    async with oanda_venue(accounts=accounts) as harness:
        yield harness


class Collected:
    def __init__(self, adapter: OandaAdapter) -> None:
        self.events: list[DomainEvent] = []
        self._task = asyncio.create_task(self._run(adapter))

    async def _run(self, adapter: OandaAdapter) -> None:
        async for event in adapter.events():
            self.events.append(event)

    async def wait_for(self, predicate: Callable[[list[DomainEvent]], bool]) -> None:
        for _ in range(200):  # bounded: 10 s
            if predicate(self.events):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"not seen; events: {[type(e).__name__ for e in self.events]}")


@pytest_asyncio.fixture(loop_scope="module")
async def connected(venue: OandaHarness) -> AsyncIterator[tuple[OandaAdapter, Collected]]:
    adapter = venue.adapter()
    await adapter.connect()
    collected = Collected(adapter)
    try:
        yield adapter, collected
    finally:
        await adapter.close()


def _order(coid: str, *, side: Side = Side.BUY, qty: str = "1000", **kw: Any) -> OrderRequest:
    values: dict[str, Any] = {"type": OrderType.MARKET, "tif": TimeInForce.FOK} | kw
    return OrderRequest(client_order_id=coid, symbol="EUR/USD", side=side, qty=Decimal(qty), **values)


async def test_venue_accounts_lists_every_account_of_the_token(venue: OandaHarness) -> None:
    adapter = venue.adapter()
    try:
        accounts = await adapter.venue_accounts()
    finally:
        await adapter.close()
    assert [(a.venue_account_id, a.name, a.currency) for a in accounts] == [
        (ACCOUNT, "conformance", "USD"),
        (SECOND, "second", "EUR"),
    ]


async def test_a_bad_token_is_an_auth_refusal(venue: OandaHarness) -> None:
    adapter = venue.adapter(token="not-a-token")
    try:
        with pytest.raises(OrderRefused) as info:
            await adapter.connect()
        assert info.value.reason is RefusalReason.AUTH
    finally:
        await adapter.close()
    other = venue.adapter(account=HEDGING)  # a token that does not reach this account: 403
    try:
        with pytest.raises(OrderRefused) as info:
            await other.balance()
        assert info.value.reason is RefusalReason.AUTH
    finally:
        await other.close()


async def test_instruments_list_fx_in_units_and_the_btc_cfd(connected: tuple[OandaAdapter, Collected]) -> None:
    adapter, _ = connected
    by_symbol = {i.symbol: i for i in await adapter.instruments()}
    assert by_symbol["EUR/USD"].venue_symbol == "EUR_USD"
    assert (by_symbol["EUR/USD"].qty_step, by_symbol["USD/JPY"].tick_size) == (Decimal(1), Decimal("0.001"))
    btc = by_symbol["BTC/USD"]
    assert (btc.venue_symbol, btc.asset_class.value, btc.qty_step) == ("BTC_USD", "cfd", Decimal("0.01"))


async def test_refusals_carry_oandas_reasons(connected: tuple[OandaAdapter, Collected]) -> None:
    adapter, _ = connected
    with pytest.raises(OrderRefused) as info:
        await adapter.submit(_order("frac-1", qty="10.5"))  # EUR_USD trades whole units
    assert info.value.reason is RefusalReason.INVALID_ORDER
    assert "UNITS_PRECISION_EXCEEDED" in str(info.value.detail)
    await adapter.submit(_order("dup-1"))
    with pytest.raises(OrderRefused) as info:
        await adapter.submit(_order("dup-1"))
    assert info.value.reason is RefusalReason.DUPLICATE_CLIENT_ORDER_ID
    with pytest.raises(OrderRefused) as info:
        await adapter.submit(_order("stop-limit-1", type=OrderType.STOP_LIMIT))
    assert info.value.reason is RefusalReason.NOT_SUPPORTED


async def test_replace_keeps_the_client_id_and_cancel_all_ends_the_rest(
    connected: tuple[OandaAdapter, Collected],
) -> None:
    adapter, log = connected
    resting = _order("rest-1", type=OrderType.LIMIT, tif=TimeInForce.GTC, limit_price=Decimal("0.50000"))
    await adapter.submit(resting)
    await adapter.submit(_order("rest-2", type=OrderType.LIMIT, tif=TimeInForce.GTC, limit_price=Decimal("0.50001")))
    before = await adapter.order(client_order_id="rest-1")
    assert before is not None
    await adapter.modify(ModifyRequest(client_order_id="rest-1", qty=Decimal(2000), limit_price=Decimal("0.51000")))
    await log.wait_for(lambda ev: any(isinstance(e, OrderUpdated) and e.client_order_id == "rest-1" for e in ev))
    after = await adapter.order(client_order_id="rest-1")
    assert after is not None
    assert (after.qty, after.limit_price, after.status) == (Decimal(2000), Decimal("0.51000"), OrderStatus.NEW)
    assert after.venue_order_id != before.venue_order_id, "OANDA replaces: a new order id, the same client id"
    assert not any(isinstance(e, OrderCanceled) and e.client_order_id == "rest-1" for e in log.events)
    await adapter.cancel_all("EUR/USD")
    await log.wait_for(
        lambda ev: {e.client_order_id for e in ev if isinstance(e, OrderCanceled)} >= {"rest-1", "rest-2"}
    )
    assert not [o for o in await adapter.open_orders() if o.client_order_id in {"rest-1", "rest-2"}]


async def test_fills_trades_and_position_close(connected: tuple[OandaAdapter, Collected]) -> None:
    adapter, log = connected
    for coid, side, qty in (("pc-1", Side.BUY, "3000"), ("pc-2", Side.SELL, "1000")):
        await adapter.submit(_order(coid, side=side, qty=qty))
    await log.wait_for(lambda ev: {e.client_order_id for e in ev if isinstance(e, OrderFilled)} >= {"pc-1", "pc-2"})
    held = {p.symbol: p.qty for p in await adapter.positions()}
    trades = [t for t in await adapter.trades() if t.instrument == "EUR_USD"]
    assert sum(t.current_units for t in trades) == held["EUR/USD"], "trades add up to the position"
    page = await adapter.fills_since(None, limit=1)
    assert len(page.fills) == 1
    assert page.next_cursor == page.fills[0].trade_id
    later = await adapter.fills_since(page.next_cursor)
    assert {"pc-1", "pc-2"} <= {f.client_order_id for f in later.fills}
    await adapter.close_position("EUR/USD")
    assert "EUR/USD" not in {p.symbol for p in await adapter.positions()}
    assert not [t for t in await adapter.trades() if t.instrument == "EUR_USD"]


async def test_an_order_the_account_cannot_afford_is_cancelled(venue: OandaHarness) -> None:
    adapter = venue.adapter(account=POOR, token=OTHER_TOKEN)
    await adapter.connect()
    log = Collected(adapter)
    try:
        await adapter.submit(_order("poor-1", qty="1000000"))
        await log.wait_for(lambda ev: any(isinstance(e, OrderCanceled) for e in ev))
        canceled = next(e for e in log.events if isinstance(e, OrderCanceled))
        assert (canceled.client_order_id, canceled.reason) == ("poor-1", "INSUFFICIENT_MARGIN")
        assert any(isinstance(e, OrderAccepted) and e.client_order_id == "poor-1" for e in log.events)
    finally:
        await adapter.close()


async def test_a_hedging_account_holds_both_sides(venue: OandaHarness) -> None:
    adapter = venue.adapter(account=HEDGING, token=OTHER_TOKEN)
    await adapter.connect()
    try:
        assert adapter.capabilities.hedging
        await adapter.submit(_order("h-1", qty="2000"))
        await adapter.submit(_order("h-2", side=Side.SELL, qty="500"))
        assert sorted(p.qty for p in await adapter.positions()) == [Decimal(-500), Decimal(2000)]
    finally:
        await adapter.close()


async def test_quotes_stream_and_snapshot(connected: tuple[OandaAdapter, Collected]) -> None:
    adapter, _ = connected
    await adapter.subscribe_quotes(["EUR/USD", "BTC/USD"])
    for _ in range(200):  # bounded: 10 s
        if adapter.quote("EUR/USD") is not None and adapter.quote("BTC/USD") is not None:
            break
        await asyncio.sleep(0.05)
    quote = adapter.quote("EUR/USD")
    assert quote is not None
    assert quote.bid < quote.ask
    snapshot = await adapter.quote_snapshot("BTC/USD")
    assert snapshot.symbol == "BTC/USD"
    with pytest.raises(OrderRefused):
        await adapter.subscribe_quotes(["XAU/USD"])


async def test_every_venue_answer_decodes_without_losing_a_field(venue: OandaHarness) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    base = f"/v3/accounts/{ACCOUNT}"
    order = {
        "order": {"type": "MARKET", "instrument": "EUR_USD", "units": "100", "clientExtensions": {"id": "shape-1"}}
    }
    async with httpx.AsyncClient(base_url=venue.base_url, headers=headers) as http:
        created = await http.post(f"{base}/orders", json=order)
        limit = {"order": {"type": "LIMIT", "instrument": "EUR_USD", "units": "-100", "price": "9.00000"}}
        pending = (await http.post(f"{base}/orders", json=limit)).json()["orderCreateTransaction"]["id"]
        answers: list[tuple[httpx.Response, type[Any]]] = [
            (created, wire.CreateOrderResponse),
            (await http.get("/v3/accounts"), wire.AccountsResponse),
            (await http.get(f"{base}/summary"), wire.AccountSummaryResponse),
            (await http.get(f"{base}/instruments"), wire.InstrumentsResponse),
            (await http.get(f"{base}/orders/@shape-1"), wire.OrderResponse),
            (await http.get(f"{base}/pendingOrders"), wire.OrdersResponse),
            (await http.get(f"{base}/openTrades"), wire.TradesResponse),
            (await http.get(f"{base}/openPositions"), wire.PositionsResponse),
            (await http.get(f"{base}/pricing", params={"instruments": "EUR_USD"}), wire.PricingResponse),
            (await http.get(f"{base}/transactions/sinceid", params={"id": "0"}), wire.TransactionsResponse),
            (await http.put(f"{base}/orders/{pending}/cancel"), wire.CancelOrderResponse),
            (await http.get(f"{base}/orders/@nobody"), wire.ErrorBody),
            (await http.post(f"{base}/orders", json=order), wire.ErrorBody),
        ]
        async with http.stream("GET", f"{base}/pricing/stream", params={"instruments": "EUR_USD"}) as stream:
            first = await anext(stream.aiter_lines())
    for response, kind in answers:
        _same(msgspec.json.decode(response.content, type=kind), json.loads(response.content), kind.__name__)
    assert [r.status_code for r, _ in answers[-2:]] == [404, 400]
    _same(msgspec.json.decode(first, type=wire.ClientPrice), json.loads(first), "ClientPrice")
