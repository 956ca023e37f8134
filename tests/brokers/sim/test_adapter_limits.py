"""The sim adapter under its endpoint's shared rate limiter, against a real sim venue on loopback that
enforces a low per-key limit.

No wall-clock assertions: what is checked is that the venue never refused (counts of 429s), that
the limiter held requests back (its counters), and that a 429 paused every account of the venue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from decimal import Decimal

import pytest

from brokerlink.brokers.backoff import Backoff
from brokerlink.brokers.base import AdapterConfig, BrokerRateLimited, Credentials, OrderRequest
from brokerlink.brokers.limits import OPTION_ACCOUNT_LIMITS, BrokerLimiter, RateRule
from brokerlink.brokers.sim.adapter import SIM_LIMITS, SimAdapter, StreamSettings
from brokerlink.brokers.sim.client import SimClient
from brokerlink.brokers.sim.gate import DEFAULT_RATE_LIMITS, RateLimitRule
from brokerlink.brokers.sim.venue import AccountConfig, VenueConfig
from brokerlink.brokers.sim.wire import AccountBody
from brokerlink.domain.enums import OrderType, Side
from tests.contract.harness import free_port, start_venue, stop_venue

pytestmark = pytest.mark.e2e

VENUE_LIMIT = 5
"""Requests per second and API key the test venue allows."""
CLIENT_LIMIT = "4/second"
"""What the adapters are configured with: just under the venue's."""


def _key(n: int) -> str:
    return f"lim-key-{n}"


@contextlib.asynccontextmanager
async def limited_venue(*, per_second: int, accounts: int) -> AsyncIterator[str]:
    """A sim venue on a free loopback port allowing ``per_second`` requests per API key; yields its URL.

    Accounts ``SIM-L0`` ... trade with the keys ``lim-key-0`` ... (the sim venue's rate limits are
    per API key, so each account is limited on its own).
    """
    config = VenueConfig(
        instrument_set="fx",
        seed=11,
        mode="test",
        tick_interval_s=0.05,
        heartbeat_interval_s=1.0,
        rate_limits=(RateLimitRule(per_second, 1),),
        accounts=tuple(
            AccountConfig(account_id=f"SIM-L{n}", api_key=_key(n), api_secret=f"lim-secret-{n}")
            for n in range(accounts)
        ),
    )
    port = free_port()
    server, task = await start_venue(config, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await stop_venue(server, task)


def adapter(base_url: str, n: int) -> SimAdapter:
    config = AdapterConfig(
        account_id=f"acc_lim{n}",
        venue_account_id=f"SIM-L{n}",
        base_url=base_url,
        credentials=Credentials(values={"api_key": _key(n)}),
        options={OPTION_ACCOUNT_LIMITS: CLIENT_LIMIT},
    )
    stream = StreamSettings(backoff=Backoff(base_s=0.05, cap_s=0.5), stall_after_s=5.0, connect_timeout_s=5.0)
    return SimAdapter(config, stream=stream, seed=n)


def limiter_of(adapter: SimAdapter) -> BrokerLimiter:
    return adapter._client.limiter  # type: ignore[attr-defined,no-any-return]


async def burst(client: SimClient, count: int) -> list[BaseException | AccountBody]:
    """``count`` reads at once, past any limiter."""
    return await asyncio.gather(*(client.get("/account", AccountBody) for _ in range(count)), return_exceptions=True)


def test_the_default_client_limits_are_just_under_the_venues() -> None:
    assert len(SIM_LIMITS.per_account) == len(DEFAULT_RATE_LIMITS)
    for client, venue in zip(SIM_LIMITS.per_account, DEFAULT_RATE_LIMITS, strict=True):
        assert client.per_s == venue.per_seconds
        assert 0 < client.amount < venue.limit
    assert SIM_LIMITS.per_account == (RateRule(18, 1.0), RateRule(540, 60.0))


async def test_many_accounts_firing_at_once_never_get_a_429() -> None:
    async with limited_venue(per_second=VENUE_LIMIT, accounts=4) as base_url:
        # The venue does refuse a burst over its limit: without the limiter, this is what happens.
        raw = SimClient(base_url, api_key=_key(0))
        try:
            refused = [r for r in await burst(raw, 3 * VENUE_LIMIT) if isinstance(r, BrokerRateLimited)]
        finally:
            await raw.close()
        assert refused, "the venue let a burst over its limit through: the test would prove nothing"

        adapters = [adapter(base_url, n) for n in (1, 2, 3)]
        try:
            await asyncio.gather(*(a.connect() for a in adapters))
            limiter = limiter_of(adapters[0])
            assert all(limiter_of(a) is limiter for a in adapters)  # one limiter for the venue

            def requests(a: SimAdapter, n: int) -> list[asyncio.Future[object]]:
                calls: list[Coroutine[object, object, object]] = []
                for _ in range(3):
                    calls += [a.balance(), a.positions(), a.open_orders(), a.fills_since()]
                for i in range(3):
                    order = OrderRequest(
                        client_order_id=f"lim-{n}-{i}", symbol="EUR/USD", side=Side.BUY, qty=Decimal("0.10"),
                        type=OrderType.MARKET,
                    )  # fmt: skip
                    calls.append(a.submit(order))
                return [asyncio.ensure_future(c) for c in calls]

            before = limiter.stats.granted
            results = await asyncio.gather(
                *(f for n, a in enumerate(adapters) for f in requests(a, n)), return_exceptions=True
            )
            errors = [r for r in results if isinstance(r, BaseException)]
            assert errors == [], errors
            assert limiter.stats.granted - before == 3 * 15
            # 15 requests per account at once, 4 a second each: most of them had to wait their turn.
            assert limiter.stats.delayed >= 3 * (15 - 4)
            assert limiter.stats.penalties == 0
        finally:
            await asyncio.gather(*(a.close() for a in adapters))


async def test_a_429_pauses_every_account_at_the_venue() -> None:
    async with limited_venue(per_second=10, accounts=3) as base_url:
        first, second = adapter(base_url, 1), adapter(base_url, 2)
        raw = SimClient(base_url, api_key=_key(1))  # another client of account 1's key, outside our limiter
        try:
            await first.connect()
            await second.connect()
            limiter = limiter_of(first)
            assert limiter_of(second) is limiter
            # Spend the key's allowance behind the limiter's back, as another process would.
            for _ in range(20):  # bounded
                if any(isinstance(r, BrokerRateLimited) for r in await burst(raw, 12)):
                    break
            else:
                raise AssertionError("the venue never refused the burst")
            with pytest.raises(BrokerRateLimited) as refused:
                await first.balance()
            assert refused.value.retry_after_ms is not None
            assert limiter.stats.penalties == 1
            # The pause covers the whole venue: the other account, whose own key has room, waits too.
            assert limiter.delay(account="any-other-account") != 0
            delayed = limiter.stats.delayed
            await second.balance()
            assert limiter.stats.delayed == delayed + 1
            await first.balance()  # after the pause, the venue takes requests again
        finally:
            await raw.close()
            await first.close()
            await second.close()
