"""``Brokerlink``: the same client for code that is not async.

It wraps :class:`~brokerlink.client.rest.AsyncBrokerlink` and runs it on a private event loop in a
daemon thread of its own (one per client): every method submits the coroutine there and waits for
its result, and ``iter_*`` and :meth:`Brokerlink.stream` turn async iterators into plain ones the
same way. So the sync client behaves exactly like the async one (retries, DPoP nonces, refresh,
resume) with one implementation, and works inside a program that already runs an event loop in
another thread (a call from inside that loop's own thread would block it: use the async client
there). Close it with :meth:`Brokerlink.close` or ``with``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

import httpx

from brokerlink.client.auth import Auth, DPoPAuth
from brokerlink.client.dpop import DPoPKey
from brokerlink.client.oauth import OAuthClient, Tokens
from brokerlink.client.rest import AsyncBrokerlink
from brokerlink.client.stream import AsyncStream, StreamItem, default_backoff, stream_url

__all__ = ["Brokerlink", "SyncStream"]

P = ParamSpec("P")
T = TypeVar("T")


class _Loop:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="brokerlink-client-loop", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self.thread:
            coroutine.close()
            raise RuntimeError("the sync client was called from its own loop's thread")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result()

    def iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        async def step() -> tuple[bool, T | None]:
            try:
                return True, await anext(iterator)
            except StopAsyncIteration:
                return False, None

        while True:
            more, item = self.run(step())
            if not more:
                return
            yield item  # type: ignore[misc]

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self.loop.close()


def _call(method: Callable[Concatenate[AsyncBrokerlink, P], Awaitable[T]]) -> Callable[Concatenate[Brokerlink, P], T]:
    """The sync form of an ``AsyncBrokerlink`` method (same parameters, same result)."""

    def call(self: Brokerlink, /, *args: P.args, **kwargs: P.kwargs) -> T:
        async def run() -> T:
            return await method(self.aio, *args, **kwargs)

        return self._loop.run(run())

    call.__doc__ = method.__doc__
    call.__name__ = method.__name__
    return call


def _iterate(
    method: Callable[Concatenate[AsyncBrokerlink, P], AsyncIterator[T]],
) -> Callable[Concatenate[Brokerlink, P], Iterator[T]]:
    """The sync form of an ``AsyncBrokerlink.iter_*`` method: a plain iterator over every page."""

    def call(self: Brokerlink, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return self._loop.iterate(method(self.aio, *args, **kwargs))

    call.__doc__ = method.__doc__
    call.__name__ = method.__name__
    return call


class SyncStream:
    """:class:`~brokerlink.client.stream.AsyncStream` as a plain iterator (made by :meth:`Brokerlink.stream`)."""

    def __init__(self, loop: _Loop, stream: AsyncStream) -> None:
        self._loop = loop
        self.aio = stream

    def __iter__(self) -> Iterator[StreamItem]:
        return self._loop.iterate(self.aio)

    def subscribe(self, channel: str) -> None:
        """Follow another channel."""
        self._loop.run(self.aio.subscribe(channel))

    def unsubscribe(self, channel: str) -> None:
        """Stop following a channel."""
        self._loop.run(self.aio.unsubscribe(channel))

    def close(self) -> None:
        """Close the connection; iterating ends."""
        self._loop.run(self.aio.aclose())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class Brokerlink:
    """A blocking client of one brokerlink server; every method mirrors :class:`AsyncBrokerlink`'s."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: Auth | None = None,
        http: Callable[[], httpx.AsyncClient] | None = None,
        timeout: float = 30.0,
    ) -> None:
        """``http``, when given, makes the ``httpx.AsyncClient`` to use (called on the client's loop)."""
        self._loop = _Loop()

        async def make() -> AsyncBrokerlink:
            return AsyncBrokerlink(base_url, auth=auth, http=http() if http is not None else None, timeout=timeout)

        try:
            self.aio = self._loop.run(make())
        except BaseException:
            self._loop.stop()
            raise
        """The async client underneath (use it only through this object's loop)."""

    @classmethod
    def with_tokens(
        cls,
        base_url: str,
        tokens: Tokens,
        dpop: DPoPKey,
        *,
        oauth: OAuthClient | None = None,
        http: Callable[[], httpx.AsyncClient] | None = None,
        timeout: float = 30.0,
    ) -> Self:
        """A client acting with DPoP-bound ``tokens``."""
        return cls(base_url, auth=DPoPAuth(tokens, dpop, oauth=oauth), http=http, timeout=timeout)

    @classmethod
    def login(
        cls,
        base_url: str,
        email: str,
        password: str,
        *,
        totp: str | None = None,
        http: Callable[[], httpx.AsyncClient] | None = None,
        timeout: float = 30.0,
    ) -> Self:
        """A client signed in as a user (see :meth:`AsyncBrokerlink.login`)."""
        client = cls.__new__(cls)
        loop = client._loop = _Loop()  # noqa: SLF001 - this class's own instance, half made

        async def make() -> AsyncBrokerlink:
            made = http() if http is not None else None
            return await AsyncBrokerlink.login(base_url, email, password, totp=totp, http=made, timeout=timeout)

        try:
            client.aio = loop.run(make())
        except BaseException:
            loop.stop()
            raise
        return client

    def close(self) -> None:
        """Close the HTTP client and stop the loop thread."""
        try:
            self._loop.run(self.aio.aclose())
        finally:
            self._loop.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def stream(
        self,
        channels: Iterable[str] = (),
        *,
        backoff: Callable[[int], float] = default_backoff,
        max_reconnects: int | None = None,
    ) -> SyncStream:
        """A resumable stream of ``channels`` (see :class:`~brokerlink.client.stream.AsyncStream`)."""
        aio = AsyncStream(
            stream_url(self.aio.base_url),
            auth=self.aio.auth,
            http=self.aio.http,
            channels=channels,
            backoff=backoff,
            max_reconnects=max_reconnects,
        )
        return SyncStream(self._loop, aio)

    me = _call(AsyncBrokerlink.me)
    logout = _call(AsyncBrokerlink.logout)
    accounts = _call(AsyncBrokerlink.accounts)
    iter_accounts = _iterate(AsyncBrokerlink.iter_accounts)
    account = _call(AsyncBrokerlink.account)
    balances = _call(AsyncBrokerlink.balances)
    positions = _call(AsyncBrokerlink.positions)
    instruments = _call(AsyncBrokerlink.instruments)
    iter_instruments = _iterate(AsyncBrokerlink.iter_instruments)
    quotes = _call(AsyncBrokerlink.quotes)
    orders = _call(AsyncBrokerlink.orders)
    iter_orders = _iterate(AsyncBrokerlink.iter_orders)
    order = _call(AsyncBrokerlink.order)
    place_order = _call(AsyncBrokerlink.place_order)
    cancel_order = _call(AsyncBrokerlink.cancel_order)
    fills = _call(AsyncBrokerlink.fills)
    iter_fills = _iterate(AsyncBrokerlink.iter_fills)
    strategies = _call(AsyncBrokerlink.strategies)
    iter_strategies = _iterate(AsyncBrokerlink.iter_strategies)
    public_strategies = _call(AsyncBrokerlink.public_strategies)
    iter_public_strategies = _iterate(AsyncBrokerlink.iter_public_strategies)
    strategy = _call(AsyncBrokerlink.strategy)
    subscriptions = _call(AsyncBrokerlink.subscriptions)
    iter_subscriptions = _iterate(AsyncBrokerlink.iter_subscriptions)
    subscription = _call(AsyncBrokerlink.subscription)
    subscribe = _call(AsyncBrokerlink.subscribe)
    subscription_settings = _call(AsyncBrokerlink.subscription_settings)
    replace_subscription_settings = _call(AsyncBrokerlink.replace_subscription_settings)
    pause_subscription = _call(AsyncBrokerlink.pause_subscription)
    resume_subscription = _call(AsyncBrokerlink.resume_subscription)
    copy_events = _call(AsyncBrokerlink.copy_events)
    iter_copy_events = _iterate(AsyncBrokerlink.iter_copy_events)
    consents = _call(AsyncBrokerlink.consents)
    iter_consents = _iterate(AsyncBrokerlink.iter_consents)
    consent = _call(AsyncBrokerlink.consent)
    revoke_consent = _call(AsyncBrokerlink.revoke_consent)
    webhook_endpoints = _call(AsyncBrokerlink.webhook_endpoints)
    iter_webhook_endpoints = _iterate(AsyncBrokerlink.iter_webhook_endpoints)
    webhook_endpoint = _call(AsyncBrokerlink.webhook_endpoint)
    create_webhook_endpoint = _call(AsyncBrokerlink.create_webhook_endpoint)
    update_webhook_endpoint = _call(AsyncBrokerlink.update_webhook_endpoint)
    delete_webhook_endpoint = _call(AsyncBrokerlink.delete_webhook_endpoint)
    webhook_deliveries = _call(AsyncBrokerlink.webhook_deliveries)
    iter_webhook_deliveries = _iterate(AsyncBrokerlink.iter_webhook_deliveries)
    replay_webhook_delivery = _call(AsyncBrokerlink.replay_webhook_delivery)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Any ``/v1`` route (see :meth:`AsyncBrokerlink.request`)."""

        async def run() -> Any:
            return await self.aio.request(method, path, **kwargs)

        return self._loop.run(run())
