"""Copy trading across broker kinds (issue 7): a provider at OANDA, followers at Alpaca and at a
CCXT exchange (Binance spot), each test venue a real server on loopback speaking its vendor's wire
format, linked through the real links service with the real adapters.

The provider trades the ``BTC_USD`` CFD at OANDA (canonical ``BTC/USD``). Alpaca lists ``BTC/USD``
itself; Binance lists ``BTC/USDT``, reached through the follower's symbol map. Each follower copies
half the provider's size; the provider opens, closes half, then closes the rest, and each follower
holds what its settings say at every step, with one order per copy at its venue.

Bounded polling throughout; no wall-clock asserts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal

import pytest

from brokerlink.bus.memory import MemoryEventBus
from brokerlink.domain.copy import IntentAction, IntentStatus, StrategyVisibility
from brokerlink.domain.enums import Side
from brokerlink.domain.models import Account
from brokerlink.engine.copy.manage import create_strategy, subscribe
from brokerlink.engine.copy.service import CopyEngine
from brokerlink.engine.copy.settings import CopySettings, SizingMode
from brokerlink.engine.links.orders import OrderTicket, place_order
from brokerlink.engine.links.service import BrokerLinks, NewLink
from brokerlink.kit.clock import SystemClock
from brokerlink.store.db import Database
from brokerlink.store.repositories.copy_intents import CopyIntentRepository
from brokerlink.store.repositories.positions import PositionRepository
from brokerlink.store.repositories.users import UserRepository
from tests.contract import harness_alpaca, harness_ccxt, harness_oanda
from tests.links_fixtures import LinksFactory

pytestmark = pytest.mark.e2e
D = Decimal
HALF = CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=D("0.5"))

SEQUENCE = (  # the provider's trade at OANDA, then what each follower holds
    (Side.BUY, "0.40", "0.20"),
    (Side.SELL, "0.20", "0.10"),  # half closed: each follower closes half of what it holds
    (Side.SELL, "0.20", "0"),
)


async def eventually(probe: Callable[[], Awaitable[bool]], what: str, *, attempts: int = 400) -> None:
    for _ in range(attempts):  # 400 x 50 ms at most
        if await probe():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def venues() -> AsyncIterator[tuple[str, str, str]]:
    async with (
        harness_oanda.oanda_venue() as oanda,
        harness_alpaca.alpaca_venue() as alpaca,
        harness_ccxt.ccxt_venue() as binance,
    ):
        yield oanda.base_url, alpaca.base_url, binance.base_url


async def _user(database: Database, n: int) -> str:
    async with database.session() as session:
        user = await UserRepository(session).create(
            email=f"trader{n}@example.com", display_name=f"Trader {n}", password_hash="x", now=SystemClock().now()
        )
        await session.commit()
        return user.id


async def _held(database: Database, account: Account, symbol: str) -> Decimal:
    async with database.session() as session:
        position = await PositionRepository(session).get(account.id, symbol)
    return D(0) if position is None else position.qty


async def test_a_provider_at_oanda_is_copied_to_alpaca_and_to_binance_through_ccxt_with_symbol_mapping(
    make_links: LinksFactory, database: Database, bus: MemoryEventBus, venues: tuple[str, str, str]
) -> None:
    oanda_url, alpaca_url, binance_url = venues
    links: BrokerLinks = make_links()
    provider = await links.link(
        await _user(database, 0),
        NewLink(broker="oanda", label="OANDA", base_url=oanda_url, credentials={"token": harness_oanda.TOKEN}),
    )
    alpaca = await links.link(
        await _user(database, 1),
        NewLink(
            broker="alpaca",
            label="Alpaca",
            base_url=alpaca_url,
            credentials={"api_key": harness_alpaca.KEY_ID, "api_secret": harness_alpaca.SECRET},
        ),
    )
    binance = await links.link(
        await _user(database, 2),
        NewLink(
            broker="ccxt",
            label="Binance",
            base_url=binance_url,
            credentials={"exchange": "binance", "api_key": harness_ccxt.API_KEY, "api_secret": harness_ccxt.API_SECRET},
        ),
    )
    now = SystemClock().now()
    async with database.session() as session:
        strategy = await create_strategy(
            session, provider_user_id=provider.user_id, account_id=provider.id, name="BTC swing",
            visibility=StrategyVisibility.PUBLIC, now=now,
        )  # fmt: skip
        subscriptions = [
            await subscribe(
                session, follower_user_id=alpaca.user_id, strategy_id=strategy.id, account_id=alpaca.id,
                settings=HALF, now=now,
            ),
            await subscribe(
                session, follower_user_id=binance.user_id, strategy_id=strategy.id, account_id=binance.id,
                settings=CopySettings(
                    sizing=SizingMode.MULTIPLIER, multiplier=D("0.5"), symbol_map={"BTC/USD": "BTC/USDT"}
                ),
                now=now,
            ),
        ]  # fmt: skip
        await session.commit()
    followers = ((alpaca, "BTC/USD"), (binance, "BTC/USDT"))
    engine = CopyEngine(database, bus, links, SystemClock(), retry_every_s=0.1)
    await engine.start()
    try:
        for side, qty, expected in SEQUENCE:

            async def all_live() -> bool:
                return all(links.is_live(a.id) for a in (provider, alpaca, binance))

            await eventually(all_live, "every account's connection to be up")
            await place_order(links, provider.id, OrderTicket(symbol="BTC/USD", side=side, qty=D(qty)))

            want = D(expected)

            async def copied(want: Decimal = want) -> bool:
                return [await _held(database, a, s) for a, s in followers] == [want, want]

            try:
                await eventually(copied, f"each follower to hold {expected} BTC")
            except AssertionError:
                held = [await _held(database, a, s) for a, s in followers]
                raise AssertionError(f"followers hold {held}, expected {expected} each") from None

        async def settled() -> bool:
            async with database.session() as session:
                repo = CopyIntentRepository(session)
                intents = [i for s in subscriptions for i in (await repo.list_for_subscription(s.id, limit=20)).items]
            return len(intents) == 6 and all(i.status is IntentStatus.FILLED for i in intents)

        await eventually(settled, "every copy to be filled")
        for (account, symbol), subscription in zip(followers, subscriptions, strict=True):
            async with database.session() as session:
                intents = (await CopyIntentRepository(session).list_for_subscription(subscription.id, limit=20)).items
            assert [(i.action, i.symbol, i.qty) for i in intents] == [
                (IntentAction.OPEN, symbol, D("0.20")),
                (IntentAction.REDUCE, symbol, D("0.10")),
                (IntentAction.CLOSE, symbol, D("0.10")),
            ], intents
            adapter = links.live(account.id).adapter
            venue_fills = (await adapter.fills_since(None)).fills
            ids = {i.client_order_id for i in intents}
            assert {f.client_order_id for f in venue_fills} == ids, "every fill at the venue is one of the copies"
            assert sum(f.qty for f in venue_fills if f.side is Side.BUY) == D("0.20")
            assert sum(f.qty for f in venue_fills if f.side is Side.SELL) == D("0.20")
            assert all(p.qty == 0 for p in await adapter.positions() if p.symbol == symbol)
    finally:
        await engine.stop()
