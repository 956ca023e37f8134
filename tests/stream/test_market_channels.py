"""Market channels end to end: the app (uvicorn on loopback) links a real sim venue account, and a browser
session subscribes to ``quotes:BTC/USD`` over ``/v1/stream``.

The venue runs without its market data loop: the test moves BTC/USD's mid itself, so each numbered
quote on the socket can be matched to the change that caused it. Waits are bounded; nothing asserts
on wall-clock time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from brokerlink.brokers.sim.instruments import SimInstrument, SimParams
from brokerlink.brokers.sim.venue import AccountConfig, Venue, VenueConfig, create_venue_app
from brokerlink.domain.enums import AssetClass
from brokerlink.domain.models import Instrument
from brokerlink.engine.links.service import BrokerLinks, NewLink
from brokerlink.stream.market import MarketSource
from tests.contract.harness import free_port
from tests.stream.support import account_owner, ask, recv, subscribe, until, welcome, with_cookie, world

pytestmark = pytest.mark.e2e

CHANNEL = "quotes:BTC/USD"
VENUE_SYMBOL = "BTCUSD"


def _btc_usd() -> SimInstrument:
    return SimInstrument(
        instrument=Instrument(
            symbol="BTC/USD",
            venue_symbol=VENUE_SYMBOL,
            asset_class=AssetClass.CRYPTO,
            base="BTC",
            quote="USD",
            tick_size=Decimal("0.1"),
            qty_step=Decimal("0.00001"),
            min_qty=Decimal("0.00001"),
            min_notional=Decimal(5),
        ),
        params=SimParams(
            initial_price=Decimal("65000.0"), volatility=Decimal("0.60"), spread_ticks=2, top_qty=Decimal("0.5")
        ),
    )


@contextlib.asynccontextmanager
async def btc_venue() -> AsyncIterator[tuple[Venue, str]]:
    """A sim venue listing BTC/USD, served on loopback, its market moved by hand."""
    config = VenueConfig(
        accounts=(AccountConfig(account_id="SIM-MKT", api_key="mkt-key", api_secret="mkt-secret"),),
        background=False,
        heartbeat_interval_s=1.0,
    )
    venue = Venue(config, instruments=[_btc_usd()])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_venue_app(venue=venue),
            host="127.0.0.1",
            port=port,
            log_config=None,
            lifespan="on",
            timeout_graceful_shutdown=1,
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        await until(lambda: server.started or task.done(), "the venue listens")
        if task.done():
            task.result()
        yield venue, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)


def _quotes(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["op"] == "event" and m["channel"] == CHANNEL]


async def _quote_near(ws: Any, mid: Decimal) -> dict[str, Any]:
    """Read events until a quote whose bid and ask are within a few ticks of ``mid`` (bounded: 50 messages;
    the market maker re-quotes level by level, so the quotes in between may span the old and new prices)."""
    for _ in range(50):
        message = await recv(ws)
        assert message["op"] == "event", message
        assert message["channel"] == CHANNEL
        event = message["event"]
        near = event["type"] == "quote" and all(abs(Decimal(event[side]) - mid) < 1 for side in ("bid", "ask"))
        if near:
            return message
    raise AssertionError(f"no quote near {mid}")


async def test_a_session_gets_a_snapshot_and_numbered_quotes_as_the_book_moves(tmp_path: Path) -> None:
    async with btc_venue() as (venue, venue_url), world(tmp_path) as w:
        links: BrokerLinks = w.app.state.links
        alice = await account_owner(w.app, w.mine)
        account = await links.link(
            alice, NewLink(broker="sim", label="Market feed", base_url=venue_url, credentials={"api_key": "mkt-key"})
        )
        market: MarketSource = w.app.state["market_source"]
        async with with_cookie(w) as ws, with_cookie(w) as late:
            await welcome(ws)
            reply = await ask(ws, "subscribe", "quotes:NOPE/USD")
            assert (reply["op"], reply["status"], reply["code"]) == ("error", 404, "not_found"), reply
            assert reply["channel"] == "quotes:NOPE/USD"

            reply = await ask(ws, "subscribe", CHANNEL)  # no quote has arrived yet, so no snapshot follows
            assert reply["op"] == "subscribed", reply
            assert market.source_of(CHANNEL) == account.id
            seqs = []
            for mid in (Decimal("65100.0"), Decimal("64900.0"), Decimal("65300.0")):
                venue.set_mid(VENUE_SYMBOL, mid)  # the market maker re-quotes: the top of book changes
                message = await _quote_near(ws, mid)
                event = message["event"]
                assert set(event) == {"type", "symbol", "bid", "ask", "bid_size", "ask_size", "ts"}
                assert event["symbol"] == "BTC/USD"
                assert Decimal(event["ask"]) - Decimal(event["bid"]) == Decimal("0.2"), "two ticks"
                seqs.append(message["seq"])
            assert seqs == sorted(seqs), "numbered in order"
            assert seqs[0] > reply["seq"]

            # A second socket joins: the snapshot is the latest quote, at the channel's current number.
            await welcome(late)
            joined, snapshot = await subscribe(late, CHANNEL)
            assert snapshot is not None
            assert snapshot["data"]["type"] == "quote"
            assert abs(Decimal(snapshot["data"]["bid"]) - Decimal("65300.0")) < Decimal(1)
            assert joined["seq"] >= seqs[-1]

            # Unlinking the only source: both sockets are told, and the channel stays subscribed.
            await links.unlink(alice, account.connection_id)
            for socket in (ws, late):
                for _ in range(50):
                    message = await recv(socket)
                    if message["op"] == "event" and message["event"]["type"] == "unavailable":
                        break
                else:
                    raise AssertionError("no unavailable event")
                assert message["channel"] == CHANNEL
            await until(lambda: market.source_of(CHANNEL) is None, "the source is gone")
