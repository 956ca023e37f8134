"""Properties of the planner over random provider trading, applied to a simulated follower link.

A provider trades one symbol through a random sequence of opens, increases, partial closes, full
closes and reversals (sizes on its own step), ending flat. Each fill goes to
:func:`~brokerlink.engine.copy.planner.plan_follower` for one follower with random settings and
instrument rules, and the planned orders are applied to the follower's link as the runtime does
(``CopyEngine.build_intents`` and ``_move_links``: an open creates the link with the planned
quantity, an increase adds, a reduce subtracts, a close zeroes and closes it). Some opens are
refused by the broker, which the runtime settles by taking the refused quantity back out of the
link and closing a link left holding nothing (``outcomes._correct_link``). The subscription's status
changes at random between fills.

What must hold at every fill:

- an opening order is a positive multiple of the follower's step, within ``max_qty_per_order`` and
  the venue's ``max_qty``, leaves the symbol's exposure and the account's leverage within their
  caps, is on the follower's side (the provider's, or the opposite when reversed), and is never
  more than the sizing mode asked for unless ``force_min_qty`` raised it to exactly the minimum;
- nothing opens while the subscription is paused or close-only (the skip names the status);
- a closing order never takes more than the link holds, is on the link's opposite side (so the
  follower never flips), keeps at most the provider's share, and always goes out when the provider
  reduces, whatever the status or guards;
- the link is never negative, always on the side the provider's position implies, and closed
  whenever the provider is flat;
- an open is only planned when the follower has no open link (or the same plan closes it): the
  store allows one open link per subscription and symbol.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import msgspec
from hypothesis import event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from brokerlink.domain.copy import CopyLink, IntentAction, SubscriptionStatus
from brokerlink.domain.enums import AssetClass, Side
from brokerlink.domain.models import Instrument, Quote
from brokerlink.engine.copy import (
    CopySettings,
    Direction,
    SizingMode,
    SkipReason,
    SlippageAction,
    SymbolIndex,
    follower_side,
    minimum_qty,
)
from brokerlink.engine.copy.planner import Follower, Plan, PlannedOrder, Signal, plan_follower
from brokerlink.kit.money import is_multiple_of

D = Decimal
F = Fraction
NOW = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)
SYMBOL = "EUR/USD"
STATUSES = [SubscriptionStatus.ACTIVE] * 10 + [SubscriptionStatus.PAUSED, SubscriptionStatus.CLOSE_ONLY]
OPENING = (IntentAction.OPEN, IntentAction.INCREASE)


def _dec(low: str, high: str, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=D(low), max_value=D(high), places=places)


def _sometimes(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``None`` (no such cap) two times in three, so most runs get to trade."""
    return st.sampled_from([None, None]) | strategy


# --- the provider ----------------------------------------------------------------------------------


class Move(msgspec.Struct, frozen=True):
    """One provider fill, relative to where its position stands: how it moves and by how much."""

    kind: str
    """``away`` (open or increase), ``partial`` (close ``percent`` of it), ``close``, ``reverse``."""
    steps: int
    long: bool
    """The side of an open from flat."""
    percent: int
    price_bps: int
    """The fill's price, in basis points from the base price."""
    stop_bps: int | None
    """The provider's stop-loss, in basis points from the fill price on the losing side."""
    status: SubscriptionStatus
    refused: bool
    """The broker refuses this fill's opening order (if any)."""


moves = st.builds(
    Move,
    st.sampled_from(["away", "away", "partial", "partial", "close", "reverse"]),
    st.integers(1, 60),
    st.booleans(),
    st.integers(1, 99),
    st.integers(-80, 80),
    st.integers(0, 300).map(lambda bps: None if bps < 30 else bps),  # no stop-loss one time in ten
    st.sampled_from(STATUSES),
    st.integers(0, 9).map(lambda n: n == 0),
)


def next_position(position: int, move: Move) -> int:
    """The provider's position after ``move``, in its own steps (signed)."""
    if position == 0:
        return move.steps if move.long else -move.steps
    sign = 1 if position > 0 else -1
    size = abs(position)
    if move.kind == "away":
        return position + sign * move.steps
    if move.kind == "partial" and size > 1:
        return sign * (size - max(1, size * move.percent // 100))
    if move.kind == "reverse":
        return -sign * move.steps
    return 0


# --- the follower ----------------------------------------------------------------------------------


MARKETS = [
    (D("1.08123"), D(100_000)),
    (D("0.65"), D(100_000)),
    (D("150.25"), D(1)),
    (D("150.25"), D(100)),
    (D("30000"), D(1)),
]
"""(price, contract size): an FX lot, a share, a lot of 100 shares, a coin."""


@st.composite
def follower_instruments(draw: st.DrawFn, contract_size: Decimal) -> Instrument:
    step = draw(st.sampled_from([D("0.001"), D("0.01"), D("0.1"), D(1)]))
    return Instrument(
        symbol=SYMBOL,
        venue_symbol="EURUSD.m",
        asset_class=AssetClass.FX,
        base="EUR",
        quote="USD",
        tick_size=D("0.00001"),
        qty_step=step,
        min_qty=step * draw(st.integers(0, 5)),
        max_qty=draw(st.none() | st.integers(1, 5_000).map(lambda n: step * n)),
        min_notional=draw(st.sampled_from([D(0), D(0), D(1), D(10), D(1_000)])),
        contract_size=contract_size,
    )


def _steps(step: Decimal, most: int) -> st.SearchStrategy[Decimal]:
    """A quantity of 1 to ``most`` steps, on the grid or up to a step past it (so rounding has work)."""
    off_grid = st.sampled_from([D(0), D(0), D("0.5"), D("0.999")])
    return st.builds(lambda n, extra: step * (n + extra), st.integers(1, most), off_grid)


@st.composite
def copy_settings(draw: st.DrawFn, step: Decimal) -> CopySettings:
    """Random settings; quantities in units of the follower's ``step``, so a cap is not just always below it."""
    mode = draw(st.sampled_from(list(SizingMode)))
    fields: dict[str, Any] = {"sizing": mode}
    if mode is SizingMode.FIXED_QTY:
        fields["fixed_qty"] = draw(_steps(step, 200) | _dec("0.001", "1", 3))
    elif mode is SizingMode.MULTIPLIER:
        fields["multiplier"] = draw(_dec("0.01", "10", 2))
    elif mode is SizingMode.EQUITY_RATIO:
        fields["allocated_amount"] = draw(st.none() | _dec("100", "1000000", 2))
    elif mode is SizingMode.FIXED_NOTIONAL:
        fields["fixed_notional"] = draw(_dec("10", "1000000", 2))
    else:
        fields["risk_percent"] = draw(_dec("0.1", "10", 1))
    slippage = draw(_sometimes(_dec("0", "50", 1)))
    return CopySettings(
        **fields,
        force_min_qty=draw(st.booleans()),
        max_qty_per_order=draw(_sometimes(_steps(step, 1000))),
        max_open_positions=draw(_sometimes(st.integers(1, 6))),
        max_exposure_per_symbol=draw(_sometimes(_dec("100", "5000000", 2))),
        max_leverage=draw(_sometimes(_dec("0.5", "50", 1))),
        direction=draw(st.sampled_from(list(Direction))),
        max_slippage_bps=slippage,
        slippage_action=draw(st.sampled_from(list(SlippageAction))) if slippage is not None else SlippageAction.SKIP,
    )


class World(msgspec.Struct, frozen=True, kw_only=True):
    """Everything about the follower that stays fixed while the provider trades."""

    settings: CopySettings
    instrument: Instrument
    indexed: bool
    """Hand the planner a :class:`SymbolIndex` rather than a mapping."""
    provider_step: Decimal
    base_price: Decimal
    spread_bps: int
    provider_equity: Decimal
    follower_equity: Decimal
    other_positions: int
    """Positions the follower holds in other symbols (for ``max_open_positions``)."""
    other_exposure: Decimal
    """Notional the follower holds in other symbols (for ``max_leverage``)."""


@st.composite
def worlds(draw: st.DrawFn) -> World:
    price, contract_size = draw(st.sampled_from(MARKETS))
    instrument = draw(follower_instruments(contract_size))
    return World(
        settings=draw(copy_settings(instrument.qty_step)),
        instrument=instrument,
        indexed=draw(st.booleans()),
        provider_step=draw(st.sampled_from([D("0.01"), D("0.001"), D("0.1"), D(1)])),
        base_price=price,
        spread_bps=draw(st.integers(0, 20)),
        provider_equity=draw(_dec("1000", "1000000", 2)),
        follower_equity=draw(_dec("100", "1000000", 2)),
        other_positions=draw(st.integers(0, 2)),
        other_exposure=draw(_dec("0", "10000", 2)),
    )


@dataclass
class Book:
    """The simulated follower: its one link in the symbol, as the runtime keeps it."""

    link: CopyLink | None = None
    opened: int = 0

    def new_link(self, order: PlannedOrder) -> CopyLink:
        self.opened += 1
        return CopyLink(
            id=f"lnk_{self.opened}",
            subscription_id="sub_1",
            provider_symbol=SYMBOL,
            follower_symbol=order.symbol,
            side=order.side,
            qty=order.qty,
            opened_at=NOW,
            updated_at=NOW,
        )


def quote_at(world: World, price: Decimal) -> Quote:
    half_spread = price * world.spread_bps / 20_000
    return Quote(symbol=SYMBOL, bid=price - half_spread, ask=price + half_spread, bid_size=D(1), ask_size=D(1), ts=NOW)


def sizing_price(current: Quote, side: Side) -> Decimal:
    """The price the follower would trade at: what sizing and the caps use."""
    return current.ask if side is Side.BUY else current.bid


def unit_value(world: World, price: Decimal) -> Fraction:
    return F(price) * F(world.instrument.contract_size)


def follower_view(world: World, book: Book, status: SubscriptionStatus, current: Quote) -> Follower:
    """The follower as the runtime would describe it: its link, and what it holds at the current price."""
    held = D(0)
    if book.link is not None:  # exact: a product of short decimals
        held = book.link.qty * sizing_price(current, book.link.side) * world.instrument.contract_size
    instruments = SymbolIndex([world.instrument]) if world.indexed else {SYMBOL: world.instrument}
    return Follower(
        subscription_id="sub_1",
        status=status,
        settings=world.settings,
        link=book.link,
        instruments=instruments,
        equity=world.follower_equity,
        open_positions=world.other_positions + (1 if book.link is not None else 0),
        exposures={SYMBOL: held, "OTHER": world.other_exposure},
    )


def raw_size(world: World, sig: Signal, price: Decimal) -> Fraction | None:
    """What the sizing mode asks for, in exact arithmetic; None when it cannot size (no stop-loss)."""
    s, inst = world.settings, world.instrument
    reversal = sig.before != 0 and (sig.before > 0) != (sig.after > 0)
    qty = F(abs(sig.after) if reversal else abs(sig.after) - abs(sig.before))
    if s.sizing is SizingMode.FIXED_QTY:
        return F(s.fixed_qty or 0)
    if s.sizing is SizingMode.MULTIPLIER:
        return F(s.multiplier) * qty
    if s.sizing is SizingMode.FIXED_NOTIONAL:
        return F(s.fixed_notional or 0) / unit_value(world, price)
    if s.sizing is SizingMode.EQUITY_RATIO:
        base = F(world.follower_equity)
        if s.allocated_amount is not None:
            base = min(base, F(s.allocated_amount))
        return qty * base / F(world.provider_equity)
    if sig.stop_loss is None:
        return None
    distance = abs(F(sig.price) - F(sig.stop_loss))
    return F(world.follower_equity) * F(s.risk_percent or 0) / 100 / (distance * F(inst.contract_size))


# --- the property ----------------------------------------------------------------------------------


def check_open(world: World, sig: Signal, order: PlannedOrder, before: Follower, current: Quote) -> None:
    s, inst = world.settings, world.instrument
    assert before.status is SubscriptionStatus.ACTIVE, "nothing opens while paused or close-only"
    assert order.qty > 0
    assert is_multiple_of(order.qty, inst.qty_step)
    if s.max_qty_per_order is not None:
        assert order.qty <= s.max_qty_per_order
    if inst.max_qty is not None:
        assert order.qty <= inst.max_qty
    provider_side = Side.BUY if sig.after > 0 else Side.SELL
    assert order.side is follower_side(s, provider_side)
    assert order.side is (provider_side.opposite if s.direction is Direction.REVERSED else provider_side)
    price = sizing_price(current, order.side)
    added = F(order.qty) * unit_value(world, price)
    # A reversal first closes the link entirely, which frees what it held.
    reversal = sig.before != 0 and (sig.before > 0) != (sig.after > 0)
    held = F(before.exposures.get(SYMBOL, D(0))) if not reversal else F(0)
    other = F(before.exposures.get("OTHER", D(0)))
    if s.max_exposure_per_symbol is not None:
        assert held + added <= F(s.max_exposure_per_symbol)
    if s.max_leverage is not None:
        assert held + other + added <= F(s.max_leverage) * F(world.follower_equity)
    if s.max_open_positions is not None and order.action is IntentAction.OPEN:
        assert before.open_positions - (1 if reversal and before.link is not None else 0) < s.max_open_positions
    raw = raw_size(world, sig, price)
    assert raw is not None, "risk sizing without a stop-loss must skip"
    minimum = minimum_qty(inst, price)
    assert order.qty >= minimum
    if F(order.qty) > raw:  # rounded up: only to exactly the minimum, and only when forced
        assert s.force_min_qty
        assert order.qty == minimum
    if s.max_slippage_bps is not None and s.slippage_action is SlippageAction.LIMIT:
        assert order.limit_price is not None
    else:
        assert order.limit_price is None


def check_close(sig: Signal, order: PlannedOrder, link: CopyLink, step: Decimal) -> None:
    assert order.link_id == link.id
    assert 0 < order.qty <= link.qty, "a close never overshoots what the link holds"
    assert order.side is link.side.opposite, "a close never adds to the position or flips it"
    assert is_multiple_of(order.qty, step)
    assert order.limit_price is None
    if order.action is IntentAction.REDUCE:
        assert order.qty < link.qty
        kept = F(link.qty - order.qty)
        assert kept <= F(link.qty) * F(abs(sig.after)) / F(abs(sig.before)), "keeps at most the provider's share"
    else:
        assert order.qty == link.qty


class Step(msgspec.Struct, frozen=True, kw_only=True):
    """One provider fill as the follower saw it: the signal, its view, the quote, and the plan."""

    sig: Signal
    move: Move
    view: Follower
    current: Quote
    result: Plan


def merged_closes(world: World, orders: tuple[PlannedOrder, ...]) -> list[PlannedOrder]:
    """A close split into parts (above the venue's maximum) as one order, after checking the parts."""
    merged: list[PlannedOrder] = []
    for order in orders:
        if order.part == 0:
            merged.append(order)
            continue
        first = merged[-1]
        assert (order.action, order.link_id, order.side, order.part) == (
            first.action, first.link_id, first.side, len([o for o in orders if o.link_id == order.link_id][:order.part])
        )  # fmt: skip
        merged[-1] = msgspec.structs.replace(first, qty=first.qty + order.qty)
    for order in orders:
        if world.instrument.max_qty is not None:
            assert order.qty <= world.instrument.max_qty, "no part is above the venue's maximum"
    return merged


def apply(world: World, book: Book, step: Step) -> None:
    """Check a plan and apply its orders to the follower's link, as the runtime does."""
    sig, move, view, current, result = step.sig, step.move, step.view, step.current, step.result
    reversal = sig.before != 0 and sig.after != 0 and (sig.before > 0) != (sig.after > 0)
    reducing = reversal or abs(sig.after) < abs(sig.before)
    if reducing and book.link is not None:
        assert result.orders, "a provider close always closes some of the copy"
        assert result.orders[0].action in (IntentAction.REDUCE, IntentAction.CLOSE)
    event(f"skip: {result.skip.reason}" if result.skip is not None else "no skip")
    for order in merged_closes(world, result.orders):
        event(f"order: {order.action}")
        link = book.link
        if order.action is IntentAction.OPEN:
            assert link is None, "an open while a link is open: the store refuses a second open link"
            check_open(world, sig, order, view, current)
            book.link = book.new_link(order)
        elif order.action is IntentAction.INCREASE:
            assert link is not None
            assert (order.link_id, order.side) == (link.id, link.side)
            check_open(world, sig, order, view, current)
            book.link = msgspec.structs.replace(link, qty=link.qty + order.qty)
        else:
            assert link is not None
            check_close(sig, order, link, world.instrument.qty_step)
            remaining = link.qty - order.qty
            book.link = None if order.action is IntentAction.CLOSE else msgspec.structs.replace(link, qty=remaining)
        if order.action in OPENING and move.refused:
            # outcomes._correct_link: the refused quantity comes back out; a link left holding nothing is closed.
            assert book.link is not None
            left = book.link.qty - order.qty
            book.link = None if left <= 0 else msgspec.structs.replace(book.link, qty=left)
    opening = abs(sig.after) > abs(sig.before) or reversal
    if view.status is not SubscriptionStatus.ACTIVE and opening:
        assert result.skip is not None
        expected = SkipReason.PAUSED if view.status is SubscriptionStatus.PAUSED else SkipReason.CLOSE_ONLY
        assert result.skip.reason is expected


def fill(world: World, book: Book, move: Move, *, n: int, before_steps: int, after_steps: int) -> None:
    """Plan one provider fill for the follower, check it, and apply it to the follower's link."""
    before, after = world.provider_step * before_steps, world.provider_step * after_steps
    price = world.base_price * (1 + D(move.price_bps) / 10_000)
    losing = -1 if after > 0 else 1  # a long's stop is below the price, a short's above
    stop = None if move.stop_bps is None else price * (1 + losing * D(move.stop_bps) / 10_000)
    sig = Signal(
        trade_id=f"T{n}",
        symbol=SYMBOL,
        side=Side.BUY if after > before else Side.SELL,
        qty=abs(after - before),
        price=price,
        before=before,
        after=after,
        provider_equity=world.provider_equity,
        stop_loss=stop,
    )
    current = quote_at(world, price)
    view = follower_view(world, book, move.status, current)
    result = plan_follower(sig, view, quote=lambda _symbol: current, now=NOW)
    apply(world, book, Step(sig=sig, move=move, view=view, current=current, result=result))
    if after == 0:
        assert book.link is None, "the provider is flat: the follower's link must be closed"
    elif book.link is not None:
        assert book.link.qty > 0
        assert is_multiple_of(book.link.qty, world.instrument.qty_step)
        assert book.link.side is follower_side(world.settings, Side.BUY if after > 0 else Side.SELL)


@hypothesis_settings(max_examples=400)
@given(worlds(), st.lists(moves, min_size=1, max_size=16))
def test_a_follower_tracks_the_provider_within_its_caps_and_is_flat_when_it_is(
    world: World, provider_moves: list[Move]
) -> None:
    book = Book()
    position = 0
    for n, move in enumerate(provider_moves):
        after = next_position(position, move)
        fill(world, book, move, n=n, before_steps=position, after_steps=after)
        position = after
    if position != 0:  # the provider ends flat, whatever the status
        last = msgspec.structs.replace(provider_moves[-1], kind="close", refused=False)
        fill(world, book, last, n=len(provider_moves), before_steps=position, after_steps=0)
    assert book.link is None
