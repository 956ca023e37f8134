"""The conformance suite every broker adapter must pass, normally and under each injected fault.

Run here against the sim adapter and the sim venue as a real server on loopback. What it holds
every adapter to (issue 3): orders end in the right state, no fill is lost or counted twice, an
unknown outcome is resolved without a duplicate order, positions after a reconnect equal the venue's;
for adapters with market data, the local book equals the venue's, also after a gap and a reconnect;
an injected refusal or clock skew is a definitive refusal that leaves no order behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest

from brokerlink.brokers.base import (
    BrokerAdapter,
    BrokerRateLimited,
    MarketDataAdapter,
    OrderBookView,
    OrderRefused,
    OrderRequest,
    OutcomeUnknown,
    RefusalReason,
    TransientBrokerError,
    resolve_outcome,
)
from brokerlink.domain.enums import ConnectionState, OrderStatus, OrderType, Side, TimeInForce
from brokerlink.domain.events import ConnectionChanged, DomainEvent, OrderAccepted, OrderCanceled, OrderFilled
from tests.contract.harness import ALL_FAULTS, FAULTS, VenueFactory, VenueHarness, sim_venue
from tests.contract.harness_alpaca import alpaca_venue
from tests.contract.harness_ccxt import ccxt_venue
from tests.contract.harness_oanda import oanda_venue

pytestmark = pytest.mark.e2e
_ids = itertools.count(1)

FAULT_SETTINGS: dict[str, dict[str, Any]] = {
    "none": {},
    "latency": {"latency_ms": 30},
    "drop_connections": {"drop_connections": True},
    "fail_after_accept": {"fail_after_accept": 1},
    "duplicate_events": {"duplicate_events": 1.0},
    "reorder_events": {"reorder_events": 0.5},
    # Dedicated tests below: each changes what the right outcome is.
    "depth_gap": {"depth_gap": 1},
    "reject_next": {"reject_next": 1},
    "clock_skew_ms": {"clock_skew_ms": 120_000},
    "rate_limit_next": {"rate_limit_next": 1},
}


class EventLog:
    """Collects an adapter's events in the background; waits are bounded by a poll count."""

    def __init__(self, adapter: BrokerAdapter) -> None:
        self.events: list[DomainEvent] = []
        self._task = asyncio.create_task(self._collect(adapter))

    async def _collect(self, adapter: BrokerAdapter) -> None:
        async for event in adapter.events():
            self.events.append(event)

    async def wait_for(self, predicate: Callable[[list[DomainEvent]], bool], *, polls: int = 200) -> None:
        for _ in range(polls):  # 200 x 0.05 s = 10 s at most
            if predicate(self.events):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"condition not met; events seen: {[type(e).__name__ for e in self.events]}")

    def fills(self, client_order_id: str) -> list[OrderFilled]:
        return [e for e in self.events if isinstance(e, OrderFilled) and e.client_order_id == client_order_id]

    async def aclose(self) -> None:
        # The adapter's close() ends its event stream, which ends the collector; cancel only if it does not.
        done, _ = await asyncio.wait({self._task}, timeout=5)
        if not done:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


VENUES: dict[str, VenueFactory] = {"sim": sim_venue, "alpaca": alpaca_venue, "oanda": oanda_venue, "ccxt": ccxt_venue}
"""Every venue the suite runs against, by broker kind (a new adapter's harness joins here)."""


@pytest.fixture(params=sorted(VENUES))
async def venue(request: pytest.FixtureRequest) -> AsyncIterator[VenueHarness]:
    async with VENUES[request.param]() as harness:
        yield harness


@pytest.fixture
async def connected(venue: VenueHarness) -> AsyncIterator[tuple[BrokerAdapter, EventLog]]:
    adapter = venue.adapter()
    await adapter.connect()
    log = EventLog(adapter)
    try:
        yield adapter, log
    finally:
        await venue.clear_faults()
        await adapter.close()
        await log.aclose()


def new_id() -> str:
    return f"conf-{next(_ids)}"


async def place(adapter: BrokerAdapter, request: OrderRequest) -> None:
    """Submit; an unknown outcome is resolved by lookup, and resent (same id) only if the venue never saw it."""
    try:
        await adapter.submit(request)
    except OutcomeUnknown:

        async def no_wait(_: int) -> None:
            await asyncio.sleep(0.05)

        if await resolve_outcome(adapter, request.client_order_id, attempts=5, wait=no_wait) is None:
            await adapter.submit(request)


def market(venue: VenueHarness, side: Side = Side.BUY, qty: str | None = None) -> OrderRequest:
    return OrderRequest(
        client_order_id=new_id(),
        symbol=venue.symbol,
        side=side,
        qty=Decimal(qty or venue.small_qty),
        type=OrderType.MARKET,
        tif=TimeInForce.IOC,
    )


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_market_order_fills_once_and_reports_agree(
    venue: VenueHarness, connected: tuple[BrokerAdapter, EventLog], fault: str
) -> None:
    adapter, log = connected
    await venue.set_faults(**FAULT_SETTINGS[fault])
    request = market(venue)
    await place(adapter, request)
    await venue.clear_faults()
    await log.wait_for(lambda _: sum(f.last_qty for f in log.fills(request.client_order_id)) >= request.qty)
    fills = log.fills(request.client_order_id)
    assert sum(f.last_qty for f in fills) == request.qty, "filled exactly the order's quantity"
    trade_ids = [f.trade_id for f in fills]
    assert len(trade_ids) == len(set(trade_ids)), "no fill counted twice"
    report = await adapter.order(client_order_id=request.client_order_id)
    assert report is not None
    assert report.status is OrderStatus.FILLED
    assert report.filled_qty == request.qty
    venue_fills = [f for f in (await adapter.fills_since(None)).fills if f.client_order_id == request.client_order_id]
    assert sorted(f.trade_id for f in venue_fills) == sorted(trade_ids), "stream and report agree, nothing lost"


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_resting_limit_order_is_accepted_then_canceled(
    venue: VenueHarness, connected: tuple[BrokerAdapter, EventLog], fault: str
) -> None:
    adapter, log = connected
    quote_floor = Decimal("0.50000")  # far below EUR/USD: rests, never fills
    request = OrderRequest(
        client_order_id=new_id(),
        symbol=venue.symbol,
        side=Side.BUY,
        qty=Decimal(venue.small_qty),
        type=OrderType.LIMIT,
        tif=TimeInForce.GTC,
        limit_price=quote_floor,
    )
    await venue.set_faults(**FAULT_SETTINGS[fault])
    await place(adapter, request)
    await log.wait_for(
        lambda ev: any(isinstance(e, OrderAccepted) and e.client_order_id == request.client_order_id for e in ev)
    )
    assert request.client_order_id in {o.client_order_id for o in await adapter.open_orders()}
    with contextlib.suppress(OutcomeUnknown):  # the cancel may have happened: the report below says
        await adapter.cancel(request.client_order_id)
    await venue.clear_faults()
    await log.wait_for(
        lambda ev: any(isinstance(e, OrderCanceled) and e.client_order_id == request.client_order_id for e in ev)
    )
    report = await adapter.order(client_order_id=request.client_order_id)
    assert report is not None
    assert report.status is OrderStatus.CANCELED
    assert request.client_order_id not in {o.client_order_id for o in await adapter.open_orders()}


async def test_an_unknown_outcome_never_places_a_second_order(
    venue: VenueHarness, connected: tuple[BrokerAdapter, EventLog]
) -> None:
    adapter, log = connected
    await venue.set_faults(fail_after_accept=1)
    request = market(venue)
    with pytest.raises(OutcomeUnknown):
        await adapter.submit(request)
    await venue.clear_faults()

    async def no_wait(_: int) -> None:
        await asyncio.sleep(0.05)

    found = await resolve_outcome(adapter, request.client_order_id, attempts=5, wait=no_wait)
    assert found is not None, "the venue executed it; the lookup must find it"
    with pytest.raises(OrderRefused) as info:
        await adapter.submit(request)  # a blind resend is refused as a duplicate, never executed
    assert info.value.reason is RefusalReason.DUPLICATE_CLIENT_ORDER_ID
    await log.wait_for(lambda _: sum(f.last_qty for f in log.fills(request.client_order_id)) >= request.qty)
    assert sum(f.last_qty for f in log.fills(request.client_order_id)) == request.qty


async def test_positions_after_a_reconnect_equal_the_venues(
    venue: VenueHarness, connected: tuple[BrokerAdapter, EventLog]
) -> None:
    adapter, log = connected
    first, second, third = market(venue), market(venue), market(venue, Side.SELL, str(Decimal(venue.small_qty) / 2))
    await place(adapter, first)
    await place(adapter, second)
    await venue.set_faults(drop_connections=True)
    await place(adapter, third)  # placed while the stream is down or reconnecting
    await venue.clear_faults()
    await log.wait_for(
        lambda ev: any(isinstance(e, ConnectionChanged) and e.state is ConnectionState.DISCONNECTED for e in ev)
    )
    await log.wait_for(
        lambda ev: any(
            isinstance(e, ConnectionChanged) and e.state is ConnectionState.CONNECTED and e.gap_possible for e in ev
        )
    )
    expected = Decimal(0)
    for request in (first, second, third):
        await log.wait_for(lambda _, r=request: sum(f.last_qty for f in log.fills(r.client_order_id)) >= r.qty)
        expected += request.qty * request.side.sign
    streamed = sum(
        f.last_qty * f.side.sign
        for f in log.events
        if isinstance(f, OrderFilled)
        and f.client_order_id in {first.client_order_id, second.client_order_id, third.client_order_id}
    )
    assert streamed == expected, "every fill arrived once, through the stream or reconciliation"
    positions = {p.symbol: p.qty for p in await adapter.positions()}
    assert positions.get(venue.symbol, Decimal(0)) == expected


# --- every fault the venue can inject --------------------------------------------------------


async def test_every_injectable_fault_is_exercised(venue: VenueHarness) -> None:
    used = {name for fault in ALL_FAULTS for name in FAULT_SETTINGS[fault]}
    assert set(ALL_FAULTS) == set(FAULT_SETTINGS), "every named fault has settings, and is run"
    assert set(venue.injectable_faults) <= used, f"not exercised: {set(venue.injectable_faults) - used}"


# --- market data -----------------------------------------------------------------------------


async def book_equals_venue(
    adapter: MarketDataAdapter, venue: VenueHarness, *, after_resyncs: int = 0, polls: int = 200
) -> OrderBookView:
    """Poll until the adapter's book, at the same update id as a fresh venue snapshot, equals it.

    The market keeps moving, so the two are compared only when they describe the same update; a
    mismatch at the same update id fails at once. ``after_resyncs``: also wait for that many resyncs.
    """
    seen: OrderBookView | None = None
    for _ in range(polls):  # each poll takes at most ~0.15 s: bounded
        snapshot = await venue.depth_snapshot()
        for _ in range(10):
            seen = adapter.book(venue.symbol)
            if seen is not None and seen.update_id >= snapshot.update_id:
                break
            await asyncio.sleep(0.01)
        if seen is not None and seen.resyncs >= after_resyncs and seen.update_id == snapshot.update_id:
            assert seen.bids == snapshot.bids
            assert seen.asks == snapshot.asks
            return seen
        await asyncio.sleep(0.02)
    raise AssertionError(f"the adapter's book never matched the venue's at the same update id; last seen {seen!r}")


async def test_the_local_book_equals_the_venues_across_gaps_and_reconnects(
    venue: VenueHarness, connected: tuple[BrokerAdapter, EventLog]
) -> None:
    adapter, log = connected
    assert isinstance(adapter, MarketDataAdapter) == adapter.capabilities.depth, "capability and methods agree"
    if not isinstance(adapter, MarketDataAdapter):
        return  # no market data to hold to the venue's: the agreement above is the whole contract
    await adapter.subscribe_depth(venue.symbol)
    await venue.advance()
    first = await book_equals_venue(adapter, venue)
    assert first.bids, "the venue's book has bids"
    assert first.asks, "the venue's book has asks"
    await venue.advance()
    moved = await book_equals_venue(adapter, venue)
    assert moved.update_id > first.update_id, "the book followed the market's diffs"
    assert moved.resyncs == first.resyncs, "no resync without a gap"

    await venue.set_faults(**FAULT_SETTINGS["depth_gap"])  # one diff never reaches us
    after_gap = await book_equals_venue(adapter, venue, after_resyncs=moved.resyncs + 1)
    assert after_gap.update_id > moved.update_id

    await venue.set_faults(drop_connections=True)  # diffs sent while away are lost: rebuilt after reconnect
    await log.wait_for(
        lambda ev: any(isinstance(e, ConnectionChanged) and e.state is ConnectionState.DISCONNECTED for e in ev)
    )
    await book_equals_venue(adapter, venue, after_resyncs=after_gap.resyncs + 1)


# --- refusals --------------------------------------------------------------------------------


async def test_an_injected_rejection_is_definitive_and_leaves_no_order(
    venue: VenueHarness, connected: tuple[BrokerAdapter, EventLog]
) -> None:
    adapter, log = connected
    await venue.set_faults(**FAULT_SETTINGS["reject_next"])
    refused = market(venue)
    with pytest.raises(OrderRefused) as info:
        await adapter.submit(refused)
    assert info.value.reason is RefusalReason.INVALID_ORDER
    assert not isinstance(info.value, TransientBrokerError)
    assert await adapter.order(client_order_id=refused.client_order_id) is None, "refused: the venue has no order"
    follow_up = market(venue)  # the fault was used up by the refused order: the next one fills
    await place(adapter, follow_up)
    await log.wait_for(lambda _: sum(f.last_qty for f in log.fills(follow_up.client_order_id)) >= follow_up.qty)
    assert not [e for e in log.events if getattr(e, "client_order_id", None) == refused.client_order_id], (
        "no event at all for the refused order: no acceptance, no fill"
    )
    venue_fills = (await adapter.fills_since(None)).fills
    assert not [f for f in venue_fills if f.client_order_id == refused.client_order_id]


async def test_a_429_is_a_transient_refusal_with_retry_after_and_nothing_happens(
    venue: VenueHarness, connected: tuple[BrokerAdapter, EventLog]
) -> None:
    adapter, log = connected
    await venue.set_faults(**FAULT_SETTINGS["rate_limit_next"])  # the venue's next request gets 429
    limited = market(venue)
    with pytest.raises(BrokerRateLimited) as info:
        await adapter.submit(limited)
    assert info.value.retry_after_ms is not None, "the venue's Retry-After reaches the caller"
    assert 0 < info.value.retry_after_ms <= 60_000
    assert await adapter.order(client_order_id=limited.client_order_id) is None, "rate limited: nothing happened"
    await place(adapter, limited)  # the same request, sent again once the pause is over: filled once
    await log.wait_for(lambda _: sum(f.last_qty for f in log.fills(limited.client_order_id)) >= limited.qty)
    assert sum(f.last_qty for f in log.fills(limited.client_order_id)) == limited.qty


async def test_clock_skew_on_a_signed_venue_is_an_auth_refusal_until_cleared() -> None:
    async with sim_venue(signed=True) as venue:
        adapter = venue.adapter()
        await adapter.connect()
        log = EventLog(adapter)
        try:
            await venue.set_faults(**FAULT_SETTINGS["clock_skew_ms"])  # far outside the 5 s receive window
            skewed = market(venue)
            with pytest.raises(OrderRefused) as info:
                await adapter.submit(skewed)
            assert info.value.reason is RefusalReason.AUTH
            assert not isinstance(info.value, TransientBrokerError), "definitive: not retried as transient"
            with pytest.raises(OrderRefused) as read_info:
                await adapter.balance()
            assert read_info.value.reason is RefusalReason.AUTH

            await venue.clear_faults()
            assert await adapter.order(client_order_id=skewed.client_order_id) is None, "never executed"
            after = market(venue)
            await place(adapter, after)  # the same adapter works again
            await log.wait_for(lambda _: sum(f.last_qty for f in log.fills(after.client_order_id)) >= after.qty)
            report = await adapter.order(client_order_id=after.client_order_id)
            assert report is not None
            assert report.status is OrderStatus.FILLED
        finally:
            await venue.clear_faults()
            await adapter.close()
            await log.aclose()
