"""SECURITY.md 24: a copy order beyond the follower's mandate is never sent.

End to end through the sim venue on loopback: a follower whose settings deny a symbol and cap the
order size follows a provider who trades that symbol and sizes beyond the cap. The denied trade
reaches the follower's venue as nothing at all (a copy event with its reason instead), and the
capped one arrives clamped to the cap: the venue never sees more than the mandate allows.
"""

from __future__ import annotations

from decimal import Decimal

from brokerlink.bus.memory import MemoryEventBus
from brokerlink.domain.copy import CopyEventKind, StrategyVisibility
from brokerlink.domain.enums import Side
from brokerlink.engine.copy.manage import create_strategy, subscribe
from brokerlink.engine.copy.settings import CopySettings, SizingMode
from brokerlink.engine.links.orders import OrderTicket, place_order
from brokerlink.kit.clock import SystemClock
from brokerlink.store.db import Database
from brokerlink.store.repositories.copy_events import CopyEventRepository
from tests.contract.harness import SimHarness
from tests.engine.copy.test_engine_faults import _engine, _intents, _link, _venue_fills, eventually, venue  # noqa: F401
from tests.links_fixtures import LinksFactory

D = Decimal
MANDATE = CopySettings(
    sizing=SizingMode.MULTIPLIER, multiplier=D(2), max_qty_per_order=D("0.30"), deny_symbols=("GBP/USD",)
)


async def test_security24_a_copy_beyond_the_followers_mandate_is_never_sent(
    make_links: LinksFactory,
    database: Database,
    bus: MemoryEventBus,
    venue: SimHarness,  # noqa: F811
) -> None:
    links = make_links()
    provider = await _link(links, database, venue, 0)
    follower = await _link(links, database, venue, 1)
    now = SystemClock().now()
    async with database.session() as session:
        strategy = await create_strategy(
            session, provider_user_id=provider.user_id, account_id=provider.id, name="Mandate",
            visibility=StrategyVisibility.PUBLIC, now=now,
        )  # fmt: skip
        subscription = await subscribe(
            session, follower_user_id=follower.user_id, strategy_id=strategy.id, account_id=follower.id,
            settings=MANDATE, now=now,
        )  # fmt: skip
        await session.commit()
    engine = _engine(database, bus, links)
    await engine.start()
    try:
        await place_order(links, provider.id, OrderTicket(symbol="GBP/USD", side=Side.BUY, qty=D("0.10")))  # denied

        async def skipped() -> bool:
            async with database.session() as session:
                events = (await CopyEventRepository(session).list_for_subscription(subscription.id)).items
            return any(e.kind is CopyEventKind.SKIPPED for e in events)

        await eventually(skipped, "the denied symbol's copy to be skipped")
        await place_order(links, provider.id, OrderTicket(symbol="EUR/USD", side=Side.BUY, qty=D("0.40")))  # 2x = 0.80

        async def capped() -> bool:
            intents = await _intents(database, subscription.id)
            return bool(intents) and intents[-1].status.value == "filled"

        await eventually(capped, "the capped copy to be filled")
        intents = await _intents(database, subscription.id)
        assert [(i.symbol, i.qty) for i in intents] == [("EUR/USD", D("0.30"))], "no intent for the denied symbol"
        fills = await _venue_fills(links, follower.id)
        assert {f.symbol for f in fills} == {"EUR/USD"}, "nothing in the denied symbol reached the venue"
        assert sum(f.qty for f in fills) == D("0.30"), "the venue saw no more than the cap"
        async with database.session() as session:
            events = (await CopyEventRepository(session).list_for_subscription(subscription.id)).items
        assert any(e.kind is CopyEventKind.SKIPPED and e.reason == "symbol_denied" for e in events), events
    finally:
        await engine.stop()
