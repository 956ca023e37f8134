"""The brokerlink Python client: REST v1 and the ``/v1/stream`` WebSocket, async and sync.

A stand-alone package: it imports nothing else from brokerlink (an import-linter contract keeps it
so), only httpx, websockets, joserfc and msgspec. See docs/client.md::

    from brokerlink.client import AsyncBrokerlink, DPoPKey, OAuthClient

    async with AsyncBrokerlink.with_tokens("https://brokerlink.example", tokens, dpop) as bl:
        async for order in bl.iter_orders(account_id):
            print(order.id, order.status, order.filled_qty)
"""

from brokerlink.client.auth import Auth, DPoPAuth, SessionAuth
from brokerlink.client.dpop import DPoPKey
from brokerlink.client.errors import (
    BrokerlinkClientError,
    ConflictError,
    FlowError,
    ForbiddenError,
    InvalidInputError,
    NotAuthenticatedError,
    NotFoundError,
    OAuthError,
    PreconditionFailedError,
    PreconditionRequiredError,
    ProblemError,
    RateLimitedError,
    ServerError,
    StreamClosed,
    StreamError,
)
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
from brokerlink.client.oauth import Authorization, OAuthClient, Tokens, load_private_key, new_client_key
from brokerlink.client.protocol import Error, Event, Snapshot
from brokerlink.client.rest import AsyncBrokerlink
from brokerlink.client.stream import AsyncStream, Gap, StreamItem, stream_url
from brokerlink.client.sync import Brokerlink, SyncStream

__all__ = [
    "Account",
    "AsyncBrokerlink",
    "AsyncStream",
    "Auth",
    "Authorization",
    "Balance",
    "Brokerlink",
    "BrokerlinkClientError",
    "ConflictError",
    "Consent",
    "CopyEvent",
    "DPoPAuth",
    "DPoPKey",
    "Error",
    "Event",
    "Fill",
    "FlowError",
    "ForbiddenError",
    "Gap",
    "Instrument",
    "InvalidInputError",
    "NotAuthenticatedError",
    "NotFoundError",
    "OAuthClient",
    "OAuthError",
    "Order",
    "Page",
    "Position",
    "PreconditionFailedError",
    "PreconditionRequiredError",
    "ProblemError",
    "Quote",
    "RateLimitedError",
    "ServerError",
    "SessionAuth",
    "Snapshot",
    "Strategy",
    "StreamClosed",
    "StreamError",
    "StreamItem",
    "Subscription",
    "SubscriptionSettings",
    "SyncStream",
    "Tokens",
    "User",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEndpointCreated",
    "load_private_key",
    "new_client_key",
    "stream_url",
]
