"""``AsyncBrokerlink``: typed, async access to brokerlink's REST v1.

Every method sends one request (two when the server asks for a DPoP nonce or the access token needs
refreshing) and returns the client's own structs (:mod:`brokerlink.client.models`); an error answer
raises the :class:`~brokerlink.client.errors.ProblemError` subclass of its status. Lists come a page
at a time (``limit``, ``after``; the page's ``next_after`` is the next cursor) or as ``iter_*`` async
iterators over every page. Requests that create something carry an ``Idempotency-Key`` (a random one
unless given), and a request that is safe to repeat (a read, or a keyed create) is retried on a
network error, so a dropped connection never places an order twice.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from brokerlink.client.auth import Auth, DPoPAuth, SessionAuth
from brokerlink.client.dpop import DPoPKey
from brokerlink.client.errors import NotAuthenticatedError, problem_from_response
from brokerlink.client.models import (
    Account,
    Balance,
    Consent,
    CopyEvent,
    Fill,
    Instrument,
    Order,
    Page,
    Position,
    Quote,
    Strategy,
    Subscription,
    SubscriptionSettings,
    User,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEndpointCreated,
)
from brokerlink.client.oauth import OAuthClient, Tokens
from brokerlink.client.stream import AsyncStream, default_backoff, stream_url

__all__ = ["AsyncBrokerlink"]

T = TypeVar("T")
_ENCODER = msgspec.json.Encoder(decimal_format="string")
_NETWORK_RETRIES = 2
_UNSET: Any = object()


def _segment(value: str) -> str:
    return quote(value, safe="")


def _query(**params: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in params.items():
        if value is None:
            continue
        out[name] = value.isoformat() if isinstance(value, datetime) else str(value)
    return out


class AsyncBrokerlink:
    """An async client of one brokerlink server.

    Make one with :meth:`with_tokens` (an app holding DPoP-bound tokens), :meth:`login` (a user's
    session, for first-party scripts) or directly with an :class:`~brokerlink.client.auth.Auth`. Pass
    ``http`` to reuse an ``httpx.AsyncClient`` (its transport, proxies, timeouts); otherwise the
    client opens its own and closes it in :meth:`aclose` (or ``async with``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: Auth | None = None,
        http: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
        user_agent: str = "brokerlink-python-client/1",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self._owns_http = http is None
        self.http = http if http is not None else httpx.AsyncClient(timeout=timeout)
        self.user_agent = user_agent

    @classmethod
    def with_tokens(
        cls,
        base_url: str,
        tokens: Tokens,
        dpop: DPoPKey,
        *,
        oauth: OAuthClient | None = None,
        http: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
    ) -> Self:
        """A client acting with DPoP-bound ``tokens`` (refreshed through ``oauth`` when it is given)."""
        return cls(base_url, auth=DPoPAuth(tokens, dpop, oauth=oauth), http=http, timeout=timeout)

    @classmethod
    async def login(
        cls,
        base_url: str,
        email: str,
        password: str,
        *,
        totp: str | None = None,
        http: httpx.AsyncClient | None = None,
        timeout: float = 30.0,  # noqa: ASYNC109 - the HTTP client's timeout, not this call's
    ) -> Self:
        """A client signed in as a user (email and password, and the authenticator's code with MFA)."""
        auth = SessionAuth()
        client = cls(base_url, auth=auth, http=http, timeout=timeout)
        try:
            await client._sign_in(auth, email, password, totp)
        except BaseException:
            await client.aclose()
            raise
        return client

    async def _sign_in(self, auth: SessionAuth, email: str, password: str, totp: str | None) -> None:
        csrf = await self._send("GET", "/v1/auth/csrf")
        auth.csrf_token = csrf.json()["csrf_token"]
        signed_in = await self._send("POST", "/v1/auth/login", body={"email": email, "password": password})
        if signed_in.json().get("mfa_required"):
            if totp is None:
                raise NotAuthenticatedError(401, "mfa_required", "this user signs in with an authenticator code")
            await self._send("POST", "/v1/auth/mfa", body={"code": totp})

    async def aclose(self) -> None:
        """Close the HTTP client, if this client opened it."""
        if self._owns_http:
            await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    # --- the one request path --------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = _UNSET,
        headers: Mapping[str, str] | None = None,
        repeatable: bool | None = None,
    ) -> httpx.Response:
        """Send, retrying as the module docstring says; raise the problem of an error answer."""
        url = self.base_url + path
        content = None if body is _UNSET else _ENCODER.encode(body)
        base_headers = {"User-Agent": self.user_agent, "Accept": "application/json", **(headers or {})}
        if content is not None:
            base_headers["Content-Type"] = "application/json"
        repeatable = method == "GET" if repeatable is None else repeatable
        attempt = 0
        network_failures = 0
        while True:
            request_headers = dict(base_headers)
            if self.auth is not None:
                request_headers.update(await self.auth.headers(self.http, method, url))
            try:
                response = await self.http.request(method, url, params=params, content=content, headers=request_headers)
            except httpx.TransportError:
                network_failures += 1
                if not repeatable or network_failures > _NETWORK_RETRIES:
                    raise
                await asyncio.sleep(0.2 * network_failures)
                continue
            if response.is_success:
                if self.auth is not None:
                    await self.auth.retry(url, response, attempt)  # keeps a rotated DPoP nonce
                return response
            if self.auth is not None and await self.auth.retry(url, response, attempt):
                attempt += 1
                continue
            raise problem_from_response(response)

    async def _get(self, path: str, kind: type[T], **params: Any) -> T:
        response = await self._send("GET", path, params=_query(**params))
        return msgspec.json.decode(response.content, type=kind)

    async def _page(self, path: str, kind: type[T], **params: Any) -> Page[T]:
        return await self._get(path, Page[kind], **params)  # type: ignore[valid-type]

    async def _every(self, path: str, kind: type[T], **params: Any) -> AsyncIterator[T]:
        after = params.pop("after", None)
        while True:
            page = await self._page(path, kind, after=after, **params)
            for item in page.data:
                yield item
            if page.next_after is None or not page.data:
                return
            after = page.next_after

    async def _create(self, path: str, body: Any, kind: type[T], idempotency_key: str | None, **headers: str) -> T:
        key = idempotency_key or str(uuid.uuid4())
        response = await self._send(
            "POST", path, body=body, headers={"Idempotency-Key": key, **headers}, repeatable=True
        )
        return msgspec.json.decode(response.content, type=kind)

    # --- the user ----------------------------------------------------------------------------------

    async def me(self) -> User:
        """The signed-in user (session authentication only)."""
        return await self._get("/v1/me", User)

    async def logout(self) -> None:
        """End the session (session authentication only)."""
        await self._send("POST", "/v1/auth/logout")

    # --- accounts ------------------------------------------------------------------------------------

    async def accounts(self, *, limit: int | None = None, after: str | None = None) -> Page[Account]:
        """The accounts the principal reaches (an app: those the user consented to)."""
        return await self._page("/v1/accounts", Account, limit=limit, after=after)

    def iter_accounts(self, *, limit: int = 100) -> AsyncIterator[Account]:
        """Every account, page after page."""
        return self._every("/v1/accounts", Account, limit=limit)

    async def account(self, account_id: str) -> Account:
        """One account."""
        return await self._get(f"/v1/accounts/{_segment(account_id)}", Account)

    async def balances(self, account_id: str, *, limit: int | None = None, after: str | None = None) -> Page[Balance]:
        """The account's balances, one per currency."""
        return await self._page(f"/v1/accounts/{_segment(account_id)}/balances", Balance, limit=limit, after=after)

    async def positions(
        self, account_id: str, *, limit: int | None = None, after: str | None = None, symbol: str | None = None
    ) -> Page[Position]:
        """The account's open positions."""
        path = f"/v1/accounts/{_segment(account_id)}/positions"
        return await self._page(path, Position, limit=limit, after=after, symbol=symbol)

    async def instruments(
        self, account_id: str, *, limit: int | None = None, after: str | None = None, symbol: str | None = None
    ) -> Page[Instrument]:
        """The instruments the account can trade, with the broker's rules."""
        path = f"/v1/accounts/{_segment(account_id)}/instruments"
        return await self._page(path, Instrument, limit=limit, after=after, symbol=symbol)

    def iter_instruments(self, account_id: str, *, limit: int = 500) -> AsyncIterator[Instrument]:
        """Every instrument of the account."""
        return self._every(f"/v1/accounts/{_segment(account_id)}/instruments", Instrument, limit=limit)

    async def quotes(self, account_id: str, symbols: list[str]) -> list[Quote]:
        """Best bid and offer at the account's broker, in the order asked."""
        path = f"/v1/accounts/{_segment(account_id)}/quotes"
        return (await self._get(path, Page[Quote], symbols=",".join(symbols))).data

    # --- orders and fills --------------------------------------------------------------------------

    async def orders(
        self,
        account_id: str,
        *,
        limit: int | None = None,
        after: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        symbol: str | None = None,
        status: str | None = None,
    ) -> Page[Order]:
        """One page of the account's orders, newest first."""
        path = f"/v1/accounts/{_segment(account_id)}/orders"
        return await self._page(
            path, Order, limit=limit, after=after, since=since, until=until, symbol=symbol, status=status
        )

    def iter_orders(
        self,
        account_id: str,
        *,
        limit: int = 100,
        since: datetime | None = None,
        until: datetime | None = None,
        symbol: str | None = None,
        status: str | None = None,
    ) -> AsyncIterator[Order]:
        """Every order of the account (filtered), newest first, page after page."""
        path = f"/v1/accounts/{_segment(account_id)}/orders"
        return self._every(path, Order, limit=limit, since=since, until=until, symbol=symbol, status=status)

    async def order(self, order_id: str) -> Order:
        """One order."""
        return await self._get(f"/v1/orders/{_segment(order_id)}", Order)

    async def place_order(
        self,
        account_id: str,
        *,
        symbol: str,
        side: str,
        qty: Decimal | str,
        type: str = "market",  # noqa: A002 - the API's field
        tif: str = "gtc",
        limit_price: Decimal | str | None = None,
        stop_price: Decimal | str | None = None,
        client_order_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Order:
        """Place an order. It carries ``idempotency_key`` (a random one unless given): a retry with the
        same key, by this client after a network error or by the caller, never places a second order."""
        body: dict[str, Any] = {"symbol": symbol, "side": side, "qty": Decimal(qty), "type": type, "tif": tif}
        for name, value in (("limit_price", limit_price), ("stop_price", stop_price)):
            if value is not None:
                body[name] = Decimal(value)
        if client_order_id is not None:
            body["client_order_id"] = client_order_id
        return await self._create(f"/v1/accounts/{_segment(account_id)}/orders", body, Order, idempotency_key)

    async def cancel_order(self, order_id: str) -> Order:
        """Ask the broker to cancel; the order as it stands after the broker answered."""
        response = await self._send("DELETE", f"/v1/orders/{_segment(order_id)}", repeatable=True)
        return msgspec.json.decode(response.content, type=Order)

    async def fills(
        self,
        account_id: str,
        *,
        limit: int | None = None,
        after: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        symbol: str | None = None,
    ) -> Page[Fill]:
        """One page of the account's fills, newest first."""
        path = f"/v1/accounts/{_segment(account_id)}/fills"
        return await self._page(path, Fill, limit=limit, after=after, since=since, until=until, symbol=symbol)

    def iter_fills(
        self,
        account_id: str,
        *,
        limit: int = 100,
        since: datetime | None = None,
        until: datetime | None = None,
        symbol: str | None = None,
    ) -> AsyncIterator[Fill]:
        """Every fill of the account (filtered), newest first."""
        path = f"/v1/accounts/{_segment(account_id)}/fills"
        return self._every(path, Fill, limit=limit, since=since, until=until, symbol=symbol)

    # --- copy trading --------------------------------------------------------------------------------

    async def strategies(self, *, limit: int | None = None, after: str | None = None) -> Page[Strategy]:
        """One page of the principal's own strategies."""
        return await self._page("/v1/strategies", Strategy, limit=limit, after=after)

    def iter_strategies(self, *, limit: int = 100) -> AsyncIterator[Strategy]:
        """Every strategy of the principal's."""
        return self._every("/v1/strategies", Strategy, limit=limit)

    async def public_strategies(self, *, limit: int | None = None, after: str | None = None) -> Page[Strategy]:
        """One page of the strategy directory."""
        return await self._page("/v1/strategies/public", Strategy, limit=limit, after=after)

    def iter_public_strategies(self, *, limit: int = 100) -> AsyncIterator[Strategy]:
        """The whole strategy directory."""
        return self._every("/v1/strategies/public", Strategy, limit=limit)

    async def strategy(self, strategy_id: str) -> Strategy:
        """One strategy."""
        return await self._get(f"/v1/strategies/{_segment(strategy_id)}", Strategy)

    async def subscriptions(self, *, limit: int | None = None, after: str | None = None) -> Page[Subscription]:
        """One page of the principal's subscriptions."""
        return await self._page("/v1/subscriptions", Subscription, limit=limit, after=after)

    def iter_subscriptions(self, *, limit: int = 100) -> AsyncIterator[Subscription]:
        """Every subscription of the principal's."""
        return self._every("/v1/subscriptions", Subscription, limit=limit)

    async def subscription(self, subscription_id: str) -> Subscription:
        """One subscription, with its ETag in ``etag``."""
        response = await self._send("GET", f"/v1/subscriptions/{_segment(subscription_id)}")
        return _tagged(msgspec.json.decode(response.content, type=Subscription), response)

    async def subscribe(
        self,
        strategy_id: str,
        account_id: str,
        settings: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> Subscription:
        """Follow a strategy with one of the user's accounts."""
        body = {"strategy_id": strategy_id, "account_id": account_id, "settings": dict(settings)}
        return await self._create("/v1/subscriptions", body, Subscription, idempotency_key)

    async def subscription_settings(self, subscription_id: str) -> SubscriptionSettings:
        """A subscription's copy settings and their ETag."""
        response = await self._send("GET", f"/v1/subscriptions/{_segment(subscription_id)}/settings")
        return SubscriptionSettings(settings=response.json(), etag=response.headers.get("etag"))

    async def replace_subscription_settings(
        self, subscription_id: str, settings: Mapping[str, Any], *, if_match: str
    ) -> SubscriptionSettings:
        """Replace the settings as a whole, if the subscription is still at ``if_match`` (the ETag last
        read): :class:`~brokerlink.client.errors.PreconditionFailedError` (412) when it changed since."""
        response = await self._send(
            "PUT",
            f"/v1/subscriptions/{_segment(subscription_id)}/settings",
            body=dict(settings),
            headers={"If-Match": if_match},
            repeatable=True,
        )
        return SubscriptionSettings(settings=response.json(), etag=response.headers.get("etag"))

    async def _subscription_action(self, subscription_id: str, action: str, if_match: str | None) -> Subscription:
        headers = {"If-Match": if_match} if if_match is not None else None
        path = f"/v1/subscriptions/{_segment(subscription_id)}/{action}"
        response = await self._send("POST", path, headers=headers, repeatable=True)
        return _tagged(msgspec.json.decode(response.content, type=Subscription), response)

    async def pause_subscription(self, subscription_id: str, *, if_match: str | None = None) -> Subscription:
        """Pause copying (only if still at ``if_match``, when given)."""
        return await self._subscription_action(subscription_id, "pause", if_match)

    async def resume_subscription(self, subscription_id: str, *, if_match: str | None = None) -> Subscription:
        """Resume copying (only if still at ``if_match``, when given)."""
        return await self._subscription_action(subscription_id, "resume", if_match)

    async def copy_events(
        self, subscription_id: str, *, limit: int | None = None, after: str | None = None
    ) -> Page[CopyEvent]:
        """One page of a subscription's copy events (copies, skips with their reasons...), newest first."""
        path = f"/v1/subscriptions/{_segment(subscription_id)}/events"
        return await self._page(path, CopyEvent, limit=limit, after=after)

    def iter_copy_events(self, subscription_id: str, *, limit: int = 100) -> AsyncIterator[CopyEvent]:
        """Every copy event of a subscription, newest first."""
        return self._every(f"/v1/subscriptions/{_segment(subscription_id)}/events", CopyEvent, limit=limit)

    # --- consents (the user's own; apps get 403) ---------------------------------------------------

    async def consents(
        self, *, limit: int | None = None, after: str | None = None, status: str | None = None
    ) -> Page[Consent]:
        """One page of the user's consents to apps."""
        return await self._page("/v1/consents", Consent, limit=limit, after=after, status=status)

    def iter_consents(self, *, limit: int = 100, status: str | None = None) -> AsyncIterator[Consent]:
        """Every consent of the user's."""
        return self._every("/v1/consents", Consent, limit=limit, status=status)

    async def consent(self, consent_id: str) -> Consent:
        """One consent."""
        return await self._get(f"/v1/consents/{_segment(consent_id)}", Consent)

    async def revoke_consent(self, consent_id: str) -> None:
        """Revoke a consent: the app's tokens stop working at once."""
        await self._send("DELETE", f"/v1/consents/{_segment(consent_id)}", repeatable=True)

    # --- webhooks ------------------------------------------------------------------------------------

    async def webhook_endpoints(self, *, limit: int | None = None, after: str | None = None) -> Page[WebhookEndpoint]:
        """One page of the principal's webhook endpoints."""
        return await self._page("/v1/webhooks", WebhookEndpoint, limit=limit, after=after)

    def iter_webhook_endpoints(self, *, limit: int = 100) -> AsyncIterator[WebhookEndpoint]:
        """Every webhook endpoint."""
        return self._every("/v1/webhooks", WebhookEndpoint, limit=limit)

    async def webhook_endpoint(self, endpoint_id: str) -> WebhookEndpoint:
        """One endpoint."""
        return await self._get(f"/v1/webhooks/{_segment(endpoint_id)}", WebhookEndpoint)

    async def create_webhook_endpoint(
        self, url: str, event_types: list[str], *, description: str = "", idempotency_key: str | None = None
    ) -> WebhookEndpointCreated:
        """Register an endpoint; the answer holds its signing secret, shown this once."""
        body = {"url": url, "event_types": event_types, "description": description}
        return await self._create("/v1/webhooks", body, WebhookEndpointCreated, idempotency_key)

    async def update_webhook_endpoint(
        self,
        endpoint_id: str,
        *,
        url: str | None = None,
        event_types: list[str] | None = None,
        description: str | None = None,
        enabled: bool | None = None,
        if_match: str | None = None,
    ) -> WebhookEndpoint:
        """Change an endpoint (fields left None stay as they are)."""
        changes = {"url": url, "event_types": event_types, "description": description, "enabled": enabled}
        body = {k: v for k, v in changes.items() if v is not None}
        headers = {"If-Match": if_match} if if_match is not None else None
        path = f"/v1/webhooks/{_segment(endpoint_id)}"
        response = await self._send("PATCH", path, body=body, headers=headers, repeatable=True)
        return msgspec.json.decode(response.content, type=WebhookEndpoint)

    async def delete_webhook_endpoint(self, endpoint_id: str) -> None:
        """Delete an endpoint."""
        await self._send("DELETE", f"/v1/webhooks/{_segment(endpoint_id)}", repeatable=True)

    async def webhook_deliveries(
        self, endpoint_id: str, *, limit: int | None = None, after: str | None = None
    ) -> Page[WebhookDelivery]:
        """One page of an endpoint's deliveries, with their attempts."""
        path = f"/v1/webhooks/{_segment(endpoint_id)}/deliveries"
        return await self._page(path, WebhookDelivery, limit=limit, after=after)

    def iter_webhook_deliveries(self, endpoint_id: str, *, limit: int = 100) -> AsyncIterator[WebhookDelivery]:
        """Every delivery of an endpoint."""
        return self._every(f"/v1/webhooks/{_segment(endpoint_id)}/deliveries", WebhookDelivery, limit=limit)

    async def replay_webhook_delivery(self, endpoint_id: str, delivery_id: str) -> None:
        """Send a delivery again."""
        path = f"/v1/webhooks/{_segment(endpoint_id)}/deliveries/{_segment(delivery_id)}/replay"
        await self._send("POST", path)

    # --- the stream ------------------------------------------------------------------------------------

    def stream(
        self,
        channels: Iterable[str] = (),
        *,
        backoff: Callable[[int], float] = default_backoff,
        max_reconnects: int | None = None,
    ) -> AsyncStream:
        """A resumable stream of ``channels`` on ``/v1/stream``, authenticated as this client is."""
        return AsyncStream(
            stream_url(self.base_url),
            auth=self.auth,
            http=self.http,
            channels=channels,
            backoff=backoff,
            max_reconnects=max_reconnects,
        )

    # --- anything else -------------------------------------------------------------------------------

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Any ``/v1`` route this client has no method for: the decoded JSON answer (None for 204).
        ``kwargs``: ``params``, ``body``, ``headers``."""
        response = await self._send(method.upper(), path, **kwargs)
        return response.json() if response.content else None


def _tagged(subscription: Subscription, response: httpx.Response) -> Subscription:
    return msgspec.structs.replace(subscription, etag=response.headers.get("etag"))
