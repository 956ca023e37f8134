"""Positions and balances (upserted snapshots) and instruments (upserted per broker and symbol)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import msgspec
import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from brokerlink.domain.enums import AssetClass
from brokerlink.domain.models import Balance, Instrument, Position
from brokerlink.store.repositories.instruments import InstrumentRepository
from brokerlink.store.repositories.positions import BalanceRepository, PositionRepository
from tests.store.factories import NOW, make_account

EURUSD = Instrument(
    symbol="EUR/USD",
    venue_symbol="EUR_USD",
    asset_class=AssetClass.FX,
    base="EUR",
    quote="USD",
    tick_size=Decimal("0.00001"),
    qty_step=Decimal(1),
    min_qty=Decimal(1),
    max_qty=Decimal(100000000),
    min_notional=Decimal(0),
    contract_size=Decimal(1),
)
BTCUSDT = Instrument(
    symbol="BTC/USDT",
    venue_symbol="BTCUSDT",
    asset_class=AssetClass.CRYPTO,
    base="BTC",
    quote="USDT",
    tick_size=Decimal("0.01"),
    qty_step=Decimal("0.00001"),
    min_qty=Decimal("0.00001"),
    min_notional=Decimal(5),
    tradable=False,
)


async def test_position_upsert_and_read(session: AsyncSession) -> None:
    account = await make_account(session)
    repo = PositionRepository(session)
    long = Position(account_id=account.id, symbol="AAPL", qty=Decimal(10), avg_price=Decimal("190.25"))
    await repo.upsert(long, now=NOW)
    assert await repo.get(account.id, "AAPL") == long
    reduced = msgspec.structs.replace(long, qty=Decimal("-2.5"), realized_pnl=Decimal("12.50"))
    await repo.upsert(reduced, now=NOW + timedelta(seconds=1))
    assert await repo.get(account.id, "AAPL") == reduced
    assert await repo.get(account.id, "MSFT") is None


async def test_positions_list_hides_flat_ones_unless_asked(session: AsyncSession) -> None:
    account = await make_account(session)
    repo = PositionRepository(session)
    flat = Position(account_id=account.id, symbol="AAPL", qty=Decimal("0.000"), realized_pnl=Decimal(3))
    short = Position(account_id=account.id, symbol="TSLA", qty=Decimal(-1), avg_price=Decimal(250))
    await repo.upsert(flat, now=NOW)
    await repo.upsert(short, now=NOW)
    assert await repo.list_for_account(account.id) == [short]
    assert await repo.list_for_account(account.id, include_flat=True) == [flat, short]
    assert await repo.delete(account.id, "AAPL")
    assert not await repo.delete(account.id, "AAPL")


async def test_concurrent_first_writes_of_a_position_do_not_collide(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        account = await make_account(session)
        await session.commit()

    async def write(qty: int) -> None:
        async with sessions() as session:
            position = Position(account_id=account.id, symbol="AAPL", qty=Decimal(qty))
            await PositionRepository(session).upsert(position, now=NOW)
            await session.commit()

    # All of them insert "the first" row at once; none may fail with a duplicate key.
    await asyncio.gather(*(write(qty) for qty in range(1, 6)))
    async with sessions() as session:
        stored = await PositionRepository(session).list_for_account(account.id)
    assert len(stored) == 1
    assert stored[0].qty in {Decimal(q) for q in range(1, 6)}


async def test_balance_upsert_and_list(session: AsyncSession) -> None:
    account = await make_account(session)
    repo = BalanceRepository(session)
    usd = Balance(
        account_id=account.id,
        currency="USD",
        cash=Decimal("10000.00"),
        equity=Decimal("10012.34"),
        buying_power=Decimal("40049.36"),
        margin_used=Decimal("0.00"),
        ts=NOW,
    )
    eur = msgspec.structs.replace(usd, currency="EUR", cash=Decimal(5))
    await repo.upsert(usd)
    await repo.upsert(eur)
    assert await repo.get(account.id, "USD") == usd
    newer = msgspec.structs.replace(usd, cash=Decimal("9999.99"), ts=NOW + timedelta(minutes=1))
    await repo.upsert(newer)
    assert await repo.get(account.id, "USD") == newer
    assert await repo.list_for_account(account.id) == [eur, newer]
    assert await repo.get(account.id, "JPY") is None


async def test_snapshots_need_an_existing_account(session: AsyncSession) -> None:
    with pytest.raises(IntegrityError):
        await PositionRepository(session).upsert(
            Position(account_id="acc_01ARZ3NDEKTSV4RRFFQ69G5FAV", symbol="AAPL", qty=Decimal(1)), now=NOW
        )


async def test_instrument_upsert_and_lookups(session: AsyncSession) -> None:
    repo = InstrumentRepository(session)
    await repo.upsert_many("sim", [EURUSD, BTCUSDT], now=NOW)
    await repo.upsert("oanda", EURUSD, now=NOW)  # another broker, same canonical symbol
    assert await repo.get("sim", "EUR/USD") == EURUSD
    assert await repo.get_by_venue_symbol("sim", "BTCUSDT") == BTCUSDT
    assert await repo.get("sim", "XAU/USD") is None
    assert await repo.list_for_broker("sim") == [BTCUSDT, EURUSD]
    assert await repo.list_for_broker("sim", tradable_only=True) == [EURUSD]

    # A refresh changes the rules in place.
    coarser = msgspec.structs.replace(EURUSD, tick_size=Decimal("0.0001"), max_qty=None, tradable=False)
    await repo.upsert("sim", coarser, now=NOW + timedelta(days=1))
    assert await repo.get("sim", "EUR/USD") == coarser
    assert await repo.get("oanda", "EUR/USD") == EURUSD
    await repo.upsert_many("sim", [], now=NOW)


async def test_venue_symbol_is_unique_per_broker(session: AsyncSession) -> None:
    repo = InstrumentRepository(session)
    await repo.upsert("sim", EURUSD, now=NOW)
    clash = msgspec.structs.replace(EURUSD, symbol="EUR/USD.m")
    with pytest.raises(IntegrityError):
        await repo.upsert("sim", clash, now=NOW)
