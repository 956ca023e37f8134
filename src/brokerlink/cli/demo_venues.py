"""The demo's two sim broker venues (FX and crypto), run as child processes and linked for the demo users.

Each venue gets one funded account per trading demo user, with random API keys. The venue
configurations (keys included: the venue needs them) live in ``data_dir`` with owner-only
permissions, and their ports are chosen once and kept, because a linked account remembers its
venue's address. The venues keep no state across restarts (a fresh market, fresh balances); the
server reconciles its stored orders and positions with them when it reconnects.

The FX venue authenticates with an API key alone; the crypto venue signs every request with HMAC
(timestamp and receive window), as crypto exchanges do.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Literal

import httpx
import msgspec

from brokerlink.brokers.sim.venue.config import AccountConfig, VenueConfig
from brokerlink.bus.memory import MemoryEventBus
from brokerlink.config import Settings
from brokerlink.domain.copy import StrategyVisibility
from brokerlink.engine.copy.manage import create_strategy, subscribe
from brokerlink.engine.copy.settings import CopySettings, Direction, SizingMode
from brokerlink.engine.links.service import BrokerLinks, NewLink
from brokerlink.kit.clock import SystemClock
from brokerlink.security.vault import Vault
from brokerlink.store.db import Database
from brokerlink.store.repositories.accounts import AccountRepository
from brokerlink.store.repositories.connections import ConnectionRepository
from brokerlink.store.repositories.strategies import StrategyRepository
from brokerlink.store.repositories.subscriptions import SubscriptionRepository
from brokerlink.store.repositories.users import UserRepository


class DemoVenue(msgspec.Struct, frozen=True, kw_only=True):
    """One demo venue: what it is called, where it listens and how it is configured."""

    name: str
    label: str
    port: int
    config: VenueConfig

    @property
    def base_url(self) -> str:
        """Where the venue listens (loopback only)."""
        return f"http://127.0.0.1:{self.port}"

    def account_for(self, email: str) -> AccountConfig:
        """The venue account of a demo user."""
        venue_id = _venue_account_id(self.name, email)
        return next(a for a in self.config.accounts if a.account_id == venue_id)


_VENUES: tuple[tuple[Literal["fx", "crypto"], str, int, str, Decimal, bool], ...] = (
    ("fx", "Sim FX", 8101, "USD", Decimal(100_000), False),
    ("crypto", "Sim Crypto", 8102, "USDT", Decimal(250_000), True),
)
_FILE = "demo-venues.json"
_PR_SET_PDEATHSIG = 1


def _venue_account_id(venue: str, email: str) -> str:
    return f"{venue}-{email.split('@', 1)[0]}".upper()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # As the server will bind it: a port whose last connections linger in TIME_WAIT is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load_or_create(settings: Settings, emails: list[str]) -> list[DemoVenue]:
    """The demo venues on file, or new ones (preferred ports if free, else any free port)."""
    path = settings.data_dir / _FILE
    stored = {v.name: v for v in msgspec.json.decode(path.read_bytes(), type=list[DemoVenue])} if path.exists() else {}
    venues = []
    for name, label, preferred, currency, cash, signed in _VENUES:
        venue = stored.get(name)
        if venue is None:
            config = VenueConfig(instrument_set=name, seed=secrets.randbelow(2**31), accounts=(), signed=signed,
                                 mode="demo")  # fmt: skip
            port = preferred if _port_free(preferred) else _free_port()
            venue = DemoVenue(name=name, label=label, port=port, config=config)
        have = {a.account_id for a in venue.config.accounts}
        # Keep the accounts (and keys) on file; add one for each demo user who has none yet.
        added = tuple(
            AccountConfig(
                account_id=_venue_account_id(name, email),
                api_key=f"{name}-{secrets.token_urlsafe(12)}",
                api_secret=secrets.token_urlsafe(24),
                cash=cash,
                currency=currency,
            )
            for email in sorted(emails)
            if _venue_account_id(name, email) not in have
        )
        config = msgspec.structs.replace(venue.config, accounts=venue.config.accounts + added)
        venues.append(msgspec.structs.replace(venue, config=config))
    if stored and all(stored.get(v.name) == v for v in venues):
        return venues
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(msgspec.json.format(msgspec.json.encode(venues)))
    return venues


@contextlib.contextmanager
def running(settings: Settings, venues: list[DemoVenue], *, attempts: int = 120) -> Iterator[None]:
    """Run each venue as a ``brokerlink sim serve`` child process until the block ends."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for venue in venues:
            if not _port_free(venue.port):
                raise RuntimeError(f"port {venue.port} for the {venue.name} sim venue is in use")
            config_path = settings.data_dir / f"demo-venue-{venue.name}.json"
            fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(msgspec.json.encode(venue.config))
            command = [sys.executable, "-m", "brokerlink.cli.main", "sim", "serve", "--config", str(config_path),
                       "--port", str(venue.port), "--log-level", "warning"]  # fmt: skip
            procs.append(
                subprocess.Popen(  # noqa: S603 - our own command
                    command,
                    stdout=subprocess.DEVNULL,
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509 - no threads yet
                )
            )
        for venue, proc in zip(venues, procs, strict=True):
            _wait_listening(venue, proc, attempts)
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _die_with_parent() -> None:
    """In the venue's process before it runs (Linux): SIGTERM it when the demo dies, even by SIGKILL,
    when no ``finally`` of ours runs. Without it the venues outlive a killed demo and keep its ports."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_listening(venue: DemoVenue, proc: subprocess.Popen[bytes], attempts: int) -> None:
    for _ in range(attempts):  # bounded: attempts x 0.25 s
        if proc.poll() is not None:
            raise RuntimeError(f"the {venue.name} sim venue exited with {proc.returncode}")
        with contextlib.suppress(httpx.TransportError):
            httpx.get(f"{venue.base_url}/api/v1/instruments", timeout=2)
            return  # any HTTP answer (401 without a key) means it is serving
        time.sleep(0.25)
    raise RuntimeError(f"the {venue.name} sim venue did not start on port {venue.port}")


async def link_all(settings: Settings, venues: list[DemoVenue], emails: list[str]) -> int:
    """Link every demo user's account at every venue, unless already linked. Returns how many were new."""
    database = Database.from_settings(settings)
    linked = 0
    try:
        async with MemoryEventBus() as bus:
            links = BrokerLinks(database, bus, Vault.from_settings(settings), SystemClock())
            try:
                for email in emails:
                    async with database.session() as session:
                        user = await UserRepository(session).get_by_email(email)
                        if user is None:
                            raise RuntimeError(f"demo user {email} was not seeded")
                        existing = {c.label for c in await ConnectionRepository(session).list_for_user(user.id)}
                    for venue in venues:
                        if venue.label in existing:
                            continue
                        account = venue.account_for(email)
                        credentials = {"api_key": account.api_key}
                        if venue.config.signed:
                            credentials["api_secret"] = account.api_secret
                        request = NewLink(broker="sim", label=venue.label, base_url=venue.base_url,
                                          credentials=credentials, venue_account_id=account.account_id)  # fmt: skip
                        await links.link(user.id, request)
                        linked += 1
            finally:
                await links.stop()
    finally:
        await database.dispose()
    return linked


def venue_paths(settings: Settings) -> list[Path]:
    """Files the demo venues keep in ``data_dir``."""
    return [settings.data_dir / _FILE, *(settings.data_dir / f"demo-venue-{n}.json" for n, *_ in _VENUES)]


# (follower, venue) -> settings: each demo follower copies differently, on both venues.
_FOLLOWER_SETTINGS: dict[str, dict[str, CopySettings]] = {
    "alice@example.com": {
        "fx": CopySettings(sizing=SizingMode.EQUITY_RATIO),
        "crypto": CopySettings(sizing=SizingMode.EQUITY_RATIO),
    },
    "bob@example.com": {
        "fx": CopySettings(sizing=SizingMode.FIXED_QTY, fixed_qty=Decimal("0.05")),
        "crypto": CopySettings(sizing=SizingMode.FIXED_QTY, fixed_qty=Decimal("0.01000")),
    },
    "carol@example.com": {
        "fx": CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=Decimal("0.5"), direction=Direction.REVERSED),
        "crypto": CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=Decimal("0.5"), direction=Direction.REVERSED),
    },
    "dave@example.com": {
        "fx": CopySettings(sizing=SizingMode.EQUITY_RATIO, copy_stop_loss_pct=Decimal("0.5")),
        "crypto": CopySettings(sizing=SizingMode.EQUITY_RATIO, copy_stop_loss_pct=Decimal("0.5")),
    },
}
_STRATEGY_NAMES = {"fx": "Pat's FX Trend", "crypto": "Pat's Crypto Momentum"}


async def seed_copy_trading(settings: Settings, provider: str) -> list[str]:
    """Pat publishes a strategy on each sim account; each follower subscribes with its own settings.

    Idempotent: what exists is kept. Returns a line per strategy for the console.
    """
    database = Database.from_settings(settings)
    lines: list[str] = []
    try:
        async with database.session() as session:
            users = UserRepository(session)
            pat = await users.get_by_email(provider)
            if pat is None:
                raise RuntimeError(f"demo user {provider} was not seeded")
            listing = await AccountRepository(session).list_with_connections(pat.id)
            mine = {s.name: s for s in await StrategyRepository(session).list_for_user(pat.id)}
            now = SystemClock().now()
            for venue, name in _STRATEGY_NAMES.items():
                account = next((a for a in listing if a.connection_label == _label(venue)), None)
                if account is None:
                    continue
                strategy = mine.get(name) or await create_strategy(
                    session, provider_user_id=pat.id, account_id=account.id, name=name,
                    description="A demo bot trading the sim venue.", visibility=StrategyVisibility.PUBLIC, now=now,
                )  # fmt: skip
                followers = 0
                for email, by_venue in _FOLLOWER_SETTINGS.items():
                    user = await users.get_by_email(email)
                    if user is None:
                        continue
                    theirs = await AccountRepository(session).list_with_connections(user.id)
                    target = next((a for a in theirs if a.connection_label == _label(venue)), None)
                    if target is None:
                        continue
                    live = await SubscriptionRepository(session).list_for_account(target.id)
                    if not any(s.strategy_id == strategy.id for s in live):
                        await subscribe(session, follower_user_id=user.id, strategy_id=strategy.id,
                                        account_id=target.id, settings=by_venue[venue], now=now)  # fmt: skip
                    followers += 1
                lines.append(f"{name} ({account.connection_label}): {followers} followers")
            await session.commit()
    finally:
        await database.dispose()
    return lines


def _label(venue: str) -> str:
    return next(label for name, label, *_ in _VENUES if name == venue)
