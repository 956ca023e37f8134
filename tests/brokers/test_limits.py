"""The per-broker request limiter, on a fake time source: assertions on order and counts, never on the clock."""

from __future__ import annotations

import asyncio
import heapq
import itertools

import pytest

from brokerlink.brokers.limits import (
    OPTION_ACCOUNT_LIMITS,
    OPTION_ENDPOINT_LIMITS,
    BrokerLimiter,
    BrokerLimits,
    RateRule,
    endpoint_key,
    limiter_for,
    parse_rules,
)


class FakeTime:
    """Monotonic seconds that move only on :meth:`advance`; sleepers wake when their time comes."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps = 0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.t + seconds, next(self._seq), future))
        await future

    async def advance(self, seconds: float) -> None:
        self.t += seconds
        while self._sleepers and self._sleepers[0][0] <= self.t + 1e-9:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
        await settle()


async def settle() -> None:
    """Let every task that can run, run (bounded)."""
    for _ in range(50):
        await asyncio.sleep(0)


def limiter(time: FakeTime, *, endpoint: str = "", account: str = "") -> BrokerLimiter:
    limits = BrokerLimits(per_endpoint=parse_rules(endpoint), per_account=parse_rules(account))
    return BrokerLimiter("sim://test:1", limits, now=time.now, sleep=time.sleep)


class Requests:
    """Acquires started as tasks, and the order in which they were granted."""

    def __init__(self, lim: BrokerLimiter) -> None:
        self.lim = lim
        self.granted: list[str] = []
        self.tasks: list[asyncio.Task[None]] = []

    def start(
        self, name: str, account: str | None = None, *, answer: asyncio.Event | None = None
    ) -> asyncio.Task[None]:
        """A request that is answered at once, or when ``answer`` is set."""

        async def run() -> None:
            async with self.lim.slot(account):
                self.granted.append(name)
                if answer is not None:
                    await answer.wait()

        task = asyncio.create_task(run(), name=name)
        self.tasks.append(task)
        return task

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def test_the_request_after_the_limit_waits_until_the_window_moves() -> None:
    time = FakeTime()
    reqs = Requests(limiter(time, endpoint="3/second"))
    for n in range(4):
        reqs.start(f"r{n}")
    await settle()
    assert reqs.granted == ["r0", "r1", "r2"]
    await time.advance(0.999)
    assert reqs.granted == ["r0", "r1", "r2"]
    await time.advance(0.001)
    assert reqs.granted == ["r0", "r1", "r2", "r3"]
    assert time.sleeps == 1  # it slept once, exactly until the window moved: no polling
    assert (reqs.lim.stats.granted, reqs.lim.stats.delayed) == (4, 1)
    await reqs.close()


async def test_a_request_counts_until_its_window_has_passed_since_its_answer() -> None:
    time = FakeTime()
    reqs = Requests(limiter(time, endpoint="2/second"))
    first, second = asyncio.Event(), asyncio.Event()
    reqs.start("r0", answer=first)
    reqs.start("r1", answer=second)
    reqs.start("r2")
    await settle()
    assert reqs.granted == ["r0", "r1"]
    await time.advance(5)  # both still in flight: however long, they count
    assert reqs.granted == ["r0", "r1"]
    assert time.sleeps == 0  # r2 waits for an answer, not on a timer
    first.set()  # r0 answered at t=5: the venue may have counted it as late as that
    await settle()
    await time.advance(0.999)
    assert reqs.granted == ["r0", "r1"]
    await time.advance(0.001)
    assert reqs.granted == ["r0", "r1", "r2"]
    second.set()
    await reqs.close()


async def test_waiters_are_served_in_arrival_order() -> None:
    time = FakeTime()
    reqs = Requests(limiter(time, endpoint="1/second"))
    for name in ["a", "b", "c", "d"]:
        reqs.start(name)
    await settle()
    for expected in (["a"], ["a", "b"], ["a", "b", "c"], ["a", "b", "c", "d"]):
        assert reqs.granted == expected
        await time.advance(1)
    # Only the head of the queue ever sleeps: one sleep per wait, not one per waiter per wake-up.
    assert time.sleeps == 3
    await reqs.close()


async def test_every_rule_holds_the_tightest_decides() -> None:
    time = FakeTime()
    reqs = Requests(limiter(time, endpoint="2/second;3/10 seconds"))
    for n in range(4):
        reqs.start(f"r{n}")
    await settle()
    assert len(reqs.granted) == 2
    await time.advance(1)
    assert len(reqs.granted) == 3  # the per-second window moved; now the 10-second one is full
    await time.advance(8.5)
    assert len(reqs.granted) == 3
    await time.advance(0.5)  # 10 s after the first request
    assert len(reqs.granted) == 4
    await reqs.close()


async def test_penalize_pauses_every_account_of_the_endpoint() -> None:
    time = FakeTime()
    lim = limiter(time, endpoint="100/second", account="50/second")
    reqs = Requests(lim)
    reqs.start("a1", "acct-a")
    await settle()
    assert reqs.granted == ["a1"]
    lim.penalize(5)  # the venue answered 429 with Retry-After: 5
    assert lim.stats.penalties == 1
    reqs.start("a2", "acct-a")
    reqs.start("b1", "acct-b")
    reqs.start("anon")
    await settle()
    await time.advance(4.9)
    assert reqs.granted == ["a1"]
    lim.penalize(0.05)  # a pause ending inside the one in force changes nothing
    assert lim.stats.penalties == 1
    await time.advance(0.1)
    assert sorted(reqs.granted) == ["a1", "a2", "anon", "b1"]
    await reqs.close()


async def test_a_longer_penalty_while_waiting_extends_the_wait() -> None:
    time = FakeTime()
    lim = limiter(time, endpoint="1/second")
    reqs = Requests(lim)
    reqs.start("r0")
    reqs.start("r1")
    await settle()
    assert reqs.granted == ["r0"]
    lim.penalize(3)  # r1 sleeps until the window moves (t=1), then sees the pause
    await time.advance(1)
    await time.advance(1.9)
    assert reqs.granted == ["r0"]
    await time.advance(0.1)
    assert reqs.granted == ["r0", "r1"]
    await reqs.close()


async def test_an_account_penalty_holds_only_that_account() -> None:
    time = FakeTime()
    lim = limiter(time, account="10/second")
    reqs = Requests(lim)
    lim.penalize(5, account="acct-a")
    reqs.start("a", "acct-a")
    reqs.start("b", "acct-b")
    await settle()
    assert reqs.granted == ["b"]
    await time.advance(5)
    assert reqs.granted == ["b", "a"]
    await reqs.close()


async def test_an_account_over_its_own_limit_does_not_hold_up_other_accounts() -> None:
    time = FakeTime()
    reqs = Requests(limiter(time, endpoint="100/second", account="1/second"))
    reqs.start("a1", "acct-a")
    reqs.start("a2", "acct-a")  # waits for acct-a's window
    await settle()
    reqs.start("b1", "acct-b")  # arrives later, but its account has room
    await settle()
    assert reqs.granted == ["a1", "b1"]
    await time.advance(1)
    assert reqs.granted == ["a1", "b1", "a2"]
    await reqs.close()


async def test_the_endpoint_rule_is_shared_by_all_accounts() -> None:
    time = FakeTime()
    reqs = Requests(limiter(time, endpoint="2/second", account="10/second"))
    for account in ["acct-a", "acct-b", "acct-c"]:
        reqs.start(account, account)
    await settle()
    assert reqs.granted == ["acct-a", "acct-b"]
    await time.advance(1)
    assert reqs.granted == ["acct-a", "acct-b", "acct-c"]
    await reqs.close()


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    time = FakeTime()
    reqs = Requests(limiter(time, endpoint="1/second"))
    reqs.start("r0")
    head = reqs.start("r1")
    reqs.start("r2")
    await settle()
    head.cancel()
    await settle()
    await time.advance(1)
    assert reqs.granted == ["r0", "r2"]
    await reqs.close()


async def test_reconfiguring_keeps_what_was_counted() -> None:
    time = FakeTime()
    lim = limiter(time, endpoint="5/second")
    reqs = Requests(lim)
    for n in range(3):
        reqs.start(f"r{n}")
    await settle()
    lim.configure(BrokerLimits(per_endpoint=parse_rules("3/second")))
    reqs.start("r3")
    await settle()
    assert reqs.granted == ["r0", "r1", "r2"]  # the three already sent count against the new rule
    await time.advance(1)
    assert reqs.granted == ["r0", "r1", "r2", "r3"]
    await reqs.close()


async def test_one_limiter_per_endpoint_shared_by_its_accounts_and_none_between_endpoints() -> None:
    limits = BrokerLimits(per_account=parse_rules("5/second"))
    first = limiter_for("sim", "http://127.0.0.1:8101", limits)
    assert limiter_for("sim", "http://127.0.0.1:8101/", limits) is first  # another account, same venue
    assert limiter_for("sim", "http://LOCALHOST:8101", limits) is not first
    other_port = limiter_for("sim", "http://127.0.0.1:8102", limits)
    other_kind = limiter_for("alpaca", "http://127.0.0.1:8101", limits)
    assert len({id(first), id(other_port), id(other_kind)}) == 3
    # A pause of one endpoint is not a pause of another.
    first.penalize(30)
    assert first.delay() > 0
    assert other_port.delay() == 0
    assert other_kind.delay() == 0


async def test_a_changed_configuration_reaches_the_shared_limiter() -> None:
    first = limiter_for("sim", "http://127.0.0.1:9001", BrokerLimits(per_account=parse_rules("5/second")))
    again = limiter_for("sim", "http://127.0.0.1:9001", BrokerLimits(per_account=parse_rules("2/second")))
    assert again is first
    assert first.limits.per_account == (RateRule(2, 1.0),)
    assert limiter_for("sim", "http://127.0.0.1:9001") is first  # a look-up leaves the limits alone
    assert first.limits.per_account == (RateRule(2, 1.0),)


def test_endpoint_keys() -> None:
    assert endpoint_key("sim", "http://127.0.0.1:8101/api/v1") == "sim://127.0.0.1:8101"
    assert endpoint_key("alpaca", "https://Paper-API.alpaca.markets") == "alpaca://paper-api.alpaca.markets:443"
    assert endpoint_key("oanda", "https://user:pw@api-fxpractice.oanda.com/v3") == (
        "oanda://api-fxpractice.oanda.com:443"
    )


def test_rules_in_the_limits_notation() -> None:
    assert parse_rules("18/second;540/minute") == (RateRule(18, 1.0), RateRule(540, 60.0))
    assert parse_rules("120 per second") == (RateRule(120, 1.0),)
    assert parse_rules("") == ()
    with pytest.raises(ValueError, match="not a rate limit"):
        parse_rules("fast")
    assert RateRule(20, 1.0).under(0.9) == RateRule(18, 1.0)
    assert RateRule(1, 1.0).under(0.5) == RateRule(1, 1.0)


def test_adapter_options_override_the_defaults() -> None:
    defaults = BrokerLimits(per_account=parse_rules("18/second"))
    assert defaults.with_options({}) == defaults
    changed = defaults.with_options({OPTION_ACCOUNT_LIMITS: "4/second", OPTION_ENDPOINT_LIMITS: "100/minute"})
    assert changed == BrokerLimits(per_account=(RateRule(4, 1.0),), per_endpoint=(RateRule(100, 60.0),))
