"""A local order book for one symbol, kept from a depth snapshot plus the ``depth:`` channel's diffs.

The rule is the one in docs/adr/0006-sim-wire-protocol.md (and Binance's "manage a local order
book"): keep the diffs that arrive, fetch ``GET /depth/SYM``, drop the diffs with
``u <= last_update_id``, apply the rest. A diff that does not continue the previous one
(``U > previous u + 1``) means updates were lost: the book stops applying, keeps buffering, and
reports :attr:`DepthBook.needs_snapshot` until a new snapshot is loaded.

Diffs carry the *new total* of each level, not a delta, so applying a diff that overlaps the book
(``U <= last_update_id < u``) is safe; only a hole is a gap.
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal

from brokerlink.brokers.sim.wire import DepthBody, DepthDiff

Level = tuple[Decimal, Decimal]


class DepthBook:
    """Bids and asks of one symbol as of :attr:`last_update_id`, or waiting for a snapshot.

    ``max_buffered`` bounds the diffs kept while waiting; when it overflows the oldest are dropped,
    which the next snapshot load detects as a gap (so memory stays bounded and the book stays right).
    """

    def __init__(self, symbol: str, *, max_buffered: int = 10_000) -> None:
        self.symbol = symbol
        self.last_update_id = 0
        self.resyncs = 0
        """Snapshots loaded successfully (the first sync counts)."""
        self.gaps = 0
        """Gaps detected in the diff stream."""
        self._bids: dict[Decimal, Decimal] = {}
        self._asks: dict[Decimal, Decimal] = {}
        self._buffer: deque[DepthDiff] = deque(maxlen=max_buffered)
        self._synced = False

    @property
    def synced(self) -> bool:
        """Whether the book reflects the venue (a snapshot plus every diff since, without a hole)."""
        return self._synced

    @property
    def needs_snapshot(self) -> bool:
        """Whether a snapshot must be fetched (never synced, reset, or a gap was seen)."""
        return not self._synced

    def reset(self) -> None:
        """Forget everything (after a reconnect: diffs may have been missed while away)."""
        self._bids.clear()
        self._asks.clear()
        self._buffer.clear()
        self._synced = False
        self.last_update_id = 0

    def on_diff(self, diff: DepthDiff) -> bool:
        """Take one diff; ``True`` if it changed the book, ``False`` if it was buffered, stale or a gap."""
        if not self._synced:
            self._buffer.append(diff)
            return False
        if diff.last_update_id <= self.last_update_id:
            return False  # already reflected (a duplicate, or older than the snapshot)
        if diff.first_update_id > self.last_update_id + 1:
            # A hole: updates in between never reached us. Keep this diff, the snapshot may not cover it.
            self.gaps += 1
            self._synced = False
            self._buffer.append(diff)
            return False
        self._apply(diff)
        return True

    def load_snapshot(self, snapshot: DepthBody) -> bool:
        """Replace the book with ``snapshot`` and replay the buffered diffs after it.

        Returns ``True`` when the book is synced; ``False`` when the buffered diffs have a hole after
        the snapshot (the diffs from the hole on stay buffered and another snapshot is needed).
        """
        self._bids = {price: qty for price, qty in snapshot.bids if qty}
        self._asks = {price: qty for price, qty in snapshot.asks if qty}
        self.last_update_id = snapshot.last_update_id
        pending = list(self._buffer)
        self._buffer.clear()
        for index, diff in enumerate(pending):
            if diff.last_update_id <= self.last_update_id:
                continue
            if diff.first_update_id > self.last_update_id + 1:
                self.gaps += 1
                self._synced = False
                self._buffer.extend(pending[index:])
                return False
            self._apply(diff)
        self._synced = True
        self.resyncs += 1
        return True

    def _apply(self, diff: DepthDiff) -> None:
        for side, levels in ((self._bids, diff.bids), (self._asks, diff.asks)):
            for price, qty in levels:
                if qty:
                    side[price] = qty
                else:
                    side.pop(price, None)  # "0" removes the level
        self.last_update_id = diff.last_update_id

    def best_bid(self) -> Level | None:
        """The highest bid and its quantity, or ``None`` when there is none."""
        if not self._bids:
            return None
        price = max(self._bids)
        return price, self._bids[price]

    def best_ask(self) -> Level | None:
        """The lowest ask and its quantity, or ``None`` when there is none."""
        if not self._asks:
            return None
        price = min(self._asks)
        return price, self._asks[price]

    def levels(self, n: int | None = None) -> tuple[list[Level], list[Level]]:
        """The ``n`` best levels of each side (all with ``None``), best first: ``(bids, asks)``."""
        bids = sorted(self._bids.items(), reverse=True)
        asks = sorted(self._asks.items())
        if n is not None:
            bids, asks = bids[:n], asks[:n]
        return bids, asks
