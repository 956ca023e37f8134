"""Client-side rate limits, one limiter per broker endpoint, shared by every account of that broker.

Why client-side: a venue answers a request over its limit with 429, and a copy order refused that
way reaches the follower late or not at all. Keeping each broker's requests under its published
limits before sending them is cheaper than spending requests on refusals (docs/adr/0012).

Why one limiter per *endpoint* (broker kind + host and port of the base URL), found through
:func:`limiter_for` rather than owned by an adapter: the links runtime makes one adapter per
linked account, but a broker's limits are the broker's. Every adapter of the same endpoint gets the
same :class:`BrokerLimiter`, so followers at one broker are served concurrently within that
broker's limits, and a broker that is slow or pausing never holds up another broker's requests
(each endpoint has its own limiter, and nothing waits on a lock shared between endpoints).

A limiter has two scopes, because brokers limit in both ways: rules *per endpoint* are shared by
every account (a per-IP or per-app limit: one bucket for all), rules *per account* apply to each
account's credentials separately (a per-API-key limit, like the sim venue's and Alpaca's). A
request takes a slot of its account's bucket and of the endpoint's bucket at the same moment.

Rules are declared as data in the ``limits`` library's notation (``"18/second;540/minute"``, the
notation the sim venue's gate uses). Each rule is a moving window in which a request counts until
``per_s`` after its answer (see :class:`_Window` for why), on an injectable time source so tests move
time by hand. Time here is seconds as floats: rates, never money.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Annotated
from urllib.parse import urlsplit

import limits
import msgspec

from brokerlink.logs import get_logger

_log = get_logger("brokerlink.brokers.limits")

Now = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

OPTION_ACCOUNT_LIMITS = "account_rate_limits"
"""Adapter option (``AdapterConfig.options``) overriding the per-account rules, e.g. ``"4/second"``."""
OPTION_ENDPOINT_LIMITS = "endpoint_rate_limits"
"""Adapter option overriding the per-endpoint rules, e.g. ``"100/second;2000/minute"``."""


class RateRule(msgspec.Struct, frozen=True):
    """At most ``amount`` requests in any ``per_s`` seconds (a moving window)."""

    amount: Annotated[int, msgspec.Meta(ge=1)]
    per_s: Annotated[float, msgspec.Meta(gt=0)]

    def under(self, fraction: float) -> RateRule:
        """This rule with ``amount`` scaled down (at least 1): a client limit just under a venue's."""
        return RateRule(max(1, math.floor(self.amount * fraction)), self.per_s)


def parse_rules(text: str) -> tuple[RateRule, ...]:
    """Rules in the ``limits`` notation: ``"18/second;540/minute"``, ``"120 per second"``; ``""`` is none."""
    if not text.strip():
        return ()
    try:
        items = limits.parse_many(text)
    except ValueError:
        raise ValueError(f"not a rate limit: {text!r} (expected e.g. '18/second;540/minute')") from None
    return tuple(RateRule(item.amount, float(item.get_expiry())) for item in items)


class BrokerLimits(msgspec.Struct, frozen=True, kw_only=True):
    """A broker's request limits as data. Empty scopes are unlimited."""

    per_endpoint: tuple[RateRule, ...] = ()
    """Shared by every account at the endpoint (per-IP, per-application limits)."""
    per_account: tuple[RateRule, ...] = ()
    """Applied to each account's credentials separately (per-API-key limits)."""

    def with_options(self, options: Mapping[str, str]) -> BrokerLimits:
        """These limits, with the rules an adapter's options set (:data:`OPTION_ACCOUNT_LIMITS`, ...) replacing them."""
        per_endpoint, per_account = self.per_endpoint, self.per_account
        if OPTION_ENDPOINT_LIMITS in options:
            per_endpoint = parse_rules(options[OPTION_ENDPOINT_LIMITS])
        if OPTION_ACCOUNT_LIMITS in options:
            per_account = parse_rules(options[OPTION_ACCOUNT_LIMITS])
        return BrokerLimits(per_endpoint=per_endpoint, per_account=per_account)


class LimiterStats(msgspec.Struct, kw_only=True):
    """What a limiter did, for metrics and tests."""

    granted: int = 0
    """Requests let through."""
    delayed: int = 0
    """Of those, how many could not go at once: they queued behind others, or waited for capacity or a pause."""
    penalties: int = 0
    """Pauses imposed by :meth:`BrokerLimiter.penalize` (the venue said: come back later)."""


class _Window:
    """One rule's moving window. A request counts from the moment it is let through until ``per_s``
    after its answer came back.

    Why from the answer, not from the sending: the venue counts a request when it *arrives*, some
    time between our sending and its answer. Counting from the sending, a batch delayed on the way
    and the next batch sent the moment the window moves can land in one window of the venue's and
    earn a 429, however far under the limit the client stays. The answer time is never earlier than
    the arrival, so a window counted from it never frees up before the venue's does.
    """

    def __init__(self, rule: RateRule, history: Iterable[float] = (), in_flight: int = 0) -> None:
        self.rule = rule
        self.in_flight = in_flight
        self._done: deque[float] = deque(history, maxlen=rule.amount)  # answer times, oldest first

    def delay(self, now: float) -> float | None:
        """Seconds until a request fits; ``None`` when the window is full of requests still in flight."""
        room = self.rule.amount - self.in_flight
        if room <= 0:
            return None
        if len(self._done) < room:
            return 0.0
        # It fits when at most room - 1 answers are inside the window: the room-th latest is out of it.
        return max(0.0, self._done[-room] + self.rule.per_s - now)

    def take(self) -> None:
        self.in_flight += 1

    def release(self, now: float) -> None:
        self.in_flight -= 1
        self._done.append(now)  # answers come in time order; the oldest falls out (maxlen)

    @property
    def done(self) -> tuple[float, ...]:
        return tuple(self._done)


class _Bucket:
    """The windows of one scope (the endpoint, or one account), a pause, and a FIFO queue.

    The queue is an :class:`asyncio.Lock`: its waiters are woken in arrival order, and only the one
    holding it looks at the windows and waits (a sleep exactly until capacity frees up, or until a
    request in flight is answered), so waiting costs no polling and requests go out in the order
    they asked.
    """

    def __init__(self, rules: tuple[RateRule, ...]) -> None:
        self.windows = [_Window(rule) for rule in rules]
        self.paused_until = -math.inf
        self.queue = asyncio.Lock()
        self.answered = asyncio.Event()

    def delay(self, now: float) -> float | None:
        delays = [w.delay(now) for w in self.windows]
        if None in delays:
            return None
        return max(0.0, self.paused_until - now, *(d for d in delays if d is not None))

    def take(self) -> None:
        for window in self.windows:
            window.take()

    def release(self, now: float) -> None:
        for window in self.windows:
            window.release(now)
        self.answered.set()

    def set_rules(self, rules: tuple[RateRule, ...]) -> None:
        # Keep the history: a reconfiguration must not allow a burst the old rules had just counted.
        # Every window saw the same requests, so the longest holds the most recent answers of them all.
        history = max((w.done for w in self.windows), key=len, default=())
        in_flight = self.windows[0].in_flight if self.windows else 0
        self.windows = [_Window(rule, history, in_flight) for rule in rules]


class Slot:
    """One request let through by a :class:`BrokerLimiter`; :meth:`release` it when the answer is in."""

    def __init__(self, limiter: BrokerLimiter, buckets: tuple[_Bucket, ...]) -> None:
        self._limiter = limiter
        self._buckets: tuple[_Bucket, ...] | None = buckets

    def release(self) -> None:
        """The request was answered (or failed): from now on its window counts down. Idempotent."""
        if self._buckets is None:
            return
        now = self._limiter.now()
        for bucket in self._buckets:
            bucket.release(now)
        self._buckets = None


class BrokerLimiter:
    """The request limiter of one broker endpoint, shared by all of its accounts.

    ``async with limiter.slot(account):`` (or ``slot = await limiter.acquire(account)`` ...
    ``slot.release()``) waits until a request for ``account`` may be sent: there is room in that
    account's windows and in the endpoint's, and neither is paused. Waiters are served first come,
    first served within each scope; an account waiting for its own limit never holds up other
    accounts. ``penalize`` pauses the endpoint (or one account) when the venue says to come back later.

    ``now`` (monotonic seconds) and ``sleep`` are injectable so tests can move time by hand.
    """

    def __init__(
        self,
        name: str,
        limits: BrokerLimits,
        *,
        now: Now = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.name = name
        self.now = now
        self._limits = limits
        self._sleep = sleep
        self._endpoint = _Bucket(limits.per_endpoint)
        self._accounts: dict[str, _Bucket] = {}
        self.stats = LimiterStats()

    @property
    def limits(self) -> BrokerLimits:
        """The rules in force."""
        return self._limits

    def configure(self, limits: BrokerLimits) -> None:
        """Replace the rules (requests already counted still count against the new ones)."""
        if limits == self._limits:
            return
        _log.info("broker_rate_limits_changed", endpoint=self.name, limits=msgspec.to_builtins(limits))
        self._limits = limits
        self._endpoint.set_rules(limits.per_endpoint)
        for bucket in self._accounts.values():
            bucket.set_rules(limits.per_account)

    def _account(self, account: str | None) -> _Bucket:
        key = account or ""
        bucket = self._accounts.get(key)
        if bucket is None:
            bucket = self._accounts[key] = _Bucket(self._limits.per_account)
        return bucket

    def delay(self, account: str | None = None) -> float | None:
        """Seconds a request for ``account`` would wait now if nobody were queued before it
        (``None``: until a request in flight is answered)."""
        now = self.now()
        delays = (self._account(account).delay(now), self._endpoint.delay(now))
        return None if None in delays else max(d for d in delays if d is not None)

    async def _wait_free(self, bucket: _Bucket) -> bool:
        waited = False
        while (wait := bucket.delay(self.now())) != 0:
            waited = True
            if wait is None:
                bucket.answered.clear()
                await bucket.answered.wait()  # the window is full of requests in flight: wait for an answer
            else:
                await self._sleep(wait)  # wakes exactly when the window or the pause ends, then looks again
        return waited

    async def acquire(self, account: str | None = None) -> Slot:
        """Wait until a request for ``account`` may be sent, and count it. ``None``: no per-account scope.

        The caller must :meth:`Slot.release` the slot once the request is answered (:meth:`slot` does).
        """
        own = self._account(account)
        waited = False
        while True:
            # Account first, then endpoint: always in this order, so two waiters never hold each
            # other's queue; an account over its own limit waits without blocking the endpoint's queue.
            waited |= own.queue.locked()  # others are ahead: this one waits its turn
            async with own.queue:
                waited |= await self._wait_free(own) or self._endpoint.queue.locked()
                async with self._endpoint.queue:
                    waited |= await self._wait_free(self._endpoint)
                    if own.delay(self.now()) != 0:
                        continue  # the account was paused meanwhile: let other accounts go first
                    own.take()
                    self._endpoint.take()
                    self.stats.granted += 1
                    self.stats.delayed += waited
                    return Slot(self, (own, self._endpoint))

    @contextlib.asynccontextmanager
    async def slot(self, account: str | None = None) -> AsyncIterator[None]:
        """``async with limiter.slot(account):`` send one request and read its answer."""
        slot = await self.acquire(account)
        try:
            yield
        finally:
            slot.release()

    def penalize(self, seconds: float, account: str | None = None) -> None:
        """Pause the whole endpoint (or only ``account``) for ``seconds``: the venue said "retry after".

        Pauses only ever lengthen: a shorter penalty during a longer one changes nothing. Requests
        already waiting see the pause when they next look, and wait it out in their order.
        """
        if seconds <= 0:
            return
        bucket = self._endpoint if account is None else self._account(account)
        until = self.now() + seconds
        if until > bucket.paused_until:
            bucket.paused_until = until
            self.stats.penalties += 1
            _log.warning("broker_rate_limit_pause", endpoint=self.name, seconds=seconds, whole_endpoint=account is None)


# --- the process's limiters, one per endpoint -------------------------------------------------

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, BrokerLimiter]] = weakref.WeakKeyDictionary()
"""Per event loop (one in a running service): a limiter's queues belong to the loop that uses them,
and tests, each with a loop of their own, start from fresh limiters."""


def endpoint_key(kind: str, base_url: str) -> str:
    """What identifies a broker endpoint: ``kind://host:port`` (the path and credentials do not count)."""
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 0)
    return f"{kind}://{host}:{port}"


def limiter_for(kind: str, base_url: str, limits: BrokerLimits | None = None) -> BrokerLimiter:
    """The limiter shared by every adapter of the endpoint ``(kind, base_url)`` in this process.

    The first adapter of an endpoint creates it with ``limits``; a later adapter asking with other
    limits (a changed configuration) replaces them, with a log line; ``None`` only looks it up
    (unlimited if nobody configured it yet). Call from the event loop (an adapter's first
    request), and keep the result for the adapter's life.
    """
    loop = asyncio.get_running_loop()
    key = endpoint_key(kind, base_url)
    by_key = _limiters.setdefault(loop, {})
    limiter = by_key.get(key)
    if limiter is None:
        limiter = by_key[key] = BrokerLimiter(key, limits or BrokerLimits())
    elif limits is not None:
        limiter.configure(limits)
    return limiter
