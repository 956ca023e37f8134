"""The stream's MarketSource against the sim venue running as a real server on loopback, with real sim
adapters as its live accounts and a sink that records what it is handed.

One venue (three funded accounts) serves the module; each test connects the adapters it needs. Waits
poll a condition a bounded number of times; nothing asserts on wall-clock time.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio

from brokerlink.brokers.backoff import Backoff
from brokerlink.brokers.base import AdapterConfig, Credentials, OrderRequest
from brokerlink.brokers.sim.adapter import SimAdapter, StreamSettings
from brokerlink.domain.enums import AccountMode, OrderType, Side
from brokerlink.domain.models import Account
from brokerlink.engine.links.live import LiveAccount
from brokerlink.engine.links.service import BrokerLinks
from brokerlink.kit.errors import NotFound
from brokerlink.stream.market import MarketSource
from tests.contract.harness import SimHarness, sim_venue
from tests.links_fixtures import new_link

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.e2e]

SYMBOL = "GBP/USD"
QUOTES = f"quotes:{SYMBOL}"
DEPTH = f"depth:{SYMBOL}"
TRADES = f"trades:{SYMBOL}"
_ids = itertools.count(1)


class Sink:
    """A MarketSink that records every update, and what the source's snapshot was at that moment."""

    def __init__(self) -> None:
        self.source: MarketSource | None = None
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.snapshots_at_unavailable: list[dict[str, Any] | None] = []

    def publish_market(self, channel: str, event: dict[str, Any]) -> None:
        self.events.append((channel, event))
        if event["type"] == "unavailable" and self.source is not None:
            self.snapshots_at_unavailable.append(self.source.snapshot(channel))

    def of(self, channel: str, kind: str | None = None) -> list[dict[str, Any]]:
        return [e for c, e in self.events if c == channel and (kind is None or e["type"] == kind)]


class Accounts:
    """The live accounts the source chooses from (what BrokerLinks.live_accounts returns)."""

    def __init__(self) -> None:
        self.live: list[LiveAccount] = []

    def __call__(self) -> list[LiveAccount]:
        return list(self.live)

    async def connect(self, venue: SimHarness, index: int) -> LiveAccount:
        key = "conf-key" if index == 0 else f"conf-key-{index}"
        account_id = f"acc_market_{index}"
        config = AdapterConfig(
            account_id=account_id,
            venue_account_id="",
            base_url=venue.base_url,
            credentials=Credentials(values={"api_key": key}),
        )
        stream = StreamSettings(backoff=Backoff(base_s=0.05, cap_s=0.5), stall_after_s=5.0, connect_timeout_s=5.0)
        adapter = SimAdapter(config, stream=stream, seed=index)
        await adapter.connect()
        account = Account(
            id=account_id,
            user_id="usr_market",
            connection_id=f"conn_market_{index}",
            venue_account_id=adapter.venue_account_id,
            name=f"market {index}",
            currency="USD",
            mode=AccountMode.NETTING,
        )
        live = LiveAccount(account, broker="sim", adapter=adapter, instruments=await adapter.instruments())
        self.live.append(live)
        return live

    async def unlink(self, live: LiveAccount) -> None:
        """As BrokerLinks does: forget the live account, then close its adapter."""
        self.live.remove(live)
        await live.adapter.close()

    async def close(self) -> None:
        for live in self.live:
            await live.adapter.close()
        self.live.clear()


async def eventually(predicate: Callable[[], bool], what: str, *, polls: int = 200) -> None:
    for _ in range(polls):  # 200 x 0.05 s = 10 s at most
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def ts(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["ts"])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def venue() -> AsyncIterator[SimHarness]:
    async with sim_venue(extra_accounts=2) as harness:
        yield harness


@pytest_asyncio.fixture(loop_scope="module")
async def accounts(venue: SimHarness) -> AsyncIterator[Accounts]:
    made = Accounts()
    try:
        yield made
    finally:
        await venue.clear_faults()
        await made.close()


@pytest_asyncio.fixture(loop_scope="module")
async def sink() -> Sink:
    return Sink()


@pytest_asyncio.fixture(loop_scope="module")
async def source(accounts: Accounts, sink: Sink) -> AsyncIterator[MarketSource]:
    market = MarketSource(accounts, sink=sink, depth_levels=3, trades_kept=5, retry_s=0.05)
    sink.source = market
    try:
        yield market
    finally:
        await market.stop()


async def test_quotes_are_pushed_as_strings_and_the_snapshot_is_the_latest(
    venue: SimHarness, accounts: Accounts, source: MarketSource, sink: Sink
) -> None:
    live = await accounts.connect(venue, 0)
    await source.want(QUOTES)
    await source.want(QUOTES)  # idempotent
    assert source.source_of(QUOTES) == live.id
    await eventually(lambda: len(sink.of(QUOTES)) >= 3, "three quotes")
    events = sink.of(QUOTES)
    for event in events:
        assert set(event) == {"type", "symbol", "bid", "ask", "bid_size", "ask_size", "ts"}
        assert event["type"] == "quote"
        assert event["symbol"] == SYMBOL
        assert isinstance(event["bid"], str), "decimals travel as strings"
        assert Decimal(0) < Decimal(event["bid"]) < Decimal(event["ask"])
        assert ts(event).tzinfo is not None
    assert [ts(e) for e in events] == sorted(ts(e) for e in events)
    snapshot = source.snapshot(QUOTES)
    assert snapshot is not None
    assert snapshot in sink.of(QUOTES)[-2:], "the snapshot is the latest quote (or one newer than when looked at)"
    assert source.snapshot(DEPTH) is None, "not wanted"


async def test_unknown_channels_and_symbols_are_not_found(
    venue: SimHarness, accounts: Accounts, source: MarketSource
) -> None:
    with pytest.raises(NotFound):
        await source.want(QUOTES)  # no live account at all
    await accounts.connect(venue, 0)
    for channel in ("quotes:XAU/USD", "candles:GBP/USD", "quotes:", "quotes", "account:acc_1", "quotes:" + "X" * 65):
        with pytest.raises(NotFound):
            await source.want(channel)
    assert source.channels == []


async def test_depth_pushes_the_top_levels_after_each_change(
    venue: SimHarness, accounts: Accounts, source: MarketSource, sink: Sink
) -> None:
    await accounts.connect(venue, 0)
    await source.want(DEPTH)
    await eventually(lambda: len(sink.of(DEPTH)) >= 3, "three depth updates")
    events = sink.of(DEPTH)
    for event in events:
        assert event["type"] == "depth"
        assert event["symbol"] == SYMBOL
        # A side may be empty for a moment: the venue's market maker re-quotes level by level.
        assert len(event["bids"]) <= 3, "depth_levels=3"
        assert len(event["asks"]) <= 3
        bids = [Decimal(p) for p, _ in event["bids"]]
        asks = [Decimal(p) for p, _ in event["asks"]]
        assert bids == sorted(bids, reverse=True), "best first"
        assert asks == sorted(asks)
    assert any(len(e["bids"]) == 3 and len(e["asks"]) == 3 for e in events)
    consecutive = list(itertools.pairwise(events))
    assert all((a["bids"], a["asks"]) != (b["bids"], b["asks"]) for a, b in consecutive), "only visible changes"
    assert source.snapshot(DEPTH) in sink.of(DEPTH)[-2:]


async def test_trades_are_pushed_and_the_snapshot_keeps_the_latest(
    venue: SimHarness, accounts: Accounts, source: MarketSource, sink: Sink
) -> None:
    live = await accounts.connect(venue, 0)
    await source.want(TRADES)
    assert source.snapshot(TRADES) is None, "no trade yet"
    for _ in range(3):
        coid = f"market-{next(_ids)}"
        await live.adapter.submit(
            OrderRequest(
                client_order_id=coid, symbol=SYMBOL, side=Side.SELL, qty=Decimal("0.10"), type=OrderType.MARKET
            )
        )
    await eventually(lambda: sum(Decimal(e["qty"]) for e in sink.of(TRADES)) == Decimal("0.30"), "every trade")
    for event in sink.of(TRADES):
        assert set(event) == {"type", "symbol", "trade_id", "price", "qty", "side", "ts"}
        assert event["type"] == "trade"
        assert event["side"] == "sell"
        assert Decimal(event["price"]) > 0
    snapshot = source.snapshot(TRADES)
    assert snapshot is not None
    assert snapshot["type"] == "trades"
    assert snapshot["trades"] == sink.of(TRADES)[-5:], "trades_kept=5, oldest first"


async def test_unwant_stops_the_push_and_wanting_again_resumes_at_once(
    venue: SimHarness, accounts: Accounts, source: MarketSource, sink: Sink
) -> None:
    live = await accounts.connect(venue, 0)
    await source.want(QUOTES)
    await eventually(lambda: bool(sink.of(QUOTES)), "a quote")
    source.unwant(QUOTES)
    source.unwant(QUOTES)  # idempotent
    count = len(sink.of(QUOTES))
    last = live.quote(SYMBOL)
    assert last is not None
    # The adapter keeps receiving quotes (the venue subscription stays); none reaches the sink.
    await eventually(lambda: (q := live.quote(SYMBOL)) is not None and q.ts > last.ts, "the adapter got newer quotes")
    assert len(sink.of(QUOTES)) == count
    assert source.snapshot(QUOTES) is None
    assert source.channels == []

    await source.want(QUOTES)
    assert source.snapshot(QUOTES) is not None, "the adapter's latest quote, without waiting for the next"
    await eventually(lambda: len(sink.of(QUOTES)) > count, "pushing again")


async def test_the_configured_account_is_preferred(venue: SimHarness, accounts: Accounts, sink: Sink) -> None:
    first = await accounts.connect(venue, 0)
    second = await accounts.connect(venue, 1)
    for preferred, expected in ((None, first.id), (second.id, second.id), ("acc_gone", first.id)):
        market = MarketSource(accounts, sink=sink, preferred=preferred)
        try:
            await market.want(QUOTES)
            assert market.source_of(QUOTES) == expected, preferred
        finally:
            await market.stop()


async def test_a_reconnect_sends_unavailable_and_no_stale_quote(
    venue: SimHarness, accounts: Accounts, source: MarketSource, sink: Sink
) -> None:
    live = await accounts.connect(venue, 0)
    assert isinstance(live.adapter, SimAdapter)
    await source.want(QUOTES)
    await eventually(lambda: bool(sink.of(QUOTES)), "a quote")
    reconnects = live.adapter.reconnects
    await venue.set_faults(drop_connections=True)
    await eventually(lambda: live.adapter.reconnects > reconnects, "the adapter noticed the drop")
    await venue.clear_faults()
    await eventually(lambda: bool(sink.of(QUOTES, "unavailable")), "subscribers were told")
    marker = sink.events.index((QUOTES, sink.of(QUOTES, "unavailable")[0]))
    await eventually(lambda: any(c == QUOTES for c, _ in sink.events[marker + 1 :]), "live quotes again")
    before = [e for c, e in sink.events[:marker] if c == QUOTES]
    after = [e for c, e in sink.events[marker + 1 :] if c == QUOTES]
    assert sink.snapshots_at_unavailable == [None], "no snapshot of the dropped connection"
    assert sink.of(QUOTES, "unavailable")[0]["reason"].startswith("broker connection lost")
    assert all(e["type"] == "quote" for e in after)
    assert min(ts(e) for e in after) >= max(ts(e) for e in before), "nothing from before the drop"
    assert source.source_of(QUOTES) == live.id, "the same adapter, reconnected"


async def test_an_unlinked_source_moves_to_another_then_waits_for_one(
    venue: SimHarness, accounts: Accounts, source: MarketSource, sink: Sink
) -> None:
    first = await accounts.connect(venue, 0)
    second = await accounts.connect(venue, 1)
    await source.want(QUOTES)
    await source.want(DEPTH)
    assert source.source_of(QUOTES) == first.id
    await eventually(lambda: bool(sink.of(QUOTES)) and bool(sink.of(DEPTH)), "quotes and depth")

    await accounts.unlink(first)
    await eventually(lambda: source.source_of(QUOTES) == second.id, "quotes moved to the other account")
    await eventually(lambda: source.source_of(DEPTH) == second.id, "depth moved too")
    count = len(sink.of(QUOTES))
    await eventually(lambda: len(sink.of(QUOTES, "quote")) > count, "quotes flow from the new source")
    assert sink.of(QUOTES, "unavailable") == [], "a move with a source at hand is seamless"

    await accounts.unlink(second)
    await eventually(lambda: bool(sink.of(QUOTES, "unavailable")), "no source left: subscribers are told")
    unavailable = sink.of(QUOTES, "unavailable")[0]
    assert unavailable["symbol"] == SYMBOL
    assert "ended" in unavailable["reason"]
    assert source.source_of(QUOTES) is None
    assert source.snapshot(QUOTES) is None
    assert QUOTES in source.channels, "still wanted: it resumes when a source appears"

    third = await accounts.connect(venue, 2)
    await eventually(lambda: source.source_of(QUOTES) == third.id, "the retry found the new account")
    marker = len(sink.events)
    await eventually(lambda: any(c == QUOTES and e["type"] == "quote" for c, e in sink.events[marker:]), "resumed")


async def test_unlinking_through_the_links_service_ends_in_unavailable(
    make_links: Callable[[], BrokerLinks], user_id: str
) -> None:
    async with sim_venue() as venue:
        links = make_links()
        sink = Sink()
        market = MarketSource(links.live_accounts, sink=sink, retry_s=0.05)
        sink.source = market
        try:
            account = await links.link(user_id, new_link(venue))
            await market.want(QUOTES)
            assert market.source_of(QUOTES) == account.id
            await eventually(lambda: bool(sink.of(QUOTES)), "a quote")
            await links.unlink(user_id, account.connection_id)
            await eventually(lambda: bool(sink.of(QUOTES, "unavailable")), "unlinking ended the source")
            assert links.live_accounts() == []
            with pytest.raises(NotFound):
                await market.want(DEPTH)
        finally:
            await market.stop()
            await links.stop()
