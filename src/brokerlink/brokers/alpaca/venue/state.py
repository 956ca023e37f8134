"""The Alpaca test venue's state: Alpaca's rules and identities around the sim venue core.

Orders really match: :class:`AlpacaVenue` validates a request by Alpaca's rules (order types and
time in force per asset class, ``qty`` xor ``notional``, no shorting crypto, unique
``client_order_id``), then hands it to the core's matching engine under a core id of its own.
The core publishes what happens on its hub; two bridges (hub subscribers) turn that into Alpaca's
``trade_updates`` messages and market data points for the connections of :mod:`.streams`. The
core's fault injection (duplicated and reordered updates) acts before the bridges, so the Alpaca
streams carry those faults as the sim's do.

``FILL`` activities are written from the core's own fill log (never from the shaped stream, which
may repeat or reorder), right after every core call that can fill: requests and market steps.
"""

from __future__ import annotations

import hmac
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Protocol

import msgspec

from brokerlink.brokers.alpaca.venue.assets import ALPACA_ASSETS, ListedAsset
from brokerlink.brokers.alpaca.venue.orders import (
    AlpacaError,
    OrderRecord,
    forbidden,
    invalid,
    not_found,
    unprocessable,
)
from brokerlink.brokers.alpaca.wire import (
    MAX_CLIENT_ORDER_ID,
    MD_ENCODER,
    CancelResult,
    ErrorCode,
    MdQuote,
    MdTrade,
    NewOrder,
    Order,
    ReplaceOrder,
    StreamMessage,
    TradeActivity,
    TradeUpdate,
)
from brokerlink.brokers.sim.gate import WireError
from brokerlink.brokers.sim.venue.config import VenueConfig
from brokerlink.brokers.sim.venue.hub import TRADE_UPDATES
from brokerlink.brokers.sim.venue.orders import TradeBody
from brokerlink.brokers.sim.venue.state import MAX_FILLS_PAGE, Venue
from brokerlink.brokers.sim.wire import AmendOrder, OrderBody, QuoteBody
from brokerlink.brokers.sim.wire import ErrorCode as CoreError
from brokerlink.brokers.sim.wire import NewOrder as CoreOrder
from brokerlink.brokers.sim.wire import TradeUpdate as CoreUpdate
from brokerlink.domain.enums import OrderStatus, OrderType, Side, TimeInForce
from brokerlink.kit.clock import Clock

_TYPES = {
    "market": OrderType.MARKET,
    "limit": OrderType.LIMIT,
    "stop": OrderType.STOP,
    "stop_limit": OrderType.STOP_LIMIT,
}
_TIFS = {"day": TimeInForce.DAY, "gtc": TimeInForce.GTC, "ioc": TimeInForce.IOC, "fok": TimeInForce.FOK}
_CRYPTO_TYPES = frozenset({"market", "limit", "stop_limit"})
_CRYPTO_TIFS = frozenset({"gtc", "ioc", "fok"})
_OPEN = frozenset({OrderStatus.PENDING_NEW, OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED})
_CENT = Decimal("0.01")
_RATIO = Decimal("0.0000000001")
_STREAM_ENCODER = msgspec.json.Encoder()


class TradeSink(Protocol):
    """A ``trade_updates`` listener (a trading stream connection)."""

    account_id: str

    def push(self, frame: bytes) -> None:
        """Queue one encoded stream message; never blocks."""
        ...


class MarketSink(Protocol):
    """A market data connection: its feed and subscriptions."""

    kind: str
    quotes: set[str]
    trades: set[str]

    def push(self, item: bytes) -> None:
        """Queue one encoded data point; the connection sends queued points as one array."""
        ...


class Closable(Protocol):
    """Any live connection of the venue (``drop_connections`` and shutdown close them all)."""

    def close(self, code: int, reason: str) -> None:
        """End the connection with this WebSocket close code."""
        ...


class _TradeBridge:
    """A hub subscriber for one account's core ``trade_updates``."""

    def __init__(self, venue: AlpacaVenue, account_id: str) -> None:
        self.venue = venue
        self.account_id = account_id
        self.channels = {TRADE_UPDATES}

    def deliver(self, channel: str, data: msgspec.Raw) -> None:  # noqa: ARG002 - the hub's protocol
        self.venue.on_core_update(self.account_id, msgspec.json.decode(data, type=CoreUpdate))

    def close(self, code: int, reason: str) -> None:
        """Connections are closed by the venue itself; the bridge stays."""


class _MarketBridge:
    """A hub subscriber for every symbol's core quotes and trades."""

    def __init__(self, venue: AlpacaVenue, symbols: Sequence[str]) -> None:
        self.venue = venue
        self.account_id = ""
        self.channels = {f"{kind}:{s}" for s in symbols for kind in ("quotes", "trades")}

    def deliver(self, channel: str, data: msgspec.Raw) -> None:
        kind, _, symbol = channel.partition(":")
        if kind == "quotes":
            self.venue.on_core_quote(symbol, msgspec.json.decode(data, type=QuoteBody))
        else:
            self.venue.on_core_trade(symbol, msgspec.json.decode(data, type=TradeBody))

    def close(self, code: int, reason: str) -> None:
        """See :meth:`_TradeBridge.close`."""


class AlpacaVenue:
    """The whole venue: the core, Alpaca identities of orders, activities, and stream listeners."""

    def __init__(
        self, config: VenueConfig, *, clock: Clock | None = None, assets: Sequence[ListedAsset] = ALPACA_ASSETS
    ) -> None:
        self.config = config
        self.core = Venue(config, clock=clock, instruments=[a.sim for a in assets])
        self.clock = self.core.clock
        self.faults = self.core.faults
        self.assets = {a.symbol: a for a in assets}
        self._spellings = {**{a.position_symbol: a for a in assets}, **self.assets}
        self._records: dict[str, OrderRecord] = {}
        self._by_client: dict[tuple[str, str], str] = {}
        self._current: dict[str, str] = {}  # core id -> the current record's id
        self._core_seq = 0
        self._activities: dict[str, list[TradeActivity]] = {a.account_id: [] for a in config.accounts}
        self._fill_cursor: dict[str, int] = defaultdict(int)
        self._cum: dict[str, Decimal] = defaultdict(Decimal)
        self.trade_sinks: set[TradeSink] = set()
        self.market_sinks: set[MarketSink] = set()
        self.connections: set[Closable] = set()
        for account in config.accounts:
            self.core.hub.add(_TradeBridge(self, account.account_id))
        self.core.hub.add(_MarketBridge(self, list(self.assets)))

    def step(self, dt: timedelta | None = None) -> None:
        """One market data step of the core (prices, market maker, quotes), then its fills as activities."""
        self.core.step(dt)
        self.sync_fills()

    def close_connections(self, code: int, reason: str) -> int:
        """Close every stream connection; returns how many there were."""
        live = list(self.connections)
        for connection in live:
            connection.close(code, reason)
        return len(live)

    # --- identities ----------------------------------------------------------------------------

    def asset(self, symbol: str) -> ListedAsset:
        """An asset by ``AAPL``, ``BTC/USD`` or ``BTCUSD``; 422 when the venue does not list it."""
        asset = self._spellings.get(symbol.strip().upper())
        if asset is None:
            raise invalid(f'asset "{symbol}" not found')
        return asset

    def account_id(self, api_key: str, secret: str) -> str | None:
        """The account a key pair trades, or ``None`` (the secret is compared in constant time)."""
        key = self.core.gate.keys.get(api_key)
        if key is None or not hmac.compare_digest(key.secret.encode(), secret.encode()):
            return None
        return key.account_id

    def _record(self, account_id: str, order_id: str) -> OrderRecord:
        record = self._records.get(order_id)
        if record is None or record.account_id != account_id:
            raise not_found()
        return record

    def _snapshot(self, record: OrderRecord) -> OrderBody:
        return record.frozen or self.core.order_by_client_id(record.account_id, record.core_id)

    def _wire(self, record: OrderRecord) -> Order:
        return record.wire(self._snapshot(record))

    def _new_client_id(self, account_id: str, client_order_id: str | None) -> str:
        client_order_id = client_order_id or str(uuid.uuid4())
        if len(client_order_id) > MAX_CLIENT_ORDER_ID:
            raise invalid(f"client_order_id must be no more than {MAX_CLIENT_ORDER_ID} characters")
        if (account_id, client_order_id) in self._by_client:
            raise invalid("client_order_id must be unique")
        return client_order_id

    def _register(self, record: OrderRecord) -> None:
        self._records[record.id] = record
        self._by_client[record.account_id, record.client_order_id] = record.id
        self._current[record.core_id] = record.id

    def _unregister(self, record: OrderRecord) -> None:
        self._records.pop(record.id, None)
        self._by_client.pop((record.account_id, record.client_order_id), None)

    @staticmethod
    def _translate(exc: WireError) -> AlpacaError:
        if exc.code is CoreError.INSUFFICIENT_FUNDS:
            return forbidden("insufficient buying power")
        if exc.code is CoreError.UNKNOWN_ORDER:
            return not_found()
        if exc.code is CoreError.MARKET_CLOSED:
            return unprocessable(exc.message)
        return invalid(exc.message)

    # --- orders --------------------------------------------------------------------------------

    def _check(self, asset: ListedAsset, new: NewOrder) -> None:
        if (new.qty is None) == (new.notional is None):
            raise invalid("qty or notional is required, not both")
        if new.type == "trailing_stop" or new.order_class not in (None, "", "simple"):
            raise invalid(f"{new.order_class or new.type} orders are not offered by this test venue")
        if new.time_in_force in ("opg", "cls"):
            raise invalid(f"time_in_force {new.time_in_force} is not offered by this test venue")
        if asset.is_crypto:
            if new.type not in _CRYPTO_TYPES:
                raise invalid(f"invalid order type for crypto order: {new.type}")
            if new.time_in_force not in _CRYPTO_TIFS:
                raise invalid(f"invalid crypto time_in_force: {new.time_in_force}")
        else:
            fractional = new.notional is not None or (new.qty is not None and new.qty != new.qty.to_integral_value())
            if fractional and new.time_in_force != "day":
                raise invalid("fractional orders must be DAY orders")
        if new.notional is not None and new.type != "market":
            raise invalid("notional orders must be market orders")

    def _qty_for(self, asset: ListedAsset, new: NewOrder) -> Decimal:
        if new.qty is not None:
            return new.qty
        notional = new.notional or Decimal(0)
        if notional < 1:
            raise invalid("notional must be at least $1")
        touch = self.core.quote(asset.symbol)
        price = touch.ask if new.side == "buy" else touch.bid
        step = asset.sim.instrument.qty_step
        qty = (notional / price).quantize(step, rounding=ROUND_DOWN)
        if qty < asset.sim.instrument.min_qty:
            raise invalid(f"notional {notional} buys less than the minimum order size of {asset.symbol}")
        return qty

    def _check_crypto_balance(self, account_id: str, asset: ListedAsset, qty: Decimal) -> None:
        held = sum((p.qty for p in self.core.positions(account_id) if p.symbol == asset.symbol), Decimal(0))
        selling = sum(
            (
                o.qty - o.filled_qty
                for o in self.core.orders(account_id)
                if o.symbol == asset.symbol and o.side is Side.SELL
            ),
            Decimal(0),
        )
        available = held - selling
        if qty > available:
            raise forbidden(
                f"insufficient balance for {asset.sim.instrument.base} (requested: {qty}, available: {available})"
            )

    def place(self, account_id: str, new: NewOrder) -> Order:
        """``POST /v2/orders``: check, match, answer with the order as it stands after matching."""
        if self.faults.take_reject():
            raise invalid("order rejected (injected fault: reject_next)")
        asset = self.asset(new.symbol)
        client_order_id = self._new_client_id(account_id, new.client_order_id)
        self._check(asset, new)
        qty = self._qty_for(asset, new)
        if asset.is_crypto and new.side == "sell":
            self._check_crypto_balance(account_id, asset, qty)
        self._core_seq += 1
        record = OrderRecord(
            id=str(uuid.uuid4()),
            client_order_id=client_order_id,
            core_id=f"a{self._core_seq}",
            account_id=account_id,
            asset=asset,
            time_in_force=new.time_in_force,
            notional=new.notional,
            created_at=self.now(),
        )
        self._register(record)  # before matching: the bridge needs it for the updates matching publishes
        core_order = CoreOrder(
            client_order_id=record.core_id,
            symbol=asset.symbol,
            side=Side(new.side),
            qty=qty,
            type=_TYPES[new.type],
            tif=_TIFS[new.time_in_force],
            limit_price=new.limit_price,
            stop_price=new.stop_price,
        )
        try:
            body = self.core.place(account_id, core_order)
        except WireError as exc:
            self._unregister(record)
            raise self._translate(exc) from None
        self.sync_fills()
        return record.wire(body)

    def replace(self, account_id: str, order_id: str, change: ReplaceOrder) -> Order:
        """``PATCH /v2/orders/{id}``: a new order replaces the working one; the new order answers."""
        record = self._record(account_id, order_id)
        snapshot = self._snapshot(record)
        if record.replaced_by is not None or snapshot.status not in _OPEN:
            raise unprocessable(f"order is {record.wire(snapshot).status}: not replaceable")
        if change.trail is not None or change.time_in_force not in (None, record.time_in_force):
            raise invalid("this test venue replaces qty, limit_price and stop_price only")
        client_order_id = self._new_client_id(account_id, change.client_order_id)
        now = self.now()
        newer = OrderRecord(
            id=str(uuid.uuid4()),
            client_order_id=client_order_id,
            core_id=record.core_id,
            account_id=account_id,
            asset=record.asset,
            time_in_force=record.time_in_force,
            notional=None,
            created_at=now,
            replaces=record.id,
        )
        record.frozen, record.replaced_by, record.replaced_at = snapshot, newer.id, now
        self._register(newer)
        amend = AmendOrder(qty=change.qty, limit_price=change.limit_price, stop_price=change.stop_price)
        try:
            body = self.core.amend(account_id, record.core_id, amend)
        except WireError as exc:
            self._unregister(newer)
            record.frozen = record.replaced_by = record.replaced_at = None
            self._current[record.core_id] = record.id
            raise self._translate(exc) from None
        self.sync_fills()
        return newer.wire(body)

    def cancel(self, account_id: str, order_id: str) -> None:
        """``DELETE /v2/orders/{id}``: 204 once the cancel is accepted; 422 if not cancelable."""
        record = self._record(account_id, order_id)
        if record.replaced_by is not None:
            raise unprocessable("order is not cancelable")
        try:
            self.core.cancel(account_id, record.core_id)
        except WireError:
            raise unprocessable("order is not cancelable") from None
        self.sync_fills()

    def cancel_all(self, account_id: str) -> list[CancelResult]:
        """``DELETE /v2/orders``: one result per open order (HTTP 207)."""
        canceled = self.core.cancel_all(account_id)
        out = []
        for body in canceled:
            record = self._records[self._current[body.client_order_id]]
            out.append(CancelResult(id=record.id, status=200, body=record.wire(body)))
        self.sync_fills()
        return out

    # --- reports -------------------------------------------------------------------------------

    def order(self, account_id: str, order_id: str) -> Order:
        """``GET /v2/orders/{id}``."""
        return self._wire(self._record(account_id, order_id))

    def order_by_client_id(self, account_id: str, client_order_id: str) -> Order:
        """``GET /v2/orders:by_client_order_id``: a replaced order answers as replaced, with ``replaced_by``."""
        order_id = self._by_client.get((account_id, client_order_id))
        if order_id is None:
            raise not_found()
        return self._wire(self._records[order_id])

    def orders(
        self,
        account_id: str,
        *,
        status: str = "open",
        limit: int = 50,
        ascending: bool = False,
        symbols: set[str] | None = None,
    ) -> list[Order]:
        """``GET /v2/orders``: ``open``, ``closed`` or ``all``, by submission time."""
        if status not in ("open", "closed", "all"):
            raise invalid("status must be open, closed or all")
        out = []
        for record in self._records.values():
            if record.account_id != account_id:
                continue
            if symbols and record.asset.symbol not in symbols and record.asset.position_symbol not in symbols:
                continue
            order = self._wire(record)
            is_open = order.status in ("pending_new", "new", "partially_filled", "pending_cancel")
            if status == "all" or (status == "open") == is_open:
                out.append(order)
        out.sort(key=lambda o: o.created_at, reverse=not ascending)
        return out[: max(1, min(limit, 500))]

    def activities(
        self, account_id: str, *, ascending: bool, page_size: int, page_token: str | None
    ) -> list[TradeActivity]:
        """``GET /v2/account/activities/FILL``: a page after (asc) or before (desc) ``page_token``."""
        self.sync_fills()
        log = self._activities[account_id] if ascending else self._activities[account_id][::-1]
        start = 0
        if page_token:
            ids = [a.id for a in log]
            if page_token not in ids:
                raise invalid("invalid page_token")
            start = ids.index(page_token) + 1
        return log[start : start + page_size]

    # --- the core's events, in Alpaca's forms ---------------------------------------------------

    def sync_fills(self) -> None:
        """Write the core's new fills as ``FILL`` activities, under the identity each order has now."""
        for account_id in self._activities:
            while True:
                page = self.core.fills(account_id, self._fill_cursor[account_id], MAX_FILLS_PAGE)
                for fill in page.fills:
                    self._fill_cursor[account_id] = fill.id
                    record = self._records[self._current[fill.client_order_id]]
                    cum = self._cum[fill.client_order_id] = self._cum[fill.client_order_id] + fill.qty
                    core = self.core.order_by_client_id(account_id, fill.client_order_id)
                    leaves = max(Decimal(0), core.qty - cum)
                    stamp = fill.ts.strftime("%Y%m%d%H%M%S") + f"{fill.ts.microsecond // 1000:03d}"
                    self._activities[account_id].append(
                        TradeActivity(
                            activity_type="FILL",
                            id=f"{stamp}::{self._execution_id(fill.execution_id)}",
                            cum_qty=cum,
                            leaves_qty=leaves,
                            price=fill.price,
                            qty=fill.qty,
                            side=fill.side.value,
                            symbol=record.asset.symbol,
                            transaction_time=fill.ts,
                            order_id=record.id,
                            type="fill" if leaves == 0 else "partial_fill",
                            order_status="filled" if leaves == 0 else "partially_filled",
                        )
                    )
                if page.next_since_id is None or len(page.fills) < MAX_FILLS_PAGE:
                    break

    @staticmethod
    def _execution_id(core_execution_id: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_OID, core_execution_id))

    def on_core_update(self, account_id: str, update: CoreUpdate) -> None:
        """One core ``trade_updates`` message (already shaped by faults) -> Alpaca messages to listeners."""
        current = self._current.get(update.order.client_order_id)
        if current is None:
            return
        record = self._records[current]
        when = update.order.updated_at
        out: list[TradeUpdate] = []
        match update.event:
            case "triggered":
                return  # Alpaca sends no event when a stop triggers
            case "replaced" if record.replaces is not None:
                old = self._records[record.replaces]
                out.append(TradeUpdate(event="replaced", order=old.wire(update.order), timestamp=when))
                out.append(TradeUpdate(event="new", order=record.wire(update.order), timestamp=when))
            case "fill" | "partial_fill":
                out.append(
                    TradeUpdate(
                        event=update.event,
                        order=record.wire(update.order),
                        execution_id=self._execution_id(update.execution_id or ""),
                        timestamp=when,
                        price=update.price,
                        qty=update.qty,
                        position_qty=update.position_qty,
                    )
                )
            case event:
                out.append(TradeUpdate(event=event, order=record.wire(update.order), timestamp=when))
        frames = [
            _STREAM_ENCODER.encode(StreamMessage(stream="trade_updates", data=msgspec.Raw(_STREAM_ENCODER.encode(u))))
            for u in out
        ]
        for sink in [s for s in self.trade_sinks if s.account_id == account_id]:
            for frame in frames:
                sink.push(frame)

    def on_core_quote(self, symbol: str, body: QuoteBody) -> None:
        """A core quote -> ``{"T": "q"}`` for the connections subscribed to it."""
        asset = self.assets[symbol]
        stock = not asset.is_crypto
        point = MdQuote(
            T="q",
            S=symbol,
            bp=body.bid,
            bs=body.bid_size,
            ap=body.ask,
            ask_size=body.ask_size,
            t=body.ts,
            bx="V" if stock else None,
            ax="V" if stock else None,
            c=["R"] if stock else None,
            z="C" if stock else None,
        )
        self._publish_market("quotes", asset, MD_ENCODER.encode(point))

    def on_core_trade(self, symbol: str, body: TradeBody) -> None:
        """A core trade -> ``{"T": "t"}`` for the connections subscribed to it."""
        asset = self.assets[symbol]
        if asset.is_crypto:
            point = MdTrade(
                T="t",
                S=symbol,
                i=int(body.trade_id),
                p=body.price,
                s=body.size,
                t=body.ts,
                tks="B" if body.aggressor is Side.BUY else "S",
            )
        else:
            point = MdTrade(
                T="t", S=symbol, i=int(body.trade_id), p=body.price, s=body.size, t=body.ts, x="V", c=["@"], z="C"
            )
        self._publish_market("trades", asset, MD_ENCODER.encode(point))

    def _publish_market(self, channel: str, asset: ListedAsset, item: bytes) -> None:
        kind = "crypto" if asset.is_crypto else "stock"
        for sink in self.market_sinks:
            wanted = sink.quotes if channel == "quotes" else sink.trades
            if sink.kind == kind and asset.symbol in wanted:
                sink.push(item)

    def now(self) -> datetime:
        """The venue clock at the wire's resolution (milliseconds)."""
        now = self.clock.now()
        return now.replace(microsecond=now.microsecond // 1000 * 1000)


__all__ = ["AlpacaError", "AlpacaVenue", "ErrorCode"]
