"""The test venue's v20 commands: create, replace and cancel orders, close positions.

Each validates as OANDA does (a refusal is a ``*_REJECT`` transaction and a 400 with its
``rejectReason`` as ``errorCode``), writes the transactions OANDA writes, in OANDA's order, and runs
the order through the sim core. The core's updates are collected while a command runs
(:attr:`OandaCore.capturing`) and turned into transactions after the command's own ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import msgspec

from brokerlink.brokers.oanda import wire
from brokerlink.brokers.oanda.venue.core import OandaCore
from brokerlink.brokers.oanda.venue.ledger import OrderRecord
from brokerlink.brokers.sim.gate import WireError
from brokerlink.brokers.sim.wire import AmendOrder, ErrorCode, NewOrder
from brokerlink.domain.enums import OrderType, Side, TimeInForce

_TYPES = {"MARKET": OrderType.MARKET, "LIMIT": OrderType.LIMIT, "STOP": OrderType.STOP}
_TIF = {
    "GTC": TimeInForce.GTC,
    "GTD": TimeInForce.GTC,
    "GFD": TimeInForce.DAY,
    "FOK": TimeInForce.FOK,
    "IOC": TimeInForce.IOC,
}
NOT_FOUND = "ORDER_DOESNT_EXIST"


class OandaError(Exception):
    """An error answer: status and v20 error body."""

    def __init__(self, status: int, body: wire.ErrorBody, headers: dict[str, str] | None = None) -> None:
        super().__init__(body.error_message)
        self.status = status
        self.body = body
        self.headers = headers or {}


@contextmanager
def _command(core: OandaCore) -> Iterator[None]:
    core.capturing = True
    try:
        yield
    finally:
        core.capturing = False
        core.batch_id = None
        core.flush()  # anything the command did not pick up itself


def _digits(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 99


def reject_reason(  # noqa: PLR0911 - one reason per way a request can be wrong
    core: OandaCore, account_id: str, order: wire.OrderRequest, *, replacing: bool = False
) -> str | None:
    """Why OANDA would refuse this order request, or ``None``."""
    entry = core.entries.get(order.instrument)
    if entry is None:
        return "INSTRUMENT_UNKNOWN"
    inst = entry.instrument
    units = abs(order.units)
    if not order.units.is_finite() or not units:
        return "UNITS_INVALID"
    if _digits(units) > _digits(inst.qty_step):
        return "UNITS_PRECISION_EXCEEDED"
    if units < inst.min_qty:
        return "UNITS_MIMIMUM_NOT_MET"  # sic: v20's spelling
    if inst.max_qty is not None and units > inst.max_qty:
        return "UNITS_LIMIT_EXCEEDED"
    if order.type == "MARKET" and order.time_in_force not in (None, "FOK", "IOC"):
        return "TIME_IN_FORCE_INVALID"
    if order.type != "MARKET":
        if order.price is None:
            return "PRICE_MISSING"
        if not order.price.is_finite() or order.price <= 0:
            return "PRICE_INVALID"
        if _digits(order.price) > _digits(inst.tick_size):
            return "PRICE_PRECISION_EXCEEDED"
    extension = order.client_extensions.id if order.client_extensions else None
    if extension and not replacing and extension in core.ledgers[account_id].by_client:
        return "CLIENT_ORDER_ID_ALREADY_EXISTS"
    return None


def _refuse(core: OandaCore, account_id: str, order: wire.OrderRequest, reason: str) -> OandaError:
    ledger = core.ledgers[account_id]
    txn_id = ledger.next_id()
    txn = core.txn(
        account_id,
        txn_id,
        f"{order.type}_ORDER_REJECT",
        instrument=order.instrument,
        units=order.units,
        price=order.price,
        time_in_force=order.time_in_force,
        position_fill=order.position_fill,
        reason="CLIENT_ORDER",
        client_extensions=order.client_extensions,
        reject_reason=reason,
    )
    core.publish(account_id, txn)
    body = wire.ErrorBody(
        error_message=f"The order request was rejected: {reason}",
        error_code=reason,
        order_reject_transaction=txn,
        related_transaction_ids=[txn_id],
        last_transaction_id=txn_id,
    )
    return OandaError(400, body)


def _new_order(order: OrderRecord, tif: TimeInForce) -> NewOrder:
    kind = _TYPES[order.type]
    return NewOrder(
        client_order_id=order.core_coid or order.id,
        symbol=order.instrument,
        side=Side.BUY if order.units > 0 else Side.SELL,
        qty=abs(order.units),
        type=kind,
        tif=tif,
        limit_price=order.price if kind is OrderType.LIMIT else None,
        stop_price=order.price if kind is OrderType.STOP else None,
    )


def _execute(core: OandaCore, account_id: str, order: OrderRecord, tif: TimeInForce) -> list[wire.Transaction]:
    """Run a recorded order through the engine; its transactions. One it cannot afford is cancelled, as at OANDA."""
    try:
        core.place(account_id, _new_order(order, tif))
    except WireError as exc:
        reason = "INSUFFICIENT_MARGIN" if exc.code is ErrorCode.INSUFFICIENT_FUNDS else "INTERNAL_SERVER_ERROR"
        return [core.publish(account_id, core.cancel_transaction(account_id, order, reason))]
    return core.flush()


def _create(
    core: OandaCore, account_id: str, order: wire.OrderRequest, **extra: object
) -> tuple[OrderRecord, wire.Transaction]:
    ledger = core.ledgers[account_id]
    txn_id = ledger.next_id()
    core.batch_id = core.batch_id or txn_id
    tif: wire.TimeInForceCode = order.time_in_force or ("FOK" if order.type == "MARKET" else "GTC")
    record = OrderRecord(
        id=txn_id,
        type=order.type,
        instrument=order.instrument,
        units=order.units,
        price=order.price if order.type != "MARKET" else None,
        time_in_force=tif,
        create_time=core.now(),
        core_coid=f"o{txn_id}",
        gtd_time=order.gtd_time,
        position_fill=order.position_fill,
        client_extensions=order.client_extensions,
    )
    reason = extra.pop("reason", "CLIENT_ORDER")
    txn = core.txn(
        account_id,
        txn_id,
        f"{order.type}_ORDER",
        instrument=order.instrument,
        units=order.units,
        price=record.price,
        price_bound=order.price_bound,
        time_in_force=tif,
        gtd_time=order.gtd_time,
        position_fill=order.position_fill,
        trigger_condition=None if order.type == "MARKET" else (order.trigger_condition or "DEFAULT"),
        reason=str(reason),
        client_extensions=order.client_extensions,
        trade_client_extensions=order.trade_client_extensions,
        **extra,
    )
    return record, txn


def _response(
    core: OandaCore, account_id: str, create: wire.Transaction, rest: list[wire.Transaction]
) -> wire.CreateOrderResponse:
    return wire.CreateOrderResponse(
        order_create_transaction=create,
        order_fill_transaction=next((t for t in rest if t.type == "ORDER_FILL"), None),
        order_cancel_transaction=next((t for t in rest if t.type == "ORDER_CANCEL" and t.order_id == create.id), None),
        related_transaction_ids=[t.id for t in (create, *rest) if t.id],
        last_transaction_id=core.ledgers[account_id].last_transaction_id,
    )


def create_order(core: OandaCore, account_id: str, order: wire.OrderRequest) -> wire.CreateOrderResponse:
    """``POST .../orders``."""
    with _command(core):
        reason = reject_reason(core, account_id, order)
        if reason is None and core.faults.take_reject():
            reason = "ACCOUNT_ORDER_CREATION_LOCKED"  # the injected refusal (reject_next)
        if reason is not None:
            raise _refuse(core, account_id, order, reason)
        record, create = _create(core, account_id, order)
        core.ledgers[account_id].add_order(record)
        core.publish(account_id, create)
        return _response(core, account_id, create, _execute(core, account_id, record, _TIF[record.time_in_force]))


def _pending(core: OandaCore, account_id: str, specifier: str) -> OrderRecord:
    order = core.ledgers[account_id].find(specifier)
    if order is None or order.state != "PENDING":
        body = wire.ErrorBody(error_message="The Order specified does not exist", error_code=NOT_FOUND)
        raise OandaError(404, body)
    return order


def replace_order(
    core: OandaCore, account_id: str, specifier: str, order: wire.OrderRequest
) -> wire.CreateOrderResponse:
    """``PUT .../orders/{specifier}``: cancel the order, create its replacement (same client extensions
    unless new ones are given) and amend the engine's order in place, which keeps its queue rules."""
    with _command(core):
        old = _pending(core, account_id, specifier)
        if order.type != old.type or order.instrument != old.instrument:
            raise OandaError(
                400,
                wire.ErrorBody(
                    error_message="the test venue replaces an order only with one of the same type and instrument"
                ),
            )
        reason = reject_reason(core, account_id, order, replacing=True)
        if reason is not None:
            raise _refuse(core, account_id, order, reason)
        kind = _TYPES[old.type]
        amend = AmendOrder(
            qty=abs(order.units),
            limit_price=order.price if kind is OrderType.LIMIT else None,
            stop_price=order.price if kind is OrderType.STOP else None,
        )
        try:
            core.amend(account_id, old.core_coid or old.id, amend)
        except WireError as exc:
            raise _refuse(
                core, account_id, order, "UNITS_INVALID" if "qty" in exc.message else "PRICE_INVALID"
            ) from None
        ledger = core.ledgers[account_id]
        cancel_id = ledger.next_id()
        core.batch_id = cancel_id
        replacement = msgspec.structs.replace(
            order,
            client_extensions=order.client_extensions or old.client_extensions,
            time_in_force=order.time_in_force or old.time_in_force,
        )
        record, create = _create(core, account_id, replacement, reason="REPLACEMENT", replaces_order_id=old.id)
        record.core_coid, record.replaces_order_id = old.core_coid, old.id
        cancel = core.cancel_transaction(
            account_id, old, "CLIENT_REQUEST_REPLACED", replaced_by=record.id, txn_id=cancel_id
        )
        core.publish(account_id, cancel)
        ledger.add_order(record)
        core.publish(account_id, create)
        response = _response(core, account_id, create, core.flush())
        return msgspec.structs.replace(
            response,
            order_cancel_transaction=cancel,
            related_transaction_ids=[cancel_id, *response.related_transaction_ids],
        )


def cancel_order(core: OandaCore, account_id: str, specifier: str) -> wire.CancelOrderResponse:
    """``PUT .../orders/{specifier}/cancel``."""
    with _command(core):
        ledger = core.ledgers[account_id]
        order = ledger.find(specifier)
        if order is None or order.state != "PENDING":
            txn_id = ledger.next_id()
            reject = core.txn(
                account_id,
                txn_id,
                "ORDER_CANCEL_REJECT",
                order_id=order.id if order else None,
                client_order_id=specifier[1:] if specifier.startswith("@") else None,
                reject_reason=NOT_FOUND,
            )
            core.publish(account_id, reject)
            body = wire.ErrorBody(
                error_message="The Order specified does not exist",
                error_code=NOT_FOUND,
                order_cancel_reject_transaction=reject,
                related_transaction_ids=[txn_id],
                last_transaction_id=txn_id,
            )
            raise OandaError(404, body)
        core.cancel(account_id, order.core_coid or order.id)
        cancel = next(t for t in core.flush() if t.type == "ORDER_CANCEL" and t.order_id == order.id)
        return wire.CancelOrderResponse(
            order_cancel_transaction=cancel,
            related_transaction_ids=[cancel.id or ""],
            last_transaction_id=ledger.last_transaction_id,
        )


def close_position(
    core: OandaCore, account_id: str, instrument: str, body: wire.ClosePositionBody
) -> wire.ClosePositionResponse:
    """``PUT .../positions/{instrument}/close``: a REDUCE_ONLY market order per side asked for."""
    ledger = core.ledgers[account_id]
    if ledger.hedging:
        raise OandaError(400, wire.ErrorBody(error_message="the test venue closes positions of netting accounts only"))
    held = sum((t.current_units for t in ledger.open_trades(instrument)), Decimal(0))
    out: dict[str, wire.Transaction | None] = {}
    with _command(core):
        for side, asked, sign in (("long", body.long_units, 1), ("short", body.short_units, -1)):
            if asked in (None, "NONE"):
                continue
            units = held if held * sign > 0 else Decimal(0)
            if asked != "ALL":
                units = min(abs(units), Decimal(asked)) * sign
            request = wire.OrderRequest(
                type="MARKET", instrument=instrument, units=-units, time_in_force="FOK", position_fill="REDUCE_ONLY"
            )
            if not units:
                raise _refuse(core, account_id, request, "CLOSEOUT_POSITION_DOESNT_EXIST")
            closeout = wire.PositionCloseout(instrument=instrument, units=asked)
            extra = {f"{side}_position_closeout": closeout}
            record, create = _create(core, account_id, request, reason="POSITION_CLOSEOUT", **extra)
            record.fill_reason = "MARKET_ORDER_POSITION_CLOSEOUT"
            ledger.add_order(record)
            core.publish(account_id, create)
            rest = _execute(core, account_id, record, TimeInForce.FOK)
            out[f"{side}_order_create_transaction"] = create
            out[f"{side}_order_fill_transaction"] = next((t for t in rest if t.type == "ORDER_FILL"), None)
            out[f"{side}_order_cancel_transaction"] = next((t for t in rest if t.type == "ORDER_CANCEL"), None)
    ids = sorted({t.id for t in out.values() if t is not None and t.id}, key=int)
    answer = wire.ClosePositionResponse(related_transaction_ids=ids, last_transaction_id=ledger.last_transaction_id)
    return msgspec.structs.replace(answer, **out)
