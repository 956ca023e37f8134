"""One linked account while it is connected: its adapter, instrument rules and the lock on its orders."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict

from brokerlink.brokers.base import BrokerAdapter, QuoteFeed
from brokerlink.domain.enums import ConnectionState
from brokerlink.domain.models import Account, Instrument, Quote
from brokerlink.kit.errors import InvalidInput, Unavailable


class LiveAccount:
    """An account whose adapter is connected (or reconnecting by itself).

    ``lock`` serializes every write to the account's orders, fills, positions and balances within
    this process: the event pump and the API's order commands take it, so a fill and a cancel
    request applied at the same moment cannot overwrite each other's changes to one order row.
    ``holdings_lock`` serializes reads of the venue's holdings with storing them
    (:func:`~brokerlink.engine.links.recovery.sync_holdings`): a read answered late cannot undo a
    newer one stored meanwhile.
    """

    def __init__(self, account: Account, *, broker: str, adapter: BrokerAdapter, instruments: list[Instrument]) -> None:
        self.account = account
        self.broker = broker
        self.adapter = adapter
        self.instruments = {i.symbol: i for i in instruments}
        self.lock = asyncio.Lock()
        self.holdings_lock = asyncio.Lock()
        self.state = ConnectionState.CONNECTED
        self._changed: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.refresh: asyncio.Task[None] | None = None
        self.refresh_again = False

    async def stop_refresh(self) -> None:
        """Cancel a pending re-read of positions and balance."""
        if self.refresh is not None:
            self.refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.refresh

    @property
    def id(self) -> str:
        """The account id."""
        return self.account.id

    def instrument(self, symbol: str) -> Instrument:
        """The broker's rules for ``symbol``; 422 naming the field when the broker does not list it."""
        try:
            return self.instruments[symbol]
        except KeyError:
            raise InvalidInput(
                f"symbol: {self.broker} does not list {symbol!r} for this account", extra={"field": "symbol"}
            ) from None

    def quote(self, symbol: str) -> Quote | None:
        """The latest streamed quote of ``symbol``, if the adapter streams quotes and has one."""
        if isinstance(self.adapter, QuoteFeed):
            return self.adapter.quote(symbol)
        return None

    def require_connected(self) -> None:
        """503 while the stream is down: an order sent now could not be followed."""
        if self.state is not ConnectionState.CONNECTED:
            raise Unavailable(f"the connection to {self.broker} is {self.state.value}; try again shortly")

    def changed(self, client_order_id: str) -> asyncio.Event:
        """An event set each time the order changes in the store (see :meth:`notify`)."""
        return self._changed[client_order_id]

    def notify(self, client_order_id: str) -> None:
        """Wake whoever waits for this order to change."""
        event = self._changed.get(client_order_id)
        if event is not None:
            event.set()

    def forget(self, client_order_id: str) -> None:
        """Stop tracking waiters of this order."""
        self._changed.pop(client_order_id, None)
