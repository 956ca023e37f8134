"""ccxt's errors onto the three kinds of failure; ccxt's floats and precision modes as Decimal rules; the tracker."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from ccxt.base import errors as ccxt_errors
from ccxt.base.decimal_to_precision import DECIMAL_PLACES, SIGNIFICANT_DIGITS, TICK_SIZE

from brokerlink.brokers.base import BrokerRateLimited, OrderRefused, OutcomeUnknown, RefusalReason, TransientBrokerError
from brokerlink.brokers.ccxt.errors import translate
from brokerlink.brokers.ccxt.exchange import RateLimitedAnswer, ServerErrorAnswer, create_exchange, rehost
from brokerlink.brokers.ccxt.markets import instrument, step_of, text, to_decimal
from brokerlink.brokers.ccxt.tracker import EventTracker
from brokerlink.domain.enums import AssetClass
from brokerlink.domain.events import OrderAccepted, OrderCanceled, OrderFilled
from brokerlink.domain.models import Instrument

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ccxt_errors.AuthenticationError("x"), RefusalReason.AUTH),
        (ccxt_errors.PermissionDenied("x"), RefusalReason.AUTH),
        (ccxt_errors.AccountSuspended("x"), RefusalReason.AUTH),
        (ccxt_errors.InvalidNonce("x"), RefusalReason.AUTH),
        (ccxt_errors.InsufficientFunds("x"), RefusalReason.INSUFFICIENT_FUNDS),
        (ccxt_errors.InvalidOrder("x"), RefusalReason.INVALID_ORDER),
        (ccxt_errors.BadSymbol("x"), RefusalReason.INVALID_ORDER),
        (ccxt_errors.BadRequest("x"), RefusalReason.INVALID_ORDER),
        (ccxt_errors.ExchangeError("x"), RefusalReason.INVALID_ORDER),
        (ccxt_errors.OrderNotFound("x"), RefusalReason.UNKNOWN_ORDER),
        (ccxt_errors.DuplicateOrderId("x"), RefusalReason.DUPLICATE_CLIENT_ORDER_ID),
        (ccxt_errors.MarketClosed("x"), RefusalReason.MARKET_CLOSED),
        (ccxt_errors.NotSupported("x"), RefusalReason.NOT_SUPPORTED),
    ],
)
def test_definitive_refusals(error: Exception, reason: RefusalReason) -> None:
    for coid in (None, "c-1"):  # a refusal is a refusal, command or read
        refused = translate(error, client_order_id=coid)
        assert isinstance(refused, OrderRefused)
        assert refused.reason is reason


def test_rate_limits_carry_the_retry_after() -> None:
    limited = translate(RateLimitedAnswer("429", 1.5))
    assert isinstance(limited, BrokerRateLimited)
    assert limited.retry_after_ms == 1500
    for error in (ccxt_errors.DDoSProtection("x"), ccxt_errors.RateLimitExceeded("x")):
        plain = translate(error, client_order_id="c-1")
        assert isinstance(plain, BrokerRateLimited)
        assert plain.retry_after_ms is None


@pytest.mark.parametrize(
    "error",
    [
        ccxt_errors.RequestTimeout("x"),
        ccxt_errors.NetworkError("x"),
        ccxt_errors.ExchangeNotAvailable("x"),
        ServerErrorAnswer("503", 503),
        ccxt_errors.BadResponse("x"),
    ],
)
def test_failures_after_sending_a_command_are_unknown_outcomes_and_transient_for_reads(error: Exception) -> None:
    unknown = translate(error, client_order_id="c-1")
    assert isinstance(unknown, OutcomeUnknown)
    assert unknown.client_order_id == "c-1"
    transient = translate(error)
    assert isinstance(transient, TransientBrokerError)
    assert not isinstance(transient, BrokerRateLimited)


def test_a_command_that_never_left_is_transient() -> None:
    for cause in (aiohttp.ClientConnectorError(Any, OSError(111, "refused")), socket.gaierror("no such host")):  # type: ignore[arg-type]
        try:
            raise ccxt_errors.ExchangeNotAvailable("binance POST /order") from cause
        except ccxt_errors.ExchangeNotAvailable as exc:
            failure = translate(exc, client_order_id="c-1")
        assert type(failure) is TransientBrokerError
    assert type(translate(ccxt_errors.OnMaintenance("x"), client_order_id="c-1")) is TransientBrokerError


def test_floats_become_the_decimals_they_were_parsed_from() -> None:
    assert to_decimal(1e-05) == Decimal("0.00001")
    assert to_decimal(967984.95) == Decimal("967984.95")
    assert to_decimal("0.10000000") == Decimal("0.1")
    assert to_decimal(None) is None
    assert to_decimal(float("nan")) is None
    assert to_decimal(True) is None
    # Beyond what a float carries, the grid decides: 17 significant digits at eight places.
    assert to_decimal(float("123456789.12345678"), Decimal("0.00000001")) == Decimal("123456789.12345678")
    assert to_decimal(0.1 + 0.2, Decimal("0.01")) == Decimal("0.30")
    assert text(Decimal("10.000")) == "10"
    assert text(Decimal("1E-7")) == "0.0000001"


def test_steps_in_every_precision_mode() -> None:
    assert step_of(0.01, TICK_SIZE) == Decimal("0.01")
    assert step_of(2, DECIMAL_PLACES) == Decimal("0.01")
    assert step_of(8, DECIMAL_PLACES) == Decimal("1E-8")
    assert step_of(5, SIGNIFICANT_DIGITS) is None
    assert step_of(None, TICK_SIZE) is None


def test_instrument_rules_from_a_market() -> None:
    market = {
        "id": "BTCUSDT",
        "symbol": "BTC/USDT",
        "base": "BTC",
        "quote": "USDT",
        "spot": True,
        "active": True,
        "precision": {"amount": 1e-05, "price": 0.01},
        "limits": {"amount": {"min": 1e-05, "max": 9000.0}, "cost": {"min": 5.0}},
    }
    rules = instrument(market, TICK_SIZE)
    assert rules == Instrument(
        symbol="BTC/USDT",
        venue_symbol="BTCUSDT",
        asset_class=AssetClass.CRYPTO,
        base="BTC",
        quote="USDT",
        tick_size=Decimal("0.01"),
        qty_step=Decimal("0.00001"),
        min_qty=Decimal("0.00001"),
        max_qty=Decimal(9000),
        min_notional=Decimal(5),
    )
    assert instrument({**market, "spot": False}, TICK_SIZE) is None
    assert instrument({**market, "active": False}, TICK_SIZE) is None


def test_rehost_moves_every_url_and_keeps_paths() -> None:
    urls = {
        "public": "https://api.binance.com/api/v3",
        "ws": {"ws-api": {"spot": "wss://ws-api.binance.com:443/ws-api/v3"}},
    }
    assert rehost(urls, "http://127.0.0.1:9000") == {
        "public": "http://127.0.0.1:9000/api/v3",
        "ws": {"ws-api": {"spot": "ws://127.0.0.1:9000/ws-api/v3"}},
    }
    ex = create_exchange("binance", api_key="k", secret="s", base_url="https://venue.test", pro=True)
    assert ex.urls["api"]["private"] == "https://venue.test/api/v3"
    assert ex.urls["api"]["ws"]["ws-api"]["spot"] == "wss://venue.test/ws-api/v3"


ETH = Instrument(
    symbol="ETH/USDT",
    venue_symbol="ETHUSDT",
    asset_class=AssetClass.CRYPTO,
    base="ETH",
    quote="USDT",
    tick_size=Decimal("0.01"),
    qty_step=Decimal("0.0001"),
    min_qty=Decimal("0.0001"),
)


def _order(status: str, filled: float = 0.0) -> dict[str, Any]:
    return {"id": "7", "clientOrderId": "c-7", "symbol": "ETH/USDT", "status": status, "filled": filled, "timestamp": 1}


def _trade(trade_id: str) -> dict[str, Any]:
    return {
        "id": trade_id,
        "order": "7",
        "symbol": "ETH/USDT",
        "side": "buy",
        "amount": 0.5,
        "price": 3200.01,
        "fee": {"cost": 0.8, "currency": "USDT"},
        "takerOrMaker": "taker",
        "timestamp": 2,
    }


def test_the_tracker_reports_each_state_once_in_order_and_never_backwards() -> None:
    tracker = EventTracker("acc", {"ETH/USDT": ETH}.get)
    first = tracker.events([_order("closed", 1.0)], [_trade("1"), _trade("2")], now=NOW)
    assert [type(e) for e in first] == [OrderAccepted, OrderFilled, OrderFilled]
    assert {e.client_order_id for e in first} == {"c-7"}
    filled = [e for e in first if isinstance(e, OrderFilled)]
    assert [e.trade_id for e in filled] == ["ETHUSDT:1", "ETHUSDT:2"]
    assert filled[0].last_price == Decimal("3200.01")
    # A duplicated or reordered message: an older state and a trade seen before change nothing.
    assert tracker.events([_order("open", 0.5), _order("closed", 1.0)], [_trade("2")], now=NOW) == []
    other = {**_order("canceled"), "id": "8", "clientOrderId": "c-8"}
    assert [type(e) for e in tracker.events([other], [], now=NOW)] == [OrderAccepted, OrderCanceled]
    assert tracker.events([other], [], now=NOW) == []
