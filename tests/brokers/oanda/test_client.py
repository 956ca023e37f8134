"""OANDA's error answers mapped onto the protocol's three error kinds, and transactions onto events (no network)."""

from __future__ import annotations

import json

import msgspec
import pytest

from brokerlink.brokers.base import (
    AdapterConfig,
    BrokerRateLimited,
    Credentials,
    OrderRefused,
    OutcomeUnknown,
    TransientBrokerError,
)
from brokerlink.brokers.oanda import wire
from brokerlink.brokers.oanda.adapter import OandaAdapter
from brokerlink.brokers.oanda.client import error_for


@pytest.mark.parametrize(
    ("status", "body", "headers", "command", "expected"),
    [
        (401, {"errorMessage": "Insufficient authorization to perform request."}, {}, None, "auth"),
        (403, {"errorMessage": "forbidden"}, {}, "c", "auth"),
        (404, {"errorMessage": "x", "errorCode": "ORDER_DOESNT_EXIST"}, {}, None, "unknown_order"),
        (
            400,
            {"errorMessage": "x", "errorCode": "CLIENT_ORDER_ID_ALREADY_EXISTS"},
            {},
            "c",
            "duplicate_client_order_id",
        ),
        (400, {"errorMessage": "x", "errorCode": "INSUFFICIENT_MARGIN"}, {}, "c", "insufficient_funds"),
        (400, {"errorMessage": "x", "errorCode": "MARKET_HALTED"}, {}, "c", "market_closed"),
        (429, {"errorMessage": "slow down"}, {}, "c", "rate_limited:1000"),
        (429, {"errorMessage": "slow down"}, {"retry-after": "3"}, "c", "rate_limited:3000"),
        (500, {"errorMessage": "oops"}, {}, "c", "unknown"),
        (500, {"errorMessage": "oops"}, {}, None, "transient"),
        (503, {"errorMessage": "down"}, {}, "c", "transient"),
    ],
)
def test_errors_map_onto_the_three_kinds(
    status: int, body: dict[str, str], headers: dict[str, str], command: str | None, expected: str
) -> None:
    error = error_for(status, json.dumps(body).encode(), headers, command)
    if isinstance(error, BrokerRateLimited):
        assert expected == f"rate_limited:{error.retry_after_ms}"
    elif isinstance(error, OrderRefused):
        assert error.reason.value == expected
    elif isinstance(error, OutcomeUnknown):
        assert expected == "unknown"
    else:
        assert isinstance(error, TransientBrokerError)
        assert expected == "transient"


def _adapter() -> OandaAdapter:
    config = AdapterConfig(
        account_id="acc_1",
        venue_account_id="101-1",
        base_url="https://api-fxpractice.oanda.com",
        credentials=Credentials(values={"token": "t"}),
    )
    return OandaAdapter(config)


def _txn(txn_id: int, kind: str, **fields: object) -> wire.Transaction:
    return msgspec.convert(
        {"id": str(txn_id), "type": kind, "time": "2024-01-02T00:00:00Z", **fields}, wire.Transaction
    )


def test_each_transaction_is_handled_once_whatever_the_order() -> None:
    adapter = _adapter()
    adapter.cursor = 10
    fill = {"orderID": "11", "instrument": "EUR_USD", "units": "-100", "price": "1.1"}
    create = {"instrument": "EUR_USD", "units": "-100", "clientExtensions": {"id": "mine"}}
    adapter._handle(_txn(12, "ORDER_FILL", **fill))  # arrives before its order's creation (reordered)
    assert adapter.cursor == 10, "11 is still missing: the cursor waits for it"
    adapter._handle(_txn(11, "MARKET_ORDER", **create))
    adapter._handle(_txn(12, "ORDER_FILL", **fill))  # a duplicate
    adapter._handle(_txn(9, "ORDER_FILL", **fill))  # history before the cursor
    assert adapter.cursor == 12
    events = []
    while not adapter._events.empty():
        events.append(adapter._events.get_nowait())
    assert [type(e).__name__ for e in events] == ["OrderFilled", "OrderAccepted"]
    assert events[1].client_order_id == "mine"
    assert events[0].trade_id == "12"
    assert events[0].client_order_id == "oanda-11", "a fill before its order: the order's id stands in"


def test_a_replacement_is_an_update_and_its_cancel_no_event() -> None:
    adapter = _adapter()
    adapter._handle(_txn(1, "ORDER_CANCEL", orderID="0", clientOrderID="c", reason="CLIENT_REQUEST_REPLACED"))
    adapter._handle(
        _txn(
            2,
            "LIMIT_ORDER",
            instrument="EUR_USD",
            units="5",
            price="1.2",
            reason="REPLACEMENT",
            clientExtensions={"id": "c"},
        )
    )
    adapter._handle(_txn(3, "ORDER_CANCEL", orderID="2", clientOrderID="c", reason="TIME_IN_FORCE_EXPIRED"))
    adapter._handle(_txn(4, "MARKET_ORDER_REJECT", instrument="EUR_USD", units="5", rejectReason="UNITS_INVALID"))
    events = []
    while not adapter._events.empty():
        events.append(adapter._events.get_nowait())
    assert [type(e).__name__ for e in events] == ["OrderUpdated", "OrderExpired"]
