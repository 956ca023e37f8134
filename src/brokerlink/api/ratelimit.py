"""API rate limits: per principal, weighted per route, with an order-velocity cap (docs/adr/0014).

Who is counted: an OAuth client (all its users together) and the user it acts for; a signed-in
user; an anonymous request by its IP address. The key function (:func:`request_checks`) reads the
:class:`~brokerlink.security.principal.Principal` that authentication put in the scope, which is
why :class:`RateLimitMiddleware` sits *inside* the authentication middleware.

What a request costs: a weight looked up by method and route template (:data:`ROUTE_WEIGHTS`),
so an order placement or a broker link, which reach a broker, spend more of the budget than a
read. Order placement also takes a slot of a separate velocity cap per user and account, so a
runaway bot stops at a few orders a second however much request budget it has left. The cap is
keyed by the *user* and the account, never by the account alone: a stranger posting to someone
else's account id (refused later with 404) spends only their own budget.

The engine is the ``limits`` library's moving window (no burst at window edges, and a refused
hit costs nothing, so a client that honours ``Retry-After`` gets through), on memory storage, or on
Redis when every server process must share the counters. In memory it is ``limits``' synchronous
storage called directly (:class:`~brokerlink.kit.ratelimits.InProcessStorage`): it never blocks,
and it is swept in line once a second rather than by the library's timer thread (that module says
why). Responses carry ``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset``
(draft-ietf-httpapi-ratelimit-headers, the field names of drafts 00 to 06) for the limit closest to
exhaustion; a refusal is a 429 problem (``rate_limited``) with ``Retry-After``.

WebSockets: open connections per principal are capped (refused with close code 1008), and
:class:`MessageRate` counts one connection's incoming messages for the stream code to call.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, WindowStats, parse_many
from limits import strategies as sync_strategies
from limits.aio.storage import RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from litestar import WebSocket
from litestar.enums import ScopeType
from litestar.status_codes import WS_1008_POLICY_VIOLATION
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from brokerlink import observe
from brokerlink.config import Settings
from brokerlink.kit.errors import RateLimited
from brokerlink.kit.ratelimits import InProcessStorage
from brokerlink.logs import get_logger
from brokerlink.security.principal import Principal

_log = get_logger("brokerlink.ratelimit")

ORDER_PLACEMENT = ("POST", "/v1/accounts/{account_id}/orders")
"""The route whose calls also count against the order-velocity cap."""
DEFAULT_WEIGHT = 1
ROUTE_WEIGHTS: Mapping[tuple[str, str], int] = {
    # Each of these reaches a broker, hashes a password, or does a reconciliation's worth of work.
    ORDER_PLACEMENT: 5,
    ("DELETE", "/v1/orders/{order_id}"): 2,
    ("GET", "/v1/accounts/{account_id}/quotes"): 2,
    ("POST", "/v1/connections"): 5,
    ("POST", "/v1/auth/register"): 5,
    ("POST", "/v1/auth/login"): 5,
    ("POST", "/login"): 5,
    ("POST", "/v1/auth/mfa"): 5,  # a six-digit code: guessing is slowed here as well as by the lockout
    ("POST", "/v1/subscriptions/{subscription_id}/reconciliation"): 5,
}
"""Cost of one call by (method, route template); anything else costs :data:`DEFAULT_WEIGHT`."""
EXEMPT_PATHS = frozenset({"/healthz", "/readyz"})
"""Probes are never limited: an orchestrator polling them must not be told to back off."""
WS_SLOT_TTL_S = 24 * 3600
"""Lifetime of a principal's open-connection counter: a crashed process's slots come back after it."""


def route_weight(method: str, template: str) -> int:
    """What one call of ``method template`` costs (the table's entry, else the default)."""
    return ROUTE_WEIGHTS.get((method, template), DEFAULT_WEIGHT)


@dataclass(frozen=True, slots=True)
class Policy:
    """A named set of limits applied to one kind of key (``user``, ``client``, ``ip``, ``orders``)."""

    name: str
    items: tuple[RateLimitItem, ...]

    @classmethod
    def parse(cls, name: str, notation: str) -> Policy:
        """A policy from the ``limits`` notation (``"50/second;1500/minute"``); raises ValueError on bad notation."""
        items = tuple(parse_many(notation))
        if not items:
            raise ValueError(f"rate limit {name!r} has no limits: {notation!r}")
        return cls(name, items)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one request's checks and what its headers report.

    ``limit``/``remaining``/``reset_s`` describe the limit closest to exhaustion (or, when refused,
    the one that refused); ``reset_s`` is seconds until that window frees a unit.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_s: int

    def headers(self) -> dict[str, str]:
        """``RateLimit-*`` headers, plus ``Retry-After`` when refused."""
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_s)
        return headers


@dataclass(frozen=True, slots=True)
class Check:
    """One policy applied to a request: the key it is counted under, and what the request costs it."""

    policy: Policy
    key: str
    cost: int = 1


class RateLimiter:
    """The process's rate limiter: the policies, the storage, and the WebSocket connection slots.

    One instance per app (``create_app`` makes it and passes it to the middleware, which Litestar
    instantiates once per route). The storage is shared by every route, and by every process when
    it is Redis.
    """

    def __init__(
        self,
        storage: Storage | InProcessStorage,
        *,
        user: Policy,
        client: Policy,
        ip: Policy,
        orders: Policy,
        ws_connections: int,
        ws_messages: Policy,
        enabled: bool = True,
    ) -> None:
        self.storage = storage
        self.user = user
        self.client = client
        self.ip = ip
        self.orders = orders
        self.ws_connections = ws_connections
        self.ws_messages = ws_messages
        self.enabled = enabled
        self._strategy: MovingWindowRateLimiter | None = None
        self._sync: sync_strategies.MovingWindowRateLimiter | None = None
        if isinstance(storage, InProcessStorage):
            self._sync = sync_strategies.MovingWindowRateLimiter(storage)
        else:
            self._strategy = MovingWindowRateLimiter(storage)
        # A connection's messages are counted where the connection lives: in this process, never
        # a Redis round trip per message.
        self._local = InProcessStorage()
        self._local_strategy = sync_strategies.MovingWindowRateLimiter(self._local)

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        """The limiter ``settings`` describe; bad limit notation or Redis without a URL fail here, at startup."""
        storage: Storage | InProcessStorage
        if settings.rate_limit_backend == "redis":
            if not settings.redis_url:
                raise ValueError("rate_limit_backend 'redis' needs BROKERLINK_REDIS_URL")
            storage = RedisStorage(
                "async+" + settings.redis_url,
                implementation="redispy",  # the client the bus uses; coredis is not installed
                key_prefix=settings.rate_limit_key_prefix,
                wrap_exceptions=True,
            )
        else:
            storage = InProcessStorage()
        return cls(
            storage,
            user=Policy.parse("user", settings.rate_limit_user),
            client=Policy.parse("client", settings.rate_limit_client),
            ip=Policy.parse("ip", settings.rate_limit_ip),
            orders=Policy.parse("orders", settings.rate_limit_orders),
            ws_connections=settings.rate_limit_ws_connections,
            ws_messages=Policy.parse("ws_messages", settings.rate_limit_ws_messages),
            enabled=settings.rate_limit_enabled,
        )

    async def hit(self, checks: Sequence[Check]) -> Verdict:
        """Spend each check's cost of its policy's limits, in order; stop at the first that refuses.

        Limits already spent before a refusal stay spent (the ``limits`` API has no multi-key
        transaction); the most specific checks come first, so a refused order placement does not
        also spend the user's general budget. A cost above a limit's amount is capped at it, so a
        heavy route stays possible under a small configured limit.
        """
        tightest: Verdict | None = None
        for check in checks:
            name, key = check.policy.name, check.key
            for item in check.policy.items:
                allowed, stats = await self._hit(item, name, key, min(check.cost, item.amount))
                reset_s = max(0, math.ceil(stats.reset_time - time.time()))
                if not allowed:
                    observe.rate_limited(scope=name, key=key)
                    return Verdict(allowed=False, limit=item.amount, remaining=0, reset_s=max(1, reset_s))
                verdict = Verdict(allowed=True, limit=item.amount, remaining=max(0, stats.remaining), reset_s=reset_s)
                if tightest is None or (verdict.remaining, -verdict.reset_s) < (tightest.remaining, -tightest.reset_s):
                    tightest = verdict
        if tightest is None:
            raise ValueError("no rate-limit checks to apply")
        return tightest

    async def _hit(self, item: RateLimitItem, name: str, key: str, cost: int) -> tuple[bool, WindowStats]:
        if self._sync is not None:
            return self._sync.hit(item, name, key, cost=cost), self._sync.get_window_stats(item, name, key)
        if self._strategy is None:
            raise RuntimeError("the limiter has neither an in-process nor a shared strategy")
        allowed = await self._strategy.hit(item, name, key, cost=cost)
        return allowed, await self._strategy.get_window_stats(item, name, key)

    async def _incr(self, slot: str, amount: int) -> int:
        if isinstance(self.storage, InProcessStorage):
            return self.storage.incr(slot, WS_SLOT_TTL_S, amount)
        return await self.storage.incr(slot, WS_SLOT_TTL_S, amount)

    async def acquire_connection(self, key: str) -> bool:
        """Take one of ``key``'s WebSocket connection slots; False when all are in use."""
        slot = "ws-open/" + key
        if await self._incr(slot, 1) <= self.ws_connections:
            return True
        await self._incr(slot, -1)
        return False

    async def release_connection(self, key: str) -> None:
        """Give back a slot :meth:`acquire_connection` took."""
        await self._incr("ws-open/" + key, -1)

    def message_rate(self) -> MessageRate:
        """A counter for one new WebSocket connection's incoming messages."""
        return MessageRate(self._local_strategy, self.ws_messages, "conn_" + secrets.token_hex(8))

    async def close(self) -> None:
        """Stop the memory storages' expiry tasks and close the Redis client, if any."""
        for storage in (self.storage, self._local):
            timer = getattr(storage, "timer", None)
            if isinstance(timer, threading.Timer):  # the synchronous memory storage's expiry sweep
                timer.cancel()
            elif isinstance(timer, asyncio.Task) and not timer.done():
                timer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await timer
            client = getattr(getattr(storage, "bridge", None), "storage", None)
            if client is not None and hasattr(client, "aclose"):
                await client.aclose()


class MessageRate:
    """One WebSocket connection's incoming-message budget (``rate_limit_ws_messages``).

    The stream code calls :meth:`admit` for each message it receives; past the budget the
    connection is closed with 1008 (policy violation), as RFC 6455 intends for a client that breaks
    the server's rules, rather than the server queueing or silently dropping its messages.
    """

    def __init__(self, strategy: sync_strategies.MovingWindowRateLimiter, policy: Policy, connection_id: str) -> None:
        self._strategy = strategy
        self._policy = policy
        self.connection_id = connection_id

    async def allow(self) -> bool:
        """Count one message; False when it is over the connection's budget."""
        return all(self._strategy.hit(item, self._policy.name, self.connection_id) for item in self._policy.items)

    async def admit(self, socket: WebSocket[Any, Any, Any]) -> bool:
        """Count one message; over budget, close ``socket`` with 1008 and return False."""
        if await self.allow():
            return True
        _log.info("ws_message_rate_exceeded", connection_id=self.connection_id)
        observe.rate_limited(scope="ws_messages", key=self.connection_id)
        await socket.close(code=WS_1008_POLICY_VIOLATION, reason="message rate exceeded")
        return False


def client_ip(scope: Scope) -> str:
    """The peer's address. Proxy headers are not trusted: a deployment behind one sets the server's
    forwarded-IP option (uvicorn ``--forwarded-allow-ips``), which rewrites ``scope["client"]``."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def request_checks(scope: Scope, limiter: RateLimiter, method: str, template: str) -> list[Check]:
    """The key function: which limits this request counts against, most specific first.

    A client acting for a user counts against the client's limit and the user's; a signed-in user
    against their own; anyone else against their IP's, each spending the route's weight. Order
    placement adds one order to the velocity cap of the user and the account in the path.
    """
    weight = route_weight(method, template)
    principal = scope.get("user")
    if not isinstance(principal, Principal):
        return [Check(limiter.ip, "ip:" + client_ip(scope), weight)]
    checks: list[Check] = []
    if (method, template) == ORDER_PLACEMENT:
        account_id = str(scope.get("path_params", {}).get("account_id", ""))
        checks.append(Check(limiter.orders, f"orders:{principal.user_id}:{account_id}"))
    if principal.client_id is not None:
        checks.append(Check(limiter.client, "client:" + principal.client_id, weight))
    checks.append(Check(limiter.user, "user:" + principal.user_id, weight))
    return checks


def connection_key(scope: Scope) -> str:
    """Whose WebSocket connection slots a connection takes: its principal's, else its IP's."""
    principal = scope.get("user")
    if isinstance(principal, Principal):
        return "client:" + principal.client_id if principal.client_id is not None else "user:" + principal.user_id
    return "ip:" + client_ip(scope)


class RateLimitMiddleware:
    """Apply :class:`RateLimiter` to each request and WebSocket of a route (registered after authentication).

    A refusal raises :class:`~brokerlink.kit.errors.RateLimited`, which the one problem handler
    renders as a 429 with ``Retry-After`` and the ``RateLimit-*`` headers. An unreachable Redis
    lets requests through (logged as an error): the client-side limits towards each broker
    (ADR 0012) still stand, and a trading API that refuses everything while its cache is down
    leaves users unable to close positions.
    """

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.limiter.enabled or scope.get("path") in EXEMPT_PATHS:
            await self.app(scope, receive, send)
        elif scope["type"] == ScopeType.WEBSOCKET:
            await self._websocket(scope, receive, send)
        else:
            await self._http(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = str(scope.get("method", "GET"))
        template = str(scope.get("path_template") or scope.get("path", ""))
        checks = request_checks(scope, self.limiter, method, template)
        try:
            verdict = await self.limiter.hit(checks)
        except StorageError as exc:
            _log.error("rate_limit_storage_unavailable", error=str(exc.storage_error))
            await self.app(scope, receive, send)
            return
        headers = verdict.headers()
        if not verdict.allowed:
            _log.info("rate_limited", key=checks[-1].key, method=method, route=template)
            raise RateLimited(
                "too many requests; retry after the number of seconds in Retry-After",
                retry_after=verdict.reset_s,
                headers=headers,
            )
        raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *raw]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = connection_key(scope)
        try:
            acquired = await self.limiter.acquire_connection(key)
        except StorageError as exc:
            _log.error("rate_limit_storage_unavailable", error=str(exc.storage_error))
            await self.app(scope, receive, send)
            return
        if not acquired:
            _log.info("ws_connections_exceeded", key=key)
            observe.rate_limited(scope="ws", key=key)
            # Accept, then close: a close before the accept reaches the client as a bare HTTP 403,
            # without the 1008 that tells it why.
            await receive()  # websocket.connect
            await send({"type": "websocket.accept", "subprotocol": None, "headers": []})
            await send({"type": "websocket.close", "code": WS_1008_POLICY_VIOLATION, "reason": "too many connections"})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            try:
                await self.limiter.release_connection(key)
            except StorageError as exc:  # the slot comes back when the counter expires
                _log.error("rate_limit_storage_unavailable", error=str(exc.storage_error))
