"""``/v1/webhooks``: users' webhook endpoints, their deliveries, replays and test events (ADR 0028)."""

from brokerlink.api.webhooks.routes import webhooks_router

__all__ = ["webhooks_router"]
