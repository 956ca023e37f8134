"""The sim adapter's quotes (MarketDataAdapter.subscribe_quotes, quote, quote_snapshot) against the sim venue
running as a real server on loopback (tests/contract/harness.py), its market data loop ticking every 0.05 s.

Waits poll a condition a bounded number of times; nothing asserts on wall-clock time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import pytest

from brokerlink.brokers.base import OrderRefused, RefusalReason
from brokerlink.brokers.sim.adapter import SimAdapter
from brokerlink.domain.models import Quote
from tests.contract.harness import SimHarness, sim_venue

pytestmark = pytest.mark.e2e

SYMBOLS = ("GBP/USD", "USD/JPY")
STALL_CHANNEL_SYMBOL = "EUR/USD"
"""The venue's first instrument: the adapter always streams its quotes (stall detection), subscribed or not."""


async def eventually(predicate: Callable[[], bool], what: str, *, polls: int = 200) -> None:
    for _ in range(polls):  # 200 x 0.05 s = 10 s at most
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def quotes(adapter: SimAdapter, symbols: tuple[str, ...] = SYMBOLS) -> dict[str, Quote]:
    """The adapter's quotes of ``symbols`` that it has now."""
    return {s: q for s in symbols if (q := adapter.quote(s)) is not None}


async def fresh_quotes(adapter: SimAdapter, *, newer_than: dict[str, Quote] | None = None) -> dict[str, Quote]:
    """Wait until every symbol has a quote (newer than the one given, when given); return them."""

    def ready() -> bool:
        now = quotes(adapter)
        return len(now) == len(SYMBOLS) and all(newer_than is None or now[s].ts > newer_than[s].ts for s in SYMBOLS)

    await eventually(ready, f"quotes of {SYMBOLS} newer than {newer_than}")
    return quotes(adapter)


@pytest.fixture
async def venue() -> AsyncIterator[SimHarness]:
    async with sim_venue() as harness:
        yield harness


async def connect(venue: SimHarness) -> SimAdapter:
    adapter = venue.adapter()
    assert isinstance(adapter, SimAdapter)
    await adapter.connect()
    return adapter


@pytest.fixture
async def adapter(venue: SimHarness) -> AsyncIterator[SimAdapter]:
    adapter = await connect(venue)
    try:
        yield adapter
    finally:
        await venue.clear_faults()
        await adapter.close()


async def test_subscribed_symbols_stream_quotes_that_keep_updating(adapter: SimAdapter) -> None:
    await adapter.subscribe_quotes(SYMBOLS)
    first = await fresh_quotes(adapter)
    for symbol, quote in first.items():
        assert quote.symbol == symbol, "canonical symbol, not the venue's"
        assert isinstance(quote.bid, Decimal)
        assert isinstance(quote.ask, Decimal)
        assert Decimal(0) < quote.bid < quote.ask
        assert quote.bid_size >= 0
        assert quote.ask_size >= 0
    later = await fresh_quotes(adapter, newer_than=first)
    assert all(later[s].ts > first[s].ts for s in SYMBOLS), "the quotes follow the venue's ticks"

    await adapter.subscribe_quotes([*SYMBOLS, SYMBOLS[0]])  # again, with a repeat: nothing changes
    await fresh_quotes(adapter, newer_than=later)


async def test_an_unsubscribed_symbol_has_no_quote(adapter: SimAdapter) -> None:
    await adapter.subscribe_quotes(SYMBOLS)
    await fresh_quotes(adapter)
    # The venue publishes every symbol on each tick, the first instrument first: its quotes, streamed for
    # stall detection, have reached the adapter by now, yet they were not asked for.
    assert adapter.quote(STALL_CHANNEL_SYMBOL) is None
    assert adapter.quote("AUD/USD") is None


async def test_an_unknown_symbol_is_refused_and_nothing_is_subscribed(adapter: SimAdapter) -> None:
    with pytest.raises(OrderRefused) as info:
        await adapter.subscribe_quotes([STALL_CHANNEL_SYMBOL, "XAU/USD"])
    assert info.value.reason is RefusalReason.INVALID_ORDER
    with pytest.raises(OrderRefused):
        adapter.quote("XAU/USD")
    with pytest.raises(OrderRefused) as snapshot_info:
        await adapter.quote_snapshot("XAU/USD")
    assert snapshot_info.value.reason is RefusalReason.INVALID_ORDER

    await adapter.subscribe_quotes(SYMBOLS)
    await fresh_quotes(adapter)
    assert adapter.quote(STALL_CHANNEL_SYMBOL) is None, "the refused call subscribed none of its symbols"


async def test_quotes_resume_after_the_venue_drops_the_connection(venue: SimHarness, adapter: SimAdapter) -> None:
    await adapter.subscribe_quotes(SYMBOLS)
    before = await fresh_quotes(adapter)
    reconnects = adapter.reconnects
    await venue.set_faults(drop_connections=True)
    await eventually(lambda: adapter.reconnects > reconnects, "the adapter noticed the drop")
    # The cache was emptied when the connection dropped: quotes now come from the new connection only.
    after = await fresh_quotes(adapter, newer_than=before)
    assert set(after) == set(SYMBOLS)


async def test_no_quote_is_served_while_the_stream_is_down() -> None:
    # A signed venue with a skewed clock refuses the adapter's reconnects, holding the stream down.
    async with sim_venue(signed=True) as venue:
        adapter = await connect(venue)
        try:
            await adapter.subscribe_quotes(SYMBOLS)
            before = await fresh_quotes(adapter)
            reconnects = adapter.reconnects
            await venue.set_faults(clock_skew_ms=120_000, drop_connections=True)
            await eventually(lambda: adapter.reconnects >= reconnects + 2, "a reconnect was refused")
            assert quotes(adapter) == {}, "quotes of the dropped connection are not passed off as live"

            await venue.clear_faults()
            await fresh_quotes(adapter, newer_than=before)
        finally:
            await venue.clear_faults()
            await adapter.close()


async def test_quote_snapshot_is_the_venues_quote(venue: SimHarness, adapter: SimAdapter) -> None:
    # The market moves between two requests; the quote must equal the venue's top of book in some instant.
    for _ in range(50):
        quote = await adapter.quote_snapshot(venue.symbol)
        book = await venue.depth_snapshot()
        if (quote.bid, quote.bid_size, quote.ask, quote.ask_size) == (*book.bids[0], *book.asks[0]):
            break
    else:
        raise AssertionError(f"the snapshot never matched the venue's top of book; last {quote!r} vs {book!r}")
    assert quote.symbol == venue.symbol, "canonical symbol"
    assert isinstance(quote.bid, Decimal)
    assert quote.bid < quote.ask
    assert adapter.quote(venue.symbol) is None, "a snapshot is not a subscription"
