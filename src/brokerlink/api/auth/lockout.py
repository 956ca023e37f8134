"""Sign-in lockout with backoff (SECURITY.md 29): failed passwords and MFA codes, per account and per IP.

Each failed sign-in counts against two subjects: the account (the email as typed, hashed, so an
unknown email locks exactly like a real one and the response never tells them apart) and the
client's IP address. When a subject reaches ``login_lockout_threshold`` failures within
``login_lockout_window_seconds``, it is locked: every attempt is refused with 429, a
``Retry-After`` and problem details, *before* the password is checked (no oracle, no Argon2 cost).

Backoff: the lock after the n-th failure in the window lasts ``base * 2 ** (n - threshold)``
seconds, capped at ``login_lockout_max_seconds``: 1, 2, 4, 8 minutes, then 15 with the defaults.
Only checked failures count; refused attempts neither count nor extend a lock, so a lock always
ends when its time is up. A successful sign-in of an account clears that account's count and lock;
the IP's count is left to expire (one attacker's own good password must not wipe the record of
their guesses at others).

The counters and locks live in the ``limits`` library's storage: its counters with expiry count
the failures (``incr`` with the window as expiry), and a lock is a key whose expiry is the lock's
end, read back with ``get_expiry``. The storage is in memory by default and Redis when the rate
limits or the bus use Redis, so every server process shares them.

Audit records and alerts are a later issue: :func:`on_locked` is where they hook in.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import time
from typing import Any

import msgspec
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from litestar import Request
from litestar.datastructures import State

from brokerlink.config import Settings
from brokerlink.kit.errors import RateLimited
from brokerlink.logs import get_logger

_log = get_logger("brokerlink.auth.lockout")
STATE_KEY = "brokerlink_login_lockout"
"""Where the app keeps its :class:`LoginLockout` (``app.state``)."""
_PREFIX = "brokerlink-lockout"


class LockoutEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A subject was just locked. Names no secret: the account is a hash, never the password."""

    subject: str
    """``account:<sha256 prefix>`` or ``ip:<address>``."""
    failures: int
    lock_seconds: int


async def on_locked(event: LockoutEvent) -> None:
    """Called once per new lock. Today it logs ``auth_locked``; the audit trail and alerting hook in here."""
    _log.warning("auth_locked", subject=event.subject, failures=event.failures, lock_seconds=event.lock_seconds)


def account_subject(email: str) -> str:
    """The lockout subject of an account, from the email as typed (trimmed, lowercased, hashed)."""
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    return f"account:{digest}"


def ip_subject(request: Request[Any, Any, Any]) -> str | None:
    """The lockout subject of the client's address (None when the server does not know it)."""
    return f"ip:{request.client.host}" if request.client and request.client.host else None


class LoginLockout:
    """Counts failures and holds locks in a ``limits`` storage (memory, or Redis shared by every process)."""

    def __init__(
        self,
        storage: Storage,
        *,
        threshold: int = 5,
        window_s: int = 900,
        base_s: int = 60,
        max_s: int = 900,
    ) -> None:
        self.storage = storage
        self.threshold = threshold
        self.window_s = window_s
        self.base_s = base_s
        self.max_s = max_s

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginLockout:
        """Memory storage, or Redis when the deployment's rate limits or bus use Redis."""
        storage: Storage
        redis_wanted = settings.rate_limit_backend == "redis" or settings.bus_backend == "redis"
        if redis_wanted and settings.redis_url:
            uri = settings.redis_url.replace("redis://", "async+redis://", 1).replace("rediss://", "async+rediss://", 1)
            storage = RedisStorage(uri, implementation="redispy")
        else:
            storage = MemoryStorage()
        return cls(
            storage,
            threshold=settings.login_lockout_threshold,
            window_s=settings.login_lockout_window_seconds,
            base_s=settings.login_lockout_base_seconds,
            max_s=settings.login_lockout_max_seconds,
        )

    def lock_seconds(self, failures: int) -> int:
        """How long the lock after the ``failures``-th failure lasts (0 below the threshold)."""
        if failures < self.threshold:
            return 0
        doublings = min(failures - self.threshold, 32)  # 2**32 minutes is past any cap
        return min(self.base_s * (1 << doublings), self.max_s)

    async def check(self, *subjects: str | None) -> None:
        """Raise 429 with ``Retry-After`` when any subject is locked."""
        retry_after = 0
        for subject in subjects:
            if subject is None:
                continue
            key = lock_key(subject)
            if await self.storage.get(key) > 0:
                remaining = math.ceil(await self.storage.get_expiry(key) - time.time())
                retry_after = max(retry_after, remaining, 1)
        if retry_after:
            raise RateLimited("too many failed sign-in attempts: try again later", retry_after=retry_after)

    async def failed(self, *subjects: str | None) -> None:
        """Count a failure against each subject, locking those that reach the threshold."""
        for subject in subjects:
            if subject is None:
                continue
            failures = await self.storage.incr(fail_key(subject), self.window_s)
            seconds = self.lock_seconds(failures)
            if seconds:
                key = lock_key(subject)
                await self.storage.clear(key)
                await self.storage.incr(key, seconds)
                await on_locked(LockoutEvent(subject=subject, failures=failures, lock_seconds=seconds))

    async def succeeded(self, subject: str) -> None:
        """A full sign-in of this account: forget its failures and lift its lock."""
        await self.storage.clear(fail_key(subject))
        await self.storage.clear(lock_key(subject))

    async def close(self) -> None:
        """Stop the memory storage's expiry task, or close the Redis client (at shutdown)."""
        timer = getattr(self.storage, "timer", None)
        if isinstance(timer, asyncio.Task) and not timer.done():
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
        client = getattr(getattr(self.storage, "bridge", None), "storage", None)
        if client is not None and hasattr(client, "aclose"):
            await client.aclose()


def fail_key(subject: str) -> str:
    """The storage key counting a subject's failures (expires with the window)."""
    return f"{_PREFIX}:fail:{subject}"


def lock_key(subject: str) -> str:
    """The storage key of a subject's lock (expires when the lock ends)."""
    return f"{_PREFIX}:lock:{subject}"


def lockout_of(state: State, settings: Settings) -> LoginLockout:
    """The app's lockout, made on first use (one per app, so every request shares its storage)."""
    lockout = state.get(STATE_KEY)
    if not isinstance(lockout, LoginLockout):
        lockout = LoginLockout.from_settings(settings)
        state[STATE_KEY] = lockout
    return lockout
