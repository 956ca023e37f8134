"""Apps' webhook endpoints: what a consent lets an endpoint receive (issue 8, ADR 0033).

An app acting for a user under a consent may register endpoints (scope ``webhooks:manage``) for
the event types its consent can read: each type needs the read scope of what it carries
(:data:`EVENT_SCOPES`). Such an endpoint keeps the consent's id, and the consent stays the rule for
every event afterwards:

* an event is recorded for it only if its account (a copy event's: the subscription's follower
  account) is one of the consent's accounts and the consent grants the type's scope;
* once the consent has ended (revoked, expired, or rejected), nothing more is recorded or sent: the
  endpoint is disabled saying why, and deliveries still pending fail without an attempt. Ending a
  consent disables its endpoints at once too (``api/consents/common.finish_ended``, for the API and
  the consent pages); this check is what catches a consent whose time ran out unnoticed.

A user's own endpoints (no consent) receive every event of the user's accounts, as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from brokerlink.security.oauth.consents import LIVE, Consent, ConsentRepository
from brokerlink.store.repositories.webhooks import WebhookEndpoint

__all__ = ["EVENT_SCOPES", "MANAGE_SCOPE", "ConsentGate", "missing_scopes"]

MANAGE_SCOPE: Final = "webhooks:manage"
"""The scope an app needs to register and manage webhook endpoints at all."""
EVENT_SCOPES: Final[dict[str, str]] = {
    "order.updated": "orders:read",
    "order.filled": "orders:read",
    "position.changed": "positions:read",
    "balance.changed": "balances:read",
    "account.connection_changed": "accounts:read",
    "copy.copied": "copy:read",
    "copy.skipped": "copy:read",
    "copy.rejected": "copy:read",
    "copy.failed": "copy:read",
    "copy.guard_tripped": "copy:read",
}
"""The read scope each event type needs: an app receives only what it could read through the API."""


def missing_scopes(event_types: Iterable[str], granted: Iterable[str]) -> list[str]:
    """The scopes (sorted) that ``event_types`` need and ``granted`` lacks."""
    have = set(granted)
    return sorted({EVENT_SCOPES[t] for t in event_types if t in EVENT_SCOPES} - have)


def ended_reason(consent: Consent | None, now: datetime) -> str | None:
    """Why an endpoint registered under ``consent`` may no longer receive anything, or None if it may."""
    if consent is None:
        return "the consent it was registered under no longer exists"
    if consent.status not in LIVE:
        return f"the consent it was registered under was {consent.status.value}"
    if consent.expires_at <= now:
        return "the consent it was registered under expired"
    return None


class ConsentGate:
    """Decides, per event, which consent-bound endpoints may receive it (one lookup per consent)."""

    def __init__(self, session: AsyncSession, now: datetime) -> None:
        self._consents = ConsentRepository(session)
        self._now = now
        self._seen: dict[str, Consent | None] = {}

    async def consent(self, consent_id: str) -> Consent | None:
        """The consent (cached for this gate's life)."""
        if consent_id not in self._seen:
            self._seen[consent_id] = await self._consents.get(consent_id)
        return self._seen[consent_id]

    async def ended(self, endpoint: WebhookEndpoint) -> str | None:
        """Why ``endpoint``'s consent no longer lets it receive anything; None while it does (or has none)."""
        if endpoint.consent_id is None:
            return None
        return ended_reason(await self.consent(endpoint.consent_id), self._now)

    async def covers(self, endpoint: WebhookEndpoint, event_type: str, account_id: str | None) -> bool:
        """Whether ``endpoint`` may receive an event of ``event_type`` about ``account_id``.

        A live consent must grant the type's scope and name the account; an event that names no
        account (none today) is never sent to an app.
        """
        if endpoint.consent_id is None:
            return True
        consent = await self.consent(endpoint.consent_id)
        if consent is None or ended_reason(consent, self._now) is not None:
            return False
        scope = EVENT_SCOPES.get(event_type)
        return (
            scope is not None
            and scope in consent.scopes
            and account_id is not None
            and (account_id in consent.account_ids)
        )
