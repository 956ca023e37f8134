"""The journal on SQLite and PostgreSQL: balanced, immutable, idempotent, and balances at any time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from brokerlink.kit.errors import Conflict, NotFound
from brokerlink.ledger import chart, journal
from brokerlink.ledger.journal import Entry, IdempotencyConflict, InvalidEntry, Leg, UnbalancedEntry
from brokerlink.store.models_ledger import JournalEntryRow, LedgerAccountRow, LedgerBalanceRow, PostingRow
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
ACC = "acc_01JTESTACCOUNT0000000000000"
USER = "usr_01JTESTUSER000000000000000"
CASH = chart.cash(ACC)
OPENING = chart.opening_balance(ACC)
FEES = chart.commissions(ACC)
PNL = chart.realized_pnl(ACC)


@pytest.fixture
def makers(sessions: async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:  # noqa: F811 - the imported fixture
    return sessions


@pytest.fixture
async def db(makers: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One session on the test's backend; whatever the test did not commit is rolled back."""
    async with makers() as db:
        yield db


def leg(account: str, currency: str = "USD", *, dr: str = "0", cr: str = "0") -> Leg:
    return Leg(account=account, currency=currency, debit=D(dr), credit=D(cr), owner_id=USER)


def entry(key: str, *legs: Leg, at: datetime = T0, description: str = "test") -> Entry:
    return Entry(
        idempotency_key=key,
        correlation_id=f"corr-{key}",
        kind="test",
        description=description,
        occurred_at=at,
        legs=legs,
    )


def deposit(key: str, amount: str, *, at: datetime = T0, currency: str = "USD") -> Entry:
    return entry(key, leg(CASH, currency, dr=amount), leg(OPENING, currency, cr=amount), at=at)


async def count(db: AsyncSession, model: type[object]) -> int:
    return int((await db.execute(select(func.count()).select_from(model))).scalar_one())


# --- the chart ------------------------------------------------------------------------------------


def test_builders_make_valid_codes_of_the_right_type() -> None:
    assert chart.cash("acc_01ABC") == "assets:cash:acc_01abc"
    assert chart.validate_code(chart.fees_payable("usr_01X")) == "liabilities"
    assert chart.validate_code(chart.fee_income("usr_01X", "performance")) == "income"
    assert chart.validate_code(chart.platform_fee_income("volume")) == "income"
    assert chart.validate_code(chart.owner_capital("acc_1")) == "equity"
    assert chart.validate_code(chart.fee_expense("usr_1", "management")) == "expenses"
    assert chart.validate_code(chart.fees_receivable("usr_1")) == "assets"


@pytest.mark.parametrize(
    "code",
    ["assets", "cash:acc_1", "Assets:cash", "assets::x", "assets:Cash", "assets:ca sh", "assets:x:", "a" * 201, ""],
)
def test_invalid_codes_are_refused(code: str) -> None:
    with pytest.raises(chart.InvalidAccountCode) as refused:
        chart.validate_code(code)
    assert refused.value.status == 422


def test_unknown_fee_kind_is_refused() -> None:
    with pytest.raises(chart.InvalidAccountCode):
        chart.fee_income("usr_1", "kickback")


# --- posting ----------------------------------------------------------------------------------------


async def test_post_writes_entry_postings_and_balances(db: AsyncSession) -> None:
    entry_id = await journal.post(db, deposit("d1", "1000.00"), now=NOW)
    await journal.post(db, entry("f1", leg(FEES, dr="2.50"), leg(CASH, cr="2.50"), at=T0 + timedelta(hours=1)), now=NOW)
    await db.commit()

    assert entry_id.startswith("jen_")
    assert await journal.balance(db, CASH, "USD") == D("997.50")
    assert await journal.balance(db, OPENING, "USD") == D("1000.00")  # credit-normal: positive
    assert await journal.balance(db, FEES, "USD") == D("2.50")
    assert await count(db, PostingRow) == 4
    assert await journal.trial_balance(db) == {"USD": D(0)}
    shown = await journal.get_entry(db, entry_id)
    assert [(lg.account, lg.debit, lg.credit) for lg in shown.legs] == [
        (CASH, D("1000.00"), D(0)),
        (OPENING, D(0), D("1000.00")),
    ]


async def test_balance_is_per_currency(db: AsyncSession) -> None:
    await journal.post(
        db,
        entry(
            "multi",
            leg(CASH, "USD", dr="100"),
            leg(OPENING, "USD", cr="100"),
            leg(CASH, "EUR", dr="50"),
            leg(OPENING, "EUR", cr="50"),
        ),
        now=NOW,
    )
    assert await journal.balance(db, CASH, "USD") == D(100)
    assert await journal.balance(db, CASH, "EUR") == D(50)
    assert await journal.balance(db, CASH, "JPY") == D(0)
    assert await journal.trial_balance(db) == {"EUR": D(0), "USD": D(0)}


async def test_unbalanced_entry_is_refused_and_nothing_is_written(db: AsyncSession) -> None:
    good = deposit("ok", "10")
    # Balanced in total but not per currency: 100 USD against 100 EUR is no exchange rate.
    cross = entry("cross", leg(CASH, "USD", dr="100"), leg(OPENING, "EUR", cr="100"))
    with pytest.raises(UnbalancedEntry) as refused:
        await journal.post_many(db, [good, cross], now=NOW)
    assert refused.value.status == 422
    assert refused.value.extra["imbalance"] == {"USD": "100", "EUR": "-100"}
    with pytest.raises(UnbalancedEntry):
        await journal.post(db, entry("short", leg(CASH, dr="100"), leg(OPENING, cr="99.99")), now=NOW)
    for model in (JournalEntryRow, PostingRow, LedgerAccountRow, LedgerBalanceRow):
        assert await count(db, model) == 0


@pytest.mark.parametrize(
    "legs",
    [
        (),
        (Leg(account=CASH, currency="USD", debit=D(-5)), Leg(account=OPENING, currency="USD", credit=D(-5))),
        (Leg(account=CASH, currency="USD", debit=D(5), credit=D(5)), Leg(account=OPENING, currency="USD")),
        (Leg(account=CASH, currency="USD", debit=D("NaN")), Leg(account=OPENING, currency="USD", credit=D(1))),
        (Leg(account="assets:Cash", currency="USD", debit=D(1)), Leg(account=OPENING, currency="USD", credit=D(1))),
        (Leg(account="wealth:cash", currency="USD", debit=D(1)), Leg(account=OPENING, currency="USD", credit=D(1))),
    ],
)
async def test_invalid_legs_are_refused(db: AsyncSession, legs: tuple[Leg, ...]) -> None:
    with pytest.raises((InvalidEntry, chart.InvalidAccountCode)) as refused:
        await journal.post(db, entry("bad", *legs), now=NOW)
    assert refused.value.status == 422
    assert await count(db, JournalEntryRow) == 0


async def test_naive_time_is_refused(db: AsyncSession) -> None:
    with pytest.raises(InvalidEntry):
        await journal.post(db, deposit("naive", "1", at=datetime(2026, 1, 1)), now=NOW)  # noqa: DTZ001


async def test_replay_with_same_key_and_content_changes_nothing(db: AsyncSession) -> None:
    first = await journal.post(db, deposit("d1", "1000.00"), now=NOW)
    await db.commit()
    # Same amount written with another scale is the same content.
    again = await journal.post_many(db, [deposit("d1", "1000.0"), deposit("d1", "1000")], now=NOW)
    await db.commit()
    assert again == [first, first]
    assert await count(db, JournalEntryRow) == 1
    assert await count(db, PostingRow) == 2
    assert await journal.balance(db, CASH, "USD") == D("1000.00")


async def test_same_key_different_content_is_a_conflict(db: AsyncSession) -> None:
    first = await journal.post(db, deposit("d1", "1000.00"), now=NOW)
    await db.commit()
    with pytest.raises(IdempotencyConflict) as conflict:
        await journal.post(db, deposit("d1", "1000.01"), now=NOW)
    assert conflict.value.status == 409
    assert conflict.value.extra["entry_id"] == first
    with pytest.raises(IdempotencyConflict):  # inside one batch too
        await journal.post_many(db, [deposit("d2", "1"), deposit("d2", "2")], now=NOW)
    assert await journal.balance(db, CASH, "USD") == D("1000.00")


async def test_an_account_keeps_its_owner(db: AsyncSession) -> None:
    await journal.post(db, deposit("d1", "1"), now=NOW)
    stranger = Leg(account=CASH, currency="USD", debit=D(1), owner_id="usr_other")
    with pytest.raises(Conflict):
        await journal.post(db, entry("d2", stranger, leg(OPENING, cr="1")), now=NOW)


# --- immutability -------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [JournalEntryRow, PostingRow])
@pytest.mark.parametrize("statement", ["update", "delete"])
async def test_the_journal_refuses_update_and_delete(
    makers: async_sessionmaker[AsyncSession], model: type[JournalEntryRow] | type[PostingRow], statement: str
) -> None:
    async with makers() as s:
        await journal.post(s, deposit("d1", "1000.00"), now=NOW)
        await s.commit()
    async with makers() as s:
        stmt = update(model).values(occurred_at=NOW) if statement == "update" else delete(model)
        with pytest.raises((IntegrityError, DBAPIError), match="immutable"):
            await s.execute(stmt)
        await s.rollback()
    async with makers() as s:
        assert await count(s, model) in {1, 2}
        assert await journal.balance(s, CASH, "USD") == D("1000.00")


async def test_triggers_exist_for_both_tables(db: AsyncSession) -> None:
    if db.get_bind().dialect.name == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
    else:
        sql = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
    names = set((await db.execute(text(sql))).scalars())
    assert {n for n in names if n.startswith(("journal_entries", "postings"))}


# --- reversal --------------------------------------------------------------------------------------------


async def test_reversal_restores_balances_exactly(db: AsyncSession) -> None:
    await journal.post(db, deposit("d1", "1000.00"), now=NOW)
    before = await journal.balances(db)
    fee = await journal.post(
        db, entry("fee", leg(FEES, dr="3.333"), leg(CASH, cr="3.333"), at=T0 + timedelta(hours=1)), now=NOW
    )
    await db.commit()
    reversal = await journal.reverse(db, fee, idempotency_key="rev:fee", reason="charged twice", now=NOW)
    await db.commit()

    after = await journal.balances(db)
    assert {(b.account, b.currency): b.balance for b in after} == {
        (b.account, b.currency): b.balance for b in before
    } | {(FEES, "USD"): D(0)}
    shown = await journal.get_entry(db, reversal)
    assert shown.reverses_entry_id == fee
    assert shown.kind == "reversal"
    assert [(lg.account, lg.debit, lg.credit) for lg in shown.legs] == [
        (FEES, D(0), D("3.333")),
        (CASH, D("3.333"), D(0)),
    ]
    # Idempotent under its key; a second reversal under another key is a conflict.
    assert await journal.reverse(db, fee, idempotency_key="rev:fee", reason="charged twice", now=NOW) == reversal
    with pytest.raises(Conflict):
        await journal.reverse(db, fee, idempotency_key="rev:fee:again", reason="again", now=NOW)
    with pytest.raises(NotFound):
        await journal.reverse(db, "jen_nope", idempotency_key="rev:x", reason="x", now=NOW)
    assert await journal.trial_balance(db) == {"USD": D(0)}


# --- balances in time ---------------------------------------------------------------------------------------


async def test_balances_at_a_time_come_from_postings(db: AsyncSession) -> None:
    await journal.post(db, deposit("d1", "1000", at=T0), now=NOW)
    await journal.post(db, entry("pnl", leg(CASH, dr="250"), leg(PNL, cr="250"), at=T0 + timedelta(days=1)), now=NOW)
    await journal.post(db, entry("fee", leg(FEES, dr="5"), leg(CASH, cr="5"), at=T0 + timedelta(days=2)), now=NOW)
    await db.commit()

    assert await journal.balance(db, CASH, "USD", at=T0 - timedelta(seconds=1)) == D(0)
    assert await journal.balance(db, CASH, "USD", at=T0) == D(1000)  # inclusive
    assert await journal.balance(db, CASH, "USD", at=T0 + timedelta(days=1, hours=1)) == D(1250)
    assert await journal.balance(db, CASH, "USD") == D(1245)
    at_day1 = await journal.balances(db, owner_id=USER, at=T0 + timedelta(days=1))
    assert {b.account: b.balance for b in at_day1} == {CASH: D(1250), OPENING: D(1000), PNL: D(250)}
    assets = await journal.balances(db, prefix="assets")
    assert [(b.account, b.balance) for b in assets] == [(CASH, D(1245))]
    assert await journal.balances(db, owner_id="usr_nobody") == []
    assert await journal.trial_balance(db, at=T0 + timedelta(days=1)) == {"USD": D(0)}

    window = await journal.postings(db, account=CASH, since=T0 + timedelta(hours=1), until=T0 + timedelta(days=3))
    assert [(p.kind, p.debit, p.credit) for p in window] == [("test", D(250), D(0)), ("test", D(0), D(5))]
    first = await journal.postings(db, owner_id=USER, limit=2)
    rest = await journal.postings(db, owner_id=USER, after=first[-1].id)
    assert len(first) == 2
    assert len(rest) == 4
    assert {p.id for p in first}.isdisjoint({p.id for p in rest})


async def test_balance_check_does_not_round_to_28_digits(db: AsyncSession) -> None:
    # At Python's default precision the debit rounds to 0.1 and the entry would look balanced.
    close = entry("close", leg(CASH, dr="0.1000000000000000000000000000001"), leg(OPENING, cr="0.1"))
    with pytest.raises(UnbalancedEntry):
        await journal.post(db, close, now=NOW)
    exact = "0.1000000000000000000000000000001"
    await journal.post(db, entry("exact", leg(CASH, dr=exact), leg(OPENING, cr=exact)), now=NOW)
    await journal.post(db, entry("more", leg(CASH, dr="0.2"), leg(OPENING, cr="0.2")), now=NOW)
    assert await journal.balance(db, CASH, "USD") == D("0.3000000000000000000000000000001")
    assert await journal.trial_balance(db) == {"USD": D(0)}


async def test_concurrent_posters_lose_no_balance_update(makers: async_sessionmaker[AsyncSession]) -> None:
    """Two transactions posting to the same accounts at once: the running totals get both (the
    accounts are locked FOR UPDATE on PostgreSQL; SQLite has one writer at a time)."""
    async with makers() as s:
        await journal.post(s, deposit("seed", "0.01"), now=NOW)  # the accounts exist: both lock them
        await s.commit()

    async def poster(tag: str) -> None:
        async with makers() as s:
            batch = [deposit(f"{tag}-{i}", "1.00", at=T0 + timedelta(seconds=i)) for i in range(20)]
            await journal.post_many(s, batch, now=NOW)
            await asyncio.sleep(0.05)  # hold the locks while the other one tries
            await s.commit()

    await asyncio.gather(poster("a"), poster("b"))
    async with makers() as s:
        assert await journal.balance(s, CASH, "USD") == D("40.01")
        assert await journal.balance(s, CASH, "USD", at=NOW) == D("40.01")
        assert await journal.trial_balance(s) == {"USD": D(0)}
