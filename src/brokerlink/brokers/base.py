"""The broker adapter protocol: one interface for every broker (DESIGN.md, "Broker adapters").

An adapter is bound to one linked account. Commands (:meth:`BrokerAdapter.submit`, ``modify``,
``cancel``, ``cancel_all``) return once the venue has taken the request; their *outcomes*
(accepted, rejected, filled, canceled...) arrive as :mod:`brokerlink.domain.events` on
:meth:`BrokerAdapter.events`, because real venues report them asynchronously and may report a
fill before the acknowledgement.

Every failure is one of three kinds, and callers branch on the kind, never on a message:

- :class:`OrderRefused` — definitive: the venue said no (insufficient funds, invalid order,
  duplicate client order id, market closed, authentication). Retrying the same request is
  pointless.
- :class:`TransientBrokerError` — the venue could not take the request now (rate limited with a
  retry-after, unavailable). Nothing happened; retrying later with the same client order id is safe.
- :class:`OutcomeUnknown` — the request may or may not have reached the venue (timeout or
  disconnect after sending, a 5xx after the venue accepted). Never resubmit blindly: look the order
  up by its client order id (:func:`resolve_outcome`).

``client_order_id`` is the idempotency key everywhere; fills are deduplicated by trade id
(:class:`SeenTradeIds`), because the same fill may arrive over the stream and over a report.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar, Protocol

import msgspec

from brokerlink.domain.enums import OrderType, Side, TimeInForce
from brokerlink.domain.events import DomainEvent
from brokerlink.domain.models import Balance, Fill, Instrument, Order, Position, Quote, Trade
from brokerlink.kit.errors import BrokerlinkError
from brokerlink.logs import get_logger

_log = get_logger("brokerlink.brokers")  # market listeners' failures


class Capabilities(msgspec.Struct, frozen=True, kw_only=True):
    """What a broker supports, so callers can decide before sending instead of after failing."""

    order_types: frozenset[OrderType]
    time_in_force: frozenset[TimeInForce]
    modify: bool = True
    """Orders can be amended in place (otherwise cancel and replace)."""
    cancel_all: bool = True
    hedging: bool = False
    """Several positions per symbol can be held (otherwise one net position)."""
    quotes: bool = True
    depth: bool = False
    fills_since: bool = True
    """Fills can be listed since a cursor (reconciliation after a gap)."""
    max_client_order_id_length: int = 64


class OrderRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A new order as the adapter sends it. Prices and quantities are on the instrument's grid."""

    client_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    type: OrderType
    tif: TimeInForce = TimeInForce.GTC
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None


class ModifyRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A change to a working order, named by its client order id. ``None`` leaves a field as it is."""

    client_order_id: str
    qty: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None


class FillPage(msgspec.Struct, frozen=True, kw_only=True):
    """Fills after a cursor, oldest first, and the cursor to continue from."""

    fills: list[Fill]
    next_cursor: str | None


class Credentials(msgspec.Struct, frozen=True, kw_only=True):
    """Secrets for one broker link. ``repr`` never shows the values, so they cannot reach a log."""

    values: dict[str, str]

    def __repr__(self) -> str:
        return f"Credentials(keys={sorted(self.values)})"

    __str__ = __repr__

    def get(self, name: str) -> str:
        """One secret by name; a clear error (naming only the key) when it is missing."""
        try:
            return self.values[name]
        except KeyError:
            raise OrderRefused(RefusalReason.AUTH, f"credential {name!r} is missing") from None


class VenueAccount(msgspec.Struct, frozen=True, kw_only=True):
    """One account a broker credential reaches (:meth:`BrokerAdapter.venue_accounts`)."""

    venue_account_id: str
    name: str | None = None
    currency: str | None = None


class AdapterConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Everything an adapter needs to reach one account at one broker."""

    account_id: str
    """Our account id (``acc_...``); every event the adapter emits carries it."""
    venue_account_id: str
    base_url: str
    credentials: Credentials
    options: dict[str, str] = msgspec.field(default_factory=dict)


# --- the three kinds of failure --------------------------------------------------------------


class RefusalReason(StrEnum):
    """Why a venue definitively refused a request."""

    INSUFFICIENT_FUNDS = "insufficient_funds"
    INVALID_ORDER = "invalid_order"
    DUPLICATE_CLIENT_ORDER_ID = "duplicate_client_order_id"
    UNKNOWN_ORDER = "unknown_order"
    MARKET_CLOSED = "market_closed"
    AUTH = "auth"
    NOT_SUPPORTED = "not_supported"


class BrokerError(BrokerlinkError):
    """Base of adapter errors."""

    status = 502
    code = "broker_error"
    title = "Broker error"


class OrderRefused(BrokerError):
    """Definitive refusal: the venue processed the request and said no. Do not retry as is."""

    status = 422
    code = "broker_refused"
    title = "Refused by the broker"

    def __init__(self, reason: RefusalReason, detail: str | None = None, **kwargs: Any) -> None:
        extra = dict(kwargs.pop("extra", None) or {})
        extra["reason"] = reason.value
        super().__init__(detail or reason.value.replace("_", " "), extra=extra, **kwargs)
        self.reason = reason


class TransientBrokerError(BrokerError):
    """The venue could not take the request now; nothing happened. Retry after ``retry_after_ms``."""

    status = 503
    code = "broker_unavailable"
    title = "Broker temporarily unavailable"

    def __init__(self, detail: str | None = None, *, retry_after_ms: int | None = None, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.retry_after_ms = retry_after_ms


class BrokerRateLimited(TransientBrokerError):
    """The venue's rate limit was hit; it said when to come back."""

    status = 429
    code = "broker_rate_limited"
    title = "Broker rate limit reached"


class OutcomeUnknown(BrokerError):
    """The request may or may not have taken effect. Resolve by lookup, never by resending blindly."""

    status = 504
    code = "broker_outcome_unknown"
    title = "Broker outcome unknown"

    def __init__(self, client_order_id: str, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(detail or f"outcome of {client_order_id} is unknown", **kwargs)
        self.client_order_id = client_order_id


# --- the adapter --------------------------------------------------------------------------------


class BrokerAdapter(ABC):
    """One linked account at one broker. Implementations must pass ``tests/contract/``.

    Lifecycle: ``await connect()`` (authenticates and opens the event stream), use, ``await
    close()``. The adapter reconnects by itself; while it cannot reach the venue it emits
    :class:`~brokerlink.domain.events.ConnectionChanged` events, with ``gap_possible=True`` when events
    may have been missed, after which callers reconcile with the report methods.
    """

    kind: ClassVar[str]
    """The broker kind this adapter serves (``"sim"``, ``"alpaca"``...), the registry key."""
    credential_fields: ClassVar[tuple[str, ...]] = ("api_key",)
    """The names of the credentials a user enters to link an account (``Credentials.values`` keys)."""

    def __init__(self, config: AdapterConfig) -> None:
        self.config = config

    @property
    def account_id(self) -> str:
        """Our id of the account this adapter trades."""
        return self.config.account_id

    @property
    def venue_account_id(self) -> str:
        """The broker's id of the account: the configured one, or (after :meth:`connect`) the one the
        broker reports for these credentials when none was configured."""
        return self.config.venue_account_id

    @property
    @abstractmethod
    def capabilities(self) -> Capabilities:
        """What this broker supports."""

    @abstractmethod
    async def connect(self) -> None:
        """Authenticate and open the event stream. Raises :class:`OrderRefused` (``auth``) on bad credentials."""

    @abstractmethod
    async def close(self) -> None:
        """Close connections and end :meth:`events`. Idempotent."""

    @abstractmethod
    async def instruments(self) -> list[Instrument]:
        """The tradable instruments with the venue's rules, symbols in canonical form."""

    @abstractmethod
    async def submit(self, order: OrderRequest) -> None:
        """Send a new order. Returns when the venue has taken it; the outcome arrives as events."""

    @abstractmethod
    async def modify(self, change: ModifyRequest) -> None:
        """Amend a working order (see ``capabilities.modify``)."""

    @abstractmethod
    async def cancel(self, client_order_id: str) -> None:
        """Request cancellation; :class:`~brokerlink.domain.events.OrderCanceled` confirms it."""

    @abstractmethod
    async def cancel_all(self, symbol: str | None = None) -> None:
        """Request cancellation of every working order (of one symbol)."""

    @abstractmethod
    async def order(self, *, client_order_id: str | None = None, venue_order_id: str | None = None) -> Order | None:
        """The venue's view of one order, or ``None`` if the venue does not know it."""

    @abstractmethod
    async def open_orders(self) -> list[Order]:
        """Every working order, as the venue sees it."""

    @abstractmethod
    async def fills_since(self, cursor: str | None = None, *, limit: int = 500) -> FillPage:
        """Fills after ``cursor`` (from the start of the venue's retention when ``None``), oldest first."""

    @abstractmethod
    async def positions(self) -> list[Position]:
        """Open positions, as the venue sees them."""

    @abstractmethod
    async def balance(self) -> Balance:
        """Cash, equity and buying power, as the venue reports them."""

    @abstractmethod
    def events(self) -> AsyncIterator[DomainEvent]:
        """Normalized events in arrival order, each fill exactly once. Ends after :meth:`close`."""

    async def venue_accounts(self) -> list[VenueAccount]:
        """The accounts these credentials reach at the broker, read without connecting the stream
        (one read-only call), so a user can pick which to link. Raises :class:`OrderRefused`
        (``auth``) on bad credentials. The default: the one account the credentials name, from
        :meth:`balance` (brokers with several accounts per credential override it)."""
        balance = await self.balance()
        return [VenueAccount(venue_account_id=self.venue_account_id, currency=balance.currency)]


# --- optional: market data -------------------------------------------------------------------


class OrderBookView(msgspec.Struct, frozen=True, kw_only=True):
    """A copy of an adapter's local order book for one symbol: levels best first, as ``(price, qty)``."""

    symbol: str
    """Canonical symbol."""
    bids: list[tuple[Decimal, Decimal]]
    asks: list[tuple[Decimal, Decimal]]
    update_id: int
    """The venue's update id the book reflects (compare with a venue snapshot of the same id)."""
    resyncs: int
    """How often the book was (re)built from a snapshot: the first sync, then once per gap or reconnect."""


class QuoteFeed(ABC):
    """Optional mix-in for adapters that stream quotes (``capabilities.quotes``).

    Callers check ``isinstance(adapter, QuoteFeed)`` before using it. Subscriptions outlive
    reconnects: the adapter renews them on every new connection by itself. Symbols are canonical
    throughout; a symbol the venue does not list is refused with :class:`OrderRefused`
    (``invalid_order``).
    """

    @abstractmethod
    async def subscribe_quotes(self, symbols: Iterable[str]) -> None:
        """Start streaming the top of book of ``symbols`` (canonical). Idempotent; returns once requested.

        Every symbol is checked before anything is subscribed: one the venue does not list refuses the
        whole call with :class:`OrderRefused` (``invalid_order``). See :meth:`quote`.
        """

    @abstractmethod
    def quote(self, symbol: str) -> Quote | None:
        """The latest quote of ``symbol`` received on the stream, with the canonical symbol.

        ``None`` if ``symbol`` is not subscribed, or no quote has arrived since the stream last
        (re)connected: a quote from a connection that has since dropped is never returned as if live.
        Compare ``ts`` (the venue's time of the quote) with the time now to judge its age.
        """

    @abstractmethod
    async def quote_snapshot(self, symbol: str) -> Quote:
        """The venue's current quote of ``symbol``, asked for now over REST (no subscription needed)."""


class MarketDataAdapter(QuoteFeed):
    """Optional mix-in for adapters that also keep local order books (``capabilities.depth``): quotes
    as :class:`QuoteFeed`, plus depth.

    Callers check ``isinstance(adapter, MarketDataAdapter)`` before using books; the conformance
    suite holds ``capabilities.depth`` to it. Each subscribed book is kept in sync across gaps in the
    venue's diff stream and across reconnects.
    """

    @abstractmethod
    async def subscribe_depth(self, symbol: str) -> None:
        """Start keeping the book of ``symbol`` (canonical). Returns once requested; see :meth:`book`."""

    @abstractmethod
    def book(self, symbol: str) -> OrderBookView | None:
        """The current book of ``symbol``, or ``None`` while it is not in sync (not yet, or resyncing)."""


# --- market data push (docs/adr/0031) ---------------------------------------------------------


class FeedState(StrEnum):
    """What happened to an adapter's market data stream (:meth:`MarketListener.on_feed`)."""

    UP = "up"
    """The stream (re)connected and its subscriptions are renewed: what arrives from now on is live."""
    DOWN = "down"
    """The stream dropped: everything received before is stale. The adapter reconnects by itself."""
    CLOSED = "closed"
    """The adapter was closed: nothing more will come from it."""


class MarketListener(Protocol):
    """Receives an adapter's market data as it arrives (:meth:`MarketPush.add_market_listener`).

    Called synchronously from the adapter's stream task, in arrival order: a listener must return
    quickly and must not raise (an exception is logged and the update goes on to the other listeners).
    Symbols are canonical; values are the adapter's own immutable structs.
    """

    def on_quote(self, quote: Quote) -> None:
        """A new top of book of a symbol subscribed with :meth:`QuoteFeed.subscribe_quotes`."""

    def on_book(self, book: OrderBookView) -> None:
        """A subscribed book changed (or was (re)built from a snapshot); ``book`` is in sync."""

    def on_trade(self, trade: Trade) -> None:
        """A public trade print of a symbol subscribed with :meth:`TradeFeed.subscribe_trades`."""

    def on_feed(self, state: FeedState, reason: str | None) -> None:
        """The stream went up, down or was closed (:class:`FeedState`)."""


class MarketPush(ABC):
    """Optional mix-in for adapters that push market data to listeners instead of only keeping the latest.

    It adds no subscription of its own: what reaches a listener is what the adapter's other mix-ins
    (:class:`QuoteFeed`, :class:`MarketDataAdapter`, :class:`TradeFeed`) were asked to subscribe. A
    quote or book from before a :attr:`FeedState.DOWN` is never pushed again as if live.
    """

    @abstractmethod
    def add_market_listener(self, listener: MarketListener) -> Callable[[], None]:
        """Register ``listener``; returns a function that unregisters it (idempotent)."""


class TradeFeed(ABC):
    """Optional mix-in for adapters that stream public trade prints (pushed to :class:`MarketPush` listeners).

    Symbols are canonical; one the venue does not list is refused with :class:`OrderRefused`
    (``invalid_order``) before anything is subscribed. Subscriptions outlive reconnects.
    """

    @abstractmethod
    async def subscribe_trades(self, symbols: Iterable[str]) -> None:
        """Start streaming the trades of ``symbols``. Idempotent; returns once requested."""


class MarketListeners:
    """The listener registry a :class:`MarketPush` adapter keeps: registration and a fan-out that
    isolates one failing listener from the others and from the adapter's stream."""

    def __init__(self) -> None:
        self._listeners: dict[int, MarketListener] = {}
        self.failures = 0
        """Updates a listener raised on; only the first failure of each listener is logged (a bug would
        otherwise log a traceback per tick)."""
        self._failed: set[int] = set()

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def add(self, listener: MarketListener) -> Callable[[], None]:
        """Register ``listener``; returns its remover."""
        key = id(listener)
        self._listeners[key] = listener

        def remove() -> None:
            if self._listeners.get(key) is listener:
                del self._listeners[key]
                self._failed.discard(key)

        return remove

    def _each(self, call: Callable[[MarketListener], None]) -> None:
        for key, listener in list(self._listeners.items()):
            try:
                call(listener)
            except Exception as exc:  # noqa: BLE001 - a listener's bug must not break the adapter's stream
                self.failures += 1
                if key not in self._failed:
                    self._failed.add(key)
                    # No traceback: rendering one (with locals, in dev logs) stalls the stream for seconds.
                    _log.error("market_listener_failed", listener=type(listener).__name__, error=repr(exc))

    def quote(self, quote: Quote) -> None:
        """Push a quote."""
        if self._listeners:
            self._each(lambda listener: listener.on_quote(quote))

    def book(self, book: OrderBookView) -> None:
        """Push a book."""
        if self._listeners:
            self._each(lambda listener: listener.on_book(book))

    def trade(self, trade: Trade) -> None:
        """Push a trade."""
        if self._listeners:
            self._each(lambda listener: listener.on_trade(trade))

    def feed(self, state: FeedState, reason: str | None = None) -> None:
        """Tell every listener the stream's state."""
        if self._listeners:
            self._each(lambda listener: listener.on_feed(state, reason))


# --- helpers every adapter uses -----------------------------------------------------------------


class SeenTradeIds:
    """Remembers recent trade ids so each fill is emitted once, whichever path reported it first.

    Bounded (oldest forgotten first): a fill repeated after ``capacity`` newer fills is caught by
    the store's unique (account_id, trade_id) key instead.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._seen: OrderedDict[str, None] = OrderedDict()

    def first_time(self, trade_id: str) -> bool:
        """Record ``trade_id``; ``True`` only the first time it is seen."""
        if trade_id in self._seen:
            self._seen.move_to_end(trade_id)
            return False
        self._seen[trade_id] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._seen)


async def resolve_outcome(
    adapter: BrokerAdapter,
    client_order_id: str,
    *,
    attempts: int = 5,
    wait: Callable[[int], Awaitable[None]],
) -> Order | None:
    """Find out what became of a request whose outcome is unknown, by looking the order up.

    Returns the venue's order if it exists (the request took effect: do not resend), or ``None``
    after ``attempts`` lookups that all said "unknown" (it did not: resending with the *same*
    client order id is safe, and a venue that got it after all refuses the duplicate). ``wait(i)``
    sleeps before retry ``i`` (inject the backoff, so tests need no real time). Transient errors
    during lookup count as attempts; a definitive refusal propagates.
    """
    for attempt in range(attempts):
        try:
            found = await adapter.order(client_order_id=client_order_id)
        except (TransientBrokerError, OutcomeUnknown):
            found = None
        else:
            if found is not None:
                return found
        if attempt + 1 < attempts:
            await wait(attempt)
    return None


# --- the registry -------------------------------------------------------------------------------

AdapterFactory = Callable[[AdapterConfig], BrokerAdapter]
_registry: dict[str, AdapterFactory] = {}
_credential_fields: dict[str, tuple[str, ...]] = {}
BUILTIN_ADAPTERS: dict[str, str] = {
    "sim": "brokerlink.brokers.sim.adapter",
    "alpaca": "brokerlink.brokers.alpaca.adapter",
    "oanda": "brokerlink.brokers.oanda.adapter",
    "ccxt": "brokerlink.brokers.ccxt.adapter",
}
"""The kinds shipped with brokerlink and the module that registers each, imported on first use of that
kind: each adapter module imports this one, and importing ccxt alone takes seconds (more where no
bytecode is cached), which a process that links no exchange should not pay."""


def load_adapter(kind: str) -> None:
    """Import the built-in module that registers ``kind``, if it is not registered yet (nothing for a
    kind that is not built in). Blocks while importing: see :func:`adapter_loaded`."""
    module = BUILTIN_ADAPTERS.get(kind)
    if module is not None and kind not in _registry:
        importlib.import_module(module)


def adapter_loaded(kind: str) -> bool:
    """Whether :func:`create_adapter` can make a ``kind`` adapter without importing anything first
    (an async caller imports in a thread when not: ccxt's import held the event loop for seconds)."""
    return kind in _registry or kind not in BUILTIN_ADAPTERS


def register_adapter(kind: str, factory: AdapterFactory, *, credential_fields: tuple[str, ...] | None = None) -> None:
    """Make ``kind`` available to :func:`create_adapter`. Registering a kind twice is an error.

    ``credential_fields`` names the credentials a user enters (default: the factory's own
    ``credential_fields`` when it is an adapter class).
    """
    if kind in _registry and _registry[kind] is not factory:
        raise ValueError(f"broker kind {kind!r} is already registered")
    _registry[kind] = factory
    _credential_fields[kind] = credential_fields or tuple(getattr(factory, "credential_fields", ()))


def create_adapter(kind: str, config: AdapterConfig) -> BrokerAdapter:
    """A new adapter for ``kind``; an unknown kind is a clear error naming the known ones."""
    load_adapter(kind)
    try:
        factory = _registry[kind]
    except KeyError:
        known = ", ".join(sorted({*_registry, *BUILTIN_ADAPTERS})) or "none"
        raise ValueError(f"unknown broker kind {kind!r} (known: {known})") from None
    return factory(config)


def adapter_credential_fields(kind: str) -> tuple[str, ...]:
    """The credential fields of ``kind``'s adapter (empty for a factory that does not say)."""
    load_adapter(kind)
    return _credential_fields.get(kind, ())


def adapter_kinds() -> list[str]:
    """The registered broker kinds and the built-in ones (which are imported only when used)."""
    return sorted({*_registry, *BUILTIN_ADAPTERS})
