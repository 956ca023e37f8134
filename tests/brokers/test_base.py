"""The adapter protocol's shared pieces: error kinds, fill dedupe, outcome resolution, registry."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from brokerlink.brokers.base import (
    AdapterConfig,
    BrokerAdapter,
    BrokerRateLimited,
    Capabilities,
    Credentials,
    FillPage,
    ModifyRequest,
    OrderRefused,
    OrderRequest,
    OutcomeUnknown,
    RefusalReason,
    SeenTradeIds,
    TransientBrokerError,
    adapter_kinds,
    create_adapter,
    register_adapter,
    resolve_outcome,
)
from brokerlink.domain.enums import OrderStatus, OrderType, Side, TimeInForce
from brokerlink.domain.events import DomainEvent
from brokerlink.domain.models import Balance, Instrument, Order, Position

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
CONFIG = AdapterConfig(
    account_id="acc_1",
    venue_account_id="V1",
    base_url="http://127.0.0.1:1",
    credentials=Credentials(values={"api_key": "k-123", "api_secret": "s-456"}),
)


class LookupOnly(BrokerAdapter):
    """Answers order lookups from a script; everything else is out of scope for these tests."""

    kind = "lookup-only"

    def __init__(self, answers: list[Order | Exception | None]) -> None:
        super().__init__(CONFIG)
        self.answers = answers
        self.lookups = 0

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(order_types=frozenset(OrderType), time_in_force=frozenset(TimeInForce))

    async def order(self, *, client_order_id: str | None = None, venue_order_id: str | None = None) -> Order | None:
        answer = self.answers[self.lookups]
        self.lookups += 1
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def connect(self) -> None:
        raise AssertionError("not used")

    async def close(self) -> None:
        raise AssertionError("not used")

    async def instruments(self) -> list[Instrument]:
        raise AssertionError("not used")

    async def submit(self, order: OrderRequest) -> None:
        raise AssertionError("resolve_outcome must never resubmit")

    async def modify(self, change: ModifyRequest) -> None:
        raise AssertionError("not used")

    async def cancel(self, client_order_id: str) -> None:
        raise AssertionError("not used")

    async def cancel_all(self, symbol: str | None = None) -> None:
        raise AssertionError("not used")

    async def open_orders(self) -> list[Order]:
        raise AssertionError("not used")

    async def fills_since(self, cursor: str | None = None, *, limit: int = 500) -> FillPage:
        raise AssertionError("not used")

    async def positions(self) -> list[Position]:
        raise AssertionError("not used")

    async def balance(self) -> Balance:
        raise AssertionError("not used")

    async def events(self) -> AsyncIterator[DomainEvent]:  # type: ignore[override]
        raise AssertionError("not used")
        yield


ORDER = Order(
    id="ord_1",
    client_order_id="c-1",
    account_id="acc_1",
    symbol="EUR/USD",
    side=Side.BUY,
    qty=Decimal("0.10"),
    type=OrderType.MARKET,
    tif=TimeInForce.IOC,
    status=OrderStatus.FILLED,
    created_at=T0,
    updated_at=T0,
)


def test_seen_trade_ids_reports_each_id_once_and_stays_bounded() -> None:
    seen = SeenTradeIds(capacity=3)
    assert [seen.first_time(t) for t in ["a", "b", "a", "c", "d"]] == [True, True, False, True, True]
    assert len(seen) == 3
    # Seeing "a" again made it recent, so "b" was the oldest and was forgotten when "d" arrived.
    assert seen.first_time("a") is False
    assert seen.first_time("b") is True


def test_seen_trade_ids_refuses_zero_capacity() -> None:
    with pytest.raises(ValueError, match="capacity"):
        SeenTradeIds(capacity=0)


async def test_resolve_outcome_returns_the_order_once_the_venue_knows_it() -> None:
    slept: list[int] = []

    async def wait(i: int) -> None:
        slept.append(i)

    adapter = LookupOnly([None, TransientBrokerError("busy"), ORDER])
    assert await resolve_outcome(adapter, "c-1", attempts=5, wait=wait) is ORDER
    assert adapter.lookups == 3
    assert slept == [0, 1]


async def test_resolve_outcome_says_none_after_every_attempt_says_unknown() -> None:
    async def wait(i: int) -> None:
        return None

    adapter = LookupOnly([None, OutcomeUnknown("c-1"), None])
    assert await resolve_outcome(adapter, "c-1", attempts=3, wait=wait) is None
    assert adapter.lookups == 3


async def test_resolve_outcome_lets_a_definitive_refusal_through() -> None:
    async def wait(i: int) -> None:
        return None

    adapter = LookupOnly([OrderRefused(RefusalReason.AUTH)])
    with pytest.raises(OrderRefused):
        await resolve_outcome(adapter, "c-1", attempts=3, wait=wait)


def test_error_kinds_carry_what_callers_need() -> None:
    refused = OrderRefused(RefusalReason.INSUFFICIENT_FUNDS)
    assert refused.reason is RefusalReason.INSUFFICIENT_FUNDS
    assert refused.to_problem()["reason"] == "insufficient_funds"
    limited = BrokerRateLimited("slow down", retry_after_ms=1500)
    assert isinstance(limited, TransientBrokerError)
    assert limited.retry_after_ms == 1500
    assert OutcomeUnknown("c-9").client_order_id == "c-9"


def test_credentials_never_show_their_values() -> None:
    text = f"{CONFIG!r} {CONFIG.credentials} {CONFIG.credentials!r}"
    assert "k-123" not in text
    assert "s-456" not in text
    assert "api_key" in text
    assert CONFIG.credentials.get("api_key") == "k-123"
    with pytest.raises(OrderRefused, match="'passphrase' is missing"):
        CONFIG.credentials.get("passphrase")


def test_registry_creates_registered_kinds_and_names_the_known_ones() -> None:
    register_adapter("lookup-only", lambda config: LookupOnly([]))
    assert "lookup-only" in adapter_kinds()
    assert isinstance(create_adapter("lookup-only", CONFIG), LookupOnly)
    with pytest.raises(ValueError, match=r"unknown broker kind 'nope' \(known: .*lookup-only"):
        create_adapter("nope", CONFIG)
    with pytest.raises(ValueError, match="already registered"):
        register_adapter("lookup-only", lambda config: LookupOnly([ORDER]))


def test_a_builtin_adapter_module_is_imported_only_when_its_kind_is_used() -> None:
    """ccxt's import alone takes seconds (more with no bytecode cache) and once held the server's event
    loop at start-up: a process that links only sim accounts never imports it."""
    script = (
        "import sys\n"
        "from brokerlink.brokers.base import AdapterConfig, Credentials, adapter_kinds, adapter_loaded\n"
        "from brokerlink.brokers.base import create_adapter\n"
        "assert {'sim', 'alpaca', 'oanda', 'ccxt'} <= set(adapter_kinds())\n"
        "assert not adapter_loaded('ccxt') and not adapter_loaded('sim')\n"
        "config = AdapterConfig(account_id='acc_1', venue_account_id='v', base_url='http://127.0.0.1:1',"
        " credentials=Credentials(values={'api_key': 'k'}))\n"
        "create_adapter('sim', config)\n"
        "assert adapter_loaded('sim') and not adapter_loaded('ccxt')\n"
        "assert 'ccxt' not in sys.modules, 'ccxt imported'\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)  # noqa: S603
    assert done.stdout.strip() == "ok", done.stderr
