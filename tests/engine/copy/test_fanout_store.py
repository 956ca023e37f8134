"""The fan-out store (ADR 0029) on both databases: what it writes, the usual repositories read back
equal (decimals with their scale, times in UTC), what it reads agrees with them, and it refuses to
write outside the transaction its first write began."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy.exc import IntegrityError

from brokerlink.domain.copy import LinkStatus, SubscriptionStatus
from brokerlink.domain.enums import Side
from brokerlink.domain.models import Balance
from brokerlink.kit.ids import new_ids
from brokerlink.store.db import Database
from brokerlink.store.repositories.copy_events import CopyEventRepository
from brokerlink.store.repositories.copy_fanout import FanoutStore
from brokerlink.store.repositories.copy_intents import CopyIntentRepository
from brokerlink.store.repositories.copy_links import CopyLinkRepository
from brokerlink.store.repositories.copy_signals import CopySignalRepository
from brokerlink.store.repositories.orders import OrderRepository
from brokerlink.store.repositories.positions import BalanceRepository
from brokerlink.store.repositories.strategies import StrategyPositionRepository, StrategyRepository
from brokerlink.store.repositories.subscriptions import SubscriptionRepository
from tests.store import copy_factories as f
from tests.store.factories import NOW, make_account, make_order

D = Decimal


async def test_a_fanout_written_by_the_store_reads_back_equal_through_the_repositories(  # noqa: PLR0915
    store: Database,
) -> None:
    later = NOW + timedelta(seconds=1, microseconds=250)
    async with store.session() as session:
        copying = await f.make_copying(session)
        stopped_follower = await make_account(session)
        stopped = f.subscription(copying.strategy, stopped_follower, status=SubscriptionStatus.STOPPED)
        await SubscriptionRepository(session).add(stopped)
        sub = copying.subscription
        await BalanceRepository(session).upsert(
            Balance(
                account_id=copying.follower.id,
                currency="USD",
                cash=D("5000.50"),
                equity=D("5100.25"),
                buying_power=D("5000.50"),
                ts=NOW,
            )
        )
        old = f.link(sub, "EUR/USD", qty=D("0.30"))
        await CopyLinkRepository(session).add(old)
        await session.commit()

    strategy = copying.strategy
    async with store.session() as session:
        fanout = FanoutStore(session)
        assert await fanout.claim(strategy.id, "fil_1", now=later)
        assert await fanout.strategy_position(strategy.id, "EUR/USD") == 0
        await fanout.set_strategy_position(strategy.id, "EUR/USD", D("-0.10"), now=later)
        assert await fanout.strategy_position(strategy.id, "EUR/USD") == D("-0.10")
        [entry] = await fanout.roster(strategy.id, "EUR/USD")  # the stopped subscription is left out
        assert (entry.subscription_id, entry.version, entry.account_id, entry.equity) == (
            sub.id, sub.version, copying.follower.id, D("5100.25"),
        )  # fmt: skip
        assert entry.link == old
        assert (await fanout.roster(strategy.id, "GBP/USD"))[0].link is None
        assert await fanout.subscriptions(strategy.id) == [sub]
        assert await fanout.equity(copying.follower.id) == D("5100.25")
        assert await fanout.equity(copying.provider.id) is None
        assert await fanout.paused_symbols(strategy.id) == {}

        signal = f.signal(strategy, price=D("1.08500"), venue_ts=NOW, received_at=later, created_at=later)
        assert await fanout.add_signal(signal)
        assert not await fanout.add_signal(f.signal(strategy, trade_id=signal.provider_trade_id))  # seen before
        link_id, = new_ids("lnk", 1)  # fmt: skip
        await fanout.move_links([(old.id, D(0), True)], now=later)
        new_link = f.link(sub, "EUR/USD", id=link_id, side=Side.SELL, qty=D("0.10"), opened_at=later, updated_at=later)
        await fanout.add_links([new_link])
        order = make_order(copying.follower.id, "cp-1", qty=D("0.10"), limit_price=None, created_at=later,
                           updated_at=later)  # fmt: skip
        await fanout.add_orders([order])
        intent = f.intent(sub, signal.id, "cp-1", link_id=link_id, qty=D("0.10"), limit_price=D("1.08600"),
                          created_at=later, updated_at=later)  # fmt: skip
        await fanout.add_intents([intent])
        event = f.event(sub, signal_id=signal.id, created_at=later)
        await fanout.add_events([event])
        await session.commit()

    async with store.session() as session:
        assert await StrategyRepository(session).get_by_id(strategy.id) is not None
        assert (await StrategyRepository(session).get_by_id(strategy.id)).fill_cursor == "fil_1"  # type: ignore[union-attr]
        assert await StrategyPositionRepository(session).get(strategy.id, "EUR/USD") == D("-0.10")
        assert await CopySignalRepository(session).get_by_id(signal.id) == signal
        closed = await CopyLinkRepository(session).get_by_id(old.id)
        assert closed is not None
        assert (closed.status, closed.qty, closed.closed_at, closed.updated_at) == (LinkStatus.CLOSED, 0, later, later)
        assert await CopyLinkRepository(session).get_by_id(link_id) == new_link
        assert await OrderRepository(session).get_by_id(order.id) == order
        assert await CopyIntentRepository(session).get_by_id(intent.id) == intent
        assert (await CopyEventRepository(session).list_for_subscription(sub.id)).items == [event]


async def test_the_store_writes_in_one_transaction_all_or_none(store: Database) -> None:
    async with store.session() as session:
        copying = await f.make_copying(session)
        await session.commit()
    strategy, sub = copying.strategy, copying.subscription

    async with store.session() as session:
        fanout = FanoutStore(session)
        if fanout.sqlite:  # before claim() there is no transaction to join: a driver write would commit alone
            with pytest.raises(RuntimeError, match="claim"):
                await fanout.add_events([f.event(sub)])
        await fanout.claim(strategy.id, "fil_9", now=NOW)
        signal = f.signal(strategy)
        assert await fanout.add_signal(signal)
        twice = f.intent(sub, signal.id, "cp-same")
        with pytest.raises(IntegrityError):  # the second intent reuses a client order id
            await fanout.add_intents([twice, f.intent(sub, signal.id, "cp-same")])
        await session.rollback()

    async with store.session() as session:
        assert await CopySignalRepository(session).get_by_id(signal.id) is None
        assert (await StrategyRepository(session).get_by_id(strategy.id)).fill_cursor is None  # type: ignore[union-attr]
        assert await CopyIntentRepository(session).get_by_id(twice.id) is None
