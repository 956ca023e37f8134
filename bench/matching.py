"""Matching engine throughput and latency against a minimal price-time book, on one seeded order stream.

The sim venue's engine (``brokerlink.brokers.sim.matching``, integer API, every event built) and a
baseline written here (a heap of prices per side, a deque per level, integer prices and
quantities, limit / market / cancel with lazy deletion, fills reported as tuples; nothing else)
replay the same fixed order stream in one process.

Stream (seed 20261121): one instrument, prices in ticks around the book's mid at the time (traders
quote around the market; the mid moves as orders trade). Message mix, drawn per message:

- 60% new GTC limit, side 50/50, price mid - U(-4, 30) ticks for a buy (mirrored for a sell), so
  about one in eight crosses the spread and trades; qty U(1, 100) lots;
- 10% market, qty U(1, 300) lots (large enough that trading roughly balances what the limits add,
  so the book stays a few thousand orders deep instead of growing without bound);
- 20% cancel of an order resting at that moment (picked uniformly among the resting ones);
- 10% modify of a resting order: half a new price drawn like a new limit's (loses priority; the
  baseline does cancel + new), half a smaller quantity (keeps priority; the baseline lowers the
  order in place, cheaper than cancel + new, so that both books stay identical).

Buy orders come from 50 accounts and sell orders from 50 others, so self-trade prevention is checked
on every fill but never fires, and both books must produce exactly the same trades: the run fails if
their trade counts or volumes differ. Before each run the book is seeded (untimed) with 2,000 resting
orders. Generating the stream runs the engine once to know which orders rest, so every cancel and
modify hits a live order in both books.

Figures:

- ``orders_per_s``: messages per second through ``submit_ticks`` / ``cancel`` / ``modify_ticks``,
  median of interleaved repeats (engine, baseline, engine, baseline, ...); ``baseline_orders_per_s``
  likewise; ``ratio_to_baseline`` = the two medians' ratio;
- ``p50_us`` / ``p99_us`` / ``p999_us``: per-message latency at a fixed offered rate of 200,000
  messages/s (``latency_by_rate`` also has 50,000/s). Sends are paced by busy-waiting on
  ``perf_counter_ns`` to a fixed schedule and each latency runs from the message's scheduled time to
  the engine's return, so time queued behind a slow message counts (no coordinated omission).

The garbage collector runs as usual during every measurement; only the stream itself, built before
measuring, is frozen out of it (``gc.freeze``), since it is the harness's data, not the engine's.

Goal: orders_per_s >= 250000 and ratio_to_baseline >= 0.5. Run:
``.venv/bin/python bench/matching.py [--quick] [--profile]``. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import json
import random
import statistics
import sys
import time
from array import array
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from brokerlink.brokers.sim.book import Canceled, Event, Fill
from brokerlink.brokers.sim.matching import MatchingEngine
from brokerlink.domain.enums import AssetClass, OrderType, Side, TimeInForce
from brokerlink.domain.models import Instrument

SEED = 20261121
GOAL = "orders_per_s >= 250000 and ratio_to_baseline >= 0.5"
BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET, GTC = OrderType.LIMIT, OrderType.MARKET, TimeInForce.GTC
NEW, MKT, CXL, MOD_PRICE, MOD_QTY = range(5)  # message kinds
MID = 100_000
SEED_ORDERS = 2_000
ACCOUNTS_PER_SIDE = 50
MARKET_QTY_MAX = 300

INSTRUMENT = Instrument(
    symbol="BTC/USDT",
    venue_symbol="BTCUSDT",
    asset_class=AssetClass.CRYPTO,
    base="BTC",
    quote="USDT",
    tick_size=Decimal("0.01"),
    qty_step=Decimal("0.00001"),
    min_qty=Decimal("0.00001"),
)

# (kind, order_id, account, side, qty, price, reduce_by). For MOD_QTY, qty is the engine's new total
# and reduce_by the baseline's in-place reduction (they describe the same change). Unused: 0 or "".
Message = tuple[int, int, str, Side, int, int, int]
Fills = list[tuple[int, int, int, int]]


class BaselineBook:
    """A minimal price-time book: per side a heap of prices and a deque of ``[qty, id]`` per level.

    Limit, market and cancel only. Cancel marks the order dead (qty 0); matching skips dead orders
    and drops a level once its deque is empty. Fills go to ``fills`` as (taker, maker, price, qty).
    """

    def __init__(self) -> None:
        self.bids: dict[int, deque[list[int]]] = {}
        self.asks: dict[int, deque[list[int]]] = {}
        self.bid_heap: list[int] = []  # negated prices
        self.ask_heap: list[int] = []
        self.orders: dict[int, list[int]] = {}
        self.fills: Fills = []

    def limit(self, oid: int, side: Side, price: int, qty: int) -> None:
        """A GTC limit order: trade what crosses, rest the rest."""
        qty = self._take(oid, side, qty, price)
        if qty:
            entry = [qty, oid]
            book, heap, key = (self.bids, self.bid_heap, -price) if side is BUY else (self.asks, self.ask_heap, price)
            level = book.get(price)
            if level is None:
                book[price] = deque((entry,))
                heapq.heappush(heap, key)
            else:
                level.append(entry)
            self.orders[oid] = entry

    def market(self, oid: int, side: Side, qty: int) -> None:
        """A market order: trade what the book has, drop the rest."""
        self._take(oid, side, qty, 1 << 62 if side is BUY else 0)

    def cancel(self, oid: int) -> None:
        """Cancel a resting order (lazily: it stays in its deque with qty 0)."""
        entry = self.orders.pop(oid, None)
        if entry is not None:
            entry[0] = 0

    def replace(self, oid: int, side: Side, price: int) -> None:
        """Modify as cancel + new: the rest of the order at a new price, at the back of the queue."""
        entry = self.orders.get(oid)
        if entry is not None:
            qty = entry[0]
            self.cancel(oid)
            self.limit(oid, side, price, qty)

    def reduce(self, oid: int, by: int) -> None:
        """Lower a resting order's quantity in place (it keeps its priority)."""
        self.orders[oid][0] -= by

    def _take(self, oid: int, side: Side, qty: int, limit: int) -> int:
        if side is BUY:
            book, heap, sign = self.asks, self.ask_heap, 1
        else:
            book, heap, sign = self.bids, self.bid_heap, -1
        fills, orders = self.fills, self.orders
        while qty and heap:
            price = heap[0] * sign
            if (price > limit) if side is BUY else (price < limit):
                break
            level = book[price]
            while level and qty:
                entry = level[0]
                if entry[0]:
                    n = min(qty, entry[0])
                    entry[0] -= n
                    qty -= n
                    fills.append((oid, entry[1], price, n))
                    if entry[0]:
                        break
                    del orders[entry[1]]
                level.popleft()
            while level and not level[0][0]:
                level.popleft()
            if not level:
                del book[price]
                heapq.heappop(heap)
        return qty


class StreamBuilder:
    """Draws the seeded message stream, running the engine alongside to know which orders rest."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.engine = MatchingEngine(INSTRUMENT)
        self.live: list[int] = []  # resting order ids, for a uniform pick
        self.where: dict[int, int] = {}  # id -> index in live
        self.next_id = 0
        self.mid = MID

    def seed_orders(self) -> list[Message]:
        """Resting orders on both sides, 10 ticks further out than new limits, so none trades."""
        msgs = []
        for _ in range(SEED_ORDERS):
            kind, oid, account, side, qty, price, by = self._new_limit()
            msg = (kind, oid, account, side, qty, price + (10 if side is SELL else -10), by)
            self._apply(msg)
            msgs.append(msg)
        return msgs

    def messages(self, n: int) -> list[Message]:
        """``n`` messages in the stated mix."""
        rng, msgs = self.rng, []
        for _ in range(n):
            self._follow_book()
            roll = rng.random()
            if roll < 0.6 or not self.live:
                msg = self._new_limit()
            elif roll < 0.7:
                side = self._side()
                self.next_id += 1
                msg = (MKT, self.next_id, self._account(side), side, rng.randint(1, MARKET_QTY_MAX), 0, 0)
            else:
                msg = self._on_resting(roll)
            self._apply(msg)
            msgs.append(msg)
        return msgs

    def _follow_book(self) -> None:
        """Traders quote around the market: the mid is the book's, once both sides have orders."""
        bid, ask = self.engine.best_bid(), self.engine.best_ask()
        if bid is not None and ask is not None:
            self.mid = (bid + ask) // 2

    def _side(self) -> Side:
        return BUY if self.rng.random() < 0.5 else SELL

    def _account(self, side: Side) -> str:
        return f"{'b' if side is BUY else 's'}{self.rng.randrange(ACCOUNTS_PER_SIDE)}"

    def _price(self, side: Side) -> int:
        offset = self.rng.randint(-4, 30)
        return self.mid - offset if side is BUY else self.mid + offset

    def _new_limit(self) -> Message:
        side = self._side()
        self.next_id += 1
        return (NEW, self.next_id, self._account(side), side, self.rng.randint(1, 100), self._price(side), 0)

    def _on_resting(self, roll: float) -> Message:
        oid = self.live[self.rng.randrange(len(self.live))]
        view = self.engine.order(oid)
        assert view is not None
        assert view.price is not None
        if roll < 0.9:
            return (CXL, oid, "", view.side, 0, 0, 0)
        if roll < 0.95 or view.leaves < 2:
            price = self._price(view.side)
            while price == view.price:  # a real price change, which loses priority in both books
                price = self._price(view.side)
            return (MOD_PRICE, oid, "", view.side, 0, price, 0)
        by = self.rng.randint(1, view.leaves - 1)
        return (MOD_QTY, oid, "", view.side, view.qty - by, 0, by)

    def _apply(self, msg: Message) -> None:
        events = _engine_step(self.engine)(msg)
        for ev in events:
            if isinstance(ev, Fill) and ev.maker_leaves == 0:
                self._gone(ev.maker_order_id)
            elif isinstance(ev, Canceled) and ev.order_id in self.where:
                self._gone(ev.order_id)
        oid = msg[1]
        resting = self.engine.order(oid) is not None
        if resting and oid not in self.where:
            self.where[oid] = len(self.live)
            self.live.append(oid)
        elif not resting and oid in self.where:  # re-priced, then traded in full as a taker
            self._gone(oid)

    def _gone(self, oid: int) -> None:
        i = self.where.pop(oid)
        last = self.live.pop()
        if last != oid:
            self.live[i] = last
            self.where[last] = i


def _engine_step(engine: MatchingEngine) -> Callable[[Message], list[Event]]:
    submit, cancel, modify = engine.submit_ticks, engine.cancel, engine.modify_ticks

    def step(msg: Message) -> list[Event]:
        kind = msg[0]
        if kind == NEW:
            return submit(msg[1], msg[2], msg[3], msg[4], LIMIT, GTC, msg[5])
        if kind == MKT:
            return submit(msg[1], msg[2], msg[3], msg[4], MARKET, GTC)
        if kind == CXL:
            return cancel(msg[1])
        if kind == MOD_PRICE:
            return modify(msg[1], None, msg[5])
        return modify(msg[1], msg[4])

    return step


def _baseline_step(book: BaselineBook) -> Callable[[Message], None]:
    limit, market, cancel, replace, reduce = book.limit, book.market, book.cancel, book.replace, book.reduce

    def step(msg: Message) -> None:
        kind = msg[0]
        if kind == NEW:
            limit(msg[1], msg[3], msg[5], msg[4])
        elif kind == MKT:
            market(msg[1], msg[3], msg[4])
        elif kind == CXL:
            cancel(msg[1])
        elif kind == MOD_PRICE:
            replace(msg[1], msg[3], msg[5])
        else:
            reduce(msg[1], msg[6])

    return step


def _timed(step: Callable[[Message], object], seed: list[Message], msgs: list[Message]) -> float:
    for msg in seed:
        step(msg)
    start = time.perf_counter()
    for msg in msgs:
        step(msg)
    return len(msgs) / (time.perf_counter() - start)


def paced_latency(seed: list[Message], msgs: list[Message], rate: int) -> dict[str, float]:
    """Engine latency per message (scheduled send → return) at a fixed offered rate, in microseconds."""
    step = _engine_step(MatchingEngine(INSTRUMENT))
    for msg in seed:
        step(msg)
    interval = 1_000_000_000 // rate
    clock = time.perf_counter_ns
    # An array, not a list: it is not a container, so the collector does not walk it on every pass.
    latencies = array("q", bytes(8 * len(msgs)))
    late = 0
    t0 = clock() + 1_000_000
    for i, msg in enumerate(msgs):
        due = t0 + i * interval
        now = clock()
        late += now > due
        while now < due:
            now = clock()
        step(msg)
        latencies[i] = clock() - due
    ordered = sorted(latencies)
    n = len(ordered)

    def pct(q: float) -> float:
        return round(ordered[min(n - 1, int(q * n))] / 1000, 2)

    return {
        "offered_per_s": rate,
        "messages": n,
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "p999_us": pct(0.999),
        "max_us": round(ordered[-1] / 1000, 2),
        "sent_late_fraction": round(late / n, 4),
    }


def _engine_trades(seed: list[Message], msgs: list[Message]) -> tuple[int, int]:
    """Trade count and volume through the engine over seed + stream (untimed)."""
    step = _engine_step(MatchingEngine(INSTRUMENT))
    fills = [ev for msg in (*seed, *msgs) for ev in step(msg) if isinstance(ev, Fill)]
    return len(fills), sum(f.qty for f in fills)


def _profile(seed: list[Message], msgs: list[Message]) -> None:
    import cProfile
    import pstats

    step = _engine_step(MatchingEngine(INSTRUMENT))
    for msg in seed:
        step(msg)
    profiler = cProfile.Profile()
    profiler.runcall(lambda: [step(msg) for msg in msgs])
    pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter stream, fewer repeats (about 15 s)")
    parser.add_argument("--profile", action="store_true", help="cProfile one engine run first")
    args = parser.parse_args()
    n, repeats, paced_n = (200_000, 5, 100_000) if args.quick else (1_000_000, 9, 400_000)

    started = time.perf_counter()
    builder = StreamBuilder(SEED)
    seed, msgs = builder.seed_orders(), builder.messages(n)
    final = builder.engine.depth()
    book_at_end = {"orders": len(builder.live), "bid_levels": len(final.bids), "ask_levels": len(final.asks)}
    del builder
    paced = msgs[:paced_n]
    mix = {name: sum(1 for m in msgs if m[0] == k) / n for k, name in enumerate(("new", "market", "cancel"))}
    mix["modify"] = sum(1 for m in msgs if m[0] >= MOD_PRICE) / n
    built_s = time.perf_counter() - started
    # The stream lives for the whole run; freezing it keeps the collector from walking it again and
    # again in every measurement (the collector still runs over everything the books allocate).
    gc.collect()
    gc.freeze()
    if args.profile:
        _profile(seed, msgs)

    engine_rates, baseline_rates = [], []
    baseline_fills: Fills = []
    for _ in range(repeats):
        engine_rates.append(_timed(_engine_step(MatchingEngine(INSTRUMENT)), seed, msgs))
        book = BaselineBook()
        baseline_rates.append(_timed(_baseline_step(book), seed, msgs))
        baseline_fills = book.fills
    engine_trades = _engine_trades(seed, msgs)
    baseline_trades = (len(baseline_fills), sum(f[3] for f in baseline_fills))
    if engine_trades != baseline_trades:
        raise SystemExit(f"the books disagree (trades, volume): engine {engine_trades}, baseline {baseline_trades}")
    latency = [paced_latency(seed, paced, rate) for rate in (50_000, 200_000)]

    orders_per_s = round(statistics.median(engine_rates))
    baseline_per_s = round(statistics.median(baseline_rates))
    ratio = round(orders_per_s / baseline_per_s, 3)
    summary = {
        "bench": "matching",
        "mode": "quick" if args.quick else "full",
        "messages": n,
        "repeats": repeats,
        "mix": {k: round(v, 3) for k, v in mix.items()},
        "trades": engine_trades[0],
        "book_at_end": book_at_end,
        "stream_build_s": round(built_s, 2),
        "engine_runs_per_s": [round(r) for r in engine_rates],
        "baseline_runs_per_s": [round(r) for r in baseline_rates],
        "orders_per_s": orders_per_s,
        "baseline_orders_per_s": baseline_per_s,
        "ratio_to_baseline": ratio,
        "p50_us": latency[1]["p50_us"],
        "p99_us": latency[1]["p99_us"],
        "p999_us": latency[1]["p999_us"],
        "latency": "scheduled send to return, paced at 200000 msg/s offered; latency_by_rate has 50000 too",
        "latency_by_rate": latency,
        "goal": GOAL,
        "met": orders_per_s >= 250_000 and ratio >= 0.5,
    }
    print(f"engine   {orders_per_s:>9} msg/s  runs {summary['engine_runs_per_s']}")
    print(f"baseline {baseline_per_s:>9} msg/s  runs {summary['baseline_runs_per_s']}  ratio {ratio}")
    for row in latency:
        rate, p50, p99, p999 = row["offered_per_s"], row["p50_us"], row["p99_us"], row["p999_us"]
        print(f"paced at {rate:>7}/s: p50 {p50} us  p99 {p99} us  p99.9 {p999} us  max {row['max_us']} us")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
