"""Telling every process that tokens were revoked (SECURITY.md 17, 22).

Revocation is written to the database first (:meth:`OAuthTokenRepository.revoke`, in the caller's
transaction); after the commit the caller publishes a :class:`TokensRevoked` message on
:data:`REVOCATION_TOPIC`. Every server process follows the topic (each with a group of its own, so
each sees every message) to drop the tokens from its cache and close the WebSockets opened with
them. The database stays the authority: a process that misses a message still refuses the token on
its next cache miss, and cached entries live only seconds.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from brokerlink.bus.base import EventBus
from brokerlink.store.repositories.oauth_tokens import OAuthTokenRepository

__all__ = ["REVOCATION_TOPIC", "OAuthTokenRepository", "TokensRevoked", "decode_revocation", "publish_revocation"]

REVOCATION_TOPIC = "oauth.revoked"


class TokensRevoked(msgspec.Struct, frozen=True, kw_only=True):
    """Tokens that are no longer valid, and why."""

    token_ids: list[str]
    consent_id: str | None = None
    reason: str
    """``consent_revoked``, ``consent_expired``, ``code_reused``, ``revocation_endpoint``, ``client_disabled``..."""
    at: datetime


async def publish_revocation(bus: EventBus, revoked: TokensRevoked) -> None:
    """Publish after the revoking transaction committed (nothing is published for no tokens)."""
    if revoked.token_ids:
        key = revoked.consent_id or revoked.token_ids[0]
        await bus.publish(REVOCATION_TOPIC, key, msgspec.json.encode(revoked))


def decode_revocation(payload: bytes) -> TokensRevoked:
    """The message :func:`publish_revocation` sent."""
    return msgspec.json.decode(payload, type=TokensRevoked)
