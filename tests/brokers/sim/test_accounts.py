"""Sim accounts: margin checks at the boundary, netting and hedging, commissions, conversion, cash conservation."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Context, Decimal, Inexact, InvalidOperation
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from brokerlink.brokers.sim.accounts import FIFO, FillBooking, InsufficientFunds, SimAccount
from brokerlink.brokers.sim.instruments import CRYPTO, EQUITIES, FX, Liquidity
from brokerlink.brokers.sim.marketdata import MidRates
from brokerlink.domain.enums import AccountMode, AssetClass, Side
from brokerlink.domain.models import Balance, Instrument, Position, Quote
from brokerlink.kit.clock import ManualClock
from brokerlink.kit.errors import Conflict, InvalidInput, NotFound, Unavailable
from brokerlink.kit.money import MoneyError

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
EXACT = Context(prec=200, traps=[Inexact, InvalidOperation])
AAPL = EQUITIES.get("AAPL").instrument
EURUSD, USDJPY = FX.get("EUR/USD").instrument, FX.get("USD/JPY").instrument
BTC = CRYPTO.get("BTC/USDT").instrument
D = Decimal
BUY, SELL = Side.BUY, Side.SELL
HEDGING, NETTING = AccountMode.HEDGING, AccountMode.NETTING


class TableRates:
    """An explicit rate source: a table, and a record of every question asked."""

    def __init__(self, **rates: str) -> None:
        self.table = {tuple(k.split("_")): D(v) for k, v in rates.items()}
        self.calls: list[tuple[str, str]] = []

    def __call__(self, source: str, target: str) -> Decimal:
        self.calls.append((source, target))
        return self.table[source, target]


def account(cash: str = "10000.00", mode: AccountMode = NETTING, **kw: Any) -> SimAccount:
    return SimAccount("acc", kw.pop("currency", "USD"), cash=D(cash), clock=ManualClock(T0), mode=mode, **kw)


def free(cash: str = "10000.00", mode: AccountMode = NETTING, **kw: Any) -> SimAccount:
    """A commission-free account, so margin boundaries are clean."""
    return account(cash, mode, commissions={}, **kw)


def quote(symbol: str, bid: str, ask: str | None = None) -> Quote:
    return Quote(symbol=symbol, bid=D(bid), ask=D(ask or bid), bid_size=D(1), ask_size=D(1), ts=T0)


_trade = iter(range(10**9))


def fill(acc: SimAccount, inst: Instrument, side: Side, qty: str, price: str, **kw: Any) -> FillBooking:
    return acc.apply_fill(inst, side, D(qty), D(price), trade_id=f"t{next(_trade)}", **kw)


def qtys(acc: SimAccount) -> list[tuple[str, Decimal, Decimal]]:
    return [(p.id, p.position.qty, p.position.avg_price) for p in acc.open_positions()]


# --- the pre-trade check ----------------------------------------------------------------------------


def test_margin_check_accepts_at_the_boundary_and_refuses_one_step_over() -> None:
    acc = free("10000.00")
    assert acc.check_order(AAPL, BUY, D(500), D("100.00")) == D("10000.00")  # 500 * 100 / 5 = all of it
    with pytest.raises(InsufficientFunds) as info:
        acc.check_order(AAPL, BUY, D(501), D("100.00"))
    assert info.value.extra == {"required": "10020.00", "available": "10000.00", "currency": "USD"}
    assert (info.value.status, info.value.code, isinstance(info.value, Conflict)) == (409, "insufficient_funds", True)


@pytest.mark.parametrize(
    ("cash", "ok"),
    [("9981.00", True), ("9980.99", False)],
)
def test_margin_rounds_up_to_the_cent(cash: str, ok: bool) -> None:
    # 499 * 100.01 / 5 = 9980.998: the requirement is 9981.00, so one cent less is refused.
    acc = free(cash)
    if ok:
        assert acc.check_order(AAPL, BUY, D(499), D("100.01")) == D("9981.00")
    else:
        with pytest.raises(InsufficientFunds) as info:
            acc.check_order(AAPL, BUY, D(499), D("100.01"))
        assert (info.value.extra["required"], info.value.extra["available"]) == ("9981.00", "9980.99")


@pytest.mark.parametrize(("cash", "ok"), [("9982.50", True), ("9982.49", False)])
def test_commission_is_part_of_the_requirement(cash: str, ok: bool) -> None:
    # Margin 9980.00 plus 499 * 0.005 = 2.495 commission, half-even to 2.50.
    acc = account(cash)
    if ok:
        assert acc.check_order(AAPL, BUY, D(499), D("100.00")) == D("9982.50")
    else:
        with pytest.raises(InsufficientFunds, match=r"needs 9982\.50 USD, free margin is 9982\.49 USD"):
            acc.check_order(AAPL, BUY, D(499), D("100.00"))


def test_margin_check_with_conversion_at_the_boundary() -> None:
    # USD/JPY 1 lot at 156.250: margin 15,625,000 / 30 JPY * 0.0064 = 3333.33.. -> 3333.34 USD;
    # commission 15,625,000 * 35 / 10**6 = 546.875 JPY * 0.0064 = 3.50 USD.
    rates = TableRates(JPY_USD="0.0064")
    assert account("3336.84", rates=rates).check_order(USDJPY, BUY, D(1), D("156.250")) == D("3336.84")
    with pytest.raises(InsufficientFunds):
        account("3336.83", rates=rates).check_order(USDJPY, BUY, D(1), D("156.250"))
    assert set(rates.calls) == {("JPY", "USD")}


def test_reducing_is_never_refused_for_funds() -> None:
    acc = account("10000.00", commissions={})
    fill(acc, AAPL, BUY, "500", "100.00")
    acc.update_quote(quote("AAPL", "90.00"))
    assert (acc.equity, acc.margin_used, acc.free_margin) == (D("5000.00"), D("9000.00"), D("-4000.00"))
    assert acc.check_order(AAPL, SELL, D(500), D("90.00")) == 0
    with pytest.raises(InsufficientFunds) as info:
        acc.check_order(AAPL, BUY, D(1), D("90.00"))
    assert info.value.extra["available"] == "-4000.00"


def test_a_flip_needs_margin_for_the_part_beyond_the_position() -> None:
    acc = free("10000.00")
    fill(acc, AAPL, BUY, "10", "100.00")
    assert acc.check_order(AAPL, SELL, D(25), D("100.00")) == D("300.00")  # 15 opened short * 100 / 5
    assert acc.check_order(AAPL, SELL, D(10), D("100.00")) == 0


def test_check_refuses_bad_input() -> None:
    acc = free()
    for qty, price in ((D(0), D(1)), (D(-1), D(1)), (D(1), D(0)), (D("NaN"), D(1))):
        with pytest.raises(InvalidInput):
            acc.check_order(AAPL, BUY, qty, price)
    with pytest.raises(InvalidInput):
        acc.apply_fill(AAPL, BUY, D(1), D(0), trade_id="x")


# --- netting and hedging ----------------------------------------------------------------------------


def test_netting_nets_and_hedging_keeps_both_legs() -> None:
    net, hedge = free(), free(mode=HEDGING)
    for acc in (net, hedge):
        fill(acc, AAPL, BUY, "10", "100.00")
        fill(acc, AAPL, SELL, "4", "110.00")
        acc.update_quote(quote("AAPL", "110.00"))
    assert qtys(net) == [("AAPL", D(6), D(100))]
    assert (net.realized_pnl, net.cash, net.margin_used) == (D("40.00"), D("10040.00"), D("132.00"))
    assert qtys(hedge) == [("acc-1", D(10), D(100)), ("acc-2", D(-4), D(110))]
    # Gross margin: both legs, (10 + 4) * 110 / 5.
    assert (hedge.realized_pnl, hedge.cash, hedge.margin_used) == (D(0), D("10000.00"), D("308.00"))
    assert net.equity == hedge.equity == D("10100.00")


def test_hedging_close_by_id_add_by_id_and_ids_never_reused() -> None:
    acc = free(mode=HEDGING)
    assert fill(acc, AAPL, BUY, "10", "100.00").position_ids == ("acc-1",)
    fill(acc, AAPL, BUY, "10", "102.00", position_id="acc-1")  # a later fill of the same order
    assert qtys(acc) == [("acc-1", D(20), D(101))]
    booking = fill(acc, AAPL, SELL, "5", "111.00", position_id="acc-1")
    assert (booking.realized_pnl, booking.position_ids) == (D("50.00"), ("acc-1",))
    fill(acc, AAPL, SELL, "15", "101.00", position_id="acc-1")
    assert qtys(acc) == []
    assert fill(acc, AAPL, BUY, "1", "100.00").position_ids == ("acc-2",)
    with pytest.raises(NotFound):
        fill(acc, AAPL, SELL, "1", "100.00", position_id="acc-1")  # closed positions are gone


def test_hedging_fifo_closes_oldest_first() -> None:
    acc = free(mode=HEDGING)
    fill(acc, AAPL, BUY, "5", "100.00")
    fill(acc, AAPL, SELL, "3", "100.00")  # an opposite position: FIFO for a sell skips it
    fill(acc, AAPL, BUY, "5", "102.00")
    booking = fill(acc, AAPL, SELL, "7", "105.00", position_id=FIFO)
    # acc-1 closed (5 * 5 = 25), acc-3 reduced by 2 (2 * 3 = 6).
    assert (booking.position_ids, booking.realized_pnl) == (("acc-1", "acc-3"), D("31.00"))
    assert qtys(acc) == [("acc-2", D(-3), D(100)), ("acc-3", D(3), D(102))]


@pytest.mark.parametrize(
    ("mode", "order", "position_id", "refusal"),
    [
        (HEDGING, (SELL, "11"), FIFO, (InvalidInput, "only 10 open on the other side")),
        (HEDGING, (SELL, "11"), "acc-1", (InvalidInput, "which holds 10")),
        (HEDGING, (SELL, "1"), "acc-9", (NotFound, "no open AAPL position 'acc-9'")),
        (HEDGING, (BUY, "1"), FIFO, (InvalidInput, "only 0 open")),
        (NETTING, (SELL, "1"), "acc-1", (InvalidInput, "one position per symbol")),
        (NETTING, (SELL, "1"), FIFO, (InvalidInput, "one position per symbol")),
    ],
)
def test_impossible_position_targets_are_refused_before_booking(
    mode: AccountMode, order: tuple[Side, str], position_id: str, refusal: tuple[type[Exception], str]
) -> None:
    (side, qty), (error, message) = order, refusal
    acc = free(mode=mode)
    fill(acc, AAPL, BUY, "10", "100.00")
    before = (qtys(acc), acc.cash)
    with pytest.raises(error, match=message):
        acc.check_order(AAPL, side, D(qty), D("100.00"), position_id=position_id)
    with pytest.raises(error, match=message):
        fill(acc, AAPL, side, qty, "100.00", position_id=position_id)
    assert (qtys(acc), acc.cash) == before


def test_hedging_position_of_another_symbol_is_not_found() -> None:
    acc = free(mode=HEDGING)
    fill(acc, AAPL, BUY, "1", "100.00")
    with pytest.raises(NotFound):
        fill(acc, EURUSD, SELL, "1", "1.10000", position_id="acc-1")


def test_netting_accepts_its_symbol_as_position_id_and_flips() -> None:
    acc = free()
    fill(acc, AAPL, BUY, "10", "100.00", position_id="AAPL")
    booking = fill(acc, AAPL, SELL, "25", "104.00")
    assert (booking.realized_pnl, qtys(acc)) == (D("40.00"), [("AAPL", D(-15), D(104))])


def test_close_out_marks_long_at_bid_short_at_ask() -> None:
    acc = free(mode=HEDGING)
    fill(acc, AAPL, BUY, "10", "100.00")
    fill(acc, AAPL, SELL, "10", "100.00")
    assert acc.unrealized_pnl == 0  # no quote yet: marked at the last fill price
    acc.update_quote(quote("AAPL", "99.00", "99.10"))
    assert [p.position.unrealized_pnl for p in acc.open_positions()] == [D("-10.00"), D("9.00")]
    assert acc.equity == D("9999.00")


def test_carried_rounding_keeps_realized_cash_exact() -> None:
    acc = free()
    fill(acc, AAPL, BUY, "1", "1.00")
    fill(acc, AAPL, BUY, "2", "2.00")  # average 5/3
    postings = [fill(acc, AAPL, SELL, "1", "2.00").realized_pnl for _ in range(3)]
    assert postings == [D("0.33"), D("0.34"), D("0.33")]  # each 1/3; rounded one by one they would lose a cent
    assert (acc.realized_pnl, acc.cash) == (D("1.00"), D("10001.00"))


@pytest.mark.parametrize(("exit_price", "realized"), [("90.00", "-120.86"), ("90.02", "-119.96")])
def test_a_half_cent_tie_under_an_inexact_average_rounds_half_even(exit_price: str, realized: str) -> None:
    # 5561.14 / 60 does not terminate. The 45 closed realize exactly 45 * exit - 45/60 * 5561.14 (-120.855, -119.955),
    # a tie the one cash rounding must see exactly: no residue of the rounded average may tip it.
    acc = free("100000.00")
    fill(acc, AAPL, BUY, "14", "101.51")
    opened = fill(acc, AAPL, BUY, "46", "90.00")
    assert opened.realized_pnl == 0
    booking = fill(acc, AAPL, SELL, "45", exit_price)
    assert (booking.realized_pnl, acc.realized_pnl, acc.cash) == (
        D(realized),
        D(realized),
        D("100000.00") + D(realized),
    )
    acc.update_quote(quote("AAPL", "90.00"))
    assert acc.unrealized_pnl == D("-40.285")  # 15 * 90 - 15/60 * 5561.14, exactly
    assert acc.equity == (acc.cash + D("-40.285")).quantize(D("0.01"), rounding=ROUND_HALF_EVEN)


# --- commissions and currency conversion -----------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "rates", "order", "expected"),
    [
        ("USD", {}, (EURUSD, "1", "1.08500", Liquidity.TAKER), "3.80"),  # 3.7975 half-even
        ("USD", {"JPY_USD": "0.0064"}, (USDJPY, "1", "156.250", Liquidity.TAKER), "3.50"),
        ("USD", {}, (AAPL, "100", "190.00", Liquidity.TAKER), "1.00"),  # the minimum
        ("USD", {}, (AAPL, "1000", "190.00", Liquidity.MAKER), "5.00"),
        ("USD", {"USDT_USD": "1"}, (BTC, "0.5", "65000.0", Liquidity.TAKER), "16.25"),
        ("USD", {"USDT_USD": "1"}, (BTC, "0.5", "65000.0", Liquidity.MAKER), "6.50"),
        ("JPY", {"USD_JPY": "150"}, (EURUSD, "1", "1.08500", Liquidity.TAKER), "570"),  # 569.625 to whole yen
        ("USDT", {}, (BTC, "0.00001", "65000.0", Liquidity.TAKER), "0.00"),  # 0.000325 rounds away
    ],
)
def test_commission_in_the_account_currency(
    currency: str, rates: dict[str, str], order: tuple[Instrument, str, str, Liquidity], expected: str
) -> None:
    inst, qty, price, liquidity = order
    acc = account("1000000", currency=currency, rates=TableRates(**rates))
    assert acc.commission(inst, D(qty), D(price), liquidity) == D(expected)
    booking = fill(acc, inst, BUY, qty, price, liquidity=liquidity)
    assert (booking.commission, booking.liquidity, acc.fees) == (D(expected), liquidity, D(expected))
    assert acc.cash == D(1000000) - D(expected)


def test_realized_and_unrealized_pnl_convert_at_the_current_rate() -> None:
    rates = TableRates(JPY_USD="0.0064")
    acc = account("10000.00", rates=rates)
    fill(acc, USDJPY, BUY, "1", "156.250")  # commission 3.50
    acc.update_quote(quote("USD/JPY", "156.875", "156.885"))
    # Unrealized 0.625 * 100,000 = 62,500 JPY = 400 USD; margin 15,687,500 / 30 JPY = 3346.66.. -> 3346.67 USD.
    assert (acc.unrealized_pnl, acc.equity, acc.margin_used) == (D(400), D("10396.50"), D("3346.67"))
    rates.table["JPY", "USD"] = D("0.0062")  # the yen weakened: the same JPY profit is worth less
    assert acc.equity == D("9996.50") + D("387.50")
    booking = fill(acc, USDJPY, SELL, "1", "157.500")
    # 1.25 * 100,000 = 125,000 JPY * 0.0062 = 775.00; commission 551.25 JPY * 0.0062 = 3.41775 -> 3.42.
    assert (booking.realized_pnl, booking.commission) == (D("775.00"), D("3.42"))
    assert acc.cash == D("10000.00") - D("3.50") + D("775.00") - D("3.42")
    assert set(rates.calls) == {("JPY", "USD")}


def test_mid_rates_as_the_rate_source() -> None:
    rates = MidRates([USDJPY])
    rates.update(quote("USD/JPY", "149.995", "150.005"))
    acc = free(rates=rates)
    fill(acc, USDJPY, BUY, "1", "150.000")
    booking = fill(acc, USDJPY, SELL, "1", "151.000")
    assert booking.realized_pnl == D("666.67")  # 100,000 JPY at 1/150


def test_conversion_needs_an_explicit_usable_rate_source() -> None:
    with pytest.raises(Unavailable, match="no rate source to convert JPY to USD"):
        free().check_order(USDJPY, BUY, D(1), D("150.000"))
    with pytest.raises(MoneyError, match="float"):
        free(rates=lambda s, t: 0.0064).check_order(USDJPY, BUY, D(1), D("150.000"))
    with pytest.raises(InvalidInput, match="must be positive"):
        free(rates=lambda s, t: D(0)).check_order(USDJPY, BUY, D(1), D("150.000"))
    rates = TableRates()
    free(rates=rates).check_order(EURUSD, BUY, D(1), D("1.10000"))
    assert rates.calls == []  # the account currency needs no conversion


# --- cash, snapshot, bookkeeping ------------------------------------------------------------------------


def test_snapshot() -> None:
    acc = account("10000.00", buying_power_class=AssetClass.EQUITY)
    fill(acc, AAPL, BUY, "10", "100.00")  # commission 1.00 (minimum)
    acc.update_quote(quote("AAPL", "101.00", "101.02"))
    balance, held = acc.snapshot()
    assert balance == Balance(
        account_id="acc",
        currency="USD",
        cash=D("9999.00"),
        equity=D("10009.00"),
        margin_used=D("202.00"),
        buying_power=D("49035.00"),  # (10009 - 202) * 5
        ts=T0,
    )
    assert held == [Position(account_id="acc", symbol="AAPL", qty=D(10), avg_price=D(100), unrealized_pnl=D(10))]


@pytest.mark.parametrize(
    ("buying_power_class", "expected"),
    [(None, "20000.00"), (AssetClass.FX, "300000.00"), (AssetClass.EQUITY, "50000.00")],
)
def test_buying_power(buying_power_class: AssetClass | None, expected: str) -> None:
    assert free(buying_power_class=buying_power_class).buying_power == D(expected)


def test_buying_power_is_zero_under_water() -> None:
    acc = free("1000.00")
    fill(acc, AAPL, BUY, "50", "100.00")
    acc.update_quote(quote("AAPL", "70.00"))
    assert (acc.equity, acc.free_margin, acc.buying_power) == (D("-500.00"), D("-1200.00"), D(0))


def test_deposits_and_withdrawals() -> None:
    acc = free("100.00")
    assert acc.deposit(D("50.25")) == D("150.25")
    fill(acc, AAPL, BUY, "1", "100.00")  # margin 20.00
    with pytest.raises(InsufficientFunds):
        acc.withdraw(D("130.26"))
    assert acc.withdraw(D("130.25")) == D("20.00")
    for bad in (D("0.001"), D(-1)):
        with pytest.raises(InvalidInput):
            acc.deposit(bad)
    with pytest.raises(InvalidInput):
        account("1.005")
    with pytest.raises(InvalidInput):
        account("1.5", currency="JPY")  # whole yen
    with pytest.raises(InvalidInput):
        free(leverage={AssetClass.FX: D(0)})


def test_duplicate_trade_ids_are_refused() -> None:
    acc = account()
    acc.apply_fill(AAPL, BUY, D(1), D(100), trade_id="T1")
    with pytest.raises(Conflict, match="'T1' is already booked"):
        acc.apply_fill(AAPL, BUY, D(1), D(100), trade_id="T1")
    assert acc.cash == D("9999.00")


def test_an_instrument_must_not_change_under_a_position() -> None:
    acc = free()
    fill(acc, AAPL, BUY, "1", "100.00")
    with pytest.raises(InvalidInput, match="not the instrument"):
        fill(acc, replace(AAPL, contract_size=D(10)), SELL, "1", "100.00")


def test_leverage_missing_for_a_class() -> None:
    with pytest.raises(InvalidInput, match="no leverage"):
        free(leverage={AssetClass.FX: D(30)}).check_order(AAPL, BUY, D(1), D(100))


# --- cash conservation over any sequence ---------------------------------------------------------------

steps = st.lists(
    st.tuples(st.sampled_from([BUY, SELL]), st.integers(1, 50), st.integers(9000, 11000), st.booleans()),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60)
@given(steps, st.integers(9000, 11000), st.sampled_from([NETTING, HEDGING]))
def test_cash_is_conserved_over_any_fill_sequence(
    sequence: list[tuple[Side, int, int, bool]], mark_cents: int, mode: AccountMode
) -> None:
    acc = account("100000.00", mode)
    flows, bookings = D(0), list[FillBooking]()
    for side, qty, cents, fifo in sequence:
        price = D(cents).scaleb(-2)
        # FIFO when it can close the whole fill (hedging only); otherwise the fill opens or nets.
        closable = sum((max(-p.position.qty * side.sign, D(0)) for p in acc.open_positions()), D(0))
        target = FIFO if mode is HEDGING and fifo and qty <= closable else None
        bookings.append(acc.apply_fill(AAPL, side, D(qty), price, trade_id=f"t{len(bookings)}", position_id=target))
        flows = EXACT.subtract(flows, EXACT.multiply(D(qty * side.sign), price))
    mark = D(mark_cents).scaleb(-2)
    acc.update_quote(quote("AAPL", str(mark)))
    held = acc.open_positions()
    net = sum((p.position.qty for p in held), D(0))
    unrealized = sum((p.position.unrealized_pnl for p in held), D(0))
    gross = sum((abs(p.position.qty) for p in held), D(0))

    assert acc.fees == sum(b.commission for b in bookings)
    assert acc.realized_pnl == sum(b.realized_pnl for b in bookings)
    assert acc.cash == D("100000.00") + acc.realized_pnl - acc.fees
    # Exactly what the trades made, split into realized (in cash, rounded once) and unrealized (still open).
    realized_exact = flows + net * mark - unrealized
    assert acc.realized_pnl == realized_exact.quantize(D("0.01"), rounding=ROUND_HALF_EVEN)
    assert acc.equity == (acc.cash + unrealized).quantize(D("0.01"), rounding=ROUND_HALF_EVEN)
    assert acc.margin_used == (gross * mark / 5).quantize(D("0.01"), rounding=ROUND_CEILING)
    if mode is NETTING:
        assert net == sum(D(q * s.sign) for s, q, _, _ in sequence)
        assert len(held) <= 1
