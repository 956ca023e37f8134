"""Crash test: the copy engine in a subprocess, SIGKILLed again and again during fan-out.

The venue runs in this process (a real sim venue on loopback); the engine runs in
``crash_worker`` (links and engine wired as the app's lifespan wires them, on a SQLite file and
a vault key file in one data directory). The provider trades at the venue directly, through an
adapter of their own venue account (an order placed outside brokerlink), so the provider's fills
reach the store only through the worker's link. Once a fill is in the store, the worker is
killed after a seeded random delay (often none), while the engine consumes it, writes the
outbox, or hands the copies to the followers' adapters; some kills land while a restarted
worker replays the outbox. After every restart the worker is left to finish what the kill
interrupted, and then each copy intent so far has exactly one order at its follower's venue
account, filled, no ``cp-`` order there lacks an intent, and nothing was skipped (these
settings copy every trade). After the last round the provider is flat, and:

- every copy intent has exactly one order at the follower's venue account, under its client
  order id, whose fills there sum to the intent's quantity (never more);
- there is exactly one intent per (subscription, provider execution, action), its client order
  id is the deterministic one, and no ``cp-`` order at the venue lacks an intent;
- every provider execution was consumed exactly once (one signal per trade id);
- each follower's venue position is what its open copy links say, and flat, like the provider.

Kills land once the provider's fill is in the store, never between the venue's fill and its
arrival: a provider fill made while no engine runs (or lost with a killed one) never reaches the
store today (the adapter's stream starts at the venue's latest fill; recovery reads back the fills
of orders brokerlink placed only), which is a gap of its own, not what this test is about.

Figures (kills that landed mid fan-out, and where) are printed with ``-s`` and recorded as test
properties. ``BROKERLINK_CRASH_SEED`` and ``BROKERLINK_CRASH_ROUNDS`` change the run.
Every wait is bounded; the worker is always killed in ``finally``; everything is on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import httpx
import msgspec
import pytest
from sqlalchemy import select

from brokerlink.brokers.backoff import Backoff
from brokerlink.brokers.base import AdapterConfig, BrokerAdapter, BrokerRateLimited, Credentials, OrderRequest
from brokerlink.brokers.sim.adapter import SimAdapter, StreamSettings
from brokerlink.brokers.sim.wire import API_PREFIX, HEADER_API_KEY, OrderBody
from brokerlink.bus.memory import MemoryEventBus
from brokerlink.config import Settings
from brokerlink.domain.copy import CopyEventKind, IntentStatus, StrategyVisibility
from brokerlink.domain.enums import OrderType, Side
from brokerlink.domain.models import Account
from brokerlink.engine.copy.ids import copy_client_order_id
from brokerlink.engine.copy.manage import create_strategy, subscribe
from brokerlink.engine.copy.settings import CopySettings, Direction, SizingMode
from brokerlink.engine.links.service import BrokerLinks
from brokerlink.kit.clock import SystemClock
from brokerlink.security.vault import Vault
from brokerlink.store.db import Database
from brokerlink.store.migrate import upgrade
from brokerlink.store.models import CopyEventRow, CopyIntentRow, CopyLinkRow, CopySignalRow, FillRow, OrderRow
from brokerlink.store.repositories.users import UserRepository
from tests.contract.harness import SimHarness, sim_venue
from tests.engine.copy.crash_worker import READY
from tests.links_fixtures import new_link

pytestmark = pytest.mark.e2e

SEED = int(os.environ.get("BROKERLINK_CRASH_SEED", "20240607"))
ROUNDS = int(os.environ.get("BROKERLINK_CRASH_ROUNDS", "10"))
SYMBOL = "EUR/USD"
STEP = Decimal("0.01")
MAX_HELD = Decimal("0.60")
REPO = Path(__file__).resolve().parents[3]
FOLLOWER_SETTINGS = (
    CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=Decimal(1)),
    CopySettings(sizing=SizingMode.FIXED_QTY, fixed_qty=Decimal("0.05")),
    CopySettings(sizing=SizingMode.MULTIPLIER, multiplier=Decimal(1), direction=Direction.REVERSED),
)
_IN_FLIGHT = (IntentStatus.PENDING.value, IntentStatus.SENT.value, IntentStatus.ACKNOWLEDGED.value)
_READY_WAIT_S = 30.0
_FILL_WAIT_S = 10.0
_QUIET_WAIT_S = 30.0


# --- the provider's trades: opens, adds, partial closes, closes, reversals; flat at the end ---------


def _qty(rng: random.Random, low: Decimal, high: Decimal) -> Decimal:
    steps = int((high - low) / STEP)
    return low + STEP * rng.randint(0, max(0, steps))


def _next_trade(rng: random.Random, held: Decimal) -> Decimal:
    """A signed quantity for the provider's next order, given what it holds."""
    if held == 0:
        return _qty(rng, Decimal("0.10"), Decimal("0.40")) * rng.choice((1, -1))
    sign = 1 if held > 0 else -1
    size = abs(held)
    kinds = ["close", "reverse"]
    if size > STEP:
        kinds.append("partial_close")
    if size + Decimal("0.05") <= MAX_HELD:
        kinds.append("add")
    kind = rng.choice(kinds)
    if kind == "add":
        return sign * _qty(rng, Decimal("0.05"), min(Decimal("0.20"), MAX_HELD - size))
    if kind == "partial_close":
        return -sign * _qty(rng, STEP, size - STEP)
    if kind == "close":
        return -sign * size
    return -sign * (size + _qty(rng, Decimal("0.05"), Decimal("0.20")))  # through flat to the other side


def _round_trades(rng: random.Random, held: Decimal, *, last: bool) -> list[Decimal]:
    """One to three trades; the last round ends with the provider flat."""
    trades: list[Decimal] = []
    for _ in range(rng.randint(1, 3)):
        trades.append(_next_trade(rng, held + sum(trades, Decimal(0))))
    after = held + sum(trades, Decimal(0))
    if last and after != 0:
        trades.append(-after)
    return trades


# --- the world: venue accounts linked, strategy and subscriptions stored --------------------------


class World(msgspec.Struct, frozen=True, kw_only=True):
    database: Database
    data_dir: Path
    provider: Account
    followers: list[Account]
    subscriptions: list[str]
    strategy_id: str


async def _user(database: Database, email: str) -> str:
    async with database.session() as session:
        row = await UserRepository(session).create(
            email=email, display_name=email, password_hash="x", now=SystemClock().now()
        )
        await session.commit()
        return row.id


async def _build_world(venue: SimHarness, data_dir: Path) -> World:
    """Link the provider (venue key ``conf-key-1``) and three followers (``conf-key-2`` ...) with
    in-process links on the worker's database and vault key file, publish the strategy, subscribe."""
    settings = Settings(data_dir=data_dir)
    await upgrade(settings.effective_database_url)
    database = Database.from_settings(settings)
    async with MemoryEventBus() as bus:
        links = BrokerLinks(database, bus, Vault.from_settings(settings), SystemClock(), retry_max_s=0.2)
        try:
            accounts = []
            for n, email in enumerate(["provider@example.com", *(f"f{i}@example.com" for i in (1, 2, 3))], start=1):
                user = await _user(database, email)
                link = new_link(venue, credentials={"api_key": f"conf-key-{n}"}, label=f"sim {n}")
                accounts.append(await links.link(user, link))
        finally:
            await links.stop()
    provider, followers = accounts[0], accounts[1:]
    now = SystemClock().now()
    async with database.session() as session:
        strategy = await create_strategy(
            session, provider_user_id=provider.user_id, account_id=provider.id, name="Crash",
            visibility=StrategyVisibility.PUBLIC, now=now,
        )  # fmt: skip
        subscriptions = []
        for follower, settings_ in zip(followers, FOLLOWER_SETTINGS, strict=True):
            sub = await subscribe(
                session, follower_user_id=follower.user_id, strategy_id=strategy.id, account_id=follower.id,
                settings=settings_, now=now,
            )  # fmt: skip
            subscriptions.append(sub.id)
        await session.commit()
    return World(
        database=database, data_dir=data_dir, provider=provider, followers=followers, subscriptions=subscriptions,
        strategy_id=strategy.id,
    )  # fmt: skip


def _venue_adapter(venue: SimHarness, n: int) -> BrokerAdapter:
    """An adapter of venue account ``SIM-CONF-n``, outside brokerlink (the test's own eyes and hands)."""
    config = AdapterConfig(
        account_id=f"acc_crash_{n}",
        venue_account_id=f"SIM-CONF-{n}",
        base_url=venue.base_url,
        credentials=Credentials(values={"api_key": f"conf-key-{n}"}),
    )
    stream = StreamSettings(backoff=Backoff(base_s=0.05, cap_s=0.5), stall_after_s=5.0, connect_timeout_s=5.0)
    return SimAdapter(config, stream=stream, seed=n)


# --- the worker process -----------------------------------------------------------------------------


class Worker:
    """One ``crash_worker`` process: :meth:`spawn` it (it imports, then holds), :meth:`start` it (returns
    once its links are live), kill it."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.data_dir = data_dir
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None
        self.startup_s = 0.0

    async def spawn(self) -> None:
        with self.log.open("wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.engine.copy.crash_worker", "--data-dir", str(self.data_dir), "--hold",
                cwd=REPO, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err,
            )  # fmt: skip

    async def start(self) -> None:
        if self.proc is None:
            await self.spawn()
        assert self.proc is not None
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        began = time.monotonic()
        self.proc.stdin.write(b"go\n")
        await self.proc.stdin.drain()
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout=_READY_WAIT_S)
        except TimeoutError:
            raise AssertionError(f"the worker was not ready within {_READY_WAIT_S} s\n{self.tail()}") from None
        assert line.decode().strip() == READY, f"the worker exited before it was ready\n{self.tail()}"
        self.startup_s = time.monotonic() - began

    async def kill(self) -> None:
        """SIGKILL: no cleanup of any kind runs in the worker."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
        await self._reap()

    async def terminate(self) -> None:
        """SIGTERM (an orderly stop), SIGKILL if it overstays."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout=10)
            except TimeoutError:
                self.proc.kill()
        await self._reap()

    async def _reap(self) -> None:
        if self.proc is not None:
            await asyncio.wait_for(self.proc.wait(), timeout=10)
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            if self.proc.stdout is not None:
                self.proc.stdout.feed_eof()
            self.proc = None

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


# --- reading the store ------------------------------------------------------------------------------


async def _eventually(probe: Callable[[], Awaitable[bool]], what: str, *, within_s: float, every_s: float) -> None:
    for _ in range(int(within_s / every_s)):
        if await probe():
            return
        await asyncio.sleep(every_s)
    raise AssertionError(f"timed out after {within_s} s waiting for {what}")


async def _stored_fill_qty(world: World, client_order_id: str) -> Decimal:
    async with world.database.session() as session:
        rows = await session.execute(
            select(FillRow.qty).where(
                FillRow.account_id == world.provider.id, FillRow.client_order_id == client_order_id
            )
        )
        return sum((q for (q,) in rows), Decimal(0))


class KillReport(msgspec.Struct, kw_only=True):
    """What a kill interrupted, read from the store right after it."""

    unconsumed_fills: int
    """Provider fills in the store with no signal yet (the kill came before or during consumption)."""
    in_flight: int
    """Intents written but not settled: pending, sent or acknowledged."""
    unsent: int
    """Pending intents whose order row does not exist or is still ``pending_new``."""

    @property
    def mid_fan_out(self) -> bool:
        return self.unconsumed_fills > 0 or self.in_flight > 0


async def _inspect(world: World) -> KillReport:
    async with world.database.session() as session:
        traded = set(
            (await session.scalars(select(FillRow.trade_id).where(FillRow.account_id == world.provider.id))).all()
        )
        consumed = set(
            (
                await session.scalars(
                    select(CopySignalRow.provider_trade_id).where(CopySignalRow.strategy_id == world.strategy_id)
                )
            ).all()
        )
        rows = (
            await session.execute(
                select(CopyIntentRow.status, OrderRow.status)
                .outerjoin(
                    OrderRow,
                    (OrderRow.account_id == CopyIntentRow.follower_account_id)
                    & (OrderRow.client_order_id == CopyIntentRow.client_order_id),
                )
                .where(CopyIntentRow.status.in_(_IN_FLIGHT))
            )
        ).all()
    unsent = sum(1 for intent, order in rows if intent == IntentStatus.PENDING.value and order in (None, "pending_new"))
    return KillReport(unconsumed_fills=len(traded - consumed), in_flight=len(rows), unsent=unsent)


async def _quiet(world: World) -> bool:
    """Nothing in flight: every provider fill consumed, every intent settled, no copy order open."""
    report = await _inspect(world)
    if report.mid_fan_out:
        return False
    async with world.database.session() as session:
        open_copies = (
            await session.scalars(
                select(OrderRow.id).where(
                    OrderRow.client_order_id.startswith("cp-"),
                    OrderRow.status.in_(("pending_new", "new", "partially_filled", "pending_cancel")),
                )
            )
        ).all()
    return not open_copies


async def _skips(world: World) -> list[str]:
    async with world.database.session() as session:
        rows = await session.execute(
            select(CopyEventRow.reason, CopyEventRow.detail, CopySignalRow.provider_trade_id)
            .outerjoin(CopySignalRow, CopySignalRow.id == CopyEventRow.signal_id)
            .where(CopyEventRow.kind == CopyEventKind.SKIPPED.value)
        )
        return [f"{trade_id}: {reason} ({detail})" for reason, detail, trade_id in rows]


# --- the venue's side ---------------------------------------------------------------------------


async def _venue_orders(venue: SimHarness, n: int) -> list[OrderBody]:
    """Every order of ``SIM-CONF-n`` (open or not), as the venue reports them (waiting out its rate limit)."""
    async with httpx.AsyncClient(base_url=venue.base_url, timeout=10) as client:
        for _ in range(50):  # bounded: the venue's windows are 1 s
            response = await client.get(
                f"{API_PREFIX}/orders", params={"status": "all"}, headers={HEADER_API_KEY: f"conf-key-{n}"}
            )
            if response.status_code != 429:
                break
            await asyncio.sleep(min(1.0, float(response.headers.get("retry-after") or 0.2)))
    response.raise_for_status()
    return msgspec.json.decode(response.content, type=list[OrderBody])


T = TypeVar("T")


async def _paced(call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, again after the venue's 429 (bounded). The checks read with the provider's API key,
    whose request budget the worker spent until it stopped: a full run once failed here on a 429."""
    for _ in range(50):
        try:
            return await call()
        except BrokerRateLimited as exc:
            await asyncio.sleep(min(1.0, (exc.retry_after_ms or 200) / 1000))
    return await call()


async def _venue_fills_by_coid(adapter: BrokerAdapter) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    cursor: str | None = None
    for _ in range(1000):  # bounded: pages of 500
        page = await _paced(lambda: adapter.fills_since(cursor))  # noqa: B023 - called at once, in this turn
        for fill in page.fills:
            totals[fill.client_order_id or ""] += fill.qty
        if page.next_cursor is None or not page.fills:
            break
        cursor = page.next_cursor
    return totals


async def _venue_position(adapter: BrokerAdapter) -> Decimal:
    return sum((p.qty for p in await _paced(adapter.positions) if p.symbol == SYMBOL), Decimal(0))


async def _orphans_at_venue(world: World, venue: SimHarness) -> list[str]:
    """``cp-`` orders at a follower's venue account that no intent in the store names."""
    async with world.database.session() as session:
        rows = await session.execute(select(CopyIntentRow.follower_account_id, CopyIntentRow.client_order_id))
        known = {(account_id, coid) for account_id, coid in rows}
    orphans: list[str] = []
    for n, follower in enumerate(world.followers, start=2):
        orphans += [
            f"{follower.id}:{body.client_order_id}"
            for body in await _venue_orders(venue, n)
            if body.client_order_id.startswith("cp-") and (follower.id, body.client_order_id) not in known
        ]
    return orphans


async def _settled_after_restart(world: World, venue: SimHarness) -> None:
    """Wait for the restarted engine to finish what the kill interrupted; then each intent so far has
    exactly one order at its follower's venue account, filled, and no venue copy lacks an intent."""
    settled = "the restarted engine to settle everything"
    await _eventually(lambda: _quiet(world), settled, within_s=_QUIET_WAIT_S, every_s=0.05)
    async with world.database.session() as session:
        intents = (await session.scalars(select(CopyIntentRow))).all()
    unfilled = [(i.client_order_id, i.status, i.last_error) for i in intents if i.status != IntentStatus.FILLED.value]
    assert unfilled == [], f"copies that did not fill: {unfilled}"
    # These settings (no caps, no guards, no filters) copy every provider trade: nothing is skipped,
    # whatever the crash interrupted. A skip here is a copy lost to the crash.
    skipped = await _skips(world)
    assert skipped == [], f"copies skipped: {skipped}"
    for n, follower in enumerate(world.followers, start=2):
        planned = {i.client_order_id: i.qty for i in intents if i.follower_account_id == follower.id}
        at_venue = [o for o in await _venue_orders(venue, n) if o.client_order_id.startswith("cp-")]
        assert sorted(o.client_order_id for o in at_venue) == sorted(planned), f"follower {n - 1}"
        assert {o.client_order_id: o.filled_qty for o in at_venue} == planned, f"follower {n - 1}"


# --- the test ---------------------------------------------------------------------------------------


@pytest.fixture
async def venue() -> AsyncIterator[SimHarness]:
    async with sim_venue(extra_accounts=4) as harness:  # SIM-CONF-1 the provider, -2 .. -4 the followers
        yield harness


class CrashRun:
    """The rounds: restart the worker, let it settle, make the provider trade, kill the worker."""

    def __init__(self, world: World, venue: SimHarness, provider: BrokerAdapter, logs: Path) -> None:
        self.world = world
        self.venue = venue
        self.provider = provider
        self.logs = logs
        self.rng = random.Random(SEED)
        self.worker: Worker | None = None
        self.spare: Worker | None = None
        self.spawned = 0
        self.held = Decimal(0)
        self.trades = 0
        self.reports: list[tuple[str, KillReport]] = []
        self.startups: list[float] = []

    async def restart(self) -> Worker:
        """Start the next worker (spawned ahead, so its imports are done), and spawn the one after it."""
        worker = self.spare or self._new_worker()
        self.spare = None
        self.worker = worker
        await worker.start()
        self.startups.append(worker.startup_s)
        self.spare = self._new_worker()
        await self.spare.spawn()
        return worker

    def _new_worker(self) -> Worker:
        self.spawned += 1
        return Worker(self.world.data_dir, self.logs / f"worker-{self.spawned:02d}.log")

    async def close(self) -> None:
        for worker in (self.worker, self.spare):
            if worker is not None:
                await worker.kill()
        self.worker = self.spare = None

    async def round(self, round_no: int) -> None:
        worker = await self.restart()
        kind, previous = self.reports[-1] if self.reports else ("", None)
        last = round_no == ROUNDS - 1
        # Never twice in a row: an intent not sent within 30 s of its signal is given up (an outage).
        if previous is not None and previous.mid_fan_out and kind == "trade" and not last and self.rng.random() < 0.4:
            # Kill the restarted worker while it catches up: it consumes what the kill left unconsumed as it
            # starts, and replays the outbox at its retry loop's first tick, about a second later.
            await asyncio.sleep(self.rng.uniform(0.0, 1.5))
            await self.kill(worker, "replay")
            return
        if previous is not None:
            await self.settle(worker)
        for qty in _round_trades(self.rng, self.held, last=last):
            await self.trade(qty)
        # Kill while the engine consumes the fill and fans it out: at once, or after a random delay.
        choice = self.rng.random()
        delay = 0.0 if choice < 0.35 else self.rng.uniform(0.0, 0.04) if choice < 0.7 else self.rng.uniform(0.0, 0.3)
        await asyncio.sleep(delay)
        await self.kill(worker, "trade")

    async def settle(self, worker: Worker) -> None:
        try:
            await _settled_after_restart(self.world, self.venue)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- the worker's log ({worker.log.name}):\n{worker.tail()}") from None

    async def trade(self, qty: Decimal) -> None:
        """The provider trades at the venue, outside brokerlink; returns once the worker has stored the fill."""
        self.held += qty
        self.trades += 1
        coid = f"prov-{SEED}-{self.trades}"
        order = OrderRequest(
            client_order_id=coid, symbol=SYMBOL, side=Side.BUY if qty > 0 else Side.SELL, qty=abs(qty),
            type=OrderType.MARKET,
        )  # fmt: skip
        await self.provider.submit(order)

        async def stored() -> bool:
            return await _stored_fill_qty(self.world, coid) == order.qty

        await _eventually(stored, f"provider fill {coid} in the store", within_s=_FILL_WAIT_S, every_s=0.002)

    async def kill(self, worker: Worker, kind: str) -> None:
        await worker.kill()
        self.worker = None
        self.reports.append((kind, await _inspect(self.world)))
        assert await _orphans_at_venue(self.world, self.venue) == []  # at every kill: each venue copy has its intent

    def summary(self) -> dict[str, object]:
        kills = [r for _, r in self.reports]
        return {
            "rounds": len(self.reports),
            "provider_trades": self.trades,
            "kills_mid_fan_out": sum(1 for r in kills if r.mid_fan_out),
            "kills_before_consume": sum(1 for r in kills if r.unconsumed_fills),
            "kills_with_intents_in_flight": sum(1 for r in kills if r.in_flight),
            "kills_with_unsent_intents": sum(1 for r in kills if r.unsent),
            "replay_kills": sum(1 for kind, _ in self.reports if kind == "replay"),
            "replay_kills_mid_fan_out": sum(1 for kind, r in self.reports if kind == "replay" and r.mid_fan_out),
            "intents_in_flight_at_kills": sum(r.in_flight for r in kills),
            "worker_startup_s": f"{min(self.startups, default=0):.2f}..{max(self.startups, default=0):.2f}",
        }


async def test_sigkill_during_fan_out_leaves_exactly_one_order_per_copy(
    venue: SimHarness, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    world = await _build_world(venue, tmp_path / "data")
    provider = _venue_adapter(venue, 1)
    await provider.connect()
    run = CrashRun(world, venue, provider, tmp_path)
    try:
        for round_no in range(ROUNDS):
            await run.round(round_no)
        assert run.held == 0, "the trade sequence must end with the provider flat"
        # One more restart, left to finish whatever the last kill interrupted.
        worker = await run.restart()
        await run.settle(worker)
        await worker.terminate()
        run.worker = None
        await _check_exactly_once(world, venue, provider)
    finally:
        await run.close()
        await provider.close()
        await world.database.dispose()
        summary = run.summary()
        for key, value in summary.items():
            record_property(key, value)
        print(f"crash test (seed {SEED}): {summary}")  # the figures, shown with -s


async def _check_exactly_once(world: World, venue: SimHarness, provider: BrokerAdapter) -> None:
    async with world.database.session() as session:
        intents = (await session.scalars(select(CopyIntentRow))).all()
        signals = {s.id: s for s in (await session.scalars(select(CopySignalRow))).all()}
        provider_trades = (
            await session.scalars(select(FillRow.trade_id).where(FillRow.account_id == world.provider.id))
        ).all()
        open_links = (await session.scalars(select(CopyLinkRow).where(CopyLinkRow.status == "open"))).all()
    assert intents, "no copy was made at all"
    assert await _skips(world) == []

    # One signal per provider execution, and every execution the venue made for the provider has one.
    consumed = Counter(s.provider_trade_id for s in signals.values())
    assert [t for t, n in consumed.items() if n > 1] == []
    assert set(consumed) == set(provider_trades)
    venue_provider_trades = await _venue_fills_by_coid(provider)
    assert sum(venue_provider_trades.values()) == sum(  # the venue's provider fills are all in the store
        (s.qty for s in signals.values()), Decimal(0)
    )

    # One intent per (subscription, provider execution, action), under the deterministic client order id
    # (these quantities are far below the venue's maximum: no close is split into parts).
    keys: Counter[tuple[str, str, str]] = Counter()
    for intent in intents:
        signal_ = signals[intent.signal_id] if intent.signal_id else None
        assert signal_ is not None, f"intent {intent.id} has no signal"
        keys[intent.subscription_id, signal_.provider_trade_id, intent.action] += 1
        expected = copy_client_order_id(intent.subscription_id, signal_.provider_trade_id, intent.action)
        assert intent.client_order_id == expected
    assert [k for k, n in keys.items() if n > 1] == []

    # Each intent: exactly one order at the venue under its client order id, filled exactly once.
    assert {i.status for i in intents} == {IntentStatus.FILLED.value}, Counter(i.status for i in intents)
    by_account = defaultdict(list)
    for intent in intents:
        by_account[intent.follower_account_id].append(intent)
    for n, follower in enumerate(world.followers, start=2):
        adapter = _venue_adapter(venue, n)
        await adapter.connect()
        try:
            venue_orders = await _venue_orders(venue, n)
            coids = Counter(o.client_order_id for o in venue_orders)
            assert [c for c, k in coids.items() if k > 1] == []
            fills = await _venue_fills_by_coid(adapter)
            mine = by_account[follower.id]
            for intent in mine:
                order = await adapter.order(client_order_id=intent.client_order_id)
                assert order is not None, f"no venue order for intent {intent.id} ({intent.client_order_id})"
                assert order.qty == intent.qty
                assert order.filled_qty == intent.qty
                assert fills.get(intent.client_order_id, Decimal(0)) == intent.qty
            copies_at_venue = {o.client_order_id for o in venue_orders if o.client_order_id.startswith("cp-")}
            assert copies_at_venue == {i.client_order_id for i in mine}  # no orphan, none missing

            # The follower holds what its links say, which is nothing once the provider is flat.
            linked = sum(
                (
                    link.qty if link.side == Side.BUY.value else -link.qty
                    for link in open_links
                    if link.subscription_id in world.subscriptions[n - 2 : n - 1]
                ),
                Decimal(0),
            )
            assert await _venue_position(adapter) == linked == 0, f"follower {n - 1}"
        finally:
            await adapter.close()
    assert await _venue_position(provider) == 0
