"""Sim accounts: cash, netting or hedging positions, margin, commissions and currency conversion.

**Currencies.** Positions and their P&L live in the instrument's quote currency and are exact
(:mod:`brokerlink.domain.positions`; each position is held with its exact cost basis). Cash lives in
the account currency. Anything crossing from one to the other goes through the explicit rate source
``rates(source, target)`` (target units per source unit, e.g. ``rates("JPY", "USD") == 1 / USDJPY``),
called at the moment of the conversion: realized P&L and commissions at the fill, unrealized P&L and
margin whenever they are read.

**Rounding** (all named, all in the account currency's minor unit: cents, whole yen):

- Cash postings (commissions, realized P&L) round half-even (:data:`CASH_ROUNDING`), because cash is
  what the ledger books to the cent. Realized P&L carries its remainder: each fill posts
  ``round(cumulative exact realized) - posted so far``, so cash never drifts from the exact total by
  more than half a unit, however many fills. Commissions are separate charges, each rounded.
- Margin rounds up (:data:`MARGIN_ROUNDING`): a requirement is never understated.
- Equity rounds half-even; free margin = equity - margin used (both already on the grid); buying
  power rounds down.

**Margin.** Used margin = sum over open positions of ``|qty| * mark * contract_size / leverage``
(leverage of the asset class), converted and rounded once for the whole account. Marks are close-out
prices: a long at the bid, a short at the ask (the last fill price until a quote arrives). Hedged
positions are margined gross: opposite positions in one symbol do not offset.

**Pre-trade check.** :meth:`SimAccount.check_order` accepts an order when the margin for the part
that opens exposure, priced at the order price, plus its commission, is at most the free margin.
An order that only reduces exposure is never refused for funds: a margin-called account must be
able to close. Fills themselves are always booked (the trade has happened).

**Hedging mode.** Each position has an id. A fill without ``position_id`` opens a new position; with
a position id it adds to that position (same side: the later fills of the same order) or reduces it
(opposite side, never beyond its size: no flips); with ``position_id=FIFO`` it closes the oldest
opposite positions of the symbol first, and never more than they hold. In netting mode the
position id is the symbol (``None`` means the same; any other id, ``FIFO`` included, is refused) and a fill
nets against it, possibly flipping it.

Cash-settled throughout: crypto and equities are margined positions in the quote currency, like
CFDs; no base-currency balance is held.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import (
    ROUND_CEILING,
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from types import MappingProxyType
from typing import Final, NamedTuple

import msgspec

from brokerlink.brokers.sim.instruments import COMMISSIONS, LEVERAGE, CommissionSchedule, Liquidity, commission
from brokerlink.domain import positions
from brokerlink.domain.enums import AccountMode, AssetClass, Side
from brokerlink.domain.models import Balance, Fill, Instrument, Position, Quote
from brokerlink.kit.clock import Clock
from brokerlink.kit.errors import Conflict, InvalidInput, NotFound, Unavailable
from brokerlink.kit.money import to_decimal

RateSource = Callable[[str, str], Decimal]
"""``rates(source, target)``: target-currency units per one source-currency unit (a positive Decimal)."""

FIFO: Final = "fifo"
"""``position_id`` for a hedging fill that closes the oldest opposite positions of the symbol first."""

CASH_ROUNDING: Final = ROUND_HALF_EVEN
"""Cash postings (commission, realized P&L) and equity: unbiased over many fills."""
MARGIN_ROUNDING: Final = ROUND_CEILING
"""Margin requirements: never understated."""
BUYING_POWER_ROUNDING: Final = ROUND_FLOOR
"""Buying power: never overstated."""

CURRENCY_DECIMALS: Mapping[str, int] = MappingProxyType({"JPY": 0, "KRW": 0, "HUF": 0, "BTC": 8, "ETH": 8})
"""Minor-unit decimals of account currencies that do not have two (ISO 4217; coins at the usual 8)."""

# Wide enough that converting and dividing by leverage round far below the minor unit, before the one named rounding.
_WIDE = Context(prec=60, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])
_ZERO = Decimal(0)


class InsufficientFunds(Conflict):
    """The order needs more than the free margin; ``extra`` has ``required``, ``available`` and ``currency``."""

    code = "insufficient_funds"
    title = "Insufficient funds"


class OpenPosition(msgspec.Struct, frozen=True, kw_only=True):
    """A position and its id (the symbol in netting mode, a generated id in hedging mode)."""

    id: str
    position: Position


class FillBooking(msgspec.Struct, frozen=True, kw_only=True):
    """What booking one fill did to the account; amounts in the account currency, on its minor-unit grid."""

    trade_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    liquidity: Liquidity
    commission: Decimal
    realized_pnl: Decimal
    """The realized P&L posted to cash by this fill (with the carried rounding remainder)."""
    currency: str
    cash: Decimal
    """Cash after the fill."""
    position_ids: tuple[str, ...]
    """The positions the fill opened, increased, reduced or closed, in the order it touched them."""


class _Leg(NamedTuple):
    position_id: str
    qty: Decimal
    opens: bool


class SimAccount:
    """One sim account. Not thread-safe: the venue serializes access (one event loop)."""

    def __init__(
        self,
        account_id: str,
        currency: str,
        *,
        cash: Decimal,
        clock: Clock,
        mode: AccountMode = AccountMode.NETTING,
        rates: RateSource | None = None,
        leverage: Mapping[AssetClass, Decimal] = LEVERAGE,
        commissions: Mapping[AssetClass, CommissionSchedule] = COMMISSIONS,
        buying_power_class: AssetClass | None = None,
    ) -> None:
        self.account_id = account_id
        self.currency = currency
        self.mode = mode
        self._clock = clock
        self._rates = rates
        self._leverage = dict(leverage)
        self._commissions = dict(commissions)
        if any(not lev.is_finite() or lev <= 0 for lev in self._leverage.values()):
            raise InvalidInput("leverage: every value must be positive")
        # Buying power is free margin times one leverage; by default the lowest, so it is good in any class.
        self._buying_power_leverage = (
            self._leverage[buying_power_class] if buying_power_class else min(self._leverage.values(), default=_ZERO)
        )
        self._unit = Decimal(1).scaleb(-CURRENCY_DECIMALS.get(currency, 2))
        self._cash = self._on_grid("cash", cash)
        # Each position with its exact cost basis; insertion order is opening order: FIFO relies on it.
        self._positions: dict[str, positions.Holding] = {}
        self._instruments: dict[str, Instrument] = {}
        self._quotes: dict[str, Quote] = {}
        self._last_price: dict[str, Decimal] = {}
        self._trade_ids: set[str] = set()
        self._realized_exact = _ZERO
        self._realized_posted = _ZERO
        self._fees_posted = _ZERO
        self._next_position = 0

    # --- money helpers ----------------------------------------------------------------------------

    def _on_grid(self, name: str, amount: Decimal) -> Decimal:
        amount = to_decimal(amount)
        if amount < 0 or amount != amount.quantize(self._unit, context=_WIDE):
            raise InvalidInput(f"{name}: {amount} is not a non-negative amount in whole {self._unit} {self.currency}")
        return amount

    def _round(self, amount: Decimal, rounding: str) -> Decimal:
        return amount.quantize(self._unit, rounding=rounding, context=_WIDE)

    def rate(self, source: str) -> Decimal:
        """Account-currency units per unit of ``source``, from the rate source (1 for the account currency)."""
        if source == self.currency:
            return Decimal(1)
        if self._rates is None:
            raise Unavailable(f"no rate source to convert {source} to {self.currency}", extra={"from": source})
        rate = to_decimal(self._rates(source, self.currency))  # refuses a float from a careless callback
        if rate <= 0:
            raise InvalidInput(f"rate {source}->{self.currency} must be positive, got {rate}")
        return rate

    def _leverage_of(self, instrument: Instrument) -> Decimal:
        try:
            return self._leverage[instrument.asset_class]
        except KeyError:
            raise InvalidInput(f"no leverage for asset class {instrument.asset_class}") from None

    def _margin_exact(self, instrument: Instrument, qty: Decimal, price: Decimal) -> Decimal:
        rate, leverage = self.rate(instrument.quote), self._leverage_of(instrument)
        with localcontext(_WIDE):
            # Multiply first, divide once: the only inexact step is 60 digits deep, far below a cent.
            return instrument.notional(qty, price) * rate / leverage

    def commission(self, instrument: Instrument, qty: Decimal, price: Decimal, liquidity: Liquidity) -> Decimal:
        """The commission of a fill, converted to the account currency and rounded half-even to its unit."""
        try:
            schedule = self._commissions[instrument.asset_class]
        except KeyError:
            return _ZERO  # no schedule for the class: commission-free by configuration
        fee = commission(schedule, instrument, qty, price, liquidity)
        return self._round(_WIDE.multiply(fee, self.rate(instrument.quote)), CASH_ROUNDING)

    # --- marks and derived figures --------------------------------------------------------------------

    def update_quote(self, quote: Quote) -> None:
        """Take a new quote: positions in its symbol are marked at it from now on."""
        self._quotes[quote.symbol] = quote

    def _mark_price(self, position: Position) -> Decimal:
        quote = self._quotes.get(position.symbol)
        if quote is None:
            return self._last_price[position.symbol]
        return quote.bid if position.qty > 0 else quote.ask

    def _open(self) -> list[tuple[str, positions.Holding]]:
        return [(pid, held) for pid, held in self._positions.items() if not held.position.is_flat]

    def _marked(self, held: positions.Holding) -> Position:
        """The position with its unrealized P&L at its close-out mark, from the exact cost basis (quote currency)."""
        pos = held.position
        return positions.mark(held, self._mark_price(pos), self._instruments[pos.symbol].contract_size).position

    @property
    def cash(self) -> Decimal:
        """Cash in the account currency."""
        return self._cash

    @property
    def realized_pnl(self) -> Decimal:
        """Realized P&L posted to cash so far, in the account currency."""
        return self._realized_posted

    @property
    def fees(self) -> Decimal:
        """Commissions charged so far, in the account currency."""
        return self._fees_posted

    @property
    def unrealized_pnl(self) -> Decimal:
        """Unrealized P&L of the open positions at their close-out marks, converted, unrounded."""
        total = _ZERO
        for _, held in self._open():
            marked = self._marked(held)
            rate = self.rate(self._instruments[marked.symbol].quote)
            total = _WIDE.add(total, _WIDE.multiply(marked.unrealized_pnl, rate))
        return total

    @property
    def equity(self) -> Decimal:
        """Cash plus unrealized P&L, rounded half-even to the account currency's unit."""
        return self._round(_WIDE.add(self._cash, self.unrealized_pnl), CASH_ROUNDING)

    @property
    def margin_used(self) -> Decimal:
        """Margin held by the open positions, rounded up to the unit."""
        total = _ZERO
        for _, held in self._open():
            pos = held.position
            margin = self._margin_exact(self._instruments[pos.symbol], pos.qty, self._mark_price(pos))
            total = _WIDE.add(total, margin)
        return self._round(total, MARGIN_ROUNDING)

    @property
    def free_margin(self) -> Decimal:
        """Equity minus used margin (negative when the account is under water)."""
        return self.equity - self.margin_used

    @property
    def buying_power(self) -> Decimal:
        """Free margin times the buying-power leverage, rounded down; zero when free margin is negative."""
        return self._round(max(self.free_margin, _ZERO) * self._buying_power_leverage, BUYING_POWER_ROUNDING)

    # --- cash movements -------------------------------------------------------------------------------

    def deposit(self, amount: Decimal) -> Decimal:
        """Add cash (already on the unit grid); returns the new cash."""
        self._cash += self._on_grid("amount", amount)
        return self._cash

    def withdraw(self, amount: Decimal) -> Decimal:
        """Take cash out, at most the free margin; returns the new cash."""
        amount = self._on_grid("amount", amount)
        available = self.free_margin
        if amount > available:
            raise self._insufficient(amount, available, "withdrawal")
        self._cash -= amount
        return self._cash

    def _insufficient(self, required: Decimal, available: Decimal, what: str) -> InsufficientFunds:
        return InsufficientFunds(
            f"{what} needs {required} {self.currency}, free margin is {available} {self.currency}",
            extra={"required": str(required), "available": str(available), "currency": self.currency},
        )

    # --- orders and fills -----------------------------------------------------------------------------

    def _plan(self, instrument: Instrument, side: Side, qty: Decimal, position_id: str | None) -> list[_Leg]:
        """Which positions a fill of ``qty`` touches and whether each part opens exposure; validates targets."""
        if not qty.is_finite() or qty <= 0:
            raise InvalidInput(f"qty: must be positive, got {qty}", extra={"field": "qty"})
        known = self._instruments.get(instrument.symbol)
        if known is not None and known != instrument:
            raise InvalidInput(f"{instrument.symbol}: not the instrument this account holds positions in")
        if self.mode is AccountMode.NETTING:
            return self._plan_netting(instrument.symbol, qty * side.sign, position_id)
        return self._plan_hedging(instrument.symbol, qty * side.sign, position_id)

    def _plan_netting(self, symbol: str, signed: Decimal, position_id: str | None) -> list[_Leg]:
        if position_id not in (None, symbol):
            raise InvalidInput(f"position_id: a netting account has one position per symbol ({symbol!r})")
        qty = abs(signed)
        held = self._positions[symbol].position.qty if symbol in self._positions else _ZERO
        if held * signed >= 0:
            return [_Leg(symbol, qty, opens=True)]
        # Reducing: only the part beyond the held size (a flip) opens new exposure.
        closing = min(qty, abs(held))
        legs = [_Leg(symbol, closing, opens=False)]
        return [*legs, _Leg(symbol, qty - closing, opens=True)] if qty > closing else legs

    def _plan_hedging(self, symbol: str, signed: Decimal, position_id: str | None) -> list[_Leg]:
        qty = abs(signed)
        if position_id is None:
            return [_Leg(f"{self.account_id}-{self._next_position + 1}", qty, opens=True)]
        if position_id == FIFO:
            legs, left = [], qty
            for pid, holding in self._open():
                held = holding.position
                if left and held.symbol == symbol and held.qty * signed < 0:
                    take = min(left, abs(held.qty))
                    legs.append(_Leg(pid, take, opens=False))
                    left -= take
            if left:
                raise InvalidInput(f"FIFO close of {qty} {symbol}: only {qty - left} open on the other side")
            return legs
        target = self._positions[position_id].position if position_id in self._positions else None
        if target is None or target.symbol != symbol:
            raise NotFound(f"no open {symbol} position {position_id!r}", extra={"position_id": position_id})
        if target.qty * signed > 0:
            return [_Leg(position_id, qty, opens=True)]
        if qty > abs(target.qty):
            raise InvalidInput(f"closing {qty} of position {position_id!r} which holds {abs(target.qty)}")
        return [_Leg(position_id, qty, opens=False)]

    def check_order(
        self,
        instrument: Instrument,
        side: Side,
        qty: Decimal,
        price: Decimal,
        *,
        position_id: str | None = None,
        liquidity: Liquidity = Liquidity.TAKER,
    ) -> Decimal:
        """Pre-trade check; returns the amount the order needs (margin plus commission, zero if it only reduces).

        ``price`` is the price the order is expected to fill at (its limit, or the touch for a market
        order). Raises :class:`InsufficientFunds` when the amount exceeds the free margin, and
        :class:`~brokerlink.kit.errors.InvalidInput` or :class:`~brokerlink.kit.errors.NotFound` for a
        position target the fill could not be booked against.
        """
        if not price.is_finite() or price <= 0:
            raise InvalidInput(f"price: must be positive, got {price}", extra={"field": "price"})
        opened = sum((leg.qty for leg in self._plan(instrument, side, qty, position_id) if leg.opens), _ZERO)
        if not opened:
            return _ZERO
        margin = self._round(self._margin_exact(instrument, opened, price), MARGIN_ROUNDING)
        required = margin + self.commission(instrument, qty, price, liquidity)
        available = self.free_margin
        if required > available:
            raise self._insufficient(required, available, f"{side} {qty} {instrument.symbol} @ {price}")
        return required

    def apply_fill(
        self,
        instrument: Instrument,
        side: Side,
        qty: Decimal,
        price: Decimal,
        *,
        trade_id: str,
        liquidity: Liquidity = Liquidity.TAKER,
        position_id: str | None = None,
    ) -> FillBooking:
        """Book a fill: positions, realized P&L and commission into cash. No funds check: it has happened.

        Raises :class:`~brokerlink.kit.errors.Conflict` for a trade id already booked, and the errors of
        :meth:`check_order` for an impossible position target.
        """
        if trade_id in self._trade_ids:
            raise Conflict(f"trade {trade_id!r} is already booked", extra={"trade_id": trade_id})
        if not price.is_finite() or price <= 0:
            raise InvalidInput(f"price: must be positive, got {price}", extra={"field": "price"})
        legs = self._plan(instrument, side, qty, position_id)
        rate = self.rate(instrument.quote)
        fee = self.commission(instrument, qty, price, liquidity)
        self._instruments[instrument.symbol] = instrument
        realized_quote = _ZERO
        touched: list[str] = []
        for leg in legs:
            pid = leg.position_id
            if pid not in self._positions:
                if self.mode is AccountMode.HEDGING:
                    self._next_position += 1  # _plan peeked at this id; now it is taken
                flat = Position(account_id=self.account_id, symbol=instrument.symbol)
                self._positions[pid] = positions.Holding(position=flat)
            before = self._positions[pid]
            fill = Fill(
                trade_id=trade_id,
                order_id=None,
                client_order_id=None,
                account_id=self.account_id,
                symbol=instrument.symbol,
                side=side,
                qty=leg.qty,
                price=price,
                ts=self._clock.now(),
            )
            after = positions.apply_fill(before, fill, contract_size=instrument.contract_size)
            realized_quote = _WIDE.add(
                realized_quote, _WIDE.subtract(after.position.realized_pnl, before.position.realized_pnl)
            )
            if after.position.is_flat and self.mode is AccountMode.HEDGING:
                del self._positions[pid]  # a closed hedge position is gone; its P&L is in cash
            else:
                self._positions[pid] = after
            if pid not in touched:
                touched.append(pid)
        # Post the change in the rounded cumulative total, so rounding remainders carry instead of piling up.
        self._realized_exact = _WIDE.add(self._realized_exact, _WIDE.multiply(realized_quote, rate))
        posted = self._round(self._realized_exact, CASH_ROUNDING) - self._realized_posted
        self._realized_posted += posted
        self._fees_posted += fee
        self._cash += posted - fee
        self._last_price[instrument.symbol] = price
        self._trade_ids.add(trade_id)
        return FillBooking(
            trade_id=trade_id,
            symbol=instrument.symbol,
            side=side,
            qty=qty,
            price=price,
            liquidity=liquidity,
            commission=fee,
            realized_pnl=posted,
            currency=self.currency,
            cash=self._cash,
            position_ids=tuple(touched),
        )

    # --- reports --------------------------------------------------------------------------------------

    def open_positions(self) -> list[OpenPosition]:
        """Open positions with their ids, oldest first, marked at their close-out prices (quote currency)."""
        return [OpenPosition(id=pid, position=self._marked(held)) for pid, held in self._open()]

    def snapshot(self) -> tuple[Balance, list[Position]]:
        """The balance now and the open positions (one per symbol in netting mode, one per id in hedging)."""
        balance = Balance(
            account_id=self.account_id,
            currency=self.currency,
            cash=self._cash,
            equity=self.equity,
            buying_power=self.buying_power,
            margin_used=self.margin_used,
            ts=self._clock.now(),
        )
        return balance, [entry.position for entry in self.open_positions()]
