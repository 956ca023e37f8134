"""Copy trading strategies and subscriptions: ownership enforced by the database, owner-scoped reads,
one live subscription per strategy and account, versioned changes, and what deleting does.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import msgspec
import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from brokerlink.domain.copy import StrategyStatus, StrategyVisibility, SubscriptionStatus
from brokerlink.kit.errors import Conflict, InvalidInput, NotFound
from brokerlink.store.models import (
    AccountRow,
    CopyEventRow,
    CopyIntentRow,
    CopyLinkRow,
    CopySignalRow,
    StrategyRow,
    SubscriptionRow,
    UserRow,
)
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.copy_events import CopyEventRepository
from brokerlink.store.repositories.copy_intents import CopyIntentRepository
from brokerlink.store.repositories.copy_links import CopyLinkRepository
from brokerlink.store.repositories.copy_signals import CopySignalRepository
from brokerlink.store.repositories.strategies import StrategyRepository
from brokerlink.store.repositories.subscriptions import StaleVersion, SubscriptionRepository
from tests.store.copy_factories import event, intent, link, make_copying, signal, strategy, subscription
from tests.store.factories import NOW, make_account, make_user

LATER = NOW + timedelta(minutes=5)


async def test_strategy_round_trip_and_owner_scoping(session: AsyncSession) -> None:
    account = await make_account(session)
    repo = StrategyRepository(session)
    stg = strategy(account, min_follower_equity=Decimal("2500.50"))
    await repo.add(stg)
    session.expunge_all()  # read from the database, not the identity map
    stranger = await make_user(session)

    assert await repo.get_by_id(stg.id) == stg
    stored = await repo.get_for_user(account.user_id, stg.id)
    assert stored == stg
    assert stored is not None
    assert str(stored.min_follower_equity) == "2500.50"  # digit for digit, scale included
    assert await repo.get_for_user(stranger.id, stg.id) is None
    assert await repo.list_for_user(account.user_id) == [stg]
    assert await repo.list_for_user(stranger.id) == []


async def test_strategy_visibility(session: AsyncSession) -> None:
    account = await make_account(session)
    stranger = await make_user(session)
    repo = StrategyRepository(session)
    public = strategy(account, visibility=StrategyVisibility.PUBLIC)
    unlisted = strategy(account, visibility=StrategyVisibility.UNLISTED)
    private = strategy(account, visibility=StrategyVisibility.PRIVATE, min_follower_equity=None)
    closed = strategy(account, visibility=StrategyVisibility.PUBLIC, status=StrategyStatus.CLOSED)
    for stg in (public, unlisted, private, closed):
        await repo.add(stg)

    assert await repo.get_visible(stranger.id, public.id) == public
    assert await repo.get_visible(stranger.id, unlisted.id) == unlisted
    assert await repo.get_visible(stranger.id, private.id) is None  # as if it did not exist
    assert await repo.get_visible(account.user_id, private.id) == private
    # The directory lists only active public strategies.
    assert (await repo.list_public()).items == [public]


async def test_strategy_must_be_backed_by_the_providers_own_account(session: AsyncSession) -> None:
    someone_elses = await make_account(session)
    mallory = await make_user(session)
    with pytest.raises(IntegrityError):
        await StrategyRepository(session).add(strategy(someone_elses, provider_user_id=mallory.id))


async def test_strategy_name_is_unique_per_provider(session: AsyncSession) -> None:
    account, other = await make_account(session), await make_account(session)
    repo = StrategyRepository(session)
    await repo.add(strategy(account, name="Carry"))
    await repo.add(strategy(other, name="Carry"))  # another provider may use it
    with pytest.raises(IntegrityError):
        await repo.add(strategy(account, name="Carry"))


async def test_strategy_update_and_worker_reads(session: AsyncSession) -> None:
    account = await make_account(session)
    repo = StrategyRepository(session)
    first, second = strategy(account), strategy(account)
    await repo.add(first)
    await repo.add(second)
    assert await repo.list_active_for_account(account.id) == [first, second]

    closed = msgspec.structs.replace(first, status=StrategyStatus.CLOSED, description="", updated_at=LATER)
    await repo.update(closed)
    assert await repo.get_by_id(first.id) == closed
    assert await repo.list_active_for_account(account.id) == [second]

    with pytest.raises(NotFound):
        await repo.update(strategy(account))
    other = await make_account(session, user_id=account.user_id)
    with pytest.raises(ValueError, match="never change"):
        await repo.update(msgspec.structs.replace(second, account_id=other.id))


async def test_database_refuses_an_unknown_visibility(session: AsyncSession) -> None:
    account = await make_account(session)
    stg = strategy(account)
    await StrategyRepository(session).add(stg)
    row = await session.get(StrategyRow, stg.id)
    assert row is not None
    row.visibility = "secret"
    with pytest.raises(IntegrityError):
        await session.flush()


async def test_subscription_round_trip_and_owner_scoping(session: AsyncSession) -> None:
    copying = await make_copying(session, start_equity=Decimal("10000.0000"))
    sub = copying.subscription
    repo = SubscriptionRepository(session)
    session.expunge_all()

    assert await repo.get_by_id(sub.id) == sub
    assert await repo.get_for_user(copying.follower.user_id, sub.id) == sub
    # The provider does not see the follower's subscription through the follower's reads.
    assert await repo.get_for_user(copying.provider.user_id, sub.id) is None
    assert (await repo.list_for_user(copying.follower.user_id)).items == [sub]
    assert (await repo.list_for_user(copying.follower.user_id, strategy_id=sub.strategy_id)).items == [sub]
    assert (await repo.list_for_user(copying.provider.user_id)).items == []
    stored = await repo.get_by_id(sub.id)
    assert stored is not None
    assert (stored.version, str(stored.start_equity)) == (1, "10000.0000")
    assert stored.settings == sub.settings


async def test_subscription_on_someone_elses_account_is_refused(session: AsyncSession) -> None:
    copying = await make_copying(session)
    victim = await make_account(session)
    mallory = await make_user(session)
    sub = subscription(copying.strategy, victim, follower_user_id=mallory.id)
    with pytest.raises(IntegrityError):
        await SubscriptionRepository(session).add(sub)


async def test_an_account_cannot_follow_the_strategy_it_backs(session: AsyncSession) -> None:
    copying = await make_copying(session)
    with pytest.raises(InvalidInput):
        await SubscriptionRepository(session).add(subscription(copying.strategy, copying.provider))


async def test_one_live_subscription_per_strategy_and_account(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        copying = await make_copying(session)
        await session.commit()
    async with sessions() as session:
        with pytest.raises(IntegrityError):
            await SubscriptionRepository(session).add(subscription(copying.strategy, copying.follower))
        await session.rollback()
    async with sessions() as session:
        repo = SubscriptionRepository(session)
        # Paused or close-only still counts as live.
        await repo.set_status(copying.subscription.id, SubscriptionStatus.PAUSED, now=LATER)
        with pytest.raises(IntegrityError):
            await repo.add(subscription(copying.strategy, copying.follower))
        await session.rollback()
    async with sessions() as session:
        repo = SubscriptionRepository(session)
        await repo.set_status(copying.subscription.id, SubscriptionStatus.STOPPED, now=LATER)
        again = subscription(copying.strategy, copying.follower)
        await repo.add(again)  # the stopped one is history; a new one may start
        await repo.set_status(again.id, SubscriptionStatus.STOPPED, now=LATER)
        await repo.add(subscription(copying.strategy, copying.follower))  # several stopped ones are fine
        await session.commit()
        # Another account of the same follower may follow the same strategy at the same time.
        second_account = await make_account(session, user_id=copying.follower.user_id)
        await repo.add(subscription(copying.strategy, second_account))
        live = await repo.list_for_strategy(copying.strategy.id)
        assert len(live) == 2
        assert len(await repo.list_for_strategy(copying.strategy.id, SubscriptionStatus)) == 4


async def test_status_changes_follow_the_table_and_bump_the_version(session: AsyncSession) -> None:
    copying = await make_copying(session)
    repo = SubscriptionRepository(session)
    sub_id = copying.subscription.id

    paused = await repo.set_status(sub_id, SubscriptionStatus.PAUSED, now=LATER, expected_version=1)
    assert paused is not None
    assert (paused.status, paused.version, paused.updated_at) == (SubscriptionStatus.PAUSED, 2, LATER)
    same = await repo.set_status(sub_id, SubscriptionStatus.PAUSED, now=LATER + timedelta(seconds=1))
    assert same == paused  # no change, no new version
    close_only = await repo.set_status(sub_id, SubscriptionStatus.CLOSE_ONLY, now=LATER)
    assert close_only is not None
    assert close_only.version == 3
    assert [s.id for s in await repo.list_for_strategy(copying.strategy.id, [SubscriptionStatus.ACTIVE])] == []

    with pytest.raises(StaleVersion):
        await repo.set_status(sub_id, SubscriptionStatus.ACTIVE, now=LATER, expected_version=2)
    stopped = await repo.set_status(sub_id, SubscriptionStatus.STOPPED, now=LATER)
    assert stopped is not None
    assert (stopped.status, stopped.stopped_at, stopped.version) == (SubscriptionStatus.STOPPED, LATER, 4)
    assert await repo.set_status(sub_id, SubscriptionStatus.STOPPED, now=LATER) == stopped
    with pytest.raises(Conflict):
        await repo.set_status(sub_id, SubscriptionStatus.ACTIVE, now=LATER)
    with pytest.raises(Conflict):
        await repo.update_settings(sub_id, "{}", now=LATER)
    assert await repo.list_for_strategy(copying.strategy.id) == []
    assert await repo.set_status("sub_01ARZ3NDEKTSV4RRFFQ69G5FAV", SubscriptionStatus.PAUSED, now=LATER) is None


async def test_settings_and_start_equity_changes(session: AsyncSession) -> None:
    copying = await make_copying(session)
    repo = SubscriptionRepository(session)
    sub_id = copying.subscription.id

    changed = await repo.update_settings(sub_id, '{"sizing":{"mode":"fixed_qty","qty":"0.10"}}', now=LATER)
    assert changed is not None
    assert (changed.version, changed.settings) == (2, '{"sizing":{"mode":"fixed_qty","qty":"0.10"}}')
    assert await repo.update_settings(sub_id, changed.settings, now=LATER, expected_version=2) == changed
    with pytest.raises(StaleVersion):
        await repo.update_settings(sub_id, "{}", now=LATER, expected_version=1)

    with_equity = await repo.set_start_equity(sub_id, Decimal("5000.10"), now=LATER)
    assert with_equity is not None
    assert (with_equity.version, str(with_equity.start_equity)) == (3, "5000.10")
    rescaled = await repo.set_start_equity(sub_id, Decimal("5000.100"), now=LATER)
    assert rescaled is not None
    assert (rescaled.version, str(rescaled.start_equity)) == (4, "5000.100")  # the stored scale is the given one
    assert await repo.update_settings("sub_01ARZ3NDEKTSV4RRFFQ69G5FAV", "{}", now=LATER) is None
    assert await repo.get_by_id(sub_id) == rescaled


async def test_concurrent_changes_cannot_both_win(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        copying = await make_copying(session)
        await session.commit()
    sub_id = copying.subscription.id
    async with sessions() as first, sessions() as second:
        # Both read version 1; the first change commits, the second finds the version moved on.
        await SubscriptionRepository(second).get_by_id(sub_id)
        await SubscriptionRepository(first).update_settings(sub_id, '{"a":1}', now=LATER, expected_version=1)
        await first.commit()
        with pytest.raises(StaleVersion):
            await SubscriptionRepository(second).update_settings(sub_id, '{"b":2}', now=LATER, expected_version=1)


async def test_copy_history_blocks_deleting_its_accounts(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        copying = await make_copying(session)
        await session.commit()
    for account in (copying.provider, copying.follower):
        async with sessions() as session:
            with pytest.raises(IntegrityError):
                await session.execute(delete(AccountRow).where(AccountRow.id == account.id))
            await session.rollback()
        async with sessions() as session:
            with pytest.raises(IntegrityError):
                await session.execute(delete(UserRow).where(UserRow.id == account.user_id))
            await session.rollback()
    async with sessions() as session:
        assert await AccountRepository(session).get_by_id(copying.follower.id) == copying.follower


async def test_deleting_a_strategy_purges_its_copy_history(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        copying = await make_copying(session)
        sig = signal(copying.strategy)
        await CopySignalRepository(session).add_if_new(sig)
        lnk = link(copying.subscription)
        await CopyLinkRepository(session).add(lnk)
        cpi = intent(copying.subscription, sig.id, link_id=lnk.id)
        await CopyIntentRepository(session).add(cpi)
        await CopyEventRepository(session).add(event(copying.subscription, signal_id=sig.id, intent_id=cpi.id))
        await session.commit()
    async with sessions() as session:
        await session.execute(delete(StrategyRow).where(StrategyRow.id == copying.strategy.id))
        await session.commit()
    async with sessions() as session:
        for model in (SubscriptionRow, CopySignalRow, CopyLinkRow, CopyIntentRow, CopyEventRow):
            assert (await session.execute(select(func.count()).select_from(model))).scalar_one() == 0, model
        # The accounts themselves stay, and can now be deleted.
        await session.execute(delete(AccountRow).where(AccountRow.id == copying.follower.id))
        await session.commit()
