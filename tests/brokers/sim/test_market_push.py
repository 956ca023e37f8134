"""The sim adapter's market data push (MarketPush listeners, TradeFeed) against the sim venue running as a
real server on loopback (tests/contract/harness.py), its market data loop ticking every 0.05 s.

One venue serves the module; each test connects its own adapter. Waits poll a condition a bounded number
of times; nothing asserts on wall-clock time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio

from brokerlink.brokers.base import (
    FeedState,
    MarketPush,
    OrderBookView,
    OrderRefused,
    OrderRequest,
    RefusalReason,
    TradeFeed,
)
from brokerlink.brokers.sim.adapter import SimAdapter
from brokerlink.domain.enums import OrderType, Side, TimeInForce
from brokerlink.domain.models import Quote, Trade
from tests.contract.harness import SimHarness, sim_venue

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.e2e]

QUOTED = "GBP/USD"
PROBE = "EUR/USD"
"""The venue's first instrument: the adapter streams its quotes for stall detection, asked for or not."""
_ids = itertools.count(1)


class Recorder:
    """A MarketListener that keeps everything it is told, in order."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Any]] = []

    def on_quote(self, quote: Quote) -> None:
        self.items.append(("quote", quote))

    def on_book(self, book: OrderBookView) -> None:
        self.items.append(("book", book))

    def on_trade(self, trade: Trade) -> None:
        self.items.append(("trade", trade))

    def on_feed(self, state: FeedState, reason: str | None) -> None:
        self.items.append(("feed", state))

    def of(self, kind: str, symbol: str | None = None) -> list[Any]:
        return [v for k, v in self.items if k == kind and (symbol is None or v.symbol == symbol)]

    def feeds(self) -> list[FeedState]:
        return [v for k, v in self.items if k == "feed"]


async def eventually(predicate: Callable[[], bool], what: str, *, polls: int = 200) -> None:
    for _ in range(polls):  # 200 x 0.05 s = 10 s at most
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def venue() -> AsyncIterator[SimHarness]:
    async with sim_venue() as harness:
        yield harness


@pytest_asyncio.fixture(loop_scope="module")
async def adapter(venue: SimHarness) -> AsyncIterator[SimAdapter]:
    adapter = venue.adapter()
    assert isinstance(adapter, SimAdapter)
    await adapter.connect()
    try:
        yield adapter
    finally:
        await venue.clear_faults()
        await adapter.close()


async def test_the_sim_adapter_pushes_and_streams_trades(adapter: SimAdapter) -> None:
    assert isinstance(adapter, MarketPush)
    assert isinstance(adapter, TradeFeed)


async def test_quotes_are_pushed_as_they_arrive_for_subscribed_symbols_only(adapter: SimAdapter) -> None:
    recorder = Recorder()
    adapter.add_market_listener(recorder)
    await adapter.subscribe_quotes([QUOTED])
    await eventually(lambda: len(recorder.of("quote", QUOTED)) >= 3, "three quotes pushed")
    pushed = recorder.of("quote", QUOTED)
    assert all(q.symbol == QUOTED for q in pushed), "canonical symbol"
    assert all(isinstance(q.bid, Decimal) and Decimal(0) < q.bid < q.ask for q in pushed)
    assert [q.ts for q in pushed] == sorted(q.ts for q in pushed), "in arrival order"
    assert adapter.quote(QUOTED) is not None
    assert adapter.quote(QUOTED) in pushed, "the latest kept quote is one that was pushed"
    assert recorder.of("quote", PROBE) == [], "the stall-detection channel's quotes were not asked for"


async def test_book_changes_are_pushed_in_sync_and_follow_an_order(adapter: SimAdapter) -> None:
    recorder = Recorder()
    adapter.add_market_listener(recorder)
    await adapter.subscribe_depth(QUOTED)
    await eventually(lambda: adapter.book(QUOTED) is not None, "the book synced")
    await eventually(lambda: bool(recorder.of("book", QUOTED)), "the synced book was pushed")
    first = recorder.of("book", QUOTED)[0]
    assert first.bids
    assert first.asks
    assert first.bids[0][0] < first.asks[0][0]

    # A resting bid one tick above the best bid (inside a ten-tick spread): the venue's diff must be pushed.
    price = first.bids[0][0] + Decimal("0.00001")
    assert price < first.asks[0][0]
    mine = (price, Decimal("0.10"))
    coid = f"push-{next(_ids)}"
    order = OrderRequest(
        client_order_id=coid,
        symbol=QUOTED,
        side=Side.BUY,
        qty=Decimal("0.10"),
        type=OrderType.LIMIT,
        tif=TimeInForce.GTC,
        limit_price=price,
    )
    await adapter.submit(order)
    try:
        await eventually(lambda: any(mine in b.bids for b in recorder.of("book", QUOTED)), "a pushed book shows it")
    finally:
        seen = len(recorder.of("book", QUOTED))
        with contextlib.suppress(OrderRefused):  # filled meanwhile, if the market ran through it
            await adapter.cancel(coid)
    await eventually(
        lambda: any(mine not in b.bids for b in recorder.of("book", QUOTED)[seen:]), "the cancel was pushed"
    )
    books = recorder.of("book", QUOTED)
    assert [b.update_id for b in books] == sorted(b.update_id for b in books), "update ids never go back"


async def test_trades_are_pushed_with_price_size_and_aggressor(venue: SimHarness, adapter: SimAdapter) -> None:
    recorder = Recorder()
    adapter.add_market_listener(recorder)
    await adapter.subscribe_trades([QUOTED])
    await adapter.subscribe_trades([QUOTED])  # idempotent
    coid = f"push-{next(_ids)}"
    await adapter.submit(
        OrderRequest(client_order_id=coid, symbol=QUOTED, side=Side.BUY, qty=Decimal("0.10"), type=OrderType.MARKET)
    )
    await eventually(lambda: bool(recorder.of("trade", QUOTED)), "a trade was pushed")
    trades = recorder.of("trade", QUOTED)
    assert sum(t.size for t in trades) == Decimal("0.10")
    assert all(t.aggressor is Side.BUY and t.price > 0 and t.trade_id for t in trades)
    order = await adapter.order(client_order_id=coid)
    assert order is not None
    assert order.avg_fill_price == sum(t.price * t.size for t in trades) / Decimal("0.10")
    assert recorder.of("trade", PROBE) == []


async def test_an_unlisted_symbol_refuses_trades_and_subscribes_nothing(adapter: SimAdapter) -> None:
    with pytest.raises(OrderRefused) as info:
        await adapter.subscribe_trades([QUOTED, "XAU/USD"])
    assert info.value.reason is RefusalReason.INVALID_ORDER


async def test_a_drop_is_pushed_down_then_up_and_nothing_stale_in_between(
    venue: SimHarness, adapter: SimAdapter
) -> None:
    recorder = Recorder()
    adapter.add_market_listener(recorder)
    await adapter.subscribe_quotes([QUOTED])
    await eventually(lambda: bool(recorder.of("quote", QUOTED)), "a quote")
    reconnects = adapter.reconnects
    await venue.set_faults(drop_connections=True)
    await eventually(lambda: adapter.reconnects > reconnects, "the adapter noticed the drop")
    await venue.clear_faults()
    await eventually(lambda: FeedState.UP in recorder.feeds(), "the stream came back")
    down = recorder.items.index(("feed", FeedState.DOWN))
    up = recorder.items.index(("feed", FeedState.UP))
    assert down < up
    assert all(kind == "feed" for kind, _ in recorder.items[down:up]), "nothing pushed while down"
    before = [v for k, v in recorder.items[:down] if k == "quote"][-1]
    await eventually(lambda: any(k == "quote" for k, _ in recorder.items[up:]), "quotes resume after the reconnect")
    resumed = next(v for k, v in recorder.items[up:] if k == "quote")
    assert resumed.ts >= before.ts


async def test_close_pushes_closed_and_a_removed_listener_hears_nothing(venue: SimHarness) -> None:
    adapter = venue.adapter()
    assert isinstance(adapter, SimAdapter)
    await adapter.connect()
    kept, removed, failing = Recorder(), Recorder(), Recorder()

    def boom(quote: Quote) -> None:
        raise RuntimeError("a listener's bug")

    failing.on_quote = boom  # type: ignore[method-assign]
    adapter.add_market_listener(failing)
    adapter.add_market_listener(kept)
    remove = adapter.add_market_listener(removed)
    remove()
    remove()  # idempotent
    try:
        await adapter.subscribe_quotes([QUOTED])
        await eventually(lambda: len(kept.of("quote", QUOTED)) >= 2, "quotes reach the other listeners")
    finally:
        await adapter.close()
    assert removed.items == []
    assert adapter._feed.listeners.failures >= 2, "the failing listener was called, and did not stop the others"
    assert kept.feeds() == [FeedState.CLOSED], "an orderly end is not an outage: no DOWN first"
