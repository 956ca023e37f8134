"""The demo's strategy provider: a bot that trades one user's linked accounts, so copies happen live.

It is a client of the same order path as a person (``place_order``), never a shortcut: its
fills reach the copy engine exactly as a real provider's would. Each step picks one of the
user's connected accounts and one of a few liquid symbols, looks at the position, and opens,
adds to, partly closes, closes or reverses it with a market order of a few quantity steps.
Started only when ``BROKERLINK_DEMO_BOT_EMAIL`` is set (``brokerlink demo`` sets it).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from decimal import Decimal

from brokerlink.domain.enums import Side
from brokerlink.domain.models import Instrument
from brokerlink.engine.links.orders import OrderTicket, place_order
from brokerlink.engine.links.service import BrokerLinks
from brokerlink.kit.errors import BrokerlinkError
from brokerlink.kit.money import round_down_to_step
from brokerlink.logs import get_logger
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.positions import PositionRepository
from brokerlink.store.repositories.users import UserRepository

_log = get_logger("brokerlink.demo_bot")

SYMBOLS = ("EUR/USD", "GBP/USD", "USD/JPY", "BTC/USDT", "ETH/USDT", "SOL/USDT")
"""What the bot trades, where the account's broker lists it."""
_STEPS = (1, 2, 3, 5, 8)


class DemoBot:
    """Trades ``email``'s accounts every ``interval_s`` seconds on average until stopped."""

    def __init__(self, links: BrokerLinks, email: str, *, interval_s: float, seed: int | None = None) -> None:
        self.links = links
        self.email = email
        self.interval_s = interval_s
        self._rng = random.Random(seed)  # noqa: S311 - a demo's dice, not secrecy
        self._task: asyncio.Task[None] | None = None
        self.trades = 0

    def start(self) -> None:
        """Start trading in the background."""
        self._task = asyncio.create_task(self._run(), name="demo-bot")

    async def stop(self) -> None:
        """Stop trading."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._rng.uniform(0.5, 1.5) * self.interval_s)
            try:
                await self.step()
            except BrokerlinkError as exc:  # a refusal or an outage: the next step tries again
                _log.info("demo_bot_step_failed", error=str(exc))

    async def step(self) -> bool:
        """Make one trade if an account is connected; returns whether an order was placed."""
        async with self.links.database.session() as session:
            user = await UserRepository(session).get_by_email(self.email)
            if user is None:
                return False
            accounts = [a for a in await AccountRepository(session).list_for_user(user.id) if self.links.is_live(a.id)]
        if not accounts:
            return False
        account = self._rng.choice(accounts)
        live = self.links.live(account.id)
        listed = [live.instruments[s] for s in SYMBOLS if s in live.instruments]
        if not listed:
            return False
        instrument = self._rng.choice(listed)
        async with self.links.database.session() as session:
            position = await PositionRepository(session).get(account.id, instrument.symbol)
        held = position.qty if position is not None else Decimal(0)
        side, qty = self._decide(instrument, held)
        await place_order(self.links, account.id, OrderTicket(symbol=instrument.symbol, side=side, qty=qty))
        self.trades += 1
        _log.info("demo_bot_traded", account_id=account.id, symbol=instrument.symbol, side=side.value, qty=str(qty))
        return True

    def _decide(self, instrument: Instrument, held: Decimal) -> tuple[Side, Decimal]:
        """Open or add (flat or 45%), partly close (30%), close (15%) or reverse (10%)."""
        unit = max(instrument.min_qty, instrument.qty_step)
        some = unit * self._rng.choice(_STEPS)
        if not held:
            return self._rng.choice((Side.BUY, Side.SELL)), some
        closing = Side.SELL if held > 0 else Side.BUY
        roll = self._rng.random()
        if roll < 0.45:
            return (Side.BUY if held > 0 else Side.SELL), some
        if roll < 0.75:
            part = round_down_to_step(abs(held) * Decimal("0.5"), instrument.qty_step)
            return closing, part if part >= instrument.min_qty else abs(held)
        if roll < 0.9:
            return closing, abs(held)
        return closing, abs(held) + some
