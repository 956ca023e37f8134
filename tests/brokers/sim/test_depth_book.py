"""The local depth book (ADR 0006's resync rule): table tests, and properties over random diff streams.

The properties drive the book with a model venue that numbers every level change, publishes one
diff per batch and answers snapshots at any point, so "equals the venue" is checked exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerlink.brokers.sim.depth import DepthBook
from brokerlink.brokers.sim.wire import DepthBody, DepthDiff

D = Decimal
Levels = Sequence[tuple[str, str]]


def diff(first: int, last: int, bids: Levels = (), asks: Levels = ()) -> DepthDiff:
    return DepthDiff(
        first_update_id=first,
        last_update_id=last,
        bids=[(D(p), D(q)) for p, q in bids],
        asks=[(D(p), D(q)) for p, q in asks],
    )


def snapshot(last: int, bids: Levels = (), asks: Levels = ()) -> DepthBody:
    return DepthBody(
        symbol="EURUSD",
        bids=[(D(p), D(q)) for p, q in bids],
        asks=[(D(p), D(q)) for p, q in asks],
        last_update_id=last,
    )


def synced_book() -> DepthBook:
    book = DepthBook("EURUSD")
    assert book.load_snapshot(snapshot(10, bids=[("1.10", "1"), ("1.09", "2")], asks=[("1.11", "3"), ("1.12", "4")]))
    return book


# --- table tests -----------------------------------------------------------------------------


def test_a_new_book_buffers_diffs_and_needs_a_snapshot() -> None:
    book = DepthBook("EURUSD")
    assert book.needs_snapshot
    assert not book.on_diff(diff(1, 1, bids=[("1.10", "1")]))
    assert book.levels() == ([], [])
    assert book.best_bid() is None
    assert book.best_ask() is None


def test_snapshot_drops_covered_diffs_and_applies_the_rest() -> None:
    book = DepthBook("EURUSD")
    book.on_diff(diff(9, 10, bids=[("1.10", "7")]))  # covered by the snapshot: dropped
    book.on_diff(diff(11, 12, bids=[("1.10", "5")], asks=[("1.11", "0")]))
    assert book.load_snapshot(snapshot(10, bids=[("1.10", "1")], asks=[("1.11", "3"), ("1.12", "4")]))
    assert book.synced
    assert book.last_update_id == 12
    assert book.levels() == ([(D("1.10"), D(5))], [(D("1.12"), D(4))])
    assert book.resyncs == 1


def test_a_diff_straddling_the_snapshot_is_applied() -> None:
    book = DepthBook("EURUSD")
    book.on_diff(diff(9, 12, asks=[("1.13", "1")]))
    assert book.load_snapshot(snapshot(10))
    assert book.best_ask() == (D("1.13"), D(1))
    assert book.last_update_id == 12


@pytest.mark.parametrize(
    ("update", "applied", "best_bid", "best_ask"),
    [
        (diff(11, 11, bids=[("1.10", "0")]), True, (D("1.09"), D(2)), (D("1.11"), D(3))),  # "0" removes
        (diff(11, 12, bids=[("1.105", "9")]), True, (D("1.105"), D(9)), (D("1.11"), D(3))),  # new best
        (diff(11, 11, asks=[("1.11", "0"), ("1.12", "0")]), True, (D("1.10"), D(1)), None),  # side emptied
        (diff(5, 10, bids=[("1.10", "99")]), False, (D("1.10"), D(1)), (D("1.11"), D(3))),  # stale: ignored
        (diff(10, 11, asks=[("1.11", "6")]), True, (D("1.10"), D(1)), (D("1.11"), D(6))),  # overlap: totals
        (diff(12, 12, bids=[("1.10", "99")]), False, None, None),  # a hole: out of sync
    ],
)
def test_diffs_on_a_synced_book(
    update: DepthDiff, applied: bool, best_bid: tuple[Decimal, Decimal] | None, best_ask: tuple[Decimal, Decimal] | None
) -> None:
    book = synced_book()
    assert book.on_diff(update) is applied
    if update.first_update_id > 11:
        assert book.needs_snapshot
        assert book.gaps == 1
        return
    assert book.synced
    assert book.best_bid() == best_bid
    assert book.best_ask() == best_ask


def test_levels_are_best_first_and_limited() -> None:
    book = synced_book()
    assert book.levels(1) == ([(D("1.10"), D(1))], [(D("1.11"), D(3))])
    assert book.levels() == ([(D("1.10"), D(1)), (D("1.09"), D(2))], [(D("1.11"), D(3)), (D("1.12"), D(4))])


def test_a_snapshot_older_than_a_hole_does_not_sync() -> None:
    book = synced_book()
    book.on_diff(diff(13, 13, bids=[("1.08", "1")]))  # 11-12 lost
    assert not book.load_snapshot(snapshot(11))  # still missing 12
    assert book.needs_snapshot
    assert book.load_snapshot(snapshot(12, bids=[("1.10", "1")]))
    assert book.levels() == ([(D("1.10"), D(1)), (D("1.08"), D(1))], [])


def test_buffer_overflow_is_caught_as_a_gap_at_load() -> None:
    book = DepthBook("EURUSD", max_buffered=2)
    for i in range(11, 15):
        book.on_diff(diff(i, i, bids=[("1.10", str(i))]))  # 11 and 12 fall out of the buffer
    assert not book.load_snapshot(snapshot(10))
    assert book.load_snapshot(snapshot(12))
    assert book.best_bid() == (D("1.10"), D(14))


def test_reset_forgets_the_book() -> None:
    book = synced_book()
    book.reset()
    assert book.needs_snapshot
    assert book.levels() == ([], [])
    assert book.last_update_id == 0


# --- properties: a model venue ---------------------------------------------------------------

Op = tuple[bool, int, int]  # (is_bid, price tick, new total qty in steps; 0 removes)


@dataclass
class ModelVenue:
    """Numbers every level change like the venue does, and keeps the snapshot after each diff."""

    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)
    update_id: int = 0
    diffs: list[DepthDiff] = field(default_factory=list)
    snapshots: list[DepthBody] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.snapshots.append(self.snapshot())

    def snapshot(self) -> DepthBody:
        return DepthBody(
            symbol="EURUSD",
            bids=sorted(self.bids.items(), reverse=True),
            asks=sorted(self.asks.items()),
            last_update_id=self.update_id,
        )

    def run(self, batch: list[Op]) -> None:
        first = self.update_id + 1
        changed: dict[tuple[bool, Decimal], Decimal] = {}
        for is_bid, tick, steps in batch:
            # Bids below 1.0000, asks above: the model never crosses, like a venue's resting book.
            price = D(10_000 - tick if is_bid else 10_000 + tick) / 10_000
            qty = D(steps) / 10
            side = self.bids if is_bid else self.asks
            if qty:
                side[price] = qty
            else:
                side.pop(price, None)
            self.update_id += 1
            changed[(is_bid, price)] = qty
        self.diffs.append(
            DepthDiff(
                first_update_id=first,
                last_update_id=self.update_id,
                bids=sorted(((p, q) for (b, p), q in changed.items() if b), reverse=True),
                asks=sorted((p, q) for (b, p), q in changed.items() if not b),
            )
        )
        self.snapshots.append(self.snapshot())


ops = st.tuples(st.booleans(), st.integers(1, 12), st.integers(0, 5))
batches = st.lists(st.lists(ops, min_size=1, max_size=4), min_size=4, max_size=30)


def as_levels(body: DepthBody) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
    return list(body.bids), list(body.asks)


@given(batches=batches, data=st.data())
def test_a_gap_always_triggers_a_resync_and_the_resynced_book_equals_the_venue(
    batches: list[list[Op]], data: st.DataObject
) -> None:
    venue = ModelVenue()
    for batch in batches:
        venue.run(batch)
    n = len(venue.diffs)
    subscribed = data.draw(st.integers(0, n - 3), label="first diff received")
    first_snapshot = data.draw(st.integers(subscribed, n - 3), label="first snapshot after diff")
    lost = data.draw(st.integers(first_snapshot, n - 2), label="diff lost")
    book = DepthBook("EURUSD")

    for d in venue.diffs[subscribed:first_snapshot]:
        book.on_diff(d)  # buffered: no snapshot yet
    assert book.load_snapshot(venue.snapshots[first_snapshot])
    for i in range(first_snapshot, lost):
        book.on_diff(venue.diffs[i])
        assert book.synced
        assert book.levels() == as_levels(venue.snapshots[i + 1])

    for d in venue.diffs[lost + 1 :]:  # diff `lost` never arrives
        book.on_diff(d)
    assert book.needs_snapshot, "the diff after the hole must be detected as a gap"
    assert book.gaps == 1

    # A snapshot from before the hole cannot fix it; one from after it can, with the buffer replayed.
    stale = data.draw(st.integers(first_snapshot, lost), label="stale snapshot")
    assert not book.load_snapshot(venue.snapshots[stale])
    fresh = data.draw(st.integers(lost + 1, n), label="resync snapshot")
    assert book.load_snapshot(venue.snapshots[fresh])
    assert book.synced
    assert book.last_update_id == venue.update_id
    assert book.levels() == as_levels(venue.snapshots[-1])
    assert book.best_bid() == (venue.snapshots[-1].bids[0] if venue.snapshots[-1].bids else None)
    assert book.best_ask() == (venue.snapshots[-1].asks[0] if venue.snapshots[-1].asks else None)


@given(batches=batches, data=st.data())
def test_without_a_gap_the_book_tracks_the_venue_and_never_resyncs(
    batches: list[list[Op]], data: st.DataObject
) -> None:
    venue = ModelVenue()
    for batch in batches:
        venue.run(batch)
    n = len(venue.diffs)
    subscribed = data.draw(st.integers(0, n), label="first diff received")
    at = data.draw(st.integers(subscribed, n), label="snapshot after diff")
    loaded_after = data.draw(st.integers(at, n), label="diffs received before the snapshot arrives")
    book = DepthBook("EURUSD")
    for d in venue.diffs[subscribed:loaded_after]:
        book.on_diff(d)
    assert book.load_snapshot(venue.snapshots[at])
    assert book.levels() == as_levels(venue.snapshots[loaded_after])
    for d in venue.diffs[loaded_after:]:
        book.on_diff(d)
        book.on_diff(d)  # a duplicate is harmless
    assert book.synced
    assert book.gaps == 0
    assert book.resyncs == 1
    assert book.levels() == as_levels(venue.snapshots[-1])
