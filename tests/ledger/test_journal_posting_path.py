"""The posting path's single pre-write read and JSON-parameter writes, on SQLite and PostgreSQL.

``post_many`` reads the idempotency keys and the accounts (owners; on SQLite the running totals) in
one statement, and writes the running totals in one statement, with the lists passed as JSON text.
These tests pin what that must not change: replays detected through the combined read, nothing
written when any check fails (including the accounts a failing batch would have opened), exact
running totals, keys of any characters, batches past the old IN-list chunk size, and content
hashes identical to the ones already stored by earlier versions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from brokerlink.kit.errors import Conflict
from brokerlink.ledger import chart, journal
from brokerlink.ledger.journal import EXACT, Entry, IdempotencyConflict, Leg
from brokerlink.store.models_ledger import JournalEntryRow, LedgerAccountRow, LedgerBalanceRow, PostingRow
from brokerlink.store.repositories.ledger import LedgerRepository, _stored_text
from brokerlink.store.types import DecimalType
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
USER = "usr_01jpath"
CASH = chart.cash("acc_01jpath")
PNL = chart.realized_pnl("acc_01jpath")
FEES = chart.commissions("acc_01jpath")


@pytest.fixture
async def db(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:  # noqa: F811 - the imported fixture
    async with sessions() as session:
        yield session


def leg(account: str, currency: str = "USD", *, dr: str = "0", cr: str = "0", owner: str | None = USER) -> Leg:
    return Leg(account=account, currency=currency, debit=D(dr), credit=D(cr), owner_id=owner)


def entry(key: str, *legs: Leg, at: datetime = T0) -> Entry:
    return Entry(
        idempotency_key=key, correlation_id=f"corr-{key}", kind="test", description=key, occurred_at=at, legs=legs
    )


def pnl(key: str, amount: str, *, currency: str = "USD", at: datetime = T0) -> Entry:
    return entry(key, leg(CASH, currency, dr=amount), leg(PNL, currency, cr=amount), at=at)


async def count(db: AsyncSession, model: type[object]) -> int:
    return int((await db.execute(select(func.count()).select_from(model))).scalar_one())


async def stored_hash(db: AsyncSession, entry_id: str) -> str:
    return str((await db.execute(select(JournalEntryRow.content_hash).where(JournalEntryRow.id == entry_id))).scalar())


async def test_replays_in_a_mixed_batch_are_detected_by_the_combined_read(db: AsyncSession) -> None:
    first = await journal.post_many(db, [pnl("a", "10.00"), pnl("b", "2.50", currency="EUR")], now=NOW)
    await db.commit()

    # Two replays (one written with another scale: the same content), one new entry.
    again = await journal.post_many(
        db, [pnl("a", "10.0"), pnl("c", "1.25"), pnl("b", "2.5", currency="EUR")], now=NOW + timedelta(hours=1)
    )
    await db.commit()
    assert again[0] == first[0]
    assert again[2] == first[1]
    assert again[1] not in first
    assert await count(db, JournalEntryRow) == 3
    assert await count(db, PostingRow) == 6
    assert await journal.balance(db, CASH, "USD") == D("11.25")
    assert await journal.balance(db, CASH, "EUR") == D("2.50")

    # The whole batch again: nothing written, the same ids.
    replay = [pnl("a", "10"), pnl("c", "1.25"), pnl("b", "2.50", currency="EUR")]
    assert await journal.post_many(db, replay, now=NOW) == [first[0], again[1], first[1]]
    assert await count(db, JournalEntryRow) == 3
    assert await journal.balance(db, CASH, "USD") == D("11.25")


async def test_a_conflict_anywhere_in_the_batch_writes_nothing_not_even_new_accounts(db: AsyncSession) -> None:
    await journal.post(db, pnl("a", "10.00"), now=NOW)
    await db.commit()
    fresh = chart.cash("acc_01jfresh")
    new = entry("n", leg(fresh, dr="5"), leg(PNL, cr="5"))
    with pytest.raises(IdempotencyConflict):
        await journal.post_many(db, [new, pnl("a", "10.01")], now=NOW)
    assert await count(db, JournalEntryRow) == 1
    assert await count(db, PostingRow) == 2
    assert (await db.execute(select(LedgerAccountRow).where(LedgerAccountRow.code == fresh))).first() is None
    assert await journal.balance(db, CASH, "USD") == D("10.00")


async def test_an_owner_conflict_on_an_existing_account_is_refused_before_any_write(db: AsyncSession) -> None:
    await journal.post(db, pnl("a", "1"), now=NOW)
    await db.commit()
    fresh = chart.fees_payable("usr_01jfresh")
    stranger = entry("s", leg(fresh, cr="1", owner="usr_01jfresh"), leg(CASH, dr="1", owner="usr_01jother"))
    with pytest.raises(Conflict):
        await journal.post(db, stranger, now=NOW)
    assert (await db.execute(select(LedgerAccountRow).where(LedgerAccountRow.code == fresh))).first() is None
    assert await count(db, JournalEntryRow) == 1


async def test_keys_of_any_characters_round_trip_through_the_json_parameters(db: AsyncSession) -> None:
    keys = ['fill:"quoted",{brace}', "fill:back\\slash", "fill:ünïcødé-€", "fill:'single'; DROP TABLE x", "fill:[1,2]"]
    ids = await journal.post_many(db, [pnl(k, "1") for k in keys], now=NOW)
    await db.commit()
    assert await journal.post_many(db, [pnl(k, "1") for k in reversed(keys)], now=NOW) == list(reversed(ids))
    with pytest.raises(IdempotencyConflict):
        await journal.post(db, pnl(keys[0], "2"), now=NOW)
    assert await count(db, JournalEntryRow) == len(keys)


async def test_running_totals_stay_exact_and_equal_to_the_postings(db: AsyncSession) -> None:
    amounts = ["0.1000000000000000000000000000001", "1E+2", "1.50", "0.000000000000000000000000000000000000001", "7"]
    batch = [
        entry(f"x{i}{cur}", leg(FEES, cur, dr=a), leg(CASH, cur, cr=a), at=T0 + timedelta(minutes=i))
        for i, a in enumerate(amounts)
        for cur in ("USD", "EUR")
    ]
    await journal.post_many(db, batch[:4], now=NOW)
    await db.commit()
    await journal.post_many(db, batch[4:], now=NOW)
    await db.commit()
    with localcontext(EXACT):
        expected = sum((D(a) for a in amounts), D(0))
    assert await journal.balance(db, FEES, "USD") == expected
    assert await journal.balance(db, FEES, "EUR") == expected
    running = {(b.account, b.currency): (b.debits, b.credits) for b in await journal.balances(db)}
    from_postings = {(b.account, b.currency): (b.debits, b.credits) for b in await journal.balances(db, at=NOW)}
    assert running == from_postings
    assert await journal.trial_balance(db) == {"EUR": D(0), "USD": D(0)}
    stamps = (await db.execute(select(LedgerBalanceRow.updated_at).where(LedgerBalanceRow.account == FEES))).scalars()
    assert set(stamps) == {NOW}


async def test_a_batch_past_the_old_in_list_chunk_is_one_read_and_one_upsert(db: AsyncSession) -> None:
    accounts = [f"acc_01jbig{i:03d}" for i in range(260)]  # 520 codes, 600 keys: past the 500 of an IN chunk
    batch = [
        entry(
            f"big{i}",
            leg(chart.cash(accounts[i % 260]), dr="1.01"),
            leg(chart.realized_pnl(accounts[i % 260]), cr="1.01"),
            at=T0 + timedelta(seconds=i),
        )
        for i in range(600)
    ]
    ids = await journal.post_many(db, batch, now=NOW)
    await db.commit()
    assert len(set(ids)) == 600
    assert await count(db, LedgerAccountRow) == 520
    assert await count(db, LedgerBalanceRow) == 520
    assert await journal.post_many(db, batch, now=NOW) == ids
    keys, codes = [e.idempotency_key for e in batch], [chart.cash(a) for a in accounts]
    known, state = await LedgerRepository(db).posting_state(keys, codes)
    assert set(known) == set(keys)
    assert set(state) == set(codes)
    assert all(owner == USER for owner, _ in state.values())
    assert await journal.balance(db, chart.cash(accounts[0]), "USD") == D("3.03")  # 600 / 260: 3 entries each for 0-79


async def test_stored_hashes_are_the_public_content_hash(db: AsyncSession) -> None:
    odd = entry("h", leg(CASH, dr="1E+2"), leg(PNL, cr="100.000"), leg(FEES, dr="0.10"), leg(CASH, cr="0.1"))
    entry_id = await journal.post(db, odd, now=NOW)
    await db.commit()
    assert await stored_hash(db, entry_id) == journal.content_hash(odd)
    reversal = await journal.reverse(db, entry_id, idempotency_key="rev:h", reason="undo", now=NOW)
    await db.commit()
    shown = await journal.get_entry(db, reversal)
    mirrored = Entry(
        idempotency_key="rev:h",
        correlation_id=shown.correlation_id,
        kind=shown.kind,
        description=shown.description,
        occurred_at=shown.occurred_at,
        legs=shown.legs,
    )
    assert await stored_hash(db, reversal) == journal.content_hash(mirrored, entry_id)


def test_the_content_hash_is_the_one_earlier_versions_stored() -> None:
    """Pinned: entries posted before this version replay against these digests (computed by the
    previous implementation); a change here would turn every replay into an IdempotencyConflict."""
    pinned = Entry(
        idempotency_key="fill:pinned",
        correlation_id="ord-1",
        kind="fill",
        description='pinned ü "q"',
        occurred_at=datetime(2026, 11, 2, 9, 0, tzinfo=UTC),
        legs=(
            Leg(account="assets:cash:acc_1", currency="USD", debit=D("1.50"), owner_id="usr_1"),
            Leg(account="income:trading:acc_1", currency="USD", credit=D("1.5"), owner_id="usr_1"),
            Leg(account="assets:cash:acc_1", currency="EUR", debit=D("1E+2"), owner_id="usr_1"),
            Leg(account="income:platform:volume", currency="EUR", credit=D("100.000")),
        ),
    )
    assert journal.content_hash(pinned) == "75dd948460176662d0b0c5faf41232681bf346486e967d4e53b84619c705267c"
    assert journal.content_hash(pinned, "jen_x") == "90459fe2a2f89a543d0b95453f389fcccee9419c7cbfd309ea45ef5fc53aedde"
    with localcontext(EXACT):
        assert journal._checked_hash(pinned, None) == journal.content_hash(pinned)


amounts = st.decimals(allow_nan=False, allow_infinity=False, min_value=D(0), max_value=D(10) ** 30, places=None)


@given(st.lists(amounts.filter(bool), min_size=1, max_size=6))
def test_the_posting_path_hashes_exactly_as_content_hash(values: list[Decimal]) -> None:
    legs = [Leg(account=CASH, currency="USD", debit=v, owner_id=USER) for v in values]
    with localcontext(EXACT):
        total = sum(values, D(0))
    legs.append(Leg(account=PNL, currency="USD", credit=total, owner_id=USER))
    one = entry("p", *legs)
    with localcontext(EXACT):
        assert journal._checked_hash(one, "jen_r") == journal.content_hash(one, "jen_r")


@given(
    st.decimals(allow_nan=False, allow_infinity=False) | st.sampled_from([D("-0"), D("-0.00"), D("0E+3"), D("5E+7")])
)
def test_stored_text_is_what_decimal_type_stores_on_sqlite(value: Decimal) -> None:
    dialect = sqlite.dialect()
    assert _stored_text(value, dialect) == DecimalType().process_bind_param(value, dialect)
