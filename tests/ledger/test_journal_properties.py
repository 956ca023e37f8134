"""Property tests: any sequence of fills, fees and transfers keeps the books balanced, reversals
restore, and replaying the same events with the same keys changes nothing (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from brokerlink.domain.enums import Side
from brokerlink.domain.models import Fill
from brokerlink.ledger import chart, journal
from brokerlink.ledger.journal import Entry, Leg
from brokerlink.ledger.postings import AccountBook, apply_fill, capital_entry
from brokerlink.store.models_ledger import JournalEntryRow, PostingRow
from tests.store.conftest import (  # noqa: F401 - the storage contract fixtures, on both backends
    _drop_databases_at_exit,
    database_url,
    engine,
    server_url,
    sessions,
)

D = Decimal
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
ACCOUNTS = ("acc_01a", "acc_01b")
USERS = {"acc_01a": "usr_01a", "acc_01b": "usr_01b"}

amounts = st.decimals(min_value=D("0.01"), max_value=D(10_000), places=2)
qtys = st.decimals(min_value=D("0.001"), max_value=D(50), places=3)
prices = st.decimals(min_value=D("0.5"), max_value=D(200), places=4)

fill_event = st.tuples(st.just("fill"), st.sampled_from(ACCOUNTS), st.sampled_from(list(Side)), qtys, prices, amounts)
fee_event = st.tuples(st.just("fee"), st.sampled_from(ACCOUNTS), st.sampled_from(["performance", "volume"]), amounts)
transfer_event = st.tuples(st.just("transfer"), st.sampled_from(ACCOUNTS), amounts, st.booleans())
events = st.lists(st.one_of(fill_event, fee_event, transfer_event), min_size=1, max_size=25)


def entries_of(scenario: list[tuple[object, ...]]) -> list[Entry]:
    """Turn a scenario into entries the way the posters do: fills through an account book
    (margin and cash settlement), fee accruals and settlements, deposits and withdrawals."""
    books = {
        a: AccountBook(
            account_id=a, owner_id=USERS[a], currency="USD", settlement="margin" if a.endswith("a") else "cash"
        )
        for a in ACCOUNTS
    }
    result: list[Entry] = []
    for i, event in enumerate(scenario):
        at = T0 + timedelta(minutes=i)
        kind, account = event[0], str(event[1])
        owner = USERS[account]
        if kind == "fill":
            side, qty, price, fee = cast("tuple[Side, Decimal, Decimal, Decimal]", event[2:6])
            fill = Fill(
                trade_id=f"t{i}",
                order_id=None,
                client_order_id=None,
                account_id=account,
                symbol="XYZ/USD",
                side=side,
                qty=qty,
                price=price,
                fee=fee,
                fee_currency="USD",
                ts=at,
            )
            made = apply_fill(books[account], f"fil_{i:04d}", fill, None)
            if made is not None:
                result.append(made)
        elif kind == "fee":
            fee_kind, amount = str(event[2]), cast("Decimal", event[3])
            provider = "usr_provider"
            share = (amount * D("0.2")).quantize(D("0.01"))  # the platform's share; may round to zero
            legs = (
                Leg(account=chart.fee_expense(owner, fee_kind), currency="USD", debit=amount, owner_id=owner),
                Leg(account=chart.cash(account), currency="USD", credit=amount, owner_id=owner),
                Leg(account=chart.fees_receivable(provider), currency="USD", debit=amount - share, owner_id=provider),
                Leg(
                    account=chart.fee_income(provider, fee_kind),
                    currency="USD",
                    credit=amount - share,
                    owner_id=provider,
                ),
                Leg(account="assets:fees-receivable:platform", currency="USD", debit=share),
                Leg(account=chart.platform_fee_income(fee_kind), currency="USD", credit=share),
            )
            result.append(
                Entry(
                    idempotency_key=f"fee:{i}",
                    correlation_id=f"fee:{i}",
                    kind="fee",
                    description="fee accrual and settlement",
                    occurred_at=at,
                    legs=tuple(leg for leg in legs if leg.debit or leg.credit),
                )
            )
        else:
            amount = cast("Decimal", event[2])
            signed = amount if event[3] else -amount
            result.append(capital_entry(account, owner, "USD", signed, reference=f"ref{i}", occurred_at=at))
    return result


async def _snapshot(session: AsyncSession) -> tuple[dict[tuple[str, str], Decimal], int, int]:
    balances = {(b.account, b.currency): b.balance for b in await journal.balances(session)}
    entries = int((await session.execute(select(func.count()).select_from(JournalEntryRow))).scalar_one())
    postings = int((await session.execute(select(func.count()).select_from(PostingRow))).scalar_one())
    return balances, entries, postings


async def _reset(session: AsyncSession) -> None:
    # The journal refuses DELETE; each example works in a transaction that is rolled back instead.
    await session.rollback()


@pytest.fixture
def makers(sessions: async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:  # noqa: F811 - the imported fixture
    return sessions


PROPERTY = settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(scenario=events)
async def test_every_entry_balances_and_the_trial_balance_is_zero(
    makers: async_sessionmaker[AsyncSession], scenario: list[tuple[object, ...]]
) -> None:
    made = entries_of(scenario)
    for item in made:
        journal.validate(item)  # raises if any entry is unbalanced
    async with makers() as session:
        await journal.post_many(session, made, now=NOW)
        trial = await journal.trial_balance(session)
        assert all(v == 0 for v in trial.values())
        assert all(v == 0 for v in (await journal.trial_balance(session, at=T0 + timedelta(minutes=10))).values())
        # The running totals equal the sums of the postings.
        running = {(b.account, b.currency): b.balance for b in await journal.balances(session)}
        summed = {(b.account, b.currency): b.balance for b in await journal.balances(session, at=NOW)}
        assert running == summed
        await _reset(session)


@PROPERTY
@given(scenario=events, data=st.data())
async def test_a_reversal_restores_the_balances_exactly(
    makers: async_sessionmaker[AsyncSession], scenario: list[tuple[object, ...]], data: st.DataObject
) -> None:
    made = entries_of(scenario)
    async with makers() as session:
        ids = await journal.post_many(session, made, now=NOW)
        if ids:
            before, _, _ = await _snapshot(session)
            target = data.draw(st.sampled_from(range(len(ids))))
            extra = made[target]
            # Post something more, then reverse it: everything is back where it was.
            again = Entry(
                idempotency_key="extra",
                correlation_id="extra",
                kind="extra",
                description="to be reversed",
                occurred_at=NOW,
                legs=extra.legs,
            )
            extra_id = await journal.post(session, again, now=NOW)
            await journal.reverse(session, extra_id, idempotency_key="rev:extra", reason="undo", now=NOW)
            after, _, _ = await _snapshot(session)
            assert {k: v for k, v in after.items() if v} == {k: v for k, v in before.items() if v}
        await _reset(session)


@PROPERTY
@given(scenario=events)
async def test_replaying_with_the_same_keys_changes_nothing(
    makers: async_sessionmaker[AsyncSession], scenario: list[tuple[object, ...]]
) -> None:
    async with makers() as session:
        first = await journal.post_many(session, entries_of(scenario), now=NOW)
        state = await _snapshot(session)
        # Replayed from scratch, as a restarted poster would: the books are rebuilt and posted again.
        replay = await journal.post_many(session, entries_of(scenario), now=NOW + timedelta(days=1))
        assert replay == first
        assert await _snapshot(session) == state
        await _reset(session)
